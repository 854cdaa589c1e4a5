//! What every handler shares.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::config::Limits;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::verifiers::Verifiers;

/// The router's state: cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// Batches being read, verified or stored at once; beyond it, 429.
    pub ingest_permits: Arc<Semaphore>,
    /// Where batches are decoded and signature-checked: one thread per
    /// core the runtime has (more would only time-slice the cores and starve
    /// the store's writer, which every acknowledgement waits for), plus the
    /// writer itself in its spare time. The others wait in its queue.
    pub verifiers: Arc<Verifiers>,
}

impl AppState {
    /// State with its own verifying threads, one per CPU this thread may
    /// use.
    pub fn new(store: Arc<dyn Store>, limits: Limits) -> std::io::Result<AppState> {
        let verifiers = Arc::new(Verifiers::per_cpu()?);
        Ok(AppState::with_verifiers(store, limits, verifiers))
    }

    /// State that verifies on `verifiers` (shared with the store's writer,
    /// see `server::serve`).
    pub fn with_verifiers(
        store: Arc<dyn Store>,
        limits: Limits,
        verifiers: Arc<Verifiers>,
    ) -> AppState {
        AppState {
            store,
            metrics: Arc::new(Metrics::default()),
            ingest_permits: Arc::new(Semaphore::new(limits.max_inflight.max(1))),
            verifiers,
            limits,
        }
    }
}
