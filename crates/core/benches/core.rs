//! `cargo xtask bench core [--quick]`: the engine's hot paths, each reported
//! as a ratio against a baseline measured in the same run (these machines
//! are noisy; only ratios travel).
//!
//! Writes JSON lines to `target/bench/core.json`:
//! - `classify_ns_per_event`: median over chunks of a realistic event stream
//!   against a generated 1,000-rule pack over 50 apps; baseline: one bare
//!   ed25519 sign, to say what classification costs next to the signature.
//! - `sign_chain_vs_bare_sign_ratio`: encode + sign + chain one event against
//!   a bare ed25519-dalek sign of the same bytes.
//! - `batch_verify_vs_bare_ratio`: decode + batch verification + chain check
//!   of a batch against bare `verify_batch` on the same signatures.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Instant;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sessiontrail_core::batch;
use sessiontrail_core::chain::{self, Item, Nothing};
use sessiontrail_core::event::{
    Classification, Decision, FieldKind, FieldValue, ObservedField, ObservedTarget, Target,
};
use sessiontrail_core::risk::SessionRisk;
use sessiontrail_core::rulepack::{self, Engine};
use sessiontrail_core::{
    ChainTip, DeviceSigner, EventBody, EventKind, Observation, Response, Severity, SignedEvent,
};

