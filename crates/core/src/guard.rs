//! The guard table: what the extension's content script needs to decide,
//! synchronously and without wasm, whether a user action must be *held*
//! until the service worker has classified it.
//!
//! The content script cannot run the engine (wasm is refused on pages with a
//! strict CSP, see `BRIEF.md`), and it cannot wait for the service worker
//! before deciding whether to cancel an event. So the service worker
//! computes this table from the verified packs, and the content script tests
//! it on every guardable action:
//!
//! - which app the page belongs to (`host_regex`, case-insensitive);
//! - which selectors to test on the target with `Element.closest` (the same
//!   list the engine matches `ObservedTarget.selectors` against);
//! - for every rule whose response holds the action (`warn`, `justify`,
//!   `step_up`, `block`, `terminate`): its user-action kinds, and its path,
//!   selector, accessible-name and visible-text criteria.
//!
//! The table is a **superset** test: conditions (`when`) are left out, so
//! the content script may hold an action that the engine then classifies as
//! `log` (it is replayed at once). It must never miss an action a rule
//! would hold, so every regex here matches at least what the glob matches.
//! Session thresholds are not in the table: they are decided on the
//! service worker's side for every event.
//!
//! Regexes are emitted as JavaScript `RegExp` sources (anchored, only `.`,
//! `*`, `?`, `[^x]`, `(?:…)` and escaped literals), so any engine reads them
//! the same way.

use serde::{Deserialize, Serialize};

use crate::event::{ActionKind, Response};
use crate::rulepack::glob::GlobKind;
use crate::rulepack::{Capture, Engine, Identity, Pack, is_password_field};

/// Bumped when the table's shape changes (the content script checks it).
pub const GUARD_TABLE_VERSION: u32 = 1;

/// Everything the content script needs, for every app of every loaded pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardTable {
    pub version: u32,
    /// `(pack id, version)` of the packs the table was computed from.
    pub packs: Vec<(String, u64)>,
    pub apps: Vec<GuardApp>,
}

/// One app, as the content script and the popup see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardApp {
    pub id: String,
    pub name: String,
    /// The host globs as written in the pack (for people).
    pub hosts: Vec<String>,
    /// One anchored, case-insensitive `RegExp` source per host glob.
    pub host_regex: Vec<String>,
    /// Chrome match patterns covering every host (a superset: match
    /// patterns cannot express every glob), for registering content scripts.
    pub match_patterns: Vec<String>,
    /// Selectors to test with `Element.closest` and report when matched.
    pub selectors: Vec<String>,
    /// Where the signed-in user is shown in the page, if the pack says.
    pub identity: Option<Identity>,
    /// Rules that hold an action.
    pub guards: Vec<Guard>,
    /// Field names some rule captures in clear (everything else is masked).
    pub clear_fields: Vec<String>,
    /// Field names never captured (the pack's list; the masking layer also
    /// drops anything that looks like a secret).
    pub password_fields: Vec<String>,
    /// Whether the query string and fragment are kept in signed URLs.
    pub keep_query: bool,
    pub keep_fragment: bool,
    /// The login page's path when the pack gives a literal one: where a
    /// `terminate` response sends the app's tabs.
    pub login_path: Option<String>,
}

/// One holding rule, reduced to what can be tested synchronously.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guard {
    pub rule: String,
    pub title: String,
    /// The rule's user-action kinds (non-user kinds cannot be held).
    pub actions: Vec<ActionKind>,
    /// Anchored `RegExp` source of the path glob (case-sensitive).
    pub path_regex: Option<String>,
    pub selector: Option<String>,
    /// Anchored, case-insensitive `RegExp` sources of the name/text globs.
    pub name_regex: Option<String>,
    pub text_regex: Option<String>,
    pub response: Response,
}

