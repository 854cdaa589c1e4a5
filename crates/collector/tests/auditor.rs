//! Router tests (`oneshot`) of the auditor endpoints: search, sessions,
//! timeline, facets, evidence export and the UI assets; and evidence bundles
//! checked by both verifiers (the Rust one and the independent Python one)
//! before and after tampering with each class of byte.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Read as _;

use axum::http::{StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{Env, TestDevice, encode, get, post_json};
use sessiontrail_collector::evidence::verify;
use sessiontrail_collector::store::Role;
use sessiontrail_core::event::{Classification, Decision};
use sessiontrail_core::{EventBody, EventKind, Response, Severity, SignedEvent, Target};

fn enc(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

const T0: i64 = 1_790_000_000_000;

#[allow(clippy::too_many_arguments)]
fn body(
    kind: EventKind,
    app: &str,
    session: &str,
    url: &str,
    target: Option<(&str, &str)>,
    rule: Option<(&str, Severity, &[&str], Response)>,
) -> EventBody {
    let (classification, decision) = match rule {
        Some((id, sev, tags, resp)) => (
            Classification {
                rules: vec![id.into()],
                severity: Some(sev),
                tags: tags.iter().map(|t| (*t).to_owned()).collect(),
                risk: 10,
                session_risk: 10,
            },
            Decision {
                response: resp,
                reason: format!("rule {id} matched"),
                action_id: None,
            },
        ),
        None => (Classification::default(), Decision::default()),
    };
    EventBody {
        kind,
        user: "alice@acme.test".into(),
        app: app.into(),
        tab: "tab-1".into(),
        session: session.into(),
        url: url.into(),
        target: target.map(|(tag, name)| Target {
            tag: tag.into(),
            role: tag.into(),
            name: name.into(),
            path: format!("main > {tag}"),
            text: name.into(),
        }),
        trusted: true,
        fields: Default::default(),
        classification,
        decision,
    }
}

/// Alice's device: a crm session (seq 1–6) with an export, an hr session
/// (7–12) with a bank change; seq 4 never arrives (a gap).
fn alice_events(dev: &mut TestDevice) -> Vec<SignedEvent> {
    let export = (
        "crm.bulk-export",
        Severity::High,
        &["gdpr:art32", "soc2:cc6.1"][..],
        Response::Justify,
    );
    let bank = (
        "hr.bank-change",
        Severity::Critical,
        &["sox:itgc"][..],
        Response::StepUp,
    );
    let bodies = vec![
        body(
            EventKind::Login,
            "crm",
            "crm-1",
            "https://crm.acme.test/login",
            None,
            None,
        ),
        body(
            EventKind::PageLoad,
            "crm",
            "crm-1",
            "https://crm.acme.test/accounts",
            None,
            None,
        ),
        body(
            EventKind::Click,
            "crm",
            "crm-1",
            "https://crm.acme.test/accounts",
            Some(("button", "Export all accounts")),
            Some(export),
        ),
        body(
            EventKind::Download {
                filename: "accounts.csv".into(),
                mime: "text/csv".into(),
                bytes: Some(100),
            },
            "crm",
            "crm-1",
            "https://crm.acme.test/accounts",
            None,
            None,
        ),
        body(
            EventKind::Click,
            "crm",
            "crm-1",
            "https://crm.acme.test/contacts",
            Some(("a", "Contacts")),
            None,
        ),
        body(
            EventKind::Logout,
            "crm",
            "crm-1",
            "https://crm.acme.test/logout",
            None,
            None,
        ),
        body(
            EventKind::Login,
            "hr",
            "hr-1",
            "https://hr.acme.test/login",
            None,
            None,
        ),
        body(
            EventKind::RouteChange {
                from: "https://hr.acme.test/".into(),
            },
            "hr",
            "hr-1",
            "https://hr.acme.test/employees/1042",
            None,
            None,
        ),
        body(
            EventKind::Submit,
            "hr",
            "hr-1",
            "https://hr.acme.test/employees/1042/bank",
            Some(("button", "Approve bank details")),
            Some(bank),
        ),
        body(
            EventKind::Input,
            "hr",
            "hr-1",
            "https://hr.acme.test/employees/1042/bank",
            Some(("input", "IBAN")),
            None,
        ),
        body(
            EventKind::Click,
            "hr",
            "hr-1",
            "https://hr.acme.test/payroll",
            Some(("a", "Payroll \"runs\" NEAR(x)")),
            None,
        ),
        body(
            EventKind::Logout,
            "hr",
            "hr-1",
            "https://hr.acme.test/logout",
            None,
            None,
        ),
    ];
    bodies
        .iter()
        .enumerate()
        .map(|(i, b)| dev.signer.sign(T0 + i as i64 * 60_000, b))
        .collect()
}

struct World {
    env: Env,
    auditor: String,
    admin: String,
    device_cred: String,
    alice: TestDevice,
}

async fn world() -> World {
    let env = Env::new();
    let auditor = env.token(Role::Auditor);
    let admin = env.token(Role::Admin);
    let mut alice = env.device(21).await;
    let evs = alice_events(&mut alice);
    let sent: Vec<SignedEvent> = evs.iter().filter(|e| e.seq() != 4).cloned().collect();
    let r = env.post_batch(&alice.credential, encode(&sent)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    assert_eq!(r.json()["accepted"], 11);
    let device_cred = alice.credential.clone();
    World {
        env,
        auditor,
        admin,
        device_cred,
        alice,
    }
}

impl World {
    async fn events(&self, query: &str) -> serde_json::Value {
        let r = self
            .env
            .call(get(&format!("/v1/events?{query}"), Some(&self.auditor)))
            .await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{query}: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    }

    async fn seqs(&self, query: &str) -> Vec<u64> {
        let j = self
            .events(&format!("{query}&device={}", self.alice.key()))
            .await;
        let mut v: Vec<u64> = j["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        v.sort_unstable();
        v
    }
}

#[tokio::test]
async fn every_filter_selects_what_it_says() {
    let w = world().await;
    assert_eq!(w.seqs("").await, vec![1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12]);
    assert_eq!(w.seqs("app=crm").await, vec![1, 2, 3, 5, 6]);
    assert_eq!(
        w.seqs("user=alice%40acme.test&app=hr").await,
        vec![7, 8, 9, 10, 11, 12]
    );
    assert_eq!(w.seqs("action=login").await, vec![1, 7]);
    assert_eq!(w.seqs("severity=high").await, vec![3, 9]);
    assert_eq!(w.seqs("severity=critical").await, vec![9]);
    assert_eq!(w.seqs("rule=crm.bulk-export").await, vec![3]);
    assert_eq!(w.seqs("tag=soc2%3Acc6.1").await, vec![3]);
    assert_eq!(w.seqs("tag=sox%3Aitgc").await, vec![9]);
    assert_eq!(w.seqs("decision=step_up").await, vec![9]);
    assert_eq!(w.seqs("session=hr-1&action=logout").await, vec![12]);
    // Time: from inclusive, to exclusive; ms or ISO 8601.
    let (a, b) = (T0 + 2 * 60_000, T0 + 5 * 60_000);
    assert_eq!(w.seqs(&format!("from={a}&to={b}")).await, vec![3, 5]);
    assert_eq!(
        w.seqs("from=2026-09-21T14%3A13%3A20Z&to=2026-09-21T14%3A15%3A20Z")
            .await,
        vec![1, 2]
    );
    // Free text over URL and target: words, prefixes, AND.
    assert_eq!(w.seqs("q=export").await, vec![3]);
    assert_eq!(w.seqs("q=accou").await, vec![2, 3]);
    assert_eq!(w.seqs("q=employees%201042%20bank").await, vec![9, 10]);
    assert_eq!(w.seqs("q=IBAN").await, vec![10]);
    assert_eq!(w.seqs("q=nothing-like-this").await, Vec::<u64>::new());
    // FTS5 syntax is literal text, never an operator.
    assert_eq!(w.seqs("q=%22runs%22").await, vec![11]);
    assert_eq!(w.seqs(&format!("q={}", enc("NEAR(x)"))).await, vec![11]);
    assert_eq!(
        w.seqs(&format!("q={}", enc("payroll OR crm"))).await,
        Vec::<u64>::new()
    );
    assert_eq!(
        w.seqs(&format!("q={}", enc("url:crm"))).await,
        Vec::<u64>::new()
    );
    // Bound parameters: a quote in a filter is data.
    assert_eq!(
        w.seqs(&format!("user={}", enc("x' OR '1'='1"))).await,
        Vec::<u64>::new()
    );

    let j = w.events("severity=high&device=").await;
    let ev = &j["events"][0];
    assert_eq!(ev["seq"], 9, "newest first");
    assert_eq!(ev["reason"], "rule hr.bank-change matched");
    assert_eq!(ev["target"]["summary"], "button “Approve bank details”");
    assert_eq!(ev["verification"]["signature"], "verified_at_ingest");
    assert_eq!(ev["verification"]["chain"], "linked");
    let j = w
        .events(&format!("device={}&session=crm-1", w.alice.key()))
        .await;
    let chain: BTreeMap<u64, String> = j["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["seq"].as_u64().unwrap(),
                e["verification"]["chain"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(chain[&1], "genesis");
    assert_eq!(chain[&3], "linked");
    assert_eq!(chain[&5], "after_gap");
}

#[tokio::test]
async fn keyset_pagination_visits_every_event_once() {
    let w = world().await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(c) => format!("device={}&limit=4&cursor={c}", w.alice.key()),
            None => format!("device={}&limit=4", w.alice.key()),
        };
        let j = w.events(&q).await;
        for e in j["events"].as_array().unwrap() {
            seen.push(e["seq"].as_u64().unwrap());
        }
        match j["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, vec![12, 11, 10, 9, 8, 7, 6, 5, 3, 2, 1]);
}

#[tokio::test]
async fn bad_search_input_is_a_clear_400() {
    let w = world().await;
    for (q, code) in [
        ("foo=1", "bad_query"),
        ("severity=urgent", "bad_severity"),
        ("action=explode", "bad_action"),
        ("decision=maybe", "bad_decision"),
        ("from=yesterday", "bad_time"),
        ("from=2026-11-02&to=2026-11-01", "bad_time_range"),
        ("limit=0", "bad_limit"),
        ("limit=100000", "bad_limit"),
        ("limit=99999999999999999999999", "bad_limit"),
        ("limit=ten", "bad_limit"),
        ("cursor=abc", "bad_cursor"),
        ("cursor=1.-2", "bad_cursor"),
        ("device=xyz", "bad_device_key"),
        ("q=%22", "bad_text_query"),
        ("q=*", "bad_text_query"),
        ("q=%28%29%20%3A%20%5E", "bad_text_query"),
        (
            "q=a%20b%20c%20d%20e%20f%20g%20h%20i%20j%20k%20l%20m",
            "bad_text_query",
        ),
    ] {
        let r = w
            .env
            .call(get(&format!("/v1/events?{q}"), Some(&w.auditor)))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(r.error_code(), code, "{q}");
    }
    let long = "x".repeat(300);
    let r = w
        .env
        .call(get(&format!("/v1/events?user={long}"), Some(&w.auditor)))
        .await;
    assert_eq!(r.error_code(), "bad_filter");
    let r = w
        .env
        .call(get("/v1/events?user=%01", Some(&w.auditor)))
        .await;
    assert_eq!(r.error_code(), "bad_filter");
    for (q, code) in [
        ("/v1/timeline?user=alice%40acme.test", "bad_timeline"),
        ("/v1/timeline?session=crm-1&user=a", "bad_timeline"),
        ("/v1/timeline?session=crm-1&device=abc", "bad_device_key"),
        (
            "/v1/timeline?session=x&user=a&app=b&limit=20000",
            "bad_limit",
        ),
        ("/v1/timeline?session=x&user=a&app=b&q=export", "bad_query"),
        ("/v1/sessions?limit=-1", "bad_limit"),
        ("/v1/sessions?from=never", "bad_time"),
    ] {
        let r = w.env.call(get(q, Some(&w.auditor))).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(r.error_code(), code, "{q}");
    }
    let r = w
        .env
        .call(get(
            "/v1/timeline?session=nope&user=a&app=b",
            Some(&w.auditor),
        ))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "unknown_session");
}

#[tokio::test]
async fn auditor_endpoints_need_a_reader_credential() {
    let w = world().await;
    let gets = [
        "/v1/events",
        "/v1/sessions",
        "/v1/facets",
        "/v1/timeline?session=crm-1&user=alice%40acme.test&app=crm",
    ];
    for uri in gets {
        let r = w.env.call(get(uri, None)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(r.error_code(), "missing_token");
        let r = w
            .env
            .call(get(uri, Some("st1.0123456789abcdef.nope")))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{uri}");
        let r = w.env.call(get(uri, Some(&w.device_cred))).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri}");
        assert_eq!(r.error_code(), "wrong_role");
        let r = w.env.call(get(uri, Some(&w.admin))).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: admins may read");
    }
    let q = serde_json::json!({"query": {}});
    let r = w.env.call(post_json("/v1/evidence", None, q.clone())).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = w
        .env
        .call(post_json("/v1/evidence", Some(&w.device_cred), q))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn sessions_and_facets_list_what_is_stored() {
    let w = world().await;
    let r = w
        .env
        .call(get("/v1/sessions?user=alice%40acme.test", Some(&w.auditor)))
        .await;
    let s = r.json()["sessions"].as_array().unwrap().clone();
    assert_eq!(s.len(), 2);
    assert_eq!(s[0]["session"], "hr-1", "most recent first");
    assert_eq!(s[0]["events"], 6);
    assert_eq!(s[0]["max_severity"], "critical");
    assert_eq!(s[1]["session"], "crm-1");
    assert_eq!(
        (s[1]["logins"].as_u64(), s[1]["logouts"].as_u64()),
        (Some(1), Some(1))
    );
    let f = w.env.call(get("/v1/facets", Some(&w.auditor))).await.json();
    assert!(f["apps"].as_array().unwrap().iter().any(|a| a == "crm"));
    assert_eq!(
        f["tags"],
        serde_json::json!(["gdpr:art32", "soc2:cc6.1", "sox:itgc"])
    );
    assert_eq!(
        f["rules"],
        serde_json::json!(["crm.bulk-export", "hr.bank-change"])
    );
    assert!(
        f["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "download")
    );
}

#[tokio::test]
async fn a_timeline_reverifies_and_shows_gaps_inline() {
    let w = world().await;
    let uri = "/v1/timeline?user=alice%40acme.test&app=crm&session=crm-1";
    let t = w.env.call(get(uri, Some(&w.auditor))).await.json();
    let kinds: Vec<String> = t["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| match e["type"].as_str().unwrap() {
            "gap" => format!("gap {}-{}", e["first_seq"], e["last_seq"]),
            _ => format!("{} {}", e["seq"], e["verified"]["chain"].as_str().unwrap()),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "1 genesis",
            "2 linked",
            "3 linked",
            "gap 4-4",
            "5 after_gap",
            "6 linked"
        ]
    );
    assert_eq!(t["summary"]["missing"], 1);
    assert_eq!(t["summary"]["failed"], 0);
    assert_eq!(t["summary"]["complete_and_verified"], false);
    assert!(
        t["entries"][3]["message"]
            .as_str()
            .unwrap()
            .contains("never reached the collector")
    );
    assert!(
        t["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "event")
            .all(|e| e["verified"]["signature"] == "verified")
    );
    // The hr session starts right after seq 6: complete and verified.
    let t = w
        .env
        .call(get(
            &format!("/v1/timeline?device={}&session=hr-1", w.alice.key()),
            Some(&w.auditor),
        ))
        .await
        .json();
    assert_eq!(
        t["summary"]["complete_and_verified"], true,
        "{}",
        t["summary"]
    );

    // Alter a stored record behind the collector's back: the timeline
    // re-verifies the bytes and says so.
    let db = w.env.db();
    let (leaf, mut rec): (i64, Vec<u8>) = db
        .query_row(
            "SELECT leaf_index, record FROM events WHERE session = 'crm-1' AND seq = 2",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    rec[100] ^= 0x20;
    db.execute(
        "UPDATE events SET record = ?1 WHERE leaf_index = ?2",
        rusqlite::params![rec, leaf],
    )
    .unwrap();
    let t = w.env.call(get(uri, Some(&w.auditor))).await.json();
    let e = &t["entries"][1];
    assert_eq!(e["seq"], 2);
    assert_eq!(e["verified"]["signature"], "failed");
    assert_eq!(
        t["entries"][2]["verified"]["chain"], "broken",
        "seq 3 no longer links"
    );
    assert_eq!(t["summary"]["failed"], 2);
}

#[tokio::test]
async fn the_ui_is_served_with_a_strict_csp() {
    let env = Env::new();
    let r = env.call(get("/ui", None)).await;
    assert_eq!(r.status, StatusCode::PERMANENT_REDIRECT);
    for (path, ty) in [
        ("/ui/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/api.js", "text/javascript"),
        ("/ui/format.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
        ("/ui/favicon.svg", "image/svg+xml"),
    ] {
        let r = env.call(get(path, None)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(
            r.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with(ty)
        );
        let csp = r.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            csp.starts_with("default-src 'self'") && !csp.contains("unsafe"),
            "{csp}"
        );
        assert_eq!(r.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }
    let html = String::from_utf8(env.call(get("/ui/", None)).await.body).unwrap();
    assert!(
        !html.contains("<script>") && !html.contains(" style="),
        "no inline script or style"
    );
    assert_eq!(
        env.call(get("/ui/nope.js", None)).await.status,
        StatusCode::NOT_FOUND
    );
}

// ---------------------------------------------------------------- evidence

fn unzip(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    // Any ZIP reader opens a bundle.
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut b = Vec::new();
            f.read_to_end(&mut b).unwrap();
            (f.name().to_owned(), b)
        })
        .collect()
}

/// Re-packs files in the canonical container, as a forger would.
fn rezip(files: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let v: Vec<(&str, &[u8])> = sessiontrail_collector::evidence::FILES
        .iter()
        .map(|n| (*n, files[*n].as_slice()))
        .collect();
    sessiontrail_collector::evidence::zipfmt::write(&v)
}

/// The bundle with `evidence.json` changed by `f` (the manifest is left as
/// it was, as an attacker who cannot sign would have to).
fn tamper(orig: &[u8], f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut files = unzip(orig);
    let mut ev: serde_json::Value = serde_json::from_slice(&files["evidence.json"]).unwrap();
    f(&mut ev);
    files.insert(
        "evidence.json".into(),
        serde_json::to_vec_pretty(&ev).unwrap(),
    );
    rezip(&files)
}

fn flip_b64(s: &str, at: usize) -> String {
    let mut b = STANDARD.decode(s).unwrap();
    let at = at.min(b.len() - 1);
    b[at] ^= 0x01;
    STANDARD.encode(b)
}

fn python_verifier() -> Option<std::path::PathBuf> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/evidence/verify_bundle.py");
    let ok = std::process::Command::new("python3")
        .args(["-c", "import cryptography"])
        .output()
        .is_ok_and(|o| o.status.success());
    // `cargo xtask test` installs it; a silent skip would hide a verifier
    // that no longer agrees with the spec.
    assert!(
        ok,
        "python3 with the `cryptography` package is required (pip install cryptography)"
    );
    Some(script)
}

/// Runs both verifiers; returns (rust ok, rust output, python (ok, output)).
fn both(bytes: &[u8], key: &str, py: Option<&std::path::Path>) -> Vec<(bool, String)> {
    let r = verify::verify(bytes, Some(key));
    let mut out = Vec::new();
    verify::print(&r, true, &mut out).unwrap();
    let mut res = vec![(r.ok(), String::from_utf8(out).unwrap())];
    if let Some(py) = py {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), bytes).unwrap();
        let o = std::process::Command::new("python3")
            .arg(py)
            .arg(f.path())
            .args(["--collector-key", key])
            .output()
            .unwrap();
        assert!(
            o.status.code().is_some_and(|c| c <= 1),
            "python crashed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        res.push((
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        ));
    }
    res
}

#[tokio::test]
async fn an_evidence_bundle_verifies_and_every_tampering_names_the_event() {
    let w = world().await;
    let key = String::from_utf8(w.env.call(get("/v1/log/key", Some(&w.auditor))).await.body)
        .unwrap()
        .trim()
        .to_owned();
    let r = w
        .env
        .call(post_json(
            "/v1/evidence",
            Some(&w.auditor),
            serde_json::json!({"query": {"user": "alice@acme.test", "app": "crm"}}),
        ))
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/zip");
    let bundle = r.body;
    let files = unzip(&bundle);
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        [
            "README.txt",
            "evidence.json",
            "manifest.json",
            "manifest.sig",
            "report.html"
        ]
    );
    let ev: serde_json::Value = serde_json::from_slice(&files["evidence.json"]).unwrap();
    assert_eq!(ev["events"].as_array().unwrap().len(), 5);
    assert_eq!(
        ev["query"],
        serde_json::json!({"user": "alice@acme.test", "app": "crm"})
    );
    assert_eq!(ev["gaps"][0]["first_seq"], "4");
    assert!(ev["devices"][0]["enrollment"]["record"].is_string());
    let report = String::from_utf8(files["report.html"].clone()).unwrap();
    assert!(report.contains("gdpr:art32") && report.contains("Export all accounts"));
    assert!(!report.contains("<script"));

    // The export itself is evidence: who, which query, which bundle.
    let trail = w
        .env
        .call(get("/v1/admin/audit", Some(&w.auditor)))
        .await
        .json();
    let exports: Vec<&serde_json::Value> = trail
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "evidence.export")
        .collect();
    assert_eq!(exports.len(), 1, "{trail}");
    assert_eq!(
        exports[0]["subject"],
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bundle))
    );
    assert_eq!(exports[0]["details"]["events"], 5);
    assert_eq!(exports[0]["details"]["query"]["user"], "alice@acme.test");
    assert!(
        exports[0]["actor"]
            .as_str()
            .unwrap()
            .contains(w.auditor.split('.').nth(1).unwrap()),
        "{}",
        exports[0]
    );

    let py = python_verifier();
    let py = py.as_deref();
    for (ok, out) in both(&bundle, &key, py) {
        assert!(ok, "the genuine bundle must verify:\n{out}");
    }
    // A wrong trusted key fails.
    let other =
        "sessiontrail/0000000000000000+00000000+AUu4va0PLES5FeQq/yMNR/Tlc5wybLfBuU8WsQv2ZjVk";
    assert!(!verify::verify(&bundle, Some(other)).ok());

    // The event under attack: seq 3 of Alice's device.
    let target = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .position(|e| {
            let b = STANDARD.decode(e["record"].as_str().unwrap()).unwrap();
            SignedEvent::from_bytes(b).unwrap().seq() == 3
        })
        .unwrap();
    let leaf = ev["events"][target]["leaf_index"]
        .as_str()
        .unwrap()
        .to_owned();
    let name = format!("leaf={leaf} device={}", &w.alice.key().to_hex()[..16]);
    let rec_len = STANDARD
        .decode(ev["events"][target]["record"].as_str().unwrap())
        .unwrap()
        .len();

    type Case = (&'static str, Box<dyn Fn(&mut serde_json::Value)>);
    let t = target;
    let cases: Vec<Case> = vec![
        (
            "record body byte",
            Box::new(move |v| {
                let s = v["events"][t]["record"].as_str().unwrap().to_owned();
                v["events"][t]["record"] = flip_b64(&s, 120).into();
            }),
        ),
        (
            "record prev_hash byte",
            Box::new(move |v| {
                let s = v["events"][t]["record"].as_str().unwrap().to_owned();
                v["events"][t]["record"] = flip_b64(&s, 50).into();
            }),
        ),
        (
            "record time byte",
            Box::new(move |v| {
                let s = v["events"][t]["record"].as_str().unwrap().to_owned();
                v["events"][t]["record"] = flip_b64(&s, 85).into();
            }),
        ),
        (
            "record signature byte",
            Box::new(move |v| {
                let s = v["events"][t]["record"].as_str().unwrap().to_owned();
                v["events"][t]["record"] = flip_b64(&s, rec_len - 3).into();
            }),
        ),
        (
            "inclusion proof hash",
            Box::new(move |v| {
                let s = v["events"][t]["inclusion_path"][0]
                    .as_str()
                    .unwrap()
                    .to_owned();
                v["events"][t]["inclusion_path"][0] = flip_b64(&s, 7).into();
            }),
        ),
        (
            "checkpoint root",
            Box::new(|v| {
                let note = v["checkpoint"].as_str().unwrap().to_owned();
                let mut lines: Vec<String> = note.split('\n').map(str::to_owned).collect();
                lines[2] = flip_b64(&lines[2], 3);
                v["checkpoint"] = lines.join("\n").into();
            }),
        ),
        (
            "checkpoint size",
            Box::new(|v| {
                let note = v["checkpoint"].as_str().unwrap().to_owned();
                let mut lines: Vec<String> = note.split('\n').map(str::to_owned).collect();
                lines[1] = (lines[1].parse::<u64>().unwrap() + 1).to_string();
                v["checkpoint"] = lines.join("\n").into();
            }),
        ),
        (
            "device key in the device list",
            Box::new(|v| {
                let k = v["devices"][0]["device_key"].as_str().unwrap().to_owned();
                let flipped = match k.strip_prefix('0') {
                    Some(rest) => format!("1{rest}"),
                    None => format!("0{}", &k[1..]),
                };
                v["devices"][0]["device_key"] = flipped.into();
            }),
        ),
        (
            "enrollment record byte",
            Box::new(|v| {
                let s = v["devices"][0]["enrollment"]["record"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                v["devices"][0]["enrollment"]["record"] = flip_b64(&s, 140).into();
            }),
        ),
        (
            "collector record key",
            Box::new(|v| {
                v["collector"]["record_key"] = "11".repeat(32).into();
            }),
        ),
    ];
    for (what, f) in &cases {
        let bad = tamper(&bundle, f);
        for (i, (ok, out)) in both(&bad, &key, py).into_iter().enumerate() {
            let who = if i == 0 { "rust" } else { "python" };
            assert!(
                !ok,
                "{who} verifier accepted a bundle with a flipped {what}:\n{out}"
            );
            let named = out
                .lines()
                .any(|l| l.starts_with("FAIL") && l.contains(&name));
            assert!(
                named,
                "{who} verifier did not name {name} for a flipped {what}:\n{out}"
            );
        }
    }

    // The report, the manifest or its signature changed: fails (no event to name).
    for file in ["report.html", "manifest.json", "manifest.sig", "README.txt"] {
        let mut files = unzip(&bundle);
        let b = files.get_mut(file).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0x01;
        let bad = rezip(&files);
        for (ok, out) in both(&bad, &key, py) {
            assert!(!ok, "a flipped byte in {file} was accepted:\n{out}");
            assert!(out.contains(file), "{file} not named:\n{out}");
        }
    }
    // A moved leaf index: the proof no longer fits; named by the index claimed.
    let bad = tamper(&bundle, |v| {
        let l: u64 = v["events"][t]["leaf_index"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        v["events"][t]["leaf_index"] = (l + 1).to_string().into();
    });
    let moved = format!("leaf={} device=", leaf.parse::<u64>().unwrap() + 1);
    for (ok, out) in both(&bad, &key, py) {
        assert!(
            !ok && out
                .lines()
                .any(|l| l.starts_with("FAIL") && l.contains(&moved)),
            "{out}"
        );
    }

    // Every byte of one local header, one central-directory entry and the
    // end record (every header field), and a spread of content bytes: any
    // flip fails (the container is canonical, the contents are signed).
    let entries = sessiontrail_collector::evidence::zipfmt::read(&bundle, 8).unwrap();
    let first_local = 0..30 + entries[0].0.len();
    let cd_start = entries
        .iter()
        .map(|(n, d)| 30 + n.len() + d.len())
        .sum::<usize>();
    let first_central = cd_start..cd_start + 46 + entries[0].0.len();
    let end_record = bundle.len() - 22..bundle.len();
    let step = bundle.len() / 40 + 1;
    let positions = first_local
        .chain(first_central)
        .chain(end_record)
        .chain((0..bundle.len()).step_by(step));
    for at in positions {
        let mut bad = bundle.clone();
        bad[at] ^= 0x01;
        let r = verify::verify(&bad, Some(&key));
        assert!(!r.ok(), "flipping byte {at} of the bundle went unnoticed");
    }
    // A raw flip inside a record's base64 in the file still names the event.
    let rec_b64 = ev["events"][target]["record"].as_str().unwrap();
    let pos = bundle
        .windows(rec_b64.len())
        .position(|w| w == rec_b64.as_bytes())
        .unwrap();
    let mut bad = bundle.clone();
    bad[pos + 200] = if bad[pos + 200] == b'A' { b'B' } else { b'A' };
    for (i, (ok, out)) in both(&bad, &key, py).into_iter().enumerate() {
        assert!(!ok, "{out}");
        assert!(
            out.lines()
                .any(|l| l.starts_with("FAIL") && l.contains(&name)),
            "verifier {i} did not name {name}:\n{out}"
        );
    }
}

#[tokio::test]
async fn an_export_refuses_bad_queries_and_paging() {
    let w = world().await;
    for (body, code) in [
        (serde_json::json!({"query": {"limit": "5"}}), "bad_query"),
        (
            serde_json::json!({"query": {"severity": "urgent"}}),
            "bad_severity",
        ),
        (serde_json::json!({"query": {"nope": "x"}}), "bad_json"),
        (serde_json::json!({"q": "x"}), "bad_json"),
    ] {
        let r = w
            .env
            .call(post_json("/v1/evidence", Some(&w.auditor), body.clone()))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.error_code(), code, "{body}");
    }
    // Numbers are accepted where a query string would have digits.
    let r = w
        .env
        .call(post_json(
            "/v1/evidence",
            Some(&w.auditor),
            serde_json::json!({"query": {"from": T0, "to": T0 + 3 * 60_000, "app": "crm"}}),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["x-sessiontrail-events"], "3");
}
