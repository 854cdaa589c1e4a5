//! `sessiontrail dev seed` (hidden): fills a data directory with realistic,
//! really signed sessions for the auditor UI, its browser test, screenshots
//! and search measurements.
//!
//! Devices are enrolled and their batches ingested through the same store
//! calls as the HTTP API (`Store::enroll`, `ingest::verify`,
//! `Store::ingest`), so everything seeded is verified evidence. One device
//! withholds a few sequence numbers, so gaps are visible. Keys come from a
//! fixed seed: the data is reproducible and must never be used for anything
//! but development.

use std::path::Path;

use sessiontrail_core::event::{Classification, Decision, FieldValue, Outcome};
use sessiontrail_core::{
    ChainTip, DeviceSigner, EventBody, EventKind, KeyStatus, Response, Severity, SignedEvent,
    Target, batch,
};
use sha2::{Digest as _, Sha256};

use crate::auth;
use crate::store::sqlite::{SqliteOptions, SqliteStore};
use crate::store::{Actor, Enrollment, Role, Store};

/// What was seeded.
#[derive(Debug, Clone)]
pub struct Seeded {
    /// An auditor credential (shown once).
    pub auditor: String,
    pub devices: usize,
    pub events: u64,
    pub sessions: u64,
}

const USERS: [&str; 6] = [
    "alice@acme.test",
    "bob@acme.test",
    "carol@acme.test",
    "dave@acme.test",
    "erin@acme.test",
    "frank@acme.test",
];

/// A tiny deterministic generator (xorshift), so seeded data is reproducible.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

fn target(tag: &str, name: &str, path: &str) -> Option<Target> {
    Some(Target {
        tag: tag.into(),
        role: if tag == "a" { "link" } else { tag }.into(),
        name: name.into(),
        path: path.into(),
        text: name.into(),
    })
}

struct Ctx<'a> {
    user: &'a str,
    app: &'a str,
    session: String,
    tab: String,
    host: String,
}

