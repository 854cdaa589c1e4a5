//! The tree against an independent, deliberately naive transcription of
//! RFC 9162 §2.1 (recursion over slices, hashing with `sha2` directly), for
//! every proof of every size up to 70 leaves; plus known answers, store-read
//! bounds and tamper properties.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::Cell;

use proptest::prelude::*;
use sessiontrail_tlog::{
    EMPTY_ROOT, Hash, MemoryStore, MemoryStoreError, NodeStore, ProofError, Tree, TreeError,
    hash_to_base64, leaf_hash, root_of, verify_consistency, verify_inclusion,
};
use sha2::{Digest, Sha256};

// ---- the naive model -------------------------------------------------------

fn sha(parts: &[&[u8]]) -> Hash {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn naive_leaf(data: &[u8]) -> Hash {
    sha(&[&[0], data])
}

fn naive_node(l: &Hash, r: &Hash) -> Hash {
    sha(&[&[1], l, r])
}

/// The largest power of two smaller than `n`, by counting up.
fn naive_split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn naive_mth(d: &[Hash]) -> Hash {
    match d.len() {
        0 => sha(&[]),
        1 => d[0],
        n => {
            let k = naive_split(n);
            naive_node(&naive_mth(&d[..k]), &naive_mth(&d[k..]))
        }
    }
}

fn naive_path(m: usize, d: &[Hash]) -> Vec<Hash> {
    let n = d.len();
    if n <= 1 {
        return vec![];
    }
    let k = naive_split(n);
    if m < k {
        let mut p = naive_path(m, &d[..k]);
        p.push(naive_mth(&d[k..]));
        p
    } else {
        let mut p = naive_path(m - k, &d[k..]);
        p.push(naive_mth(&d[..k]));
        p
    }
}

fn naive_subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![naive_mth(d)] };
    }
    let k = naive_split(n);
    if m <= k {
        let mut p = naive_subproof(m, &d[..k], b);
        p.push(naive_mth(&d[k..]));
        p
    } else {
        let mut p = naive_subproof(m - k, &d[k..], false);
        p.push(naive_mth(&d[..k]));
        p
    }
}

fn naive_proof(m: usize, d: &[Hash]) -> Vec<Hash> {
    if m == 0 || m == d.len() {
        vec![]
    } else {
        naive_subproof(m, d, true)
    }
}

// ---- helpers ---------------------------------------------------------------

fn leaves(n: usize) -> Vec<Hash> {
    (0..n as u64)
        .map(|i| naive_leaf(&i.to_be_bytes()))
        .collect()
}

fn tree_of(leaves: &[Hash]) -> Tree<MemoryStore> {
    let mut t = Tree::new(MemoryStore::new());
    t.append_batch(leaves).unwrap();
    t
}

/// Counts store reads.
#[derive(Debug, Default)]
struct Counting {
    inner: MemoryStore,
    reads: Cell<usize>,
}

impl NodeStore for Counting {
    type Error = MemoryStoreError;
    fn get(&self, level: u8, index: u64) -> Result<Option<Hash>, MemoryStoreError> {
        self.reads.set(self.reads.get() + 1);
        self.inner.get(level, index)
    }
    fn put(&mut self, level: u8, index: u64, hash: Hash) -> Result<(), MemoryStoreError> {
        self.inner.put(level, index, hash)
    }
}

fn log2_ceil(n: u64) -> usize {
    (u64::BITS - n.saturating_sub(1).leading_zeros()) as usize
}

// ---- exhaustive checks against the model -----------------------------------

const N: usize = 70;

