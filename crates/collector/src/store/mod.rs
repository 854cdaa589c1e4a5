//! The store behind the collector: a narrow, blocking trait with exactly the
//! operations enrollment, auth and ingest need, and its SQLite implementation.
//!
//! Methods block (SQLite is synchronous); the server calls them from
//! `tokio::task::spawn_blocking`. Every mutation is one transaction that is
//! durable (fsynced) when the method returns `Ok`, so a caller may
//! acknowledge right after. Admin mutations append a collector-signed record
//! describing themselves in the same transaction (see [`crate::audit`]).

use serde::Serialize;
use sessiontrail_core::DeviceKey;

use crate::ingest::{IngestOutcome, VerifiedBatch};

pub mod packs;
pub mod search;
pub mod sqlite;
mod syncer;

pub use packs::PackStore;
pub use search::SearchStore;
pub use sqlite::SqliteStore;

/// Why the store could not do what was asked. Business refusals (a used-up
/// enrollment token, a revoked device) are not errors: they are the `Err`
/// side of the inner `Result` of the method concerned.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The write queue is full: the client should retry later.
    #[error("the store's write queue is full")]
    Busy,
    /// The store is shut down or its writer died.
    #[error("the store is closed")]
    Closed,
    #[error("database error: {0}")]
    Db(String),
    #[error("io error: {0}")]
    Io(String),
    /// Stored data that does not read back as written.
    #[error("corrupt store: {0}")]
    Corrupt(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError::Db(e.to_string())
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> StoreError {
        StoreError::Io(e.to_string())
    }
}

/// What a credential may do. Each role has its own credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Ingest only, bound to one device key.
    Device,
    /// Read, search, export.
    Auditor,
    /// Enrollment tokens, revocation, rule packs.
    Admin,
    /// A (possibly multi-use, expiring) enrollment token: only `POST /v1/enroll`.
    Enroll,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Device => "device",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
            Role::Enroll => "enroll",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [Role::Device, Role::Auditor, Role::Admin, Role::Enroll]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// Who did an admin action: `token:<id>` for an API credential, `cli` for
/// the local command line (whoever can write the data directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);

impl Actor {
    pub fn cli() -> Actor {
        Actor("cli".into())
    }

    pub fn token(id: &str) -> Actor {
        Actor(format!("token:{id}"))
    }
}

/// A stored credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub secret_hash: [u8; 32],
    pub role: Role,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub max_uses: Option<u64>,
    pub uses: u64,
    pub group: Option<String>,
    pub device_id: Option<i64>,
    pub revoked_ms: Option<i64>,
}

/// A credential to create.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub id: String,
    pub secret_hash: [u8; 32],
    pub role: Role,
    pub expires_ms: Option<i64>,
    pub max_uses: Option<u64>,
    pub group: Option<String>,
}

/// An enrolled device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    #[serde(skip)]
    pub id: i64,
    pub key: DeviceKey,
    pub user: String,
    pub device_name: String,
    pub enrolled_ms: i64,
    pub revoked_ms: Option<i64>,
    pub enroll_token_id: Option<String>,
    pub claims: serde_json::Value,
    pub high_water: u64,
}

/// A device as the fleet view lists it: when it was last heard from and
/// how many holes its chain has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceStatus {
    #[serde(flatten)]
    pub device: Device,
    /// When the collector stored the device's newest record (its high-water
    /// mark); `None` before its first batch.
    pub last_seen_ms: Option<i64>,
    /// Gaps not yet filled.
    pub open_gaps: u64,
}

/// A request to bind a device key, checked and applied atomically: the
/// enrollment token is validated and consumed in the same transaction that
/// inserts the device and its credential.
#[derive(Debug, Clone)]
pub struct Enrollment {
    pub token_id: String,
    /// SHA-256 of the presented secret, compared in constant time.
    pub presented_hash: [u8; 32],
    pub device_key: DeviceKey,
    pub user: String,
    pub device_name: String,
    pub claims: serde_json::Value,
    /// The device credential to create on success.
    pub credential: NewToken,
    pub now_ms: i64,
}

/// A request to re-issue the credential of a key that is already enrolled
/// (the device lost its credential, or never received it). Checked and
/// applied atomically, like [`Enrollment`]: the token, the device's state
/// and the challenge's credential generation are read in the transaction
/// that revokes the old credentials and stores the new one.
#[derive(Debug, Clone)]
pub struct ReEnrollment {
    pub token_id: String,
    /// SHA-256 of the presented secret, compared in constant time.
    pub presented_hash: [u8; 32],
    pub device_key: DeviceKey,
    /// The [`Store::credential_generation`] the challenge was issued for;
    /// refused as [`EnrollRefusal::StaleChallenge`] unless it is still the
    /// current one (so a challenge, and the proof over it, works once).
    pub generation: u64,
    /// The device credential to create on success.
    pub credential: NewToken,
    pub now_ms: i64,
}

/// A re-issued device credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReEnrolled {
    pub device: Device,
    /// How many earlier credentials of the device were revoked.
    pub credentials_revoked: u64,
}

/// Why an enrollment or a re-enrollment was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollRefusal {
    UnknownToken,
    Expired,
    UsedUp,
    /// Enrollment: the key is enrolled (and not revoked).
    AlreadyEnrolled,
    /// The key was revoked: it is never enrolled again.
    Revoked,
    /// Re-enrollment: the key was never enrolled.
    NotEnrolled,
    /// Re-enrollment with a token of another policy group than the one the
    /// device enrolled in.
    WrongGroup,
    /// Re-enrollment: a credential was issued since the challenge was.
    StaleChallenge,
}

