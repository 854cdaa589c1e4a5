//! Credential revocation: `POST /v1/tokens/{id}/revoke` (admin only),
//! effective on the next request, idempotent, and recorded in the evidence
//! log; and `sessiontrail token revoke` on a data directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::StatusCode;
use common::{Env, get, post_json};
use sessiontrail_collector::store::Role;

/// The id part of an `st1.<id>.<secret>` credential.
fn id_of(credential: &str) -> &str {
    credential.split('.').nth(1).unwrap()
}

#[tokio::test]
async fn a_revoked_credential_is_refused_at_once_and_the_revocation_is_evidence() {
    let env = Env::new();
    let admin = env.token(Role::Admin);
    let auditor = env.token(Role::Auditor);
    let mut dev = env.device(3).await;
    assert_eq!(env.post_next(&mut dev, 2).await.status, StatusCode::OK);
    assert_eq!(
        env.call(get("/v1/events", Some(&auditor))).await.status,
        StatusCode::OK
    );

    // Only an admin may revoke.
    let path = format!("/v1/tokens/{}/revoke", id_of(&auditor));
    let r = env
        .call(post_json(&path, Some(&auditor), serde_json::json!({})))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.json());
    let r = env
        .call(post_json(&path, None, serde_json::json!({})))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let r = env
        .call(post_json(&path, Some(&admin), serde_json::json!({})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    assert_eq!(r.json()["role"], "auditor");
    let at = r.json()["revoked_ms"].as_i64().unwrap();
    let r = env.call(get("/v1/events", Some(&auditor))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.error_code(), "token_revoked");

    // Idempotent: the first revocation time stands, one audit record.
    let r = env
        .call(post_json(&path, Some(&admin), serde_json::json!({})))
        .await;
    assert_eq!(r.json()["revoked_ms"].as_i64().unwrap(), at);

    // A device credential: the device can no longer ship.
    let dpath = format!("/v1/tokens/{}/revoke", id_of(&dev.credential));
    let r = env
        .call(post_json(&dpath, Some(&admin), serde_json::json!({})))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["role"], "device");
    let r = env.post_next(&mut dev, 1).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.error_code(), "token_revoked");

    let r = env
        .call(post_json(
            "/v1/tokens/nope/revoke",
            Some(&admin),
            serde_json::json!({}),
        ))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "unknown_token");

    // Each revocation is an admin record, once, naming the credential.
    let trail = env.call(get("/v1/admin/audit", Some(&admin))).await.json();
    let revokes: Vec<&serde_json::Value> = trail
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "token.revoke")
        .collect();
    assert_eq!(revokes.len(), 2, "{trail}");
    assert!(
        revokes
            .iter()
            .any(|e| e["subject"] == id_of(&auditor) && e["details"]["role"] == "auditor")
    );
}

#[test]
fn the_cli_revokes_a_credential_in_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_sessiontrail");
    let out = std::process::Command::new(bin)
        .args(["token", "create", "--role", "auditor", "--data-dir"])
        .arg(dir.path())
        .env_remove("SESSIONTRAIL_DATA_DIR")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let credential = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let id = id_of(&credential).to_owned();

    let revoke = |id: &str| {
        std::process::Command::new(bin)
            .args(["token", "revoke", "--data-dir"])
            .arg(dir.path())
            .arg(id)
            .env_remove("SESSIONTRAIL_DATA_DIR")
            .output()
            .unwrap()
    };
    let out = revoke(&id);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("revoked auditor credential"));
    let out = revoke("no-such-id");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no credential"));

    let db = rusqlite::Connection::open(dir.path().join("sessiontrail.db")).unwrap();
    let revoked: Option<i64> = db
        .query_row("SELECT revoked_ms FROM tokens WHERE id = ?1", [&id], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(revoked.is_some());
}
