//! Router tests through `oneshot`: every endpoint, good and bad input, and
//! what ended up stored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode, header};
use common::{Env, batch_request, encode, get, post_json};
use sessiontrail_collector::config::Limits;
use sessiontrail_collector::now_ms;
use sessiontrail_collector::store::{Role, Store};
use sessiontrail_core::chain::{self, Finding};
use sessiontrail_core::record::sign_message;
use sessiontrail_core::{ChainTip, DeviceSigner, EventBody, EventKind, SignedEvent};

fn event_count(env: &Env) -> i64 {
    env.db()
        .query_row(
            "SELECT COUNT(*) FROM events e JOIN devices d ON d.id = e.device_id WHERE d.kind = 'agent'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

#[tokio::test]
async fn healthz_reports_the_store() {
    let env = Env::new();
    let r = env.call(get("/healthz", None)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["store"], "ok");
}

#[tokio::test]
async fn a_batch_is_stored_verbatim_with_index_columns() {
    let env = Env::new();
    let mut dev = env.device(1).await;
    let evs = dev.sign(10);
    let r = env.post_batch(&dev.credential, encode(&evs)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    let j = r.json();
    assert_eq!(j["accepted"], 10);
    assert_eq!(j["duplicates"], 0);
    assert_eq!(j["rejected"].as_array().unwrap().len(), 0);
    assert_eq!(j["high_water"], 10);
    let stored = env.stored(&dev.key());
    assert_eq!(stored.len(), 10);
    for ((seq, bytes), ev) in stored.iter().zip(&evs) {
        assert_eq!(*seq, ev.seq());
        assert_eq!(bytes, ev.as_bytes(), "stored bytes differ at seq {seq}");
    }
    let (user, action, severity, rules, target, trusted): (
        String,
        String,
        String,
        String,
        String,
        bool,
    ) = env
        .db()
        .query_row(
            "SELECT e.user, action, severity, rules, target, trusted FROM events e
             JOIN devices d ON d.id = e.device_id WHERE d.kind = 'agent' AND seq = 3",
            [],
            |r| r.try_into(),
        )
        .unwrap();
    assert_eq!(user, "alice@acme.test");
    assert_eq!(action, "click");
    assert_eq!(severity, "high");
    assert_eq!(rules, r#"["crm.export"]"#);
    assert_eq!(target, "Export all");
    assert!(trusted);
}

#[tokio::test]
async fn a_replayed_batch_is_acknowledged_as_duplicates_and_not_stored_twice() {
    let env = Env::new();
    let mut dev = env.device(1).await;
    let evs = dev.sign(5);
    let first = env.post_batch(&dev.credential, encode(&evs)).await;
    assert_eq!(first.json()["accepted"], 5);
    let again = env.post_batch(&dev.credential, encode(&evs)).await;
    assert_eq!(again.status, StatusCode::OK);
    let j = again.json();
    assert_eq!(j["accepted"], 0);
    assert_eq!(j["duplicates"], 5);
    assert!(j["rejected"].as_array().unwrap().is_empty());
    assert_eq!(event_count(&env), 5);
    // A partial overlap stores only the new part.
    let mut more = evs[3..].to_vec();
    more.extend(dev.sign(2));
    let j = env.post_batch(&dev.credential, encode(&more)).await.json();
    assert_eq!(
        (j["accepted"].as_u64(), j["duplicates"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(event_count(&env), 7);
}

#[tokio::test]
async fn one_altered_byte_rejects_that_record_and_keeps_the_rest() {
    let env = Env::new();
    let mut dev = env.device(1).await;
    let mut evs = dev.sign(6);
    let mut raw = evs[2].as_bytes().to_vec();
    let at = raw.len() - 80; // inside the JSON body
    raw[at] ^= 0x01;
    evs[2] = SignedEvent::from_bytes(raw).unwrap();
    // `encode` recomputes the batch checksum: the change reaches the
    // signature check.
    let r = env.post_batch(&dev.credential, encode(&evs)).await;
    assert_eq!(r.status, StatusCode::OK);
    let j = r.json();
    assert_eq!(j["accepted"], 5);
    let rej = j["rejected"].as_array().unwrap();
    assert_eq!(rej.len(), 1, "{j}");
    assert_eq!(rej[0]["index"], 2);
    assert_eq!(rej[0]["seq"], 3);
    assert_eq!(rej[0]["reason"], "altered");
    assert!(rej[0]["detail"].as_str().unwrap().contains("signature"));
    assert_eq!(
        j["gaps"],
        serde_json::json!([{"first_seq": 3, "last_seq": 3}])
    );
    let seqs: Vec<u64> = env.stored(&dev.key()).iter().map(|r| r.0).collect();
    assert_eq!(seqs, vec![1, 2, 4, 5, 6]);
    let gaps = env.store.gaps(&dev.key()).unwrap();
    assert_eq!(
        (gaps[0].first_seq, gaps[0].last_seq, gaps[0].closed_ms),
        (3, 3, None)
    );
}

#[tokio::test]
async fn one_altered_byte_without_a_new_checksum_refuses_the_batch() {
    let env = Env::new();
    let mut dev = env.device(1).await;
    let mut bytes = encode(&dev.sign(4));
    bytes[200] ^= 0x01;
    let r = env.post_batch(&dev.credential, bytes).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "malformed_batch");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("checksum")
    );
    assert_eq!(event_count(&env), 0);
}

#[tokio::test]
async fn a_wrong_signature_and_a_foreign_key_are_named() {
    let env = Env::new();
    let mut dev = env.device(1).await;
    let mut evs = dev.sign(4);
    // seq 2 re-signed by another key: same bytes, wrong signature.
    let mut raw = evs[1].as_bytes().to_vec();
    let n = raw.len();
    let sig = sign_message(&[99; 32], &raw[..n - 64]);
    raw[n - 64..].copy_from_slice(&sig);
    evs[1] = SignedEvent::from_bytes(raw).unwrap();
    // A validly signed record of a key that is not this device's.
    let mut stranger = DeviceSigner::new(&[77; 32], ChainTip::GENESIS);
    evs.push(stranger.sign(5, &EventBody::lifecycle(EventKind::Click, "mallory", "crm")));
    let j = env.post_batch(&dev.credential, encode(&evs)).await.json();
    assert_eq!(j["accepted"], 3, "{j}");
    let rej = j["rejected"].as_array().unwrap();
    let reasons: Vec<(u64, &str)> = rej
        .iter()
        .map(|r| (r["index"].as_u64().unwrap(), r["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(reasons, vec![(1, "altered"), (4, "foreign_key")]);
    let seqs: Vec<u64> = env.stored(&dev.key()).iter().map(|r| r.0).collect();
    assert_eq!(seqs, vec![1, 3, 4]);
    assert!(env.stored(&stranger.public_key()).is_empty());
}

#[tokio::test]
async fn a_forked_record_is_refused_and_the_stored_one_kept() {
    let env = Env::new();
    let mut dev = env.device(1).await;
    let evs = dev.sign(5);
    env.post_batch(&dev.credential, encode(&evs)).await;
    let mut fork = DeviceSigner::new(&common::seed(1), ChainTip::of(&evs[1]));
    let alt = fork.sign(7, &EventBody::lifecycle(EventKind::Copy, "alice", "crm"));
    assert_eq!(alt.seq(), 3);
    let j = env.post_batch(&dev.credential, encode(&[alt])).await.json();
    assert_eq!(j["accepted"], 0);
    assert_eq!(j["rejected"][0]["reason"], "forked");
    assert_eq!(env.stored(&dev.key())[2].1, evs[2].as_bytes());
}

#[tokio::test]
async fn gaps_are_recorded_and_closed_when_late_records_arrive() {
    let env = Env::new();
    let mut dev = env.device(1).await;
    let evs = dev.sign(8);
    let j = env
        .post_batch(&dev.credential, encode(&evs[..3]))
        .await
        .json();
    assert_eq!(j["gaps"], serde_json::json!([]));
    let j = env
        .post_batch(&dev.credential, encode(&evs[5..]))
        .await
        .json();
    assert_eq!(
        j["gaps"],
        serde_json::json!([{"first_seq": 4, "last_seq": 5}])
    );
    assert_eq!(j["high_water"], 8);
    let g = env.store.gaps(&dev.key()).unwrap();
    assert_eq!((g.len(), g[0].closed_ms), (1, None));
    let j = env
        .post_batch(&dev.credential, encode(&evs[3..4]))
        .await
        .json();
    assert_eq!(j["accepted"], 1);
    assert_eq!(env.store.gaps(&dev.key()).unwrap()[0].filled, 1);
    assert!(env.store.gaps(&dev.key()).unwrap()[0].closed_ms.is_none());
    env.post_batch(&dev.credential, encode(&evs[4..5])).await;
    assert!(env.store.gaps(&dev.key()).unwrap()[0].closed_ms.is_some());
    // The whole chain now verifies offline.
    let stored = env.stored(&dev.key());
    let raws: Vec<&[u8]> = stored.iter().map(|r| r.1.as_slice()).collect();
    let (_, report) = chain::verify_stream(&dev.key(), &raws, Some(8));
    assert!(report.is_clean(), "{:?}", report.findings);
}

#[tokio::test]
async fn malformed_and_truncated_bodies_are_refused_and_nothing_is_stored() {
    let env = Env::new();
    let mut dev = env.device(1).await;
    let good = encode(&dev.sign(3));
    for (name, bytes) in [
        ("garbage", b"hello, collector".repeat(8)),
        ("empty", Vec::new()),
        ("truncated", good[..good.len() - 40].to_vec()),
    ] {
        let r = env.post_batch(&dev.credential, bytes).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{name}");
        assert_eq!(r.error_code(), "malformed_batch", "{name}");
    }
    assert_eq!(event_count(&env), 0);
}

/// A 100 MB body produced lazily, counting what the server pulled.
fn huge_body(pulled: Arc<AtomicUsize>) -> Body {
    const CHUNK: usize = 64 * 1024;
    let stream = futures_util::stream::iter((0..1600).map(move |_| {
        pulled.fetch_add(CHUNK, Ordering::SeqCst);
        Ok::<_, std::io::Error>(Bytes::from(vec![0u8; CHUNK]))
    }));
    Body::from_stream(stream)
}

#[tokio::test]
async fn a_100_mb_body_is_refused_without_buffering_it() {
    let env = Env::new();
    let dev = env.device(1).await;
    let cap = Limits::default().max_body_bytes;
    // Streamed without a length: cut off at the cap.
    let pulled = Arc::new(AtomicUsize::new(0));
    let mut req = batch_request(&dev.credential, Vec::new());
    *req.body_mut() = huge_body(pulled.clone());
    let r = env.call(req).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.error_code(), "body_too_large");
    let n = pulled.load(Ordering::SeqCst);
    assert!(n <= cap + 2 * 64 * 1024, "pulled {n} bytes");
    // Declared too long: refused before reading anything.
    let pulled = Arc::new(AtomicUsize::new(0));
    let mut req = batch_request(&dev.credential, Vec::new());
    req.headers_mut()
        .insert(header::CONTENT_LENGTH, (100u64 << 20).into());
    *req.body_mut() = huge_body(pulled.clone());
    let r = env.call(req).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(pulled.load(Ordering::SeqCst), 0);
    assert_eq!(event_count(&env), 0);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn gzip_is_accepted_and_a_zip_bomb_is_refused() {
    let env = Env::new();
    let mut dev = env.device(1).await;
    let plain = encode(&dev.sign(20));
    let mut req = batch_request(&dev.credential, gzip(&plain));
    req.headers_mut()
        .insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
    let r = env.call(req).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["accepted"], 20);

    let bomb = gzip(&vec![0u8; 64 << 20]);
    assert!(bomb.len() < 200 * 1024, "bomb is {} bytes", bomb.len());
    let mut req = batch_request(&dev.credential, bomb);
    req.headers_mut()
        .insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
    let r = env.call(req).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.error_code(), "decompressed_too_large");
    assert_eq!(event_count(&env), 20);

    let mut req = batch_request(&dev.credential, b"not gzip".to_vec());
    req.headers_mut()
        .insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
    assert_eq!(env.call(req).await.status, StatusCode::BAD_REQUEST);
    let mut req = batch_request(&dev.credential, b"x".to_vec());
    req.headers_mut()
        .insert(header::CONTENT_ENCODING, "br".parse().unwrap());
    assert_eq!(
        env.call(req).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
}

#[tokio::test]
async fn roles_are_enforced_on_every_endpoint() {
    let env = Env::new();
    let mut dev = env.device(1).await;
    let auditor = env.token(Role::Auditor);
    let admin = env.token(Role::Admin);
    let key = dev.key().to_hex();
    let batch = encode(&dev.sign(2));

    // Missing credential: 401 everywhere but /healthz and /v1/enroll.
    for req in [
        Request::post("/v1/batches")
            .body(Body::from(batch.clone()))
            .unwrap(),
        get(&format!("/v1/devices/{key}"), None),
        get(&format!("/v1/devices/{key}/records"), None),
        get("/v1/admin/audit", None),
        get("/metrics", None),
        post_json(
            &format!("/v1/devices/{key}/revoke"),
            None,
            serde_json::json!({}),
        ),
        post_json("/v1/enroll-tokens", None, serde_json::json!({})),
    ] {
        let uri = req.uri().to_string();
        let r = env.call(req).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(r.error_code(), "missing_token", "{uri}");
    }
    // A bad secret for a real id is 401 too.
    let (id, _) = sessiontrail_collector::auth::parse(&auditor).unwrap();
    let forged = format!("st1.{id}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let r = env.call(get("/v1/admin/audit", Some(&forged))).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );

    // Wrong role: 403.
    let wrong = [
        (
            batch_request(&auditor, batch.clone()),
            "auditor posts a batch",
        ),
        (batch_request(&admin, batch.clone()), "admin posts a batch"),
        (
            get(&format!("/v1/devices/{key}"), Some(&dev.credential)),
            "device reads",
        ),
        (
            get("/metrics", Some(&dev.credential)),
            "device reads metrics",
        ),
        (
            post_json(
                &format!("/v1/devices/{key}/revoke"),
                Some(&auditor),
                serde_json::json!({}),
            ),
            "auditor revokes",
        ),
        (
            post_json(
                "/v1/enroll-tokens",
                Some(&dev.credential),
                serde_json::json!({}),
            ),
            "device makes enroll tokens",
        ),
    ];
    for (req, what) in wrong {
        let r = env.call(req).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{what}");
        assert_eq!(r.error_code(), "wrong_role", "{what}");
    }
    assert_eq!(event_count(&env), 0);

    // Right roles.
    assert_eq!(
        env.post_batch(&dev.credential, batch).await.status,
        StatusCode::OK
    );
    let r = env
        .call(get(&format!("/v1/devices/{key}"), Some(&auditor)))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["high_water"], 2);
    assert_eq!(r.json()["user"], "alice@acme.test");
    let r = env
        .call(get(
            &format!("/v1/devices/{key}/records?after=1"),
            Some(&auditor),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let decoded = sessiontrail_core::batch::decode(&r.body).unwrap();
    assert_eq!(decoded.len(), 1);
    assert_eq!(decoded[0].record.as_ref().unwrap().seq(), 2);
    let m = env.call(get("/metrics", Some(&admin))).await;
    assert_eq!(m.status, StatusCode::OK);
    let text = String::from_utf8(m.body).unwrap();
    assert!(
        text.contains("sessiontrail_events_accepted_total 2"),
        "{text}"
    );
    assert!(text.contains("sessiontrail_batch_duration_seconds_count"));
    assert!(text.contains("sessiontrail_store_size_bytes "));
}

#[tokio::test]
async fn enrollment_binds_a_key_and_refuses_bad_tokens_keys_and_proofs() {
    let env = Env::new();
    let token = env.enroll_token(1, now_ms() + 60_000);
    let (r, signer) = env.enroll_with(&token, 1, "alice@acme.test").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    assert_eq!(r.json()["device_key"], signer.public_key().to_hex());
    let d = env.store.device(&signer.public_key()).unwrap().unwrap();
    assert_eq!(
        (d.user.as_str(), d.device_name.as_str()),
        ("alice@acme.test", "laptop-1")
    );
    assert_eq!(d.claims["os"], "linux");

    // Reused single-use token.
    let (r, s2) = env.enroll_with(&token, 2, "bob@acme.test").await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::FORBIDDEN, "enrollment_token_used")
    );
    assert!(env.store.device(&s2.public_key()).unwrap().is_none());
    // Expired token.
    let expired = env.enroll_token(5, now_ms() - 1);
    let (r, s3) = env.enroll_with(&expired, 3, "carol@acme.test").await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::FORBIDDEN, "enrollment_token_expired")
    );
    assert!(env.store.device(&s3.public_key()).unwrap().is_none());
    // Unknown token, and a bearer credential used as an enrollment token.
    let (r, _) = env.enroll_with("st1.0123456789abcdef.nope", 4, "dan").await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_enrollment_token")
    );
    let auditor = env.token(Role::Auditor);
    let (r, _) = env.enroll_with(&auditor, 4, "dan").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Same key again.
    let t2 = env.enroll_token(1, now_ms() + 60_000);
    let (r, _) = env.enroll_with(&t2, 1, "alice@acme.test").await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::CONFLICT, "already_enrolled")
    );

    // A proof for another token, a weak key, malformed JSON.
    let t3 = env.enroll_token(1, now_ms() + 60_000);
    let s = common::seed(9);
    let key = DeviceSigner::new(&s, ChainTip::GENESIS).public_key();
    let req = serde_json::json!({
        "enrollment_token": t3, "device_key": key.to_hex(),
        "claims": {"user": "eve", "device_name": "x"},
        "proof": common::proof(&s, &t2, &key),
    });
    let r = env.call(post_json("/v1/enroll", None, req)).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::BAD_REQUEST, "bad_proof")
    );
    let mut weak = [0u8; 32];
    weak[0] = 1; // the identity point: small order
    let req = serde_json::json!({
        "enrollment_token": t3, "device_key": hex::encode(weak),
        "claims": {"user": "eve", "device_name": "x"}, "proof": "00".repeat(64),
    });
    let r = env.call(post_json("/v1/enroll", None, req)).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::BAD_REQUEST, "weak_device_key")
    );
    let r = env
        .call(
            Request::post("/v1/enroll")
                .body(Body::from("{nope"))
                .unwrap(),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::BAD_REQUEST, "bad_json")
    );
    // t3 was never consumed by the refusals.
    let (r, _) = env.enroll_with(&t3, 10, "frank").await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn admin_makes_enroll_tokens_and_revokes_and_both_are_signed_evidence() {
    let env = Env::new();
    let admin = env.token(Role::Admin);
    let r = env
        .call(post_json(
            "/v1/enroll-tokens",
            Some(&admin),
            serde_json::json!({"uses": 2, "ttl": "1h", "group": "finance"}),
        ))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let token = r.json()["enrollment_token"].as_str().unwrap().to_owned();
    let (r, signer) = env.enroll_with(&token, 5, "alice@acme.test").await;
    assert_eq!(r.status, StatusCode::CREATED);
    let cred = r.json()["credential"].as_str().unwrap().to_owned();
    let mut dev = common::TestDevice {
        signer,
        credential: cred,
    };
    assert_eq!(env.post_next(&mut dev, 3).await.status, StatusCode::OK);

    let key = dev.key().to_hex();
    let r = env
        .call(post_json(
            &format!("/v1/devices/{key}/revoke"),
            Some(&admin),
            serde_json::json!({}),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json()["revoked_ms"].as_i64().is_some());
    // Revoked: its credential no longer ingests, and nothing is stored.
    let r = env.post_next(&mut dev, 2).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::FORBIDDEN, "device_revoked")
    );
    assert_eq!(event_count(&env), 3);
    // Unknown device: 404.
    let r = env
        .call(post_json(
            &format!("/v1/devices/{}/revoke", "ab".repeat(32)),
            Some(&admin),
            serde_json::json!({}),
        ))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // The audit trail, and the same actions as collector-signed records.
    let trail = env.store.audit_trail(100).unwrap();
    let actions: Vec<&str> = trail.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(
        actions,
        vec![
            "token.create",
            "token.create",
            "device.enroll",
            "device.revoke"
        ]
    );
    assert_eq!(trail[3].subject, key);
    let ck = env.store.collector_key();
    let records = env.stored(&ck);
    assert_eq!(records.len(), 4);
    let raws: Vec<&[u8]> = records.iter().map(|r| r.1.as_slice()).collect();
    let (parsed, report) = chain::verify_stream(&ck, &raws, Some(4));
    assert!(report.is_clean(), "{:?}", report.findings);
    let body = parsed[3].as_ref().unwrap().body().unwrap();
    assert_eq!(body.app, "sessiontrail-collector");
    assert_eq!(body.url, "sessiontrail-admin:device.revoke");
    assert!(body.decision.reason.contains(&key));
    // Secrets never reach the evidence.
    let all = String::from_utf8_lossy(&raws.concat()).to_string();
    assert!(!all.contains(token.rsplit('.').next().unwrap()));
    let r = env.call(get("/v1/admin/audit", Some(&admin))).await;
    assert_eq!(r.json().as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn a_full_ingest_queue_answers_429_with_retry_after() {
    let env = Env::with_limits(Limits {
        max_inflight: 1,
        ..Limits::default()
    });
    let mut dev = env.device(1).await;
    let held = env
        .state
        .ingest_permits
        .clone()
        .try_acquire_owned()
        .unwrap();
    let r = env.post_next(&mut dev, 2).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.error_code(), "overloaded");
    assert_eq!(r.headers[header::RETRY_AFTER], "1");
    assert_eq!(event_count(&env), 0);
    drop(held);
    let r = env.post_batch(&dev.credential, encode(&[])).await;
    // An empty batch is malformed (the core refuses a zero count).
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_json() {
    let env = Env::new();
    let r = env.call(get("/nope", None)).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let r = env.call(get("/v1/batches", None)).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.error_code(), "method_not_allowed");
}