#[test]
fn every_root_and_proof_up_to_70_matches_the_naive_model() {
    let d = leaves(N);
    // Grow the tree in uneven batches and single appends alike.
    let mut tree = Tree::new(MemoryStore::new());
    let mut at = 0;
    for (i, chunk) in [1usize, 0, 3, 1, 8, 5, 16, 1, 2, 33]
        .into_iter()
        .enumerate()
    {
        let chunk = &d[at..at + chunk];
        if i % 2 == 0 {
            for leaf in chunk {
                assert_eq!(tree.append(*leaf).unwrap(), at as u64);
                at += 1;
            }
        } else {
            assert_eq!(tree.append_batch(chunk).unwrap(), at as u64);
            at += chunk.len();
        }
    }
    assert_eq!(at, N);
    assert_eq!(tree.size(), N as u64);
    assert_eq!(tree.root(), naive_mth(&d));

    for n in 0..=N {
        let root = naive_mth(&d[..n]);
        assert_eq!(tree.root_at(n as u64).unwrap(), root, "root at {n}");
        assert_eq!(root_of(&d[..n]), root, "root_of {n}");
        for m in 0..n {
            let path = tree.inclusion_proof(m as u64, n as u64).unwrap();
            assert_eq!(path, naive_path(m, &d[..n]), "PATH({m}, D[{n}])");
            verify_inclusion(&d[m], m as u64, n as u64, &path, &root).unwrap();
        }
        for m in 0..=n {
            let proof = tree.consistency_proof(m as u64, n as u64).unwrap();
            assert_eq!(proof, naive_proof(m, &d[..n]), "PROOF({m}, D[{n}])");
            let old = naive_mth(&d[..m]);
            verify_consistency(m as u64, n as u64, &old, &root, &proof).unwrap();
        }
    }
}

#[test]
fn reopening_at_any_size_gives_the_same_tree() {
    let d = leaves(N);
    let full = tree_of(&d);
    for n in 0..=N {
        let mut t = Tree::open(full.store().clone(), n as u64).unwrap();
        assert_eq!(t.root(), naive_mth(&d[..n]));
        // Appending after a reopen overwrites whatever lay beyond the size.
        t.append_batch(&d[n..]).unwrap();
        assert_eq!(t.root(), full.root());
        assert_eq!(t.store(), full.store());
    }
}

#[test]
fn batch_and_single_appends_store_the_same_nodes() {
    let d = leaves(N);
    let mut single = Tree::new(MemoryStore::new());
    for leaf in &d {
        single.append(*leaf).unwrap();
    }
    assert_eq!(single.store(), tree_of(&d).store());
    assert_eq!(tree_of(&[]).store(), &MemoryStore::new());
}

// ---- cost bounds -----------------------------------------------------------

#[test]
fn appending_leaf_n_writes_at_most_log2_n_plus_one_nodes() {
    let mut tree = Tree::new(MemoryStore::new());
    let mut before = 0;
    for (n, leaf) in (0u64..).zip(leaves(300)) {
        tree.append(leaf).unwrap();
        let written = tree.store().len() - before;
        before = tree.store().len();
        assert!(written <= log2_ceil(n + 1) + 1, "leaf {n} wrote {written}");
        assert_eq!(written as u32, n.trailing_ones() + 1);
    }
    // Fewer than 2n nodes in all.
    assert!(before < 600);
}

#[test]
fn proofs_and_roots_read_o_log_n_nodes() {
    let d = leaves(1030);
    let mut tree = Tree::new(Counting::default());
    tree.append_batch(&d[..1000]).unwrap();
    for leaf in &d[1000..] {
        tree.append(*leaf).unwrap();
    }
    assert_eq!(tree.store().reads.get(), 0, "appends read nothing");
    let reads = |f: &dyn Fn(&Tree<Counting>)| {
        tree.store().reads.set(0);
        f(&tree);
        tree.store().reads.get()
    };
    assert_eq!(
        reads(&|t| {
            let _ = t.root();
        }),
        0
    );
    for n in [1u64, 2, 3, 7, 8, 9, 63, 64, 65, 500, 1023, 1024, 1029, 1030] {
        let bound = 2 * log2_ceil(n) + 2;
        assert!(
            reads(&|t| {
                t.root_at(n).unwrap();
            }) <= bound
        );
        for m in [0, 1, n / 3, n / 2, n - 1] {
            if m < n {
                let r = reads(&|t| drop(t.inclusion_proof(m, n).unwrap()));
                assert!(r <= bound, "inclusion {m}/{n}: {r} reads > {bound}");
            }
            let r = reads(&|t| drop(t.consistency_proof(m, n).unwrap()));
            assert!(r <= bound, "consistency {m}/{n}: {r} reads > {bound}");
        }
    }
}

// ---- errors ----------------------------------------------------------------

