//! Rule-pack distribution and the extension's force-install files.
//!
//! - `POST /v1/rulepacks?group=NAME` (admin): the body is a compiled pack
//!   (`sessiontrail rulepack sign` output, `docs/rulepack.md`). The
//!   collector checks that it *is* one — well-formed, its signature valid
//!   under the key it names, its payload a pack that compiles — and that its
//!   version is above the one in force for the group (else 409). It records
//!   the publish as an admin action on the evidence log.
//! - `GET /v1/rulepacks/current?group=NAME` (device: its own group, which
//!   may be left out; auditor, admin: any group): the blob verbatim, with a
//!   strong ETag (hex SHA-256 of the blob) and `If-None-Match` → 304.
//! - `GET /updates.xml`, `GET /extension.crx`, `GET /extension/{file}`
//!   (no credential: browsers fetch force-installed extensions without
//!   one): files from `DATA_DIR/dist/`.
//!
//! ## Trust split
//!
//! The collector does **not** decide which admin keys are trusted. Anyone
//! holding an admin *credential* can upload a pack, but an extension applies
//! it only if it is signed by one of the admin *keys* pinned in its managed
//! policy (`compiled::verify`), and never a lower version than the one it
//! has in force. A compromised collector can therefore withhold packs or
//! serve old ones (which the extension refuses as rollbacks), but cannot
//! make an extension apply a pack no pinned admin signed. The version check
//! here only keeps honest mistakes (publishing an old file) from reaching
//! devices.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use sessiontrail_core::rulepack::{AdminKey, VerifyError, compiled};
use sha2::{Digest as _, Sha256};

use crate::auth::Caller;
use crate::body;
use crate::devices::Query;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::Role;
use crate::store::packs::{NewPack, PackInfo, PublishRefusal, Published};

/// The routes of this module, merged into [`crate::app`].
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/rulepacks", post(post_rulepack))
        .route("/v1/rulepacks/current", get(get_current))
        .route("/updates.xml", get(get_update_manifest))
        .route("/extension.crx", get(get_crx))
        .route("/extension/{file}", get(get_dist_file))
}

/// Whether `g` is a valid policy group name: 1–64 of `A-Z a-z 0-9 . _ -`.
pub fn group_ok(g: &str) -> bool {
    !g.is_empty()
        && g.len() <= 64
        && g.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// What the collector learns from a compiled pack without trusting any key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    pub pack_id: String,
    pub version: u64,
    pub checksum: [u8; 32],
    pub sha256: [u8; 32],
    pub signer: AdminKey,
}

/// Checks that `blob` is a compiled pack signed by the key it names, using
/// the core's verifier: first with no key pinned (which, on a well-formed
/// blob, stops at `UnpinnedKey` and names the signer), then with that
/// signer pinned, so every other check (signature, payload, versions, pack
/// validity) runs exactly as in the extension.
pub fn inspect(blob: &[u8]) -> Result<Inspected, VerifyError> {
    let signer = match compiled::verify(blob, &[], None) {
        Err(VerifyError::UnpinnedKey(k)) => k,
        Err(e) => return Err(e),
        Ok(v) => v.signer,
    };
    let v = compiled::verify(blob, &[signer], None)?;
    Ok(Inspected {
        pack_id: v.pack.pack.id,
        version: v.pack.pack.version,
        checksum: v.checksum,
        sha256: Sha256::digest(blob).into(),
        signer,
    })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupQuery {
    pub group: Option<String>,
}

/// The answer to a publish.
#[derive(Debug, Clone, Serialize)]
pub struct PublishResponse {
    #[serde(flatten)]
    pub pack: PackInfo,
    /// True when this exact blob was already in force (a retry).
    pub already_published: bool,
}

fn checked_group(g: Option<String>) -> Result<String, ApiError> {
    let g = g.ok_or_else(|| ApiError::bad_request("missing_group", "give ?group=NAME"))?;
    if group_ok(&g) {
        Ok(g)
    } else {
        Err(ApiError::bad_request(
            "bad_group",
            "a group name is 1-64 characters of A-Z a-z 0-9 . _ -",
        ))
    }
}

/// `POST /v1/rulepacks?group=NAME` (role: admin).
pub async fn post_rulepack(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<GroupQuery>,
    headers: HeaderMap,
    req: Body,
) -> Result<(StatusCode, axum::Json<PublishResponse>), ApiError> {
    caller.require(&[Role::Admin])?;
    let group = checked_group(q.group)?;
    let raw = body::read_capped(req, &headers, compiled::MAX_LEN).await?;
    let store = state.store.clone();
    let actor = caller.actor();
    let published = tokio::task::spawn_blocking(move || {
        let i = inspect(&raw).map_err(|e| {
            ApiError::bad_request(
                "bad_rulepack",
                format!("not a valid compiled rule pack: {e}"),
            )
        })?;
        let pack = NewPack {
            group,
            pack_id: i.pack_id,
            version: i.version,
            checksum: i.checksum,
            sha256: i.sha256,
            signer: i.signer.0,
            blob: raw.to_vec(),
        };
        store.publish_pack(pack, &actor).map_err(ApiError::from)
    })
    .await
    .map_err(ApiError::internal)??;
    match published {
        Ok(Published::New(pack)) => {
            tracing::info!(group = %pack.group, pack = %pack.pack_id, version = pack.version,
                signer = %hex::encode(pack.signer), "rule pack published");
            Ok((
                StatusCode::CREATED,
                axum::Json(PublishResponse {
                    pack,
                    already_published: false,
                }),
            ))
        }
        Ok(Published::AlreadyCurrent(pack)) => Ok((
            StatusCode::OK,
            axum::Json(PublishResponse {
                pack,
                already_published: true,
            }),
        )),
        Err(PublishRefusal::Rollback { version, in_force }) => Err(ApiError::Conflict {
            code: "rollback",
            message: format!(
                "version {version} is not newer than version {in_force} in force for this group"
            ),
        }),
        Err(PublishRefusal::SameVersionDifferentContent { version }) => Err(ApiError::Conflict {
            code: "version_not_newer",
            message: format!(
                "version {version} is already in force for this group with other content: bump the version"
            ),
        }),
    }
}

/// The strong entity tag of a blob: its hex SHA-256, quoted.
pub fn etag(sha256: &[u8; 32]) -> String {
    format!("\"{}\"", hex::encode(sha256))
}

/// RFC 9110 `If-None-Match` (weak comparison): `*` or any listed tag.
fn none_match(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == tag)
}

