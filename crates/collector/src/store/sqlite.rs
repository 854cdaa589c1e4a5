//! The embedded store: one SQLite file in WAL mode.
//!
//! All writes go through one writer thread fed by a bounded queue. The
//! writer takes whatever jobs are queued (up to [`MAX_GROUP`]), runs them
//! inside one transaction, commits once, and hands the group to the
//! `syncer` (`store/syncer.rs`), which answers every job after the fsync that
//! makes the commit durable: a group commit, so one fsync covers many
//! requests under load, every acknowledgement follows its fsync, and the
//! writer runs the next group while the disk syncs. A full queue answers
//! [`StoreError::Busy`] at once (the server turns it into 429 +
//! `Retry-After`). Reads use a small pool of read-only connections and see
//! the last committed state.

use std::cell::RefCell;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension as _, Transaction, TransactionBehavior, params};
use sessiontrail_core::chain::StoredChain;
use sessiontrail_core::record::ZERO_HASH;
use sessiontrail_core::{ChainTip, DeviceKey, DeviceSigner, Hash, SignedEvent};
use sessiontrail_tlog::{Checkpoint, NodeStore, NoteSigner, Tree};
use sha2::{Digest as _, Sha256};

use super::syncer::{Finish, Syncer};
use super::{
    Actor, AuditEntry, Device, DeviceStatus, EnrollRefusal, Enrollment, Gap, IngestRefusal,
    NewToken, ReEnrolled, ReEnrollment, Role, SignedCheckpoint, Store, StoreError, StoreStats,
    TokenRecord,
};
use crate::audit::AdminAction;
use crate::index::IndexFields;
use crate::ingest::{self, IngestOutcome, RecordHashes, VerifiedBatch};

const SCHEMA: &str = include_str!("schema.sql");
const SCHEMA_VERSION: i64 = 1;
const DB_FILE: &str = "sessiontrail.db";
const KEY_FILE: &str = "collector.key";
/// Most jobs one transaction carries.
pub const MAX_GROUP: usize = 64;

/// Tuning of the SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Write jobs waiting for the writer before [`StoreError::Busy`].
    pub queue: usize,
    /// The evidence log's origin (checkpoint first line and note key name);
    /// by default `sessiontrail/<first 16 hex digits of the collector key>`.
    pub log_origin: Option<String>,
    /// Run the writer, its fsync thread and the WAL checkpointer on this CPU
    /// only (see [`crate::cpu`]); `None` leaves them to the scheduler.
    pub store_cpu: Option<usize>,
    /// Work the writer takes on while it waits (see [`SpareWork`]).
    pub spare_work: Option<Arc<dyn SpareWork>>,
}

/// Work the store's writer thread may do instead of waiting: the server
/// lends the store's CPU to batch verification this way
/// (`crate::verifiers`). The writer takes one task at a time, only
///
/// - while its job queue is empty, or
/// - while its next group is small (fewer than [`MIN_GROUP`] jobs) and less
///   than [`GROUP_PERIOD`] has passed since the previous group began. When
///   the writer is what ingest waits for, its groups are large and take
///   longer than that, so it never lends; when verification is, it would
///   otherwise commit many small groups, each costing more per event
///   (every commit rewrites the partly filled pages of every index it
///   touches, and starts a new full-text segment; docs/collector.md, "Fifth
///   pass" and "Sixth pass").
pub trait SpareWork: std::fmt::Debug + Send + Sync {
    /// Runs one waiting task; whether there was one.
    fn run_one(&self) -> bool;
}

/// See [`SpareWork`]. Half the server's default `max_inflight` (64): a
/// writer that waited for more would hold back the requests the group after
/// it needs, and always wait out [`GROUP_PERIOD`] (measured: groups of 64
/// within 50 ms lost a fifth of the rate).
pub const MIN_GROUP: usize = 32;
/// See [`SpareWork`].
pub const GROUP_PERIOD: Duration = Duration::from_millis(25);

impl Default for SqliteOptions {
    fn default() -> SqliteOptions {
        SqliteOptions {
            queue: 64,
            log_origin: None,
            store_cpu: None,
            spare_work: None,
        }
    }
}

/// The checkpoint key's seed: derived, so one secret file serves both keys
/// while record and checkpoint signatures never share a key.
fn checkpoint_seed(seed: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"sessiontrail.checkpoint-key.v1\0");
    h.update(seed);
    h.finalize().into()
}

/// The re-enrollment challenge key: derived from the seed like the
/// checkpoint key, so it survives restarts and never equals a signing key.
fn reenroll_challenge_key(seed: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"sessiontrail.reenroll-challenge-key.v1\0");
    h.update(seed);
    h.finalize().into()
}

/// What a write job leaves for the writer loop.
struct Done {
    /// Roll the job's savepoint back (the job failed).
    rollback: bool,
    /// Called with the commit's outcome, after the commit is durable.
    finish: Finish,
}

/// State only the writer thread holds.
pub(super) struct WriterCtx {
    seed: [u8; 32],
    collector_id: i64,
    /// Signs checkpoints; its key is derived from the seed, distinct from
    /// the record-signing key.
    note_signer: NoteSigner,
}

