//! The format spec is enough to verify our events elsewhere: a verifier
//! written in JavaScript from `docs/formats.md` alone (Node's built-in
//! crypto, `tests/cross-verify/verify-batch.mjs`) checks batches produced by
//! the Rust signer, and catches a tampered record.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns in a test crate
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use sessiontrail_core::event::{Classification, Decision, FieldValue, Target};
use sessiontrail_core::{
    ChainTip, DeviceSigner, EventBody, EventKind, Response, Severity, SignedEvent, batch,
};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn body(i: usize) -> EventBody {
    let mut fields = BTreeMap::new();
    fields.insert("rows".to_owned(), FieldValue::Clear(format!("{}", 100 * i)));
    fields.insert(
        "note".to_owned(),
        FieldValue::Masked("q1Jc0m1tm3nt_xyzAbCdEf".to_owned()),
    );
    EventBody {
        kind: if i.is_multiple_of(2) {
            EventKind::Click
        } else {
            EventKind::Submit
        },
        user: "alice@acme.test".into(),
        app: "crm".into(),
        tab: "7".into(),
        session: "s-1".into(),
        url: "https://crm.acme.test/app/customers".into(),
        target: Some(Target {
            tag: "button".into(),
            role: "button".into(),
            name: "Export CSV — ünïcode ✓".into(),
            path: "main > #toolbar > button#export".into(),
            text: "Export CSV".into(),
        }),
        trusted: true,
        fields,
        classification: Classification {
            rules: vec!["crm.export.customers".into()],
            severity: Some(Severity::High),
            tags: vec!["soc2:CC6.1".into()],
            risk: 30,
            session_risk: 30,
        },
        decision: Decision {
            response: Response::Justify,
            reason: "rule crm.export.customers".into(),
            action_id: Some(format!("a-{i}")),
        },
    }
}

fn node_verify(batch: &[u8], name: &str) -> serde_json::Value {
    let dir = repo().join("target/cross-verify");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    std::fs::write(&file, batch).unwrap();
    let out = Command::new("node")
        .arg(repo().join("tests/cross-verify/verify-batch.mjs"))
        .arg(&file)
        .output()
        .expect("node must be installed (cargo xtask test installs it)");
    assert!(
        out.status.success(),
        "node verifier failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn node_verifies_rust_signed_batches_and_catches_tampering() {
    let mut signer = DeviceSigner::new(&[0x5a; 32], ChainTip::GENESIS);
    let events: Vec<_> = (0..25)
        .map(|i| signer.sign(1_764_300_000_000 + i as i64, &body(i)))
        .collect();

    let good = node_verify(&batch::encode(&events), "good.stba");
    assert_eq!(good["records"], 25);
    assert_eq!(good["verified"], 25);
    assert_eq!(good["failures"], serde_json::json!([]));
    assert_eq!(good["users"], serde_json::json!(["alice@acme.test"]));

    // Alter one byte of record 11's body and re-frame the batch so the
    // checksum is right: only the signature can catch it.
    let mut tampered = events.clone();
    let mut raw = tampered[11].as_bytes().to_vec();
    let at = raw.len() - 64 - 20;
    raw[at] ^= 0x01;
    tampered[11] = SignedEvent::from_bytes(raw).unwrap();
    let bad = node_verify(&batch::encode(&tampered), "tampered.stba");
    assert_eq!(bad["verified"], 24);
    assert_eq!(bad["failures"][0]["index"], 11);
    assert_eq!(bad["failures"][0]["reason"], "signature does not verify");
}
