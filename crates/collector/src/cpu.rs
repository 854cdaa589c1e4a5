//! CPU placement for `serve`: the store's writing threads (the SQLite
//! writer, its fsync thread and the WAL checkpointer) get one CPU of their
//! own; HTTP, verification and reads run on the others.
//!
//! Why: the writer is the one serial stage of ingest, and every batch in
//! flight waits for it. Sharing the CPUs with the verification threads, it
//! spent 30–35% of the ingest benchmark runnable but not running
//! (pre-empted; lowering the verification threads' priority did not change
//! that), and the pipeline stalled behind it. On a CPU of its own it runs
//! when it has work; verification, which parallelises, takes the rest.
//! Measured in docs/collector.md ("Fourth pass").
//!
//! The checkpointer shares that CPU with the writer at a lower priority
//! ([`lower_priority`]): copying the WAL back can wait, the writer cannot.
//! Under sustained full load it cut the writer's wait for its CPU and
//! raised the all-flagged ingest rate by ≈ 25% in full benchmark runs.
//!
//! Pinning applies only when the process may run on at least two CPUs, and
//! `pin_store_cpu = false` turns it off (for a host where other busy
//! processes share those CPUs: a pinned writer cannot move away from them).

use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};

/// Where `serve` puts its threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The CPU of the store's writing threads.
    pub store: usize,
    /// Every other CPU the process may use: the runtime's threads.
    pub rest: Vec<usize>,
}

/// Splits the CPUs the process may use (`allowed`, any order): the highest
/// for the store (CPU 0 usually takes more interrupts), the rest for
/// everything else. `None` with fewer than two.
pub fn split(allowed: &[usize]) -> Option<Placement> {
    let mut cpus = allowed.to_vec();
    cpus.sort_unstable();
    cpus.dedup();
    let store = cpus.pop()?;
    (!cpus.is_empty()).then_some(Placement { store, rest: cpus })
}

/// The CPUs the calling thread may run on (its affinity mask, which the
/// cgroup's cpuset and `taskset` narrow).
pub fn allowed() -> std::io::Result<Vec<usize>> {
    let set = sched_getaffinity(None)?;
    Ok((0..CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect())
}

/// Restricts the calling thread, and the threads it starts afterwards, to
/// `cpus`.
pub fn pin_current(cpus: &[usize]) -> std::io::Result<()> {
    let mut set = CpuSet::new();
    for &c in cpus {
        if c >= CpuSet::MAX_CPU {
            return Err(std::io::Error::other(format!("no CPU {c}")));
        }
        set.set(c);
    }
    Ok(sched_setaffinity(None, &set)?)
}

/// [`pin_current`] for a thread that works on without it: a failure is
/// logged, not fatal (placement only changes speed).
pub fn pin_current_or_warn(cpus: &[usize], thread: &str) {
    if let Err(e) = pin_current(cpus) {
        tracing::warn!(error = %e, ?cpus, thread, "cannot set the thread's CPU affinity");
    }
}

/// Lowers the calling thread's scheduling priority to `nice` (0–19; an
/// unprivileged process may always lower, never raise, it). Linux applies
/// `setpriority` to the one thread named by its id. A failure is logged:
/// priority only changes speed.
pub fn lower_priority(nice: i32, thread: &str) {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), nice) {
        tracing::warn!(error = %e, nice, thread, "cannot lower the thread's priority");
    }
}

/// Test support: what the kernel reports for this process's threads.
#[cfg(test)]
pub(crate) mod proc_threads {
    /// One thread, from `/proc/self/task/TID/stat`.
    #[derive(Debug)]
    pub struct Thread {
        /// At most 15 bytes: "sqlite-checkpoint" reads "sqlite-checkpoi".
        pub name: String,
        pub nice: i64,
        /// `Cpus_allowed_list` of its `status`, e.g. "1" or "0-1".
        pub cpus: String,
    }

    /// Every thread of this process still running.
    pub fn all() -> Vec<Thread> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| {
                let dir = t.ok()?.path();
                let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
                let status = std::fs::read_to_string(dir.join("status")).ok()?;
                // The name is parenthesised and may hold spaces; `nice` is
                // field 19, the 17th after it.
                let (head, tail) = stat.rsplit_once(')')?;
                Some(Thread {
                    name: head.split_once('(')?.1.to_owned(),
                    nice: tail.split_whitespace().nth(16)?.parse().ok()?,
                    cpus: status
                        .lines()
                        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
                        .trim()
                        .to_owned(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_cpu_goes_to_the_store_and_the_rest_to_the_runtime() {
        assert_eq!(
            split(&[0, 1]),
            Some(Placement {
                store: 1,
                rest: vec![0]
            })
        );
        // A cpuset need not start at 0 nor be contiguous.
        assert_eq!(
            split(&[7, 2, 5, 5]),
            Some(Placement {
                store: 7,
                rest: vec![2, 5]
            })
        );
        assert_eq!(split(&[3]), None);
        assert_eq!(split(&[]), None);
    }

    /// The affinity set is what the kernel then reports for the thread.
    #[test]
    fn a_pinned_thread_runs_only_on_its_cpus() {
        let allowed = allowed().unwrap();
        assert!(!allowed.is_empty());
        let last = *allowed.last().unwrap();
        // The thread stays alive until its /proc entry has been read.
        let (pinned, wait_pinned) = std::sync::mpsc::channel::<()>();
        let (release, wait_release) = std::sync::mpsc::channel::<()>();
        let t = std::thread::Builder::new()
            .name("cpu-pin-test".into())
            .spawn(move || {
                pin_current(&[last]).unwrap();
                let seen = super::allowed().unwrap();
                pinned.send(()).unwrap();
                wait_release.recv().unwrap();
                seen
            })
            .unwrap();
        wait_pinned.recv().unwrap();
        let listed: Vec<String> = proc_threads::all()
            .into_iter()
            .filter(|t| t.name == "cpu-pin-test")
            .map(|t| t.cpus)
            .collect();
        release.send(()).unwrap();
        assert_eq!(t.join().unwrap(), vec![last]);
        assert_eq!(listed, vec![last.to_string()]);
        assert!(pin_current(&[CpuSet::MAX_CPU]).is_err());
    }
}
