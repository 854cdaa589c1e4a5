//! Keeping the WAL short under continuous ingest.
//!
//! A checkpointer thread copies the WAL back into the database every 200 ms
//! (PASSIVE: it never blocks the writer). That alone does not bound the WAL:
//! SQLite starts writing it from the beginning again only when a write
//! transaction begins while every frame is already copied, which never
//! happens while the writer commits back to back. The WAL then grows for as
//! long as the load lasts (1.4 GB in one benchmark run), every commit
//! extends the file (new blocks, which the kernel zeroes: ≈ 8% of the
//! writer's time), and crash recovery has all of it to read.
//!
//! So when a pass finds the WAL longer than [`RESTART_FRAMES`], the
//! checkpointer raises [`WalRestart`], and the writer, between two groups
//! (no transaction open), runs a RESTART checkpoint on its own connection:
//! it copies the few frames written since that pass, waits briefly for
//! readers still on the WAL, and the next commit starts the WAL from the
//! beginning again, reusing the same file space. A reader that holds on (a
//! long search) makes the writer give up after [`RESTART_WAIT`]; the next
//! pass asks again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use rusqlite::Connection;

/// WAL length (frames, ≈ one page each) above which it is restarted.
pub(super) const RESTART_FRAMES: i64 = 8192;
/// How long the writer waits for readers still on the WAL.
pub(super) const RESTART_WAIT: Duration = Duration::from_millis(50);
/// Between checkpoint passes.
const EVERY: Duration = Duration::from_millis(200);

/// Raised by the checkpointer, taken by the writer.
#[derive(Clone)]
pub(super) struct WalRestart {
    asked: Arc<AtomicBool>,
    /// WAL length that asks for a restart ([`RESTART_FRAMES`]).
    frames: i64,
}

impl Default for WalRestart {
    fn default() -> WalRestart {
        WalRestart::after(RESTART_FRAMES)
    }
}

impl WalRestart {
    pub(super) fn after(frames: i64) -> WalRestart {
        WalRestart {
            asked: Arc::default(),
            frames,
        }
    }

    /// For the writer, between groups: restarts the WAL if asked to.
    /// `busy` is the connection's usual busy timeout, restored after.
    pub(super) fn take(&self, writer: &Connection, busy: Duration) {
        if !self.asked.swap(false, Ordering::Relaxed) {
            return;
        }
        let outcome = writer.busy_timeout(RESTART_WAIT).and_then(|()| {
            writer.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0))
        });
        if let Err(e) = writer.busy_timeout(busy) {
            tracing::error!(error = %e, "cannot restore the writer's busy timeout");
        }
        match outcome {
            Ok(0) => tracing::debug!("WAL restarted"),
            // Readers still on the WAL: the next pass asks again.
            Ok(_) => tracing::debug!("WAL restart deferred: readers on the WAL"),
            Err(e) => tracing::warn!(error = %e, "WAL restart failed"),
        }
    }
}

/// The checkpointer thread: a PASSIVE checkpoint every 200 ms, a restart
/// request when the WAL is long, and a TRUNCATE checkpoint when the store
/// closes (`stop` dropped).
pub(super) fn checkpoint_loop(conn: Connection, stop: Receiver<()>, restart: WalRestart) {
    loop {
        let last = !matches!(stop.recv_timeout(EVERY), Err(RecvTimeoutError::Timeout));
        pass(&conn, if last { "TRUNCATE" } else { "PASSIVE" }, &restart);
        if last {
            return;
        }
    }
}

/// One checkpoint pass in `mode`; asks for a restart when the WAL is long.
fn pass(conn: &Connection, mode: &str, restart: &WalRestart) {
    // (busy, frames in the WAL, frames copied back)
    match conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        r.get::<_, i64>(1)
    }) {
        Ok(frames) if frames > restart.frames => restart.asked.store(true, Ordering::Relaxed),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal_len(db: &std::path::Path) -> u64 {
        std::fs::metadata(db.with_extension("db-wal"))
            .unwrap()
            .len()
    }

    /// Under continuous writes a pass never finds every frame copied when
    /// the next write begins, so SQLite never restarts the WAL on its own;
    /// here a reader holding an old snapshot during the pass plays that part.
    #[test]
    fn a_long_wal_is_restarted_between_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
                 CREATE TABLE t (x BLOB);",
            )
            .unwrap();
        let write = |n: usize| {
            for _ in 0..n {
                writer
                    .execute("INSERT INTO t VALUES (randomblob(3000))", [])
                    .unwrap();
            }
        };
        write(200);
        let reader = Connection::open(&path).unwrap();
        reader
            .execute_batch("BEGIN; SELECT count(*) FROM t;")
            .unwrap();
        write(200);
        let (checkpointer, restart) = (Connection::open(&path).unwrap(), WalRestart::after(100));
        pass(&checkpointer, "PASSIVE", &restart);
        assert!(restart.asked.load(Ordering::Relaxed), "a long WAL asks");
        reader.execute_batch("COMMIT").unwrap();
        // Frames the pass could not copy: the WAL keeps growing.
        write(50);
        let before = wal_len(&path);
        write(20);
        assert!(wal_len(&path) > before, "the WAL grows");
        let before = wal_len(&path);
        restart.take(&writer, Duration::from_secs(1));
        assert!(!restart.asked.load(Ordering::Relaxed), "taken");
        // The next commits start the WAL from the beginning: same file.
        write(20);
        assert_eq!(wal_len(&path), before, "the WAL file grew: not restarted");
        let n: i64 = writer
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 490);
    }
}
