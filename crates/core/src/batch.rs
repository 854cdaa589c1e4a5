//! The batch wire format the extension ships and the collector verifies, and
//! signature verification over a batch's records.
//!
//! ```text
//! off  len  field
//!   0    4  magic "STBA"
//!   4    1  format version (1)
//!   5    3  reserved, zeros
//!   8    4  record count n (u32, 1..=MAX_BATCH_RECORDS)
//!  12    …  n × { u32 length, record bytes (see `record`) }
//! end-32 32  SHA-256 of every byte before it
//! ```
//!
//! The checksum catches truncation and transport corruption of the framing;
//! it is not a signature (every record carries its own). Framing errors
//! refuse the whole batch, because nothing after a broken length can be
//! trusted; a record that is framed correctly but malformed or badly signed
//! is refused on its own, and the good records beside it are kept.

use sha2::{Digest, Sha256};

use crate::keys::{DeviceKey, KeyDirectory, KeyStatus};
use crate::record::{MAX_RECORD_LEN, RecordError, SignedEvent};

pub const MAGIC: [u8; 4] = *b"STBA";
pub const VERSION: u8 = 1;
pub const MAX_BATCH_RECORDS: usize = 10_000;
/// Upper bound of an encoded batch: the collector caps request bodies below
/// this anyway.
pub const MAX_BATCH_LEN: usize = 16 * 1024 * 1024;
const PREFIX_LEN: usize = 12;
const CHECKSUM_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch is {0} bytes, shorter than the 44 byte minimum")]
    TooShort(usize),
    #[error("batch is {0} bytes, above the {max} byte cap", max = MAX_BATCH_LEN)]
    TooLong(usize),
    #[error("bad magic {0:02x?}, expected \"STBA\"")]
    BadMagic([u8; 4]),
    #[error("unsupported batch version {0}")]
    UnsupportedVersion(u8),
    #[error("reserved bytes must be zero")]
    Reserved,
    #[error("batch declares {0} records; allowed 1..={max}", max = MAX_BATCH_RECORDS)]
    BadCount(usize),
    #[error("batch checksum does not match: the body was truncated or corrupted")]
    Checksum,
    #[error("record {index} is framed past the end of the batch (truncated)")]
    Truncated { index: usize },
    #[error("record {index} declares {len} bytes, above the {max} byte record cap", max = MAX_RECORD_LEN)]
    RecordTooLong { index: usize, len: usize },
    #[error("{0} trailing bytes after the last record")]
    Trailing(usize),
}

/// Encodes records into a batch.
pub fn encode<'a>(records: impl IntoIterator<Item = &'a SignedEvent>) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&[0, 0, 0, 0]);
    let mut n: u32 = 0;
    for r in records {
        let b = r.as_bytes();
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        out.extend_from_slice(b);
        n += 1;
    }
    out[8..12].copy_from_slice(&n.to_be_bytes());
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// One framed record: parsed, or refused with the reason. `raw` keeps the
/// bytes either way so a refusal can still be attributed.
#[derive(Debug, Clone)]
pub struct Framed<'a> {
    pub raw: &'a [u8],
    pub record: Result<SignedEvent, RecordError>,
}

/// Decodes a batch's framing and each record's structure. Signatures are not
/// checked here (see [`verify_signatures`]).
pub fn decode(bytes: &[u8]) -> Result<Vec<Framed<'_>>, BatchError> {
    let len = bytes.len();
    if len < PREFIX_LEN + CHECKSUM_LEN {
        return Err(BatchError::TooShort(len));
    }
    if len > MAX_BATCH_LEN {
        return Err(BatchError::TooLong(len));
    }
    let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
    if magic != MAGIC {
        return Err(BatchError::BadMagic(magic));
    }
    if bytes[4] != VERSION {
        return Err(BatchError::UnsupportedVersion(bytes[4]));
    }
    if bytes[5..8] != [0, 0, 0] {
        return Err(BatchError::Reserved);
    }
    let count = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    if count == 0 || count > MAX_BATCH_RECORDS {
        return Err(BatchError::BadCount(count));
    }
    let (body, sum) = bytes.split_at(len - CHECKSUM_LEN);
    if Sha256::digest(body).as_slice() != sum {
        return Err(BatchError::Checksum);
    }
    let mut out = Vec::with_capacity(count);
    let mut at = PREFIX_LEN;
    for index in 0..count {
        let Some(lb) = body.get(at..at + 4) else {
            return Err(BatchError::Truncated { index });
        };
        let rlen = u32::from_be_bytes([lb[0], lb[1], lb[2], lb[3]]) as usize;
        if rlen > MAX_RECORD_LEN {
            return Err(BatchError::RecordTooLong { index, len: rlen });
        }
        at += 4;
        let Some(raw) = body.get(at..at + rlen) else {
            return Err(BatchError::Truncated { index });
        };
        at += rlen;
        out.push(Framed {
            raw,
            record: SignedEvent::from_bytes(raw.to_vec()),
        });
    }
    if at != body.len() {
        return Err(BatchError::Trailing(body.len() - at));
    }
    Ok(out)
}

