//! Durability off the writer's path.
//!
//! The writer commits with `synchronous=NORMAL`: `COMMIT` appends the
//! group's pages to the WAL file and returns without an fsync, so the writer
//! can start the next group at once. It hands the group's answers to this
//! thread, which fsyncs the WAL file (one `fdatasync` for every group queued
//! meanwhile) and only then answers them. An acknowledgement therefore still
//! follows the fsync that made its commit durable, as with
//! `synchronous=FULL`, but the writer no longer waits for the disk.
//!
//! Why one fsync on another descriptor is enough: the WAL is append-only
//! between checkpoints and `fdatasync` flushes every written page of the
//! file (the inode), whoever wrote it. A WAL restart after a completed
//! checkpoint only overwrites frames already copied into the database file,
//! which the checkpoint synced (SQLite does that at `synchronous=NORMAL`).
//! After a power cut SQLite recovers a prefix of the commits; every
//! acknowledged one is in it.
//!
//! Readers may see a committed group a few milliseconds before it is
//! durable (and before its devices are answered). What is handed to others
//! as a commitment (signed checkpoints, rule packs) is written in a group
//! committed with `synchronous=FULL`, where SQLite makes a commit visible
//! only after its fsync.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use super::StoreError;

/// A job's answer, called with the outcome of its group's commit.
pub(super) type Finish = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// The thread that makes committed groups durable, then answers them.
pub(super) struct Syncer {
    queue: Sender<Vec<Finish>>,
    thread: JoinHandle<()>,
}

impl Syncer {
    /// Starts the thread for the database at `db`, whose WAL (`db-wal`)
    /// must exist: SQLite keeps it, same file, while any connection is open.
    /// The thread first calls `setup` with its name (CPU placement).
    pub(super) fn start(
        db: &Path,
        setup: impl FnOnce(&str) + Send + 'static,
    ) -> std::io::Result<Syncer> {
        let mut path = db.as_os_str().to_owned();
        path.push("-wal");
        let path = PathBuf::from(path);
        let wal = File::open(&path)?;
        let (queue, rx) = channel();
        let thread = std::thread::Builder::new()
            .name("sqlite-sync".into())
            .spawn(move || {
                setup("sqlite-sync");
                run(&wal, &path, &rx)
            })?;
        Ok(Syncer { queue, thread })
    }

    /// Answers a committed group once its commit is on disk.
    pub(super) fn committed(&self, group: Vec<Finish>) {
        // The thread only ends when `self` is dropped (see `finish`).
        let _ = self.queue.send(group);
    }

    /// Syncs and answers what is queued, then stops the thread.
    pub(super) fn finish(self) {
        drop(self.queue);
        let _ = self.thread.join();
    }
}

fn run(wal: &File, path: &Path, rx: &Receiver<Vec<Finish>>) {
    while let Ok(first) = rx.recv() {
        let mut groups = vec![first];
        groups.extend(rx.try_iter());
        if let Err(e) = wal.sync_data() {
            // What reached the disk is unknown, and Linux may have marked the
            // failed pages clean, so a retry could "succeed" without them.
            // Answering now could acknowledge data a power cut loses; a
            // restart recovers from what is on disk, and the devices resend
            // what was not acknowledged.
            tracing::error!(error = %e, path = %path.display(), "fsync of the WAL failed; stopping");
            std::process::abort();
        }
        for finish in groups.into_iter().flatten() {
            finish(Ok(()));
        }
    }
}
