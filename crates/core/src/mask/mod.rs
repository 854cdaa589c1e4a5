//! Masking: keyed commitments for field values, and PII detection and
//! masking in free text, URLs and element descriptions.
//!
//! A commitment is `base64url(HMAC-SHA256(tenant key, "sessiontrail.mask.v1\0"
//! || normalise(value))[..16])`. The log never stores the value; an auditor
//! holding the tenant's [`MaskKey`] confirms "the value was X" with
//! [`MaskKey::opens`]. Commitments are deterministic, so equal values give
//! equal commitments within a tenant (linkable on purpose: investigations
//! follow the same value across events), and anyone holding the key can
//! test guesses: the key is as sensitive as the data it masks.
//!
//! The exact construction, the token format and every detector's rule are
//! specified in `docs/masking.md`.

mod pii;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroize;

use crate::event::{FieldKind, FieldValue, ObservedField, Target};

pub use pii::{PiiKind, PiiMatch, find_pii};

type HmacSha256 = Hmac<Sha256>;

/// Prefix of every committed message; a new construction gets a new version.
pub const COMMIT_DOMAIN: &[u8] = b"sessiontrail.mask.v1\0";
/// Bytes of the HMAC output kept in a commitment.
pub const COMMITMENT_BYTES: usize = 16;
/// Length of a commitment string (base64url, no padding).
pub const COMMITMENT_LEN: usize = 22;
/// Token kind for a value masked as a whole (URL query values).
pub const VALUE_TOKEN_KIND: &str = "value";

/// A tenant's 32-byte masking key. Its `Debug` output never shows the key,
/// and the bytes are zeroed when the key is dropped.
#[derive(Clone)]
pub struct MaskKey([u8; 32]);

impl MaskKey {
    pub fn from_bytes(bytes: [u8; 32]) -> MaskKey {
        MaskKey(bytes)
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC pads a short key with zeros to the block size; doing it here
        // gives the same MAC through the infallible constructor.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&self.0);
        let mac = HmacSha256::new(&block.into());
        block.zeroize();
        mac
    }

    fn tag(&self, normalised: &str) -> [u8; COMMITMENT_BYTES] {
        let full = self
            .mac()
            .chain_update(COMMIT_DOMAIN)
            .chain_update(normalised.as_bytes())
            .finalize()
            .into_bytes();
        let mut out = [0u8; COMMITMENT_BYTES];
        out.copy_from_slice(&full[..COMMITMENT_BYTES]);
        out
    }

    fn commit_normalised(&self, normalised: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.tag(normalised))
    }

    /// The commitment to `value` after [`normalise`]: 22 base64url characters.
    pub fn commit(&self, value: &str) -> String {
        self.commit_normalised(&normalise(value))
    }

    /// Whether `commitment` commits to `value` (normalised the same way as
    /// [`MaskKey::commit`]). `commitment` is the 22-character string, or a
    /// whole inline token such as `[email:…]`. The tag comparison is
    /// constant-time.
    pub fn opens(&self, value: &str, commitment: &str) -> bool {
        let c = parse_token(commitment).map_or(commitment, |(_, c)| c);
        if c.len() != COMMITMENT_LEN {
            return false;
        }
        // 22 characters decode to 16 bytes; the engine wants room for its
        // estimate, and refuses non-canonical trailing bits.
        let mut buf = [0u8; COMMITMENT_BYTES + 2];
        match URL_SAFE_NO_PAD.decode_slice(c, &mut buf) {
            Ok(COMMITMENT_BYTES) => {}
            _ => return false,
        }
        self.mac()
            .chain_update(COMMIT_DOMAIN)
            .chain_update(normalise(value).as_bytes())
            .verify_truncated_left(&buf[..COMMITMENT_BYTES])
            .is_ok()
    }
}

impl fmt::Debug for MaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MaskKey(..)")
    }
}

