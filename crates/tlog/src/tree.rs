//! The append-only Merkle tree over a pluggable [`NodeStore`].
//!
//! Node `(level, index)` is the root of the perfect subtree over leaves
//! `[index * 2^level, (index + 1) * 2^level)`; level 0 holds the leaf hashes.
//! Only such complete subtrees are ever stored, so a stored node never
//! changes once written and a tree of `n` leaves holds fewer than `2n`
//! nodes. Every root of a historical size and every proof is assembled from
//! `O(log n)` of them.

use crate::hash::{EMPTY_ROOT, Hash, fold_frontier, push_leaf};

/// One stored node: the root hash of a perfect subtree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// Height of the subtree: `0` for a leaf hash.
    pub level: u8,
    /// Position among the subtrees of that height, left to right.
    pub index: u64,
    /// `MTH` of the subtree's leaves.
    pub hash: Hash,
}

/// Where the tree keeps its perfect-subtree hashes (SQLite in the collector,
/// [`MemoryStore`] in tests and offline tools).
///
/// A written node is immutable in a consistent log; `put` must nevertheless
/// overwrite (upsert), because a write that was never committed — a batch
/// whose transaction rolled back — is simply written again.
pub trait NodeStore {
    /// The backend's error.
    type Error: core::error::Error + 'static;

    /// The node at `(level, index)`, or `None` if it was never written.
    fn get(&self, level: u8, index: u64) -> Result<Option<Hash>, Self::Error>;

    /// Writes one node.
    fn put(&mut self, level: u8, index: u64, hash: Hash) -> Result<(), Self::Error>;

    /// Writes the nodes of one append, in order. Backends should override
    /// this with a single multi-row write; the default calls [`put`](Self::put).
    fn put_all(&mut self, nodes: &[Node]) -> Result<(), Self::Error> {
        nodes
            .iter()
            .try_for_each(|n| self.put(n.level, n.index, n.hash))
    }
}

/// Failures of tree operations.
#[derive(Debug, thiserror::Error)]
pub enum TreeError<E: core::error::Error + 'static> {
    /// The store failed.
    #[error("node store: {0}")]
    Store(#[source] E),
    /// The store lacks a node the tree's size says must exist: the store and
    /// the size the tree was opened with disagree.
    #[error("node store has no node at level {level}, index {index}")]
    MissingNode {
        /// Level of the missing node.
        level: u8,
        /// Index of the missing node.
        index: u64,
    },
    /// A leaf index at or beyond the tree size.
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange {
        /// The leaf index asked for.
        index: u64,
        /// The tree size it was asked against.
        size: u64,
    },
    /// A tree size beyond the current size.
    #[error("tree size {size} is beyond the current size {current}")]
    SizeOutOfRange {
        /// The size asked for.
        size: u64,
        /// The tree's current size.
        current: u64,
    },
    /// A consistency proof from a larger to a smaller tree.
    #[error("old size {old_size} is larger than new size {new_size}")]
    OldSizeExceedsNew {
        /// The older size.
        old_size: u64,
        /// The newer size.
        new_size: u64,
    },
    /// Appending would overflow the `u64` tree size.
    #[error("the tree is full")]
    Full,
}

/// An append-only RFC 9162 Merkle tree.
///
/// The tree keeps its current size and frontier (the roots of the perfect
/// subtrees that make up the current tree, at most 64 hashes) in memory, so
/// appends and the current root read nothing from the store.
#[derive(Debug)]
pub struct Tree<S> {
    store: S,
    size: u64,
    /// Roots of the perfect subtrees of the current tree, largest first: one
    /// per set bit of `size`.
    frontier: Vec<Hash>,
}

impl<S: NodeStore> Tree<S> {
    /// An empty tree writing to `store`. Whatever the store already holds is
    /// overwritten as leaves are appended.
    pub fn new(store: S) -> Self {
        Tree {
            store,
            size: 0,
            frontier: Vec::new(),
        }
    }