struct Line {
    name: &'static str,
    value: f64,
    unit: &'static str,
    baseline: f64,
    ratio: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// A small xorshift so the workload is the same in every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const ACTIONS: [&str; 6] = ["click", "submit", "copy", "download", "input", "paste"];
const PAGES: [&str; 8] = [
    "records",
    "reports",
    "settings",
    "users",
    "billing",
    "export",
    "approvals",
    "audit",
];

/// 1,000 rules over 50 apps, written in the pack language so the bench
/// measures what an admin would really deploy.
fn generated_pack() -> String {
    let mut s = String::from(
        "[pack]\nid = \"bench\"\nversion = 1\ndescription = \"generated\"\n\n\
         [session]\nhalf_life_minutes = 30\nthresholds = [{ at = 60, response = \"step_up\" }, { at = 100, response = \"terminate\" }]\n\n",
    );
    for a in 0..50 {
        let _ = write!(
            s,
            "[[app]]\nid = \"app{a}\"\nname = \"App {a}\"\nhosts = [\"app{a}.example.test\", \"*.app{a}.example.test\"]\n\n"
        );
    }
    let mut rng = Rng(0x5e55_1017);
    for r in 0..1000 {
        let app = r % 50;
        let action = ACTIONS[rng.pick(ACTIONS.len())];
        let page = PAGES[rng.pick(PAGES.len())];
        let _ = write!(
            s,
            "[[rule]]\nid = \"r{r}\"\napp = \"app{app}\"\ntitle = \"Rule {r}\"\nactions = [\"{action}\"]\n\
             path = \"/{page}/**\"\nseverity = \"medium\"\nrisk = 5\ntags = [\"soc2:CC6.1\"]\nresponse = \"log\"\n"
        );
        match r % 4 {
            0 => {
                let _ = writeln!(s, "selector = \"button.act-{r}\"");
            }
            1 => {
                let _ = writeln!(s, "name = \"Export*\"");
            }
            2 => {
                let _ = writeln!(s, "when = [\"amount > {}\"]", 1000 * (r % 17));
            }
            _ => {}
        }
        s.push('\n');
    }
    s
}

fn observations(n: usize) -> Vec<Observation> {
    let mut rng = Rng(0x000b_e9c4);
    (0..n)
        .map(|i| {
            let app = rng.pick(50);
            let page = PAGES[rng.pick(PAGES.len())];
            let kind = match rng.pick(6) {
                0 => EventKind::Click,
                1 => EventKind::Submit,
                2 => EventKind::Copy,
                3 => EventKind::Input,
                4 => EventKind::Paste,
                _ => EventKind::Download {
                    filename: "report.csv".into(),
                    mime: "text/csv".into(),
                    bytes: Some(2048),
                },
            };
            Observation {
                kind,
                url: format!("https://app{app}.example.test/{page}/{}?view=list", i % 977),
                user: "alice@acme.test".into(),
                tab: "3".into(),
                session: "s".into(),
                target: Some(ObservedTarget {
                    target: Target {
                        tag: "button".into(),
                        role: "button".into(),
                        name: if i % 3 == 0 { "Export CSV" } else { "Save" }.into(),
                        path: "main > form > button".into(),
                        text: "Save".into(),
                    },
                    selectors: if i % 5 == 0 {
                        vec![format!("button.act-{}", rng.pick(1000))]
                    } else {
                        Vec::new()
                    },
                }),
                trusted: true,
                fields: vec![ObservedField {
                    name: "amount".into(),
                    value: format!("{}", rng.pick(20_000)),
                    kind: FieldKind::Number,
                }],
                action_id: None,
            }
        })
        .collect()
}

fn body(i: usize) -> EventBody {
    let mut fields = std::collections::BTreeMap::new();
    fields.insert(
        "amount".into(),
        FieldValue::Masked("m0Ck3dC0mm1tm3ntAAAAAA".into()),
    );
    EventBody {
        kind: EventKind::Click,
        user: "alice@acme.test".into(),
        app: "app7".into(),
        tab: "3".into(),
        session: "f3a1c2d4".into(),
        url: format!("https://app7.example.test/records/{i}"),
        target: Some(Target {
            tag: "button".into(),
            role: "button".into(),
            name: "Export CSV".into(),
            path: "main > div.toolbar > button#export".into(),
            text: "Export CSV".into(),
        }),
        trusted: true,
        fields,
        classification: Classification {
            rules: vec!["r7".into()],
            severity: Some(Severity::Medium),
            tags: vec!["soc2:CC6.1".into()],
            risk: 5,
            session_risk: 12,
        },
        decision: Decision {
            response: Response::Log,
            reason: "rule r7".into(),
            action_id: None,
        },
    }
}

fn bench_classify(quick: bool, sign_ns: f64) -> Line {
    let src = generated_pack();
    let pack = match rulepack::parse("bench.toml", &src) {
        Ok(p) => p,
        Err(e) => panic!("generated pack is invalid: {}", e.0[0]),
    };
    assert_eq!(pack.rules.len(), 1000);
    let engine = match Engine::new(&[pack]) {
        Ok(e) => e,
        Err(e) => panic!("engine: {e}"),
    };
    let n = if quick { 20_000 } else { 100_000 };
    let obs = observations(n);
    let mut risk = SessionRisk::default();
    let mut matched = 0usize;
    // Warm up, then time chunks of 1,000 events; report the median chunk.
    for o in obs.iter().take(2_000) {
        black_box(engine.classify(o, 1_000, &mut risk));
    }
    let mut per_event = Vec::new();
    for (c, chunk) in obs.chunks(1_000).enumerate() {
        let t = Instant::now();
        for o in chunk {
            let v = engine.classify(black_box(o), 1_000 + c as i64, &mut risk);
            matched += v.matches.len();
            black_box(&v);
        }
        per_event.push(t.elapsed().as_nanos() as f64 / chunk.len() as f64);
    }
    assert!(matched > 0, "the workload must exercise matching rules");
    let v = median(per_event);
    Line {
        name: "classify_ns_per_event",
        value: v,
        unit: "ns",
        baseline: sign_ns,
        ratio: v / sign_ns,
    }
}

fn bench_sign(quick: bool) -> (Line, f64) {
    let n = if quick { 2_000 } else { 10_000 };
    let rounds = if quick { 5 } else { 9 };
    let seed = [0x42; 32];
    let bare_key = SigningKey::from_bytes(&seed);
    // The exact messages our signer signs, for the bare baseline.
    let mut s = DeviceSigner::new(&seed, ChainTip::GENESIS);
    let bodies: Vec<EventBody> = (0..n).map(body).collect();
    let msgs: Vec<Vec<u8>> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| s.sign(i as i64, b).message().to_vec())
        .collect();
    let mut ours = Vec::new();
    let mut bare = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        for m in &msgs {
            black_box(bare_key.sign(black_box(m)));
        }
        bare.push(t.elapsed().as_nanos() as f64 / n as f64);
        let mut s = DeviceSigner::new(&seed, ChainTip::GENESIS);
        let t = Instant::now();
        for (i, b) in bodies.iter().enumerate() {
            black_box(s.sign(i as i64, black_box(b)));
        }
        ours.push(t.elapsed().as_nanos() as f64 / n as f64);
    }
    let (o, b) = (median(ours), median(bare));
    (
        Line {
            name: "sign_chain_vs_bare_sign_ratio",
            value: o,
            unit: "ns",
            baseline: b,
            ratio: o / b,
        },
        b,
    )
}

