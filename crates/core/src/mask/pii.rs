//! PII detectors over free text: hand-written linear scanners, one per kind.
//!
//! Every pattern is ASCII, so a match starts and ends on ASCII bytes and its
//! byte range always falls on `char` boundaries of the original `&str`.
//! Non-ASCII bytes never take part in a match and count as word boundaries.
//!
//! The rules (and the reasons behind each exclusion) are specified in
//! `docs/masking.md`; keep the two in step.

use std::borrow::Cow;
use std::ops::Range;

/// The kinds of personal data [`find_pii`] recognises in free text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PiiKind {
    Email,
    Card,
    Iban,
    Ssn,
    Phone,
}

impl PiiKind {
    pub const ALL: [PiiKind; 5] = [
        PiiKind::Email,
        PiiKind::Card,
        PiiKind::Iban,
        PiiKind::Ssn,
        PiiKind::Phone,
    ];

    /// The name used in inline tokens (`[email:…]`).
    pub fn as_str(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Card => "card",
            PiiKind::Iban => "iban",
            PiiKind::Ssn => "ssn",
            PiiKind::Phone => "phone",
        }
    }
}

/// One detected span: its kind and its byte range in the scanned text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiiMatch {
    pub kind: PiiKind,
    pub range: Range<usize>,
}

impl PiiMatch {
    /// The matched text (empty if `text` is not the scanned string).
    pub fn as_str<'a>(&self, text: &'a str) -> &'a str {
        text.get(self.range.clone()).unwrap_or("")
    }
}

/// Finds PII in `text`: non-overlapping matches, left to right.
///
/// At each position the detectors are tried in the order email, IBAN, SSN,
/// card, phone; the first that matches wins and scanning resumes after it.
/// Well-formed mask tokens (`[email:<22 base64url chars>]`, see
/// [`super::mask_text`]) are skipped whole, which is what makes masking
/// idempotent.
pub fn find_pii(text: &str) -> Vec<PiiMatch> {
    let mut out = Vec::new();
    scan(text.as_bytes(), |m| out.push(m));
    out
}

/// Whether `text` is exactly one PII value of some kind (used to normalise
/// field values before committing).
pub(crate) fn whole_match(text: &str) -> Option<PiiKind> {
    let mut first: Option<PiiMatch> = None;
    let mut count = 0usize;
    scan(text.as_bytes(), |m| {
        count += 1;
        if first.is_none() {
            first = Some(m);
        }
    });
    match first {
        Some(m) if count == 1 && m.range == (0..text.len()) => Some(m.kind),
        _ => None,
    }
}

/// The canonical form of a matched value, the string actually committed.
///
/// - email: ASCII-lower-cased, a `%40` separator written as `@`;
/// - card: the digits only;
/// - IBAN: upper-cased, spaces removed;
/// - SSN: unchanged (`ddd-dd-dddd`);
/// - phone: `+` and the digits; a NANP number gets its `+1`, and an
///   international trunk prefix written `(0)` is dropped.
pub(crate) fn canonical(kind: PiiKind, s: &str) -> Cow<'_, str> {
    match kind {
        PiiKind::Email => {
            let b = s.as_bytes();
            let mut out = String::with_capacity(s.len());
            let mut i = 0;
            let mut seen_at = false;
            while let Some(&c) = b.get(i) {
                if !seen_at && c == b'%' && b.get(i + 1..i + 3) == Some(b"40") {
                    out.push('@');
                    seen_at = true;
                    i += 3;
                    continue;
                }
                if c == b'@' {
                    seen_at = true;
                }
                out.push(char::from(c.to_ascii_lowercase()));
                i += 1;
            }
            Cow::Owned(out)
        }
        PiiKind::Card => Cow::Owned(s.chars().filter(char::is_ascii_digit).collect()),
        PiiKind::Iban => Cow::Owned(
            s.chars()
                .filter(|c| *c != ' ')
                .map(|c| c.to_ascii_uppercase())
                .collect(),
        ),
        PiiKind::Ssn => Cow::Borrowed(s),
        PiiKind::Phone => {
            let mut out = String::with_capacity(16);
            if s.starts_with('+') {
                out.push('+');
                out.extend(s.replace("(0)", "").chars().filter(char::is_ascii_digit));
            } else {
                let digits: Vec<char> = s.chars().filter(char::is_ascii_digit).collect();
                out.push_str("+1");
                out.extend(&digits[digits.len().saturating_sub(10)..]);
            }
            Cow::Owned(out)
        }
    }
}

