//! Several `utt-collector` processes on one PostgreSQL database, as behind a load balancer: a
//! race on one order from 50 connections to two collectors stores it once; a collector killed
//! (`kill -9`) under load loses nothing it acknowledged while the other keeps serving; and the
//! database restarting under load is answered 503 and reported on `/healthz` while it is down,
//! then the collector recovers by itself, again without losing anything acknowledged.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use common::*;

/// A collector process on a database, killed when dropped.
struct Collector {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Collector {
    fn start(url: &str) -> Collector {
        let dir = TempDir::new("cluster");
        let config = config_file(&dir, "");
        let (child, addr) = listening(
            Command::new(env!("CARGO_BIN_EXE_utt-collector"))
                .args([
                    "--listen",
                    "127.0.0.1:0",
                    "--log-level",
                    "warn",
                    "--db",
                    url,
                    "--config",
                ])
                .arg(&config),
        );
        Collector { child, addr, _dir: dir }
    }

    fn remote(&self) -> Remote {
        Remote::new(self.addr)
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `done` until it holds, failing after `limit` with `what`.
async fn until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The page-view event numbered `n` (its ID is `uuid(n)`).
fn view(n: u64) -> String {
    event(n, Some("loaded"), T0 + n % 1000, vec![], pageview())
}

/// What the load sent and what was acknowledged (stored, answered `accepted`).
#[derive(Default)]
struct Ledger {
    sent: Mutex<Vec<u64>>,
    acked: Mutex<HashSet<u64>>,
    acked_count: AtomicU64,
    /// Answers other than 200, by status code.
    refused: Mutex<Vec<(u16, Option<String>)>>,
    /// Requests that got no answer (a connection refused or cut).
    failed: AtomicU64,
}

impl Ledger {
    fn acked(&self) -> u64 {
        self.acked_count.load(Ordering::SeqCst)
    }
}

const BATCH: u64 = 10;

/// One load connection: batches of [`BATCH`] new page views to `to`, numbered from `first`,
/// until `stop`; every outcome in the ledger. Stops by itself after a request got no answer
/// when `stop_on_failure` (its collector is gone).
async fn load(to: Remote, first: u64, stop: Arc<AtomicBool>, ledger: Arc<Ledger>, stop_on_failure: bool) {
    let mut n = first;
    while !stop.load(Ordering::SeqCst) {
        let ids: Vec<u64> = (n..n + BATCH).collect();
        n += BATCH;
        ledger.sent.lock().unwrap().extend(&ids);
        let events: Vec<String> = ids.iter().map(|&i| view(i)).collect();
        match to.post("/v1/events", "text/plain", batch(&events).as_bytes()).await {
            Ok(a) if a.status == StatusCode::OK => {
                let mut acked = ledger.acked.lock().unwrap();
                for (id, s) in ids.iter().zip(a.statuses()) {
                    assert_eq!(s, "accepted", "a new event");
                    acked.insert(*id);
                    ledger.acked_count.fetch_add(1, Ordering::SeqCst);
                }
            }
            Ok(a) => {
                ledger
                    .refused
                    .lock()
                    .unwrap()
                    .push((a.status.as_u16(), a.header("retry-after").map(String::from)));
                // Backs off a little, as the tag does (much less than the Retry-After).
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(_) => {
                ledger.failed.fetch_add(1, Ordering::SeqCst);
                if stop_on_failure {
                    return;
                }
                // The collector is there but the request was cut: the next one opens anew.
                tokio::task::yield_now().await;
            }
        }
    }
}

/// Sends every event the load sent again to `to`: each acknowledged one must be answered
/// `duplicate` (it is stored); the others are stored now. Returns how many were sent.
async fn resend_all(to: &Remote, ledger: &Ledger) -> usize {
    let sent = ledger.sent.lock().unwrap().clone();
    let acked = ledger.acked.lock().unwrap().clone();
    for chunk in sent.chunks(100) {
        let events: Vec<String> = chunk.iter().map(|&i| view(i)).collect();
        let a = to
            .post("/v1/events", "text/plain", batch(&events).as_bytes())
            .await
            .unwrap();
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        for (id, s) in chunk.iter().zip(a.statuses()) {
            if acked.contains(id) {
                assert_eq!(s, "duplicate", "event {id} was acknowledged but is not stored");
            }
        }
    }
    sent.len()
}

/// The same conversion (one site and order ID, 50 event IDs) sent at once from 50 connections,
/// half to each of two collectors on one database: one is accepted, 49 are duplicates, and
/// both collectors report the one order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_order_raced_from_fifty_connections_to_two_collectors_is_stored_once() {
    let url = pg::database("race");
    let (a, b) = (Collector::start(&url), Collector::start(&url));
    let go = Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = Vec::new();
    for i in 0..50u64 {
        let to = if i % 2 == 0 { a.remote() } else { b.remote() };
        let go = go.clone();
        tasks.push(tokio::spawn(async move {
            let body = batch(&[event(
                100 + i,
                Some(&format!("buyer-{i}")),
                T0 + i,
                vec![],
                conversion("ORDER-RACE", None),
            )]);
            // A connection of its own, opened before the start.
            assert_eq!(to.get("/healthz").await.unwrap().status, StatusCode::OK);
            go.wait().await;
            let answer = to.post("/v1/events", "text/plain", body.as_bytes()).await.unwrap();
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
            answer.statuses().remove(0)
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let accepted = statuses.iter().filter(|s| *s == "accepted").count();
    let duplicate = statuses.iter().filter(|s| *s == "duplicate").count();
    assert_eq!((accepted, duplicate), (1, 49), "{statuses:?}");
    for c in [&a, &b] {
        let v: serde_json::Value =
            serde_json::from_str(&c.remote().get("/v1/conversions?site=demo").await.unwrap().body).unwrap();
        let orders = each(&v["conversions"], "orderId");
        assert_eq!(orders, ["ORDER-RACE"]);
    }
}

/// `kill -9` of one collector under load: every event it acknowledged is stored, the other
/// collector keeps answering all the while, and a resend of everything is answered `duplicate`
/// for each acknowledged event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_collector_killed_under_load_loses_nothing_it_acknowledged() {
    let url = pg::database("kill");
    let (mut a, b) = (Collector::start(&url), Collector::start(&url));
    let stop = Arc::new(AtomicBool::new(false));
    let (on_a, on_b) = (Arc::new(Ledger::default()), Arc::new(Ledger::default()));
    let mut tasks = Vec::new();
    for i in 0..4u64 {
        tasks.push(tokio::spawn(load(
            a.remote(),
            (1 + i) * 1_000_000,
            stop.clone(),
            on_a.clone(),
            true,
        )));
        tasks.push(tokio::spawn(load(
            b.remote(),
            (11 + i) * 1_000_000,
            stop.clone(),
            on_b.clone(),
            false,
        )));
    }
    until(
        Duration::from_secs(60),
        "load acknowledged by the first collector",
        || on_a.acked() >= 2_000,
    )
    .await;
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let at_kill = on_b.acked();
    until(
        Duration::from_secs(60),
        "the other collector serving after the kill",
        || on_b.acked() >= at_kill + 2_000,
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    assert!(
        on_a.failed.load(Ordering::SeqCst) > 0,
        "the killed collector's load noticed"
    );
    assert_eq!(
        on_b.failed.load(Ordering::SeqCst),
        0,
        "the other collector never failed a request"
    );
    assert!(
        on_b.refused.lock().unwrap().is_empty(),
        "{:?}",
        on_b.refused.lock().unwrap()
    );
    let to = b.remote();
    let sent = resend_all(&to, &on_a).await + resend_all(&to, &on_b).await;
    // Everything sent is stored now, once.
    let store = utt_collector::store::postgres::PostgresStore::open(&url).unwrap();
    use utt_collector::store::Store;
    assert_eq!(store.counts().unwrap().events, sent as u64);
}

/// PostgreSQL stopped under load: the collector answers 503 with a Retry-After (never a 500)
/// and `/healthz` says failing while it is down; started again, the collector recovers by
/// itself; nothing it acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_restart_under_load_is_answered_503_and_recovered_from() {
    let server = pg::PgServer::start("restart");
    let url = server.database("restart");
    let c = Collector::start(&url);
    let stop = Arc::new(AtomicBool::new(false));
    let ledger = Arc::new(Ledger::default());
    let mut tasks = Vec::new();
    for i in 0..4u64 {
        tasks.push(tokio::spawn(load(
            c.remote(),
            (1 + i) * 1_000_000,
            stop.clone(),
            ledger.clone(),
            false,
        )));
    }
    until(Duration::from_secs(60), "load acknowledged", || ledger.acked() >= 1_000).await;
    let stopping = tokio::task::spawn_blocking(move || {
        server.stop();
        server
    });
    until(Duration::from_secs(60), "a 503 while the database is down", || {
        !ledger.refused.lock().unwrap().is_empty()
    })
    .await;
    let server = stopping.await.unwrap();
    let health = c.remote().get("/healthz").await.unwrap();
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE, "{}", health.body);
    let v: serde_json::Value = serde_json::from_str(&health.body).unwrap();
    assert_eq!(v["status"], "failing");
    assert!(v["error"].as_str().unwrap().contains("unreachable"), "{v}");
    // The read API says so too, rather than a 500.
    let read = c.remote().get("/v1/conversions?site=demo").await.unwrap();
    assert_eq!(read.status, StatusCode::SERVICE_UNAVAILABLE, "{}", read.body);
    assert_eq!(read.header("retry-after"), Some("2"));
    let down = ledger.acked();

    let server = tokio::task::spawn_blocking(move || {
        server.start_again();
        server
    })
    .await
    .unwrap();
    until(Duration::from_secs(60), "the collector storing again", || {
        ledger.acked() >= down + 1_000
    })
    .await;
    let remote = c.remote();
    let mut healthy = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !healthy {
        assert!(tokio::time::Instant::now() < deadline, "/healthz never recovered");
        healthy = remote.get("/healthz").await.unwrap().status == StatusCode::OK;
        if !healthy {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let refused = ledger.refused.lock().unwrap().clone();
    assert!(
        refused.iter().all(|(code, retry)| *code == 503 && retry.is_some()),
        "only 503s with Retry-After while down: {refused:?}"
    );
    resend_all(&remote, &ledger).await;
    drop(server);
}