type JobFn = Box<dyn FnOnce(&Transaction<'_>, &WriterCtx) -> Done + Send>;

/// A write job. An *isolated* job runs in its own savepoint, so its failure
/// rolls back only its own writes. Ingest jobs are not isolated: a
/// savepoint copies every page a job touches into a sub-journal, which at
/// ingest rates is a real share of the writer's time. If one of them fails
/// (a database error: business refusals are not failures), the whole group
/// is rolled back and every other job in it is answered
/// [`StoreError::Busy`], so its client retries (ingest is idempotent).
struct Job {
    isolated: bool,
    /// Commit this job's group with `synchronous=FULL`, so no reader sees
    /// it before it is on disk: for what others are handed as a commitment
    /// (see `syncer`).
    durable_before_visible: bool,
    run: JobFn,
}

/// The SQLite [`Store`].
pub struct SqliteStore {
    path: PathBuf,
    queue: Mutex<Option<SyncSender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    wal: Mutex<Option<(std::sync::mpsc::Sender<()>, JoinHandle<()>)>>,
    readers: Mutex<Vec<Connection>>,
    collector_key: DeviceKey,
    verifier_key: String,
    challenge_key: [u8; 32],
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("collector_key", &self.collector_key)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks leaves no broken invariant (a
    // connection or a sender), so poisoning is ignored.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn open_conn(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute_batch(
        // The default 4 KiB pages. 8 KiB was faster while the store was
        // small (`--quick`), no faster at a million events and with a longer
        // ack tail under the all-flagged load; 16 and 32 KiB were slower
        // once the index pages outgrew the page cache (every device writes
        // its own spot of each index; docs/collector.md).
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA mmap_size = 1073741824;",
    )?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

/// Brings a store created by an earlier version to the current schema
/// before `schema.sql` runs (which creates only what is missing).
fn migrate(tx: &Transaction<'_>) -> Result<(), StoreError> {
    // `events_action_time` was created with `NOT IN (…)`, which costs every
    // INSERT a temporary B-tree; drop it so the schema creates the `<>` form.
    let action_index: Option<String> = tx
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE type = 'index' AND name = 'events_action_time'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if action_index.is_some_and(|sql| sql.contains("NOT IN")) {
        tracing::info!("rebuilding index events_action_time (once, for faster ingest)");
        tx.execute_batch("DROP INDEX events_action_time")?;
    }
    Ok(())
}

/// Loads the collector's signing seed, creating it (mode 0600) on first use.
fn load_or_create_seed(dir: &Path) -> Result<[u8; 32], StoreError> {
    let path = dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let mut seed = [0u8; 32];
            hex::decode_to_slice(s.trim(), &mut seed).map_err(|_| {
                StoreError::Corrupt(format!("{} is not 64 hex digits", path.display()))
            })?;
            Ok(seed)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed = crate::auth::random_bytes::<32>()
                .map_err(|e| StoreError::Io(format!("no randomness: {e}")))?;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                opts.mode(0o600);
            }
            let mut f = opts.open(&path)?;
            f.write_all(hex::encode(seed).as_bytes())?;
            f.sync_all()?;
            Ok(seed)
        }
        Err(e) => Err(e.into()),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path, opts: SqliteOptions) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(DB_FILE);
        // A store without its key must not get a new one: the log's
        // checkpoints and admin records are signed by the old key, and a
        // new key would silently start a second identity.
        if path.exists() && !dir.join(KEY_FILE).exists() {
            return Err(StoreError::Corrupt(format!(
                "{} exists but {} is missing: restore the key from backup (a new key \
                 cannot sign for this store's evidence log)",
                path.display(),
                dir.join(KEY_FILE).display()
            )));
        }
        let seed = load_or_create_seed(dir)?;
        let collector_key = DeviceSigner::new(&seed, ChainTip::GENESIS).public_key();
        let origin = opts
            .log_origin
            .clone()
            .unwrap_or_else(|| format!("sessiontrail/{}", &collector_key.to_hex()[..16]));
        let note_signer = NoteSigner::new(&origin, &checkpoint_seed(&seed))
            .map_err(|e| StoreError::Corrupt(format!("invalid log origin {origin:?}: {e}")))?;
        let verifier_key = note_signer.verifier_key().to_string();
        let challenge_key = reenroll_challenge_key(&seed);
        let mut conn = open_conn(&path)?;
        let collector_id = {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if version > SCHEMA_VERSION {
                return Err(StoreError::Corrupt(format!(
                    "schema version {version} is newer than this collector ({SCHEMA_VERSION})"
                )));
            }
            migrate(&tx)?;
            tx.execute_batch(SCHEMA)?;
            tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
            let other: Option<Vec<u8>> = tx
                .query_row(
                    "SELECT key FROM devices WHERE kind = 'collector' AND key <> ?1 LIMIT 1",
                    [&collector_key.0[..]],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(other) = other {
                return Err(StoreError::Corrupt(format!(
                    "{} holds collector key {} but this store's evidence log is signed by {}: \
                     restore the store's own key",
                    dir.join(KEY_FILE).display(),
                    collector_key.to_hex(),
                    hex::encode(other)
                )));
            }
            tx.execute(
                "INSERT OR IGNORE INTO devices (key, kind, user, device_name, enrolled_ms)
                 VALUES (?1, 'collector', 'sessiontrail-collector', 'collector', ?2)",
                params![&collector_key.0[..], crate::now_ms()],
            )?;
            let id: i64 = tx.query_row(
                "SELECT id FROM devices WHERE key = ?1",
                [&collector_key.0[..]],
                |r| r.get(0),
            )?;
            tx.commit()?;
            id
        };
        // WAL checkpoints (copying the log back into the database) run on
        // their own thread, off the writer's critical path.
        let checkpointer = open_conn(&path)?;
        // The writer's page cache: 16 MiB. The default 2 MB kept re-reading
        // the hot index pages of the devices writing at once; 128 MiB was
        // slower than 16 (9 full benchmark runs against each other in the
        // same minutes: routine ingest ≈ +0.04 of the bare-verify rate, ahead
        // in 8). Part of why: the end of every transaction sweeps the
        // cache's hash table (1.9% of the writer's time at 128 MiB); pages
        // already checkpointed are read through the memory map.
        // Savepoints' sub-journals stay in memory (temp_store above).
        // `synchronous=NORMAL`: the syncer thread makes each commit durable
        // before it is answered (see `syncer`).
        conn.execute_batch(
            "PRAGMA wal_autocheckpoint = 0; PRAGMA cache_size = -16384;
             PRAGMA synchronous = NORMAL",
        )?;
        let pin = move |thread: &str| {
            if let Some(c) = opts.store_cpu {
                crate::cpu::pin_current_or_warn(&[c], thread);
            }
        };
        let syncer = Syncer::start(&path, pin)?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let wal = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                pin("sqlite-checkpoint");
                // Background work: on the store's CPU it must not hold up
                // the writer (see `crate::cpu::lower_priority`).
                crate::cpu::lower_priority(CHECKPOINTER_NICE, "sqlite-checkpoint");
                wal_checkpoint_loop(checkpointer, stopped)
            })?;
        let (tx, rx) = sync_channel::<Job>(opts.queue.max(1));
        let ctx = WriterCtx {
            seed,
            collector_id,
            note_signer,
        };
        let spare = opts.spare_work;
        let writer = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                pin("sqlite-writer");
                writer_loop(conn, rx, ctx, syncer, spare)
            })?;
        Ok(SqliteStore {
            path,
            queue: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            wal: Mutex::new(Some((stop, wal))),
            readers: Mutex::new(Vec::new()),
            collector_key,
            verifier_key,
            challenge_key,
        })
    }

    /// Where the database file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn read<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let conn = lock(&self.readers).pop();
        let conn = match conn {
            Some(c) => c,
            None => {
                let c = open_conn(&self.path)?;
                c.execute_batch("PRAGMA query_only = ON")?;
                c
            }
        };
        let r = f(&conn);
        let mut pool = lock(&self.readers);
        if pool.len() < 8 {
            pool.push(conn);
        }
        r
    }

    /// Runs `f` in the writer's transaction, in its own savepoint, and
    /// returns after the commit. With `wait == false` a full queue fails at
    /// once with `Busy`.
    pub(super) fn write<R: Send + 'static>(
        &self,
        wait: bool,
        f: impl FnOnce(&Transaction<'_>, &WriterCtx) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.submit(wait, true, false, f)
    }

    /// Like [`write`](Self::write), for what is handed to others as a
    /// commitment: no reader sees the commit before it is on disk.
    pub(super) fn publish<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction<'_>, &WriterCtx) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        self.submit(true, true, true, f)
    }

    fn submit<R: Send + 'static>(
        &self,
        wait: bool,
        isolated: bool,
        durable_before_visible: bool,
        f: impl FnOnce(&Transaction<'_>, &WriterCtx) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (reply, answer) = sync_channel::<Result<R, StoreError>>(1);
        let run: JobFn = Box::new(move |tx, ctx| match f(tx, ctx) {
            Ok(r) => Done {
                rollback: false,
                finish: Box::new(move |commit| {
                    let _ = reply.send(commit.map(|()| r));
                }),
            },
            Err(e) => Done {
                rollback: true,
                finish: Box::new(move |_| {
                    let _ = reply.send(Err(e));
                }),
            },
        });
        let job = Job {
            isolated,
            durable_before_visible,
            run,
        };
        let sender = lock(&self.queue).clone().ok_or(StoreError::Closed)?;
        if wait {
            sender.send(job).map_err(|_| StoreError::Closed)?;
        } else {
            sender.try_send(job).map_err(|e| match e {
                TrySendError::Full(_) => StoreError::Busy,
                TrySendError::Disconnected(_) => StoreError::Closed,
            })?;
        }
        drop(sender);
        answer.recv().map_err(|_| StoreError::Closed)?
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what is queued and exit.
        lock(&self.queue).take();
        if let Some(h) = lock(&self.writer).take() {
            let _ = h.join();
        }
        if let Some((stop, h)) = lock(&self.wal).take() {
            drop(stop);
            let _ = h.join();
        }
    }
}

/// The WAL checkpointer's `nice` value: it yields its CPU to the writer
/// whenever both could run.
const CHECKPOINTER_NICE: i32 = 10;

/// Checkpoints the WAL every 200 ms (PASSIVE: never blocks the writer),
/// and once more when the store closes.
fn wal_checkpoint_loop(conn: Connection, stop: std::sync::mpsc::Receiver<()>) {
    use std::sync::mpsc::RecvTimeoutError;
    loop {
        let last = !matches!(
            stop.recv_timeout(std::time::Duration::from_millis(200)),
            Err(RecvTimeoutError::Timeout)
        );
        let mode = if last { "TRUNCATE" } else { "PASSIVE" };
        if let Err(e) = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(())) {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
        if last {
            return;
        }
    }
}

/// The next job: at once if one is queued; otherwise after spare work while
/// there is some, then whenever one comes. `None`: the store is closing.
fn next_job(rx: &Receiver<Job>, spare: Option<&dyn SpareWork>) -> Option<Job> {
    loop {
        match rx.try_recv() {
            Ok(job) => return Some(job),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => {
                if !spare.is_some_and(|w| w.run_one()) {
                    return rx.recv().ok();
                }
            }
        }
    }
}

/// Adds queued jobs to `jobs`, up to [`MAX_GROUP`].
fn take_queued(rx: &Receiver<Job>, jobs: &mut Vec<Job>) {
    while jobs.len() < MAX_GROUP {
        match rx.try_recv() {
            Ok(j) => jobs.push(j),
            Err(_) => return,
        }
    }
}

/// Completes the group that starts with `first`: every queued job and, while
/// the group is small and the previous one (begun at `previous`) was recent,
/// the jobs that come while the writer does spare work (see [`SpareWork`]).
fn gather_group(
    rx: &Receiver<Job>,
    first: Job,
    spare: Option<&dyn SpareWork>,
    previous: Instant,
) -> Vec<Job> {
    let mut jobs = vec![first];
    take_queued(rx, &mut jobs);
    if let Some(spare) = spare {
        while jobs.len() < MIN_GROUP && previous.elapsed() < GROUP_PERIOD && spare.run_one() {
            take_queued(rx, &mut jobs);
        }
    }
    jobs
}