    /// Reopens a tree of `size` leaves kept in `store` (`popcount(size)`
    /// reads). The size is the caller's record of what was committed; nodes
    /// beyond it are ignored and overwritten by later appends. After a failed
    /// commit, reopen at the last committed size.
    pub fn open(store: S, size: u64) -> Result<Self, TreeError<S::Error>> {
        let mut tree = Tree {
            store,
            size,
            frontier: Vec::new(),
        };
        let mut start = 0u64;
        for level in (0..64u8).rev() {
            let width = 1u64 << level;
            if size & width != 0 {
                let hash = tree.read_store(level, start >> level)?;
                tree.frontier.push(hash);
                start += width;
            }
        }
        Ok(tree)
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the current tree (no store reads).
    pub fn root(&self) -> Hash {
        fold_frontier(&self.frontier)
    }

    /// The root the tree had at `size` leaves, for any `size` up to the
    /// current one (`popcount(size)` reads at most).
    pub fn root_at(&self, size: u64) -> Result<Hash, TreeError<S::Error>> {
        self.check_size(size)?;
        if size == 0 {
            return Ok(EMPTY_ROOT);
        }
        self.subtree(0, size)
    }

    /// Appends one leaf hash, returning its index.
    pub fn append(&mut self, leaf_hash: Hash) -> Result<u64, TreeError<S::Error>> {
        self.append_batch(&[leaf_hash])
    }

    /// Appends leaf hashes in order with a single [`NodeStore::put_all`] and
    /// no store reads, returning the index of the first (the old size).
    /// Either all leaves are appended or, if the store fails, none is.
    pub fn append_batch(&mut self, leaf_hashes: &[Hash]) -> Result<u64, TreeError<S::Error>> {
        let first = self.size;
        let count = u64::try_from(leaf_hashes.len()).map_err(|_| TreeError::Full)?;
        let new_size = first.checked_add(count).ok_or(TreeError::Full)?;
        if count == 0 {
            return Ok(first);
        }
        let mut frontier = self.frontier.clone();
        // n leaves complete fewer than 2n nodes, plus at most one per level
        // on top of the old frontier.
        let mut nodes = Vec::with_capacity(leaf_hashes.len() * 2 + 64);
        for (index, leaf) in (first..).zip(leaf_hashes) {
            push_leaf(&mut frontier, index, *leaf, |level, index, hash| {
                nodes.push(Node { level, index, hash });
            });
        }
        self.store.put_all(&nodes).map_err(TreeError::Store)?;
        self.frontier = frontier;
        self.size = new_size;
        Ok(first)
    }

    /// The RFC 9162 §2.1.3.1 inclusion proof (`PATH(index, D[size])`) of
    /// leaf `index` in the tree of `size` leaves, ordered from the leaf's
    /// sibling up to the root's child.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, TreeError<S::Error>> {
        self.check_size(size)?;
        if index >= size {
            return Err(TreeError::IndexOutOfRange { index, size });
        }
        let mut path = Vec::with_capacity(64);
        self.path(index, 0, size, &mut path)?;
        Ok(path)
    }

    /// The RFC 9162 §2.1.4.1 consistency proof (`PROOF(old_size,
    /// D[new_size])`) between two sizes of this tree. Empty when
    /// `old_size` is `0` or equal to `new_size`, where RFC 9162 defines no
    /// proof and [`crate::verify_consistency`] expects none.
    pub fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<Vec<Hash>, TreeError<S::Error>> {
        self.check_size(new_size)?;
        if old_size > new_size {
            return Err(TreeError::OldSizeExceedsNew { old_size, new_size });
        }
        let mut proof = Vec::with_capacity(64);
        if old_size != 0 && old_size != new_size {
            self.subproof(old_size, 0, new_size, true, &mut proof)?;
        }
        Ok(proof)
    }

    /// The store, for reads outside the tree.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, mutably (to begin or commit a backend transaction around
    /// an append). Writing nodes through it bypasses the tree.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Gives the store back.
    pub fn into_store(self) -> S {
        self.store
    }

    fn check_size(&self, size: u64) -> Result<(), TreeError<S::Error>> {
        if size > self.size {
            return Err(TreeError::SizeOutOfRange {
                size,
                current: self.size,
            });
        }
        Ok(())
    }

    /// `PATH(m, D[start:end])`, `m` relative to `start`.
    fn path(
        &self,
        m: u64,
        start: u64,
        end: u64,
        out: &mut Vec<Hash>,
    ) -> Result<(), TreeError<S::Error>> {
        let n = end - start;
        if n <= 1 {
            return Ok(());
        }
        let k = split(n);
        if m < k {
            self.path(m, start, start + k, out)?;
            out.push(self.subtree(start + k, end)?);
        } else {
            self.path(m - k, start + k, end, out)?;
            out.push(self.subtree(start, start + k)?);
        }
        Ok(())
    }