impl Drop for MaskKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The exact string a value is committed as.
///
/// Leading and trailing Unicode whitespace is removed. If what remains is,
/// as a whole, exactly one value that [`find_pii`] detects, it is replaced
/// by that kind's canonical form (emails lower-cased, card digits only,
/// IBAN upper-case without spaces, phones as `+` and digits), so a value
/// opens whatever way it was written. Nothing else changes: no case
/// folding, no Unicode normalisation.
pub fn normalise(value: &str) -> Cow<'_, str> {
    let t = value.trim();
    match pii::whole_match(t) {
        Some(kind) => Cow::Owned(pii::canonical(kind, t).into_owned()),
        None => Cow::Borrowed(t),
    }
}

// ---------------------------------------------------------------- tokens

const TOKEN_KINDS: [&str; 6] = ["email", "card", "iban", "ssn", "phone", VALUE_TOKEN_KIND];

fn is_b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

/// The length of the well-formed token at the start of `b`, if any:
/// `[` kind `:` 22 base64url characters `]`.
fn token_len(b: &[u8]) -> Option<usize> {
    if b.first() != Some(&b'[') {
        return None;
    }
    TOKEN_KINDS.iter().find_map(|k| {
        let start = 1 + k.len() + 1;
        let ok = b.get(1..1 + k.len()) == Some(k.as_bytes())
            && b.get(start - 1) == Some(&b':')
            && b.get(start..start + COMMITMENT_LEN)?
                .iter()
                .all(|&c| is_b64url(c))
            && b.get(start + COMMITMENT_LEN) == Some(&b']');
        ok.then_some(start + COMMITMENT_LEN + 1)
    })
}

/// Splits a whole token `[kind:commitment]` into its kind and commitment.
pub fn parse_token(token: &str) -> Option<(&str, &str)> {
    if token_len(token.as_bytes()) != Some(token.len()) {
        return None;
    }
    let inner = token.get(1..token.len() - 1)?;
    inner.split_once(':')
}

fn push_token(out: &mut String, kind: &str, commitment: &str) {
    out.push('[');
    out.push_str(kind);
    out.push(':');
    out.push_str(commitment);
    out.push(']');
}

// ---------------------------------------------------------------- text

/// More passes than any input needs (each pass turns at least one detected
/// span into a token that later passes skip; in practice the second pass
/// finds nothing). Past it, the whole text is masked as one value.
const MAX_PASSES: usize = 8;

/// Replaces every PII span in `text` by `[kind:<commitment>]`, where the
/// commitment is to the span's canonical form (the same string
/// [`normalise`] gives for the span alone, so `opens(span, token)` holds).
///
/// The output contains no span [`find_pii`] detects, and masking it again
/// changes nothing: tokens are skipped by the detectors, and the text is
/// rescanned until nothing is found (new neighbours can complete a match).
pub fn mask_text(key: &MaskKey, text: &str) -> String {
    let mut cur: Cow<'_, str> = Cow::Borrowed(text);
    for _ in 0..MAX_PASSES {
        let matches = find_pii(&cur);
        if matches.is_empty() {
            return cur.into_owned();
        }
        let mut out = String::with_capacity(cur.len() + matches.len() * 32);
        let mut last = 0;
        for m in &matches {
            out.push_str(cur.get(last..m.range.start).unwrap_or_default());
            let span = m.as_str(&cur);
            let commitment = key.commit_normalised(&pii::canonical(m.kind, span));
            push_token(&mut out, m.kind.as_str(), &commitment);
            last = m.range.end;
        }
        out.push_str(cur.get(last..).unwrap_or_default());
        cur = Cow::Owned(out);
    }
    let mut out = String::with_capacity(COMMITMENT_LEN + 8);
    push_token(&mut out, VALUE_TOKEN_KIND, &key.commit(text));
    out
}

/// [`mask_text`] over the accessible name, visible text and selector path;
/// tag and role are kept.
pub fn mask_target(key: &MaskKey, target: &Target) -> Target {
    Target {
        tag: target.tag.clone(),
        role: target.role.clone(),
        name: mask_text(key, &target.name),
        path: mask_text(key, &target.path),
        text: mask_text(key, &target.text),
    }
}