#[test]
fn out_of_range_requests_fail_precisely() {
    let t = tree_of(&leaves(5));
    assert!(matches!(
        t.root_at(6),
        Err(TreeError::SizeOutOfRange {
            size: 6,
            current: 5
        })
    ));
    assert!(matches!(
        t.inclusion_proof(5, 5),
        Err(TreeError::IndexOutOfRange { index: 5, size: 5 })
    ));
    assert!(matches!(
        t.inclusion_proof(0, 6),
        Err(TreeError::SizeOutOfRange { .. })
    ));
    assert!(matches!(
        t.consistency_proof(4, 3),
        Err(TreeError::OldSizeExceedsNew {
            old_size: 4,
            new_size: 3
        })
    ));
    // A size the store cannot back.
    let store = t.into_store();
    assert!(matches!(
        Tree::open(store, 6),
        Err(TreeError::MissingNode { level: 1, index: 2 })
    ));
}

#[test]
fn memory_store_refuses_gaps() {
    let mut s = MemoryStore::new();
    assert_eq!(
        s.put(0, 1, [0; 32]),
        Err(MemoryStoreError { level: 0, index: 1 })
    );
    s.put(0, 0, [1; 32]).unwrap();
    s.put(0, 0, [2; 32]).unwrap();
    assert_eq!(s.get(0, 0).unwrap(), Some([2; 32]));
    assert_eq!(s.get(5, u64::MAX).unwrap(), None);
}

#[test]
fn verifiers_reject_impossible_claims() {
    let d = leaves(8);
    let t = tree_of(&d);
    let root = t.root();
    let path = t.inclusion_proof(3, 8).unwrap();
    assert_eq!(
        verify_inclusion(&d[3], 8, 8, &path, &root),
        Err(ProofError::IndexOutOfRange { index: 8, size: 8 })
    );
    assert_eq!(
        verify_inclusion(&d[3], 3, 8, &path[..2], &root),
        Err(ProofError::WrongLength {
            expected: 3,
            actual: 2
        })
    );
    let r5 = t.root_at(5).unwrap();
    assert_eq!(
        verify_consistency(6, 5, &root, &r5, &[]),
        Err(ProofError::OldSizeExceedsNew {
            old_size: 6,
            new_size: 5
        })
    );
    // Edge cases: no proof, and the roots must still be right.
    assert_eq!(verify_consistency(0, 8, &EMPTY_ROOT, &root, &[]), Ok(()));
    assert_eq!(
        verify_consistency(0, 8, &root, &root, &[]),
        Err(ProofError::OldRootMismatch)
    );
    assert_eq!(
        verify_consistency(0, 8, &EMPTY_ROOT, &root, &[root]),
        Err(ProofError::WrongLength {
            expected: 0,
            actual: 1
        })
    );
    assert_eq!(verify_consistency(5, 5, &r5, &r5, &[]), Ok(()));
    assert_eq!(
        verify_consistency(5, 5, &r5, &root, &[]),
        Err(ProofError::NewRootMismatch)
    );
    // RFC 9162 step 1: an empty proof between different sizes fails.
    assert_eq!(
        verify_consistency(4, 8, &t.root_at(4).unwrap(), &root, &[]),
        Err(ProofError::WrongLength {
            expected: 1,
            actual: 0
        })
    );
}

// ---- known answers ---------------------------------------------------------

