//! Collector ingest throughput against its ceiling, the bare batch
//! signature verification of the same records on the same cores.
//!
//! `cargo bench -p sessiontrail-collector --bench ingest [-- --quick]`
//! writes JSON lines to `target/bench/collector-inprocess.json` (a quick
//! in-process look through the router, 4 devices; the benchmark of record
//! is `cargo xtask bench collector`, a separate load-generator process
//! with 1,000 devices, which writes `target/bench/collector.json`):
//!
//! - `ingest_events_per_s`: verify + chain + durable commit (fsync) +
//!   index + Merkle log, through the router, several devices posting
//!   concurrently; baseline = bare `batch::verify_signatures` throughput
//!   with one thread per core; target ratio ≥ 0.5.
//! - `ingest_ack_p99_ms`: p99 of request → acknowledgement; baseline =
//!   the 250 ms target.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, header};
use http_body_util::BodyExt as _;
use sessiontrail_collector::config::Limits;
use sessiontrail_collector::store::sqlite::{SqliteOptions, SqliteStore};
use sessiontrail_collector::store::{Actor, Role, Store};
use sessiontrail_collector::{AppState, app, auth, enroll};
use sessiontrail_core::event::{Classification, Decision};
use sessiontrail_core::{
    ChainTip, DeviceKey, DeviceSigner, EventBody, EventKind, Response, Severity, SignedEvent,
    Target, batch,
};
use tower::ServiceExt as _;

#[path = "../src/bin/common/proc_stats.rs"]
mod proc_stats;
use proc_stats::{cores, cpu_secs};

fn body(seq: u64) -> EventBody {
    EventBody {
        kind: EventKind::Click,
        user: "alice@acme.test".into(),
        app: "crm".into(),
        tab: "tab-1".into(),
        session: "sess-1".into(),
        url: format!("https://crm.acme.test/accounts/{seq}?view=full"),
        target: Some(Target {
            tag: "button".into(),
            role: "button".into(),
            name: "Export all".into(),
            path: "main > div.toolbar > button.export".into(),
            text: "Export all".into(),
        }),
        trusted: true,
        fields: Default::default(),
        classification: Classification {
            rules: vec!["crm.export".into()],
            severity: Some(Severity::High),
            tags: vec!["soc2:cc6.1".into(), "sox:404".into()],
            risk: 10,
            session_risk: 30,
        },
        decision: Decision {
            response: Response::Justify,
            reason: "bulk export of customer records".into(),
            action_id: None,
        },
    }
}

struct Dev {
    key: DeviceKey,
    credential: String,
    batches: Vec<Vec<SignedEvent>>,
}

