//! What every handler shares.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::config::Limits;
use crate::metrics::Metrics;
use crate::store::Store;

/// The router's state: cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// Batches being read, verified or stored at once; beyond it, 429.
    pub ingest_permits: Arc<Semaphore>,
    /// Batches being decoded and signature-checked at once: one per core.
    /// Verification is pure CPU; more at once only time-slice the cores
    /// and starve the store's single writer thread, which every
    /// acknowledgement waits for. The others wait here, already read.
    pub verify_permits: Arc<Semaphore>,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, limits: Limits) -> AppState {
        AppState {
            store,
            metrics: Arc::new(Metrics::default()),
            ingest_permits: Arc::new(Semaphore::new(limits.max_inflight.max(1))),
            verify_permits: Arc::new(Semaphore::new(
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            )),
            limits,
        }
    }
}
