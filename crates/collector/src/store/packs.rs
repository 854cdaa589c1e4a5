//! Signed rule packs per policy group, and the extension's distribution
//! files: the part of the store behind `POST /v1/rulepacks`,
//! `GET /v1/rulepacks/current` and `GET /updates.xml` / `/extension.crx`.
//!
//! The store keeps the admin-signed blob verbatim. It does not decide whom
//! to trust: extensions verify the admin signature against the keys pinned
//! by their managed policy. The store enforces only what it can enforce for
//! everyone: within a group, versions only grow (a publish is refused unless
//! its version is above the one in force), and every publish is an admin
//! action on the evidence log, in the same transaction.

use std::path::PathBuf;

use rusqlite::{OptionalExtension as _, params};
use serde::Serialize;

use super::sqlite::{SqliteStore, append_audit, blob32};
use super::{Actor, StoreError};
use crate::audit::AdminAction;

/// The group of devices enrolled with a token that names none.
pub const DEFAULT_GROUP: &str = "default";

/// A compiled pack to publish, already checked by the caller to parse as a
/// compiled pack (see [`crate::rulepacks::inspect`]).
#[derive(Debug, Clone)]
pub struct NewPack {
    pub group: String,
    pub pack_id: String,
    pub version: u64,
    /// SHA-256 of the payload (what `rule_pack_applied` events carry).
    pub checksum: [u8; 32],
    /// SHA-256 of the whole blob (the HTTP ETag).
    pub sha256: [u8; 32],
    /// The admin key that signed it (as the blob says; not trusted here).
    pub signer: [u8; 32],
    pub blob: Vec<u8>,
}

/// A published pack, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackInfo {
    pub group: String,
    pub pack_id: String,
    pub version: u64,
    #[serde(with = "hex_bytes")]
    pub checksum: [u8; 32],
    #[serde(with = "hex_bytes")]
    pub sha256: [u8; 32],
    #[serde(with = "hex_bytes")]
    pub signer: [u8; 32],
    pub bytes: u64,
    pub published_ms: i64,
    pub published_by: String,
    /// Leaf of the collector-signed `rulepack.publish` record.
    pub leaf_index: u64,
}

mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(b: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }
}

/// The pack in force for a group, with its bytes.
#[derive(Debug, Clone)]
pub struct CurrentPack {
    pub info: PackInfo,
    pub blob: Vec<u8>,
}

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// Stored as the group's new pack.
    New(PackInfo),
    /// The very same blob is already in force (a retry): nothing changed.
    AlreadyCurrent(PackInfo),
}

/// Why a publish was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishRefusal {
    /// Lower than the version in force.
    Rollback { version: u64, in_force: u64 },
    /// Same version as the one in force, other bytes: bump the version.
    SameVersionDifferentContent { version: u64 },
}

/// The directory under the data directory holding the extension's
/// distribution files (`updates.xml`, `*.crx`), copied there from
/// `target/dist/` after `cargo xtask package`.
pub const DIST_DIR: &str = "dist";

/// Whether `name` may be served from [`DIST_DIR`]: a plain file name (no
/// path, no leading dot) ending in `.xml` or `.crx`.
pub fn dist_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && (name.ends_with(".xml") || name.ends_with(".crx"))
}

/// Rule packs and distribution files (a supertrait of [`super::Store`]).
pub trait PackStore {
    /// Publishes `pack` for its group if its version is above the one in
    /// force; records `rulepack.publish` in the admin audit trail and the
    /// evidence log in the same durable transaction.
    fn publish_pack(
        &self,
        pack: NewPack,
        actor: &Actor,
    ) -> Result<Result<Published, PublishRefusal>, StoreError>;

    /// The group's pack in force (the highest version), if any. Without
    /// `with_blob`, `blob` is empty (for conditional requests).
    fn current_pack(&self, group: &str, with_blob: bool)
    -> Result<Option<CurrentPack>, StoreError>;

    /// The policy group of an enrolled device: the group of the enrollment
    /// token it used, else [`DEFAULT_GROUP`]. `None` for an unknown id.
    fn device_group(&self, device_id: i64) -> Result<Option<String>, StoreError>;