fn scan(b: &[u8], mut emit: impl FnMut(PiiMatch)) {
    let mut i = 0;
    // No email can start before this: it is the end of a local-part run
    // already tried, which keeps the email scan linear.
    let mut email_floor = 0;
    while let Some(&c) = b.get(i) {
        if c == b'['
            && let Some(len) = super::token_len(&b[i..])
        {
            i += len;
            continue;
        }
        if let Some((kind, end)) = detect_at(b, i, &mut email_floor) {
            emit(PiiMatch {
                kind,
                range: i..end,
            });
            i = end;
        } else {
            i += 1;
        }
    }
}

fn detect_at(b: &[u8], i: usize, email_floor: &mut usize) -> Option<(PiiKind, usize)> {
    let c = at(b, i);
    let p = prev(b, i);
    if c.is_ascii_alphanumeric() {
        if p.is_ascii_alphanumeric() {
            return None;
        }
        if i >= *email_floor {
            match email(b, i) {
                Ok(end) => return Some((PiiKind::Email, end)),
                Err(floor) => *email_floor = floor,
            }
        }
        if c.is_ascii_alphabetic() {
            return iban(b, i).map(|e| (PiiKind::Iban, e));
        }
        if !num_left_ok(b, i) {
            return None;
        }
        if let Some(e) = ssn(b, i) {
            return Some((PiiKind::Ssn, e));
        }
        if let Some(e) = card(b, i) {
            return Some((PiiKind::Card, e));
        }
        return nanp(b, i).map(|e| (PiiKind::Phone, e));
    }
    if c == b'+' && !p.is_ascii_alphanumeric() && p != b'+' {
        return e164(b, i).map(|e| (PiiKind::Phone, e));
    }
    if c == b'(' && !p.is_ascii_alphanumeric() {
        return nanp(b, i).map(|e| (PiiKind::Phone, e));
    }
    None
}

/// The byte at `i`, or NUL past the end (NUL is a boundary for every rule).
fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

fn prev(b: &[u8], i: usize) -> u8 {
    match i.checked_sub(1) {
        Some(j) => at(b, j),
        None => 0,
    }
}

fn digit(b: &[u8], i: usize) -> Option<u8> {
    let c = at(b, i);
    c.is_ascii_digit().then(|| c - b'0')
}

/// A number must not continue a decimal (`0.4111…`) or a longer
/// dash-separated identifier (`12-4111-…`).
fn num_left_ok(b: &[u8], i: usize) -> bool {
    let p = prev(b, i);
    !(p.is_ascii_alphanumeric()
        || matches!(p, b'.' | b'-') && i >= 2 && at(b, i - 2).is_ascii_digit())
}

/// A number must not run on into letters, a decimal part or a longer
/// dash-separated identifier (`…-0100-22`).
fn num_right_ok(b: &[u8], j: usize) -> bool {
    let n = at(b, j);
    !(n.is_ascii_alphanumeric() || matches!(n, b'.' | b'-') && at(b, j + 1).is_ascii_digit())
}

// ---------------------------------------------------------------- email

fn is_local(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}

/// `Ok(end)` on a match; otherwise `Err(floor)`, the first position where
/// another email could start.
fn email(b: &[u8], i: usize) -> Result<usize, usize> {
    let mut j = i;
    let sep_len = loop {
        let c = at(b, j);
        if c == b'@' {
            break 1;
        }
        if c == b'%' && b.get(j + 1..j + 3) == Some(b"40") {
            break 3;
        }
        if !is_local(c) {
            return Err(j.max(i + 1));
        }
        j += 1;
    };
    if j == i || j - i > 64 || prev(b, j) == b'.' {
        return Err(j);
    }
    domain(b, j + sep_len).ok_or(j)
}

