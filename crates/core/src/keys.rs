//! Key identities: device keys that sign events and the directory that says
//! which of them are enrolled.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An ed25519 public key, shown and serialised as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceKey(pub [u8; 32]);

impl DeviceKey {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Result<DeviceKey, KeyParseError> {
        let mut k = [0u8; 32];
        hex::decode_to_slice(s, &mut k).map_err(|_| KeyParseError(s.chars().take(80).collect()))?;
        Ok(DeviceKey(k))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a 32-byte hex key: {0:?}")]
pub struct KeyParseError(String);

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceKey({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for DeviceKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for DeviceKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DeviceKey::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// Whether a key may sign events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Enrolled,
    /// Enrolled once, revoked since: events after `revoked_at_ms` are refused.
    Revoked {
        revoked_at_ms: i64,
    },
    Unknown,
}

/// Answers "may this key sign?". The collector implements it over its store;
/// tests and offline verifiers use the in-memory sets below.
pub trait KeyDirectory {
    fn status(&self, key: &DeviceKey) -> KeyStatus;
}

impl KeyDirectory for BTreeSet<DeviceKey> {
    fn status(&self, key: &DeviceKey) -> KeyStatus {
        if self.contains(key) {
            KeyStatus::Enrolled
        } else {
            KeyStatus::Unknown
        }
    }
}

impl KeyDirectory for BTreeMap<DeviceKey, KeyStatus> {
    fn status(&self, key: &DeviceKey) -> KeyStatus {
        self.get(key).copied().unwrap_or(KeyStatus::Unknown)
    }
}

impl<T: KeyDirectory + ?Sized> KeyDirectory for &T {
    fn status(&self, key: &DeviceKey) -> KeyStatus {
        (**self).status(key)
    }
}

/// Domain prefix of the enrollment proof (`POST /v1/enroll`).
pub const ENROLL_PROOF_DOMAIN: &[u8] = b"sessiontrail.enroll.v1\0";

/// The message a device signs at enrollment to prove it holds its key:
/// `"sessiontrail.enroll.v1\0" || enrollment token || device public key`.
/// The token binds the proof to one enrollment; the prefix keeps it from
/// ever being mistaken for an event record or a rule pack.
pub fn enrollment_proof_message(token: &str, key: &DeviceKey) -> Vec<u8> {
    let mut m = Vec::with_capacity(ENROLL_PROOF_DOMAIN.len() + token.len() + 32);
    m.extend_from_slice(ENROLL_PROOF_DOMAIN);
    m.extend_from_slice(token.as_bytes());
    m.extend_from_slice(&key.0);
    m
}

/// Domain prefix of the re-enrollment proof (`POST /v1/reenroll`).
pub const REENROLL_PROOF_DOMAIN: &[u8] = b"sessiontrail.reenroll.v1\0";

/// Length of a re-enrollment challenge as the collector issues it (opaque
/// to the device; it crosses as 80 hex digits).
pub const REENROLL_CHALLENGE_LEN: usize = 40;

/// The message a device signs to get a new credential for a key that is
/// already enrolled:
/// `"sessiontrail.reenroll.v1\0" || enrollment token || device public key || challenge`.
///
/// Unlike the enrollment proof it covers a collector-issued, single-use
/// challenge, so a proof seen once (a log, a proxy) cannot be replayed to
/// mint another credential. Key and challenge have fixed lengths, so the
/// concatenation is unambiguous.
pub fn reenrollment_proof_message(
    token: &str,
    key: &DeviceKey,
    challenge: &[u8; REENROLL_CHALLENGE_LEN],
) -> Vec<u8> {
    let mut m =
        Vec::with_capacity(REENROLL_PROOF_DOMAIN.len() + token.len() + 32 + REENROLL_CHALLENGE_LEN);
    m.extend_from_slice(REENROLL_PROOF_DOMAIN);
    m.extend_from_slice(token.as_bytes());
    m.extend_from_slice(&key.0);
    m.extend_from_slice(challenge);
    m
}