fn writer_loop(
    mut conn: Connection,
    rx: Receiver<Job>,
    ctx: WriterCtx,
    syncer: Syncer,
    spare: Option<Arc<dyn SpareWork>>,
) {
    // The connection's `synchronous` setting: NORMAL unless the last group
    // needed FULL.
    let mut full_sync = false;
    let mut previous = Instant::now();
    while let Some(first) = next_job(&rx, spare.as_deref()) {
        let jobs = gather_group(&rx, first, spare.as_deref(), previous);
        previous = Instant::now();
        let want_full = jobs.iter().any(|j| j.durable_before_visible);
        if want_full != full_sync {
            let mode = if want_full { "FULL" } else { "NORMAL" };
            match conn.execute_batch(&format!("PRAGMA synchronous = {mode}")) {
                Ok(()) => full_sync = want_full,
                // Staying at FULL is only slower; NORMAL would break the
                // promise these jobs need: dropping them answers 503.
                Err(e) if want_full => {
                    tracing::error!(error = %e, "cannot switch to synchronous=FULL");
                    continue;
                }
                Err(e) => tracing::warn!(error = %e, "cannot switch back to synchronous=NORMAL"),
            }
        }
        let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => {
                tracing::error!(error = %e, "cannot begin a write transaction");
                // Dropping the jobs drops their reply channels: callers see
                // `Closed` and answer 503; nothing was stored.
                continue;
            }
        };
        // The group's events get their full-text rows in one statement just
        // before the commit (see `index_full_text`).
        let first_leaf = match next_leaf(&tx) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the log size");
                continue;
            }
        };
        let mut finishers = Vec::with_capacity(jobs.len());
        // An unisolated job failed: the group is rolled back as a whole.
        let mut poisoned = false;
        for job in jobs {
            if job.isolated
                && let Err(e) = tx.execute_batch("SAVEPOINT job")
            {
                tracing::error!(error = %e, "savepoint failed");
                continue;
            }
            let run = job.run;
            let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&tx, &ctx)));
            let rollback = done.as_ref().map_or(true, |d| d.rollback);
            if job.isolated {
                let end = if rollback {
                    "ROLLBACK TO job; RELEASE job"
                } else {
                    "RELEASE job"
                };
                if let Err(e) = tx.execute_batch(end) {
                    tracing::error!(error = %e, "ending a savepoint failed");
                }
            } else if rollback {
                poisoned = true;
            }
            match done {
                Ok(d) => finishers.push(d.finish),
                Err(_) => tracing::error!("a store write job panicked; it was rolled back"),
            }
        }
        let committed = if poisoned {
            tracing::error!("an ingest job failed; its whole group was rolled back");
            if let Err(e) = tx.rollback() {
                tracing::error!(error = %e, "rollback failed");
            }
            Err(StoreError::Busy)
        } else {
            match index_full_text(&tx, first_leaf) {
                Ok(()) => tx.commit().map_err(StoreError::from),
                Err(e) => {
                    tracing::error!(error = %e, "full-text indexing failed; the group was rolled back");
                    if let Err(e) = tx.rollback() {
                        tracing::error!(error = %e, "rollback failed");
                    }
                    Err(e)
                }
            }
        };
        match committed {
            Ok(()) => syncer.committed(finishers),
            Err(e) => {
                tracing::error!(error = %e, "commit failed");
                for finish in finishers {
                    finish(Err(e.clone()));
                }
            }
        }
    }
    syncer.finish();
}

pub(super) fn blob32(v: Vec<u8>, what: &str) -> Result<[u8; 32], StoreError> {
    v.try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what} is not 32 bytes")))
}

fn next_leaf(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT COALESCE(MAX(leaf_index) + 1, 0) FROM events")?
        .query_row([], |r| r.get(0))?)
}

/// The Merkle log's nodes in `tlog_nodes`, written inside the transaction
/// that stores the records they cover.
struct TxNodes<'a>(&'a Connection);

impl NodeStore for TxNodes<'_> {
    type Error = rusqlite::Error;

    fn get(&self, level: u8, index: u64) -> Result<Option<Hash>, rusqlite::Error> {
        read_node(self.0, level, index)
    }

    fn put(&mut self, level: u8, index: u64, hash: Hash) -> Result<(), rusqlite::Error> {
        if level < STORED_FROM_LEVEL {
            return Ok(());
        }
        self.0
            .prepare_cached(
                "INSERT OR REPLACE INTO tlog_nodes (level, idx, hash) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![level, index as i64, &hash[..]])?;
        Ok(())
    }

    /// The nodes at stored levels, one cached statement per row.
    fn put_all(&mut self, nodes: &[sessiontrail_tlog::Node]) -> Result<(), rusqlite::Error> {
        let stored = nodes.iter().filter(|n| n.level >= STORED_FROM_LEVEL);
        insert_each(
            self.0,
            "INSERT OR REPLACE INTO tlog_nodes (level, idx, hash) VALUES (?1, ?2, ?3)",
            stored,
            |st, n| {
                st.raw_bind_parameter(1, n.level)?;
                st.raw_bind_parameter(2, n.index as i64)?;
                st.raw_bind_parameter(3, &n.hash[..])
            },
        )
    }
}

/// The lowest Merkle-log level kept in `tlog_nodes`. A node below it covers
/// at most 8 records and is recomputed from them when asked for (a proof
/// needs one per level, so at most 15 record reads). Storing every level
/// costs the single writer two B-tree rows per record; from level 4 up it
/// is one row per 8 records.
pub(super) const STORED_FROM_LEVEL: u8 = 4;

/// One node of the Merkle log, if the log has it: from `tlog_nodes`, or
/// recomputed from the records it covers below [`STORED_FROM_LEVEL`].
pub(super) fn read_node(
    c: &Connection,
    level: u8,
    index: u64,
) -> Result<Option<Hash>, rusqlite::Error> {
    if level < STORED_FROM_LEVEL {
        return node_from_records(c, level, index);
    }
    let h: Option<Vec<u8>> = c
        .prepare_cached("SELECT hash FROM tlog_nodes WHERE level = ?1 AND idx = ?2")?
        .query_row(params![level, index as i64], |r| r.get(0))
        .optional()?;
    Ok(h.and_then(|h| Hash::try_from(h).ok()))
}

/// The root of the perfect subtree `(level, index)` from its records, or
/// `None` when they are not all stored (the subtree is not complete).
fn node_from_records(c: &Connection, level: u8, index: u64) -> rusqlite::Result<Option<Hash>> {
    let width = 1u64 << level;
    let Some(first) = index
        .checked_mul(width)
        .filter(|f| *f <= i64::MAX as u64 - width)
    else {
        return Ok(None);
    };
    let mut st = c.prepare_cached(
        "SELECT record FROM events WHERE leaf_index >= ?1 AND leaf_index < ?2 ORDER BY leaf_index",
    )?;
    let mut rows = st.query(params![first as i64, (first + width) as i64])?;
    let mut level_hashes: Vec<Hash> = Vec::with_capacity(width as usize);
    while let Some(r) = rows.next()? {
        level_hashes.push(sessiontrail_tlog::leaf_hash(r.get_ref(0)?.as_blob()?));
    }
    if level_hashes.len() as u64 != width {
        return Ok(None);
    }
    while level_hashes.len() > 1 {
        level_hashes = level_hashes
            .chunks_exact(2)
            .map(|p| sessiontrail_tlog::node_hash(&p[0], &p[1]))
            .collect();
    }
    Ok(level_hashes.pop())
}

/// Appends the records (leaves `first..`) to the Merkle log. The log's size
/// is the number of stored records, committed in the same transaction.
fn log_append(tx: &Transaction<'_>, first: i64, leaves: &[Hash]) -> Result<(), StoreError> {
    let mut tree = Tree::open(TxNodes(tx), first as u64)
        .map_err(|e| StoreError::Corrupt(format!("evidence log: {e}")))?;
    tree.append_batch(leaves)
        .map_err(|e| StoreError::Db(format!("evidence log append: {e}")))?;
    Ok(())
}

/// The Merkle log over everything stored, at its committed size.
fn log_tree(conn: &Connection) -> Result<Tree<TxNodes<'_>>, StoreError> {
    let size = next_leaf(conn)?;
    Tree::open(TxNodes(conn), size as u64)
        .map_err(|e| StoreError::Corrupt(format!("evidence log: {e}")))
}

fn checkpoint_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, Vec<u8>, i64, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn finish_checkpoint(
    row: Option<(i64, Vec<u8>, i64, String)>,
) -> Result<Option<SignedCheckpoint>, StoreError> {
    let Some((size, root, signed_ms, note)) = row else {
        return Ok(None);
    };
    Ok(Some(SignedCheckpoint {
        tree_size: size as u64,
        root_hash: sessiontrail_tlog::hash_to_base64(&blob32(root, "checkpoint root")?),
        signed_ms,
        note,
    }))
}

const LATEST_CHECKPOINT: &str =
    "SELECT tree_size, root_hash, signed_ms, note FROM checkpoints ORDER BY tree_size DESC LIMIT 1";

/// Signs a checkpoint of the log as committed, unless the latest one
/// already covers it.
fn checkpoint_tx(
    tx: &Transaction<'_>,
    ctx: &WriterCtx,
    now_ms: i64,
) -> Result<Option<SignedCheckpoint>, StoreError> {
    let latest = finish_checkpoint(
        tx.query_row(LATEST_CHECKPOINT, [], checkpoint_row)
            .optional()?,
    )?;
    let tree = log_tree(tx)?;
    if tree.size() == 0 || latest.as_ref().is_some_and(|c| c.tree_size >= tree.size()) {
        return Ok(latest);
    }
    let root = tree.root();
    let note = Checkpoint::new(ctx.note_signer.name(), tree.size(), root)
        .sign(&ctx.note_signer)
        .map_err(|e| StoreError::Corrupt(format!("cannot sign a checkpoint: {e}")))?;
    tx.execute(
        "INSERT INTO checkpoints (tree_size, root_hash, signed_ms, note) VALUES (?1, ?2, ?3, ?4)",
        params![tree.size() as i64, &root[..], now_ms, note],
    )?;
    Ok(Some(SignedCheckpoint {
        tree_size: tree.size(),
        root_hash: sessiontrail_tlog::hash_to_base64(&root),
        signed_ms: now_ms,
        note,
    }))
}

