//! The verification workers.
//!
//! Decoding a batch and checking its signatures is pure CPU work, kept off
//! the async runtime. It runs on a fixed set of `verify` threads, one per
//! CPU the runtime has ([`Verifiers::start`]), fed by one queue, and also on
//! any thread that lends its spare time through a [`Helper`]. The store's
//! writer does when it has a CPU of its own ([`crate::cpu`]): while it has
//! nothing to write, and while its next group is small and the previous
//! one was recent ([`SpareWork`]). Without that, the store's CPU spends
//! itself on many small commits while verification, the larger share of
//! ingest, has only the other CPUs.
//!
//! A helper runs one task at a time and goes back to its own work between
//! tasks, so the writer's next group waits at most one batch's verification
//! (≈ 1 ms for 100 records).

use std::panic::AssertUnwindSafe;

use crossbeam_channel::{Receiver, Sender, unbounded};

use crate::store::sqlite::SpareWork;

type Task = Box<dyn FnOnce() + Send>;

/// The task's thread went away without an answer (it panicked).
#[derive(Debug, thiserror::Error)]
#[error("the verification task was lost")]
pub struct Lost;

/// The verification queue and its threads.
#[derive(Debug)]
pub struct Verifiers {
    tx: Sender<Task>,
    rx: Receiver<Task>,
}

impl Verifiers {
    /// Starts `threads` (at least one) verifying threads. They inherit the
    /// calling thread's CPU affinity and stop once these `Verifiers` are
    /// dropped and the queue is drained.
    pub fn start(threads: usize) -> std::io::Result<Verifiers> {
        let (tx, rx) = unbounded::<Task>();
        for _ in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name("verify".into())
                .spawn(move || rx.iter().for_each(run))?;
        }
        Ok(Verifiers { tx, rx })
    }

    /// One verifying thread per CPU the calling thread may use
    /// (`available_parallelism` follows the affinity mask).
    pub fn per_cpu() -> std::io::Result<Verifiers> {
        Verifiers::start(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Runs `f` on a verifying thread or a helper, whichever takes it first.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, Lost> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let task: Task = Box::new(move || {
            let _ = reply.send(f());
        });
        self.tx.send(task).map_err(|_| Lost)?;
        answer.await.map_err(|_| Lost)
    }

    /// A handle for a thread that verifies when it has nothing else to do.
    pub fn helper(&self) -> Helper {
        Helper(self.rx.clone())
    }
}

/// Lets another thread take queued verification tasks.
#[derive(Debug, Clone)]
pub struct Helper(Receiver<Task>);

impl SpareWork for Helper {
    fn run_one(&self) -> bool {
        match self.0.try_recv() {
            Ok(task) => {
                run(task);
                true
            }
            Err(_) => false,
        }
    }
}

fn run(task: Task) {
    // A panicking task drops its reply: its caller gets `Lost` (answered as
    // an internal error) and the thread, possibly the store's writer, goes on.
    let _ = std::panic::catch_unwind(AssertUnwindSafe(task));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_run_on_the_verifying_threads() {
        let v = Verifiers::start(2).unwrap();
        let name = v
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("verify"));
    }

    #[tokio::test]
    async fn a_panicking_task_is_lost_and_the_thread_goes_on() {
        let v = Verifiers::start(1).unwrap();
        assert!(v.run(|| panic!("bad batch")).await.is_err());
        assert_eq!(v.run(|| 7).await.unwrap(), 7);
    }

    #[test]
    fn a_helper_runs_queued_tasks_one_at_a_time() {
        // No verifying thread takes tasks while these are queued: the
        // queue is built by hand, with the helper as its only consumer.
        let (tx, rx) = unbounded::<Task>();
        let helper = Helper(rx);
        assert!(!helper.run_one(), "nothing queued");
        let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for _ in 0..2 {
            let done = done.clone();
            tx.send(Box::new(move || {
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }))
            .unwrap();
        }
        assert!(helper.run_one());
        assert_eq!(done.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(helper.run_one());
        assert!(!helper.run_one());
        assert_eq!(done.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