fn domain(b: &[u8], d: usize) -> Option<usize> {
    let mut e = d;
    while matches!(at(b, e), c if c.is_ascii_alphanumeric() || c == b'.' || c == b'-') {
        e += 1;
    }
    // Sentence punctuation after an address is not part of it.
    while e > d && matches!(at(b, e - 1), b'.' | b'-') {
        e -= 1;
    }
    let dom = b.get(d..e)?;
    if dom.is_empty() || dom.len() > 253 {
        return None;
    }
    let mut labels = 0;
    let mut last: &[u8] = &[];
    for label in dom.split(|&c| c == b'.') {
        let ok =
            matches!((label.first(), label.last()), (Some(f), Some(l)) if *f != b'-' && *l != b'-');
        if !ok || label.len() > 63 {
            return None;
        }
        labels += 1;
        last = label;
    }
    if labels < 2 || last.len() < 2 || !last.iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    Some(e)
}

// ---------------------------------------------------------------- IBAN

/// IBAN length per country, from the SWIFT IBAN registry.
const IBAN_LENGTHS: &[(&[u8; 2], u8)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BI", 27),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DJ", 27),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FK", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HN", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MN", 20),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NI", 28),
    (b"NL", 18),
    (b"NO", 15),
    (b"OM", 23),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"RU", 33),
    (b"SA", 24),
    (b"SC", 31),
    (b"SD", 18),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"SO", 23),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
    (b"YE", 30),
];

const IBAN_MAX: usize = 34;

fn iban_len(cc: [u8; 2]) -> Option<usize> {
    IBAN_LENGTHS
        .iter()
        .find(|(c, _)| **c == cc)
        .map(|(_, n)| usize::from(*n))
}

fn iban(b: &[u8], i: usize) -> Option<usize> {
    let cc = [
        at(b, i).to_ascii_uppercase(),
        at(b, i + 1).to_ascii_uppercase(),
    ];
    if !cc.iter().all(u8::is_ascii_uppercase)
        || digit(b, i + 2).is_none()
        || digit(b, i + 3).is_none()
    {
        return None;
    }
    let len = iban_len(cc)?;
    let mut buf = [0u8; IBAN_MAX];
    buf[..2].copy_from_slice(&cc);
    buf[2] = at(b, i + 2);
    buf[3] = at(b, i + 3);
    let mut n = 4;
    let mut j = i + 4;
    if at(b, j) == b' ' {
        // Paper format: groups of four separated by single spaces.
        while n < len {
            if at(b, j) != b' ' {
                return None;
            }
            j += 1;
            let mut g = 0;
            while g < 4 && n < len && at(b, j).is_ascii_alphanumeric() {
                buf[n] = at(b, j).to_ascii_uppercase();
                n += 1;
                j += 1;
                g += 1;
            }
            if g == 0 || (g < 4 && n < len) {
                return None;
            }
        }
    } else {
        while n < len && at(b, j).is_ascii_alphanumeric() {
            buf[n] = at(b, j).to_ascii_uppercase();
            n += 1;
            j += 1;
        }
        if n < len {
            return None;
        }
    }
    if at(b, j).is_ascii_alphanumeric() || !iban_mod97(&buf[..len]) {
        return None;
    }
    Some(j)
}

/// ISO 13616: the first four characters moved to the end, letters read as
/// 10..35, the whole number mod 97 must be 1.
fn iban_mod97(s: &[u8]) -> bool {
    let (head, tail) = s.split_at(4.min(s.len()));
    let mut r: u32 = 0;
    for &c in tail.iter().chain(head) {
        r = if c.is_ascii_digit() {
            (r * 10 + u32::from(c - b'0')) % 97
        } else if c.is_ascii_uppercase() {
            (r * 100 + u32::from(c - b'A') + 10) % 97
        } else {
            return false;
        };
    }
    r == 1
}