    /// `SUBPROOF(m, D[start:end], complete)`.
    fn subproof(
        &self,
        m: u64,
        start: u64,
        end: u64,
        complete: bool,
        out: &mut Vec<Hash>,
    ) -> Result<(), TreeError<S::Error>> {
        let n = end - start;
        if m == n {
            if !complete {
                out.push(self.subtree(start, end)?);
            }
            return Ok(());
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, start, start + k, complete, out)?;
            out.push(self.subtree(start + k, end)?);
        } else {
            self.subproof(m - k, start + k, end, false, out)?;
            out.push(self.subtree(start, start + k)?);
        }
        Ok(())
    }

    /// `MTH(D[start:end])` for a non-empty range of the shape the RFC 9162
    /// recursion produces: `start` is a multiple of the smallest power of two
    /// not below `end - start`. Such a range is a run of perfect subtrees of
    /// decreasing size, so it costs one read per set bit of its length. The
    /// proof recursions only ever ask for one range that is not itself a
    /// perfect subtree, which keeps every proof at `O(log n)` reads.
    fn subtree(&self, start: u64, end: u64) -> Result<Hash, TreeError<S::Error>> {
        let len = end - start;
        if len.is_power_of_two() {
            let level = len.trailing_zeros() as u8;
            return self.read(level, start >> level);
        }
        let mut pieces = Vec::with_capacity(len.count_ones() as usize);
        let mut at = start;
        for level in (0..64u8).rev() {
            let width = 1u64 << level;
            if len & width != 0 {
                pieces.push(self.read(level, at >> level)?);
                at += width;
            }
        }
        Ok(fold_frontier(&pieces))
    }

    /// One node, from the in-memory frontier when it is part of it (recent
    /// proofs then touch the store less), else from the store.
    fn read(&self, level: u8, index: u64) -> Result<Hash, TreeError<S::Error>> {
        let above = self.size.checked_shr(u32::from(level)).unwrap_or(0);
        if above & 1 == 1 && index == above - 1 {
            let pos = (above >> 1).count_ones() as usize;
            if let Some(hash) = self.frontier.get(pos) {
                return Ok(*hash);
            }
        }
        self.read_store(level, index)
    }

    fn read_store(&self, level: u8, index: u64) -> Result<Hash, TreeError<S::Error>> {
        self.store
            .get(level, index)
            .map_err(TreeError::Store)?
            .ok_or(TreeError::MissingNode { level, index })
    }
}

/// The largest power of two smaller than `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// A [`NodeStore`] in memory: one vector per level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStore {
    levels: Vec<Vec<Hash>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of stored nodes, over all levels.
    pub fn len(&self) -> usize {
        self.levels.iter().map(Vec::len).sum()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// [`MemoryStore`] keeps each level dense, so it takes writes only at or
/// before the end of a level — which is all the tree ever does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("memory store: node {index} at level {level} would leave a gap")]
pub struct MemoryStoreError {
    /// Level of the refused write.
    pub level: u8,
    /// Index of the refused write.
    pub index: u64,
}

impl NodeStore for MemoryStore {
    type Error = MemoryStoreError;

    fn get(&self, level: u8, index: u64) -> Result<Option<Hash>, MemoryStoreError> {
        let found = usize::try_from(index)
            .ok()
            .and_then(|i| self.levels.get(usize::from(level))?.get(i));
        Ok(found.copied())
    }

    fn put(&mut self, level: u8, index: u64, hash: Hash) -> Result<(), MemoryStoreError> {
        let gap = MemoryStoreError { level, index };
        let level_at = usize::from(level);
        if self.levels.len() <= level_at {
            self.levels.resize_with(level_at + 1, Vec::new);
        }
        let nodes = &mut self.levels[level_at];
        let i = usize::try_from(index).map_err(|_| gap)?;
        if let Some(slot) = nodes.get_mut(i) {
            *slot = hash;
        } else if i == nodes.len() {
            nodes.push(hash);
        } else {
            return Err(gap);
        }
        Ok(())
    }
}
