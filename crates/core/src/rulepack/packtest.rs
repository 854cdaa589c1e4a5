//! Pack tests: TOML files of fixture events and the verdicts expected for
//! them, run against a pack (`sessiontrail rulepack test` calls [`run`]).
//! The format is specified in `docs/rulepack.md`.
//!
//! ```toml
//! [[case]]
//! name = "CSV export asks for a justification"
//! event = { kind = "click", url = "https://crm.acme.test/crm/customers", selectors = ["button#export-csv"] }
//! expect = { app = "crm", rules = ["crm.customers.export_csv"], response = "justify" }
//!
//! [[case]]
//! name = "a session that climbs to terminate"
//! [[case.steps]]
//! at_ms = 0
//! event = { … }
//! expect = { rules = [ … ], session_risk = 40 }
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::matcher::{Engine, Verdict};
use super::{Pack, PackError, PackErrors, line_col, toml_error};
use crate::event::{
    ActionKind, EventKind, FieldKind, Observation, ObservedField, ObservedTarget, Outcome,
    Response, Severity, Target,
};
use crate::risk::SessionRisk;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    case: Vec<Spanned<Case>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    at_ms: i64,
    event: Option<TestEvent>,
    expect: Option<Expect>,
    #[serde(default)]
    steps: Vec<Step>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    #[serde(default)]
    at_ms: i64,
    event: TestEvent,
    expect: Expect,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum KindSpec {
    Name(String),
    Full(EventKind),
}

fn default_true() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestEvent {
    kind: KindSpec,
    url: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    selectors: Vec<String>,
    #[serde(default = "default_true")]
    trusted: bool,
    /// name → value (kind `text`).
    #[serde(default)]
    fields: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// `""` expects no app (outside every packed app).
    app: Option<String>,
    rules: Vec<String>,
    response: Option<Response>,
    severity: Option<Severity>,
    tags: Option<Vec<String>>,
    risk: Option<u32>,
    session_risk: Option<u32>,
    /// The `at` of the threshold this event crosses; 0 = none.
    threshold: Option<u32>,
    clear: Option<Vec<String>>,
}

/// The [`EventKind`] a bare kind name stands for (payload fields empty).
pub fn default_kind(k: ActionKind) -> EventKind {
    match k {
        ActionKind::PageLoad => EventKind::PageLoad,
        ActionKind::RouteChange => EventKind::RouteChange {
            from: String::new(),
        },
        ActionKind::TabClose => EventKind::TabClose,
        ActionKind::Click => EventKind::Click,
        ActionKind::Submit => EventKind::Submit,
        ActionKind::Input => EventKind::Input,
        ActionKind::Copy => EventKind::Copy,
        ActionKind::Cut => EventKind::Cut,
        ActionKind::Paste => EventKind::Paste,
        ActionKind::Download => EventKind::Download {
            filename: String::new(),
            mime: String::new(),
            bytes: None,
        },
        ActionKind::Upload => EventKind::Upload { files: Vec::new() },
        ActionKind::Print => EventKind::Print,
        ActionKind::Login => EventKind::Login,
        ActionKind::Logout => EventKind::Logout,
        ActionKind::Idle => EventKind::Idle { idle_ms: 0 },
        ActionKind::Terminated => EventKind::Terminated {
            reason: String::new(),
        },
        ActionKind::AgentStarted => EventKind::AgentStarted {
            agent_version: String::new(),
        },
        ActionKind::PolicyApplied => EventKind::PolicyApplied {
            policy_hash: String::new(),
        },
        ActionKind::RulePackApplied => EventKind::RulePackApplied {
            pack_id: String::new(),
            pack_version: 0,
            checksum: String::new(),
        },
        ActionKind::Gap => EventKind::Gap {
            dropped: 0,
            first_ms: 0,
            last_ms: 0,
            reason: String::new(),
        },
        ActionKind::ResponseResolved => EventKind::ResponseResolved {
            response: Response::Log,
            outcome: Outcome::Allowed,
            justification: None,
        },
        ActionKind::AdminAction => EventKind::AdminAction {
            action: String::new(),
            subject: String::new(),
            details: String::new(),
        },
    }
}

