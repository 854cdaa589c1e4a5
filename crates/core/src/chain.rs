//! Per-device hash-chain verification that says exactly what is wrong.
//!
//! Every device numbers its events 1, 2, 3, … and puts the SHA-256 of the
//! previous record in the next. Given the records of one device in arrival
//! order (and, for the collector, what it already stored), [`check`] accepts
//! what is sound and reports each problem as one [`Finding`]:
//!
//! | finding | meaning |
//! |---|---|
//! | `Missing` | sequence numbers never received (a range) |
//! | `Reordered` | a valid record that arrived after a higher one (still accepted) |
//! | `Replayed` | a byte-identical copy of a record already held |
//! | `Altered` | a record whose signature fails (or whose structure is broken) in the place of a sequence number that is otherwise missing: the bytes were changed after signing |
//! | `Forged` | a record whose signature fails, claiming a sequence number that a valid record already holds, or that fits no gap |
//! | `Forked` | a validly signed record that differs from the one already held for its sequence number: the key signed two histories |
//! | `BrokenLink` | a valid record whose `prev_hash` is not the hash of its valid predecessor |
//! | `ForeignKey` | a validly signed record from another key in this device's stream |
//!
//! Attribution of a bad record to a sequence number never trusts its bytes
//! alone: its claimed number is used only if that number is a hole; otherwise
//! the hole between its valid neighbours in arrival order is used.

use std::collections::BTreeMap;

use crate::keys::DeviceKey;
use crate::record::{Hash, RecordError, SignedEvent};

/// What the caller already holds for this device (the collector's store).
pub trait StoredChain {
    /// `(hash, prev_hash)` of a stored record.
    fn stored(&self, seq: u64) -> Option<(Hash, Hash)>;
    /// Highest stored sequence number, 0 when none. Holes at or below it
    /// were reported when they appeared, so they are not reported again.
    fn high_water(&self) -> u64;
}

/// Nothing stored: offline verification of a complete chain.
#[derive(Debug, Clone, Copy, Default)]
pub struct Nothing;

impl StoredChain for Nothing {
    fn stored(&self, _: u64) -> Option<(Hash, Hash)> {
        None
    }
    fn high_water(&self) -> u64 {
        0
    }
}

/// One record of the stream, as decoded and signature-checked.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// The raw bytes (used to read a claimed seq from a malformed record).
    pub raw: &'a [u8],
    pub record: Option<&'a SignedEvent>,
    /// The signature verified under the record's own key.
    pub signature_ok: bool,
    /// The record's hash if the caller already has it (the collector
    /// computes it off its single writer thread); else `check` computes it.
    pub hash: Option<Hash>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Finding {
    Missing {
        first: u64,
        last: u64,
    },
    Reordered {
        seq: u64,
        index: usize,
    },
    Replayed {
        seq: u64,
        index: usize,
    },
    Altered {
        seq: u64,
        index: usize,
    },
    Forged {
        seq: u64,
        index: usize,
    },
    Forked {
        seq: u64,
        index: usize,
    },
    BrokenLink {
        seq: u64,
        index: usize,
    },
    ForeignKey {
        key: DeviceKey,
        index: usize,
    },
    /// Too broken to read even a claimed sequence number, and no gap to
    /// attribute it to.
    Unreadable {
        index: usize,
    },
}

