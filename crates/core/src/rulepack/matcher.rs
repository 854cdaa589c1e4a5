//! The matcher: verified packs compiled into an [`Engine`] that finds the
//! app for a URL and classifies observations.
//!
//! Globs and conditions are compiled once; rules are indexed by
//! (app, action kind), so an event is only tested against the rules of its
//! app written for its kind, and each test starts with cheap literal
//! prefix/suffix checks. Nothing is allocated unless a rule matches.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::condition::Condition;
use super::glob::{Glob, GlobKind};
use super::{App, Capture, Pack};
use crate::event::{
    ActionKind, Classification, Decision, EventKind, Observation, Response, Severity,
};
use crate::risk::{RiskPolicy, RiskStep, SessionRisk, Threshold};

const KINDS: usize = ActionKind::ALL.len();

/// Why packs cannot be combined into an engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("pack {0:?} is loaded twice")]
    DuplicatePack(String),
    #[error("app {0:?} is defined by more than one pack")]
    DuplicateApp(String),
    #[error("rule {0:?} is defined more than once")]
    DuplicateRule(String),
    #[error("rule {rule:?} names unknown app {app:?}")]
    UnknownApp { rule: String, app: String },
    #[error("host {host:?} is claimed by apps {first:?} and {second:?}")]
    HostClaimedTwice {
        host: String,
        first: String,
        second: String,
    },
    #[error("{owner}: bad glob {pattern:?}: {reason}")]
    BadGlob {
        owner: String,
        pattern: String,
        reason: String,
    },
    #[error("rule {rule:?}: {reason}")]
    BadCondition { rule: String, reason: String },
    #[error("more than one pack defines a different [session] policy")]
    ConflictingSession,
}

struct CLogin {
    path: Option<Glob>,
    form: Option<String>,
    url: Option<Glob>,
}

struct CLogout {
    path: Option<Glob>,
    selector: Option<String>,
}

struct CApp {
    app: App,
    wildcard_hosts: Vec<Glob>,
    selectors: Vec<String>,
    by_kind: [Vec<u32>; KINDS],
    login: Option<CLogin>,
    logout: Option<CLogout>,
}

struct CRule {
    id: String,
    title: String,
    severity: Severity,
    response: Response,
    risk: u32,
    tags: Vec<String>,
    path: Option<Glob>,
    selector: Option<String>,
    name: Option<Glob>,
    text: Option<Glob>,
    when: Vec<Condition>,
    clear: Vec<String>,
}

/// Compiled, indexed packs. Immutable once built; share it freely.
pub struct Engine {
    apps: Vec<CApp>,
    /// Literal hosts (lower-case) → app index.
    exact_hosts: BTreeMap<String, usize>,
    rules: Vec<CRule>,
    policy: RiskPolicy,
    packs: Vec<(String, u64)>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("packs", &self.packs)
            .field("apps", &self.apps.len())
            .field("rules", &self.rules.len())
            .finish()
    }
}

/// One matching rule and why it matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleMatch<'e> {
    pub id: &'e str,
    pub title: &'e str,
    pub severity: Severity,
    pub response: Response,
    pub risk: u32,
    /// Human-readable: action, URL pattern, target match, conditions. Never
    /// holds the value of a field that is not captured in clear.
    pub why: String,
}

/// The outcome of classifying one observation. Borrows rule ids, tags and
/// field names from the [`Engine`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict<'e> {
    /// The app the URL belongs to; `None` means "outside every packed app:
    /// capture nothing".
    pub app: Option<&'e str>,
    /// Every matching rule, in pack order.
    pub matches: Vec<RuleMatch<'e>>,
    pub severity: Option<Severity>,
    /// Union of the matching rules' tags, sorted.
    pub tags: Vec<&'e str>,
    /// Risk points this event added.
    pub risk_added: u32,
    /// The session's risk after this event (after decay).
    pub session_risk: u32,
    /// The threshold this event crossed upward, if any.
    pub threshold: Option<Threshold>,
    /// Max of the matching rules' responses and the crossed threshold's.
    pub response: Response,
    /// Names the rules (with their conditions) and the threshold behind the
    /// response; empty when nothing matched.
    pub reason: String,
    /// Field names captured in clear (every other field is masked), sorted.
    pub clear_fields: Vec<&'e str>,
}