impl TestEvent {
    fn observation(self) -> Result<Observation, String> {
        let kind = match self.kind {
            KindSpec::Full(k) => k,
            KindSpec::Name(n) => ActionKind::parse(&n)
                .map(default_kind)
                .ok_or_else(|| format!("unknown event kind {n:?}"))?,
        };
        let has_target = !(self.tag.is_empty()
            && self.role.is_empty()
            && self.name.is_empty()
            && self.text.is_empty()
            && self.selectors.is_empty());
        Ok(Observation {
            kind,
            url: self.url,
            user: self.user,
            tab: String::new(),
            session: String::new(),
            target: has_target.then(|| ObservedTarget {
                target: Target {
                    tag: self.tag,
                    role: self.role,
                    name: self.name,
                    path: String::new(),
                    text: self.text,
                },
                selectors: self.selectors,
            }),
            trusted: self.trusted,
            fields: self
                .fields
                .into_iter()
                .map(|(name, value)| ObservedField {
                    name,
                    value,
                    kind: FieldKind::Text,
                })
                .collect(),
            action_id: None,
        })
    }
}

/// The result of one case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseReport {
    pub name: String,
    /// Line of the `[[case]]` in the test file.
    pub line: usize,
    pub passed: bool,
    /// One line per difference: `step 2: rules: expected [..], got [..]`.
    pub diff: Vec<String>,
}

/// The result of one test file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub file: String,
    pub cases: Vec<CaseReport>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.cases.iter().all(|c| c.passed)
    }

    pub fn failed(&self) -> usize {
        self.cases.iter().filter(|c| !c.passed).count()
    }

    /// A readable report: one line per case, the diff under each failure.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for c in &self.cases {
            let status = if c.passed { "ok  " } else { "FAIL" };
            let _ = writeln!(s, "{status} {}:{} {}", self.file, c.line, c.name);
            for d in &c.diff {
                let _ = writeln!(s, "       {d}");
            }
        }
        let _ = writeln!(
            s,
            "{}: {} passed, {} failed",
            self.file,
            self.cases.len() - self.failed(),
            self.failed()
        );
        s
    }
}

fn list<T: std::fmt::Debug>(v: &[T]) -> String {
    format!("{v:?}")
}

fn compare(prefix: &str, e: &Expect, v: &Verdict<'_>, diff: &mut Vec<String>) {
    let mut d = |what: &str, exp: String, got: String| {
        if exp != got {
            diff.push(format!("{prefix}{what}: expected {exp}, got {got}"));
        }
    };
    if let Some(app) = &e.app {
        d(
            "app",
            format!("{app:?}"),
            format!("{:?}", v.app.unwrap_or("")),
        );
    }
    d("rules", list(&e.rules), list(&v.rule_ids()));
    if let Some(r) = e.response {
        d("response", r.to_string(), v.response.to_string());
    }
    if let Some(s) = e.severity {
        d(
            "severity",
            s.to_string(),
            v.severity.map_or("none".into(), |s| s.to_string()),
        );
    }
    if let Some(t) = &e.tags {
        let mut t = t.clone();
        t.sort();
        d("tags", list(&t), list(&v.tags));
    }
    if let Some(r) = e.risk {
        d("risk", r.to_string(), v.risk_added.to_string());
    }
    if let Some(r) = e.session_risk {
        d("session_risk", r.to_string(), v.session_risk.to_string());
    }
    if let Some(t) = e.threshold {
        d(
            "threshold",
            t.to_string(),
            v.threshold.map_or(0, |t| t.at).to_string(),
        );
    }
    if let Some(c) = &e.clear {
        let mut c = c.clone();
        c.sort();
        d("clear", list(&c), list(&v.clear_fields));
    }
}

