//! The TOML source form of a pack (with spans) and its validation into a
//! [`Pack`]. Syntax and type errors come from `toml` (the first one stops
//! parsing); semantic errors are all collected.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::condition::Condition;
use super::glob::{Glob, GlobKind};
use super::{
    App, Capture, FRAMEWORKS, Identity, Keep, Login, Logout, Pack, PackError, PackErrors, PackMeta,
    Rule, UrlPolicy, is_password_field, line_col, toml_error,
};
use crate::event::{ActionKind, Response, Severity};
use crate::risk::{RiskPolicy, Threshold};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SrcPack {
    pack: SrcMeta,
    session: Option<Spanned<SrcSession>>,
    #[serde(default)]
    app: Vec<Spanned<SrcApp>>,
    #[serde(default)]
    rule: Vec<Spanned<SrcRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SrcMeta {
    id: Spanned<String>,
    version: Spanned<u64>,
    #[serde(default)]
    description: String,
}

fn default_half_life() -> u32 {
    30
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SrcSession {
    #[serde(default = "default_half_life")]
    half_life_minutes: u32,
    #[serde(default)]
    thresholds: Vec<Spanned<SrcThreshold>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SrcThreshold {
    at: Spanned<u32>,
    response: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SrcApp {
    id: Spanned<String>,
    name: String,
    hosts: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    url: SrcUrl,
    #[serde(default)]
    password_fields: Vec<String>,
    login: Option<Spanned<SrcLogin>>,
    logout: Option<Spanned<SrcLogout>>,
    identity: Option<SrcIdentity>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SrcUrl {
    #[serde(default)]
    query: Keep,
    #[serde(default)]
    fragment: Keep,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SrcLogin {
    path: Option<Spanned<String>>,
    form: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SrcLogout {
    path: Option<Spanned<String>>,
    selector: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SrcIdentity {
    selector: Spanned<String>,
    attribute: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SrcRule {
    id: Spanned<String>,
    app: Spanned<String>,
    title: String,
    actions: Spanned<Vec<Spanned<String>>>,
    path: Option<Spanned<String>>,
    selector: Option<Spanned<String>>,
    name: Option<Spanned<String>>,
    text: Option<Spanned<String>>,
    #[serde(default)]
    when: Vec<Spanned<String>>,
    severity: Spanned<String>,
    #[serde(default)]
    risk: u32,
    #[serde(default)]
    tags: Vec<Spanned<String>>,
    response: Option<Spanned<String>>,
    #[serde(default)]
    capture: BTreeMap<Spanned<String>, Spanned<String>>,
}

struct Ctx<'a> {
    file: &'a str,
    src: &'a str,
    errors: Vec<(usize, PackError)>,
}

impl Ctx<'_> {
    fn err(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, col) = line_col(self.src, span.start);
        self.errors.push((
            span.start,
            PackError {
                file: self.file.to_owned(),
                line,
                col,
                message: message.into(),
            },
        ));
    }

    fn ident(&mut self, what: &str, s: &Spanned<String>) {
        let v = s.get_ref();
        let ok = !v.is_empty()
            && v.len() <= 64
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok {
            self.err(
                s.span(),
                format!("{what} {v:?} must be 1-64 characters of a-z A-Z 0-9 . _ -"),
            );
        }
    }

    fn glob(&mut self, what: &str, s: &Spanned<String>, kind: GlobKind) -> String {
        if let Err(e) = Glob::new(s.get_ref(), kind) {
            self.err(s.span(), format!("bad {what} glob {:?}: {e}", s.get_ref()));
        }
        s.get_ref().clone()
    }

    fn selector(&mut self, s: &Spanned<String>) -> String {
        let v = s.get_ref();
        if v.trim().is_empty() || v.len() > 512 || v.contains(['\n', '\r']) {
            self.err(
                s.span(),
                format!("bad selector {v:?}: must be a non-empty single-line CSS selector of at most 512 bytes"),
            );
        }
        v.clone()
    }

    fn response(&mut self, s: &Spanned<String>) -> Response {
        match Response::ALL
            .into_iter()
            .find(|r| r.as_str() == s.get_ref())
        {
            Some(r) => r,
            None => {
                self.err(
                    s.span(),
                    format!(
                        "unknown response {:?} (expected one of: log, warn, justify, step_up, block, terminate)",
                        s.get_ref()
                    ),
                );
                Response::Log
            }
        }
    }
}

/// Parses and validates a rule pack. `file` is only used in error messages.
pub fn parse(file: &str, src: &str) -> Result<Pack, PackErrors> {
    let raw: SrcPack =
        toml::from_str(src).map_err(|e| PackErrors(vec![toml_error(file, src, &e)]))?;
    let mut cx = Ctx {
        file,
        src,
        errors: Vec::new(),
    };

    cx.ident("pack id", &raw.pack.id);
    if *raw.pack.version.get_ref() == 0 {
        cx.err(raw.pack.version.span(), "pack version must be at least 1");
    }
    let meta = PackMeta {
        id: raw.pack.id.get_ref().clone(),
        version: *raw.pack.version.get_ref(),
        description: raw.pack.description,
    };

    let session = raw.session.map(|s| {
        let s = s.into_inner();
        let mut thresholds: Vec<Threshold> = Vec::new();
        for t in &s.thresholds {
            let t = t.get_ref();
            let at = *t.at.get_ref();
            if at == 0 {
                cx.err(t.at.span(), "threshold `at` must be at least 1");
            }
            if thresholds.iter().any(|x| x.at == at) {
                cx.err(t.at.span(), format!("duplicate threshold at {at}"));
            }
            let response = cx.response(&t.response);
            thresholds.push(Threshold { at, response });
        }
        thresholds.sort();
        RiskPolicy {
            half_life_minutes: s.half_life_minutes,
            thresholds,
        }
    });

    let mut apps: Vec<App> = Vec::new();
    let mut literal_hosts: BTreeMap<String, String> = BTreeMap::new();
    for a in raw.app {
        let a = a.into_inner();
        cx.ident("app id", &a.id);
        let id = a.id.get_ref().clone();
        if apps.iter().any(|x| x.id == id) {
            cx.err(a.id.span(), format!("duplicate app id {id:?}"));
        }
        if a.hosts.get_ref().is_empty() {
            cx.err(
                a.hosts.span(),
                format!("app {id:?} needs at least one host"),
            );
        }
        let mut hosts = Vec::new();
        for h in a.hosts.get_ref() {
            let v = h.get_ref();
            if v.contains(['/', ':', '@', ' ']) {
                cx.err(
                    h.span(),
                    format!("bad host {v:?}: a host pattern has no scheme, port, path or user"),
                );
            } else {
                let g = cx.glob("host", h, GlobKind::Host);
                if Glob::new(&g, GlobKind::Host).is_ok_and(|g| g.is_literal()) {
                    let key = v.to_ascii_lowercase();
                    if let Some(other) = literal_hosts.get(&key) {
                        cx.err(
                            h.span(),
                            format!("host {v:?} is already claimed by app {other:?}"),
                        );
                    } else {
                        literal_hosts.insert(key, id.clone());
                    }
                }
            }
            hosts.push(v.clone());
        }
        let login = a.login.map(|l| {
            let span = l.span();
            let l = l.into_inner();
            if l.form.is_some() && l.path.is_none() {
                cx.err(
                    span.clone(),
                    "login `form` needs `path` (the login page the form is submitted on)",
                );
            }
            if l.form.is_none() && l.url.is_none() {
                cx.err(span, "login needs `form` (with `path`) or `url`");
            }
            Login {
                path: l
                    .path
                    .as_ref()
                    .map(|p| cx.glob("login path", p, GlobKind::Path)),
                form: l.form.as_ref().map(|s| cx.selector(s)),
                url: l
                    .url
                    .as_ref()
                    .map(|p| cx.glob("login url", p, GlobKind::Path)),
            }
        });
        let logout = a.logout.map(|l| {
            let span = l.span();
            let l = l.into_inner();
            if l.path.is_none() && l.selector.is_none() {
                cx.err(span, "logout needs `path` or `selector`");
            }
            Logout {
                path: l
                    .path
                    .as_ref()
                    .map(|p| cx.glob("logout path", p, GlobKind::Path)),
                selector: l.selector.as_ref().map(|s| cx.selector(s)),
            }
        });
        let identity = a.identity.map(|i| Identity {
            selector: cx.selector(&i.selector),
            attribute: i.attribute,
        });
        apps.push(App {
            id,
            name: a.name,
            hosts,
            url: UrlPolicy {
                query: a.url.query,
                fragment: a.url.fragment,
            },
            password_fields: a.password_fields,
            login,
            logout,
            identity,
        });
    }

    let mut rules: Vec<Rule> = Vec::new();
    let mut rule_ids = BTreeSet::new();
    for r in raw.rule {
        let r = r.into_inner();
        cx.ident("rule id", &r.id);
        let id = r.id.get_ref().clone();
        if !rule_ids.insert(id.clone()) {
            cx.err(r.id.span(), format!("duplicate rule id {id:?}"));
        }
        let app = apps.iter().find(|a| &a.id == r.app.get_ref());
        if app.is_none() {
            let known: Vec<&str> = apps.iter().map(|a| a.id.as_str()).collect();
            cx.err(
                r.app.span(),
                format!(
                    "rule {id:?} names unknown app {:?} (known: {})",
                    r.app.get_ref(),
                    known.join(", ")
                ),
            );
        }
        let mut actions = Vec::new();
        if r.actions.get_ref().is_empty() {
            cx.err(
                r.actions.span(),
                format!("rule {id:?} needs at least one action"),
            );
        }
        for a in r.actions.get_ref() {
            match ActionKind::parse(a.get_ref()) {
                Some(k) if actions.contains(&k) => {
                    cx.err(a.span(), format!("duplicate action {:?}", a.get_ref()));
                }
                Some(k) => actions.push(k),
                None => cx.err(
                    a.span(),
                    format!(
                        "unknown action kind {:?} (expected one of: {})",
                        a.get_ref(),
                        ActionKind::ALL.map(ActionKind::as_str).join(", ")
                    ),
                ),
            }
        }
        actions.sort();
        let path = r.path.as_ref().map(|p| cx.glob("path", p, GlobKind::Path));
        let selector = r.selector.as_ref().map(|s| cx.selector(s));
        let name = r.name.as_ref().map(|p| cx.glob("name", p, GlobKind::Text));
        let text = r.text.as_ref().map(|p| cx.glob("text", p, GlobKind::Text));
        let mut when = Vec::new();
        for w in &r.when {
            if let Err(e) = Condition::parse(w.get_ref()) {
                cx.err(w.span(), e.to_string());
            }
            when.push(w.get_ref().clone());
        }
        let severity = match Severity::ALL
            .into_iter()
            .find(|s| s.as_str() == r.severity.get_ref())
        {
            Some(s) => s,
            None => {
                cx.err(
                    r.severity.span(),
                    format!(
                        "unknown severity {:?} (expected one of: info, low, medium, high, critical)",
                        r.severity.get_ref()
                    ),
                );
                Severity::Info
            }
        };
        let mut tags = BTreeSet::new();
        for t in &r.tags {
            let v = t.get_ref();
            match v.split_once(':') {
                Some((fw, control))
                    if !control.is_empty()
                        && !control.contains(char::is_whitespace)
                        && !control.contains(':') =>
                {
                    if FRAMEWORKS.contains(&fw) {
                        tags.insert(v.clone());
                    } else {
                        cx.err(
                            t.span(),
                            format!(
                                "unknown compliance framework {fw:?} in tag {v:?} (known: {})",
                                FRAMEWORKS.join(", ")
                            ),
                        );
                    }
                }
                _ => cx.err(
                    t.span(),
                    format!("tag {v:?} must look like framework:control, e.g. soc2:CC6.1"),
                ),
            }
        }
        let response = r
            .response
            .as_ref()
            .map_or(Response::Log, |s| cx.response(s));
        let mut capture = BTreeMap::new();
        for (field, how) in &r.capture {
            let c = match how.get_ref().as_str() {
                "clear" => Capture::Clear,
                "masked" => Capture::Masked,
                other => {
                    cx.err(
                        how.span(),
                        format!(
                            "capture of {:?} must be \"clear\" or \"masked\", not {other:?}",
                            field.get_ref()
                        ),
                    );
                    Capture::Masked
                }
            };
            if c == Capture::Clear && app.is_some_and(|a| is_password_field(a, field.get_ref())) {
                cx.err(
                    how.span(),
                    format!(
                        "field {:?} is a password field: it is never captured, so it cannot be \"clear\"",
                        field.get_ref()
                    ),
                );
            }
            capture.insert(field.get_ref().clone(), c);
        }
        rules.push(Rule {
            id,
            app: r.app.get_ref().clone(),
            title: r.title,
            actions,
            path,
            selector,
            name,
            text,
            when,
            severity,
            risk: r.risk,
            tags: tags.into_iter().collect(),
            response,
            capture,
        });
    }

    if cx.errors.is_empty() {
        Ok(Pack {
            pack: meta,
            session,
            apps,
            rules,
        })
    } else {
        cx.errors.sort_by_key(|(off, _)| *off);
        Err(PackErrors(cx.errors.into_iter().map(|(_, e)| e).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r##"[pack]
id = "acme"
version = 7
description = "demo"

[session]
half_life_minutes = 15
thresholds = [{ at = 100, response = "terminate" }, { at = 60, response = "step_up" }]

[[app]]
id = "crm"
name = "CRM"
hosts = ["crm.acme.test", "*.crm.acme.test"]
url = { query = "keep" }
password_fields = ["pin"]
login = { path = "/login", form = "form#login" }
logout = { selector = "[data-action=logout]" }
identity = { selector = "#me", attribute = "data-email" }

[[rule]]
id = "crm.export"
app = "crm"
title = "Export"
actions = ["submit", "click"]
path = "/crm/customers/**"
selector = "button#export"
name = "Export*"
when = ["count > 100"]
severity = "high"
risk = 20
tags = ["soc2:CC6.1", "gdpr:art-32", "soc2:CC6.1"]
response = "justify"
capture = { count = "clear", note = "masked" }
"##;

    fn errors(src: &str) -> Vec<String> {
        parse("p.toml", src)
            .unwrap_err()
            .0
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn good_pack() {
        let p = parse("p.toml", GOOD).unwrap();
        assert_eq!(p.pack.id, "acme");
        assert_eq!(p.pack.version, 7);
        let s = p.session.as_ref().unwrap();
        assert_eq!(s.half_life_minutes, 15);
        assert_eq!(
            s.thresholds,
            vec![
                Threshold {
                    at: 60,
                    response: Response::StepUp
                },
                Threshold {
                    at: 100,
                    response: Response::Terminate
                },
            ]
        );
        let a = &p.apps[0];
        assert_eq!(
            a.url,
            UrlPolicy {
                query: Keep::Keep,
                fragment: Keep::Drop
            }
        );
        assert_eq!(
            a.login.as_ref().unwrap().form.as_deref(),
            Some("form#login")
        );
        assert_eq!(a.logout.as_ref().unwrap().path, None);
        assert_eq!(
            a.identity.as_ref().unwrap().attribute.as_deref(),
            Some("data-email")
        );
        let r = &p.rules[0];
        assert_eq!(r.actions, vec![ActionKind::Click, ActionKind::Submit]);
        assert_eq!(r.tags, vec!["gdpr:art-32", "soc2:CC6.1"]);
        assert_eq!(r.severity, Severity::High);
        assert_eq!(r.response, Response::Justify);
        assert_eq!(r.capture.get("count"), Some(&Capture::Clear));
        assert_eq!(r.capture.get("note"), Some(&Capture::Masked));
        // The Pack round-trips through JSON (the compiled payload).
        let j = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Pack>(&j).unwrap(), p);
    }

    #[test]
    fn syntax_and_unknown_keys_are_positioned() {
        let bad = GOOD.replace("risk = 20", "risk = 20\nrisc = 3");
        let e = errors(&bad);
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("p.toml:31:1: unknown field `risc`"),
            "{e:?}"
        );
        let bad = GOOD.replace("version = 7", "version = ");
        let e = errors(&bad);
        assert!(e[0].starts_with("p.toml:3:11: "), "{e:?}");
        let bad = GOOD.replace("version = 7", "version = -1");
        assert!(errors(&bad)[0].starts_with("p.toml:3:11: "));
        let bad = GOOD.replace("url = { query = \"keep\" }", "url = { query = \"kept\" }");
        let e = errors(&bad);
        assert!(
            e[0].starts_with("p.toml:14:17: unknown variant `kept`"),
            "{e:?}"
        );
    }

    #[test]
    fn all_semantic_errors_are_reported_with_positions() {
        let src = r##"[pack]
id = "acme"
version = 1

[[app]]
id = "crm"
name = "CRM"
hosts = ["crm.acme.test"]

[[rule]]
id = "a"
app = "crm"
title = "A"
actions = ["click", "clik"]
path = "crm/**"
severity = "high"
tags = ["soc2:CC6.1", "fedramp:AC-2", "nocolon"]
when = ["amount >> 5"]
capture = { password = "clear", note = "plain" }

[[rule]]
id = "a"
app = "hrr"
title = "B"
actions = ["submit"]
name = "[x]"
severity = "severe"
response = "deny"
"##;
        assert_eq!(
            errors(src),
            vec![
                "p.toml:14:21: unknown action kind \"clik\" (expected one of: page_load, route_change, tab_close, click, submit, input, copy, cut, paste, download, upload, print, login, logout, idle, terminated, agent_started, policy_applied, rule_pack_applied, gap, response_resolved, admin_action)",
                "p.toml:15:8: bad path glob \"crm/**\": a path pattern must start with `/` or `*`",
                "p.toml:17:23: unknown compliance framework \"fedramp\" in tag \"fedramp:AC-2\" (known: soc2, sox, hipaa, gdpr, pci, iso27001, nist)",
                "p.toml:17:39: tag \"nocolon\" must look like framework:control, e.g. soc2:CC6.1",
                "p.toml:18:9: bad condition \"amount >> 5\": the value must be a number or a quoted string ('…' or \"…\")",
                "p.toml:19:24: field \"password\" is a password field: it is never captured, so it cannot be \"clear\"",
                "p.toml:19:40: capture of \"note\" must be \"clear\" or \"masked\", not \"plain\"",
                "p.toml:22:6: duplicate rule id \"a\"",
                "p.toml:23:7: rule \"a\" names unknown app \"hrr\" (known: crm)",
                "p.toml:26:8: bad name glob \"[x]\": `[` is reserved (no character classes or alternations); escape it as `\\[` to match it literally",
                "p.toml:27:12: unknown severity \"severe\" (expected one of: info, low, medium, high, critical)",
                "p.toml:28:12: unknown response \"deny\" (expected one of: log, warn, justify, step_up, block, terminate)",
            ]
        );
    }

    #[test]
    fn app_and_session_errors() {
        let src = r##"[pack]
id = "bad id!"
version = 0

[session]
thresholds = [{ at = 0, response = "log" }, { at = 0, response = "warn" }]

[[app]]
id = "crm"
name = "CRM"
hosts = ["crm.acme.test", "https://x.test"]
password_fields = ["pin"]
login = { form = "form#login" }
logout = {}

[[app]]
id = "crm"
name = "CRM 2"
hosts = []

[[app]]
id = "other"
name = "Other"
hosts = ["CRM.acme.test"]

[[rule]]
id = "r"
app = "crm"
title = "R"
actions = []
severity = "low"
capture = { pin = "clear" }
"##;
        assert_eq!(
            errors(src),
            vec![
                "p.toml:2:6: pack id \"bad id!\" must be 1-64 characters of a-z A-Z 0-9 . _ -",
                "p.toml:3:11: pack version must be at least 1",
                "p.toml:6:22: threshold `at` must be at least 1",
                "p.toml:6:52: threshold `at` must be at least 1",
                "p.toml:6:52: duplicate threshold at 0",
                "p.toml:11:27: bad host \"https://x.test\": a host pattern has no scheme, port, path or user",
                "p.toml:13:9: login `form` needs `path` (the login page the form is submitted on)",
                "p.toml:14:10: logout needs `path` or `selector`",
                "p.toml:17:6: duplicate app id \"crm\"",
                "p.toml:19:9: app \"crm\" needs at least one host",
                "p.toml:24:10: host \"CRM.acme.test\" is already claimed by app \"crm\"",
                "p.toml:30:11: rule \"r\" needs at least one action",
                "p.toml:32:19: field \"pin\" is a password field: it is never captured, so it cannot be \"clear\"",
            ]
        );
    }
}