impl Verdict<'_> {
    fn outside() -> Self {
        Verdict {
            app: None,
            matches: Vec::new(),
            severity: None,
            tags: Vec::new(),
            risk_added: 0,
            session_risk: 0,
            threshold: None,
            response: Response::Log,
            reason: String::new(),
            clear_fields: Vec::new(),
        }
    }

    /// Whether `field` is captured in clear.
    pub fn is_clear(&self, field: &str) -> bool {
        self.clear_fields.binary_search(&field).is_ok()
    }

    pub fn rule_ids(&self) -> Vec<&str> {
        self.matches.iter().map(|m| m.id).collect()
    }

    /// The classification part of the signed event body.
    pub fn classification(&self) -> Classification {
        Classification {
            rules: self.matches.iter().map(|m| m.id.to_owned()).collect(),
            severity: self.severity,
            tags: self.tags.iter().map(|t| (*t).to_owned()).collect(),
            risk: self.risk_added,
            session_risk: self.session_risk,
        }
    }

    /// The decision part of the signed event body.
    pub fn decision(&self, action_id: Option<String>) -> Decision {
        Decision {
            response: self.response,
            reason: self.reason.clone(),
            action_id,
        }
    }
}

/// A session lifecycle moment recognised from an app's login/logout config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionSignal {
    /// The login form was submitted; a navigation away from the login page
    /// will complete the login (pass `login_pending = true` then).
    LoginSubmitted,
    Login,
    Logout,
}

/// Host (without port, user info or trailing dot) and path of an http(s)
/// URL; `None` for any other scheme.
pub fn split_url(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http")) {
        return None;
    }
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..auth_end];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        host_port.find(']').map_or(host_port, |i| &host_port[..=i])
    } else {
        host_port.split_once(':').map_or(host_port, |(h, _)| h)
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    let after = &rest[auth_end..];
    let path_end = after.find(['?', '#']).unwrap_or(after.len());
    let path = &after[..path_end];
    Some((host, if path.is_empty() { "/" } else { path }))
}

fn compile_glob(owner: &str, pattern: &str, kind: GlobKind) -> Result<Glob, EngineError> {
    Glob::new(pattern, kind).map_err(|e| EngineError::BadGlob {
        owner: owner.to_owned(),
        pattern: pattern.to_owned(),
        reason: e.to_string(),
    })
}

fn opt_glob(owner: &str, p: &Option<String>, kind: GlobKind) -> Result<Option<Glob>, EngineError> {
    p.as_deref()
        .map(|p| compile_glob(owner, p, kind))
        .transpose()
}

