//! Rule-pack publishing and serving, and the force-install files, through
//! `oneshot`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::Env;
use sessiontrail_collector::store::{Actor, Role, Store};
use sessiontrail_collector::{auth, now_ms};
use sessiontrail_core::rulepack::{self, AdminKey, compiled};
use sha2::{Digest as _, Sha256};

const ADMIN_SEED: [u8; 32] = [7; 32];

fn pack_src(version: u64, title: &str) -> String {
    format!(
        r#"
[pack]
id = "t"
version = {version}

[[app]]
id = "crm"
name = "CRM"
hosts = ["crm.acme.test"]

[[rule]]
id = "export"
app = "crm"
title = "{title}"
actions = ["click"]
severity = "high"
"#
    )
}

fn blob(version: u64, title: &str) -> Vec<u8> {
    let p = rulepack::parse("t.toml", &pack_src(version, title)).unwrap();
    compiled::compile(&p, &ADMIN_SEED).unwrap()
}

fn publish(cred: Option<&str>, group: &str, bytes: Vec<u8>) -> Request<Body> {
    let mut b = Request::post(format!("/v1/rulepacks?group={group}"))
        .header(header::CONTENT_TYPE, "application/octet-stream");
    if let Some(c) = cred {
        b = b.header(header::AUTHORIZATION, format!("Bearer {c}"));
    }
    b.body(Body::from(bytes)).unwrap()
}

fn current(cred: &str, query: &str, inm: Option<&str>) -> Request<Body> {
    let mut b = Request::get(format!("/v1/rulepacks/current{query}"))
        .header(header::AUTHORIZATION, format!("Bearer {cred}"));
    if let Some(t) = inm {
        b = b.header(header::IF_NONE_MATCH, t);
    }
    b.body(Body::empty()).unwrap()
}

fn etag_of(b: &[u8]) -> String {
    format!("\"{}\"", hex::encode(Sha256::digest(b)))
}

fn pack_rows(env: &Env) -> i64 {
    env.db()
        .query_row("SELECT COUNT(*) FROM rulepacks", [], |r| r.get(0))
        .unwrap()
}

/// A device enrolled with a token of `group` (`None`: no group).
async fn device_in(env: &Env, group: Option<&str>, seed: u8) -> String {
    let g = auth::generate(
        Role::Enroll,
        Some(now_ms() + 60_000),
        Some(1),
        group.map(str::to_owned),
    )
    .unwrap();
    env.store.create_token(g.token, &Actor::cli()).unwrap();
    let (r, _) = env.enroll_with(&g.credential, seed, "bob@acme.test").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    r.json()["credential"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn bad_pack_bytes_are_refused_and_nothing_is_stored() {
    let env = Env::new();
    let admin = env.token(Role::Admin);
    let good = blob(1, "Export");
    let mut altered = good.clone();
    altered[60] ^= 1;
    let mut forged_sig = good.clone();
    let last = forged_sig.len() - 1;
    forged_sig[last] ^= 1;
    for bad in [
        b"not a pack".to_vec(),
        good[..good.len() - 1].to_vec(),
        altered,
        forged_sig,
        Vec::new(),
    ] {
        let r = env.call(publish(Some(&admin), "default", bad)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json());
        assert_eq!(r.error_code(), "bad_rulepack");
    }
    for bad_group in ["", "a%20b", "x/y", &"g".repeat(65)] {
        let r = env
            .call(publish(Some(&admin), bad_group, good.clone()))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad_group:?}");
    }
    assert_eq!(pack_rows(&env), 0);
    let r = env.call(current(&admin, "?group=default", None)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "no_rulepack");
}

#[tokio::test]
async fn versions_only_grow_and_publishes_are_audited() {
    let env = Env::new();
    let admin = env.token(Role::Admin);
    let v1 = blob(1, "Export");
    let r = env.call(publish(Some(&admin), "default", v1.clone())).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let j = r.json();
    assert_eq!(j["version"], 1);
    assert_eq!(j["pack_id"], "t");
    assert_eq!(j["sha256"], hex::encode(Sha256::digest(&v1)));
    assert_eq!(j["signer"], AdminKey::from_seed(&ADMIN_SEED).to_hex());
    assert_eq!(j["already_published"], false);

    // A retry of the same bytes is answered, not stored twice.
    let r = env.call(publish(Some(&admin), "default", v1.clone())).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["already_published"], true);
    // Same version, other content.
    let r = env
        .call(publish(Some(&admin), "default", blob(1, "Other")))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.error_code(), "version_not_newer");
    let v3 = blob(3, "Export");
    let r = env.call(publish(Some(&admin), "default", v3.clone())).await;
    assert_eq!(r.status, StatusCode::CREATED);
    // Rollback.
    let r = env
        .call(publish(Some(&admin), "default", blob(2, "Export")))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.error_code(), "rollback");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains('3'));
    // Groups are independent.
    let r = env.call(publish(Some(&admin), "finance", v1.clone())).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(pack_rows(&env), 3);

    let r = env.call(current(&admin, "?group=default", None)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, v3);

    // Every publish is an admin action, signed into the evidence log.
    let trail = env.store.audit_trail(100).unwrap();
    let pubs: Vec<_> = trail
        .iter()
        .filter(|a| a.action == "rulepack.publish")
        .collect();
    assert_eq!(pubs.len(), 3);
    assert_eq!(pubs[1].subject, "default");
    assert_eq!(pubs[1].details["version"], 3);
    assert_eq!(
        pubs[1].details["sha256"],
        hex::encode(Sha256::digest(&v3)).as_str()
    );
    assert!(pubs[1].actor.starts_with("token:"));
}

