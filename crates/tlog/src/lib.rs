//! # sessiontrail-tlog
//!
//! The collector's tamper-evident evidence log: an append-only Merkle tree
//! (RFC 9162 §2.1), its inclusion and consistency proofs, and signed
//! checkpoints in the C2SP `tlog-checkpoint` / `signed-note` formats.
//! `docs/tlog.md` specifies everything an auditor needs to check a proof by
//! hand.
//!
//! ## Contract
//!
//! - Pure Rust: no IO, no async, no clock, no randomness. Builds for
//!   `wasm32-unknown-unknown` so offline verifiers can run in a browser.
//! - Hashing is exactly RFC 9162 §2.1 with SHA-256: leaves are hashed as
//!   `SHA-256(0x00 || data)`, interior nodes as `SHA-256(0x01 || l || r)`,
//!   the empty tree as `SHA-256("")`. The crate never hashes event bytes
//!   itself except through [`leaf_hash`]; callers append leaf *hashes*.
//! - Storage is pluggable ([`NodeStore`]). Only hashes of perfect subtrees
//!   are stored, addressed by `(level, index)`; appending leaf `n` writes at
//!   most `log2(n) + 1` nodes. Every root and proof costs `O(log n)` store
//!   reads. The tree size is owned by the caller and must be committed in
//!   the same transaction as the nodes ([`Tree::open`]).
//! - Verification ([`verify_inclusion`], [`verify_consistency`],
//!   [`Checkpoint::verify`]) needs no store and trusts nothing it is given
//!   but the verifier key; every rejection has a precise error.
//! - Parsing is strict: non-canonical numbers, base64 or note layouts are
//!   refused rather than normalised.
//!
//! ## Map
//!
//! - [`hash`]: the RFC 9162 hash functions and [`Hash`](type@Hash) encoding.
//! - [`tree`]: [`NodeStore`], [`MemoryStore`] and the append-only [`Tree`].
//! - [`proof`]: store-independent proof verification (RFC 9162 §2.1.3.2,
//!   §2.1.4.2).
//! - [`note`]: C2SP signed notes, Ed25519 note keys and verifier-key strings.
//! - [`checkpoint`]: C2SP checkpoints (signed tree heads).

pub mod checkpoint;
pub mod hash;
pub mod note;
pub mod proof;
pub mod tree;

pub use checkpoint::Checkpoint;
pub use hash::{
    EMPTY_ROOT, Hash, InvalidHash, hash_from_base64, hash_to_base64, leaf_hash, node_hash, root_of,
};
pub use note::{NoteError, NoteSigner, VerifierKey};
pub use proof::{ProofError, verify_consistency, verify_inclusion};
pub use tree::{MemoryStore, MemoryStoreError, Node, NodeStore, Tree, TreeError};