impl Ctx<'_> {
    fn body(&self, kind: EventKind, path: &str, target: Option<Target>) -> EventBody {
        EventBody {
            kind,
            user: self.user.into(),
            app: self.app.into(),
            tab: self.tab.clone(),
            session: self.session.clone(),
            url: format!("https://{}{path}", self.host),
            target,
            trusted: true,
            fields: Default::default(),
            classification: Classification::default(),
            decision: Decision::default(),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn classify(
    b: &mut EventBody,
    rule: &str,
    severity: Severity,
    tags: &[&str],
    response: Response,
    reason: &str,
    risk: u32,
    action_id: Option<String>,
) {
    b.classification = Classification {
        rules: vec![rule.into()],
        severity: Some(severity),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        risk,
        session_risk: risk,
    };
    b.decision = Decision {
        response,
        reason: reason.into(),
        action_id,
    };
}

/// The events of one realistic session, login to logout.
fn session_bodies(rng: &mut Rng, user: &str, app: &str, n: u64) -> Vec<EventBody> {
    let c = Ctx {
        user,
        app,
        session: format!("{app}-s{:08x}", rng.next() as u32),
        tab: format!("tab-{}", rng.below(90) + 10),
        host: format!("{app}.acme.test"),
    };
    let mut out = vec![c.body(EventKind::Login, "/login", None)];
    out.push(c.body(EventKind::PageLoad, "/home", None));
    let pages: &[(&str, &str)] = match app {
        "crm" => &[
            ("/accounts", "Accounts"),
            ("/accounts/4711", "Globex Corporation"),
            ("/contacts", "Contacts"),
            ("/reports/pipeline", "Pipeline report"),
        ],
        "hr" => &[
            ("/employees", "Employees"),
            ("/employees/1042", "Jordan Lee"),
            ("/payroll/runs", "Payroll runs"),
            ("/timeoff", "Time off"),
        ],
        _ => &[
            ("/iam/users", "Users"),
            ("/iam/roles", "Roles"),
            ("/billing", "Billing"),
            ("/audit-log", "Audit log"),
        ],
    };
    let mut route = "/home".to_owned();
    while (out.len() as u64) < n.saturating_sub(1) {
        let (path, label) = *rng.pick(pages);
        let roll = rng.below(100);
        let action_id = format!("act-{:012x}", rng.next() & 0xffff_ffff_ffff);
        if roll < 35 {
            let mut b = c.body(
                EventKind::RouteChange {
                    from: format!("https://{}{route}", c.host),
                },
                path,
                None,
            );
            b.trusted = true;
            out.push(b);
            route = path.to_owned();
        } else if roll < 75 {
            out.push(c.body(
                EventKind::Click,
                &route,
                target("a", label, &format!("nav > a[href=\"{path}\"]")),
            ));
        } else if roll < 85 {
            let mut b = c.body(
                EventKind::Input,
                &route,
                target("input", "Search", "header input[type=search]"),
            );
            b.fields
                .insert("q".into(), FieldValue::Masked("mX4cQ2…".into()));
            out.push(b);
        } else {
            // A risky action, by app.
            match app {
                "crm" => {
                    let mut b = c.body(
                        EventKind::Click,
                        "/accounts",
                        target("button", "Export all accounts", "main button.export"),
                    );
                    classify(
                        &mut b,
                        "crm.bulk-export",
                        Severity::High,
                        &["gdpr:art32", "soc2:cc6.1"],
                        Response::Justify,
                        "rule crm.bulk-export: bulk export of customer records needs a business reason",
                        40,
                        Some(action_id.clone()),
                    );
                    out.push(b);
                    let mut r = c.body(
                        EventKind::ResponseResolved {
                            response: Response::Justify,
                            outcome: Outcome::Allowed,
                            justification: Some("Quarterly churn analysis for finance".into()),
                        },
                        "/accounts",
                        None,
                    );
                    r.decision.action_id = Some(action_id);
                    out.push(r);
                    out.push(c.body(
                        EventKind::Download {
                            filename: "accounts-export.csv".into(),
                            mime: "text/csv".into(),
                            bytes: Some(1_482_113),
                        },
                        "/accounts",
                        None,
                    ));
                }
                "hr" => {
                    let mut b = c.body(
                        EventKind::Submit,
                        "/employees/1042/bank",
                        target(
                            "button",
                            "Approve bank details change",
                            "form#bank button[type=submit]",
                        ),
                    );
                    classify(
                        &mut b,
                        "hr.bank-details-approval",
                        Severity::High,
                        &["sox:itgc-ac", "soc2:cc6.1"],
                        Response::StepUp,
                        "rule hr.bank-details-approval: payroll bank change needs step-up authentication",
                        50,
                        Some(action_id.clone()),
                    );
                    out.push(b);
                    let mut r = c.body(
                        EventKind::ResponseResolved {
                            response: Response::StepUp,
                            outcome: if rng.below(4) == 0 {
                                Outcome::Refused
                            } else {
                                Outcome::Allowed
                            },
                            justification: None,
                        },
                        "/employees/1042/bank",
                        None,
                    );
                    r.decision.action_id = Some(action_id);
                    out.push(r);
                }
                _ => {
                    if rng.below(3) == 0 {
                        let mut b = c.body(
                            EventKind::Click,
                            "/iam/users/svc-backup/mfa",
                            target("button", "Disable MFA", "section.mfa button.danger"),
                        );
                        classify(
                            &mut b,
                            "console.mfa-disable",
                            Severity::Critical,
                            &["soc2:cc6.1", "iso27001:a.9.4"],
                            Response::Block,
                            "rule console.mfa-disable: turning MFA off is not allowed from the browser",
                            90,
                            Some(action_id),
                        );
                        out.push(b);
                    } else {
                        let mut b = c.body(
                            EventKind::Submit,
                            "/iam/roles/admin/members",
                            target("button", "Grant Administrator role", "form.grant button"),
                        );
                        classify(
                            &mut b,
                            "console.iam-role-grant",
                            Severity::Critical,
                            &["soc2:cc6.2", "sox:itgc-ac"],
                            Response::StepUp,
                            "rule console.iam-role-grant: privileged role change needs step-up",
                            70,
                            Some(action_id.clone()),
                        );
                        out.push(b);
                        let mut r = c.body(
                            EventKind::ResponseResolved {
                                response: Response::StepUp,
                                outcome: Outcome::Allowed,
                                justification: None,
                            },
                            "/iam/roles/admin/members",
                            None,
                        );
                        r.decision.action_id = Some(action_id);
                        out.push(r);
                    }
                }
            }
        }
    }
    out.push(c.body(EventKind::Logout, "/logout", None));
    out
}

fn device_seed(i: usize) -> [u8; 32] {
    Sha256::digest(format!("sessiontrail dev seed device {i}").as_bytes()).into()
}

fn enroll(store: &SqliteStore, i: usize, user: &str) -> Result<(i64, DeviceSigner), String> {
    let now = crate::now_ms();
    let tok = auth::generate(
        Role::Enroll,
        Some(now + 3_600_000),
        Some(1),
        Some("dev".into()),
    )
    .map_err(|e| e.to_string())?;
    let (token_id, secret) = {
        let (id, secret) = auth::parse(&tok.credential).ok_or("bad generated token")?;
        (id.to_owned(), secret.to_owned())
    };
    store
        .create_token(tok.token, &Actor::cli())
        .map_err(|e| e.to_string())?;
    let signer = DeviceSigner::new(&device_seed(i), ChainTip::GENESIS);
    let cred = auth::generate(Role::Device, None, None, None).map_err(|e| e.to_string())?;
    let device = store
        .enroll(Enrollment {
            token_id,
            presented_hash: auth::hash_secret(&secret),
            device_key: signer.public_key(),
            user: user.into(),
            device_name: format!("laptop-{}", i + 1),
            claims: serde_json::json!({"user": user, "device_name": format!("laptop-{}", i + 1), "os": "linux"}),
            credential: cred.token,
            now_ms: now,
        })
        .map_err(|e| e.to_string())?
        .map_err(|r| format!("enrollment refused: {r:?}"))?;
    Ok((device.id, signer))
}

fn ingest(
    store: &SqliteStore,
    device_id: i64,
    key: sessiontrail_core::DeviceKey,
    evs: &[SignedEvent],
) -> Result<u64, String> {
    let mut accepted = 0;
    for chunk in evs.chunks(500) {
        let vb = crate::ingest::verify(key, KeyStatus::Enrolled, &batch::encode(chunk))
            .map_err(|e| e.to_string())?;
        let out = loop {
            match store.ingest(device_id, vb.clone(), crate::now_ms()) {
                Err(crate::store::StoreError::Busy) => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                other => break other,
            }
        }
        .map_err(|e| e.to_string())?
        .map_err(|r| format!("ingest refused: {r:?}"))?;
        accepted += out.accepted;
    }
    Ok(accepted)
}

/// Seeds `dir` with about `events` events over `devices` devices.
pub fn seed(dir: &Path, events: u64, devices: usize) -> Result<Seeded, String> {
    let store = SqliteStore::open(dir, SqliteOptions::default())
        .map_err(|e| format!("cannot open the store in {}: {e}", dir.display()))?;
    let auditor = auth::generate(Role::Auditor, None, None, None).map_err(|e| e.to_string())?;
    store
        .create_token(auditor.token, &Actor::cli())
        .map_err(|e| e.to_string())?;
    let devices = devices.max(1);
    let mut rng = Rng(0x5eed_5eed_1234_5678);
    let per_device = events.div_ceil(devices as u64);
    // Sessions end within the last hour; earlier ones go back in time.
    let now = crate::now_ms();
    let (mut total, mut sessions) = (0u64, 0u64);
    for i in 0..devices {
        let user = USERS[i % USERS.len()];
        let (device_id, mut signer) = enroll(&store, i, user)?;
        let mut bodies = Vec::new();
        while (bodies.len() as u64) < per_device {
            let app = *rng.pick(&["crm", "hr", "console"]);
            let n = 8 + rng.below(30);
            bodies.extend(session_bodies(&mut rng, user, app, n));
            sessions += 1;
        }
        let count = bodies.len() as i64;
        let mut t = now - count * 45_000 - (i as i64) * 7_000;
        let mut signed = Vec::with_capacity(bodies.len());
        for b in &bodies {
            t += 5_000 + rng.below(60_000) as i64;
            signed.push(signer.sign(t, b));
        }
        // The second device lost a few events in transit: a visible gap.
        if i == 1 && signed.len() > 20 {
            signed.drain(12..15);
        }
        total += ingest(&store, device_id, signer.public_key(), &signed)?;
    }
    store
        .checkpoint(crate::now_ms())
        .map_err(|e| e.to_string())?;
    Ok(Seeded {
        auditor: auditor.credential,
        devices,
        events: total,
        sessions,
    })
}

/// One measured search.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Measured {
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    pub rows: usize,
}

/// Times typical auditor queries against the store in `dir` (median of
/// `runs`, through the same store calls as the API, first page of 50).
pub fn bench_search(dir: &Path, runs: usize) -> Result<Vec<Measured>, String> {
    use crate::search::{SearchParams, parse_query};
    let store = SqliteStore::open(dir, SqliteOptions::default())
        .map_err(|e| format!("cannot open the store in {}: {e}", dir.display()))?;
    let stats = store.stats().map_err(|e| e.to_string())?;
    let queries: [(&str, &str); 10] = [
        ("search_all_newest", ""),
        ("search_user", "user=carol@acme.test"),
        ("search_user_app", "user=carol@acme.test&app=hr"),
        ("search_severity_high", "severity=high"),
        ("search_tag", "tag=sox:itgc-ac"),
        (
            "search_rule_decision",
            "rule=console.mfa-disable&decision=block",
        ),
        ("search_text_common", "q=accounts"),
        ("search_text_rare", "q=bank"),
        ("search_text_and_user", "q=export&user=alice@acme.test"),
        (
            "search_action_time",
            "action=download&from=0&to=9999999999999",
        ),
    ];
    let mut out = Vec::new();
    for (name, qs) in queries {
        let params: SearchParams = crate::evidence::cli::parse_query_string(qs)?;
        let q = parse_query(&params, 500).map_err(|e| e.to_string())?;
        let mut times = Vec::with_capacity(runs);
        let mut rows = 0;
        for _ in 0..runs.max(1) {
            let t = std::time::Instant::now();
            let r = crate::store::SearchStore::search_events(&store, &q.filter, None, 51)
                .map_err(|e| e.to_string())?;
            let views: Vec<_> = r.iter().map(crate::search::EventView::of).collect();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            rows = views.len();
        }
        times.sort_by(f64::total_cmp);
        out.push(Measured {
            name: name.into(),
            value: times[times.len() / 2],
            unit: "ms",
            rows,
        });
    }
    let t = std::time::Instant::now();
    let sessions = crate::store::SearchStore::sessions(
        &store,
        &crate::store::search::SessionFilter {
            user: Some("bob@acme.test".into()),
            ..Default::default()
        },
        100,
    )
    .map_err(|e| e.to_string())?;
    out.push(Measured {
        name: "sessions_of_user".into(),
        value: t.elapsed().as_secs_f64() * 1000.0,
        unit: "ms",
        rows: sessions.len(),
    });
    if let Some(s) = sessions.first() {
        let f = crate::store::search::EventFilter {
            user: Some(s.user.clone()),
            app: Some(s.app.clone()),
            session: Some(s.session.clone()),
            ..Default::default()
        };
        let t = std::time::Instant::now();
        let data =
            crate::store::SearchStore::timeline(&store, &f, 2000).map_err(|e| e.to_string())?;
        let tl = crate::timeline::build(data, None, None, s.session.clone());
        out.push(Measured {
            name: "timeline_with_reverification".into(),
            value: t.elapsed().as_secs_f64() * 1000.0,
            unit: "ms",
            rows: tl.entries.len(),
        });
    }
    out.push(Measured {
        name: "events_in_store".into(),
        value: stats.log_size as f64,
        unit: "events",
        rows: 0,
    });
    Ok(out)
}