#[test]
fn rfc_known_answers() {
    assert_eq!(
        hex::encode(EMPTY_ROOT),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(Tree::new(MemoryStore::new()).root(), EMPTY_ROOT);
    // The RFC 6962 reference inputs and the roots of their prefixes, as
    // published with the Certificate Transparency reference implementation.
    let inputs = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    let roots = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    let mut tree = Tree::new(MemoryStore::new());
    for (input, root) in inputs.iter().zip(roots) {
        tree.append(leaf_hash(&hex::decode(input).unwrap()))
            .unwrap();
        assert_eq!(hex::encode(tree.root()), root);
    }

    // The worked examples of docs/tlog.md.
    let b64 = |hs: Vec<Hash>| hs.iter().map(hash_to_base64).collect::<Vec<_>>();
    assert_eq!(
        hash_to_base64(&leaf_hash(&hex::decode(inputs[5]).unwrap())),
        "QnGia+DYqE8L1UyMMC58s6O10fpngKQLzOKHNHfatlg="
    );
    assert_eq!(
        b64(tree.inclusion_proof(5, 8).unwrap()),
        [
            "vBoGQ7EuTS18d5GPROD095qDi2z57FtcKD4fTYhZnms=",
            "yoVOoSjtBQtBs1/8G4e46yveRh6eO1WW7Oa51ZdaCuA=",
            "037kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc=",
        ]
    );
    assert_eq!(
        b64(tree.consistency_proof(6, 8).unwrap()),
        [
            "DrxdNDf74tsVi58Sah0RjjCBgQMdCpSfje3t68VY72o=",
            "yoVOoSjtBQtBs1/8G4e46yveRh6eO1WW7Oa51ZdaCuA=",
            "037kGJdt2VdTwcc4Yrk5j6Kiz5tP8P3+izDNlSCWFLc=",
        ]
    );
    assert_eq!(
        hash_to_base64(&tree.root()),
        "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg="
    );
}

// ---- tampering -------------------------------------------------------------

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut h = *h;
    h[bit / 8 % 32] ^= 1 << (bit % 8);
    h
}

proptest! {
    #[test]
    fn tampered_inclusion_proofs_fail(
        size in 1u64..200, index_seed: u64, pick: usize, bit in 0usize..256,
    ) {
        let d = leaves(size as usize);
        let t = tree_of(&d);
        let index = index_seed % size;
        let root = t.root();
        let leaf = d[index as usize];
        let path = t.inclusion_proof(index, size).unwrap();
        prop_assert_eq!(verify_inclusion(&leaf, index, size, &path, &root), Ok(()));

        prop_assert!(verify_inclusion(&flip(&leaf, bit), index, size, &path, &root).is_err());
        prop_assert!(verify_inclusion(&leaf, index, size, &path, &flip(&root, bit)).is_err());
        if !path.is_empty() {
            let mut bad = path.clone();
            let j = pick % bad.len();
            bad[j] = flip(&bad[j], bit);
            prop_assert!(verify_inclusion(&leaf, index, size, &bad, &root).is_err());
            prop_assert!(verify_inclusion(&leaf, index, size, &path[1..], &root).is_err());
        }
        let mut longer = path.clone();
        longer.push(root);
        prop_assert!(verify_inclusion(&leaf, index, size, &longer, &root).is_err());
        if size > 1 {
            let other = (index + 1 + pick as u64 % (size - 1)) % size;
            prop_assert!(verify_inclusion(&leaf, other, size, &path, &root).is_err());
        }
    }

    #[test]
    fn tampered_consistency_proofs_fail(
        new_size in 2u64..200, old_seed: u64, pick: usize, bit in 0usize..256,
    ) {
        let d = leaves(new_size as usize);
        let t = tree_of(&d);
        let old_size = 1 + old_seed % (new_size - 1);
        let (old_root, new_root) = (t.root_at(old_size).unwrap(), t.root());
        let proof = t.consistency_proof(old_size, new_size).unwrap();
        prop_assert_eq!(
            verify_consistency(old_size, new_size, &old_root, &new_root, &proof), Ok(()));

        let check = |o: &Hash, n: &Hash, p: &[Hash]| {
            verify_consistency(old_size, new_size, o, n, p)
        };
        prop_assert!(check(&flip(&old_root, bit), &new_root, &proof).is_err());
        prop_assert!(check(&old_root, &flip(&new_root, bit), &proof).is_err());
        let j = pick % proof.len();
        let mut bad = proof.clone();
        bad[j] = flip(&bad[j], bit);
        prop_assert!(check(&old_root, &new_root, &bad).is_err());
        prop_assert!(check(&old_root, &new_root, &proof[1..]).is_err());
        let mut longer = proof.clone();
        longer.push(new_root);
        prop_assert!(check(&old_root, &new_root, &longer).is_err());

        // A log that rewrote one old entry cannot prove it extends the old tree.
        let mut rewritten = d.clone();
        let victim = pick % old_size as usize;
        rewritten[victim] = flip(&rewritten[victim], bit);
        let forged = tree_of(&rewritten);
        let forged_proof = forged.consistency_proof(old_size, new_size).unwrap();
        prop_assert!(check(&old_root, &forged.root(), &forged_proof).is_err());
    }
}
