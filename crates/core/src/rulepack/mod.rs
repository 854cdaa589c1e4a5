//! Rule packs: the TOML language a security admin writes and reviews, its
//! validated form ([`Pack`]), its compiled signed form ([`compiled`]), the
//! matcher ([`Engine`]) and pack tests ([`packtest`]).
//!
//! The language is specified with examples in `docs/rulepack.md`.
//!
//! - [`parse`] turns TOML into a [`Pack`], or returns *every* problem found,
//!   each with file, line, column and reason. Unknown keys are errors: a
//!   typo in a security policy must not pass silently.
//! - [`compiled::compile`] signs a pack with the admin key;
//!   [`compiled::verify`] checks the blob against pinned admin keys and the
//!   version in force (no forgery, no rollback).
//! - [`Engine`] compiles globs and conditions once and classifies
//!   observations in well under the 2 µs budget, without allocating unless
//!   something matches.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::event::{ActionKind, Response, Severity};
use crate::risk::RiskPolicy;

pub mod compiled;
pub mod condition;
pub mod glob;
pub mod matcher;
pub mod packtest;
mod source;

pub use compiled::{AdminKey, InForce, VerifiedPack, VerifyError, compile, verify};
pub use matcher::{Engine, EngineError, RuleMatch, SessionSignal, Verdict};
pub use source::parse;

/// Compliance frameworks a tag may name (`framework:control`).
pub const FRAMEWORKS: [&str; 7] = ["soc2", "sox", "hipaa", "gdpr", "pci", "iso27001", "nist"];

/// A validated rule pack. Plain data: no spans, no compiled matchers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pack {
    pub pack: PackMeta,
    /// `None` when the pack has no `[session]` table.
    pub session: Option<RiskPolicy>,
    pub apps: Vec<App>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackMeta {
    pub id: String,
    /// Monotonic: a verifier refuses a version below the one in force.
    pub version: u64,
    pub description: String,
}

/// Whether a URL part is kept in signed events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    Keep,
    #[default]
    Drop,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlPolicy {
    pub query: Keep,
    pub fragment: Keep,
}

impl UrlPolicy {
    /// The URL as it may be recorded: query and fragment dropped unless kept.
    pub fn apply(&self, url: &str) -> String {
        let (before_frag, frag) = match url.find('#') {
            Some(i) => (&url[..i], Some(&url[i..])),
            None => (url, None),
        };
        let (base, query) = match before_frag.find('?') {
            Some(i) => (&before_frag[..i], Some(&before_frag[i..])),
            None => (before_frag, None),
        };
        let mut out = String::with_capacity(url.len());
        out.push_str(base);
        if let (Keep::Keep, Some(q)) = (self.query, query) {
            out.push_str(q);
        }
        if let (Keep::Keep, Some(f)) = (self.fragment, frag) {
            out.push_str(f);
        }
        out
    }
}

/// How a login is recognised.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// Path glob of the login page.
    pub path: Option<String>,
    /// Selector of the login form: a submit on it (on `path`) followed by a
    /// navigation away from `path` is a login.
    pub form: Option<String>,
    /// Path glob whose page means "just logged in" (e.g. an SSO callback).
    pub url: Option<String>,
}

/// How a logout is recognised.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logout {
    /// Path glob: navigating to it is a logout.
    pub path: Option<String>,
    /// Selector: a click on it is a logout.
    pub selector: Option<String>,
}

/// Where the signed-in user's identity is read in the page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// `document.querySelector` target.
    pub selector: String,
    /// Attribute holding the identity; `None` = the element's text.
    pub attribute: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    pub id: String,
    pub name: String,
    /// Host globs (`crm.acme.test`, `*.crm.acme.test`).
    pub hosts: Vec<String>,
    pub url: UrlPolicy,
    /// Field names the app uses for secrets; never captured, and `clear`
    /// capture of them is refused.
    pub password_fields: Vec<String>,
    pub login: Option<Login>,
    pub logout: Option<Logout>,
    pub identity: Option<Identity>,
}