/// Computes the table for the packs an engine was built from.
pub fn guard_table(packs: &[Pack], engine: &Engine) -> GuardTable {
    let mut apps = Vec::new();
    for pack in packs {
        for app in &pack.apps {
            let guards = pack
                .rules
                .iter()
                .filter(|r| r.app == app.id && r.response.holds_action())
                .filter_map(|r| {
                    let actions: Vec<ActionKind> = r
                        .actions
                        .iter()
                        .copied()
                        .filter(|a| a.is_user_action())
                        .collect();
                    (!actions.is_empty()).then(|| Guard {
                        rule: r.id.clone(),
                        title: r.title.clone(),
                        actions,
                        path_regex: r.path.as_deref().map(|p| glob_regex(p, GlobKind::Path)),
                        selector: r.selector.clone(),
                        name_regex: r.name.as_deref().map(|p| glob_regex(p, GlobKind::Text)),
                        text_regex: r.text.as_deref().map(|p| glob_regex(p, GlobKind::Text)),
                        response: r.response,
                    })
                })
                .collect();
            let mut clear_fields: Vec<String> = pack
                .rules
                .iter()
                .filter(|r| r.app == app.id)
                .flat_map(|r| r.capture.iter())
                .filter(|(f, c)| **c == Capture::Clear && !is_password_field(app, f))
                .map(|(f, _)| f.clone())
                .collect();
            clear_fields.sort();
            clear_fields.dedup();
            let mut match_patterns: Vec<String> =
                app.hosts.iter().map(|h| match_pattern(h)).collect();
            match_patterns.sort();
            match_patterns.dedup();
            apps.push(GuardApp {
                id: app.id.clone(),
                name: app.name.clone(),
                hosts: app.hosts.clone(),
                host_regex: app
                    .hosts
                    .iter()
                    .map(|h| glob_regex(h, GlobKind::Host))
                    .collect(),
                match_patterns,
                selectors: engine.selectors(&app.id).to_vec(),
                identity: app.identity.clone(),
                guards,
                clear_fields,
                password_fields: app.password_fields.clone(),
                keep_query: app.url.query == crate::rulepack::Keep::Keep,
                keep_fragment: app.url.fragment == crate::rulepack::Keep::Keep,
                login_path: app
                    .login
                    .as_ref()
                    .and_then(|l| l.path.clone())
                    .filter(|p| !p.contains(['*', '?', '\\'])),
            });
        }
    }
    GuardTable {
        version: GUARD_TABLE_VERSION,
        packs: engine.packs().to_vec(),
        apps,
    }
}

fn push_escaped(out: &mut String, c: char) {
    if matches!(
        c,
        '\\' | '^' | '$' | '.' | '|' | '?' | '*' | '+' | '(' | ')' | '[' | ']' | '{' | '}' | '/'
    ) {
        out.push('\\');
    }
    out.push(c);
}

/// An anchored JavaScript `RegExp` source matching at least what the glob
/// matches (exactly, for every glob the parser accepts). Host and text globs
/// are meant to be used with the `i` flag.
pub fn glob_regex(glob: &str, kind: GlobKind) -> String {
    let sep = match kind {
        GlobKind::Path => Some('/'),
        GlobKind::Host => Some('.'),
        GlobKind::Text => None,
    };
    let not_sep = |out: &mut String| match sep {
        Some(s) => {
            out.push_str("[^");
            push_escaped(out, s);
            out.push(']');
        }
        None => out.push('.'),
    };
    let chars: Vec<char> = glob.chars().collect();
    let mut out = String::with_capacity(glob.len() * 2 + 2);
    out.push('^');
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                if let Some(&e) = chars.get(i + 1) {
                    push_escaped(&mut out, e);
                }
                i += 2;
            }
            '/' if kind == GlobKind::Path
                && chars.get(i + 1) == Some(&'*')
                && chars.get(i + 2) == Some(&'*')
                && matches!(chars.get(i + 3), None | Some('/')) =>
            {
                // `/**` may match nothing.
                out.push_str("(?:\\/.*)?");
                i += 3;
            }
            '*' if chars.get(i + 1) == Some(&'*') => {
                out.push_str(".*");
                i += 2;
            }
            '*' => {
                not_sep(&mut out);
                out.push('*');
                i += 1;
            }
            '?' => {
                not_sep(&mut out);
                i += 1;
            }
            c => {
                push_escaped(&mut out, c);
                i += 1;
            }
        }
    }
    out.push('$');
    out
}