impl Engine {
    /// Compiles and indexes packs (already verified or freshly parsed).
    pub fn new(packs: &[Pack]) -> Result<Engine, EngineError> {
        let mut apps: Vec<CApp> = Vec::new();
        let mut exact_hosts: BTreeMap<String, usize> = BTreeMap::new();
        let mut rules: Vec<CRule> = Vec::new();
        let mut rule_ids = BTreeSet::new();
        let mut policy: Option<RiskPolicy> = None;
        let mut pack_ids: Vec<(String, u64)> = Vec::new();
        for pack in packs {
            if pack_ids.iter().any(|(id, _)| *id == pack.pack.id) {
                return Err(EngineError::DuplicatePack(pack.pack.id.clone()));
            }
            pack_ids.push((pack.pack.id.clone(), pack.pack.version));
            if let Some(s) = &pack.session {
                match &policy {
                    Some(p) if p != s => return Err(EngineError::ConflictingSession),
                    _ => policy = Some(s.clone()),
                }
            }
            for app in &pack.apps {
                if apps.iter().any(|a| a.app.id == app.id) {
                    return Err(EngineError::DuplicateApp(app.id.clone()));
                }
                let idx = apps.len();
                let owner = format!("app {:?}", app.id);
                let mut wildcard_hosts = Vec::new();
                for h in &app.hosts {
                    let g = compile_glob(&owner, h, GlobKind::Host)?;
                    if g.is_literal() {
                        let key = h.to_ascii_lowercase();
                        if let Some(&other) = exact_hosts.get(&key) {
                            return Err(EngineError::HostClaimedTwice {
                                host: key,
                                first: apps[other].app.id.clone(),
                                second: app.id.clone(),
                            });
                        }
                        exact_hosts.insert(key, idx);
                    } else {
                        wildcard_hosts.push(g);
                    }
                }
                let login = match &app.login {
                    Some(l) => Some(CLogin {
                        path: opt_glob(&owner, &l.path, GlobKind::Path)?,
                        form: l.form.clone(),
                        url: opt_glob(&owner, &l.url, GlobKind::Path)?,
                    }),
                    None => None,
                };
                let logout = match &app.logout {
                    Some(l) => Some(CLogout {
                        path: opt_glob(&owner, &l.path, GlobKind::Path)?,
                        selector: l.selector.clone(),
                    }),
                    None => None,
                };
                let mut selectors = BTreeSet::new();
                if let Some(f) = app.login.as_ref().and_then(|l| l.form.clone()) {
                    selectors.insert(f);
                }
                if let Some(s) = app.logout.as_ref().and_then(|l| l.selector.clone()) {
                    selectors.insert(s);
                }
                apps.push(CApp {
                    app: app.clone(),
                    wildcard_hosts,
                    selectors: selectors.into_iter().collect(),
                    by_kind: std::array::from_fn(|_| Vec::new()),
                    login,
                    logout,
                });
            }
            for r in &pack.rules {
                if !rule_ids.insert(r.id.clone()) {
                    return Err(EngineError::DuplicateRule(r.id.clone()));
                }
                let Some(app_idx) = apps.iter().position(|a| a.app.id == r.app) else {
                    return Err(EngineError::UnknownApp {
                        rule: r.id.clone(),
                        app: r.app.clone(),
                    });
                };
                let owner = format!("rule {:?}", r.id);
                let mut when = Vec::new();
                for w in &r.when {
                    when.push(Condition::parse(w).map_err(|e| EngineError::BadCondition {
                        rule: r.id.clone(),
                        reason: e.to_string(),
                    })?);
                }
                let idx = u32::try_from(rules.len()).unwrap_or(u32::MAX);
                rules.push(CRule {
                    id: r.id.clone(),
                    title: r.title.clone(),
                    severity: r.severity,
                    response: r.response,
                    risk: r.risk,
                    tags: r.tags.clone(),
                    path: opt_glob(&owner, &r.path, GlobKind::Path)?,
                    selector: r.selector.clone(),
                    name: opt_glob(&owner, &r.name, GlobKind::Text)?,
                    text: opt_glob(&owner, &r.text, GlobKind::Text)?,
                    when,
                    clear: r
                        .capture
                        .iter()
                        .filter(|(f, c)| {
                            **c == Capture::Clear
                                && !super::is_password_field(&apps[app_idx].app, f)
                        })
                        .map(|(f, _)| f.clone())
                        .collect(),
                });
                let capp = &mut apps[app_idx];
                for k in &r.actions {
                    capp.by_kind[*k as usize].push(idx);
                }
                if let Some(s) = &r.selector
                    && let Err(i) = capp.selectors.binary_search(s)
                {
                    capp.selectors.insert(i, s.clone());
                }
            }
        }
        Ok(Engine {
            apps,
            exact_hosts,
            rules,
            policy: policy.unwrap_or_default(),
            packs: pack_ids,
        })
    }

    /// The session risk policy in force.
    pub fn policy(&self) -> &RiskPolicy {
        &self.policy
    }

    /// (pack id, version) of every loaded pack, in load order.
    pub fn packs(&self) -> &[(String, u64)] {
        &self.packs
    }

    pub fn apps(&self) -> impl Iterator<Item = &App> {
        self.apps.iter().map(|a| &a.app)
    }

    pub fn app(&self, id: &str) -> Option<&App> {
        self.apps.iter().find(|a| a.app.id == id).map(|a| &a.app)
    }