/// Bare verification of every batch, one thread per core.
fn bare_rate(devs: &[Dev]) -> f64 {
    let keys: BTreeSet<DeviceKey> = devs.iter().map(|d| d.key).collect();
    let all: Vec<&Vec<SignedEvent>> = devs.iter().flat_map(|d| &d.batches).collect();
    let total: usize = all.iter().map(|b| b.len()).sum();
    let n = cores();
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..n {
            let (all, keys) = (&all, &keys);
            s.spawn(move || {
                for b in all.iter().skip(t).step_by(n) {
                    let st = batch::verify_signatures(b, keys);
                    assert!(st.iter().all(|s| *s == batch::SigStatus::Valid));
                }
            });
        }
    });
    total as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (devices, batches, per_batch) = if quick { (4, 10, 200) } else { (4, 50, 200) };
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let store = Arc::new(SqliteStore::open(tmp.path(), SqliteOptions::default()).unwrap());
    let state = AppState::new(store.clone(), Limits::default()).expect("verifying threads start");
    let router = app(state);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores())
        .enable_all()
        .build()
        .unwrap();

    // Enroll devices through the API and sign their batches up front.
    let devs: Vec<Dev> = (0..devices)
        .map(|d| {
            let g = auth::generate(Role::Enroll, Some(i64::MAX), Some(1), None).unwrap();
            store.create_token(g.token, &Actor::cli()).unwrap();
            let seed = [d as u8 + 1; 32];
            let mut signer = DeviceSigner::new(&seed, ChainTip::GENESIS);
            let key = signer.public_key();
            let req = serde_json::json!({
                "enrollment_token": g.credential, "device_key": key.to_hex(),
                "claims": {"user": format!("u{d}"), "device_name": "bench"},
                "proof": hex::encode(sessiontrail_core::record::sign_message(
                    &seed, &enroll::proof_message(&g.credential, &key))),
            });
            let r = rt.block_on(async {
                let resp = router
                    .clone()
                    .oneshot(
                        Request::post("/v1/enroll")
                            .body(Body::from(req.to_string()))
                            .unwrap(),
                    )
                    .await
                    .unwrap();
                resp.into_body().collect().await.unwrap().to_bytes()
            });
            let j: serde_json::Value = serde_json::from_slice(&r).unwrap();
            let batches = (0..batches)
                .map(|_| {
                    (0..per_batch)
                        .map(|_| {
                            let seq = signer.tip().seq + 1;
                            signer.sign(1_700_000_000_000 + seq as i64, &body(seq))
                        })
                        .collect()
                })
                .collect();
            Dev {
                key,
                credential: j["credential"].as_str().unwrap().to_owned(),
                batches,
            }
        })
        .collect();
    let total: usize = devs.iter().flat_map(|d| &d.batches).map(|b| b.len()).sum();

    let bare = bare_rate(&devs);

    // Each device posts its batches in order, devices concurrently.
    let cpu0 = cpu_secs("self");
    let start = Instant::now();
    let latencies: Vec<Duration> = rt.block_on(async {
        let mut tasks = Vec::new();
        for d in &devs {
            let encoded: Vec<Vec<u8>> = d.batches.iter().map(batch::encode).collect();
            let (router, cred) = (router.clone(), d.credential.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                for b in encoded {
                    loop {
                        let t = Instant::now();
                        let resp = router
                            .clone()
                            .oneshot(
                                Request::post("/v1/batches")
                                    .header(header::AUTHORIZATION, format!("Bearer {cred}"))
                                    .body(Body::from(b.clone()))
                                    .unwrap(),
                            )
                            .await
                            .unwrap();
                        let status = resp.status();
                        let _ = resp.into_body().collect().await.unwrap();
                        if status == 429 {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            continue;
                        }
                        assert_eq!(status, 200);
                        lat.push(t.elapsed());
                        break;
                    }
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let took = start.elapsed();
    let cpu_per_event_us = (cpu_secs("self") - cpu0) / total as f64 * 1e6;
    let rate = total as f64 / took.as_secs_f64();
    let stored = store.stats().unwrap().log_size as usize;
    assert!(stored >= total, "stored {stored} < sent {total}");
    let mut lat = latencies;
    lat.sort();
    let p99 = lat[(lat.len() * 99 / 100).min(lat.len() - 1)].as_secs_f64() * 1e3;

    let lines = [
        serde_json::json!({"name": "ingest_events_per_s", "value": rate.round(), "unit": "events/s",
            "baseline": bare.round(), "ratio": rate / bare}),
        serde_json::json!({"name": "ingest_ack_p99_ms", "value": p99, "unit": "ms",
            "baseline": 250.0, "ratio": p99 / 250.0}),
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    let mut f = std::fs::File::create(dir.join("collector-inprocess.json")).unwrap();
    for l in &lines {
        println!("{l}");
        writeln!(f, "{l}").unwrap();
    }
    eprintln!(
        "{total} events in {} batches of {per_batch} from {devices} devices: ingest {rate:.0}/s, bare verify {bare:.0}/s ({} threads), p99 ack {p99:.1} ms, {cpu_per_event_us:.1} µs CPU per event ingested ({:.0}% of {} cores busy)",
        lat.len(),
        cores(),
        cpu_per_event_us * rate / 1e6 / cores() as f64 * 100.0,
        cores()
    );
}
