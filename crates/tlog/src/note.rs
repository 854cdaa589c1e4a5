//! C2SP signed notes (<https://c2sp.org/signed-note>) with Ed25519 keys
//! (signature type `0x01`), and the verifier-key string operators publish.
//!
//! A note is `text || "\n" || signature lines`, where the text ends in a
//! newline and each signature line is
//! `"— " || key name || " " || base64(key ID (4 bytes, big-endian) || signature) || "\n"`.
//! The signature covers the text including its final newline.

use core::fmt;
use core::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// The signed-note signature type byte of Ed25519.
pub const ED25519_TYPE: u8 = 0x01;

/// Signature lines accepted in one note. The spec requires at least 16.
pub const MAX_SIGNATURES: usize = 100;

const SIG_PREFIX: &str = "\u{2014} ";

/// Why a note, key or checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// A byte below U+0020 other than newline.
    #[error("note contains an ASCII control character other than newline")]
    ControlCharacter,
    /// The note, or the text to sign, does not end in a newline.
    #[error("note text does not end in a newline")]
    MissingFinalNewline,
    /// No blank line followed by signature lines.
    #[error("note has no signature block")]
    NoSignatures,
    /// A signature line is not `— <name> <base64>`.
    #[error("signature line {line}: {reason}")]
    MalformedSignature {
        /// 1-based line number within the signature block.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// More signature lines than [`MAX_SIGNATURES`].
    #[error("note has more than {limit} signatures")]
    TooManySignatures {
        /// The limit.
        limit: usize,
    },
    /// No signature line matches the known key's name and key ID.
    #[error("note is not signed by the known key")]
    UnknownKeysOnly,
    /// A signature line claims the known key but does not verify.
    #[error("the known key's signature does not verify")]
    BadSignature,
    /// A key name that is empty or contains a space, `+` or control character.
    #[error("invalid key name")]
    InvalidKeyName,
    /// A verifier-key string that is not `<name>+<8 hex>+<base64(0x01 || key)>`.
    #[error("invalid verifier key: {0}")]
    InvalidVerifierKey(&'static str),
    /// A verifier key whose key ID does not match its name and public key.
    #[error("verifier key ID does not match its name and public key")]
    KeyIdMismatch,
    /// The note text is not a well-formed checkpoint.
    #[error("checkpoint line {line}: {reason}")]
    MalformedCheckpoint {
        /// 1-based line number in the note text.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A verified checkpoint from another log.
    #[error("checkpoint origin {found:?} is not the expected {expected:?}")]
    OriginMismatch {
        /// The origin the verifier expects.
        expected: String,
        /// The origin in the note.
        found: String,
    },
}

/// The recommended Ed25519 key ID:
/// `SHA-256(name || 0x0A || 0x01 || public key)[:4]`, big-endian.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ED25519_TYPE]);
    h.update(public_key);
    let digest: [u8; 32] = h.finalize().into();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

fn check_name(name: &str) -> Result<(), NoteError> {
    let bad = |c: char| c.is_whitespace() || c.is_control() || c == '+';
    if name.is_empty() || name.chars().any(bad) {
        return Err(NoteError::InvalidKeyName);
    }
    Ok(())
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if text.bytes().any(|b| b < 0x20 && b != b'\n') {
        return Err(NoteError::ControlCharacter);
    }
    if !text.ends_with('\n') {
        return Err(NoteError::MissingFinalNewline);
    }
    Ok(())
}

/// A trusted Ed25519 note key: name, key ID and public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl VerifierKey {
    /// The verifier key for `name` and an Ed25519 public key.
    pub fn new(name: &str, public_key: &[u8; 32]) -> Result<Self, NoteError> {
        check_name(name)?;
        let key = VerifyingKey::from_bytes(public_key)
            .map_err(|_| NoteError::InvalidVerifierKey("not an Ed25519 public key"))?;
        Ok(VerifierKey {
            name: name.to_owned(),
            key_id: key_id(name, public_key),
            key,
        })
    }

    /// Parses `<name>+<key ID as 8 lowercase hex digits>+<base64(0x01 || public key)>`,
    /// refusing a key ID that does not match the name and key.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::InvalidVerifierKey("expected <name>+<id>+<key>"));
        };
        if id.len() != 8 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(NoteError::InvalidVerifierKey(
                "key ID is not 8 lowercase hex digits",
            ));
        }
        let id = u32::from_str_radix(id, 16)
            .map_err(|_| NoteError::InvalidVerifierKey("key ID is not 8 lowercase hex digits"))?;
        let key = STANDARD
            .decode(key)
            .map_err(|_| NoteError::InvalidVerifierKey("key is not canonical base64"))?;
        let Some((&ED25519_TYPE, public_key)) = key.split_first() else {
            return Err(NoteError::InvalidVerifierKey("not an Ed25519 (0x01) key"));
        };
        let public_key: &[u8; 32] = public_key
            .try_into()
            .map_err(|_| NoteError::InvalidVerifierKey("Ed25519 public key is not 32 bytes"))?;
        let parsed = VerifierKey::new(name, public_key)?;
        if parsed.key_id != id {
            return Err(NoteError::KeyIdMismatch);
        }
        Ok(parsed)
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key ID as a big-endian integer.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Opens a signed note: checks its layout strictly, ignores signatures
    /// by other keys, verifies this key's signature(s) and returns the
    /// verified text (ending in its newline). Fails unless at least one
    /// signature by this key is present, and if any of them is bad.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        check_text(note)?;
        let split = note.rfind("\n\n").ok_or(NoteError::NoSignatures)?;
        let (text, signatures) = (&note[..=split], &note[split + 2..]);
        if signatures.is_empty() {
            return Err(NoteError::NoSignatures);
        }
        let mut verified = 0usize;
        for (i, line) in signatures.split_terminator('\n').enumerate() {
            if i == MAX_SIGNATURES {
                return Err(NoteError::TooManySignatures {
                    limit: MAX_SIGNATURES,
                });
            }
            let bad = |reason| NoteError::MalformedSignature {
                line: i + 1,
                reason,
            };
            let rest = line
                .strip_prefix(SIG_PREFIX)
                .ok_or(bad("does not start with an em dash and a space"))?;
            let (name, sig) = rest
                .split_once(' ')
                .ok_or(bad("no space between key name and signature"))?;
            check_name(name).map_err(|_| bad("invalid key name"))?;
            let sig = STANDARD
                .decode(sig)
                .map_err(|_| bad("signature is not canonical base64"))?;
            let Some((id, sig)) = sig.split_first_chunk::<4>() else {
                return Err(bad("signature shorter than a key ID"));
            };
            if sig.is_empty() {
                return Err(bad("signature shorter than a key ID"));
            }
            if name != self.name || u32::from_be_bytes(*id) != self.key_id {
                // Someone else's key (a witness, a rotated key): ignored.
                continue;
            }
            let sig = Signature::from_slice(sig).map_err(|_| NoteError::BadSignature)?;
            self.key
                .verify_strict(text.as_bytes(), &sig)
                .map_err(|_| NoteError::BadSignature)?;
            verified += 1;
        }
        if verified == 0 {
            return Err(NoteError::UnknownKeysOnly);
        }
        Ok(text)
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut key = [0u8; 33];
        key[0] = ED25519_TYPE;
        key[1..].copy_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            STANDARD.encode(key)
        )
    }
}

impl FromStr for VerifierKey {
    type Err = NoteError;

    fn from_str(s: &str) -> Result<Self, NoteError> {
        VerifierKey::parse(s)
    }
}

/// An Ed25519 note signing key with its name.
pub struct NoteSigner {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl NoteSigner {
    /// A signer named `name` with the Ed25519 key derived from `seed`
    /// (RFC 8032 private key).
    pub fn new(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        check_name(name)?;
        let key = SigningKey::from_bytes(seed);
        Ok(NoteSigner {
            name: name.to_owned(),
            key_id: key_id(name, key.verifying_key().as_bytes()),
            key,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matching verifier key, for publishing.
    pub fn verifier_key(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// Signs `text` (which must end in a newline and contain no control
    /// characters but newlines) and returns the complete note.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        let sig = self.key.sign(text.as_bytes()).to_bytes();
        let mut blob = [0u8; 68];
        blob[..4].copy_from_slice(&self.key_id.to_be_bytes());
        blob[4..].copy_from_slice(&sig);
        Ok(format!(
            "{text}\n{SIG_PREFIX}{} {}\n",
            self.name,
            STANDARD.encode(blob)
        ))
    }
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}