impl Finding {
    /// The stable machine name used in API responses and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Finding::Missing { .. } => "missing",
            Finding::Reordered { .. } => "reordered",
            Finding::Replayed { .. } => "replayed",
            Finding::Altered { .. } => "altered",
            Finding::Forged { .. } => "forged",
            Finding::Forked { .. } => "forked",
            Finding::BrokenLink { .. } => "broken_link",
            Finding::ForeignKey { .. } => "foreign_key",
            Finding::Unreadable { .. } => "unreadable",
        }
    }

    /// The input index the finding is about, when it is about one record.
    pub fn index(&self) -> Option<usize> {
        match *self {
            Finding::Missing { .. } => None,
            Finding::Reordered { index, .. }
            | Finding::Replayed { index, .. }
            | Finding::Altered { index, .. }
            | Finding::Forged { index, .. }
            | Finding::Forked { index, .. }
            | Finding::BrokenLink { index, .. }
            | Finding::ForeignKey { index, .. }
            | Finding::Unreadable { index } => Some(index),
        }
    }

    fn sort_key(&self) -> (u64, usize) {
        match *self {
            Finding::Missing { first, .. } => (first, 0),
            Finding::Reordered { seq, index }
            | Finding::Replayed { seq, index }
            | Finding::Altered { seq, index }
            | Finding::Forged { seq, index }
            | Finding::Forked { seq, index }
            | Finding::BrokenLink { seq, index } => (seq, index + 1),
            Finding::ForeignKey { index, .. } | Finding::Unreadable { index } => {
                (u64::MAX, index + 1)
            }
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Missing { first, last } if first == last => {
                write!(f, "seq {first} is missing")
            }
            Finding::Missing { first, last } => write!(f, "seq {first}..={last} are missing"),
            Finding::Reordered { seq, index } => {
                write!(f, "seq {seq} (record {index}) arrived after a later event")
            }
            Finding::Replayed { seq, index } => {
                write!(
                    f,
                    "seq {seq} (record {index}) is a replay of an event already held"
                )
            }
            Finding::Altered { seq, index } => write!(
                f,
                "seq {seq} (record {index}) was altered: its signature does not verify"
            ),
            Finding::Forged { seq, index } => write!(
                f,
                "record {index} claiming seq {seq} is forged: its signature does not verify"
            ),
            Finding::Forked { seq, index } => write!(
                f,
                "seq {seq} (record {index}) is validly signed but differs from the event already held: the key signed two histories"
            ),
            Finding::BrokenLink { seq, index } => write!(
                f,
                "seq {seq} (record {index}) does not link to the hash of seq {}",
                seq - 1
            ),
            Finding::ForeignKey { key, index } => {
                write!(f, "record {index} is signed by another key ({key})")
            }
            Finding::Unreadable { index } => write!(f, "record {index} is unreadable"),
        }
    }
}

/// The outcome of checking a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainReport {
    /// Indices of the records accepted as new, in arrival order.
    pub accepted: Vec<usize>,
    pub findings: Vec<Finding>,
}

