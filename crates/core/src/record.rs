//! The signed event record: the exact bytes a device signs, ships, and the
//! collector stores verbatim. Layout (all integers big-endian), specified in
//! `docs/formats.md`:
//!
//! ```text
//! off  len  field
//!   0    4  magic "STEV"
//!   4    1  format version (1)
//!   5    1  reserved, 0
//!   6   32  device public key (ed25519)
//!  38    8  seq (u64, first event of a device is 1)
//!  46   32  prev_hash: SHA-256 of the device's previous record, zeros for seq 1
//!  78    8  device wall-clock time, ms since the Unix epoch (i64)
//!  86    4  body length n (u32, at most MAX_BODY_LEN)
//!  90    n  body: UTF-8 JSON of an EventBody
//! 90+n  64  ed25519 signature over bytes [0, 90+n)
//! ```
//!
//! The signed message is the record without its signature. It starts with
//! the magic, which no other sessiontrail-signed message starts with: that is
//! the domain separation. Nothing is re-serialised before verification; the
//! header is read at fixed offsets and the body is only parsed on demand.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::event::{EventBody, EventKind};
use crate::keys::DeviceKey;

pub const MAGIC: [u8; 4] = *b"STEV";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 90;
pub const SIGNATURE_LEN: usize = 64;
/// Bodies above this are refused on both sides: an event is a small thing,
/// and a cap keeps a hostile record from costing memory.
pub const MAX_BODY_LEN: usize = 64 * 1024;
pub const MAX_RECORD_LEN: usize = HEADER_LEN + MAX_BODY_LEN + SIGNATURE_LEN;

/// SHA-256 of a whole record: what the next record's `prev_hash` holds.
pub type Hash = [u8; 32];
pub const ZERO_HASH: Hash = [0; 32];

/// Why bytes are not a well-formed record. Says where, never just "invalid".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record is {0} bytes, shorter than the {min} byte minimum", min = HEADER_LEN + SIGNATURE_LEN)]
    TooShort(usize),
    #[error("record is {0} bytes, longer than the {max} byte maximum", max = MAX_RECORD_LEN)]
    TooLong(usize),
    #[error("bad magic {0:02x?}, expected \"STEV\"")]
    BadMagic([u8; 4]),
    #[error("unsupported record version {0}")]
    UnsupportedVersion(u8),
    #[error("reserved byte is {0}, must be 0")]
    Reserved(u8),
    #[error("body length field says {declared} bytes but the record holds {actual}")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("seq 0 is not allowed: sequences start at 1")]
    ZeroSeq,
    #[error("the first event (seq 1) must have an all-zero prev_hash")]
    GenesisPrev,
    #[error("device key is not a valid ed25519 point")]
    BadKey,
    #[error("body is not a valid event: {0}")]
    Body(String),
}

/// A signed record, held as its verbatim bytes. Construction checks the
/// structure (not the signature); accessors read fixed offsets.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SignedEvent {
    bytes: Vec<u8>,
}

impl std::fmt::Debug for SignedEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedEvent")
            .field("device", &self.device_key())
            .field("seq", &self.seq())
            .field("len", &self.bytes.len())
            .finish()
    }
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

impl SignedEvent {
    /// Checks the structure of `bytes` and keeps them verbatim.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<SignedEvent, RecordError> {
        let len = bytes.len();
        if len < HEADER_LEN + SIGNATURE_LEN {
            return Err(RecordError::TooShort(len));
        }
        if len > MAX_RECORD_LEN {
            return Err(RecordError::TooLong(len));
        }
        let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
        if magic != MAGIC {
            return Err(RecordError::BadMagic(magic));
        }
        if bytes[4] != VERSION {
            return Err(RecordError::UnsupportedVersion(bytes[4]));
        }
        if bytes[5] != 0 {
            return Err(RecordError::Reserved(bytes[5]));
        }
        let declared = u32::from_be_bytes([bytes[86], bytes[87], bytes[88], bytes[89]]) as usize;
        let actual = len - HEADER_LEN - SIGNATURE_LEN;
        if declared != actual {
            return Err(RecordError::LengthMismatch { declared, actual });
        }
        let ev = SignedEvent { bytes };
        match ev.seq() {
            0 => return Err(RecordError::ZeroSeq),
            1 if ev.prev_hash() != ZERO_HASH => return Err(RecordError::GenesisPrev),
            _ => {}
        }
        Ok(ev)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    pub fn device_key(&self) -> DeviceKey {
        let mut k = [0u8; 32];
        k.copy_from_slice(&self.bytes[6..38]);
        DeviceKey(k)
    }

