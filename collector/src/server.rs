//! The connection layer under the router: accepts TCP connections up to a cap, serves each
//! with hyper's HTTP/1 under the `[server]` timeouts, and on shutdown drains for a bounded time.
//!
//! - **Cap.** A connection holds a permit of a semaphore of `max_connections` (lowered at start
//!   when the open-file limit cannot hold that many beside [`RESERVED_FILES`]); without a free
//!   permit nothing is accepted, so further connections wait in the kernel's listen backlog
//!   until one closes. An accept error (`EMFILE` when files run out anyway) is logged and
//!   retried a second later (axum's `Listener` for `TcpListener`), never fatal.
//! - **Timeouts.** hyper's header read timeout closes a connection that has not sent a whole
//!   request head within `header_timeout_ms` of being opened or of its previous answer: silent
//!   connections, partial heads and idle keep-alive connections. A body is bounded by
//!   `body_timeout_ms` where it is read (`http::read_body`, a 408).
//! - **Half-close.** A client may shut down its sending side after its request: it still gets
//!   its answer (hyper's `half_close`).
//! - **Drain.** When `shutdown` resolves the listener is closed, every connection is told to
//!   finish its request in flight and close (hyper-util's `GracefulShutdown`), and those still
//!   open after `drain_timeout_ms` are dropped.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::serve::Listener;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower::Service;

use crate::config;

/// Open files kept for everything but connections: the SQLite files of the writer, deriver,
/// checkpointer and readers (each connection opens the database, its WAL and shared memory),
/// static files being read, the listener, the standard streams.
pub const RESERVED_FILES: u64 = 64;

/// Serves `app` on `listener` under `limits` until `shutdown` resolves, then drains.
pub async fn run(mut listener: TcpListener, app: Router, limits: config::Server, shutdown: impl Future<Output = ()>) {
    let permits = Arc::new(Semaphore::new(connection_cap(limits.max_connections)));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_timeout_ms))
        .half_close(true);
    let http = Arc::new(http);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let next = async {
            let permit = permits.clone().acquire_owned().await;
            (permit, Listener::accept(&mut listener).await)
        };
        let (permit, (stream, remote)) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            next = next => next,
        };
        // The semaphore is never closed.
        let Ok(permit) = permit else { break };
        // Finished connections' results, so the set holds only open ones.
        while connections.try_join_next().is_some() {}
        let http = http.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(remote));
                app.clone().call(req)
            });
            if let Err(e) = watcher
                .watch(http.serve_connection(TokioIo::new(stream), service))
                .await
            {
                tracing::debug!(%remote, error = %e, "connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    let open = graceful.count();
    tracing::info!(
        open,
        drain_ms = limits.drain_timeout_ms,
        "not accepting; draining connections"
    );
    let drained = tokio::time::timeout(Duration::from_millis(limits.drain_timeout_ms), graceful.shutdown()).await;
    if drained.is_err() {
        tracing::warn!(
            cut = connections.len(),
            "drain time over: closing the connections whose requests have not finished"
        );
    }
    connections.shutdown().await;
}

/// How many connections to serve at once: `wanted`, with the soft open-file limit raised
/// (towards the hard limit) to hold them; if it cannot be, as many as the limit holds.
pub fn connection_cap(wanted: usize) -> usize {
    let need = wanted as u64 + RESERVED_FILES;
    match rlimit::increase_nofile_limit(need) {
        Ok(limit) if limit < need => {
            let cap = usize::try_from(limit.saturating_sub(RESERVED_FILES))
                .unwrap_or(usize::MAX)
                .max(1);
            tracing::warn!(
                max_connections = wanted,
                open_file_limit = limit,
                cap,
                "the open-file limit holds fewer connections than server.max_connections: serving at most {cap}"
            );
            cap
        }
        Ok(_) => wanted,
        Err(e) => {
            tracing::warn!(error = %e, "could not read or raise the open-file limit");
            wanted
        }
    }
}
