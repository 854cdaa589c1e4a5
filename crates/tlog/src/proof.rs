//! Proof verification, independent of any store: RFC 9162 §2.1.3.2
//! (inclusion) and §2.1.4.2 (consistency), step for step.
//!
//! The RFC algorithms only say "fail"; these functions first compare the
//! proof length with the one the sizes imply, so a truncated or padded proof
//! is reported as such rather than as a root mismatch.

use crate::hash::{EMPTY_ROOT, Hash, node_hash};

/// Why a proof was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange {
        /// The claimed leaf index.
        index: u64,
        /// The claimed tree size.
        size: u64,
    },
    /// The old tree is larger than the new one.
    #[error("old size {old_size} is larger than new size {new_size}")]
    OldSizeExceedsNew {
        /// The claimed old size.
        old_size: u64,
        /// The claimed new size.
        new_size: u64,
    },
    /// The proof does not have the number of hashes the sizes imply.
    #[error("proof has {actual} hashes where the sizes imply {expected}")]
    WrongLength {
        /// Length implied by the index and sizes.
        expected: usize,
        /// Length received.
        actual: usize,
    },
    /// The inclusion proof does not lead from the leaf to the root.
    #[error("inclusion proof does not lead to the expected root")]
    RootMismatch,
    /// The consistency proof does not reproduce the old root.
    #[error("consistency proof does not reproduce the old root")]
    OldRootMismatch,
    /// The consistency proof does not reproduce the new root.
    #[error("consistency proof does not reproduce the new root")]
    NewRootMismatch,
}

/// Verifies that `leaf_hash` is leaf `index` of the tree of `size` leaves
/// whose root is `root`, given `path` = `PATH(index, D[size])`.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    path: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    // 1. leaf_index must be below tree_size.
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_len(index, size);
    if path.len() != expected {
        return Err(ProofError::WrongLength {
            expected,
            actual: path.len(),
        });
    }
    // 2.-3.
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf_hash;
    // 4.
    for p in path {
        if snode == 0 {
            return Err(ProofError::WrongLength {
                expected,
                actual: path.len(),
            });
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    // 5.
    if snode != 0 {
        return Err(ProofError::WrongLength {
            expected,
            actual: path.len(),
        });
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verifies that the tree of `old_size` leaves with root `old_root` is a
/// prefix of the tree of `new_size` leaves with root `new_root`, given
/// `proof` = `PROOF(old_size, D[new_size])`.
///
/// RFC 9162 defines proofs for `0 < old_size < new_size`. For the edge
/// cases the proof must be empty: equal sizes need equal roots, and size 0
/// needs `old_root` to be [`EMPTY_ROOT`] (every tree extends the empty one).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::OldSizeExceedsNew { old_size, new_size });
    }
    let expected = consistency_len(old_size, new_size);
    if proof.len() != expected {
        return Err(ProofError::WrongLength {
            expected,
            actual: proof.len(),
        });
    }
    if old_size == 0 {
        return if *old_root == EMPTY_ROOT {
            Ok(())
        } else {
            Err(ProofError::OldRootMismatch)
        };
    }
    if old_size == new_size {
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::NewRootMismatch)
        };
    }
    let wrong_length = ProofError::WrongLength {
        expected,
        actual: proof.len(),
    };
    // 1. An empty proof fails (excluded by the length check above).
    // 2. If old_size is an exact power of two, prepend old_root.
    let seed = old_size.is_power_of_two().then_some(old_root);
    let mut path = seed.into_iter().chain(proof);
    // 3.-4.
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    // 5.
    let Some(first) = path.next() else {
        return Err(wrong_length);
    };
    let (mut fr, mut sr) = (*first, *first);
    // 6.
    for c in path {
        if snode == 0 {
            return Err(wrong_length);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    // 7.
    if snode != 0 {
        return Err(wrong_length);
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(ProofError::NewRootMismatch);
    }
    Ok(())
}

/// Length of `PATH(index, D[size])` for `index < size`: the levels below the
/// point where the paths to `index` and to the last leaf split ("inner"),
/// plus one hash per left sibling above it ("border").
fn inclusion_len(index: u64, size: u64) -> usize {
    let (inner, border) = decompose(index, size);
    (inner + border) as usize
}

fn decompose(index: u64, size: u64) -> (u32, u32) {
    let inner = u64::BITS - (index ^ (size - 1)).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner, border)
}

/// Length of `PROOF(old_size, D[new_size])`; 0 where no proof is defined.
fn consistency_len(old_size: u64, new_size: u64) -> usize {
    if old_size == 0 || old_size >= new_size {
        return 0;
    }
    // The proof is the inclusion path of the old tree's last leaf with the
    // levels inside the old tree's rightmost perfect subtree (2^shift
    // leaves) replaced by that subtree's root — which the verifier already
    // knows when it is the whole old tree.
    let (inner, border) = decompose(old_size - 1, new_size);
    let shift = old_size.trailing_zeros();
    let seed = u32::from(!old_size.is_power_of_two());
    (seed + inner - shift + border) as usize
}