fn bench_batch_verify(quick: bool) -> Line {
    let per_batch = 500;
    let batches = if quick { 4 } else { 20 };
    let rounds = if quick { 3 } else { 5 };
    let mut s = DeviceSigner::new(&[0x17; 32], ChainTip::GENESIS);
    let device = s.public_key();
    let keys: BTreeSet<_> = [device].into();
    let encoded: Vec<Vec<u8>> = (0..batches)
        .map(|b| {
            let evs: Vec<SignedEvent> = (0..per_batch)
                .map(|i| s.sign(i as i64, &body(b * per_batch + i)))
                .collect();
            batch::encode(&evs)
        })
        .collect();
    let vk = match VerifyingKey::from_bytes(&device.0) {
        Ok(k) => k,
        Err(e) => panic!("{e}"),
    };
    // The bare baseline gets its inputs ready-made.
    let prepared: Vec<(Vec<Vec<u8>>, Vec<Signature>)> = encoded
        .iter()
        .map(|b| {
            let recs: Vec<SignedEvent> = batch::decode(b)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.record.ok())
                .collect();
            (
                recs.iter().map(|r| r.message().to_vec()).collect(),
                recs.iter().map(|r| r.signature()).collect(),
            )
        })
        .collect();
    let vks = vec![vk; per_batch];
    let total = (per_batch * batches) as f64;
    let mut ours = Vec::new();
    let mut bare = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        for (msgs, sigs) in &prepared {
            let m: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
            assert!(ed25519_dalek::verify_batch(&m, sigs, &vks).is_ok());
        }
        bare.push(t.elapsed().as_nanos() as f64 / total);
        let t = Instant::now();
        let mut accepted = 0;
        for b in &encoded {
            let framed = match batch::decode(black_box(b)) {
                Ok(f) => f,
                Err(e) => panic!("{e}"),
            };
            let recs: Vec<SignedEvent> = framed.into_iter().filter_map(|f| f.record.ok()).collect();
            let st = batch::verify_signatures(&recs, &keys);
            let items: Vec<Item<'_>> = recs
                .iter()
                .zip(&st)
                .map(|(r, s)| Item {
                    raw: r.as_bytes(),
                    record: Some(r),
                    signature_ok: *s == batch::SigStatus::Valid,
                    hash: None,
                })
                .collect();
            // Each batch is checked on its own, as the collector does; only
            // the first batch starts at genesis, so count acceptances.
            accepted += chain::check(&device, &Nothing, &items, None).accepted.len();
        }
        assert_eq!(accepted as f64, total);
        ours.push(t.elapsed().as_nanos() as f64 / total);
    }
    let (o, b) = (median(ours), median(bare));
    Line {
        name: "batch_verify_vs_bare_ratio",
        value: o,
        unit: "ns",
        baseline: b,
        ratio: o / b,
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (sign, sign_ns) = bench_sign(quick);
    let lines = [
        bench_classify(quick, sign_ns),
        sign,
        bench_batch_verify(quick),
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    let _ = std::fs::create_dir_all(&dir);
    let mut out = String::new();
    for l in &lines {
        let _ = writeln!(
            out,
            "{{\"name\":\"{}\",\"value\":{:.1},\"unit\":\"{}\",\"baseline\":{:.1},\"ratio\":{:.3}}}",
            l.name, l.value, l.unit, l.baseline, l.ratio
        );
        println!(
            "{:<32} {:>10.1} {}  (baseline {:.1} {}, ratio {:.3})",
            l.name, l.value, l.unit, l.baseline, l.unit, l.ratio
        );
    }
    if let Err(e) = std::fs::write(dir.join("core.json"), out) {
        panic!("writing target/bench/core.json: {e}");
    }
}