/// A signed checkpoint fetched over the API, verified: (size, root).
async fn checkpoint(env: &Env, auditor: &str) -> (u64, [u8; 32]) {
    let key = env.call(get("/v1/log/key", Some(auditor))).await;
    let vkey =
        sessiontrail_tlog::VerifierKey::parse(String::from_utf8(key.body).unwrap().trim()).unwrap();
    let r = env.call(get("/v1/log/checkpoint", Some(auditor))).await;
    assert_eq!(r.status, StatusCode::OK);
    let note = String::from_utf8(r.body).unwrap();
    let cp = sessiontrail_tlog::Checkpoint::verify(&note, vkey.name(), &vkey).unwrap();
    (cp.size, cp.root)
}

async fn consistency(env: &Env, auditor: &str, old: u64, new: u64) -> Vec<[u8; 32]> {
    let r = env
        .call(get(
            &format!("/v1/log/consistency?old={old}&new={new}"),
            Some(auditor),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let j = r.json();
    // docs/tlog.md: sizes are decimal strings, hashes standard base64.
    assert_eq!(j["old_size"], old.to_string());
    assert_eq!(j["new_size"], new.to_string());
    assert_eq!(j.as_object().unwrap().len(), 3, "{j}");
    j["consistency_path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| sessiontrail_tlog::hash_from_base64(h.as_str().unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn consistency_proofs_link_two_signed_checkpoints() {
    let env = Env::new();
    let auditor = env.token(Role::Auditor);
    let admin = env.token(Role::Admin);
    let mut dev = env.device(1).await;
    env.post_next(&mut dev, 3).await;
    let (old_size, old_root) = checkpoint(&env, &auditor).await;
    env.post_next(&mut dev, 9).await;
    let (new_size, new_root) = checkpoint(&env, &auditor).await;
    // 3 token.create + 1 device.enroll collector records, then 3 + 9 events.
    assert_eq!((old_size, new_size), (7, 16));

    let path = consistency(&env, &admin, old_size, new_size).await;
    assert!(!path.is_empty());
    sessiontrail_tlog::verify_consistency(old_size, new_size, &old_root, &new_root, &path).unwrap();
    // The proof is bound to those roots.
    assert!(
        sessiontrail_tlog::verify_consistency(old_size, new_size, &new_root, &new_root, &path)
            .is_err()
    );

    // Every pair of sizes, against roots recomputed from the stored records.
    let leaves: Vec<[u8; 32]> = {
        let db = env.db();
        let mut st = db
            .prepare("SELECT record FROM events ORDER BY leaf_index")
            .unwrap();
        st.query_map([], |r| r.get::<_, Vec<u8>>(0))
            .unwrap()
            .map(|r| sessiontrail_tlog::leaf_hash(&r.unwrap()))
            .collect()
    };
    assert_eq!(leaves.len() as u64, new_size);
    assert_eq!(sessiontrail_tlog::root_of(&leaves), new_root);
    assert_eq!(sessiontrail_tlog::root_of(&leaves[..7]), old_root);
    for old in 0..=new_size {
        for new in [old, (old + 1).min(new_size), new_size] {
            let path = consistency(&env, &auditor, old, new).await;
            if old == 0 || old == new {
                assert!(path.is_empty(), "{old}->{new}");
            }
            sessiontrail_tlog::verify_consistency(
                old,
                new,
                &sessiontrail_tlog::root_of(&leaves[..old as usize]),
                &sessiontrail_tlog::root_of(&leaves[..new as usize]),
                &path,
            )
            .unwrap_or_else(|e| panic!("{old}->{new}: {e}"));
        }
    }
}

#[tokio::test]
async fn consistency_proof_requests_are_checked() {
    let env = Env::new();
    let auditor = env.token(Role::Auditor);
    let mut dev = env.device(1).await;
    env.post_next(&mut dev, 4).await;
    // 2 token.create + 1 device.enroll, then 4 events.
    let size = 7u64;
    consistency(&env, &auditor, size, size).await;

    for (query, code) in [
        ("old=5&new=4", "old_exceeds_new"),
        ("old=8&new=0", "old_exceeds_new"),
        ("old=1&new=8", "beyond_log"),
        ("old=0&new=18446744073709551615", "beyond_log"),
        ("old=abc&new=4", "bad_query"),
        ("old=-1&new=4", "bad_query"),
        ("old=1.5&new=4", "bad_query"),
        ("old=1&new=18446744073709551616", "bad_query"),
        ("old=&new=4", "bad_query"),
        ("old=1", "bad_query"),
        ("new=4", "bad_query"),
        ("", "bad_query"),
        ("old=1&new=4&size=4", "bad_query"),
    ] {
        let r = env
            .call(get(&format!("/v1/log/consistency?{query}"), Some(&auditor)))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(r.error_code(), code, "{query}");
    }
    let r = env
        .call(get("/v1/log/consistency?old=5&new=4", Some(&auditor)))
        .await;
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("old (5)")
    );
    let r = env
        .call(get("/v1/log/consistency?old=1&new=8", Some(&auditor)))
        .await;
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("(7)"),
        "{}",
        r.json()
    );

    // Same roles as the inclusion proofs.
    let r = env
        .call(get(
            "/v1/log/consistency?old=1&new=2",
            Some(&dev.credential),
        ))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = env.call(get("/v1/log/consistency?old=1&new=2", None)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[test]
fn chain_findings_used_here_exist() {
    // Keep the reason strings this API promises in step with the core.
    let names: Vec<&str> = [
        Finding::Altered { seq: 1, index: 0 },
        Finding::Forged { seq: 1, index: 0 },
        Finding::Forked { seq: 1, index: 0 },
        Finding::BrokenLink { seq: 2, index: 0 },
        Finding::Unreadable { index: 0 },
    ]
    .iter()
    .map(|f| f.name())
    .collect();
    assert_eq!(
        names,
        ["altered", "forged", "forked", "broken_link", "unreadable"]
    );
}

#[tokio::test]
async fn the_evidence_log_covers_every_record_and_checkpoints_verify() {
    let env = Env::new();
    let auditor = env.token(Role::Auditor);
    let mut dev = env.device(1).await;
    env.post_next(&mut dev, 7).await;
    env.post_next(&mut dev, 5).await;
    // Every stored record, in leaf order, is a leaf of the log.
    let leaves: Vec<[u8; 32]> = {
        let db = env.db();
        let mut st = db
            .prepare("SELECT leaf_index, record FROM events ORDER BY leaf_index")
            .unwrap();
        let rows: Vec<(i64, Vec<u8>)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for (i, (leaf, _)) in rows.iter().enumerate() {
            assert_eq!(*leaf, i as i64, "leaf indices are dense");
        }
        rows.iter()
            .map(|(_, r)| sessiontrail_tlog::leaf_hash(r))
            .collect()
    };
    // 2 token.create + 1 device.enroll collector records, then 12 events.
    assert_eq!(leaves.len(), 15);

    let key = env.call(get("/v1/log/key", Some(&auditor))).await;
    assert_eq!(key.status, StatusCode::OK);
    let vkey =
        sessiontrail_tlog::VerifierKey::parse(String::from_utf8(key.body).unwrap().trim()).unwrap();
    let r = env.call(get("/v1/log/checkpoint", Some(&auditor))).await;
    assert_eq!(r.status, StatusCode::OK);
    let note = String::from_utf8(r.body).unwrap();
    let cp = sessiontrail_tlog::Checkpoint::verify(&note, vkey.name(), &vkey).unwrap();
    assert_eq!(cp.size, 15);
    assert_eq!(cp.root, sessiontrail_tlog::root_of(&leaves));
    // A tampered note does not verify.
    let forged = note.replacen("\n15\n", "\n14\n", 1);
    assert!(sessiontrail_tlog::Checkpoint::verify(&forged, vkey.name(), &vkey).is_err());

    for leaf in [0u64, 6, 14] {
        let r = env
            .call(get(
                &format!("/v1/log/proof?leaf={leaf}&size=15"),
                Some(&auditor),
            ))
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json()["leaf_index"], leaf.to_string());
        assert_eq!(r.json()["tree_size"], "15");
        let path: Vec<[u8; 32]> = r.json()["inclusion_path"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| sessiontrail_tlog::hash_from_base64(h.as_str().unwrap()).unwrap())
            .collect();
        sessiontrail_tlog::verify_inclusion(&leaves[leaf as usize], leaf, 15, &path, &cp.root)
            .unwrap();
    }
    let r = env
        .call(get("/v1/log/proof?leaf=15&size=15", Some(&auditor)))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = env
        .call(get("/v1/log/checkpoint", Some(&dev.credential)))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

// ------------------------------------------------------------ re-enrollment

/// `POST /v1/enroll/challenge` for `key`; the challenge (80 hex digits).
async fn challenge_for(env: &Env, key: &sessiontrail_core::DeviceKey) -> String {
    let r = env
        .call(post_json(
            "/v1/enroll/challenge",
            None,
            serde_json::json!({"device_key": key.to_hex()}),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    let j = r.json();
    let c = j["challenge"].as_str().unwrap().to_owned();
    assert_eq!(c.len(), 80);
    assert!(j["expires_ms"].as_i64().unwrap() > now_ms());
    c
}

/// The device's re-enrollment proof: its signature over the core's message.
fn reenroll_proof(seed: &[u8; 32], token: &str, challenge_hex: &str) -> String {
    let key = DeviceSigner::new(seed, ChainTip::GENESIS).public_key();
    let mut c = [0u8; 40];
    hex::decode_to_slice(challenge_hex, &mut c).unwrap();
    let m = sessiontrail_core::keys::reenrollment_proof_message(token, &key, &c);
    hex::encode(sign_message(seed, &m))
}

async fn reenroll_raw(env: &Env, body: serde_json::Value) -> common::Reply {
    env.call(post_json("/v1/reenroll", None, body)).await
}

/// A full re-enrollment by the holder of `seed_byte`'s key: challenge, proof, request.
async fn reenroll(env: &Env, seed_byte: u8, token: &str) -> (common::Reply, serde_json::Value) {
    let s = common::seed(seed_byte);
    let key = DeviceSigner::new(&s, ChainTip::GENESIS).public_key();
    let c = challenge_for(env, &key).await;
    let body = serde_json::json!({
        "enrollment_token": token,
        "device_key": key.to_hex(),
        "challenge": c,
        "proof": reenroll_proof(&s, token, &c),
    });
    (reenroll_raw(env, body.clone()).await, body)
}

fn token_uses(env: &Env, token: &str) -> u64 {
    let id = token.split('.').nth(1).unwrap();
    env.store.token(id).unwrap().unwrap().uses
}

#[tokio::test]
async fn reenrollment_with_the_same_key_issues_a_new_credential_and_revokes_the_old_one() {
    let env = Env::new();
    // A single-use token, as `enroll-token create` makes by default.
    let token = env.enroll_token(1, now_ms() + 3_600_000);
    let (r, signer) = env.enroll_with(&token, 20, "alice@acme.test").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let first = r.json();
    let mut dev = common::TestDevice {
        signer,
        credential: first["credential"].as_str().unwrap().to_owned(),
    };
    let key = dev.key();
    assert_eq!(env.post_next(&mut dev, 3).await.status, StatusCode::OK);
    // The device lost that answer or its stored credential, and kept its
    // key: enrolling again is refused, with a pointer to re-enrollment.
    let (r, _) = env.enroll_with(&token, 20, "alice@acme.test").await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::CONFLICT, "already_enrolled")
    );
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/v1/reenroll")
    );

    // Re-enrollment with the token it enrolled with, though it has no use left.
    assert_eq!(token_uses(&env, &token), 1);
    let (r, replay) = reenroll(&env, 20, &token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    let j = r.json();
    assert_eq!(j["device_key"], key.to_hex());
    assert_eq!(j["user"], "alice@acme.test");
    assert_eq!(j["device_name"], "laptop-1");
    assert_eq!(
        j["enrolled_ms"], first["enrolled_ms"],
        "the enrollment time is kept"
    );
    assert_eq!(j["credentials_revoked"], 1);
    let new_cred = j["credential"].as_str().unwrap().to_owned();
    assert_ne!(new_cred, dev.credential);
    assert_eq!(
        token_uses(&env, &token),
        1,
        "the enrolling token spends no use"
    );

    // The old credential is refused; the new one ships the same chain on.
    let old_cred = std::mem::replace(&mut dev.credential, new_cred.clone());
    let next = encode(&dev.sign(2));
    let r = env.post_batch(&old_cred, next.clone()).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::UNAUTHORIZED, "token_revoked")
    );
    let r = env.post_batch(&new_cred, next.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    assert_eq!(r.json()["accepted"], 2);
    assert_eq!(r.json()["gaps"], serde_json::json!([]));
    // A resend of the same batch is answered as duplicates: nothing twice.
    let r = env.post_batch(&new_cred, next).await;
    assert_eq!(
        (
            r.json()["accepted"].as_u64(),
            r.json()["duplicates"].as_u64()
        ),
        (Some(0), Some(2))
    );
    let seqs: Vec<u64> = env.stored(&key).iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);

    // The same request again (challenge and proof seen once) is refused:
    // the challenge died when the credential was issued.
    let r = reenroll_raw(&env, replay).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_challenge")
    );
    assert_eq!(
        env.post_next(&mut dev, 1).await.status,
        StatusCode::OK,
        "and revoked nothing"
    );

    // Another token of the device's group works too, and spends one of its uses.
    let other = env.enroll_token(3, now_ms() + 3_600_000);
    let (r, _) = reenroll(&env, 20, &other).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    assert_eq!(r.json()["credentials_revoked"], 1);
    assert_eq!(token_uses(&env, &other), 1);
    assert_eq!(
        env.post_next(&mut dev, 1).await.status,
        StatusCode::UNAUTHORIZED
    );
    // A token of another group may not move the device there.
    let admin = env.token(Role::Admin);
    let r = env
        .call(post_json(
            "/v1/enroll-tokens",
            Some(&admin),
            serde_json::json!({"uses": 5, "ttl": "1h", "group": "finance"}),
        ))
        .await;
    let finance = r.json()["enrollment_token"].as_str().unwrap().to_owned();
    let (r, _) = reenroll(&env, 20, &finance).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::FORBIDDEN, "wrong_group")
    );
    assert_eq!(token_uses(&env, &finance), 0);

    // Audited like every admin action, on the collector's signed chain,
    // without secrets.
    let trail = env.store.audit_trail(100).unwrap();
    let re: Vec<_> = trail
        .iter()
        .filter(|a| a.action == "device.reenroll")
        .collect();
    assert_eq!(re.len(), 2);
    assert_eq!(re[0].subject, key.to_hex());
    assert_eq!(
        re[0].actor,
        format!("enroll-token:{}", token.split('.').nth(1).unwrap())
    );
    assert_eq!(re[0].details["credentials_revoked"], 1);
    assert_eq!(re[0].details["high_water"], 3);
    assert_eq!(re[0].details["enrolled_with_this_token"], true);
    assert_eq!(re[1].details["enrolled_with_this_token"], false);
    let ck = env.store.collector_key();
    let records = env.stored(&ck);
    let raws: Vec<&[u8]> = records.iter().map(|r| r.1.as_slice()).collect();
    let (parsed, report) = chain::verify_stream(&ck, &raws, Some(raws.len() as u64));
    assert!(report.is_clean(), "{:?}", report.findings);
    let bodies: Vec<_> = parsed
        .iter()
        .map(|p| p.as_ref().unwrap().body().unwrap())
        .collect();
    assert_eq!(
        bodies
            .iter()
            .filter(|b| b.url == "sessiontrail-admin:device.reenroll")
            .count(),
        2
    );
    let all = String::from_utf8_lossy(&raws.concat()).to_string();
    for secret in [&token, &other, &new_cred, &old_cred] {
        assert!(!all.contains(secret.rsplit('.').next().unwrap()));
    }
}

