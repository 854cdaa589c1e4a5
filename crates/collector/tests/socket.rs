//! The collector on a real socket (127.0.0.1:0) with an HTTP client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Env, encode, proof};
use sessiontrail_collector::server;
use sessiontrail_collector::store::{Role, Store};
use sessiontrail_core::{ChainTip, DeviceSigner};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_ingest_and_read_back_over_tcp() {
    let env = Env::new();
    let auditor = env.token(Role::Auditor);
    let enroll = env.enroll_token(1, sessiontrail_collector::now_ms() + 60_000);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::run(listener, env.app(), None, async {
        let _ = stop_rx.await;
    }));
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();

    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let seed = common::seed(3);
    let mut signer = DeviceSigner::new(&seed, ChainTip::GENESIS);
    let key = signer.public_key();
    let body = serde_json::json!({
        "enrollment_token": enroll,
        "device_key": key.to_hex(),
        "claims": {"user": "alice@acme.test", "device_name": "laptop"},
        "proof": proof(&seed, &enroll, &key),
    });
    let r = http
        .post(format!("{base}/v1/enroll"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let j: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let cred = j["credential"].as_str().unwrap().to_owned();

    // Concurrent batches of one device: the store serialises them, so the
    // chain ends up whole whatever the arrival order.
    let batches: Vec<Vec<u8>> = (0..8)
        .map(|b| {
            let evs: Vec<_> = (0..50)
                .map(|_| {
                    let seq = signer.tip().seq + 1;
                    signer.sign(seq as i64, &common::body(seq + b))
                })
                .collect();
            encode(&evs)
        })
        .collect();
    let mut tasks = Vec::new();
    for b in batches {
        let (http, url, cred) = (http.clone(), format!("{base}/v1/batches"), cred.clone());
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(cred)
                .header("content-type", "application/octet-stream")
                .body(b)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let j: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            j["accepted"].as_u64().unwrap()
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await.unwrap();
    }
    assert_eq!(accepted, 400);

    let r = http
        .get(format!("{base}/v1/devices/{}", key.to_hex()))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(j["high_water"], 400);
    // Gaps seen while batches raced are all closed again.
    assert!(
        j["gaps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["closed_ms"].is_i64()),
        "{j}"
    );
    let stored = env.store.records(&key, 0, 1000).unwrap();
    let raws: Vec<&[u8]> = stored.iter().map(|r| r.1.as_slice()).collect();
    let (_, report) = sessiontrail_core::chain::verify_stream(&key, &raws, Some(400));
    assert!(report.is_clean(), "{:?}", report.findings);

    // Metrics are open to loopback peers without a credential.
    let r = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("sessiontrail_events_accepted_total 400"),
        "{text}"
    );

    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}
