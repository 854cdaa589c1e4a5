//! The glob dialect of rule packs, matched without allocating.
//!
//! Syntax (the same everywhere a pack takes a glob):
//!
//! - `*` matches any run of characters that does not contain the separator
//!   (`/` for URL paths, `.` for hosts; text globs have no separator, so `*`
//!   matches anything there).
//! - `**` matches any run of characters, separators included.
//! - `?` matches exactly one character other than the separator.
//! - `\x` matches the character `x` literally (`\*`, `\?`, `\[`, `\\`).
//! - `[`, `]`, `{`, `}` are reserved (no classes or alternations) and must
//!   be escaped; `***` is refused.
//! - In paths, `/**` also matches nothing: `/crm/customers/**` matches
//!   `/crm/customers`, `/crm/customers/` and `/crm/customers/42/edit`, and
//!   `/crm/**/export` matches `/crm/export` and `/crm/a/b/export`.
//!
//! Matching runs a Thompson NFA over the pattern tokens with a fixed-size bit
//! set of states, so it is linear in the input and never backtracks: a
//! hostile URL cannot make it slow.

use std::fmt;

use serde::{Deserialize, Serialize};

/// At most this many tokens in one glob (the NFA state set is a fixed
/// 256-bit set).
pub const MAX_TOKENS: usize = 255;

/// What the glob is matched against; decides the separator and case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GlobKind {
    /// A URL path: separator `/`, case-sensitive.
    Path,
    /// A host name: separator `.`, case-insensitive.
    Host,
    /// Accessible name, visible text, field values: no separator,
    /// case-insensitive.
    Text,
}

impl GlobKind {
    fn separator(self) -> Option<char> {
        match self {
            GlobKind::Path => Some('/'),
            GlobKind::Host => Some('.'),
            GlobKind::Text => None,
        }
    }

    fn folds_case(self) -> bool {
        !matches!(self, GlobKind::Path)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Lit(char),
    Any,
    Star,
    StarStar,
}

/// A compiled glob.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    kind: GlobKind,
    toks: Vec<Tok>,
    /// `skip[i]`: state `i` also activates state `i + 2` (a `/**` that
    /// matches nothing).
    skip: Vec<bool>,
    /// Literal text every match starts with (cheap pre-filter).
    prefix: String,
    /// Literal text every match ends with (cheap pre-filter).
    suffix: String,
    /// Pattern is `prefix` + `/**` (path) : matches `prefix` or `prefix/…`.
    subtree: bool,
    /// No wildcard at all.
    literal: bool,
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?}, {:?})", self.kind, self.source)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Why a glob does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    #[error("empty pattern")]
    Empty,
    #[error("pattern ends with a lone backslash")]
    TrailingBackslash,
    #[error("`***` is not a valid wildcard (use `*` or `**`)")]
    TripleStar,
    #[error(
        "`{0}` is reserved (no character classes or alternations); escape it as `\\{0}` to match it literally"
    )]
    Reserved(char),
    #[error("pattern has more than {MAX_TOKENS} tokens")]
    TooLong,
    #[error("a path pattern must start with `/` or `*`")]
    PathNotAbsolute,
}

/// Simple, allocation-free case folding: ASCII lower-casing, and for other
/// characters the lower-case mapping when it is a single character.
#[inline]
pub(crate) fn fold(c: char) -> char {
    if c.is_ascii() {
        c.to_ascii_lowercase()
    } else {
        let mut it = c.to_lowercase();
        match (it.next(), it.next()) {
            (Some(a), None) => a,
            _ => c,
        }
    }
}

#[derive(Clone, Copy, Default)]
struct States([u64; 4]);

impl States {
    #[inline]
    fn set(&mut self, i: usize) {
        self.0[i >> 6] |= 1 << (i & 63);
    }
    #[inline]
    fn has(&self, i: usize) -> bool {
        self.0[i >> 6] & (1 << (i & 63)) != 0
    }
    #[inline]
    fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }
}