#[tokio::test]
async fn a_revoked_key_is_never_enrolled_or_reenrolled_again() {
    let env = Env::new();
    let admin = env.token(Role::Admin);
    let token = env.enroll_token(5, now_ms() + 3_600_000);
    let (r, signer) = env.enroll_with(&token, 21, "bob@acme.test").await;
    assert_eq!(r.status, StatusCode::CREATED);
    let key = signer.public_key();
    let r = env
        .call(post_json(
            &format!("/v1/devices/{}/revoke", key.to_hex()),
            Some(&admin),
            serde_json::json!({}),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let generation = env.store.credential_generation(&key).unwrap();

    let (r, _) = env.enroll_with(&token, 21, "bob@acme.test").await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::FORBIDDEN, "device_revoked")
    );
    let (r, _) = reenroll(&env, 21, &token).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::FORBIDDEN, "device_revoked")
    );
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );
    // Nothing was issued, spent or audited.
    assert_eq!(env.store.credential_generation(&key).unwrap(), generation);
    assert_eq!(token_uses(&env, &token), 1);
    let actions: Vec<String> = env
        .store
        .audit_trail(100)
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert!(
        !actions.iter().any(|a| a == "device.reenroll"),
        "{actions:?}"
    );
    assert!(
        env.store
            .device(&key)
            .unwrap()
            .unwrap()
            .revoked_ms
            .is_some()
    );
}

