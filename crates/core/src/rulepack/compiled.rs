//! The compiled rule pack: a signed, versioned blob that the collector serves
//! and the extension verifies against the admin keys pinned by managed
//! policy. Layout (integers big-endian), specified in `docs/rulepack.md`:
//!
//! ```text
//! off   len  field
//!   0     4  magic "STRP"
//!   4     1  format version (1)
//!   5     3  reserved, 0
//!   8     8  pack version (u64), equal to the payload's pack.version
//!  16     4  payload length n (u32)
//!  20    32  SHA-256 of the payload
//!  52     n  payload: UTF-8 JSON of a Pack
//! 52+n   32  admin public key (ed25519)
//! 84+n   64  ed25519 signature over bytes [0, 84+n)
//! ```
//!
//! The signed message starts with the magic "STRP", which no other
//! sessiontrail-signed message starts with (event records start with
//! "STEV"): a signature over one can never be replayed as the other.

use std::fmt;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use super::Pack;
use super::matcher::Engine;

pub const MAGIC: [u8; 4] = *b"STRP";
pub const FORMAT_VERSION: u8 = 1;
pub const HEADER_LEN: usize = 52;
pub const KEY_LEN: usize = 32;
pub const SIGNATURE_LEN: usize = 64;
/// Smallest well-formed blob (empty payload).
pub const MIN_LEN: usize = HEADER_LEN + KEY_LEN + SIGNATURE_LEN;
/// Largest blob accepted (and produced).
pub const MAX_LEN: usize = 4 * 1024 * 1024;

/// An admin's ed25519 public key, pinned by managed policy. Distinct from
/// [`crate::DeviceKey`] so the two can never be confused.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AdminKey(pub [u8; 32]);

impl AdminKey {
    /// The public key of a 32-byte ed25519 seed.
    pub fn from_seed(seed: &[u8; 32]) -> AdminKey {
        AdminKey(SigningKey::from_bytes(seed).verifying_key().to_bytes())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Result<AdminKey, crate::keys::KeyParseError> {
        crate::keys::DeviceKey::from_hex(s).map(|k| AdminKey(k.0))
    }
}

impl fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AdminKey({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for AdminKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for AdminKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for AdminKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        AdminKey::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// The pack currently in force on this agent (what rollback is judged
/// against).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InForce {
    pub version: u64,
    #[serde(with = "crate::record::hex_hash")]
    pub checksum: [u8; 32],
}

/// A blob that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPack {
    pub pack: Pack,
    /// SHA-256 of the payload (what `rule_pack_applied` events carry).
    pub checksum: [u8; 32],
    pub signer: AdminKey,
    /// Same version and checksum as the pack in force: nothing to apply.
    pub already_in_force: bool,
}

/// Why a blob was refused. Precise, so an admin can tell a truncated
/// download from a forgery from a rollback.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("compiled pack is {0} bytes, above the {MAX_LEN} byte maximum")]
    TooLarge(usize),
    #[error("compiled pack is truncated: {len} bytes, at least {needed} needed")]
    Truncated { len: usize, needed: usize },
    #[error("bad magic {0:02x?}, expected \"STRP\"")]
    BadMagic([u8; 4]),
    #[error("unsupported compiled pack format version {0}")]
    UnsupportedVersion(u8),
    #[error("reserved header bytes are not zero")]
    Reserved,
    #[error("{0} trailing bytes after the signature")]
    TrailingBytes(usize),
    #[error("payload checksum mismatch: the payload was altered or corrupted")]
    ChecksumMismatch,
    #[error("signed by {0}, which is not a pinned admin key")]
    UnpinnedKey(AdminKey),
    #[error("bad signature")]
    BadSignature,
    #[error("payload is not a valid pack: {0}")]
    BadPayload(String),
    #[error("header says pack version {header} but the payload says {payload}")]
    VersionMismatch { header: u64, payload: u64 },
    #[error("rollback refused: version {version} is older than version {in_force} in force")]
    Rollback { version: u64, in_force: u64 },
    #[error("version {version} is already in force with different content: bump the version")]
    SameVersionDifferentContent { version: u64 },
}

/// Why a pack could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("compiled pack would be {0} bytes, above the {MAX_LEN} byte maximum")]
    TooLarge(usize),
    #[error("pack does not compile: {0}")]
    Invalid(String),
}

/// Encodes and signs `pack` with the admin's 32-byte ed25519 seed.
pub fn compile(pack: &Pack, admin_seed: &[u8; 32]) -> Result<Vec<u8>, CompileError> {
    Engine::new(std::slice::from_ref(pack)).map_err(|e| CompileError::Invalid(e.to_string()))?;
    let payload = serde_json::to_vec(pack).map_err(|e| CompileError::Invalid(e.to_string()))?;
    let total = MIN_LEN + payload.len();
    if total > MAX_LEN {
        return Err(CompileError::TooLarge(total));
    }
    let key = SigningKey::from_bytes(admin_seed);
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&pack.pack.version.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&Sha256::digest(&payload));
    out.extend_from_slice(&payload);
    out.extend_from_slice(&key.verifying_key().to_bytes());
    let sig = key.sign(&out);
    out.extend_from_slice(&sig.to_bytes());
    Ok(out)
}

fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}

/// Checks a compiled pack, in this order: size, magic, format version,
/// reserved bytes, length, payload checksum, pinned signer, signature,
/// payload, header/payload version agreement, pack validity, rollback.
pub fn verify(
    bytes: &[u8],
    pinned: &[AdminKey],
    in_force: Option<InForce>,
) -> Result<VerifiedPack, VerifyError> {
    let len = bytes.len();
    if len > MAX_LEN {
        return Err(VerifyError::TooLarge(len));
    }
    if len < HEADER_LEN {
        return Err(VerifyError::Truncated {
            len,
            needed: MIN_LEN,
        });
    }
    let magic: [u8; 4] = arr(&bytes[0..4]);
    if magic != MAGIC {
        return Err(VerifyError::BadMagic(magic));
    }
    if bytes[4] != FORMAT_VERSION {
        return Err(VerifyError::UnsupportedVersion(bytes[4]));
    }
    if bytes[5..8] != [0, 0, 0] {
        return Err(VerifyError::Reserved);
    }
    let header_version = u64::from_be_bytes(arr(&bytes[8..16]));
    let n = u32::from_be_bytes(arr(&bytes[16..20])) as usize;
    let needed = MIN_LEN + n;
    if len < needed {
        return Err(VerifyError::Truncated { len, needed });
    }
    if len > needed {
        return Err(VerifyError::TrailingBytes(len - needed));
    }
    let checksum: [u8; 32] = arr(&bytes[20..52]);
    let payload = &bytes[HEADER_LEN..HEADER_LEN + n];
    if <[u8; 32]>::from(Sha256::digest(payload)) != checksum {
        return Err(VerifyError::ChecksumMismatch);
    }
    let signer = AdminKey(arr(&bytes[HEADER_LEN + n..HEADER_LEN + n + KEY_LEN]));
    if !pinned.contains(&signer) {
        return Err(VerifyError::UnpinnedKey(signer));
    }
    let signed = &bytes[..HEADER_LEN + n + KEY_LEN];
    let sig = Signature::from_bytes(&arr(&bytes[HEADER_LEN + n + KEY_LEN..]));
    let ok = VerifyingKey::from_bytes(&signer.0)
        .map(|k| k.verify_strict(signed, &sig).is_ok())
        .unwrap_or(false);
    if !ok {
        return Err(VerifyError::BadSignature);
    }
    let pack: Pack =
        serde_json::from_slice(payload).map_err(|e| VerifyError::BadPayload(e.to_string()))?;
    if pack.pack.version != header_version {
        return Err(VerifyError::VersionMismatch {
            header: header_version,
            payload: pack.pack.version,
        });
    }
    Engine::new(std::slice::from_ref(&pack)).map_err(|e| VerifyError::BadPayload(e.to_string()))?;
    let mut already_in_force = false;
    if let Some(cur) = in_force {
        if header_version < cur.version {
            return Err(VerifyError::Rollback {
                version: header_version,
                in_force: cur.version,
            });
        }
        if header_version == cur.version {
            if checksum != cur.checksum {
                return Err(VerifyError::SameVersionDifferentContent {
                    version: header_version,
                });
            }
            already_in_force = true;
        }
    }
    Ok(VerifiedPack {
        pack,
        checksum,
        signer,
        already_in_force,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: [u8; 32] = [42; 32];

    fn pack(version: u64) -> Pack {
        let src = format!(
            r#"
[pack]
id = "t"
version = {version}

[[app]]
id = "crm"
name = "CRM"
hosts = ["crm.acme.test"]

[[rule]]
id = "r1"
app = "crm"
title = "Export"
actions = ["click"]
severity = "high"
"#
        );
        crate::rulepack::parse("t.toml", &src).unwrap()
    }

    fn pinned() -> Vec<AdminKey> {
        vec![AdminKey::from_seed(&[1; 32]), AdminKey::from_seed(&SEED)]
    }

    #[test]
    fn round_trip_and_layout() {
        let p = pack(3);
        let b = compile(&p, &SEED).unwrap();
        let payload = serde_json::to_vec(&p).unwrap();
        assert_eq!(&b[0..4], b"STRP");
        assert_eq!(b[4], 1);
        assert_eq!(&b[5..8], &[0, 0, 0]);
        assert_eq!(&b[8..16], &3u64.to_be_bytes());
        assert_eq!(&b[16..20], &(payload.len() as u32).to_be_bytes());
        assert_eq!(&b[52..52 + payload.len()], &payload[..]);
        assert_eq!(b.len(), MIN_LEN + payload.len());
        let v = verify(&b, &pinned(), None).unwrap();
        assert_eq!(v.pack, p);
        assert_eq!(v.signer, AdminKey::from_seed(&SEED));
        assert_eq!(v.checksum, <[u8; 32]>::from(Sha256::digest(&payload)));
        assert!(!v.already_in_force);
        // Deterministic: same pack, same key, same bytes (ed25519 is
        // deterministic).
        assert_eq!(compile(&p, &SEED).unwrap(), b);
    }

    #[test]
    fn structural_errors() {
        let b = compile(&pack(3), &SEED).unwrap();
        let k = pinned();
        assert_eq!(
            verify(&b[..10], &k, None),
            Err(VerifyError::Truncated {
                len: 10,
                needed: MIN_LEN
            })
        );
        assert_eq!(
            verify(&b[..b.len() - 1], &k, None),
            Err(VerifyError::Truncated {
                len: b.len() - 1,
                needed: b.len()
            })
        );
        let mut long = b.clone();
        long.push(0);
        assert_eq!(verify(&long, &k, None), Err(VerifyError::TrailingBytes(1)));
        let mut m = b.clone();
        m[0..4].copy_from_slice(b"STEV");
        assert_eq!(verify(&m, &k, None), Err(VerifyError::BadMagic(*b"STEV")));
        let mut v = b.clone();
        v[4] = 2;
        assert_eq!(
            verify(&v, &k, None),
            Err(VerifyError::UnsupportedVersion(2))
        );
        let mut r = b.clone();
        r[6] = 1;
        assert_eq!(verify(&r, &k, None), Err(VerifyError::Reserved));
        let huge = vec![0u8; MAX_LEN + 1];
        assert_eq!(
            verify(&huge, &k, None),
            Err(VerifyError::TooLarge(MAX_LEN + 1))
        );
    }

    #[test]
    fn every_altered_byte_is_refused() {
        let b = compile(&pack(3), &SEED).unwrap();
        let k = pinned();
        for i in 0..b.len() {
            let mut x = b.clone();
            x[i] ^= 0x20;
            assert!(verify(&x, &k, None).is_err(), "flip at {i} verified");
        }
        // A payload byte: checksum. A signature byte: signature.
        let mut x = b.clone();
        x[60] ^= 1;
        assert_eq!(verify(&x, &k, None), Err(VerifyError::ChecksumMismatch));
        let mut x = b.clone();
        let last = x.len() - 1;
        x[last] ^= 1;
        assert_eq!(verify(&x, &k, None), Err(VerifyError::BadSignature));
        // Header version altered: covered by the signature.
        let mut x = b.clone();
        x[15] ^= 1;
        assert_eq!(verify(&x, &k, None), Err(VerifyError::BadSignature));
    }

    #[test]
    fn forged_and_unpinned() {
        let p = pack(3);
        // Signed by a key that is not pinned.
        let b = compile(&p, &[9; 32]).unwrap();
        assert_eq!(
            verify(&b, &pinned(), None),
            Err(VerifyError::UnpinnedKey(AdminKey::from_seed(&[9; 32])))
        );
        // Forged: payload and checksum rewritten, pinned key kept, old
        // signature kept.
        let good = compile(&p, &SEED).unwrap();
        let mut evil = p.clone();
        evil.rules[0].response = crate::event::Response::Log;
        evil.rules[0].title = "Exp0rt".into();
        let forged_unsigned = compile(&evil, &[9; 32]).unwrap();
        let n = forged_unsigned.len() - MIN_LEN;
        let mut forged = forged_unsigned[..HEADER_LEN + n].to_vec();
        forged.extend_from_slice(&good[good.len() - KEY_LEN - SIGNATURE_LEN..]);
        assert_eq!(
            verify(&forged, &pinned(), None),
            Err(VerifyError::BadSignature)
        );
        // Nothing pinned: nothing verifies.
        assert_eq!(
            verify(&good, &[], None),
            Err(VerifyError::UnpinnedKey(AdminKey::from_seed(&SEED)))
        );
    }

    #[test]
    fn rollback_rules() {
        let k = pinned();
        let v3 = compile(&pack(3), &SEED).unwrap();
        let c3 = verify(&v3, &k, None).unwrap().checksum;
        let in4 = InForce {
            version: 4,
            checksum: [0; 32],
        };
        assert_eq!(
            verify(&v3, &k, Some(in4)),
            Err(VerifyError::Rollback {
                version: 3,
                in_force: 4
            })
        );
        let in3_other = InForce {
            version: 3,
            checksum: [7; 32],
        };
        assert_eq!(
            verify(&v3, &k, Some(in3_other)),
            Err(VerifyError::SameVersionDifferentContent { version: 3 })
        );
        let in3 = InForce {
            version: 3,
            checksum: c3,
        };
        assert!(verify(&v3, &k, Some(in3)).unwrap().already_in_force);
        let in2 = InForce {
            version: 2,
            checksum: [0; 32],
        };
        assert!(!verify(&v3, &k, Some(in2)).unwrap().already_in_force);
    }

    #[test]
    fn admin_key_hex() {
        let k = AdminKey::from_seed(&SEED);
        assert_eq!(AdminKey::from_hex(&k.to_hex()).unwrap(), k);
        let j = serde_json::to_string(&k).unwrap();
        assert_eq!(serde_json::from_str::<AdminKey>(&j).unwrap(), k);
    }
}