// ---------------------------------------------------------------- fields

/// Masks observed form fields.
///
/// - A field of kind [`FieldKind::Password`], or whose name looks like a
///   secret ([`is_secret_name`]), is dropped: not even a commitment.
///   This wins over `clear`.
/// - A field for which `clear(name)` is true is kept verbatim
///   ([`FieldValue::Clear`]): the admin opted it in, so no PII detection.
/// - Every other field becomes [`FieldValue::Masked`]`(key.commit(value))`.
///
/// Keys are the field names passed through [`mask_text`] (a dynamic name
/// can carry an email). Names repeat (radio groups, checkbox lists): the
/// first keeps its name, later ones get `name#2`, `name#3`, … (skipping any
/// key already present), so no value is lost.
pub fn mask_fields(
    key: &MaskKey,
    fields: &[ObservedField],
    clear: impl Fn(&str) -> bool,
) -> BTreeMap<String, FieldValue> {
    let mut out = BTreeMap::new();
    for f in fields {
        if f.kind == FieldKind::Password || is_secret_name(&f.name) {
            continue;
        }
        let value = if clear(&f.name) {
            FieldValue::Clear(f.value.clone())
        } else {
            FieldValue::Masked(key.commit(&f.value))
        };
        let base = mask_text(key, &f.name);
        let mut name = base.clone();
        let mut n = 1u32;
        while out.contains_key(&name) {
            n += 1;
            name = format!("{base}#{n}");
        }
        out.insert(name, value);
    }
    out
}

/// Defence in depth against mislabelled password inputs: whether a field
/// name looks like a password, secret, one-time code, PIN or card security
/// code. Case-insensitive.
///
/// True when the name, lower-cased with non-alphanumerics removed, contains
/// `password`, `passwd`, `pwd`, `passcode`, `passphrase`, `secret`, `cvv`,
/// `cvc` or `securitycode`; or when one of its words (split at
/// non-alphanumerics, camelCase humps and letter/digit changes) is `pin`,
/// `pins`, `pincode`, `pinnumber`, `otp`, `otpcode`, `totp` or `hotp`.
/// (`pin` and `otp` are matched as words so `shipping` and `footprint`
/// pass.)
pub fn is_secret_name(name: &str) -> bool {
    const SUBSTRINGS: [&str; 9] = [
        "password",
        "passwd",
        "pwd",
        "passcode",
        "passphrase",
        "secret",
        "cvv",
        "cvc",
        "securitycode",
    ];
    const WORDS: [&str; 8] = [
        "pin",
        "pins",
        "pincode",
        "pinnumber",
        "otp",
        "otpcode",
        "totp",
        "hotp",
    ];
    let squashed: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    SUBSTRINGS.iter().any(|s| squashed.contains(s))
        || words(name).any(|w| WORDS.iter().any(|x| w.eq_ignore_ascii_case(x.as_bytes())))
}

/// Words of an identifier: `userPIN_code2` → `user`, `PIN`, `code`, `2`.
/// Bytes, not `str`: non-ASCII characters only separate words.
fn words(name: &str) -> impl Iterator<Item = &[u8]> {
    name.as_bytes()
        .split(|c| !c.is_ascii_alphanumeric())
        .filter(|chunk| !chunk.is_empty())
        .flat_map(|chunk| {
            let mut rest = chunk;
            std::iter::from_fn(move || {
                if rest.is_empty() {
                    return None;
                }
                let cut = (1..rest.len())
                    .find(|&i| {
                        let (p, c) = (rest[i - 1], rest[i]);
                        let next_lower = rest.get(i + 1).is_some_and(u8::is_ascii_lowercase);
                        (p.is_ascii_lowercase() && c.is_ascii_uppercase())
                            || (p.is_ascii_uppercase() && c.is_ascii_uppercase() && next_lower)
                            || (p.is_ascii_digit() != c.is_ascii_digit())
                    })
                    .unwrap_or(rest.len());
                let (w, r) = rest.split_at(cut);
                rest = r;
                Some(w)
            })
        })
}

