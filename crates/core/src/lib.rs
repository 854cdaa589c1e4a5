//! # sessiontrail-core
//!
//! The engine shared by the extension (through `crates/wasm`) and the
//! collector, so both sides agree by construction on what an event is, how it
//! is signed and chained, and how a rule pack classifies it.
//!
//! ## Contract
//!
//! - Pure Rust: no wasm-bindgen, web-sys, js-sys or tokio. Builds for
//!   `wasm32-unknown-unknown` and natively.
//! - No globals for side effects: time, randomness and keys come in as
//!   arguments. The core never reads a clock or an RNG.
//! - Every byte format here is versioned (magic + version, and a checksum
//!   where no signature covers it) and specified in `docs/formats.md`;
//!   decoders refuse what they do not understand with a precise error.
//! - A signature covers the exact bytes stored and sent. Nothing is
//!   re-serialised before verification.
//!
//! ## Map
//!
//! - [`event`]: the event model (observations in, signed bodies out).
//! - [`record`]: the signed record encoding and the device signer/chain tip.
//! - [`chain`]: per-device chain verification with precise findings.
//! - [`batch`]: the batch wire format and batch signature verification.
//! - `one_key_batch` (feature `batch`): batch verification of one key's
//!   signatures with the key's terms merged (the collector's hot path).
//! - [`keys`]: device keys and the enrolled-key directory.
//! - [`rulepack`]: the TOML rule-pack language, its compiled signed form,
//!   the matcher and pack tests.
//! - [`risk`]: session risk accumulation, decay and thresholds.
//! - [`mask`]: keyed commitments for field values and PII in free text.
//! - [`pipeline`]: observation → classified, masked event body.
//! - [`guard`]: the compact table the content script holds actions with.

pub mod batch;
pub mod chain;
pub mod event;
pub mod guard;
pub mod keys;
pub mod mask;
#[cfg(feature = "batch")]
pub mod one_key_batch;
pub mod pipeline;
pub mod record;
pub mod risk;
pub mod rulepack;

pub use event::{
    ActionKind, Classification, Decision, EventBody, EventKind, FieldValue, Observation, Response,
    Severity, Target,
};
pub use keys::{DeviceKey, KeyDirectory, KeyStatus};
pub use record::{ChainTip, DeviceSigner, Hash, SignedEvent};
