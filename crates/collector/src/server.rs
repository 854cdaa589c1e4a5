//! Listening: plain HTTP on loopback, HTTPS (rustls) anywhere, graceful
//! shutdown on SIGINT/SIGTERM. Requests still in flight at shutdown finish;
//! the store then drains its write queue before the process exits.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum_server::tls_rustls::RustlsConfig;

use crate::config::Config;
use crate::state::AppState;
use crate::store::sqlite::{SpareWork, SqliteOptions, SqliteStore};
use crate::store::{Store, StoreError};
use crate::verifiers::Verifiers;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot load TLS certificate {cert} / key {key}: {source}")]
    Tls {
        cert: PathBuf,
        key: PathBuf,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

/// Resolves when the process is asked to stop.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}

/// Serves `router` on an already bound `listener` until `shutdown` resolves.
pub async fn run(
    listener: std::net::TcpListener,
    router: Router,
    tls: Option<RustlsConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    listener.set_nonblocking(true)?;
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        Some(tls) => {
            let handle = axum_server::Handle::new();
            let h = handle.clone();
            tokio::spawn(async move {
                shutdown.await;
                h.graceful_shutdown(Some(Duration::from_secs(10)));
            });
            axum_server::from_tcp_rustls(listener, tls)?
                .handle(handle)
                .serve(service)
                .await?;
        }
        None => {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            axum::serve(listener, service)
                .with_graceful_shutdown(shutdown)
                .await?;
        }
    }
    Ok(())
}

/// Signs a checkpoint of the evidence log every `every` while it grows.
pub async fn checkpoints(store: Arc<dyn Store>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = 0;
    loop {
        tick.tick().await;
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.checkpoint(crate::now_ms())).await {
            Ok(Ok(Some(c))) if c.tree_size != last => {
                last = c.tree_size;
                tracing::info!(tree_size = c.tree_size, root = %c.root_hash, "checkpoint signed");
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "checkpoint failed"),
            Err(e) => tracing::warn!(error = %e, "checkpoint task failed"),
        }
    }
}

/// `sessiontrail serve`: opens the store in the data directory and serves
/// until a stop signal. `store_cpu`: the CPU of the store's writing threads
/// (see [`crate::cpu`]).
pub async fn serve(cfg: Config, store_cpu: Option<usize>) -> Result<(), ServeError> {
    let data_dir = cfg.data_dir.clone();
    // One verifying thread per CPU the runtime has; the store's writer
    // verifies too in its spare time, if it has a CPU of its own
    // (crate::verifiers, store::sqlite::SpareWork).
    let verifiers = Arc::new(Verifiers::per_cpu()?);
    let spare_work = store_cpu.map(|_| Arc::new(verifiers.helper()) as Arc<dyn SpareWork>);
    let opts = SqliteOptions {
        queue: cfg.limits.ingest_queue,
        log_origin: cfg.log_origin.clone(),
        store_cpu,
        spare_work,
    };
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(&data_dir, opts))
        .await
        .map_err(|e| ServeError::Io(std::io::Error::other(e)))??;
    tracing::info!(
        db = %store.path().display(),
        collector_key = %store.collector_key(),
        log_verifier_key = %store.log_verifier_key(),
        "store open"
    );
    let store: Arc<dyn Store> = Arc::new(store);
    if cfg.checkpoint_interval_secs > 0 {
        tokio::spawn(checkpoints(
            store.clone(),
            Duration::from_secs(cfg.checkpoint_interval_secs),
        ));
    }
    let state = AppState::with_verifiers(store, cfg.limits, verifiers);
    let tls = match &cfg.tls {
        Some((cert, key)) => Some(RustlsConfig::from_pem_file(cert, key).await.map_err(
            |source| ServeError::Tls {
                cert: cert.clone(),
                key: key.clone(),
                source,
            },
        )?),
        None => None,
    };
    let listener = std::net::TcpListener::bind(cfg.listen).map_err(|source| ServeError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, tls = tls.is_some(), "listening");
    run(listener, crate::app(state), tls, shutdown_signal()).await
}