impl ChainReport {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Reads the claimed seq of a record without trusting its structure.
fn claimed_seq(raw: &[u8]) -> Option<u64> {
    let b = raw.get(38..46)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Some(u64::from_be_bytes(a))
}

struct Held {
    hash: Hash,
    prev: Hash,
    index: usize,
}

/// Checks one device's records. `expect_through`, when known (for example
/// from a later checkpoint), makes a truncated tail visible as `Missing`.
pub fn check(
    device: &DeviceKey,
    stored: &impl StoredChain,
    items: &[Item<'_>],
    expect_through: Option<u64>,
) -> ChainReport {
    let mut findings = Vec::new();
    let mut held: BTreeMap<u64, Held> = BTreeMap::new();
    let mut accepted = Vec::new();
    let mut bad: Vec<usize> = Vec::new();
    let mut highest_in_arrival = 0u64;

    for (index, item) in items.iter().enumerate() {
        let Some(rec) = item.record.filter(|_| item.signature_ok) else {
            bad.push(index);
            continue;
        };
        if rec.device_key() != *device {
            findings.push(Finding::ForeignKey {
                key: rec.device_key(),
                index,
            });
            continue;
        }
        let seq = rec.seq();
        let hash = item.hash.unwrap_or_else(|| rec.hash());
        let prior = held
            .get(&seq)
            .map(|h| h.hash)
            .or_else(|| stored.stored(seq).map(|(h, _)| h));
        match prior {
            Some(h) if h == hash => findings.push(Finding::Replayed { seq, index }),
            Some(_) => findings.push(Finding::Forked { seq, index }),
            None => {
                if seq < highest_in_arrival {
                    findings.push(Finding::Reordered { seq, index });
                }
                highest_in_arrival = highest_in_arrival.max(seq);
                held.insert(
                    seq,
                    Held {
                        hash,
                        prev: rec.prev_hash(),
                        index,
                    },
                );
                accepted.push(index);
            }
        }
    }

    // Links, checked on the final picture so that reordering is not a break.
    let lookup = |held: &BTreeMap<u64, Held>, s: u64| -> Option<(Hash, Hash)> {
        held.get(&s)
            .map(|h| (h.hash, h.prev))
            .or_else(|| stored.stored(s))
    };
    for (&seq, h) in &held {
        if seq > 1
            && let Some((pred_hash, _)) = lookup(&held, seq - 1)
            && pred_hash != h.prev
        {
            findings.push(Finding::BrokenLink {
                seq,
                index: h.index,
            });
        }
        // A new record that fills an old gap must also be what the stored
        // successor points back to.
        if !held.contains_key(&(seq + 1))
            && let Some((_, succ_prev)) = stored.stored(seq + 1)
            && succ_prev != h.hash
        {
            findings.push(Finding::BrokenLink {
                seq: seq + 1,
                index: h.index,
            });
        }
    }

    let high_water = stored.high_water();
    let top = held
        .keys()
        .next_back()
        .copied()
        .unwrap_or(0)
        .max(high_water)
        .max(expect_through.unwrap_or(0));
    let is_hole = |held: &BTreeMap<u64, Held>, s: u64| {
        s >= 1 && s <= top && !held.contains_key(&s) && stored.stored(s).is_none()
    };
    let mut attributed: BTreeMap<u64, usize> = BTreeMap::new();

    // Seq numbers of valid records by arrival index, to find the neighbours
    // of a bad record.
    let valid_seq: BTreeMap<usize, u64> = held.iter().map(|(&s, h)| (h.index, s)).collect();
    for &index in &bad {
        let claimed = claimed_seq(items[index].raw);
        if let Some(s) = claimed.filter(|&s| is_hole(&held, s) && !attributed.contains_key(&s)) {
            attributed.insert(s, index);
            findings.push(Finding::Altered { seq: s, index });
            continue;
        }
        let before = valid_seq.range(..index).next_back().map(|(_, &s)| s);
        let after = valid_seq.range(index + 1..).next().map(|(_, &s)| s);
        let lo = before.unwrap_or(high_water);
        let hi = after.unwrap_or(top + 1);
        let gaps: Vec<u64> = if hi > lo + 1 {
            (lo + 1..hi)
                .filter(|&s| is_hole(&held, s) && !attributed.contains_key(&s))
                .take(2)
                .collect()
        } else {
            Vec::new()
        };
        if let [only] = gaps[..] {
            attributed.insert(only, index);
            findings.push(Finding::Altered { seq: only, index });
        } else if let Some(seq) = claimed {
            findings.push(Finding::Forged { seq, index });
        } else {
            findings.push(Finding::Unreadable { index });
        }
    }

    // Holes above what the caller had already seen.
    let mut run: Option<(u64, u64)> = None;
    for s in high_water + 1..=top {
        if is_hole(&held, s) && !attributed.contains_key(&s) {
            run = match run {
                Some((a, b)) if b + 1 == s => Some((a, s)),
                Some((a, b)) => {
                    findings.push(Finding::Missing { first: a, last: b });
                    Some((s, s))
                }
                None => Some((s, s)),
            };
        }
    }
    if let Some((a, b)) = run {
        findings.push(Finding::Missing { first: a, last: b });
    }

    findings.sort_by_key(|f| f.sort_key());
    ChainReport { accepted, findings }
}

/// Offline verification of one device's complete stream of raw records, in
/// arrival order: parse, verify each signature, check the chain.
pub fn verify_stream(
    device: &DeviceKey,
    raws: &[&[u8]],
    expect_through: Option<u64>,
) -> (Vec<Result<SignedEvent, RecordError>>, ChainReport) {
    let parsed: Vec<Result<SignedEvent, RecordError>> = raws
        .iter()
        .map(|r| SignedEvent::from_bytes(r.to_vec()))
        .collect();
    let items: Vec<Item<'_>> = raws
        .iter()
        .zip(&parsed)
        .map(|(raw, p)| Item {
            raw,
            record: p.as_ref().ok(),
            signature_ok: p.as_ref().is_ok_and(|r| r.signature_valid()),
            hash: None,
        })
        .collect();
    let report = check(device, &Nothing, &items, expect_through);
    (parsed, report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventBody, EventKind};
    use crate::record::{ChainTip, DeviceSigner};
    use proptest::prelude::*;

    fn chain(n: usize) -> (DeviceKey, Vec<Vec<u8>>) {
        let mut s = DeviceSigner::new(&[42; 32], ChainTip::GENESIS);
        let v = (0..n)
            .map(|i| {
                s.sign(
                    1_000 + i as i64,
                    &EventBody::lifecycle(EventKind::Click, "alice", "crm"),
                )
                .into_bytes()
            })
            .collect();
        (s.public_key(), v)
    }

    fn run(key: &DeviceKey, v: &[Vec<u8>], expect: Option<u64>) -> ChainReport {
        let raws: Vec<&[u8]> = v.iter().map(|r| r.as_slice()).collect();
        verify_stream(key, &raws, expect).1
    }

    #[test]
    fn a_sound_chain_is_clean() {
        let (k, v) = chain(10);
        let r = run(&k, &v, Some(10));
        assert!(r.is_clean(), "{:?}", r.findings);
        assert_eq!(r.accepted, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn a_truncated_tail_needs_an_expectation() {
        let (k, v) = chain(10);
        assert!(run(&k, &v[..8], None).is_clean());
        assert_eq!(
            run(&k, &v[..8], Some(10)).findings,
            vec![Finding::Missing { first: 9, last: 10 }]
        );
    }

    #[test]
    fn a_foreign_record_and_a_fork_are_named() {
        let (k, v) = chain(4);
        let mut other = DeviceSigner::new(&[43; 32], ChainTip::GENESIS);
        let f = other
            .sign(5, &EventBody::lifecycle(EventKind::Click, "x", "y"))
            .into_bytes();
        let mut w = v.clone();
        w.push(f);
        assert_eq!(
            run(&k, &w, Some(4)).findings,
            vec![Finding::ForeignKey {
                key: other.public_key(),
                index: 4
            }]
        );
        // Same key, same seq 3, different content: a fork.
        let mut again = DeviceSigner::new(
            &[42; 32],
            ChainTip {
                seq: 2,
                hash: SignedEvent::from_bytes(v[1].clone()).unwrap().hash(),
            },
        );
        let alt = again
            .sign(9, &EventBody::lifecycle(EventKind::Copy, "alice", "crm"))
            .into_bytes();
        let mut w = v.clone();
        w.push(alt);
        assert_eq!(
            run(&k, &w, Some(4)).findings,
            vec![Finding::Forked { seq: 3, index: 4 }]
        );
    }

    #[test]
    fn stored_history_makes_retries_replays_and_fills_gaps() {
        struct Store(BTreeMap<u64, (Hash, Hash)>);
        impl StoredChain for Store {
            fn stored(&self, s: u64) -> Option<(Hash, Hash)> {
                self.0.get(&s).copied()
            }
            fn high_water(&self) -> u64 {
                self.0.keys().next_back().copied().unwrap_or(0)
            }
        }
        let (k, v) = chain(6);
        let evs: Vec<SignedEvent> = v
            .iter()
            .map(|b| SignedEvent::from_bytes(b.clone()).unwrap())
            .collect();
        // Stored 1,2,4,5 (3 was a gap reported earlier).
        let store = Store(
            [0usize, 1, 3, 4]
                .iter()
                .map(|&i| (evs[i].seq(), (evs[i].hash(), evs[i].prev_hash())))
                .collect(),
        );
        let items: Vec<Item<'_>> = [1usize, 2, 5]
            .iter()
            .map(|&i| Item {
                raw: evs[i].as_bytes(),
                record: Some(&evs[i]),
                signature_ok: true,
                hash: None,
            })
            .collect();
        let r = check(&k, &store, &items, None);
        assert_eq!(r.accepted, vec![1, 2]);
        assert_eq!(r.findings, vec![Finding::Replayed { seq: 2, index: 0 }]);
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Drop(usize),
        Swap(usize),
        Duplicate(usize, usize),
        Alter(usize, usize, u8),
    }

    fn mutation(n: usize) -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (0..n).prop_map(Mutation::Drop),
            (0..n - 1).prop_map(Mutation::Swap),
            (0..n, 0..n).prop_map(|(k, at)| Mutation::Duplicate(k, at)),
            (0..n, any::<usize>(), 1u8..=255).prop_map(|(k, b, x)| Mutation::Alter(k, b, x)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn any_single_mutation_is_reported_as_exactly_that(
            (n, m) in (2usize..16).prop_flat_map(|n| (Just(n), mutation(n)))
        ) {
            let (k, v) = chain(n);
            let mut w = v.clone();
            let expected = match m {
                Mutation::Drop(i) => {
                    w.remove(i);
                    Finding::Missing { first: i as u64 + 1, last: i as u64 + 1 }
                }
                Mutation::Swap(i) => {
                    w.swap(i, i + 1);
                    Finding::Reordered { seq: i as u64 + 1, index: i + 1 }
                }
                Mutation::Duplicate(i, at) => {
                    // The copy arrives after the original.
                    let at = at.clamp(i + 1, n);
                    w.insert(at, v[i].clone());
                    Finding::Replayed { seq: i as u64 + 1, index: at }
                }
                Mutation::Alter(i, b, x) => {
                    let b = b % w[i].len();
                    w[i][b] ^= x;
                    Finding::Altered { seq: i as u64 + 1, index: i }
                }
            };
            let r = run(&k, &w, Some(n as u64));
            prop_assert_eq!(r.findings, vec![expected]);
        }
    }
}
