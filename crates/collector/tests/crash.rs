//! Crash safety of the real binary: ingest in a loop, `kill -9` the server
//! mid-ingest, restart it on the same data directory, and check that every
//! acknowledged event is stored byte for byte and the chains verify.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{encode, proof};
use sessiontrail_core::{ChainTip, DeviceSigner, SignedEvent};

const BIN: &str = env!("CARGO_BIN_EXE_sessiontrail");

fn cli(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Starts `sessiontrail serve` and returns it with its base URL.
fn start(dir: &Path) -> (Child, String) {
    let (child, listening) = common::serve(dir, std::iter::empty::<&str>());
    let addr = listening["addr"].as_str().unwrap_or_default().to_owned();
    (child, format!("http://{addr}"))
}

struct Device {
    signer: DeviceSigner,
    credential: String,
    /// Acknowledged records, by seq.
    acked: Vec<SignedEvent>,
    /// Sent but not acknowledged: resent after the restart.
    pending: Vec<Vec<SignedEvent>>,
}

async fn enroll(http: &reqwest::Client, base: &str, token: &str, n: u8) -> Device {
    let seed = common::seed(n);
    let signer = DeviceSigner::new(&seed, ChainTip::GENESIS);
    let key = signer.public_key();
    let body = serde_json::json!({
        "enrollment_token": token, "device_key": key.to_hex(),
        "claims": {"user": format!("user{n}@acme.test"), "device_name": "laptop"},
        "proof": proof(&seed, token, &key),
    });
    let r = http
        .post(format!("{base}/v1/enroll"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let j: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    Device {
        signer,
        credential: j["credential"].as_str().unwrap().to_owned(),
        acked: Vec::new(),
        pending: Vec::new(),
    }
}

/// Posts one batch; `true` when acknowledged.
async fn post(http: &reqwest::Client, base: &str, cred: &str, evs: &[SignedEvent]) -> bool {
    let r = http
        .post(format!("{base}/v1/batches"))
        .bearer_auth(cred)
        .body(encode(evs))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    match r {
        Ok(r) if r.status() == 200 => {
            let j: serde_json::Value = match r.bytes().await {
                Ok(b) => serde_json::from_slice(&b).unwrap(),
                Err(_) => return false,
            };
            assert!(j["rejected"].as_array().unwrap().is_empty(), "{j}");
            true
        }
        Ok(r) => panic!("unexpected status {}", r.status()),
        Err(_) => false,
    }
}

/// Ingests batches until the deadline or the first failure (the kill).
async fn ingest_loop(base: String, mut d: Device, until: Instant) -> Device {
    let http = reqwest::Client::new();
    while Instant::now() < until {
        let evs: Vec<SignedEvent> = (0..40)
            .map(|_| {
                let seq = d.signer.tip().seq + 1;
                d.signer.sign(seq as i64, &common::body(seq))
            })
            .collect();
        if post(&http, &base, &d.credential, &evs).await {
            d.acked.extend(evs);
        } else {
            d.pending.push(evs);
            break;
        }
    }
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let token = cli(&["enroll-token", "create", "--data-dir", d, "--uses", "2"]);
    let auditor = cli(&["token", "create", "--role", "auditor", "--data-dir", d]);
    assert!(token.starts_with("st1.") && auditor.starts_with("st1."));

    let (mut child, base) = start(dir.path());
    let http = reqwest::Client::new();
    let devices = vec![
        enroll(&http, &base, &token, 1).await,
        enroll(&http, &base, &token, 2).await,
    ];
    // Ingest from both devices; kill -9 while batches are in flight.
    let until = Instant::now() + Duration::from_secs(30);
    let tasks: Vec<_> = devices
        .into_iter()
        .map(|dev| tokio::spawn(ingest_loop(base.clone(), dev, until)))
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let mut devices = Vec::new();
    for t in tasks {
        devices.push(t.await.unwrap());
    }
    let acked: usize = devices.iter().map(|d| d.acked.len()).sum();
    assert!(acked > 0, "nothing was acknowledged before the kill");

    assert!(
        devices.iter().all(|d| !d.pending.is_empty()),
        "the kill did not interrupt ingest"
    );
    let (mut child, base) = start(dir.path());
    for dev in &mut devices {
        // Retry what was in flight: stored or not, it is now accepted or a
        // duplicate, never an error.
        for evs in std::mem::take(&mut dev.pending) {
            assert!(post(&http, &base, &dev.credential, &evs).await);
            dev.acked.extend(evs);
        }
        let key = dev.signer.public_key();
        let mut stored: Vec<Vec<u8>> = Vec::new();
        let mut after = 0;
        loop {
            let r = http
                .get(format!(
                    "{base}/v1/devices/{}/records?after={after}&limit=10000",
                    key.to_hex()
                ))
                .bearer_auth(&auditor)
                .send()
                .await
                .unwrap();
            if r.status() == 204 {
                break;
            }
            assert_eq!(r.status(), 200);
            let body = r.bytes().await.unwrap();
            let recs = sessiontrail_core::batch::decode(&body).unwrap();
            for f in recs {
                let rec = f.record.unwrap();
                after = rec.seq();
                stored.push(rec.into_bytes());
            }
        }
        assert_eq!(stored.len(), dev.acked.len(), "device {key}");
        for (s, a) in stored.iter().zip(&dev.acked) {
            assert_eq!(s, a.as_bytes(), "seq {} differs", a.seq());
        }
        let raws: Vec<&[u8]> = stored.iter().map(|v| v.as_slice()).collect();
        let (_, report) =
            sessiontrail_core::chain::verify_stream(&key, &raws, Some(dev.acked.len() as u64));
        assert!(report.is_clean(), "{:?}", report.findings);
    }
    // The Merkle log committed with the records: a fresh checkpoint's root
    // is the root over every stored record, in leaf order.
    let r = http
        .get(format!("{base}/v1/log/checkpoint"))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let note = r.text().await.unwrap();
    let r = http
        .get(format!("{base}/v1/log/key"))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    let vkey = sessiontrail_tlog::VerifierKey::parse(r.text().await.unwrap().trim()).unwrap();
    let cp = sessiontrail_tlog::Checkpoint::verify(&note, vkey.name(), &vkey).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let db = rusqlite::Connection::open(dir.path().join("sessiontrail.db")).unwrap();
    let mut st = db
        .prepare("SELECT record FROM events ORDER BY leaf_index")
        .unwrap();
    let leaves: Vec<[u8; 32]> = st
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|r| sessiontrail_tlog::leaf_hash(&r.unwrap()))
        .collect();
    assert_eq!(cp.size, leaves.len() as u64);
    assert_eq!(cp.root, sessiontrail_tlog::root_of(&leaves));
    eprintln!("acknowledged before the kill: {acked} events");
}