    pub fn seq(&self) -> u64 {
        be_u64(&self.bytes[38..46])
    }

    pub fn prev_hash(&self) -> Hash {
        let mut h = [0u8; 32];
        h.copy_from_slice(&self.bytes[46..78]);
        h
    }

    pub fn time_ms(&self) -> i64 {
        be_u64(&self.bytes[78..86]) as i64
    }

    /// The signed message: everything but the signature.
    pub fn message(&self) -> &[u8] {
        &self.bytes[..self.bytes.len() - SIGNATURE_LEN]
    }

    pub fn body_bytes(&self) -> &[u8] {
        &self.bytes[HEADER_LEN..self.bytes.len() - SIGNATURE_LEN]
    }

    pub fn signature(&self) -> Signature {
        let mut s = [0u8; SIGNATURE_LEN];
        s.copy_from_slice(&self.bytes[self.bytes.len() - SIGNATURE_LEN..]);
        Signature::from_bytes(&s)
    }

    /// SHA-256 of the whole record, signature included.
    pub fn hash(&self) -> Hash {
        Sha256::digest(&self.bytes).into()
    }

    /// Parses the body strictly (unknown fields are refused).
    pub fn body(&self) -> Result<EventBody, RecordError> {
        serde_json::from_slice(self.body_bytes()).map_err(|e| RecordError::Body(e.to_string()))
    }

    /// Whether the signature verifies (strict: rejects weak keys and
    /// non-canonical signatures, as batch verification would).
    pub fn signature_valid(&self) -> bool {
        match VerifyingKey::from_bytes(&self.device_key().0) {
            Ok(k) => k.verify_strict(self.message(), &self.signature()).is_ok(),
            Err(_) => false,
        }
    }
}

/// Where a device's chain stands: the last record it signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ChainTip {
    /// 0 before the first event.
    pub seq: u64,
    #[serde(with = "hex_hash")]
    pub hash: Hash,
}

impl ChainTip {
    pub const GENESIS: ChainTip = ChainTip {
        seq: 0,
        hash: ZERO_HASH,
    };

    pub fn of(ev: &SignedEvent) -> ChainTip {
        ChainTip {
            seq: ev.seq(),
            hash: ev.hash(),
        }
    }
}

pub(crate) mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(h))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

/// Signs and chains a device's events. Holds the signing key and the chain
/// tip; the caller persists [`DeviceSigner::tip`] after every event so a
/// restarted agent continues the same chain.
pub struct DeviceSigner {
    key: SigningKey,
    public: DeviceKey,
    tip: ChainTip,
}

impl std::fmt::Debug for DeviceSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("DeviceSigner")
            .field("public", &self.public)
            .field("tip", &self.tip)
            .finish()
    }
}

impl DeviceSigner {
    /// `seed` is the 32-byte ed25519 secret, made by the caller from a CSPRNG.
    pub fn new(seed: &[u8; 32], tip: ChainTip) -> DeviceSigner {
        let key = SigningKey::from_bytes(seed);
        let public = DeviceKey(key.verifying_key().to_bytes());
        DeviceSigner { key, public, tip }
    }

    pub fn public_key(&self) -> DeviceKey {
        self.public
    }

    pub fn tip(&self) -> ChainTip {
        self.tip
    }

    /// Encodes, signs and chains one event, advancing the tip.
    pub fn sign(&mut self, time_ms: i64, body: &EventBody) -> SignedEvent {
        let mut bytes = Vec::with_capacity(512);
        bytes.extend_from_slice(&[0u8; HEADER_LEN]);
        // Serialising a plain struct of strings, maps and enums into a Vec
        // cannot fail.
        let fits = serde_json::to_writer(&mut bytes, body).is_ok()
            && bytes.len() - HEADER_LEN <= MAX_BODY_LEN;
        if !fits {
            // The pipeline clips every string so this does not happen; if it
            // ever does, the event is recorded as what it is, one event that
            // could not be kept, rather than silently dropped or cut.
            bytes.truncate(HEADER_LEN);
            let gap = EventBody::lifecycle(
                EventKind::Gap {
                    dropped: 1,
                    first_ms: time_ms,
                    last_ms: time_ms,
                    reason: "event body over the 64 KiB limit".into(),
                },
                &clip(&body.user, 256),
                &clip(&body.app, 256),
            );
            let _ = serde_json::to_writer(&mut bytes, &gap);
        }
        self.seal(time_ms, bytes)
    }

