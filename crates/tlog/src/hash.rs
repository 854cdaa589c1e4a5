//! RFC 9162 §2.1 hashing with SHA-256.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

/// A SHA-256 output: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// `MTH({})`, the root of the empty tree: `SHA-256("")`.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// The leaf hash of an entry: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// An interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// `MTH(D[n])` of a whole list of leaf hashes, in `O(n)` hashes and
/// `O(log n)` memory. For offline checks of small trees (an evidence bundle);
/// the collector uses [`crate::Tree`].
pub fn root_of(leaf_hashes: &[Hash]) -> Hash {
    let mut frontier = Vec::new();
    for (i, leaf) in (0u64..).zip(leaf_hashes) {
        push_leaf(&mut frontier, i, *leaf, |_, _, _| {});
    }
    fold_frontier(&frontier)
}

/// Appends leaf number `index` to a frontier (the roots of the perfect
/// subtrees of a tree of `index` leaves, largest first), calling `new_node`
/// with `(level, index, hash)` for every perfect-subtree node it completes,
/// the leaf included.
pub(crate) fn push_leaf(
    frontier: &mut Vec<Hash>,
    index: u64,
    leaf: Hash,
    mut new_node: impl FnMut(u8, u64, Hash),
) {
    new_node(0, index, leaf);
    let mut hash = leaf;
    let mut level = 0u8;
    let mut at = index;
    // Each trailing one bit of `index` is a left sibling that the new leaf
    // completes into a perfect subtree one level up.
    while at & 1 == 1 {
        let Some(left) = frontier.pop() else {
            // Unreachable: the frontier has one entry per set bit of `index`.
            break;
        };
        hash = node_hash(&left, &hash);
        level += 1;
        at >>= 1;
        new_node(level, at, hash);
    }
    frontier.push(hash);
}

/// The root of a tree given its frontier (largest perfect subtree first):
/// RFC 9162 splits at the largest power of two, so the tree is
/// `node(P1, node(P2, … node(Pt-1, Pt)))`.
pub(crate) fn fold_frontier(frontier: &[Hash]) -> Hash {
    let mut iter = frontier.iter().rev();
    let Some(last) = iter.next() else {
        return EMPTY_ROOT;
    };
    iter.fold(*last, |acc, left| node_hash(left, &acc))
}

/// Standard base64 (RFC 4648 §4, padded) of a hash, as used in checkpoints
/// and in the proof JSON of `docs/tlog.md`.
pub fn hash_to_base64(hash: &Hash) -> String {
    STANDARD.encode(hash)
}

/// Decodes the canonical standard base64 of a 32-byte hash (44 characters,
/// padded, zero trailing bits). Anything else is refused.
pub fn hash_from_base64(text: &str) -> Result<Hash, InvalidHash> {
    if text.len() != 44 {
        return Err(InvalidHash);
    }
    let bytes = STANDARD.decode(text).map_err(|_| InvalidHash)?;
    bytes.try_into().map_err(|_| InvalidHash)
}

/// A hash string that is not the canonical base64 of 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not the canonical base64 encoding of a 32-byte hash")]
pub struct InvalidHash;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        let h: Hash = Sha256::digest(b"").into();
        assert_eq!(h, EMPTY_ROOT);
        assert_eq!(
            hex::encode(EMPTY_ROOT),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(root_of(&[]), EMPTY_ROOT);
    }

    #[test]
    fn base64_is_strict() {
        let h = leaf_hash(b"x");
        let text = hash_to_base64(&h);
        assert_eq!(hash_from_base64(&text), Ok(h));
        // Non-zero trailing bits in the last character are not canonical.
        let zero = hash_to_base64(&[0u8; 32]);
        assert_eq!(zero, format!("{}=", "A".repeat(43)));
        assert_eq!(hash_from_base64(&zero), Ok([0u8; 32]));
        assert_eq!(
            hash_from_base64(&format!("{}B=", "A".repeat(42))),
            Err(InvalidHash)
        );
        assert_eq!(
            hash_from_base64(text.trim_end_matches('=')),
            Err(InvalidHash)
        );
        assert_eq!(hash_from_base64(&format!("{text} ")), Err(InvalidHash));
        assert_eq!(
            hash_from_base64(&STANDARD.encode([0u8; 31])),
            Err(InvalidHash)
        );
        // 33 bytes encode to 44 characters too.
        assert_eq!(
            hash_from_base64(&STANDARD.encode([0u8; 33])),
            Err(InvalidHash)
        );
        assert_eq!(hash_from_base64(&text.replace('=', "A")), Err(InvalidHash));
    }
}