/// The verdict on one record's signature and key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigStatus {
    Valid,
    /// The signature does not verify under the key the record names.
    BadSignature,
    /// The record names a key that is not enrolled (whatever its signature).
    UnknownKey,
    /// The key was revoked before the record's time.
    RevokedKey,
}

/// Verifies every record's signature and checks its key against `keys`.
///
/// With the `batch` feature, records with enrolled keys are checked with
/// ed25519 batch verification (records of one key: `one_key_batch`); only
/// when a batch fails are its records checked one by one, to say exactly
/// which are bad.
pub fn verify_signatures(records: &[SignedEvent], keys: &impl KeyDirectory) -> Vec<SigStatus> {
    let mut status = vec![SigStatus::Valid; records.len()];
    let mut candidates = Vec::with_capacity(records.len());
    let mut cache: Option<(DeviceKey, KeyStatus)> = None;
    for (i, r) in records.iter().enumerate() {
        let k = r.device_key();
        // Batches come from one device, so one directory lookup is the norm.
        let ks = match cache {
            Some((ck, s)) if ck == k => s,
            _ => {
                let s = keys.status(&k);
                cache = Some((k, s));
                s
            }
        };
        match ks {
            KeyStatus::Enrolled => candidates.push(i),
            KeyStatus::Revoked { revoked_at_ms } if r.time_ms() < revoked_at_ms => {
                candidates.push(i)
            }
            KeyStatus::Revoked { .. } => status[i] = SigStatus::RevokedKey,
            KeyStatus::Unknown => status[i] = SigStatus::UnknownKey,
        }
    }
    check(records, &candidates, &mut status);
    status
}

#[cfg(feature = "batch")]
fn check(records: &[SignedEvent], candidates: &[usize], status: &mut [SigStatus]) {
    use ed25519_dalek::{Signature, VerifyingKey};
    // Large chunks: batch verification gets cheaper per signature as the
    // batch grows, and a failing chunk is rare (then checked one by one).
    const CHUNK: usize = 1024;
    for chunk in candidates.chunks(CHUNK) {
        let mut msgs: Vec<&[u8]> = Vec::with_capacity(chunk.len());
        let mut sigs: Vec<Signature> = Vec::with_capacity(chunk.len());
        let mut vks: Vec<VerifyingKey> = Vec::with_capacity(chunk.len());
        let mut ok = true;
        let mut last: Option<(DeviceKey, VerifyingKey)> = None;
        let mut one_key = true;
        for &i in chunk {
            let r = &records[i];
            let dk = r.device_key();
            let vk = match last {
                Some((k, vk)) if k == dk => Some(vk),
                _ => {
                    // A second key in the chunk: no merged-key path.
                    one_key &= last.is_none();
                    // Weak (small-order) keys are refused outright: batch and
                    // single verification must agree on every record. Checked
                    // once per key, not per record (it costs a field
                    // inversion).
                    VerifyingKey::from_bytes(&dk.0)
                        .ok()
                        .filter(|vk| !vk.is_weak())
                }
            };
            let Some(vk) = vk else {
                ok = false;
                break;
            };
            last = Some((dk, vk));
            msgs.push(r.message());
            sigs.push(r.signature());
            vks.push(vk);
        }
        let verified = ok
            && match (&last, one_key) {
                // A device's batch: one key, its terms merged (see
                // `one_key_batch`); a key it does not take is checked one
                // signature at a time below.
                (Some((_, vk)), true) => {
                    crate::one_key_batch::verify_one_key(vk, &msgs, &sigs) == Some(true)
                }
                _ => ed25519_dalek::verify_batch(&msgs, &sigs, &vks).is_ok(),
            };
        if verified {
            continue;
        }
        for &i in chunk {
            if !records[i].signature_valid() {
                status[i] = SigStatus::BadSignature;
            }
        }
    }
}

