//! Process figures shared by the ingest benchmark (`benches/ingest.rs`) and
//! the load generator (`src/bin/loadgen.rs`), included by both with
//! `#[path]`.

/// Cores available to this process (2 when unknown).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// User + system CPU seconds of a process (`pid`, or `"self"`).
pub fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 (1-based), in clock ticks (100/s).
    (ticks(11) + ticks(12)) / 100.0
}