// ---------------------------------------------------------------- SSN

fn ssn(b: &[u8], i: usize) -> Option<usize> {
    let s = b.get(i..i + 11)?;
    let shape = s.iter().enumerate().all(|(k, c)| match k {
        3 | 6 => *c == b'-',
        _ => c.is_ascii_digit(),
    });
    // SSA never issues area 000, 666 or 9xx, group 00 or serial 0000.
    if !shape
        || &s[0..3] == b"000"
        || &s[0..3] == b"666"
        || s[0] == b'9'
        || &s[4..6] == b"00"
        || &s[7..11] == b"0000"
        || !num_right_ok(b, i + 11)
    {
        return None;
    }
    Some(i + 11)
}

// ---------------------------------------------------------------- card

const CARD_MIN: usize = 13;
const CARD_MAX: usize = 19;

fn card(b: &[u8], i: usize) -> Option<usize> {
    if at(b, i) == b'0' {
        return None;
    }
    let mut digits = [0u8; CARD_MAX];
    let mut n = 0;
    let mut j = i;
    let mut sep: Option<u8> = None;
    // Ends of digit groups with an acceptable digit count, longest last.
    let mut cands = [(0usize, 0usize); CARD_MAX - CARD_MIN + 1];
    let mut ncand = 0;
    'run: loop {
        while let Some(d) = digit(b, j) {
            if n == CARD_MAX {
                break 'run;
            }
            digits[n] = d;
            n += 1;
            j += 1;
        }
        if n >= CARD_MIN {
            cands[ncand] = (j, n);
            ncand += 1;
        }
        let c = at(b, j);
        if matches!(c, b' ' | b'-') && digit(b, j + 1).is_some() && sep.is_none_or(|s| s == c) {
            sep = Some(c);
            j += 1;
        } else {
            break;
        }
    }
    // A longer run of space-separated groups may carry a card followed by
    // another number ("4111 1111 1111 1111 123"): try the longest prefix
    // ending on a group boundary.
    cands[..ncand]
        .iter()
        .rev()
        .find(|(end, n)| num_right_ok(b, *end) && luhn(&digits[..*n]))
        .map(|(end, _)| *end)
}

