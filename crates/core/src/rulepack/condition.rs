//! Conditions on captured field values: `amount > 10000`,
//! `role == 'Administrator'`, `note contains 'urgent'`,
//! `iban matches 'DE*'`.
//!
//! Grammar: `FIELD OP VALUE`, where FIELD is a run of characters other than
//! white space, quotes and `=!<>`; OP is one of `== != > >= < <= contains
//! matches`; VALUE is a number (`10000`, `-2.5`) or a quoted string (`'…'`
//! or `"…"`, backslash escapes the quote and itself).
//!
//! Semantics (all deterministic, no allocation when evaluated):
//! - A missing field makes the condition false (for every operator,
//!   `!=` included).
//! - With a number literal, the field value is read as a number (surrounding
//!   white space, `,` and `_` thousands separators are ignored); if it is not
//!   a number the condition is false. Numbers compare numerically.
//! - With a string literal, `==`/`!=` compare exactly; the ordering operators
//!   need a number literal (refused at parse time).
//! - `contains` is an ASCII-case-insensitive substring test; `matches` is a
//!   case-insensitive text glob (see [`super::glob`]) over the whole value.

use std::fmt;

use super::glob::{Glob, GlobKind, contains_folded};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Contains,
    Matches,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Contains => "contains",
            Op::Matches => "matches",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Number(f64),
    Text(String),
    Glob(Glob),
}

/// A parsed condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    source: String,
    pub field: String,
    pub op: Op,
    pub operand: Operand,
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Why a condition does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad condition {condition:?}: {reason}")]
pub struct ConditionError {
    pub condition: String,
    pub reason: String,
}

fn is_field_char(c: char) -> bool {
    !(c.is_whitespace() || matches!(c, '=' | '!' | '<' | '>' | '\'' | '"'))
}

/// Reads a number as the conditions see it, without allocating.
pub(crate) fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut buf = [0u8; 64];
    let mut n = 0;
    for b in s.bytes() {
        if b == b',' || b == b'_' {
            continue;
        }
        if !(b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E')) {
            return None;
        }
        *buf.get_mut(n)? = b;
        n += 1;
    }
    let t = std::str::from_utf8(&buf[..n]).ok()?;
    let v: f64 = t.parse().ok()?;
    v.is_finite().then_some(v)
}