/// Runs every case of a test file against `pack`. Errors are about the
/// test file itself (syntax, unknown keys, a case with neither `event` nor
/// `steps`), positioned like pack errors.
pub fn run(pack: &Pack, file: &str, src: &str) -> Result<Report, PackErrors> {
    let one = |line: usize, col: usize, message: String| {
        PackErrors(vec![PackError {
            file: file.to_owned(),
            line,
            col,
            message,
        }])
    };
    let engine = Engine::new(std::slice::from_ref(pack))
        .map_err(|e| one(1, 1, format!("pack does not compile: {e}")))?;
    let tf: TestFile =
        toml::from_str(src).map_err(|e| PackErrors(vec![toml_error(file, src, &e)]))?;
    let mut cases = Vec::new();
    for c in tf.case {
        let (line, col) = line_col(src, c.span().start);
        let c = c.into_inner();
        let steps: Vec<Step> = match (c.event, c.expect, c.steps.is_empty()) {
            (Some(event), Some(expect), true) => vec![Step {
                at_ms: c.at_ms,
                event,
                expect,
            }],
            (None, None, false) => c.steps,
            _ => {
                return Err(one(
                    line,
                    col,
                    format!(
                        "case {:?} needs either `event` and `expect`, or `steps`",
                        c.name
                    ),
                ));
            }
        };
        let multi = steps.len() > 1;
        let mut risk = SessionRisk::default();
        let mut diff = Vec::new();
        for (i, s) in steps.into_iter().enumerate() {
            let prefix = if multi {
                format!("step {}: ", i + 1)
            } else {
                String::new()
            };
            match s.event.observation() {
                Ok(obs) => {
                    let v = engine.classify(&obs, s.at_ms, &mut risk);
                    compare(&prefix, &s.expect, &v, &mut diff);
                }
                Err(e) => return Err(one(line, col, format!("case {:?}: {e}", c.name))),
            }
        }
        cases.push(CaseReport {
            name: c.name,
            line,
            passed: diff.is_empty(),
            diff,
        });
    }
    Ok(Report {
        file: file.to_owned(),
        cases,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACK: &str = r#"
[pack]
id = "t"
version = 1

[session]
thresholds = [{ at = 10, response = "step_up" }]

[[app]]
id = "crm"
name = "CRM"
hosts = ["crm.acme.test"]

[[rule]]
id = "export"
app = "crm"
title = "Export"
actions = ["click"]
selector = "button#export"
severity = "high"
risk = 6
tags = ["soc2:CC6.1"]
response = "justify"
"#;

    const TESTS: &str = r#"
[[case]]
name = "export matches"
event = { kind = "click", url = "https://crm.acme.test/x", selectors = ["button#export"] }
expect = { app = "crm", rules = ["export"], response = "justify", severity = "high", tags = ["soc2:CC6.1"], risk = 6 }

[[case]]
name = "wrong expectation"
event = { kind = "click", url = "https://crm.acme.test/x" }
expect = { rules = ["export"], response = "justify" }

[[case]]
name = "two exports cross the threshold"
[[case.steps]]
event = { kind = "click", url = "https://crm.acme.test/x", selectors = ["button#export"] }
expect = { rules = ["export"], session_risk = 6, threshold = 0 }
# One second of decay: 6 -> 5.997, + 6 = 11.997, reported as 11.
[[case.steps]]
at_ms = 1000
event = { kind = { type = "click" }, url = "https://crm.acme.test/x", selectors = ["button#export"] }
expect = { rules = ["export"], session_risk = 11, threshold = 10, response = "step_up" }
"#;

    #[test]
    fn runner_reports_pass_and_fail_with_diff() {
        let pack = crate::rulepack::parse("t.toml", PACK).unwrap();
        let r = run(&pack, "t_test.toml", TESTS).unwrap();
        assert_eq!(r.cases.len(), 3);
        assert!(r.cases[0].passed, "{}", r.render());
        assert!(r.cases[2].passed, "{}", r.render());
        assert_eq!(
            r.cases[1],
            CaseReport {
                name: "wrong expectation".into(),
                line: 7,
                passed: false,
                diff: vec![
                    "rules: expected [\"export\"], got []".into(),
                    "response: expected justify, got log".into(),
                ],
            }
        );
        assert!(!r.passed());
        assert_eq!(
            r.render().lines().last(),
            Some("t_test.toml: 2 passed, 1 failed")
        );
    }

    #[test]
    fn test_file_errors_are_positioned() {
        let pack = crate::rulepack::parse("t.toml", PACK).unwrap();
        let e = run(&pack, "x.toml", "[[case]]\nname = \"a\"\nevnt = 1\n").unwrap_err();
        assert_eq!((e.0[0].line, e.0[0].col), (3, 1));
        assert!(e.0[0].message.contains("unknown field `evnt`"), "{e}");
        let e = run(&pack, "x.toml", "\n[[case]]\nname = \"a\"\n").unwrap_err();
        assert_eq!(
            e.0[0].to_string(),
            "x.toml:2:1: case \"a\" needs either `event` and `expect`, or `steps`"
        );
        let e = run(
            &pack,
            "x.toml",
            "[[case]]\nname = \"a\"\nevent = { kind = \"clik\", url = \"https://x\" }\nexpect = { rules = [] }\n",
        )
        .unwrap_err();
        assert_eq!(e.0[0].message, "case \"a\": unknown event kind \"clik\"");
    }
}