/// A Chrome match pattern (`*://host/*`) covering every host the glob
/// matches. Labels after the last wildcard label are kept; the rest becomes
/// `*.` (which also covers the bare suffix: a superset). A glob whose last
/// label has a wildcard covers every host.
pub fn match_pattern(host_glob: &str) -> String {
    let labels: Vec<&str> = host_glob.split('.').collect();
    let wild = |l: &str| l.contains(['*', '?', '\\']);
    match labels.iter().rposition(|l| wild(l)) {
        None => format!("*://{}/*", host_glob.to_ascii_lowercase()),
        Some(i) if i + 1 == labels.len() => "*://*/*".to_owned(),
        Some(i) => format!("*://*.{}/*", labels[i + 1..].join(".").to_ascii_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rulepack::glob::Glob;

    /// A tiny backtracking matcher for the regex subset `glob_regex` emits,
    /// so the test needs no regex crate.
    fn re_match(re: &str, s: &str, fold: bool) -> bool {
        #[derive(Debug, Clone)]
        enum N {
            Lit(char),
            NotSep(char),
            Dot,
            Star(Box<N>),
            OptGroup(Vec<N>),
        }
        fn parse(cs: &[char], mut i: usize) -> (Vec<N>, usize) {
            let mut v = Vec::new();
            while i < cs.len() {
                let n = match cs[i] {
                    '^' | '$' => {
                        i += 1;
                        continue;
                    }
                    ')' => return (v, i + 1),
                    '(' => {
                        // (?: ... )?
                        let (inner, j) = parse(cs, i + 3);
                        i = j + 1; // skip '?'
                        v.push(N::OptGroup(inner));
                        continue;
                    }
                    '\\' => {
                        i += 2;
                        N::Lit(cs[i - 1])
                    }
                    '[' => {
                        // [^\x]
                        let c = if cs[i + 2] == '\\' {
                            cs[i + 3]
                        } else {
                            cs[i + 2]
                        };
                        i = cs[i..].iter().position(|&c| c == ']').unwrap() + i + 1;
                        N::NotSep(c)
                    }
                    '.' => {
                        i += 1;
                        N::Dot
                    }
                    c => {
                        i += 1;
                        N::Lit(c)
                    }
                };
                if cs.get(i) == Some(&'*') {
                    i += 1;
                    v.push(N::Star(Box::new(n)));
                } else {
                    v.push(n);
                }
            }
            (v, i)
        }
        fn one(n: &N, c: char, fold: bool) -> bool {
            match n {
                N::Lit(l) => {
                    if fold {
                        l.to_lowercase().eq(c.to_lowercase())
                    } else {
                        *l == c
                    }
                }
                N::NotSep(x) => c != *x,
                N::Dot => true,
                _ => false,
            }
        }
        fn m(ns: &[N], s: &[char], fold: bool) -> bool {
            let Some((first, rest)) = ns.split_first() else {
                return s.is_empty();
            };
            match first {
                N::Star(n) => {
                    let mut k = 0;
                    loop {
                        if m(rest, &s[k..], fold) {
                            return true;
                        }
                        if k < s.len() && one(n, s[k], fold) {
                            k += 1;
                        } else {
                            return false;
                        }
                    }
                }
                N::OptGroup(inner) => {
                    let mut joined = inner.clone();
                    joined.extend(rest.iter().cloned());
                    m(rest, s, fold) || m(&joined, s, fold)
                }
                n => !s.is_empty() && one(n, s[0], fold) && m(rest, &s[1..], fold),
            }
        }
        let cs: Vec<char> = re.chars().collect();
        let (nodes, _) = parse(&cs, 0);
        let sc: Vec<char> = s.chars().collect();
        m(&nodes, &sc, fold)
    }

    #[test]
    fn regexes_agree_with_globs() {
        let cases: &[(&str, GlobKind, &[&str])] = &[
            (
                "/crm/customers/**",
                GlobKind::Path,
                &[
                    "/crm/customers",
                    "/crm/customers/",
                    "/crm/customers/42/edit",
                    "/crm/customersX",
                    "/crm",
                ],
            ),
            (
                "/crm/**/export",
                GlobKind::Path,
                &[
                    "/crm/export",
                    "/crm/a/b/export",
                    "/crm/a/exports",
                    "/crmexport",
                ],
            ),
            (
                "/hr/employees/*/bank",
                GlobKind::Path,
                &[
                    "/hr/employees/7/bank",
                    "/hr/employees//bank",
                    "/hr/employees/7/8/bank",
                ],
            ),
            (
                "/a?c.(x)",
                GlobKind::Path,
                &["/abc.(x)", "/a/c.(x)", "/abcd(x)"],
            ),
            (
                "*.crm.acme.test",
                GlobKind::Host,
                &[
                    "eu.crm.acme.test",
                    "EU.CRM.acme.test",
                    "crm.acme.test",
                    "a.b.crm.acme.test",
                ],
            ),
            (
                "**.acme.test",
                GlobKind::Host,
                &["a.b.acme.test", "acme.test"],
            ),
            ("delete*", GlobKind::Text, &["Delete employee", "undelete"]),
            ("\\*star\\*", GlobKind::Text, &["*star*", "xstarx"]),
        ];
        for (glob, kind, inputs) in cases {
            let g = Glob::new(glob, *kind).unwrap();
            let re = glob_regex(glob, *kind);
            for s in *inputs {
                assert_eq!(
                    re_match(&re, s, *kind != GlobKind::Path),
                    g.is_match(s),
                    "glob {glob:?} regex {re:?} input {s:?}"
                );
            }
        }
        assert_eq!(
            glob_regex("/crm/customers/**", GlobKind::Path),
            "^\\/crm\\/customers(?:\\/.*)?$"
        );
    }

    #[test]
    fn match_patterns() {
        assert_eq!(match_pattern("crm.acme.test"), "*://crm.acme.test/*");
        assert_eq!(match_pattern("*.crm.acme.test"), "*://*.crm.acme.test/*");
        assert_eq!(match_pattern("crm-*.Acme.test"), "*://*.acme.test/*");
        assert_eq!(match_pattern("crm.*"), "*://*/*");
    }

    #[test]
    fn demo_pack_table() {
        let src = include_str!("../../../rulepacks/demo/acme.toml");
        let pack = crate::rulepack::parse("acme.toml", src).unwrap();
        let engine = Engine::new(std::slice::from_ref(&pack)).unwrap();
        let t = guard_table(std::slice::from_ref(&pack), &engine);
        assert_eq!(t.packs, vec![("acme".to_owned(), 1)]);
        assert!(
            t.apps
                .iter()
                .all(|a| a.login_path.as_deref() == Some("/login"))
        );
        let crm = t.apps.iter().find(|a| a.id == "crm").unwrap();
        assert_eq!(
            crm.match_patterns,
            vec!["*://*.crm.acme.test/*", "*://crm.acme.test/*"]
        );
        let rules: Vec<_> = crm.guards.iter().map(|g| g.rule.as_str()).collect();
        assert_eq!(
            rules,
            vec!["crm.customers.export_csv", "crm.customers.export_all"]
        );
        assert!(
            crm.selectors
                .contains(&"button[data-action=export-all]".to_owned())
        );
        assert!(crm.selectors.contains(&"form#login".to_owned()));
        let hr = t.apps.iter().find(|a| a.id == "hr").unwrap();
        // `log` rules never hold; the large-approval rule holds (its `when`
        // is left to the engine).
        let rules: Vec<_> = hr.guards.iter().map(|g| g.rule.as_str()).collect();
        assert_eq!(
            rules,
            vec!["hr.payroll.approve_large", "hr.bank_details.change"]
        );
        assert_eq!(
            hr.clear_fields,
            vec!["account_holder", "amount", "currency", "period"]
        );
        let json = serde_json::to_string(&t).unwrap();
        assert!(json.contains("\"response\":\"block\""));
    }
}