    fn app_index(&self, host: &str) -> Option<usize> {
        let exact = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            self.exact_hosts
                .iter()
                .find(|(h, _)| h.eq_ignore_ascii_case(host))
                .map(|(_, i)| *i)
        } else {
            self.exact_hosts.get(host).copied()
        };
        exact.or_else(|| {
            self.apps
                .iter()
                .position(|a| a.wildcard_hosts.iter().any(|g| g.is_match(host)))
        })
    }

    /// The app a URL belongs to; `None` means nothing may be captured.
    pub fn app_for_url(&self, url: &str) -> Option<&App> {
        let (host, _) = split_url(url)?;
        self.app_index(host).map(|i| &self.apps[i].app)
    }

    /// The CSS selectors the content script tests on an app's elements
    /// (with `Element.closest`), sorted. It reports the ones that matched in
    /// `ObservedTarget.selectors`.
    pub fn selectors(&self, app_id: &str) -> &[String] {
        self.apps
            .iter()
            .find(|a| a.app.id == app_id)
            .map_or(&[], |a| a.selectors.as_slice())
    }

    /// Recognises login and logout from the app's `login`/`logout` config.
    /// `login_pending`: a `LoginSubmitted` was seen in this tab and no
    /// navigation has happened since.
    pub fn session_signal(&self, obs: &Observation, login_pending: bool) -> Option<SessionSignal> {
        let (host, path) = split_url(&obs.url)?;
        let app = &self.apps[self.app_index(host)?];
        let has_sel = |sel: &Option<String>| match (sel, &obs.target) {
            (Some(s), Some(t)) => t.selectors.iter().any(|x| x == s),
            _ => false,
        };
        let navigation = matches!(
            obs.kind,
            EventKind::PageLoad | EventKind::RouteChange { .. }
        );
        if let Some(l) = &app.logout {
            if navigation && l.path.as_ref().is_some_and(|g| g.is_match(path)) {
                return Some(SessionSignal::Logout);
            }
            if matches!(obs.kind, EventKind::Click) && has_sel(&l.selector) {
                return Some(SessionSignal::Logout);
            }
        }
        if let Some(l) = &app.login {
            let on_login_page = l.path.as_ref().is_some_and(|g| g.is_match(path));
            if matches!(obs.kind, EventKind::Submit) && on_login_page && has_sel(&l.form) {
                return Some(SessionSignal::LoginSubmitted);
            }
            if navigation && l.url.as_ref().is_some_and(|g| g.is_match(path)) {
                return Some(SessionSignal::Login);
            }
            if navigation && login_pending && !on_login_page {
                return Some(SessionSignal::Login);
            }
        }
        None
    }

    fn rule_matches(&self, r: &CRule, obs: &Observation, path: &str) -> bool {
        if r.path.as_ref().is_some_and(|g| !g.is_match(path)) {
            return false;
        }
        if r.selector.is_some() || r.name.is_some() || r.text.is_some() {
            let Some(t) = &obs.target else { return false };
            if r.selector
                .as_ref()
                .is_some_and(|s| !t.selectors.iter().any(|x| x == s))
                || r.name.as_ref().is_some_and(|g| !g.is_match(&t.target.name))
                || r.text.as_ref().is_some_and(|g| !g.is_match(&t.target.text))
            {
                return false;
            }
        }
        r.when.iter().all(|c| c.eval(field(obs, &c.field)))
    }

    /// Classifies one observation and updates the session's risk.
    ///
    /// Outside every packed app the verdict is empty (`app: None`) and the
    /// risk is untouched. Risk is only written when points are added; the
    /// reported `session_risk` is decayed to `now_ms` either way.
    pub fn classify(&self, obs: &Observation, now_ms: i64, risk: &mut SessionRisk) -> Verdict<'_> {
        let Some((host, path)) = split_url(&obs.url) else {
            return Verdict::outside();
        };
        let Some(app_idx) = self.app_index(host) else {
            return Verdict::outside();
        };
        let app = &self.apps[app_idx];
        let mut matched: Vec<&CRule> = Vec::new();
        for &ri in &app.by_kind[obs.kind.action() as usize] {
            let r = &self.rules[ri as usize];
            if self.rule_matches(r, obs, path) {
                matched.push(r);
            }
        }
        let mut v = Verdict::outside();
        v.app = Some(app.app.id.as_str());
        if matched.is_empty() {
            v.session_risk = risk.score(now_ms, &self.policy);
            return v;
        }
        let mut clear: Vec<&str> = matched
            .iter()
            .flat_map(|r| r.clear.iter().map(String::as_str))
            .collect();
        clear.sort_unstable();
        clear.dedup();
        let mut tags: Vec<&str> = matched
            .iter()
            .flat_map(|r| r.tags.iter().map(String::as_str))
            .collect();
        tags.sort_unstable();
        tags.dedup();
        let added = matched.iter().fold(0u32, |a, r| a.saturating_add(r.risk));
        let step: RiskStep = if added > 0 {
            risk.apply(&self.policy, now_ms, added)
        } else {
            let s = risk.score(now_ms, &self.policy);
            RiskStep {
                before: s,
                after: s,
                added: 0,
                reached: None,
                fired: None,
            }
        };
        let mut response = Response::Log;
        let mut reasons = Vec::new();
        for r in &matched {
            response = response.max(r.response);
            let why = explain(r, obs, path, &clear);
            reasons.push(format!(
                "rule {} ({}) → {}: {}",
                r.id, r.title, r.response, why
            ));
            v.matches.push(RuleMatch {
                id: &r.id,
                title: &r.title,
                severity: r.severity,
                response: r.response,
                risk: r.risk,
                why,
            });
        }
        if let Some(th) = step.fired {
            response = response.max(th.response);
            reasons.push(format!(
                "session risk {} crossed threshold {} → {}",
                step.after, th.at, th.response
            ));
        }
        v.severity = matched.iter().map(|r| r.severity).max();
        v.tags = tags;
        v.risk_added = added;
        v.session_risk = step.after;
        v.threshold = step.fired;
        v.response = response;
        v.reason = reasons.join("; ");
        v.clear_fields = clear;
        v
    }
}