fn luhn(d: &[u8]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(k, &x)| {
            let x = u32::from(x);
            if k % 2 == 1 {
                let y = x * 2;
                if y > 9 { y - 9 } else { y }
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

// ---------------------------------------------------------------- phone

/// NANP: `(415) 555-0100`, `415-555-0100`, `415.555.0100`, `415 555 0100`,
/// optionally preceded by `1` and a separator. Area code and exchange
/// start with 2-9. Bare ten-digit runs are not phone-shaped.
fn nanp(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    if at(b, j) == b'1' && matches!(at(b, j + 1), b' ' | b'-' | b'.') {
        j += 2;
    }
    let paren = at(b, j) == b'(';
    if paren {
        j += 1;
    }
    let three = |j: usize| {
        matches!(at(b, j), b'2'..=b'9') && digit(b, j + 1).is_some() && digit(b, j + 2).is_some()
    };
    if !three(j) {
        return None;
    }
    j += 3;
    let sep1 = if paren {
        if at(b, j) != b')' {
            return None;
        }
        j += 1;
        if matches!(at(b, j), b' ' | b'-') {
            j += 1;
        }
        None
    } else {
        let c = at(b, j);
        if !matches!(c, b' ' | b'-' | b'.') {
            return None;
        }
        j += 1;
        Some(c)
    };
    if !three(j) {
        return None;
    }
    j += 3;
    let c = at(b, j);
    let sep_ok = match sep1 {
        Some(s) => c == s,
        None => matches!(c, b' ' | b'-' | b'.'),
    };
    if !sep_ok || (0..4).any(|k| digit(b, j + 1 + k).is_none()) {
        return None;
    }
    j += 5;
    num_right_ok(b, j).then_some(j)
}

const E164_MIN: usize = 8;
const E164_MAX: usize = 15;

/// E.164: `+`, a country code not starting with 0, 8 to 15 digits in all,
/// single separators (space, `-`, `.`) and short parenthesised groups such
/// as a `(0)` trunk prefix.
fn e164(b: &[u8], i: usize) -> Option<usize> {
    if !matches!(at(b, i + 1), b'1'..=b'9') {
        return None;
    }
    let mut j = i + 1;
    let mut n = 0;
    let mut best: Option<usize> = None;
    let mut after_sep = false;
    loop {
        let c = at(b, j);
        if c.is_ascii_digit() {
            n += 1;
            if n > E164_MAX {
                break;
            }
            j += 1;
            after_sep = false;
            if !at(b, j).is_ascii_digit() && n >= E164_MIN && num_right_ok(b, j) {
                best = Some(j);
            }
            continue;
        }
        if matches!(c, b' ' | b'-' | b'.') && !after_sep && n > 0 {
            let nx = at(b, j + 1);
            if nx.is_ascii_digit() || nx == b'(' {
                j += 1;
                after_sep = true;
                continue;
            }
        }
        if c == b'(' && n > 0 {
            let mut k = j + 1;
            while at(b, k).is_ascii_digit() && k - j <= 4 {
                k += 1;
            }
            let len = k - j - 1;
            if (1..=4).contains(&len) && at(b, k) == b')' {
                let nx = at(b, k + 1);
                let then_digit = nx.is_ascii_digit()
                    || (matches!(nx, b' ' | b'-' | b'.') && at(b, k + 2).is_ascii_digit());
                if then_digit {
                    n += len;
                    if n > E164_MAX {
                        break;
                    }
                    j = k + 1;
                    after_sep = false;
                    continue;
                }
            }
        }
        break;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(PiiKind, &str)> {
        find_pii(text)
            .iter()
            .map(|m| (m.kind, m.as_str(text)))
            .collect()
    }

    fn only(text: &str) -> Option<(PiiKind, &str)> {
        let v = kinds(text);
        assert!(v.len() <= 1, "{text:?} gave {v:?}");
        v.into_iter().next()
    }

    #[test]
    fn emails() {
        for (t, want) in [
            ("mail alice@example.com now", "alice@example.com"),
            (
                "Alice.Smith+tag@Mail.Example.CO.UK.",
                "Alice.Smith+tag@Mail.Example.CO.UK",
            ),
            ("<bob_o'neil@x.io>", "neil@x.io"),
            (
                "mailto:first-last@sub-domain.example.org",
                "first-last@sub-domain.example.org",
            ),
            ("/users/alice%40example.com/edit", "alice%40example.com"),
            ("(x.y@z.dev)", "x.y@z.dev"),
            ("a@b.co", "a@b.co"),
        ] {
            assert_eq!(only(t), Some((PiiKind::Email, want)), "{t}");
        }
        for t in [
            "alice@localhost",
            "alice@example.c0m",
            "alice@192.168.0.1",
            "@example.com",
            "alice.@example.com",
            "alice@-example.com",
            "alice@example..com",
            "version 1.2.3@beta",
            "foo@bar",
        ] {
            assert_eq!(only(t), None, "{t}");
        }
        assert_eq!(
            kinds("a@b.com,c@d.org;e@f.net"),
            vec![
                (PiiKind::Email, "a@b.com"),
                (PiiKind::Email, "c@d.org"),
                (PiiKind::Email, "e@f.net")
            ]
        );
    }

    #[test]
    fn cards() {
        for (t, want) in [
            ("visa 4111111111111111.", "4111111111111111"),
            ("4111 1111 1111 1111", "4111 1111 1111 1111"),
            ("4111-1111-1111-1111", "4111-1111-1111-1111"),
            ("amex 3782 822463 10005", "3782 822463 10005"),
            ("mc:5555555555554444,", "5555555555554444"),
            ("13 digits 4222222222222", "4222222222222"),
            ("19 digits 6304000000000000000!", "6304000000000000000"),
            ("4111 1111 1111 1111 123", "4111 1111 1111 1111"),
            ("4111-1111-1111-1111 2026", "4111-1111-1111-1111"),
        ] {
            assert_eq!(only(t), Some((PiiKind::Card, want)), "{t}");
        }
        for t in [
            "4111111111111112",       // Luhn-invalid
            "4111 1111 1111 1112",    // Luhn-invalid, grouped
            "ORD4111111111111111",    // inside an alphanumeric run
            "4111111111111111x",      // inside an alphanumeric run
            "41111111111111111111",   // 20 digits
            "0000000000000000",       // leading zero
            "4111111111111111.50",    // decimal
            "3.4111111111111111",     // decimal
            "4111  1111  1111  1111", // double separators
            "4111-1111 1111-1111",    // mixed separators
            "order 12345678901",      // too short
            "4111-1111-1111-1111-2",  // longer dashed identifier
        ] {
            assert_eq!(only(t), None, "{t}");
        }
    }

    #[test]
    fn ibans() {
        for t in [
            "DE89370400440532013000",
            "GB82WEST12345698765432",
            "FR1420041010050500013M02606",
            "NL91ABNA0417164300",
            "BE68539007547034",
            "NO9386011117947",
            "CH9300762011623852957",
            "IT60X0542811101000000123456",
            "ES9121000418450200051332",
            "MT84MALT011000012345MTLCAST001S",
            "SA0380000000608010167519",
        ] {
            let text = format!("pay to {t}.");
            assert_eq!(only(&text), Some((PiiKind::Iban, t)), "{t}");
        }
        assert_eq!(
            only("IBAN: DE89 3704 0044 0532 0130 00, thanks"),
            Some((PiiKind::Iban, "DE89 3704 0044 0532 0130 00"))
        );
        assert_eq!(
            only("gb82 west 1234 5698 7654 32"),
            Some((PiiKind::Iban, "gb82 west 1234 5698 7654 32"))
        );
        for t in [
            "DE89370400440532013001",  // bad checksum
            "DE8937040044053201300",   // too short for DE
            "DE893704004405320130001", // too long for DE
            "XX89370400440532013000",  // no such country
            "ADE89370400440532013000", // inside a run
            "DE89 3704 0044 0532 0130 01",
            "DE89 37040 0440 5320 1300 0",
        ] {
            assert!(kinds(t).iter().all(|(k, _)| *k != PiiKind::Iban), "{t}");
        }
    }

    #[test]
    fn ssns() {
        assert_eq!(
            only("ssn 123-45-6789."),
            Some((PiiKind::Ssn, "123-45-6789"))
        );
        assert_eq!(only("078-05-1120"), Some((PiiKind::Ssn, "078-05-1120")));
        assert_eq!(only("899-99-9999"), Some((PiiKind::Ssn, "899-99-9999")));
        for t in [
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "999-12-3456",
            "123-00-4567",
            "123-45-0000",
            "A123-45-6789",
            "123-45-67890",
            "123-45-6789-1",
            "123456789",
            "123 45 6789",
            "2.123-45-6789",
        ] {
            assert_eq!(only(t), None, "{t}");
        }
    }

    #[test]
    fn phones() {
        for (t, want) in [
            ("call (415) 555-0100 now", "(415) 555-0100"),
            ("(415)555-0100", "(415)555-0100"),
            ("415-555-0100", "415-555-0100"),
            ("415.555.0100.", "415.555.0100"),
            ("415 555 0100", "415 555 0100"),
            ("1-800-555-0100", "1-800-555-0100"),
            ("1 (800) 555-0100", "1 (800) 555-0100"),
            ("+14155550100", "+14155550100"),
            ("+1 415 555 0100", "+1 415 555 0100"),
            ("+1 (415) 555-0100", "+1 (415) 555-0100"),
            ("+44 20 7946 0958", "+44 20 7946 0958"),
            ("+44 (0)20 7946 0958", "+44 (0)20 7946 0958"),
            ("+33 1 23 45 67 89", "+33 1 23 45 67 89"),
            ("tel:+49-30-1234567", "+49-30-1234567"),
            ("+1 415 555 0100 20261", "+1 415 555 0100"),
        ] {
            assert_eq!(only(t), Some((PiiKind::Phone, want)), "{t}");
        }
        for t in [
            "4155550100",          // bare digits
            "415-555-01000",       // too long
            "415-555.0100",        // mixed separators
            "115-555-0100",        // area code starts with 1
            "415-155-0100",        // exchange starts with 1
            "2024-01-15",          // date
            "15/01/2024",          // date
            "2024.01.15 10:00",    // date and time
            "$10,000.00",          // amount
            "+10,000.00",          // signed amount
            "1,234,567.89",        // amount
            "v10.15.7",            // version
            "1.2.3.4",             // version / address
            "+1234567",            // 7 digits
            "+1234567890123456",   // 16 digits
            "+0123456789",         // no country code 0
            "x+14155550100",       // inside a run
            "3+14155550100",       // arithmetic
            "415-555-0100-22",     // longer identifier
            "order #100-200-3000", // area starts with 1
            "192.168.100.1000",
        ] {
            assert_eq!(only(t), None, "{t}");
        }
    }

    #[test]
    fn mixed_text_left_to_right() {
        let t = "From alice@example.com: card 4111 1111 1111 1111, iban DE89370400440532013000, \
                 ssn 123-45-6789, phone +1 415 555 0100; order 10,000.00 on 2024-01-15 v1.2.3";
        let got: Vec<PiiKind> = find_pii(t).iter().map(|m| m.kind).collect();
        assert_eq!(
            got,
            vec![
                PiiKind::Email,
                PiiKind::Card,
                PiiKind::Iban,
                PiiKind::Ssn,
                PiiKind::Phone
            ]
        );
    }

    #[test]
    fn non_ascii_neighbours_are_boundaries() {
        let t = "é4111111111111111ü ☎+14155550100";
        assert_eq!(
            kinds(t),
            vec![
                (PiiKind::Card, "4111111111111111"),
                (PiiKind::Phone, "+14155550100")
            ]
        );
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(
            canonical(PiiKind::Email, "Alice%40Example.COM"),
            "alice@example.com"
        );
        assert_eq!(
            canonical(PiiKind::Card, "4111-1111-1111-1111"),
            "4111111111111111"
        );
        assert_eq!(
            canonical(PiiKind::Iban, "de89 3704 0044 0532 0130 00"),
            "DE89370400440532013000"
        );
        assert_eq!(canonical(PiiKind::Ssn, "123-45-6789"), "123-45-6789");
        assert_eq!(canonical(PiiKind::Phone, "(415) 555-0100"), "+14155550100");
        assert_eq!(canonical(PiiKind::Phone, "1-415-555-0100"), "+14155550100");
        assert_eq!(
            canonical(PiiKind::Phone, "+1 (415) 555-0100"),
            "+14155550100"
        );
        assert_eq!(
            canonical(PiiKind::Phone, "+44 (0)20 7946 0958"),
            "+442079460958"
        );
        // A canonical form is itself detected as the same kind, whole.
        for (kind, s) in [
            (PiiKind::Email, "Alice%40Example.COM"),
            (PiiKind::Card, "4111 1111 1111 1111"),
            (PiiKind::Iban, "de89 3704 0044 0532 0130 00"),
            (PiiKind::Ssn, "123-45-6789"),
            (PiiKind::Phone, "(415) 555-0100"),
            (PiiKind::Phone, "+44 (0)20 7946 0958"),
        ] {
            assert_eq!(whole_match(s), Some(kind), "{s}");
            assert_eq!(whole_match(&canonical(kind, s)), Some(kind), "{s}");
        }
    }

    #[test]
    fn long_inputs_are_linear() {
        // Pathological shapes for naive scanners: every position a candidate.
        for unit in ["a.", "1 ", "+1 ", "a@", "1-", "(2", "DE89 ", "1."] {
            let t = unit.repeat(20_000);
            let _ = find_pii(&t);
        }
    }
}
