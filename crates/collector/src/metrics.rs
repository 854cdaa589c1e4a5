//! `GET /metrics`: Prometheus text exposition, written by hand (a handful of
//! counters and one histogram do not need a registry).
//!
//! Access: an auditor or admin credential, or no credential at all when the
//! peer address is loopback and `metrics_open_on_loopback` is on (the
//! default), so a local Prometheus or sidecar can scrape without a secret.
//! Behind a reverse proxy on the same host every peer is loopback: turn the
//! option off there.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::{Extensions, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::auth::MaybeCaller;
use crate::error::ApiError;
use crate::ingest::IngestOutcome;
use crate::state::AppState;
use crate::store::Role;

/// Upper bounds of the batch latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Process-wide ingest counters.
#[derive(Debug, Default)]
pub struct Metrics {
    accepted: AtomicU64,
    duplicates: AtomicU64,
    gaps: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    batches: Mutex<BTreeMap<&'static str, u64>>,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

fn bump(m: &Mutex<BTreeMap<&'static str, u64>>, key: &'static str, by: u64) {
    let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
    *g.entry(key).or_default() += by;
}

impl Metrics {
    fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            self.latency_buckets[i].fetch_add(1, Relaxed);
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_us
            .fetch_add(took.as_micros().min(u64::MAX as u128) as u64, Relaxed);
    }

    pub fn record_batch(&self, o: &IngestOutcome, took: Duration) {
        self.accepted.fetch_add(o.accepted, Relaxed);
        self.duplicates.fetch_add(o.duplicates, Relaxed);
        self.gaps.fetch_add(o.gaps.len() as u64, Relaxed);
        for r in &o.rejected {
            bump(&self.rejected, r.reason, 1);
        }
        bump(&self.batches, "ok", 1);
        self.observe(took);
    }

    pub fn record_batch_error(&self, code: &'static str, took: Duration) {
        bump(&self.batches, code, 1);
        self.observe(took);
    }

    /// The exposition text. `store_bytes` is `None` when the store did not
    /// answer.
    pub fn render(&self, store_bytes: Option<u64>) -> String {
        let mut s = String::with_capacity(2048);
        let counter = |s: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            &mut s,
            "sessiontrail_events_accepted_total",
            "Records stored.",
            self.accepted.load(Relaxed),
        );
        counter(
            &mut s,
            "sessiontrail_events_duplicate_total",
            "Records acknowledged as already stored (retries).",
            self.duplicates.load(Relaxed),
        );
        counter(
            &mut s,
            "sessiontrail_gaps_detected_total",
            "Sequence ranges found missing.",
            self.gaps.load(Relaxed),
        );
        let _ = writeln!(
            s,
            "# HELP sessiontrail_events_rejected_total Records refused, by reason.\n# TYPE sessiontrail_events_rejected_total counter"
        );
        for (reason, n) in self
            .rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                s,
                "sessiontrail_events_rejected_total{{reason=\"{reason}\"}} {n}"
            );
        }
        let _ = writeln!(
            s,
            "# HELP sessiontrail_batches_total Batch requests, by outcome.\n# TYPE sessiontrail_batches_total counter"
        );
        for (outcome, n) in self
            .batches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(s, "sessiontrail_batches_total{{outcome=\"{outcome}\"}} {n}");
        }
        let name = "sessiontrail_batch_duration_seconds";
        let _ = writeln!(
            s,
            "# HELP {name} Time from request to acknowledgement (after commit).\n# TYPE {name} histogram"
        );
        let mut cumulative = 0;
        for (b, c) in BUCKETS.iter().zip(&self.latency_buckets) {
            cumulative += c.load(Relaxed);
            let _ = writeln!(s, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(s, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            s,
            "{name}_sum {}",
            self.latency_sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(s, "{name}_count {count}");
        let _ = writeln!(
            s,
            "# HELP sessiontrail_store_size_bytes Database plus write-ahead log.\n# TYPE sessiontrail_store_size_bytes gauge"
        );
        let _ = writeln!(
            s,
            "sessiontrail_store_size_bytes {}",
            store_bytes.map_or("NaN".to_string(), |b| b.to_string())
        );
        let _ = writeln!(
            s,
            "# HELP sessiontrail_store_up Whether the store answered.\n# TYPE sessiontrail_store_up gauge\nsessiontrail_store_up {}",
            u8::from(store_bytes.is_some())
        );
        s
    }
}

/// `GET /metrics`.
pub async fn get_metrics(
    State(state): State<AppState>,
    MaybeCaller(caller): MaybeCaller,
    ext: Extensions,
) -> Result<Response, ApiError> {
    match caller {
        Some(c) => c.require(&[Role::Auditor, Role::Admin])?,
        None => {
            let loopback = ext
                .get::<ConnectInfo<SocketAddr>>()
                .is_some_and(|ci| ci.0.ip().is_loopback());
            if !(loopback && state.limits.metrics_open_on_loopback) {
                return Err(ApiError::unauthenticated(
                    "missing_token",
                    "metrics need an auditor or admin credential off loopback",
                ));
            }
        }
    }
    let store = state.store.clone();
    let bytes = tokio::task::spawn_blocking(move || store.stats().ok().map(|s| s.size_bytes))
        .await
        .map_err(ApiError::internal)?;
    let mut resp = state.metrics.render(bytes).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(resp)
}