    fn seal(&mut self, time_ms: i64, mut bytes: Vec<u8>) -> SignedEvent {
        let body_len = bytes.len() - HEADER_LEN;
        let seq = self.tip.seq + 1;
        let prev = if seq == 1 { ZERO_HASH } else { self.tip.hash };
        bytes[0..4].copy_from_slice(&MAGIC);
        bytes[4] = VERSION;
        bytes[5] = 0;
        bytes[6..38].copy_from_slice(&self.public.0);
        bytes[38..46].copy_from_slice(&seq.to_be_bytes());
        bytes[46..78].copy_from_slice(&prev);
        bytes[78..86].copy_from_slice(&time_ms.to_be_bytes());
        bytes[86..90].copy_from_slice(&(body_len as u32).to_be_bytes());
        let sig = self.key.sign(&bytes);
        bytes.extend_from_slice(&sig.to_bytes());
        let hash: Hash = Sha256::digest(&bytes).into();
        self.tip = ChainTip { seq, hash };
        SignedEvent { bytes }
    }
}

/// Cuts `s` to at most `max` bytes on a char boundary, marking the cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Signs `message` with `seed` exactly as the record signer does. Exposed so
/// the RFC 8032 vectors can be run through the same wrapper.
pub fn sign_message(seed: &[u8; 32], message: &[u8]) -> [u8; 64] {
    SigningKey::from_bytes(seed).sign(message).to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> EventBody {
        EventBody::lifecycle(
            EventKind::AgentStarted {
                agent_version: "1.0".into(),
            },
            "alice@acme.test",
            "",
        )
    }

    #[test]
    fn sign_then_parse_round_trips() {
        let mut s = DeviceSigner::new(&[7; 32], ChainTip::GENESIS);
        let a = s.sign(1_700_000_000_000, &body());
        let b = s.sign(1_700_000_000_001, &body());
        let a2 = SignedEvent::from_bytes(a.as_bytes().to_vec()).unwrap();
        assert_eq!(a2, a);
        assert_eq!(a.seq(), 1);
        assert_eq!(b.seq(), 2);
        assert_eq!(a.prev_hash(), ZERO_HASH);
        assert_eq!(b.prev_hash(), a.hash());
        assert_eq!(b.time_ms(), 1_700_000_000_001);
        assert_eq!(a.device_key(), s.public_key());
        assert!(a.signature_valid() && b.signature_valid());
        assert_eq!(a.body().unwrap(), body());
    }

    #[test]
    fn any_flipped_byte_breaks_structure_or_signature() {
        let mut s = DeviceSigner::new(&[9; 32], ChainTip::GENESIS);
        let ev = s.sign(5, &body());
        for i in 0..ev.as_bytes().len() {
            let mut b = ev.as_bytes().to_vec();
            b[i] ^= 0x01;
            if let Ok(bad) = SignedEvent::from_bytes(b) {
                assert!(!bad.signature_valid(), "flip at {i} still verifies");
            }
        }
    }

    mod round_trip {
        use super::*;
        use crate::event::{
            Classification, Decision, FieldValue, FileMeta, Outcome, Response, Severity, Target,
        };
        use proptest::prelude::*;

        fn kind() -> impl Strategy<Value = EventKind> {
            prop_oneof![
                Just(EventKind::PageLoad),
                any::<String>().prop_map(|from| EventKind::RouteChange { from }),
                Just(EventKind::Click),
                Just(EventKind::Submit),
                Just(EventKind::Paste),
                (any::<String>(), any::<String>(), any::<Option<u64>>()).prop_map(
                    |(filename, mime, bytes)| EventKind::Download {
                        filename,
                        mime,
                        bytes
                    }
                ),
                proptest::collection::vec((any::<String>(), any::<u64>()), 0..3).prop_map(|f| {
                    EventKind::Upload {
                        files: f
                            .into_iter()
                            .map(|(name, bytes)| FileMeta {
                                name,
                                mime: "text/csv".into(),
                                bytes,
                            })
                            .collect(),
                    }
                }),
                any::<u64>().prop_map(|idle_ms| EventKind::Idle { idle_ms }),
                (any::<u64>(), any::<i64>(), any::<i64>()).prop_map(|(dropped, a, b)| {
                    EventKind::Gap {
                        dropped,
                        first_ms: a,
                        last_ms: b,
                        reason: "queue cap".into(),
                    }
                }),
                any::<Option<String>>().prop_map(|justification| {
                    EventKind::ResponseResolved {
                        response: Response::Justify,
                        outcome: Outcome::Allowed,
                        justification,
                    }
                }),
            ]
        }

        fn body() -> impl Strategy<Value = EventBody> {
            (
                kind(),
                any::<[String; 5]>(),
                any::<Option<[String; 5]>>(),
                any::<bool>(),
                proptest::collection::btree_map(
                    any::<String>(),
                    (any::<bool>(), any::<String>()).prop_map(|(c, v)| {
                        if c {
                            FieldValue::Clear(v)
                        } else {
                            FieldValue::Masked(v)
                        }
                    }),
                    0..4,
                ),
                (any::<Vec<String>>(), any::<u32>(), any::<u32>(), 0usize..6),
                (0usize..6, any::<String>(), any::<Option<String>>()),
            )
                .prop_map(|(kind, s, target, trusted, fields, c, d)| EventBody {
                    kind,
                    user: s[0].clone(),
                    app: s[1].clone(),
                    tab: s[2].clone(),
                    session: s[3].clone(),
                    url: s[4].clone(),
                    target: target.map(|[tag, role, name, path, text]| Target {
                        tag,
                        role,
                        name,
                        path,
                        text,
                    }),
                    trusted,
                    fields,
                    classification: Classification {
                        tags: c.0.clone(),
                        rules: c.0,
                        severity: Severity::ALL.get(c.3).copied(),
                        risk: c.1,
                        session_risk: c.2,
                    },
                    decision: Decision {
                        response: Response::ALL[d.0],
                        reason: d.1,
                        action_id: d.2,
                    },
                })
        }

        proptest! {
            #[test]
            fn any_body_survives_sign_encode_decode(b in body(), t in any::<i64>(), n in 1u64..5) {
                let mut s = DeviceSigner::new(&[3; 32], ChainTip::GENESIS);
                let mut last = None;
                for _ in 0..n {
                    last = Some(s.sign(t, &b));
                }
                let ev = last.unwrap();
                let back = SignedEvent::from_bytes(ev.as_bytes().to_vec()).unwrap();
                prop_assert_eq!(back.seq(), n);
                prop_assert_eq!(back.time_ms(), t);
                prop_assert!(back.signature_valid());
                prop_assert_eq!(back.body().unwrap(), b);
            }
        }
    }

    #[test]
    fn an_oversized_body_becomes_a_gap_not_a_bad_record() {
        let mut s = DeviceSigner::new(&[4; 32], ChainTip::GENESIS);
        let mut b = body();
        b.url = "x".repeat(MAX_BODY_LEN + 1);
        let ev = SignedEvent::from_bytes(s.sign(1, &b).into_bytes()).unwrap();
        assert!(ev.signature_valid());
        assert!(matches!(
            ev.body().unwrap().kind,
            EventKind::Gap { dropped: 1, .. }
        ));
        assert_eq!(clip("héllo", 4), "h…");
        assert_eq!(clip("abc", 3), "abc");
    }

    #[test]
    fn structural_errors_are_precise() {
        let mut s = DeviceSigner::new(&[1; 32], ChainTip::GENESIS);
        let ev = s.sign(5, &body());
        let b = ev.as_bytes().to_vec();
        assert_eq!(
            SignedEvent::from_bytes(b[..10].to_vec()),
            Err(RecordError::TooShort(10))
        );
        let mut m = b.clone();
        m[0] = b'X';
        assert!(matches!(
            SignedEvent::from_bytes(m),
            Err(RecordError::BadMagic(_))
        ));
        let mut v = b.clone();
        v[4] = 2;
        assert_eq!(
            SignedEvent::from_bytes(v),
            Err(RecordError::UnsupportedVersion(2))
        );
        let t = b[..b.len() - 1].to_vec();
        assert!(matches!(
            SignedEvent::from_bytes(t),
            Err(RecordError::LengthMismatch { .. })
        ));
    }
}