#[cfg(not(feature = "batch"))]
fn check(records: &[SignedEvent], candidates: &[usize], status: &mut [SigStatus]) {
    for &i in candidates {
        if !records[i].signature_valid() {
            status[i] = SigStatus::BadSignature;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventBody, EventKind};
    use crate::record::{ChainTip, DeviceSigner};
    use std::collections::BTreeSet;

    fn events(n: usize, seed: u8) -> (DeviceSigner, Vec<SignedEvent>) {
        let mut s = DeviceSigner::new(&[seed; 32], ChainTip::GENESIS);
        let v = (0..n)
            .map(|i| {
                s.sign(
                    i as i64,
                    &EventBody::lifecycle(EventKind::Click, "u", "crm"),
                )
            })
            .collect();
        (s, v)
    }

    #[test]
    fn round_trip() {
        let (_, evs) = events(5, 3);
        let b = encode(&evs);
        let d = decode(&b).unwrap();
        assert_eq!(d.len(), 5);
        for (f, e) in d.iter().zip(&evs) {
            assert_eq!(f.record.as_ref().unwrap(), e);
        }
    }

    #[test]
    fn framing_errors() {
        let (_, evs) = events(3, 3);
        let b = encode(&evs);
        assert_eq!(decode(&b[..b.len() - 1]).unwrap_err(), BatchError::Checksum);
        assert_eq!(decode(&b[..20]).unwrap_err(), BatchError::TooShort(20));
        let mut m = b.clone();
        m[0] = b'x';
        assert!(matches!(decode(&m), Err(BatchError::BadMagic(_))));
        let mut c = b.clone();
        c[40] ^= 1;
        assert_eq!(decode(&c).unwrap_err(), BatchError::Checksum);
        assert!(matches!(
            decode(&encode(std::iter::empty())),
            Err(BatchError::BadCount(0))
        ));
    }

    #[test]
    fn a_forged_record_is_singled_out() {
        let (s, mut evs) = events(40, 5);
        let mut raw = evs[17].as_bytes().to_vec();
        let n = raw.len();
        raw[n - 70] ^= 0x20; // inside the body
        evs[17] = SignedEvent::from_bytes(raw).unwrap();
        let (stranger, _) = events(1, 6);
        let keys: BTreeSet<_> = [s.public_key()].into();
        let st = verify_signatures(&evs, &keys);
        for (i, s) in st.iter().enumerate() {
            let want = if i == 17 {
                SigStatus::BadSignature
            } else {
                SigStatus::Valid
            };
            assert_eq!(*s, want, "record {i}");
        }
        let (_, theirs) = events(2, 6);
        let st = verify_signatures(&theirs, &keys);
        assert_eq!(st, vec![SigStatus::UnknownKey; 2]);
        let _ = stranger;
    }

    /// A record naming a small-order key is refused even if the directory
    /// lists that key, whether the key comes first or after another
    /// device's records; the honest records around it stay valid.
    #[test]
    fn a_weak_key_is_refused_wherever_it_appears() {
        let (s, good) = events(3, 5);
        // The identity point (y = 1): small order, so a cofactored check
        // would pass a "signature" for any message.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = DeviceKey(identity);
        // Under that key, R = B (encoded 0x58 0x66…) and s = 1 satisfy the
        // batch equation [s]B = R + [k]A for every message: only the weak-key
        // check stands between it and `Valid`.
        let forged = |e: &SignedEvent| {
            let mut raw = e.as_bytes().to_vec();
            raw[6..38].copy_from_slice(&weak.0);
            let n = raw.len();
            let sig = &mut raw[n - 64..];
            sig.fill(0);
            sig[0] = 0x58;
            sig[1..32].fill(0x66);
            sig[32] = 1;
            SignedEvent::from_bytes(raw).unwrap()
        };
        let keys: BTreeSet<_> = [s.public_key(), weak].into();
        let mixed = vec![good[0].clone(), forged(&good[1]), good[2].clone()];
        let st = verify_signatures(&mixed, &keys);
        assert_eq!(
            st,
            vec![SigStatus::Valid, SigStatus::BadSignature, SigStatus::Valid]
        );
        let all_weak: Vec<_> = good.iter().map(forged).collect();
        assert_eq!(
            verify_signatures(&all_weak, &keys),
            vec![SigStatus::BadSignature; 3]
        );
    }
}