/// Why a batch was refused as a whole inside the write transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestRefusal {
    /// Revoked after the request was authenticated.
    Revoked,
    UnknownDevice,
}

/// An open range of sequence numbers a device has not delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    pub first_seq: u64,
    pub last_seq: u64,
    pub detected_ms: i64,
    pub filled: u64,
    pub closed_ms: Option<i64>,
}

/// One row of the admin audit table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub details: serde_json::Value,
    pub leaf_index: u64,
}

/// A signed tree head of the evidence log (C2SP checkpoint note).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignedCheckpoint {
    pub tree_size: u64,
    /// Base64 root hash, as in the note.
    pub root_hash: String,
    pub signed_ms: i64,
    /// The complete signed note.
    pub note: String,
}

/// Liveness and size, for `/healthz` and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    /// Database plus write-ahead log, in bytes.
    pub size_bytes: u64,
    /// Number of records in the evidence log.
    pub log_size: u64,
}

/// The operations the collector needs from its store.
/// Rule packs and distribution files are in the supertrait [`PackStore`];
/// search, timelines and evidence reads in [`SearchStore`].
pub trait Store: PackStore + SearchStore + Send + Sync + std::fmt::Debug + 'static {
    /// A cheap read that proves the store answers.
    fn stats(&self) -> Result<StoreStats, StoreError>;

    /// The collector's own signing key (it signs admin-audit records).
    fn collector_key(&self) -> DeviceKey;

    fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError>;

    /// The checkpoint verifier key (C2SP `vkey` string) to publish.
    fn log_verifier_key(&self) -> String;

    /// Signs a checkpoint of the evidence log as committed, unless the
    /// latest one already covers it; returns the latest checkpoint.
    fn checkpoint(&self, now_ms: i64) -> Result<Option<SignedCheckpoint>, StoreError>;

    fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, StoreError>;

    /// RFC 9162 inclusion proof of leaf `leaf` in the tree of `size` leaves;
    /// `None` when out of range.
    fn inclusion_proof(
        &self,
        leaf: u64,
        size: u64,
    ) -> Result<Option<Vec<sessiontrail_core::Hash>>, StoreError>;

    /// RFC 9162 consistency proof from the tree of `old_size` leaves to the
    /// one of `new_size` (`old_size <= new_size`; empty when `old_size` is 0
    /// or equal to `new_size`); `Err(current size)` when `new_size` is beyond
    /// the log's committed size.
    #[allow(clippy::type_complexity)]
    fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<Result<Vec<sessiontrail_core::Hash>, u64>, StoreError>;

    fn create_token(&self, token: NewToken, actor: &Actor) -> Result<(), StoreError>;

    fn device(&self, key: &DeviceKey) -> Result<Option<Device>, StoreError>;

    fn device_by_id(&self, id: i64) -> Result<Option<Device>, StoreError>;

    fn enroll(&self, e: Enrollment) -> Result<Result<Device, EnrollRefusal>, StoreError>;

    /// How many device credentials were ever issued for `key` (0 when it is
    /// not enrolled). It grows with every (re-)enrollment, which is what
    /// makes a re-enrollment challenge single-use.
    fn credential_generation(&self, key: &DeviceKey) -> Result<u64, StoreError>;

    /// The secret that authenticates re-enrollment challenges: derived from
    /// the collector seed, so it survives restarts and every collector on
    /// the same seed accepts the others' challenges.
    fn reenroll_challenge_key(&self) -> [u8; 32];

    /// Re-issues the device credential of an enrolled, non-revoked key (see
    /// [`ReEnrollment`]); the old credentials are revoked and the action is
    /// audited (`device.reenroll`) in the same transaction.
    fn reenroll(&self, r: ReEnrollment) -> Result<Result<ReEnrolled, EnrollRefusal>, StoreError>;

    /// Enrolled agent devices, the longest silent first (never heard from
    /// counts from enrollment); with `silent_since_ms`, only those not
    /// heard from since then.
    fn device_statuses(
        &self,
        silent_since_ms: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DeviceStatus>, StoreError>;

    /// Writes an action that changes nothing else in the store (an
    /// evidence export) to the evidence log as a collector-signed admin
    /// record; returns its leaf index.
    fn record_action(
        &self,
        action: crate::audit::AdminAction,
        now_ms: i64,
    ) -> Result<u64, StoreError>;

    /// Revokes one credential or enrollment token (any role). Idempotent:
    /// revoking again returns it with its first revocation time. `None` when
    /// no credential has this id.
    fn revoke_token(
        &self,
        id: &str,
        now_ms: i64,
        actor: &Actor,
    ) -> Result<Option<TokenRecord>, StoreError>;

    /// Revokes a device and its credentials. Idempotent: revoking again
    /// returns the device with its first revocation time. `None` when the
    /// key is not enrolled.
    fn revoke_device(
        &self,
        key: &DeviceKey,
        now_ms: i64,
        actor: &Actor,
    ) -> Result<Option<Device>, StoreError>;

    /// Checks `batch` against the stored chain of `device` and stores what
    /// is sound, in one durable transaction. Fails fast with
    /// [`StoreError::Busy`] when the write queue is full.
    fn ingest(
        &self,
        device_id: i64,
        batch: VerifiedBatch,
        received_ms: i64,
    ) -> Result<Result<IngestOutcome, IngestRefusal>, StoreError>;

    /// Stored records of a device with `seq > after`, ascending, at most `limit`.
    fn records(
        &self,
        key: &DeviceKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;

    /// Gaps of a device, oldest first (open and closed).
    fn gaps(&self, key: &DeviceKey) -> Result<Vec<Gap>, StoreError>;

    /// The admin audit trail, oldest first.
    fn audit_trail(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
}