/// One record to append to the events table (and so to the evidence log).
struct NewEvent<'a> {
    leaf: i64,
    device_id: i64,
    ev: &'a SignedEvent,
    hash: &'a Hash,
    index: Option<&'a IndexFields>,
    received_ms: i64,
}

/// Columns of an `events` row, in [`bind_event`] order.
const EVENT_INSERT: &str = "INSERT INTO events (leaf_index, device_id, seq, hash, prev_hash,
    time_ms, received_ms, record, body_ok, user, app, action, rules, severity, tags, response, url,
    target, session, tab, trusted)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)";

fn bind_event(st: &mut rusqlite::Statement<'_>, e: &NewEvent<'_>) -> rusqlite::Result<()> {
    let at = 1;
    let (ev, i) = (e.ev, e.index);
    st.raw_bind_parameter(at, e.leaf)?;
    st.raw_bind_parameter(at + 1, e.device_id)?;
    st.raw_bind_parameter(at + 2, ev.seq() as i64)?;
    st.raw_bind_parameter(at + 3, &e.hash[..])?;
    st.raw_bind_parameter(at + 4, &ev.prev_hash()[..])?;
    st.raw_bind_parameter(at + 5, ev.time_ms())?;
    st.raw_bind_parameter(at + 6, e.received_ms)?;
    st.raw_bind_parameter(at + 7, ev.as_bytes())?;
    st.raw_bind_parameter(at + 8, i.is_some())?;
    st.raw_bind_parameter(at + 9, i.map(|i| &i.user))?;
    st.raw_bind_parameter(at + 10, i.map(|i| &i.app))?;
    st.raw_bind_parameter(at + 11, i.map(|i| i.action))?;
    st.raw_bind_parameter(at + 12, i.map(|i| &i.rules))?;
    st.raw_bind_parameter(at + 13, i.and_then(|i| i.severity))?;
    st.raw_bind_parameter(at + 14, i.map(|i| &i.tags))?;
    st.raw_bind_parameter(at + 15, i.map(|i| i.response))?;
    st.raw_bind_parameter(at + 16, i.map(|i| &i.url))?;
    st.raw_bind_parameter(at + 17, i.and_then(|i| i.target.as_ref()))?;
    st.raw_bind_parameter(at + 18, i.map(|i| &i.session))?;
    st.raw_bind_parameter(at + 19, i.map(|i| &i.tab))?;
    st.raw_bind_parameter(at + 20, i.map(|i| i.trusted))
}

/// Appends records to the events table, one row per statement (see
/// [`insert_each`]).
fn insert_events(tx: &Transaction<'_>, rows: &[NewEvent<'_>]) -> Result<(), StoreError> {
    insert_each(tx, EVENT_INSERT, rows, bind_event)?;
    Ok(())
}

/// Full-text rows (`events_fts`) for every indexable event stored from leaf
/// `first` on: the events of one group commit, in one statement, run by the
/// writer just before the commit, so what is acknowledged is searchable.
///
/// One statement per commit matters: SQLite opens a statement savepoint
/// around every statement that writes a virtual table inside a transaction,
/// and FTS5 flushes its pending terms to a new on-disk segment at each
/// savepoint. Per-row inserts (the old trigger) or per-job inserts wrote
/// many tiny segments per commit, each journaled and then merged again;
/// this writes one segment per commit.
fn index_full_text(tx: &Transaction<'_>, first: i64) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO events_fts (rowid, url, target)
         SELECT leaf_index, url, target FROM events WHERE leaf_index >= ?1 AND body_ok",
    )?
    .execute([first])?;
    Ok(())
}

/// The rule and tag rows of stored events (`event_rules`, `event_tags`),
/// written in the job that stores the events, from values decoded before
/// the writer.
#[derive(Default)]
struct SearchRows<'a> {
    rules: Vec<(&'a str, i64)>,
    tags: Vec<(&'a str, i64)>,
}

impl<'a> SearchRows<'a> {
    fn push(&mut self, leaf: i64, f: &'a IndexFields) {
        self.rules
            .extend(f.rule_ids.iter().map(|r| (r.as_str(), leaf)));
        self.tags
            .extend(f.tag_ids.iter().map(|t| (t.as_str(), leaf)));
    }

    fn insert(&self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        let pair = |st: &mut rusqlite::Statement<'_>, &(v, leaf): &(&str, i64)| {
            st.raw_bind_parameter(1, v)?;
            st.raw_bind_parameter(2, leaf)
        };
        insert_each(
            tx,
            "INSERT OR IGNORE INTO event_rules (rule, leaf_index) VALUES (?1, ?2)",
            &self.rules,
            pair,
        )?;
        insert_each(
            tx,
            "INSERT OR IGNORE INTO event_tags (tag, leaf_index) VALUES (?1, ?2)",
            &self.tags,
            pair,
        )?;
        Ok(())
    }
}

/// Runs the single-row INSERT `sql` (prepared once, cached) for each row.
///
/// One row per statement on purpose: a multi-row INSERT inside a
/// transaction gets a statement journal (SQLite must be able to undo the
/// rows before a failing one), which copies every page the statement
/// touches; a one-row INSERT with no triggers needs none. On the ingest
/// load that copying was ≈ 9% of the writer's time (docs/collector.md).
fn insert_each<T>(
    conn: &Connection,
    sql: &str,
    rows: impl IntoIterator<Item = T>,
    bind: impl Fn(&mut rusqlite::Statement<'_>, T) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let mut st = conn.prepare_cached(sql)?;
    for row in rows {
        bind(&mut st, row)?;
        st.raw_execute()?;
    }
    Ok(())
}

/// Signs `action` on the collector's own chain and records it, inside `tx`;
/// returns the record's leaf index.
pub(super) fn append_audit(
    tx: &Transaction<'_>,
    ctx: &WriterCtx,
    action: &AdminAction,
    now_ms: i64,
) -> Result<i64, StoreError> {
    let (seq, tip): (i64, Option<Vec<u8>>) = tx.query_row(
        "SELECT high_water, tip_hash FROM devices WHERE id = ?1",
        [ctx.collector_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let hash = match tip {
        Some(t) => blob32(t, "collector tip hash")?,
        None => ZERO_HASH,
    };
    let mut signer = DeviceSigner::new(
        &ctx.seed,
        ChainTip {
            seq: seq as u64,
            hash,
        },
    );
    let body = action.body();
    let ev = signer.sign(now_ms, &body);
    let leaf = next_leaf(tx)?;
    let hashes = RecordHashes::of(&ev);
    let fields = IndexFields::from_body(body);
    insert_events(
        tx,
        &[NewEvent {
            leaf,
            device_id: ctx.collector_id,
            ev: &ev,
            hash: &hashes.record,
            index: Some(&fields),
            received_ms: now_ms,
        }],
    )?;
    let mut search = SearchRows::default();
    search.push(leaf, &fields);
    search.insert(tx)?;
    log_append(tx, leaf, &[hashes.leaf])?;
    tx.execute(
        "UPDATE devices SET high_water = ?1, tip_hash = ?2 WHERE id = ?3",
        params![ev.seq() as i64, &hashes.record[..], ctx.collector_id],
    )?;
    tx.execute(
        "INSERT INTO admin_audit (at_ms, actor, action, subject, details, leaf_index)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            now_ms,
            action.actor,
            action.action,
            action.subject,
            action.details.to_string(),
            leaf
        ],
    )?;
    Ok(leaf)
}

fn insert_token(
    tx: &Transaction<'_>,
    t: &NewToken,
    device_id: Option<i64>,
    created_by: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO tokens (id, secret_hash, role, created_ms, created_by, expires_ms,
            max_uses, group_name, device_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            t.id,
            &t.secret_hash[..],
            t.role.as_str(),
            now_ms,
            created_by,
            t.expires_ms,
            t.max_uses.map(|u| u as i64),
            t.group,
            device_id
        ],
    )?;
    Ok(())
}

const DEVICE_COLS: &str = "id, key, user, device_name, enrolled_ms, revoked_ms, enroll_token_id,
    claims, high_water";

fn device_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Device, Vec<u8>, String)> {
    let key: Vec<u8> = r.get(1)?;
    let claims: String = r.get(7)?;
    Ok((
        Device {
            id: r.get(0)?,
            key: DeviceKey([0; 32]),
            user: r.get(2)?,
            device_name: r.get(3)?,
            enrolled_ms: r.get(4)?,
            revoked_ms: r.get(5)?,
            enroll_token_id: r.get(6)?,
            claims: serde_json::Value::Null,
            high_water: r.get::<_, i64>(8)? as u64,
        },
        key,
        claims,
    ))
}

fn finish_device(row: Option<(Device, Vec<u8>, String)>) -> Result<Option<Device>, StoreError> {
    let Some((mut d, key, claims)) = row else {
        return Ok(None);
    };
    d.key = DeviceKey(blob32(key, "device key")?);
    d.claims = serde_json::from_str(&claims)
        .map_err(|e| StoreError::Corrupt(format!("device claims: {e}")))?;
    Ok(Some(d))
}