    /// The bytes of a distribution file (`name` as in [`dist_name_ok`]),
    /// `None` when it is not there. `extension.crx` falls back to the most
    /// recently written `*.crx`.
    fn dist_file(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
}

const INFO_COLS: &str = "group_name, pack_id, version, checksum, sha256, signer, length(blob),
    published_ms, published_by, leaf_index";

type InfoRow = (
    String,
    String,
    i64,
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
    i64,
    i64,
    String,
    i64,
);

fn info_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<InfoRow> {
    r.try_into()
}

fn finish_info(row: InfoRow) -> Result<PackInfo, StoreError> {
    let (group, pack_id, version, checksum, sha256, signer, bytes, published_ms, by, leaf) = row;
    Ok(PackInfo {
        group,
        pack_id,
        version: version as u64,
        checksum: blob32(checksum, "pack checksum")?,
        sha256: blob32(sha256, "pack sha256")?,
        signer: blob32(signer, "pack signer")?,
        bytes: bytes.max(0) as u64,
        published_ms,
        published_by: by,
        leaf_index: leaf.max(0) as u64,
    })
}

fn current_info(conn: &rusqlite::Connection, group: &str) -> Result<Option<PackInfo>, StoreError> {
    let sql = format!(
        "SELECT {INFO_COLS} FROM rulepacks WHERE group_name = ?1 ORDER BY version DESC LIMIT 1"
    );
    conn.prepare_cached(&sql)?
        .query_row([group], info_row)
        .optional()?
        .map(finish_info)
        .transpose()
}

impl PackStore for SqliteStore {
    fn publish_pack(
        &self,
        pack: NewPack,
        actor: &Actor,
    ) -> Result<Result<Published, PublishRefusal>, StoreError> {
        let actor = actor.0.clone();
        self.publish(move |tx, ctx| {
            if let Some(cur) = current_info(tx, &pack.group)? {
                if pack.version < cur.version {
                    return Ok(Err(PublishRefusal::Rollback {
                        version: pack.version,
                        in_force: cur.version,
                    }));
                }
                if pack.version == cur.version {
                    return Ok(if pack.sha256 == cur.sha256 {
                        Ok(Published::AlreadyCurrent(cur))
                    } else {
                        Err(PublishRefusal::SameVersionDifferentContent {
                            version: pack.version,
                        })
                    });
                }
            }
            let now = crate::now_ms();
            let leaf = append_audit(
                tx,
                ctx,
                &AdminAction {
                    action: "rulepack.publish",
                    actor: actor.clone(),
                    subject: pack.group.clone(),
                    details: serde_json::json!({
                        "pack_id": pack.pack_id,
                        "version": pack.version,
                        "checksum": hex::encode(pack.checksum),
                        "sha256": hex::encode(pack.sha256),
                        "signer": hex::encode(pack.signer),
                        "bytes": pack.blob.len(),
                    }),
                },
                now,
            )?;
            tx.execute(
                "INSERT INTO rulepacks (group_name, pack_id, version, checksum, sha256, signer,
                    blob, published_ms, published_by, leaf_index)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    pack.group,
                    pack.pack_id,
                    pack.version as i64,
                    &pack.checksum[..],
                    &pack.sha256[..],
                    &pack.signer[..],
                    pack.blob,
                    now,
                    actor,
                    leaf,
                ],
            )?;
            Ok(Ok(Published::New(PackInfo {
                group: pack.group,
                pack_id: pack.pack_id,
                version: pack.version,
                checksum: pack.checksum,
                sha256: pack.sha256,
                signer: pack.signer,
                bytes: pack.blob.len() as u64,
                published_ms: now,
                published_by: actor,
                leaf_index: leaf as u64,
            })))
        })
    }

    fn current_pack(
        &self,
        group: &str,
        with_blob: bool,
    ) -> Result<Option<CurrentPack>, StoreError> {
        self.read(|c| {
            let Some(info) = current_info(c, group)? else {
                return Ok(None);
            };
            let blob = if with_blob {
                c.prepare_cached(
                    "SELECT blob FROM rulepacks WHERE group_name = ?1 AND version = ?2",
                )?
                .query_row(params![group, info.version as i64], |r| r.get(0))?
            } else {
                Vec::new()
            };
            Ok(Some(CurrentPack { info, blob }))
        })
    }

    fn device_group(&self, device_id: i64) -> Result<Option<String>, StoreError> {
        self.read(|c| {
            let row: Option<Option<String>> = c
                .prepare_cached(
                    "SELECT t.group_name FROM devices d LEFT JOIN tokens t ON t.id = d.enroll_token_id
                     WHERE d.id = ?1",
                )?
                .query_row([device_id], |r| r.get(0))
                .optional()?;
            Ok(row.map(|g| g.unwrap_or_else(|| DEFAULT_GROUP.to_owned())))
        })
    }

    fn dist_file(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if !dist_name_ok(name) {
            return Ok(None);
        }
        let dir: PathBuf = self
            .path()
            .parent()
            .map(|d| d.join(DIST_DIR))
            .ok_or_else(|| StoreError::Io("the store has no data directory".into()))?;
        let mut path = dir.join(name);
        if name == "extension.crx" && !path.exists() {
            let newest = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| dist_name_ok(n) && n.ends_with(".crx"))
                })
                .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
                .max();
            match newest {
                Some((_, p)) => path = p,
                None => return Ok(None),
            }
        }
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