impl Glob {
    pub fn new(pattern: &str, kind: GlobKind) -> Result<Glob, GlobError> {
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        if kind == GlobKind::Path && !(pattern.starts_with('/') || pattern.starts_with('*')) {
            return Err(GlobError::PathNotAbsolute);
        }
        let fold_case = kind.folds_case();
        let mut toks = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(e) => toks.push(Tok::Lit(if fold_case { fold(e) } else { e })),
                    None => return Err(GlobError::TrailingBackslash),
                },
                '*' => {
                    if chars.peek() == Some(&'*') {
                        chars.next();
                        if chars.peek() == Some(&'*') {
                            return Err(GlobError::TripleStar);
                        }
                        toks.push(Tok::StarStar);
                    } else {
                        toks.push(Tok::Star);
                    }
                }
                '?' => toks.push(Tok::Any),
                '[' | ']' | '{' | '}' => return Err(GlobError::Reserved(c)),
                c => toks.push(Tok::Lit(if fold_case { fold(c) } else { c })),
            }
            if toks.len() > MAX_TOKENS {
                return Err(GlobError::TooLong);
            }
        }
        let mut skip = vec![false; toks.len()];
        if kind == GlobKind::Path {
            for i in 0..toks.len().saturating_sub(1) {
                let ends = i + 2 == toks.len() || toks.get(i + 2) == Some(&Tok::Lit('/'));
                if toks[i] == Tok::Lit('/') && toks[i + 1] == Tok::StarStar && ends {
                    skip[i] = true;
                }
            }
        }
        // A `/` that a `/**` may skip is not part of the literal prefix.
        let prefix: String = toks
            .iter()
            .zip(&skip)
            .map_while(|(t, s)| match t {
                Tok::Lit(c) if !s => Some(*c),
                _ => None,
            })
            .collect();
        let mut suffix: Vec<char> = toks
            .iter()
            .rev()
            .map_while(|t| match t {
                Tok::Lit(c) => Some(*c),
                _ => None,
            })
            .collect();
        suffix.reverse();
        let suffix: String = if prefix.chars().count() == toks.len() {
            // A pure literal: the prefix check already covers it.
            String::new()
        } else {
            suffix.into_iter().collect()
        };
        let n = toks.len();
        let subtree =
            kind == GlobKind::Path && n >= 2 && skip[n - 2] && prefix.chars().count() == n - 2;
        let literal = toks.iter().all(|t| matches!(t, Tok::Lit(_)));
        Ok(Glob {
            literal,
            source: pattern.to_owned(),
            kind,
            toks,
            skip,
            prefix,
            suffix,
            subtree,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn kind(&self) -> GlobKind {
        self.kind
    }

    /// Whether the pattern has no wildcard at all.
    pub fn is_literal(&self) -> bool {
        self.literal
    }

    fn closure(&self, s: &mut States) {
        // Epsilon moves only go forward, so one pass in order suffices.
        let n = self.toks.len();
        for i in 0..n {
            if s.has(i) {
                if matches!(self.toks[i], Tok::Star | Tok::StarStar) {
                    s.set(i + 1);
                }
                if self.skip[i] {
                    s.set(i + 2);
                }
            }
        }
    }

    fn prefilter(&self, input: &str) -> bool {
        if self.kind.folds_case() {
            starts_with_folded(input, &self.prefix) && ends_with_folded(input, &self.suffix)
        } else {
            input.starts_with(self.prefix.as_str()) && input.ends_with(self.suffix.as_str())
        }
    }

    pub fn is_match(&self, input: &str) -> bool {
        if !self.prefilter(input) {
            return false;
        }
        if self.subtree {
            let rest = &input[self.prefix.len()..];
            return rest.is_empty() || rest.starts_with('/');
        }
        if self.literal {
            // A pure literal that passed the prefix check: equal iff same length
            // (in characters, as case folding may change byte lengths).
            return input.chars().count() == self.toks.len();
        }
        let fold_case = self.kind.folds_case();
        let sep = self.kind.separator();
        let n = self.toks.len();
        let mut cur = States::default();
        cur.set(0);
        self.closure(&mut cur);
        for c in input.chars() {
            let c = if fold_case { fold(c) } else { c };
            let is_sep = Some(c) == sep;
            let mut next = States::default();
            for w in 0..4 {
                let mut bits = cur.0[w];
                while bits != 0 {
                    let i = w * 64 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    if i >= n {
                        continue;
                    }
                    match self.toks[i] {
                        Tok::Lit(l) if l == c => next.set(i + 1),
                        Tok::Lit(_) => {}
                        Tok::Any if !is_sep => next.set(i + 1),
                        Tok::Any => {}
                        Tok::Star if !is_sep => next.set(i),
                        Tok::Star => {}
                        Tok::StarStar => next.set(i),
                    }
                }
            }
            if next.is_empty() {
                return false;
            }
            self.closure(&mut next);
            cur = next;
        }
        cur.has(n)
    }
}

fn starts_with_folded(input: &str, folded_prefix: &str) -> bool {
    let mut it = input.chars();
    for p in folded_prefix.chars() {
        match it.next() {
            Some(c) if fold(c) == p => {}
            _ => return false,
        }
    }
    true
}

fn ends_with_folded(input: &str, folded_suffix: &str) -> bool {
    let mut it = input.chars().rev();
    for p in folded_suffix.chars().rev() {
        match it.next() {
            Some(c) if fold(c) == p => {}
            _ => return false,
        }
    }
    true
}

/// ASCII-case-insensitive substring search (non-ASCII compared exactly),
/// without allocating. Used by the `contains` condition.
pub(crate) fn contains_folded(haystack: &str, needle_folded: &str) -> bool {
    if needle_folded.is_empty() {
        return true;
    }
    let h = haystack.as_bytes();
    let n = needle_folded.as_bytes();
    if n.len() > h.len() {
        return false;
    }
    h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(g: &str, s: &str) -> bool {
        Glob::new(g, GlobKind::Path).unwrap().is_match(s)
    }
    fn t(g: &str, s: &str) -> bool {
        Glob::new(g, GlobKind::Text).unwrap().is_match(s)
    }
    fn h(g: &str, s: &str) -> bool {
        Glob::new(g, GlobKind::Host).unwrap().is_match(s)
    }

    #[test]
    fn path_semantics() {
        assert!(p("/crm/customers", "/crm/customers"));
        assert!(!p("/crm/customers", "/crm/customers/"));
        assert!(!p("/crm/customers", "/CRM/customers"));
        assert!(p("/crm/customers/*", "/crm/customers/42"));
        assert!(!p("/crm/customers/*", "/crm/customers/42/edit"));
        assert!(p("/crm/customers/*/edit", "/crm/customers/42/edit"));
        assert!(p("/crm/customers/**", "/crm/customers"));
        assert!(p("/crm/customers/**", "/crm/customers/"));
        assert!(p("/crm/customers/**", "/crm/customers/42/edit"));
        assert!(!p("/crm/customers/**", "/crm/customersX"));
        assert!(p("/crm/**/export", "/crm/export"));
        assert!(p("/crm/**/export", "/crm/a/b/export"));
        assert!(!p("/crm/**/export", "/crm/a/b/exported"));
        assert!(p("/a?c", "/abc"));
        assert!(!p("/a?c", "/a/c"));
        assert!(p("/**", "/"));
        assert!(p("/**", "/anything/at/all"));
        assert!(p("/file\\*", "/file*"));
        assert!(!p("/file\\*", "/filex"));
        assert!(p("/iam/users/*/role", "/iam/users/u-1/role"));
    }

    #[test]
    fn text_and_host_semantics() {
        assert!(t("export*", "Export CSV"));
        assert!(t("*csv*", "Download as CSV file"));
        assert!(!t("export", "Export CSV"));
        assert!(t("*a/b*", "xa/by"));
        assert!(t("ÉCRIRE*", "écrire un mot"));
        assert!(h("*.crm.acme.test", "eu.crm.acme.test"));
        assert!(h("*.crm.acme.test", "EU.CRM.acme.test"));
        assert!(!h("*.crm.acme.test", "crm.acme.test"));
        assert!(!h("*.crm.acme.test", "a.b.crm.acme.test"));
        assert!(h("**.crm.acme.test", "a.b.crm.acme.test"));
        assert!(!h("crm.acme.test", "crm.acme.test.evil.test"));
        assert!(h("crm.acme.test", "CRM.Acme.TEST"));
        assert!(!h("crm.acme.test", "crm.acme.tes"));
        assert!(t("export csv", "EXPORT CSV"));
        assert!(!t("export csv", "EXPORT CSV!"));
    }

    #[test]
    fn errors() {
        assert_eq!(Glob::new("", GlobKind::Text), Err(GlobError::Empty));
        assert_eq!(
            Glob::new("/a\\", GlobKind::Path),
            Err(GlobError::TrailingBackslash)
        );
        assert_eq!(
            Glob::new("/***", GlobKind::Path),
            Err(GlobError::TripleStar)
        );
        assert_eq!(
            Glob::new("/a[bc]", GlobKind::Path),
            Err(GlobError::Reserved('['))
        );
        assert_eq!(
            Glob::new("crm/x", GlobKind::Path),
            Err(GlobError::PathNotAbsolute)
        );
        let long = "a".repeat(300);
        assert_eq!(Glob::new(&long, GlobKind::Text), Err(GlobError::TooLong));
        assert!(Glob::new(&"a".repeat(255), GlobKind::Text).is_ok());
    }

    #[test]
    fn hostile_input_is_linear() {
        let g = Glob::new("*a*a*a*a*a*a*a*a*b", GlobKind::Text).unwrap();
        let s = "a".repeat(10_000);
        assert!(!g.is_match(&s));
    }

    #[test]
    fn contains_is_case_insensitive() {
        assert!(contains_folded("Please APPROVE now", "approve"));
        assert!(!contains_folded("Please", "approve"));
        assert!(contains_folded("x", ""));
    }
}