fn query_device(
    conn: &Connection,
    where_: &str,
    arg: &dyn rusqlite::ToSql,
) -> Result<Option<Device>, StoreError> {
    let sql = format!("SELECT {DEVICE_COLS} FROM devices WHERE {where_}");
    let row = conn
        .prepare_cached(&sql)?
        .query_row([arg], device_row)
        .optional()?;
    finish_device(row)
}

/// The stored chain of one device, read inside the write transaction.
struct TxChain<'a> {
    tx: &'a Transaction<'a>,
    device_id: i64,
    high_water: u64,
    error: RefCell<Option<rusqlite::Error>>,
}

impl TxChain<'_> {
    fn lookup(&self, seq: u64) -> rusqlite::Result<Option<(Hash, Hash)>> {
        let mut st = self.tx.prepare_cached(
            "SELECT hash, prev_hash FROM events WHERE device_id = ?1 AND seq = ?2",
        )?;
        st.query_row(params![self.device_id, seq as i64], |r| {
            let h: Vec<u8> = r.get(0)?;
            let p: Vec<u8> = r.get(1)?;
            Ok((h, p))
        })
        .optional()
        .map(|o| o.and_then(|(h, p)| Some((<Hash>::try_from(h).ok()?, <Hash>::try_from(p).ok()?))))
    }
}

impl StoredChain for TxChain<'_> {
    fn stored(&self, seq: u64) -> Option<(Hash, Hash)> {
        // Nothing is stored above the high-water mark: skip the read.
        if seq == 0 || seq > self.high_water || seq > i64::MAX as u64 {
            return None;
        }
        match self.lookup(seq) {
            Ok(v) => v,
            Err(e) => {
                self.error.borrow_mut().get_or_insert(e);
                None
            }
        }
    }

    fn high_water(&self) -> u64 {
        self.high_water
    }
}