// ---------------------------------------------------------------- URLs

/// Masks a URL for signing.
///
/// - Userinfo (`user:pass@`) is removed; scheme, host and port stay.
/// - The path goes through [`mask_text`] (emails in paths, `%40` included).
/// - The query is dropped unless `keep_query`; when kept, each parameter's
///   name goes through [`mask_text`] and each non-empty value becomes
///   `[value:<commitment>]`, committing to the form-decoded value (`+` as
///   space, `%XX` as bytes; what `URLSearchParams.get` returns).
/// - The fragment is dropped unless `keep_fragment`; when kept, a part after
///   `?` is treated as a query, a fragment of `k=v` pairs (containing `=`,
///   not starting with `/` or `!`) likewise, and the rest goes through
///   [`mask_text`].
///
/// Expects a URL as the browser normalised it; it is split on the first
/// `#`, then the first `?`, not parsed.
pub fn mask_url(key: &MaskKey, url: &str, keep_query: bool, keep_fragment: bool) -> String {
    let (before_fragment, fragment) = match url.split_once('#') {
        Some((a, f)) => (a, Some(f)),
        None => (url, None),
    };
    let (base, query) = match before_fragment.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (before_fragment, None),
    };
    let mut out = String::with_capacity(url.len() + 16);
    mask_url_base(key, base, &mut out);
    if let (true, Some(q)) = (keep_query, query) {
        out.push('?');
        mask_query(key, q, &mut out);
    }
    if let (true, Some(f)) = (keep_fragment, fragment) {
        out.push('#');
        if let Some((route, q)) = f.split_once('?') {
            out.push_str(&mask_text(key, route));
            out.push('?');
            mask_query(key, q, &mut out);
        } else if f.contains('=') && !f.starts_with(['/', '!']) {
            mask_query(key, f, &mut out);
        } else {
            out.push_str(&mask_text(key, f));
        }
    }
    out
}

fn mask_url_base(key: &MaskKey, base: &str, out: &mut String) {
    let hierarchical = base.split_once("://").filter(|(scheme, _)| {
        let mut cs = scheme.chars();
        cs.next().is_some_and(|c| c.is_ascii_alphabetic())
            && cs.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    let Some((scheme, rest)) = hierarchical else {
        out.push_str(&mask_text(key, base));
        return;
    };
    let (authority, path) = match rest.find('/') {
        Some(p) => rest.split_at(p),
        None => (rest, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    out.push_str(scheme);
    out.push_str("://");
    out.push_str(host);
    out.push_str(&mask_text(key, path));
}

fn mask_query(key: &MaskKey, query: &str, out: &mut String) {
    for (k, param) in query.split('&').enumerate() {
        if k > 0 {
            out.push('&');
        }
        match param.split_once('=') {
            Some((name, value)) => {
                out.push_str(&mask_text(key, name));
                out.push('=');
                if !value.is_empty() {
                    push_token(out, VALUE_TOKEN_KIND, &key.commit(&form_decode(value)));
                }
            }
            None => out.push_str(&mask_text(key, param)),
        }
    }
}

/// `application/x-www-form-urlencoded` decoding; malformed escapes are kept
/// as they are, invalid UTF-8 becomes U+FFFD.
fn form_decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex = |j: usize| b.get(j).and_then(|&h| char::from(h).to_digit(16));
        match c {
            b'+' => out.push(b' '),
            b'%' => {
                if let (Some(h), Some(l)) = (hex(i + 1), hex(i + 2)) {
                    // Two hex digits: at most 0xff.
                    out.push(u8::try_from(h * 16 + l).unwrap_or(b'%'));
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            _ => out.push(c),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests;
