//! The utt collector: receives the tag's event batches, stores them durably and idempotently
//! in SQLite or PostgreSQL through one group-committing writer, and attributes conversions to partners at
//! read time. `app` builds the router; `serve` runs it until a shutdown signal.

pub mod attribution;
pub mod config;
pub mod cookie;
pub mod error;
pub mod http;
pub mod metrics;
pub mod money;
pub mod partners;
pub mod postbacks;
pub mod ratelimit;
pub mod report;
mod report_api;
pub mod s2s;
pub mod server;
pub mod statics;
pub mod store;
pub mod traffic;
pub mod writer;

use std::future::Future;
use std::io;

use tokio::net::TcpListener;

pub use crate::http::{app, AppState, Shared};

/// Serves the app on a bound listener until `shutdown` resolves, under the configuration's
/// `[server]` limits (see [`server`]), then drains the connections for at most
/// `server.drain_timeout_ms`, lets the writer commit everything queued, and closes the store.
/// Every event that was acknowledged is on disk when this returns.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let sender = postbacks::send::start(&state);
    server::run(listener, app(state.clone()), state.config.server, shutdown).await;
    // Attempts in flight get a moment to finish and be recorded; an attempt cut off is sent
    // again after its lease, by this collector restarted or by another.
    if let Some(sender) = sender {
        sender.stop(std::time::Duration::from_secs(2)).await;
    }
    state.writer.close().await;
    let store = state.store.clone();
    let closed = tokio::task::spawn_blocking(move || store.close()).await;
    if let Ok(Err(e)) = closed {
        tracing::error!(error = %e, "closing the store");
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
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
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: draining connections, then flushing the writer");
}