/// How a field's value is captured in signed events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capture {
    Clear,
    #[default]
    Masked,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    pub app: String,
    pub title: String,
    /// Sorted, no duplicates.
    pub actions: Vec<ActionKind>,
    /// Path glob.
    pub path: Option<String>,
    /// CSS selector (evaluated by the browser, reported in
    /// `ObservedTarget.selectors`).
    pub selector: Option<String>,
    /// Accessible-name glob (case-insensitive).
    pub name: Option<String>,
    /// Visible-text glob (case-insensitive).
    pub text: Option<String>,
    /// Conditions on field values, all ANDed.
    pub when: Vec<String>,
    pub severity: Severity,
    pub risk: u32,
    /// `framework:control`, sorted, no duplicates.
    pub tags: Vec<String>,
    pub response: Response,
    pub capture: BTreeMap<String, Capture>,
}

/// True when `name` is a field no rule may capture in clear for `app`.
pub fn is_password_field(app: &App, name: &str) -> bool {
    app.password_fields.iter().any(|p| p == name) || {
        let l = name.to_ascii_lowercase();
        l.contains("password") || l.contains("passwd")
    }
}

/// One problem in a rule-pack (or pack-test) source, with its position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackError {
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub col: usize,
    pub message: String,
}

impl fmt::Display for PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

/// Every problem found, in source order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct PackErrors(pub Vec<PackError>);

impl fmt::Display for PackErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// 1-based line and column (in characters) of byte `offset` in `src`.
pub(crate) fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let mut off = offset;
    while !src.is_char_boundary(off) {
        off -= 1;
    }
    let before = &src[..off];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// Turns a `toml` parse/deserialize error into a positioned error.
pub(crate) fn toml_error(file: &str, src: &str, e: &toml::de::Error) -> PackError {
    let (line, col) = e.span().map_or((1, 1), |s| line_col(src, s.start));
    PackError {
        file: file.to_owned(),
        line,
        col,
        message: e.message().trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_policy() {
        let u = "https://crm.acme.test/crm/customers?q=bob#top";
        assert_eq!(
            UrlPolicy::default().apply(u),
            "https://crm.acme.test/crm/customers"
        );
        let keep_q = UrlPolicy {
            query: Keep::Keep,
            fragment: Keep::Drop,
        };
        assert_eq!(keep_q.apply(u), "https://crm.acme.test/crm/customers?q=bob");
        let keep_f = UrlPolicy {
            query: Keep::Drop,
            fragment: Keep::Keep,
        };
        assert_eq!(keep_f.apply(u), "https://crm.acme.test/crm/customers#top");
        assert_eq!(keep_f.apply("https://x.test/a#f?g"), "https://x.test/a#f?g");
    }

    #[test]
    fn line_col_counts_chars() {
        let s = "ab\ncé d\n";
        assert_eq!(line_col(s, 0), (1, 1));
        assert_eq!(line_col(s, 3), (2, 1));
        assert_eq!(line_col(s, 6), (2, 3));
        assert_eq!(line_col(s, 100), (3, 1));
    }
}

#[cfg(test)]
mod demo_pack {
    use super::*;

    fn root() -> String {
        format!("{}/../../rulepacks/demo", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn demo_pack_tests_all_pass() {
        let src = std::fs::read_to_string(format!("{}/acme.toml", root())).unwrap();
        let pack = match parse("acme.toml", &src) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        let mut files: Vec<_> = std::fs::read_dir(format!("{}/tests", root()))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        assert!(files.len() >= 4, "{files:?}");
        let mut covered = std::collections::BTreeSet::new();
        let mut cases = 0;
        for f in files {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&f).unwrap();
            let report = match packtest::run(&pack, &name, &text) {
                Ok(r) => r,
                Err(e) => panic!("{e}"),
            };
            assert!(report.passed(), "{}", report.render());
            cases += report.cases.len();
            for r in &pack.rules {
                if text.contains(&format!("\"{}\"", r.id)) {
                    covered.insert(r.id.clone());
                }
            }
        }
        assert!(cases >= 20, "only {cases} cases");
        let all: std::collections::BTreeSet<_> = pack.rules.iter().map(|r| r.id.clone()).collect();
        assert_eq!(covered, all, "every rule has a pack test");
        // And the demo pack compiles and verifies.
        let blob = compile(&pack, &[5; 32]).unwrap();
        let v = verify(&blob, &[AdminKey::from_seed(&[5; 32])], None).unwrap();
        assert_eq!(v.pack, pack);
    }
}