fn field<'o>(obs: &'o Observation, name: &str) -> Option<&'o str> {
    obs.fields
        .iter()
        .find(|f| f.name == name)
        .map(|f| f.value.as_str())
}

/// The "why" of a match. Values appear only for clear-captured fields.
fn explain(r: &CRule, obs: &Observation, path: &str, clear: &[&str]) -> String {
    let mut parts = vec![format!("{} event", obs.kind.action())];
    if let Some(g) = &r.path {
        parts.push(format!("path {path} matches {g}"));
    }
    if let Some(s) = &r.selector {
        parts.push(format!("target matches selector {s}"));
    }
    if let Some(g) = &r.name {
        parts.push(format!("accessible name matches {g:?}"));
    }
    if let Some(g) = &r.text {
        parts.push(format!("text matches {g:?}"));
    }
    for c in &r.when {
        match field(obs, &c.field) {
            Some(val) if clear.binary_search(&c.field.as_str()).is_ok() => {
                parts.push(format!("{c} ({} = {val:?})", c.field));
            }
            _ => parts.push(format!("{c} (matched)")),
        }
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ObservedField, ObservedTarget, Target};

    const PACK: &str = r#"
[pack]
id = "t"
version = 1

[session]
half_life_minutes = 30
thresholds = [{ at = 60, response = "step_up" }, { at = 100, response = "terminate" }]

[[app]]
id = "hr"
name = "HR"
hosts = ["hr.acme.test", "*.hr.acme.test"]
password_fields = ["pin"]
login = { path = "/login", form = "form#login" }
logout = { path = "/logout", selector = "[data-action=logout]" }

[[app]]
id = "other"
name = "Other"
hosts = ["other.test"]

[[rule]]
id = "hr.payroll.approve"
app = "hr"
title = "Large payroll approval"
actions = ["submit"]
path = "/payroll/**"
selector = "form#approve"
when = ["amount > 10000", "currency == 'EUR'"]
severity = "high"
risk = 40
tags = ["sox:ITGC-AC", "soc2:CC6.1"]
response = "step_up"
capture = { currency = "clear" }

[[rule]]
id = "hr.payroll.any"
app = "hr"
title = "Payroll submit"
actions = ["submit", "click"]
path = "/payroll/**"
severity = "low"
risk = 5
tags = ["soc2:CC6.1"]

[[rule]]
id = "hr.name"
app = "hr"
title = "Named button"
actions = ["click"]
name = "delete*"
text = "*forever*"
severity = "medium"
response = "warn"
"#;

    fn engine() -> Engine {
        Engine::new(&[crate::rulepack::parse("t.toml", PACK).unwrap()]).unwrap()
    }

    fn obs(kind: EventKind, url: &str, selectors: &[&str], fields: &[(&str, &str)]) -> Observation {
        Observation {
            kind,
            url: url.into(),
            user: String::new(),
            tab: String::new(),
            session: String::new(),
            target: Some(ObservedTarget {
                target: Target {
                    tag: "button".into(),
                    ..Target::default()
                },
                selectors: selectors.iter().map(|s| (*s).to_owned()).collect(),
            }),
            trusted: true,
            fields: fields
                .iter()
                .map(|(n, v)| ObservedField {
                    name: (*n).into(),
                    value: (*v).into(),
                    kind: Default::default(),
                })
                .collect(),
            action_id: None,
        }
    }

    #[test]
    fn urls() {
        assert_eq!(
            split_url("https://u:p@HR.acme.test.:8443/a/b?x#y"),
            Some(("HR.acme.test", "/a/b"))
        );
        assert_eq!(
            split_url("https://hr.acme.test"),
            Some(("hr.acme.test", "/"))
        );
        assert_eq!(
            split_url("https://hr.acme.test?x"),
            Some(("hr.acme.test", "/"))
        );
        assert_eq!(split_url("http://[::1]:80/x"), Some(("[::1]", "/x")));
        assert_eq!(split_url("chrome://settings"), None);
        assert_eq!(split_url("not a url"), None);
        let e = engine();
        assert_eq!(
            e.app_for_url("https://hr.acme.test/x")
                .map(|a| a.id.as_str()),
            Some("hr")
        );
        assert_eq!(
            e.app_for_url("https://HR.ACME.test/x")
                .map(|a| a.id.as_str()),
            Some("hr")
        );
        assert_eq!(
            e.app_for_url("https://eu.hr.acme.test/")
                .map(|a| a.id.as_str()),
            Some("hr")
        );
        assert_eq!(e.app_for_url("https://hr.acme.test.evil.test/"), None);
        assert_eq!(
            e.app_for_url("https://evil.test/?u=https://hr.acme.test/"),
            None
        );
        assert_eq!(
            e.selectors("hr"),
            &[
                "[data-action=logout]".to_owned(),
                "form#approve".into(),
                "form#login".into()
            ]
        );
        assert!(e.selectors("nope").is_empty());
    }

    #[test]
    fn classify_with_conditions_and_threshold() {
        let e = engine();
        let mut risk = SessionRisk::default();
        let o = obs(
            EventKind::Submit,
            "https://hr.acme.test/payroll/run/7",
            &["form#approve"],
            &[("amount", "12,000"), ("currency", "EUR")],
        );
        let v = e.classify(&o, 1_000, &mut risk);
        assert_eq!(v.app, Some("hr"));
        assert_eq!(v.rule_ids(), vec!["hr.payroll.approve", "hr.payroll.any"]);
        assert_eq!(v.severity, Some(Severity::High));
        assert_eq!(v.tags, vec!["soc2:CC6.1", "sox:ITGC-AC"]);
        assert_eq!(v.risk_added, 45);
        assert_eq!(v.session_risk, 45);
        assert_eq!(v.response, Response::StepUp);
        assert_eq!(v.clear_fields, vec!["currency"]);
        assert_eq!(
            v.matches[0].why,
            "submit event, path /payroll/run/7 matches /payroll/**, target matches selector form#approve, amount > 10000 (matched), currency == 'EUR' (currency = \"EUR\")"
        );
        assert!(!v.reason.contains("12,000"));
        assert_eq!(
            v.reason,
            format!(
                "rule hr.payroll.approve (Large payroll approval) → step_up: {}; rule hr.payroll.any (Payroll submit) → log: submit event, path /payroll/run/7 matches /payroll/**",
                v.matches[0].why
            )
        );
        // Same input, same output.
        let mut risk2 = SessionRisk::default();
        assert_eq!(e.classify(&o, 1_000, &mut risk2), v);

        // Condition false: only the generic rule.
        let low = obs(
            EventKind::Submit,
            "https://hr.acme.test/payroll/run/7",
            &["form#approve"],
            &[("amount", "9000"), ("currency", "EUR")],
        );
        let v = e.classify(&low, 1_000, &mut risk);
        assert_eq!(v.rule_ids(), vec!["hr.payroll.any"]);
        assert_eq!(v.session_risk, 50);
        // Missing field: false.
        let missing = obs(
            EventKind::Submit,
            "https://hr.acme.test/payroll/run/7",
            &["form#approve"],
            &[("amount", "20000")],
        );
        assert_eq!(
            e.classify(&missing, 1_000, &mut risk).rule_ids(),
            vec!["hr.payroll.any"]
        );
        // 55 + 45 = 100: crosses both 60 and 100 → terminate.
        let v = e.classify(&o, 1_000, &mut risk);
        assert_eq!(v.session_risk, 100);
        assert_eq!(v.threshold.map(|t| t.at), Some(100));
        assert_eq!(v.response, Response::Terminate);
        assert!(
            v.reason
                .ends_with("session risk 100 crossed threshold 100 → terminate")
        );
        let d = v.decision(Some("a1".into()));
        assert_eq!(d.response, Response::Terminate);
        let c = v.classification();
        assert_eq!(c.rules, vec!["hr.payroll.approve", "hr.payroll.any"]);
        assert_eq!(c.session_risk, 100);
    }

    #[test]
    fn outside_apps_and_other_kinds() {
        let e = engine();
        let mut risk = SessionRisk::default();
        let v = e.classify(
            &obs(
                EventKind::Submit,
                "https://evil.test/payroll/x",
                &["form#approve"],
                &[],
            ),
            0,
            &mut risk,
        );
        assert_eq!(v, Verdict::outside());
        let v = e.classify(
            &obs(EventKind::Copy, "https://hr.acme.test/payroll/x", &[], &[]),
            0,
            &mut risk,
        );
        assert_eq!(v.app, Some("hr"));
        assert!(v.matches.is_empty());
        assert_eq!(risk, SessionRisk::default());
    }

    #[test]
    fn name_and_text_globs_are_case_insensitive() {
        let e = engine();
        let mut risk = SessionRisk::default();
        let mut o = obs(EventKind::Click, "https://hr.acme.test/people/1", &[], &[]);
        if let Some(t) = o.target.as_mut() {
            t.target.name = "Delete employee".into();
            t.target.text = "Delete FOREVER".into();
        }
        assert_eq!(e.classify(&o, 0, &mut risk).rule_ids(), vec!["hr.name"]);
        if let Some(t) = o.target.as_mut() {
            t.target.text = "Delete".into();
        }
        assert!(e.classify(&o, 0, &mut risk).matches.is_empty());
        o.target = None;
        assert!(e.classify(&o, 0, &mut risk).matches.is_empty());
    }

    #[test]
    fn session_signals() {
        let e = engine();
        let s =
            |k, url: &str, sel: &[&str], pending| e.session_signal(&obs(k, url, sel, &[]), pending);
        assert_eq!(
            s(
                EventKind::Submit,
                "https://hr.acme.test/login",
                &["form#login"],
                false
            ),
            Some(SessionSignal::LoginSubmitted)
        );
        assert_eq!(
            s(EventKind::Submit, "https://hr.acme.test/login", &[], false),
            None
        );
        assert_eq!(
            s(EventKind::PageLoad, "https://hr.acme.test/home", &[], true),
            Some(SessionSignal::Login)
        );
        assert_eq!(
            s(EventKind::PageLoad, "https://hr.acme.test/home", &[], false),
            None
        );
        assert_eq!(
            s(EventKind::PageLoad, "https://hr.acme.test/login", &[], true),
            None
        );
        assert_eq!(
            s(
                EventKind::PageLoad,
                "https://hr.acme.test/logout",
                &[],
                false
            ),
            Some(SessionSignal::Logout)
        );
        assert_eq!(
            s(
                EventKind::Click,
                "https://hr.acme.test/x",
                &["[data-action=logout]"],
                false
            ),
            Some(SessionSignal::Logout)
        );
        assert_eq!(
            s(EventKind::PageLoad, "https://other.test/logout", &[], false),
            None
        );
    }

    #[test]
    fn engine_errors() {
        let p = crate::rulepack::parse("t.toml", PACK).unwrap();
        assert_eq!(
            Engine::new(&[p.clone(), p.clone()]).unwrap_err(),
            EngineError::DuplicatePack("t".into())
        );
        let mut q = p.clone();
        q.pack.id = "q".into();
        q.rules.clear();
        assert_eq!(
            Engine::new(&[p.clone(), q]).unwrap_err(),
            EngineError::DuplicateApp("hr".into())
        );
        let mut bad = p.clone();
        bad.rules[0].when.push("amount >".into());
        assert!(matches!(
            Engine::new(&[bad]),
            Err(EngineError::BadCondition { .. })
        ));
        let mut bad = p;
        bad.rules[0].app = "nope".into();
        assert!(matches!(
            Engine::new(&[bad]),
            Err(EngineError::UnknownApp { .. })
        ));
    }
}