#[tokio::test]
async fn only_admins_publish_and_readers_need_a_role() {
    let env = Env::new();
    let admin = env.token(Role::Admin);
    let auditor = env.token(Role::Auditor);
    let device = device_in(&env, None, 1).await;
    let v1 = blob(1, "Export");
    let r = env.call(publish(None, "default", v1.clone())).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    for cred in [&auditor, &device] {
        let r = env.call(publish(Some(cred), "default", v1.clone())).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.error_code(), "wrong_role");
    }
    assert_eq!(pack_rows(&env), 0);
    env.call(publish(Some(&admin), "default", v1.clone())).await;
    let r = env
        .call(
            Request::get("/v1/rulepacks/current?group=default")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Auditors and admins read any group, but must name it.
    let r = env.call(current(&auditor, "?group=default", None)).await;
    assert_eq!((r.status, r.body), (StatusCode::OK, v1.clone()));
    let r = env.call(current(&auditor, "", None)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "missing_group");
}

#[tokio::test]
async fn etag_and_if_none_match() {
    let env = Env::new();
    let admin = env.token(Role::Admin);
    let device = device_in(&env, None, 2).await;
    let v1 = blob(1, "Export");
    env.call(publish(Some(&admin), "default", v1.clone())).await;
    let r = env.call(current(&device, "", None)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, v1);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/octet-stream");
    let tag = r.headers[header::ETAG].to_str().unwrap().to_owned();
    assert_eq!(tag, etag_of(&v1));
    assert_eq!(r.headers["x-sessiontrail-pack-version"], "1");
    // The blob verifies in the core against the pinned admin key.
    compiled::verify(&r.body, &[AdminKey::from_seed(&ADMIN_SEED)], None).unwrap();

    for inm in [
        tag.clone(),
        format!("W/{tag}"),
        format!("\"x\", {tag}"),
        "*".into(),
    ] {
        let r = env.call(current(&device, "", Some(&inm))).await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{inm}");
        assert!(r.body.is_empty());
        assert_eq!(r.headers[header::ETAG].to_str().unwrap(), tag);
    }
    let r = env.call(current(&device, "", Some("\"stale\""))).await;
    assert_eq!((r.status, r.body), (StatusCode::OK, v1));
    // A new version changes the tag: the old one no longer matches.
    let v2 = blob(2, "Export");
    env.call(publish(Some(&admin), "default", v2.clone())).await;
    let r = env.call(current(&device, "", Some(&tag))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[header::ETAG].to_str().unwrap(), etag_of(&v2));
    assert_eq!(r.body, v2);
}

#[tokio::test]
async fn a_device_gets_its_own_groups_pack_only() {
    let env = Env::new();
    let admin = env.token(Role::Admin);
    let finance_dev = device_in(&env, Some("finance"), 3).await;
    let plain_dev = device_in(&env, None, 4).await;
    let fin = blob(5, "Finance export");
    let def = blob(1, "Export");
    env.call(publish(Some(&admin), "finance", fin.clone()))
        .await;
    env.call(publish(Some(&admin), "default", def.clone()))
        .await;

    let r = env.call(current(&finance_dev, "", None)).await;
    assert_eq!((r.status, r.body), (StatusCode::OK, fin.clone()));
    assert_eq!(r.headers["x-sessiontrail-pack-group"], "finance");
    let r = env
        .call(current(&finance_dev, "?group=finance", None))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // Asking for another group's pack is refused.
    let r = env
        .call(current(&finance_dev, "?group=default", None))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.error_code(), "wrong_group");
    let r = env.call(current(&plain_dev, "?group=finance", None)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.error_code(), "wrong_group");
    // A device enrolled without a group is in `default`.
    let r = env.call(current(&plain_dev, "?group=default", None)).await;
    assert_eq!((r.status, r.body), (StatusCode::OK, def));
    // A group with nothing published.
    let none_dev = device_in(&env, Some("empty"), 5).await;
    let r = env.call(current(&none_dev, "", None)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn force_install_files_are_served_without_credentials() {
    let env = Env::new();
    let get = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
    let r = env.call(get("/updates.xml")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "not_packaged");
    let dist = env.dir.path().join("dist");
    std::fs::create_dir_all(&dist).unwrap();
    std::fs::write(dist.join("updates.xml"), "<gupdate/>").unwrap();
    std::fs::write(dist.join("sessiontrail-0.1.0.crx"), b"Cr24crx").unwrap();
    std::fs::write(env.dir.path().join("secret.xml"), "no").unwrap();

    let r = env.call(get("/updates.xml")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, b"<gupdate/>");
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/xml");
    let r = env.call(get("/extension/sessiontrail-0.1.0.crx")).await;
    assert_eq!(
        (r.status, r.body.as_slice()),
        (StatusCode::OK, &b"Cr24crx"[..])
    );
    assert_eq!(
        r.headers[header::CONTENT_TYPE],
        "application/x-chrome-extension"
    );
    // `/extension.crx` falls back to the newest packed CRX.
    let r = env.call(get("/extension.crx")).await;
    assert_eq!(
        (r.status, r.body.as_slice()),
        (StatusCode::OK, &b"Cr24crx"[..])
    );
    // Nothing outside dist/, nothing but .crx/.xml.
    for bad in [
        "/extension/..%2Fsecret.xml",
        "/extension/.hidden.crx",
        "/extension/sessiontrail.db",
        "/extension/collector.key",
    ] {
        let r = env.call(get(bad)).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{bad}");
    }
}