#[tokio::test]
async fn reenrollment_without_a_valid_proof_or_challenge_is_refused() {
    let env = Env::new();
    let token = env.enroll_token(5, now_ms() + 3_600_000);
    let (r, signer) = env.enroll_with(&token, 22, "carol@acme.test").await;
    assert_eq!(r.status, StatusCode::CREATED);
    let mut dev = common::TestDevice {
        signer,
        credential: r.json()["credential"].as_str().unwrap().to_owned(),
    };
    let key = dev.key();
    let s = common::seed(22);
    let c = challenge_for(&env, &key).await;
    let req = |token: &str, challenge: &str, proof: String| {
        serde_json::json!({
            "enrollment_token": token, "device_key": key.to_hex(),
            "challenge": challenge, "proof": proof,
        })
    };
    let code = |r: &common::Reply| (r.status, r.error_code());

    // Signed by another key.
    let r = reenroll_raw(
        &env,
        req(&token, &c, reenroll_proof(&common::seed(23), &token, &c)),
    )
    .await;
    assert_eq!(code(&r), (StatusCode::BAD_REQUEST, "bad_proof".into()));
    // The enrollment proof (no challenge: replayable) is not a re-enrollment proof.
    let r = reenroll_raw(&env, req(&token, &c, common::proof(&s, &token, &key))).await;
    assert_eq!(code(&r), (StatusCode::BAD_REQUEST, "bad_proof".into()));
    // A proof over another (valid) challenge, or another token, than the
    // one presented. (Two challenges asked in the same millisecond are
    // equal, so the other one is made a second older.)
    let ck = env.store.reenroll_challenge_key();
    let generation = env.store.credential_generation(&key).unwrap();
    let c2 = hex::encode(sessiontrail_collector::enroll::challenge(
        &ck,
        &key,
        now_ms() - 1_000,
        generation,
    ));
    let r = reenroll_raw(&env, req(&token, &c2, reenroll_proof(&s, &token, &c))).await;
    assert_eq!(code(&r), (StatusCode::BAD_REQUEST, "bad_proof".into()));
    let t2 = env.enroll_token(5, now_ms() + 3_600_000);
    let r = reenroll_raw(&env, req(&t2, &c, reenroll_proof(&s, &token, &c))).await;
    assert_eq!(code(&r), (StatusCode::BAD_REQUEST, "bad_proof".into()));
    // Malformed challenge and proof.
    let r = reenroll_raw(&env, req(&token, "abcd", "00".repeat(64))).await;
    assert_eq!(code(&r), (StatusCode::BAD_REQUEST, "bad_challenge".into()));
    let r = reenroll_raw(&env, req(&token, &c, "zz".into())).await;
    assert_eq!(code(&r), (StatusCode::BAD_REQUEST, "bad_proof".into()));

    // A challenge the collector did not issue (validly signed by the key),
    // one issued for another key, and an expired one.
    let mut forged = [0u8; 40];
    forged[..8].copy_from_slice(&(now_ms() as u64).to_be_bytes());
    forged[8..].fill(7);
    let forged = hex::encode(forged);
    let r = reenroll_raw(
        &env,
        req(&token, &forged, reenroll_proof(&s, &token, &forged)),
    )
    .await;
    assert_eq!(
        code(&r),
        (StatusCode::UNAUTHORIZED, "invalid_challenge".into())
    );
    let other_key = DeviceSigner::new(&common::seed(24), ChainTip::GENESIS).public_key();
    let theirs = challenge_for(&env, &other_key).await;
    let r = reenroll_raw(
        &env,
        req(&token, &theirs, reenroll_proof(&s, &token, &theirs)),
    )
    .await;
    assert_eq!(
        code(&r),
        (StatusCode::UNAUTHORIZED, "invalid_challenge".into())
    );
    let old = hex::encode(sessiontrail_collector::enroll::challenge(
        &ck,
        &key,
        now_ms() - sessiontrail_collector::enroll::CHALLENGE_TTL_MS - 1_000,
        generation,
    ));
    let r = reenroll_raw(&env, req(&token, &old, reenroll_proof(&s, &token, &old))).await;
    assert_eq!(
        code(&r),
        (StatusCode::UNAUTHORIZED, "invalid_challenge".into())
    );
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );

    // Good proof and challenge, but no valid token.
    let expired = env.enroll_token(5, now_ms() - 1);
    let r = reenroll_raw(&env, req(&expired, &c, reenroll_proof(&s, &expired, &c))).await;
    assert_eq!(
        code(&r),
        (StatusCode::FORBIDDEN, "enrollment_token_expired".into())
    );
    let fake = "st1.0123456789abcdef.nope";
    let r = reenroll_raw(&env, req(fake, &c, reenroll_proof(&s, fake, &c))).await;
    assert_eq!(
        code(&r),
        (StatusCode::UNAUTHORIZED, "invalid_enrollment_token".into())
    );
    let auditor = env.token(Role::Auditor);
    let r = reenroll_raw(&env, req(&auditor, &c, reenroll_proof(&s, &auditor, &c))).await;
    assert_eq!(
        code(&r),
        (StatusCode::UNAUTHORIZED, "invalid_enrollment_token".into())
    );

    // A key that was never enrolled: its holder is told to enroll.
    let (r, _) = reenroll(&env, 25, &token).await;
    assert_eq!(code(&r), (StatusCode::NOT_FOUND, "not_enrolled".into()));

    // None of this issued or revoked anything: the credential still works.
    assert_eq!(env.store.credential_generation(&key).unwrap(), generation);
    assert_eq!(env.post_next(&mut dev, 2).await.status, StatusCode::OK);
    assert!(
        !env.store
            .audit_trail(100)
            .unwrap()
            .iter()
            .any(|a| a.action == "device.reenroll")
    );
    // And the untouched challenge still works once.
    let r = reenroll_raw(&env, req(&token, &c, reenroll_proof(&s, &token, &c))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
}