impl Condition {
    pub fn parse(src: &str) -> Result<Condition, ConditionError> {
        let err = |reason: &str| ConditionError {
            condition: src.to_owned(),
            reason: reason.to_owned(),
        };
        let s = src.trim();
        let field_end = s.find(|c| !is_field_char(c)).unwrap_or(s.len());
        let field = &s[..field_end];
        if field.is_empty() {
            return Err(err("expected a field name first"));
        }
        let rest = s[field_end..].trim_start();
        let ops = [
            ("==", Op::Eq),
            ("!=", Op::Ne),
            (">=", Op::Ge),
            ("<=", Op::Le),
            (">", Op::Gt),
            ("<", Op::Lt),
            ("contains", Op::Contains),
            ("matches", Op::Matches),
        ];
        let Some((op_str, op)) = ops.iter().find(|(o, _)| rest.starts_with(o)) else {
            return Err(err(
                "expected an operator: == != > >= < <= contains matches",
            ));
        };
        let after = &rest[op_str.len()..];
        if op_str.starts_with(|c: char| c.is_ascii_alphabetic())
            && !after.starts_with(char::is_whitespace)
        {
            return Err(err("expected white space after the operator"));
        }
        let value = after.trim();
        if value.is_empty() {
            return Err(err("expected a value after the operator"));
        }
        let operand = if let Some(q) = value.chars().next().filter(|c| *c == '\'' || *c == '"') {
            let mut text = String::new();
            let mut chars = value[1..].chars();
            let mut closed = false;
            while let Some(c) = chars.next() {
                if c == '\\' {
                    match chars.next() {
                        Some(e) => text.push(e),
                        None => return Err(err("unterminated string")),
                    }
                } else if c == q {
                    closed = true;
                    break;
                } else {
                    text.push(c);
                }
            }
            if !closed {
                return Err(err("unterminated string"));
            }
            if !chars.as_str().trim().is_empty() {
                return Err(err("unexpected text after the closing quote"));
            }
            match op {
                Op::Matches => Operand::Glob(
                    Glob::new(&text, GlobKind::Text).map_err(|e| err(&format!("bad glob: {e}")))?,
                ),
                Op::Contains => Operand::Text(text.to_ascii_lowercase()),
                Op::Eq | Op::Ne => Operand::Text(text),
                _ => {
                    return Err(err(&format!(
                        "`{}` compares numbers: the value must be a number",
                        op.as_str()
                    )));
                }
            }
        } else {
            let Some(n) = value
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && !value.contains(char::is_whitespace))
            else {
                return Err(err(
                    "the value must be a number or a quoted string ('…' or \"…\")",
                ));
            };
            match op {
                Op::Contains | Op::Matches => {
                    return Err(err(&format!("`{}` takes a quoted string", op.as_str())));
                }
                _ => Operand::Number(n),
            }
        };
        Ok(Condition {
            source: s.to_owned(),
            field: field.to_owned(),
            op: *op,
            operand,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Evaluates against the field's observed value (`None` when the event
    /// has no such field).
    pub fn eval(&self, value: Option<&str>) -> bool {
        let Some(v) = value else { return false };
        match &self.operand {
            Operand::Number(n) => {
                let Some(x) = parse_number(v) else {
                    return false;
                };
                match self.op {
                    Op::Eq => x == *n,
                    Op::Ne => x != *n,
                    Op::Gt => x > *n,
                    Op::Ge => x >= *n,
                    Op::Lt => x < *n,
                    Op::Le => x <= *n,
                    Op::Contains | Op::Matches => false,
                }
            }
            Operand::Text(t) => match self.op {
                Op::Eq => v == t,
                Op::Ne => v != t,
                Op::Contains => contains_folded(v, t),
                _ => false,
            },
            Operand::Glob(g) => g.is_match(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Condition {
        Condition::parse(s).unwrap()
    }

    #[test]
    fn numbers_compare_numerically() {
        let gt = c("amount > 10000");
        assert!(gt.eval(Some("10001")));
        assert!(gt.eval(Some("12,500.50")));
        assert!(gt.eval(Some(" 20000 ")));
        assert!(!gt.eval(Some("10000")));
        assert!(!gt.eval(Some("9999.99")));
        // "9" > "10000" as strings, but not as numbers.
        assert!(!gt.eval(Some("9")));
        assert!(!gt.eval(Some("lots")));
        assert!(!gt.eval(None));
        assert!(c("amount >= 10000").eval(Some("10000")));
        assert!(c("amount<=5").eval(Some("5.0")));
        assert!(c("amount < -1").eval(Some("-2")));
        assert!(c("amount == 100").eval(Some("100.0")));
        assert!(c("amount != 100").eval(Some("101")));
        assert!(!c("amount != 100").eval(None));
    }

    #[test]
    fn strings_and_globs() {
        let role = c("role == 'Administrator'");
        assert_eq!(role.field, "role");
        assert!(role.eval(Some("Administrator")));
        assert!(!role.eval(Some("administrator")));
        assert!(!role.eval(None));
        assert!(c("role != \"Viewer\"").eval(Some("Editor")));
        assert!(c("note contains 'URGENT'").eval(Some("this is urgent!")));
        assert!(!c("note contains 'urgent'").eval(Some("calm")));
        assert!(c("iban matches 'de*'").eval(Some("DE89 3704")));
        assert!(!c("iban matches 'de*'").eval(Some("FR76")));
        assert!(c("name == 'it\\'s'").eval(Some("it's")));
        assert!(c("user[role] == 'x'").eval(Some("x")));
    }

    #[test]
    fn syntax_errors() {
        for (src, reason) in [
            ("", "expected a field name first"),
            (
                "amount",
                "expected an operator: == != > >= < <= contains matches",
            ),
            (
                "amount =~ 3",
                "expected an operator: == != > >= < <= contains matches",
            ),
            ("amount >", "expected a value after the operator"),
            (
                "amount > ten",
                "the value must be a number or a quoted string ('…' or \"…\")",
            ),
            ("role == 'Admin", "unterminated string"),
            (
                "role == 'Admin' x",
                "unexpected text after the closing quote",
            ),
            (
                "amount > '5'",
                "`>` compares numbers: the value must be a number",
            ),
            ("note contains 5", "`contains` takes a quoted string"),
            (
                "note containsx 'a'",
                "expected white space after the operator",
            ),
            (
                "iban matches '[x'",
                "bad glob: `[` is reserved (no character classes or alternations); escape it as `\\[` to match it literally",
            ),
        ] {
            let e = Condition::parse(src).unwrap_err();
            assert_eq!(e.reason, reason, "{src}");
        }
    }
}