/// `GET /v1/rulepacks/current?group=NAME` (device: own group; auditor,
/// admin: any group).
pub async fn get_current(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<GroupQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Device, Role::Auditor, Role::Admin])?;
    let store = state.store.clone();
    let group = if caller.role == Role::Device {
        let id = caller.device()?.id;
        let s = store.clone();
        let own = tokio::task::spawn_blocking(move || s.device_group(id))
            .await
            .map_err(ApiError::internal)??
            .ok_or_else(|| {
                ApiError::forbidden("unknown_device", "this credential's device is not enrolled")
            })?;
        if let Some(asked) = q.group
            && asked != own
        {
            return Err(ApiError::forbidden(
                "wrong_group",
                "this device belongs to another policy group",
            ));
        }
        own
    } else {
        checked_group(q.group)?
    };
    let inm = headers.contains_key(header::IF_NONE_MATCH);
    let g = group.clone();
    let s = store.clone();
    let fetch = move |with_blob| {
        let (s, g) = (s.clone(), g.clone());
        tokio::task::spawn_blocking(move || s.current_pack(&g, with_blob))
    };
    let no_pack = || ApiError::NotFound {
        code: "no_rulepack",
        message: "no rule pack is published for this group".into(),
    };
    // A conditional request first reads only the tag.
    let mut cur = fetch(!inm)
        .await
        .map_err(ApiError::internal)??
        .ok_or_else(no_pack)?;
    let tag = etag(&cur.info.sha256);
    let mut resp = if inm && none_match(&headers, &tag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        if inm {
            cur = fetch(true)
                .await
                .map_err(ApiError::internal)??
                .ok_or_else(no_pack)?;
        }
        let mut r = Body::from(cur.blob).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        r
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag(&cur.info.sha256)) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        "x-sessiontrail-pack-version",
        HeaderValue::from(cur.info.version),
    );
    if let Ok(v) = HeaderValue::from_str(&group) {
        h.insert("x-sessiontrail-pack-group", v);
    }
    Ok(resp)
}

async fn dist(state: &AppState, name: String, content_type: &'static str) -> Response {
    let store = state.store.clone();
    match tokio::task::spawn_blocking(move || store.dist_file(&name)).await {
        Ok(Ok(Some(bytes))) => {
            let tag = etag(&Sha256::digest(&bytes).into());
            let mut r = Body::from(bytes).into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            if let Ok(v) = HeaderValue::from_str(&tag) {
                h.insert(header::ETAG, v);
            }
            r
        }
        Ok(Ok(None)) => ApiError::NotFound {
            code: "not_packaged",
            message: "the extension has not been packaged into this collector's data directory"
                .into(),
        }
        .into_response(),
        Ok(Err(e)) => ApiError::from(e).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

const CRX_TYPE: &str = "application/x-chrome-extension";

/// `GET /updates.xml` (no credential): the Chrome update manifest.
pub async fn get_update_manifest(State(state): State<AppState>) -> Response {
    dist(&state, "updates.xml".into(), "application/xml").await
}

/// `GET /extension.crx` (no credential): the packed extension.
pub async fn get_crx(State(state): State<AppState>) -> Response {
    dist(&state, "extension.crx".into(), CRX_TYPE).await
}

/// `GET /extension/{file}` (no credential): a named `.crx` or `.xml` from
/// the dist directory (the update manifest's `codebase` points here).
pub async fn get_dist_file(State(state): State<AppState>, Path(file): Path<String>) -> Response {
    let ty = if file.ends_with(".xml") {
        "application/xml"
    } else {
        CRX_TYPE
    };
    dist(&state, file, ty).await
}