fn ingest_tx(
    tx: &Transaction<'_>,
    device_id: i64,
    batch: &VerifiedBatch,
    received_ms: i64,
) -> Result<Result<IngestOutcome, IngestRefusal>, StoreError> {
    let row: Option<(i64, Option<i64>, String)> = tx
        .prepare_cached("SELECT high_water, revoked_ms, kind FROM devices WHERE id = ?1")?
        .query_row([device_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((high_water, revoked, kind)) = row else {
        return Ok(Err(IngestRefusal::UnknownDevice));
    };
    if revoked.is_some() {
        return Ok(Err(IngestRefusal::Revoked));
    }
    if kind != "agent" {
        // The collector's own chain is written only by the collector.
        return Ok(Err(IngestRefusal::UnknownDevice));
    }
    let chain = TxChain {
        tx,
        device_id,
        high_water: high_water as u64,
        error: RefCell::new(None),
    };
    let plan = ingest::plan(batch, &chain);
    if let Some(e) = chain.error.take() {
        return Err(e.into());
    }
    let mut tip: Option<(u64, Hash)> = None;
    let first_leaf = next_leaf(tx)?;
    let mut leaves: Vec<Hash> = Vec::with_capacity(plan.accept.len());
    let mut search = SearchRows::default();
    let mut rows = Vec::with_capacity(plan.accept.len());
    for (leaf, &i) in (first_leaf..).zip(&plan.accept) {
        let r = &batch.records[i];
        let (Ok(ev), Some(h)) = (&r.record, &r.hashes) else {
            return Err(StoreError::Corrupt("planned an unverified record".into()));
        };
        rows.push(NewEvent {
            leaf,
            device_id,
            ev,
            hash: &h.record,
            index: r.index.as_ref(),
            received_ms,
        });
        if let Some(f) = &r.index {
            search.push(leaf, f);
        }
        leaves.push(h.leaf);
        if ev.seq() == plan.high_water {
            tip = Some((ev.seq(), h.record));
        }
    }
    insert_events(tx, &rows)?;
    search.insert(tx)?;
    log_append(tx, first_leaf, &leaves)?;
    for g in &plan.new_gaps {
        tx.prepare_cached(
            "INSERT INTO gaps (device_id, first_seq, last_seq, detected_ms) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            device_id,
            g.first_seq as i64,
            g.last_seq as i64,
            received_ms
        ])?;
    }
    for &s in &plan.fills {
        tx.prepare_cached(
            "UPDATE gaps SET filled = filled + 1,
                closed_ms = CASE WHEN filled + 1 = last_seq - first_seq + 1 THEN ?3 END
             WHERE device_id = ?1 AND first_seq <= ?2 AND last_seq >= ?2 AND closed_ms IS NULL",
        )?
        .execute(params![device_id, s as i64, received_ms])?;
    }
    if let Some((seq, hash)) = tip {
        tx.prepare_cached("UPDATE devices SET high_water = ?1, tip_hash = ?2 WHERE id = ?3")?
            .execute(params![seq as i64, &hash[..], device_id])?;
    }
    Ok(Ok(IngestOutcome {
        accepted: plan.accept.len() as u64,
        duplicates: plan.duplicates,
        rejected: plan.rejected,
        gaps: plan.new_gaps,
        reordered: plan.reordered,
        high_water: plan.high_water,
    }))
}

fn enroll_tx(
    tx: &Transaction<'_>,
    ctx: &WriterCtx,
    e: &Enrollment,
) -> Result<Result<Device, EnrollRefusal>, StoreError> {
    let Some(token) = read_token(tx, &e.token_id)? else {
        return Ok(Err(EnrollRefusal::UnknownToken));
    };
    if token.role != Role::Enroll
        || !crate::auth::hash_matches(&token.secret_hash, &e.presented_hash)
        || token.revoked_ms.is_some()
    {
        return Ok(Err(EnrollRefusal::UnknownToken));
    }
    // Before the token's expiry and uses: a device whose enrollment answer
    // was lost retries with the same (now used-up) token, and must learn
    // that its key is enrolled, so that it re-enrolls.
    if let Some(d) = query_device(tx, "key = ?1", &&e.device_key.0[..])? {
        return Ok(Err(if d.revoked_ms.is_some() {
            EnrollRefusal::Revoked
        } else {
            EnrollRefusal::AlreadyEnrolled
        }));
    }
    if token.expires_ms.is_some_and(|x| x <= e.now_ms) {
        return Ok(Err(EnrollRefusal::Expired));
    }
    if token.max_uses.is_some_and(|m| token.uses >= m) {
        return Ok(Err(EnrollRefusal::UsedUp));
    }
    tx.execute(
        "UPDATE tokens SET uses = uses + 1 WHERE id = ?1",
        [&e.token_id],
    )?;
    tx.execute(
        "INSERT INTO devices (key, kind, user, device_name, enrolled_ms, enroll_token_id, claims)
         VALUES (?1, 'agent', ?2, ?3, ?4, ?5, ?6)",
        params![
            &e.device_key.0[..],
            e.user,
            e.device_name,
            e.now_ms,
            e.token_id,
            e.claims.to_string()
        ],
    )?;
    let device_id = tx.last_insert_rowid();
    let actor = format!("enroll-token:{}", e.token_id);
    insert_token(tx, &e.credential, Some(device_id), &actor, e.now_ms)?;
    append_audit(
        tx,
        ctx,
        &AdminAction {
            action: "device.enroll",
            actor,
            subject: e.device_key.to_hex(),
            details: serde_json::json!({
                "user": e.user,
                "device_name": e.device_name,
                "group": token.group,
                "credential_id": e.credential.id,
            }),
        },
        e.now_ms,
    )?;
    query_device(tx, "id = ?1", &device_id)?
        .map(Ok)
        .ok_or_else(|| StoreError::Corrupt("enrolled device vanished".into()))
}

fn credential_count(conn: &Connection, device_id: i64) -> Result<u64, StoreError> {
    let n: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM tokens WHERE device_id = ?1 AND role = 'device'")?
        .query_row([device_id], |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

/// Re-issues a device credential. The token must be a valid enrollment
/// token (known, not revoked, not expired). The token the device enrolled
/// with needs no use left and uses none: the device was counted when it
/// enrolled, and a single-use token must still recover a lost enrollment
/// response. Another token must be of the device's group and spends a use.
fn reenroll_tx(
    tx: &Transaction<'_>,
    ctx: &WriterCtx,
    r: &ReEnrollment,
) -> Result<Result<ReEnrolled, EnrollRefusal>, StoreError> {
    let Some(token) = read_token(tx, &r.token_id)? else {
        return Ok(Err(EnrollRefusal::UnknownToken));
    };
    if token.role != Role::Enroll
        || !crate::auth::hash_matches(&token.secret_hash, &r.presented_hash)
        || token.revoked_ms.is_some()
    {
        return Ok(Err(EnrollRefusal::UnknownToken));
    }
    if token.expires_ms.is_some_and(|x| x <= r.now_ms) {
        return Ok(Err(EnrollRefusal::Expired));
    }
    let Some(d) = query_device(tx, "key = ?1 AND kind = 'agent'", &&r.device_key.0[..])? else {
        return Ok(Err(EnrollRefusal::NotEnrolled));
    };
    if d.revoked_ms.is_some() {
        return Ok(Err(EnrollRefusal::Revoked));
    }
    let same_token = d.enroll_token_id.as_deref() == Some(token.id.as_str());
    let group = if same_token {
        token.group.clone()
    } else {
        let enrolled_group = match &d.enroll_token_id {
            Some(id) => read_token(tx, id)?.and_then(|t| t.group),
            None => None,
        };
        if enrolled_group != token.group {
            return Ok(Err(EnrollRefusal::WrongGroup));
        }
        if token.max_uses.is_some_and(|m| token.uses >= m) {
            return Ok(Err(EnrollRefusal::UsedUp));
        }
        enrolled_group
    };
    if credential_count(tx, d.id)? != r.generation {
        return Ok(Err(EnrollRefusal::StaleChallenge));
    }
    if !same_token {
        tx.execute(
            "UPDATE tokens SET uses = uses + 1 WHERE id = ?1",
            [&r.token_id],
        )?;
    }
    let revoked = tx.execute(
        "UPDATE tokens SET revoked_ms = ?1 WHERE device_id = ?2 AND revoked_ms IS NULL",
        params![r.now_ms, d.id],
    )? as u64;
    let actor = format!("enroll-token:{}", r.token_id);
    insert_token(tx, &r.credential, Some(d.id), &actor, r.now_ms)?;
    append_audit(
        tx,
        ctx,
        &AdminAction {
            action: "device.reenroll",
            actor,
            subject: r.device_key.to_hex(),
            details: serde_json::json!({
                "user": d.user,
                "device_name": d.device_name,
                "group": group,
                "credential_id": r.credential.id,
                "credentials_revoked": revoked,
                "high_water": d.high_water,
                "enrolled_with_this_token": same_token,
            }),
        },
        r.now_ms,
    )?;
    Ok(Ok(ReEnrolled {
        device: d,
        credentials_revoked: revoked,
    }))
}

fn read_token(conn: &Connection, id: &str) -> Result<Option<TokenRecord>, StoreError> {
    type Row = (
        String,
        Vec<u8>,
        String,
        i64,
        Option<i64>,
        Option<i64>,
        i64,
        Option<String>,
        Option<i64>,
        Option<i64>,
    );
    let row: Option<Row> = conn
        .prepare_cached(
            "SELECT id, secret_hash, role, created_ms, expires_ms, max_uses, uses, group_name,
                device_id, revoked_ms FROM tokens WHERE id = ?1",
        )?
        .query_row([id], |r| r.try_into())
        .optional()?;
    let Some((id, hash, role, created_ms, expires_ms, max_uses, uses, group, device_id, revoked)) =
        row
    else {
        return Ok(None);
    };
    Ok(Some(TokenRecord {
        id,
        secret_hash: blob32(hash, "token hash")?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown role {role:?}")))?,
        created_ms,
        expires_ms,
        max_uses: max_uses.map(|m| m.max(0) as u64),
        uses: uses.max(0) as u64,
        group,
        device_id,
        revoked_ms: revoked,
    }))
}

impl Store for SqliteStore {
    fn stats(&self) -> Result<StoreStats, StoreError> {
        let (pages, page_size, log_size) = self.read(|c| {
            let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            let size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            let log: i64 = c.query_row(
                "SELECT COALESCE(MAX(leaf_index) + 1, 0) FROM events",
                [],
                |r| r.get(0),
            )?;
            Ok((pages, size, log))
        })?;
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let wal_bytes = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        Ok(StoreStats {
            size_bytes: (pages.max(0) as u64) * (page_size.max(0) as u64) + wal_bytes,
            log_size: log_size.max(0) as u64,
        })
    }

    fn collector_key(&self) -> DeviceKey {
        self.collector_key
    }

    fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.read(|c| read_token(c, id))
    }

    fn log_verifier_key(&self) -> String {
        self.verifier_key.clone()
    }

    fn checkpoint(&self, now_ms: i64) -> Result<Option<SignedCheckpoint>, StoreError> {
        self.publish(move |tx, ctx| checkpoint_tx(tx, ctx, now_ms))
    }

    fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, StoreError> {
        self.read(|c| {
            finish_checkpoint(
                c.query_row(LATEST_CHECKPOINT, [], checkpoint_row)
                    .optional()?,
            )
        })
    }

    fn inclusion_proof(&self, leaf: u64, size: u64) -> Result<Option<Vec<Hash>>, StoreError> {
        self.read(|c| {
            let tree = log_tree(c)?;
            if leaf >= size || size > tree.size() {
                return Ok(None);
            }
            tree.inclusion_proof(leaf, size)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("evidence log: {e}")))
        })
    }

    fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<Result<Vec<Hash>, u64>, StoreError> {
        self.read(|c| {
            let tree = log_tree(c)?;
            if new_size > tree.size() {
                return Ok(Err(tree.size()));
            }
            tree.consistency_proof(old_size, new_size)
                .map(Ok)
                .map_err(|e| StoreError::Corrupt(format!("evidence log: {e}")))
        })
    }

    fn create_token(&self, token: NewToken, actor: &Actor) -> Result<(), StoreError> {
        let actor = actor.0.clone();
        self.write(true, move |tx, ctx| {
            let now = crate::now_ms();
            insert_token(tx, &token, None, &actor, now)?;
            append_audit(
                tx,
                ctx,
                &AdminAction {
                    action: "token.create",
                    actor,
                    subject: token.id.clone(),
                    details: serde_json::json!({
                        "role": token.role.as_str(),
                        "expires_ms": token.expires_ms,
                        "max_uses": token.max_uses,
                        "group": token.group,
                    }),
                },
                now,
            )
            .map(|_| ())
        })
    }

    fn device(&self, key: &DeviceKey) -> Result<Option<Device>, StoreError> {
        self.read(|c| query_device(c, "key = ?1", &&key.0[..]))
    }

    fn device_by_id(&self, id: i64) -> Result<Option<Device>, StoreError> {
        self.read(|c| query_device(c, "id = ?1", &id))
    }

    fn enroll(&self, e: Enrollment) -> Result<Result<Device, EnrollRefusal>, StoreError> {
        self.write(true, move |tx, ctx| enroll_tx(tx, ctx, &e))
    }

    fn credential_generation(&self, key: &DeviceKey) -> Result<u64, StoreError> {
        self.read(
            |c| match query_device(c, "key = ?1 AND kind = 'agent'", &&key.0[..])? {
                Some(d) => credential_count(c, d.id),
                None => Ok(0),
            },
        )
    }

    fn reenroll_challenge_key(&self) -> [u8; 32] {
        self.challenge_key
    }

    fn reenroll(&self, r: ReEnrollment) -> Result<Result<ReEnrolled, EnrollRefusal>, StoreError> {
        self.write(true, move |tx, ctx| reenroll_tx(tx, ctx, &r))
    }

    fn device_statuses(
        &self,
        silent_since_ms: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DeviceStatus>, StoreError> {
        // The newest record is the one at the high-water mark: one lookup
        // in UNIQUE(device_id, seq) per device. (SQLite lets WHERE and
        // ORDER BY name a result column's alias.)
        let sql = format!(
            "SELECT {DEVICE_COLS},
                (SELECT received_ms FROM events e
                  WHERE e.device_id = devices.id AND e.seq = devices.high_water) AS last_seen,
                (SELECT COUNT(*) FROM gaps g
                  WHERE g.device_id = devices.id AND g.closed_ms IS NULL)
             FROM devices
             WHERE kind = 'agent' AND COALESCE(last_seen, enrolled_ms) < ?1
             ORDER BY COALESCE(last_seen, enrolled_ms), id LIMIT ?2"
        );
        self.read(|c| {
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(
                params![
                    silent_since_ms.unwrap_or(i64::MAX),
                    limit.min(i64::MAX as usize) as i64
                ],
                |r| {
                    Ok((
                        device_row(r)?,
                        r.get::<_, Option<i64>>(9)?,
                        r.get::<_, i64>(10)?,
                    ))
                },
            )?;
            let mut out = Vec::new();
            for row in rows {
                let (d, last_seen_ms, open_gaps) = row?;
                if let Some(device) = finish_device(Some(d))? {
                    out.push(DeviceStatus {
                        device,
                        last_seen_ms,
                        open_gaps: open_gaps.max(0) as u64,
                    });
                }
            }
            Ok(out)
        })
    }

    fn record_action(&self, action: AdminAction, now_ms: i64) -> Result<u64, StoreError> {
        self.write(true, move |tx, ctx| {
            Ok(append_audit(tx, ctx, &action, now_ms)?.max(0) as u64)
        })
    }

    fn revoke_token(
        &self,
        id: &str,
        now_ms: i64,
        actor: &Actor,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let id = id.to_owned();
        let actor = actor.0.clone();
        self.write(true, move |tx, ctx| {
            let Some(t) = read_token(tx, &id)? else {
                return Ok(None);
            };
            if t.revoked_ms.is_some() {
                return Ok(Some(t));
            }
            tx.execute(
                "UPDATE tokens SET revoked_ms = ?1 WHERE id = ?2",
                params![now_ms, id],
            )?;
            append_audit(
                tx,
                ctx,
                &AdminAction {
                    action: "token.revoke",
                    actor,
                    subject: id,
                    details: serde_json::json!({
                        "role": t.role.as_str(),
                        "group": t.group,
                        "device_id": t.device_id,
                        "uses": t.uses,
                    }),
                },
                now_ms,
            )?;
            Ok(Some(TokenRecord {
                revoked_ms: Some(now_ms),
                ..t
            }))
        })
    }

    fn revoke_device(
        &self,
        key: &DeviceKey,
        now_ms: i64,
        actor: &Actor,
    ) -> Result<Option<Device>, StoreError> {
        let key = *key;
        let actor = actor.0.clone();
        self.write(true, move |tx, ctx| {
            let Some(d) = query_device(tx, "key = ?1 AND kind = 'agent'", &&key.0[..])? else {
                return Ok(None);
            };
            if d.revoked_ms.is_some() {
                return Ok(Some(d));
            }
            tx.execute(
                "UPDATE devices SET revoked_ms = ?1 WHERE id = ?2",
                params![now_ms, d.id],
            )?;
            let creds = tx.execute(
                "UPDATE tokens SET revoked_ms = ?1 WHERE device_id = ?2 AND revoked_ms IS NULL",
                params![now_ms, d.id],
            )?;
            append_audit(
                tx,
                ctx,
                &AdminAction {
                    action: "device.revoke",
                    actor,
                    subject: key.to_hex(),
                    details: serde_json::json!({
                        "user": d.user,
                        "device_name": d.device_name,
                        "high_water": d.high_water,
                        "credentials_revoked": creds,
                    }),
                },
                now_ms,
            )?;
            Ok(Some(Device {
                revoked_ms: Some(now_ms),
                ..d
            }))
        })
    }

    fn ingest(
        &self,
        device_id: i64,
        batch: VerifiedBatch,
        received_ms: i64,
    ) -> Result<Result<IngestOutcome, IngestRefusal>, StoreError> {
        self.submit(false, false, false, move |tx, _| {
            ingest_tx(tx, device_id, &batch, received_ms)
        })
    }

    fn records(
        &self,
        key: &DeviceKey,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT e.seq, e.record FROM events e JOIN devices d ON d.id = e.device_id
                 WHERE d.key = ?1 AND e.seq > ?2 ORDER BY e.seq LIMIT ?3",
            )?;
            let rows = st.query_map(
                params![&key.0[..], after.min(i64::MAX as u64) as i64, limit as i64],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Vec<u8>>(1)?)),
            )?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn gaps(&self, key: &DeviceKey) -> Result<Vec<Gap>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT g.first_seq, g.last_seq, g.detected_ms, g.filled, g.closed_ms
                 FROM gaps g JOIN devices d ON d.id = g.device_id
                 WHERE d.key = ?1 ORDER BY g.id",
            )?;
            let rows = st.query_map([&key.0[..]], |r| {
                Ok(Gap {
                    first_seq: r.get::<_, i64>(0)? as u64,
                    last_seq: r.get::<_, i64>(1)? as u64,
                    detected_ms: r.get(2)?,
                    filled: r.get::<_, i64>(3)? as u64,
                    closed_ms: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn audit_trail(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT at_ms, actor, action, subject, details, leaf_index FROM admin_audit
                 ORDER BY id LIMIT ?1",
            )?;
            let rows = st.query_map([limit as i64], |r| {
                let details: String = r.get(4)?;
                Ok(AuditEntry {
                    at_ms: r.get(0)?,
                    actor: r.get(1)?,
                    action: r.get(2)?,
                    subject: r.get(3)?,
                    details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
                    leaf_index: r.get::<_, i64>(5)? as u64,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use sessiontrail_core::event::{Classification, EventBody, EventKind};
    use sessiontrail_core::{ChainTip, DeviceSigner, KeyStatus};

    use super::*;
    use crate::store::{Enrollment, NewToken, Role};

    /// A store in `dir` with an unlimited enrollment token `"enroll"`.
    fn store_with_enroll_token(dir: &Path) -> SqliteStore {
        let store = SqliteStore::open(dir, SqliteOptions::default()).unwrap();
        store
            .create_token(
                NewToken {
                    id: "enroll".into(),
                    secret_hash: [7; 32],
                    role: Role::Enroll,
                    expires_ms: None,
                    max_uses: None,
                    group: None,
                },
                &Actor("admin".into()),
            )
            .unwrap();
        store
    }

    /// Enrolls the key of `seed` with the `"enroll"` token.
    fn enroll_seed(store: &SqliteStore, seed: u8, user: &str) -> (DeviceSigner, i64) {
        let signer = DeviceSigner::new(&[seed; 32], ChainTip::GENESIS);
        let dev = store
            .enroll(Enrollment {
                token_id: "enroll".into(),
                presented_hash: [7; 32],
                device_key: signer.public_key(),
                user: user.into(),
                device_name: format!("d{seed}"),
                claims: serde_json::json!({}),
                credential: NewToken {
                    id: format!("dev{seed}"),
                    secret_hash: [seed; 32],
                    role: Role::Device,
                    expires_ms: None,
                    max_uses: None,
                    group: None,
                },
                now_ms: 1,
            })
            .unwrap()
            .unwrap();
        (signer, dev.id)
    }

    /// With `store_cpu`, the writer, its fsync thread and the checkpointer
    /// run only on that CPU (what `serve` asks for; see `crate::cpu`).
    /// Stores opened by tests running alongside are not pinned, so on a
    /// machine with two or more CPUs only this store's threads match.
    #[test]
    fn the_store_threads_run_on_the_store_cpu() {
        let cpu = *crate::cpu::allowed().unwrap().last().unwrap();
        let pinned = |name: &str| {
            crate::cpu::proc_threads::all()
                .iter()
                .filter(|t| t.name == name && t.cpus == cpu.to_string())
                .count()
        };
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(
            dir.path(),
            SqliteOptions {
                store_cpu: Some(cpu),
                ..SqliteOptions::default()
            },
        )
        .unwrap();
        // The threads pin themselves as they start; a write has gone
        // through the writer and the syncer once it is answered.
        store.write(true, |_, _| Ok(())).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        // Thread names are cut to 15 bytes (see `proc_threads::Thread`).
        for name in ["sqlite-writer", "sqlite-sync", "sqlite-checkpoi"] {
            while pinned(name) == 0 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{name} is not on CPU {cpu}"
                );
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }

    /// Spare work that counts down `left` tasks and notes the thread that
    /// ran each.
    #[derive(Debug, Default)]
    struct Countdown {
        left: std::sync::atomic::AtomicUsize,
        ran_on: Mutex<Vec<String>>,
    }

    impl Countdown {
        fn new(left: usize) -> Arc<Countdown> {
            let c = Countdown::default();
            c.left.store(left, Ordering::SeqCst);
            Arc::new(c)
        }

        fn ran(&self) -> Vec<String> {
            lock(&self.ran_on).clone()
        }

        fn left(&self) -> usize {
            self.left.load(Ordering::SeqCst)
        }
    }

    impl SpareWork for Countdown {
        fn run_one(&self) -> bool {
            let took = self
                .left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if took {
                let name = std::thread::current().name().unwrap_or("").to_owned();
                lock(&self.ran_on).push(name);
            }
            took
        }
    }

    /// `n` queued jobs that must never run (the tests only group them).
    fn queued(n: usize) -> (SyncSender<Job>, Receiver<Job>) {
        let (tx, rx) = sync_channel::<Job>(64);
        for _ in 0..n {
            let run: JobFn = Box::new(|_, _| unreachable!("only grouped"));
            tx.send(Job {
                isolated: false,
                durable_before_visible: false,
                run,
            })
            .unwrap();
        }
        (tx, rx)
    }

    /// A small group, soon after the previous one, waits for spare work
    /// (here all of it: the tasks take no time).
    #[test]
    fn a_small_group_lends_the_writer_soon_after_the_previous_one() {
        let (_tx, rx) = queued(3);
        let first = rx.recv().unwrap();
        let spare = Countdown::new(10);
        let jobs = gather_group(&rx, first, Some(&*spare), Instant::now());
        assert_eq!(jobs.len(), 3);
        assert_eq!(spare.ran().len(), 10);
    }

    /// A group of MIN_GROUP jobs or more, or one that comes GROUP_PERIOD or
    /// more after the previous one began, commits at once: the writer is
    /// then what ingest waits for.
    #[test]
    fn a_full_or_late_group_does_no_spare_work() {
        let (_tx, rx) = queued(MIN_GROUP);
        let first = rx.recv().unwrap();
        let spare = Countdown::new(100);
        let jobs = gather_group(&rx, first, Some(&*spare), Instant::now());
        assert_eq!(jobs.len(), MIN_GROUP);
        assert!(spare.ran().is_empty());
        let (_tx, rx) = queued(2);
        let first = rx.recv().unwrap();
        let long_ago = Instant::now() - 2 * GROUP_PERIOD;
        assert_eq!(gather_group(&rx, first, Some(&*spare), long_ago).len(), 2);
        assert!(spare.ran().is_empty());
        // Without spare work, a group is what was queued.
        let (_tx, rx) = queued(2);
        let first = rx.recv().unwrap();
        assert_eq!(gather_group(&rx, first, None, Instant::now()).len(), 2);
    }

    /// With nothing to write, the writer thread itself runs queued spare
    /// work, all of it, and still answers the writes.
    #[test]
    fn an_idle_writer_runs_the_spare_work() {
        let dir = tempfile::tempdir().unwrap();
        let spare = Countdown::new(0);
        let opts = SqliteOptions {
            spare_work: Some(spare.clone() as Arc<dyn SpareWork>),
            ..SqliteOptions::default()
        };
        let store = SqliteStore::open(dir.path(), opts).unwrap();
        spare.left.store(5, Ordering::SeqCst);
        // A write wakes the writer; after it, the queue is empty.
        store.write(true, |_, _| Ok(())).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while spare.left() > 0 {
            assert!(Instant::now() < deadline, "{:?}", spare.ran());
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(spare.ran(), vec!["sqlite-writer".to_owned(); 5]);
        store.write(true, |_, _| Ok(())).unwrap();
    }

    /// The checkpointer runs at a lower priority than the writer (they
    /// share the store's CPU); the writer keeps the default.
    #[test]
    fn the_checkpointer_yields_to_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
        store.write(true, |_, _| Ok(())).unwrap();
        // Threads start at the process's own nice value (0 unless the test
        // runner was started niced); an unprivileged thread can only lower.
        let base = rustix::process::getpriority_process(None).unwrap() as i64;
        let want = base.max(CHECKPOINTER_NICE as i64);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let t = crate::cpu::proc_threads::all();
            let of = |name: &str| -> Vec<i64> {
                t.iter()
                    .filter(|x| x.name == name)
                    .map(|x| x.nice)
                    .collect()
            };
            let (writers, checkpointers) = (of("sqlite-writer"), of("sqlite-checkpoi"));
            assert!(
                !writers.is_empty() && writers.iter().all(|&n| n == base),
                "{t:?}"
            );
            if !checkpointers.is_empty() && checkpointers.iter().all(|&n| n == want) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "checkpointers at {checkpointers:?}, want {want}"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        drop(store);
    }

    /// Published commitments commit at `synchronous=FULL` (visible only
    /// once on disk); everything else at NORMAL, made durable by the syncer
    /// before it is answered.
    #[test]
    fn only_publishing_groups_commit_at_full_sync() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
        let setting = |tx: &Transaction<'_>| -> Result<i64, StoreError> {
            Ok(tx.query_row("PRAGMA synchronous", [], |r| r.get(0))?)
        };
        // 1 = NORMAL, 2 = FULL
        assert_eq!(store.write(true, move |tx, _| setting(tx)).unwrap(), 1);
        assert_eq!(store.publish(move |tx, _| setting(tx)).unwrap(), 2);
        assert_eq!(store.write(true, move |tx, _| setting(tx)).unwrap(), 1);
    }

    #[test]
    fn an_action_index_with_an_in_list_is_rebuilt_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = SqliteStore::open(dir.path(), SqliteOptions::default())
            .unwrap()
            .path()
            .to_owned();
        let index_sql = |c: &Connection| -> String {
            c.query_row(
                "SELECT sql FROM sqlite_schema WHERE name = 'events_action_time'",
                [],
                |r| r.get(0),
            )
            .unwrap()
        };
        {
            // The form stores were created with before.
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "DROP INDEX events_action_time;
                 CREATE INDEX events_action_time ON events(action, time_ms)
                 WHERE action NOT IN ('click', 'input', 'response_resolved', 'route_change');",
            )
            .unwrap();
            assert!(index_sql(&c).contains("NOT IN"));
        }
        drop(SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap());
        let c = Connection::open(&path).unwrap();
        let sql = index_sql(&c);
        assert!(
            !sql.contains("NOT IN") && sql.contains("action <> 'route_change'"),
            "{sql}"
        );
    }

    /// A store whose collector key is lost or replaced refuses to open
    /// instead of signing on under a new identity.
    #[test]
    fn a_store_without_its_own_key_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        drop(SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap());
        let key = dir.path().join(KEY_FILE);
        let original = std::fs::read_to_string(&key).unwrap();

        std::fs::remove_file(&key).unwrap();
        let err = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap_err();
        assert!(err.to_string().contains("is missing"), "{err}");
        assert!(!key.exists(), "no new key was made");

        std::fs::write(&key, hex::encode([0x42u8; 32])).unwrap();
        let err = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap_err();
        assert!(
            err.to_string().contains("restore the store's own key"),
            "{err}"
        );

        std::fs::write(&key, original).unwrap();
        SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
    }

    /// The store's inclusion and consistency proofs, whose low levels are
    /// recomputed from records ([`STORED_FROM_LEVEL`]), verify against a
    /// naive recomputation of the tree from the stored records, for every
    /// size and index, across appends of uneven lengths.
    #[test]
    fn proofs_match_a_naive_tree_at_every_size() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_enroll_token(dir.path());
        let (mut signer, dev_id) = enroll_seed(&store, 9, "u@acme.test");
        for n in [1, 2, 3, 5, 8, 13, 7, 1, 16, 9] {
            let events: Vec<_> = (0..n)
                .map(|i| {
                    let body = EventBody::lifecycle(EventKind::Click, "u@acme.test", "hr");
                    signer.sign(1_000 + i, &body)
                })
                .collect();
            let bytes = sessiontrail_core::batch::encode(&events);
            let verified =
                crate::ingest::verify(signer.public_key(), KeyStatus::Enrolled, &bytes).unwrap();
            assert_eq!(
                store.ingest(dev_id, verified, 2).unwrap().unwrap().accepted,
                n as u64
            );
        }
        let leaves: Vec<Hash> = store
            .read(|c| {
                let mut st = c.prepare("SELECT record FROM events ORDER BY leaf_index")?;
                let rows = st.query_map([], |r| {
                    Ok(sessiontrail_tlog::leaf_hash(&r.get::<_, Vec<u8>>(0)?))
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .unwrap();
        let size = leaves.len() as u64;
        assert!(
            size >= 66,
            "enough leaves for several stored levels: {size}"
        );
        let roots: Vec<Hash> = (0..=leaves.len())
            .map(|n| sessiontrail_tlog::root_of(&leaves[..n]))
            .collect();
        for n in 1..=size {
            for i in 0..n {
                let path = store.inclusion_proof(i, n).unwrap().unwrap();
                sessiontrail_tlog::verify_inclusion(
                    &leaves[i as usize],
                    i,
                    n,
                    &path,
                    &roots[n as usize],
                )
                .unwrap_or_else(|e| panic!("inclusion of {i} in {n}: {e}"));
            }
            for old in 1..=n {
                let proof = store.consistency_proof(old, n).unwrap().unwrap();
                sessiontrail_tlog::verify_consistency(
                    old,
                    n,
                    &roots[old as usize],
                    &roots[n as usize],
                    &proof,
                )
                .unwrap_or_else(|e| panic!("consistency {old} → {n}: {e}"));
            }
        }
        // Nothing below the stored levels was written.
        let low: i64 = store
            .read(|c| {
                Ok(c.query_row(
                    "SELECT COUNT(*) FROM tlog_nodes WHERE level < ?1",
                    [STORED_FROM_LEVEL],
                    |r| r.get(0),
                )?)
            })
            .unwrap();
        assert_eq!(low, 0);
    }

    /// Every stored event is in the full-text index, rule and tag tables
    /// when its write is acknowledged: ingest and admin records alike,
    /// several jobs per group commit included.
    #[test]
    fn acknowledged_events_are_indexed_for_search() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(store_with_enroll_token(dir.path()));
        let devices: Vec<_> = (1..=4u8)
            .map(|d| enroll_seed(&store, d, &format!("u{d}@acme.test")))
            .collect();
        // Concurrent batches, so the writer groups several jobs per commit.
        let handles: Vec<_> = devices
            .into_iter()
            .map(|(mut signer, id)| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for b in 0..3 {
                        let events: Vec<_> = (0..20)
                            .map(|i| {
                                let mut body =
                                    EventBody::lifecycle(EventKind::Click, "u@acme.test", "hr");
                                body.url = format!("https://hr.acme.test/payroll/{id}/{b}/{i}");
                                body.classification = Classification {
                                    rules: vec!["hr.bank-change".into()],
                                    tags: vec!["sox:itgc-ac".into(), "soc2:cc6.2".into()],
                                    ..Classification::default()
                                };
                                signer.sign(1_000 + i, &body)
                            })
                            .collect();
                        let bytes = sessiontrail_core::batch::encode(&events);
                        let key = signer.public_key();
                        let verified =
                            crate::ingest::verify(key, KeyStatus::Enrolled, &bytes).unwrap();
                        let out = store.ingest(id, verified, 2).unwrap().unwrap();
                        assert_eq!(out.accepted, 20);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        store
            .read(|c| {
                let count = |sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).unwrap() };
                assert_eq!(count("SELECT COUNT(*) FROM events WHERE body_ok"), 4 * 60 + 5);
                // The external-content index matches `events` exactly.
                c.execute_batch("PRAGMA query_only = OFF; INSERT INTO events_fts (events_fts) VALUES ('integrity-check'); PRAGMA query_only = ON")?;
                assert_eq!(
                    count("SELECT COUNT(*) FROM events_fts WHERE events_fts MATCH '\"payroll\"'"),
                    240
                );
                assert_eq!(
                    count("SELECT COUNT(*) FROM events_fts WHERE events_fts MATCH '\"device.enroll\"'"),
                    4
                );
                assert_eq!(count("SELECT COUNT(*) FROM event_rules"), 240);
                assert_eq!(count("SELECT COUNT(*) FROM event_tags"), 480);
                Ok(())
            })
            .unwrap();
    }
}
