//! The collector on a real socket (port 0): a round trip with graceful shutdown, and many
//! concurrent clients sending overlapping batches (duplicate event IDs and order IDs).

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use common::*;
use tokio::net::TcpListener;
use utt::core::wire::{self, Status};
use utt_collector::sqlite::SqliteStore;
use utt_collector::store::Store;
use utt_collector::{serve, AppState};

async fn start(
    state: AppState,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, state, async {
        let _ = stopped.await;
    }));
    (addr, stop, server)
}

#[tokio::test]
async fn real_socket_round_trip_and_graceful_shutdown() {
    let h = Harness::new();
    let (addr, stop, server) = start(h.state.clone()).await;
    let c = Remote::new(addr);
    let text = std::fs::read_to_string(fixtures().join("batch-journey.json")).unwrap();
    let a = c
        .post("/v1/events", "text/plain;charset=UTF-8", text.as_bytes())
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.header("content-type"), Some("application/json"));
    let outcomes = wire::read_outcomes(&a.body).unwrap();
    assert!(outcomes.iter().all(|o| o.status == Status::Accepted));
    // Same connection (keep-alive), another endpoint.
    let a = c.get("/healthz").await.unwrap();
    assert_eq!((a.status.as_u16(), a.body.as_str()), (200, "{\"status\":\"ok\"}"));
    let a = c.get("/v1/clicks/Xy12abc").await.unwrap();
    assert_eq!(a.status, 200);
    drop(c);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    // The store is closed (WAL checkpointed); a fresh open sees everything acknowledged.
    let reopened = SqliteStore::open(&h.dir.join("utt.db")).unwrap();
    assert_eq!(reopened.counts().unwrap().events, outcomes.len() as u64);
    assert!(TcpListener::bind(addr).await.is_ok(), "the port is released");
}

#[tokio::test]
async fn concurrent_ingest_with_duplicates_stores_each_once() {
    const CLIENTS: u64 = 12;
    const REQUESTS: u64 = 15;
    const POOL: u64 = 300;
    const ORDERS: u64 = 40;
    let h = Harness::new();
    let (addr, stop, server) = start(h.state.clone()).await;
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        tasks.push(tokio::spawn(async move {
            let client = Remote::new(addr);
            let mut seen: Vec<(String, Status)> = Vec::new();
            for r in 0..REQUESTS {
                // Page views from an overlapping pool (tabs retrying the same events), and one
                // conversion per batch under a fresh event ID but a shared order ID (reloads).
                let mut events: Vec<String> = (0..8)
                    .map(|k| {
                        let n = (c * 37 + r * 11 + k * 5) % POOL;
                        event(
                            n,
                            Some("v"),
                            T0,
                            vec![click("irclickid", "impact", "I1", T0 - DAY)],
                            pageview(),
                        )
                    })
                    .collect();
                let order = format!("ORD-{}", (c * REQUESTS + r) % ORDERS);
                events.push(event(
                    10_000 + c * REQUESTS + r,
                    Some("v"),
                    T0,
                    vec![],
                    conversion(&order, None),
                ));
                let a = client
                    .post("/v1/events", "text/plain", batch(&events).as_bytes())
                    .await
                    .unwrap();
                assert_eq!(a.status, 200, "{}", a.body);
                for o in wire::read_outcomes(&a.body).unwrap() {
                    seen.push((o.id.unwrap(), o.status));
                }
            }
            seen
        }));
    }
    let mut accepted: HashMap<String, u32> = HashMap::new();
    let mut sent: HashSet<String> = HashSet::new();
    for t in tasks {
        for (id, status) in t.await.unwrap() {
            assert_ne!(status, Status::Rejected);
            sent.insert(id.clone());
            if status == Status::Accepted {
                *accepted.entry(id).or_default() += 1;
            }
        }
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();

    let store = SqliteStore::open(&h.dir.join("utt.db")).unwrap();
    let counts = store.counts().unwrap();
    assert!(accepted.values().all(|n| *n == 1), "an event was accepted twice");
    assert_eq!(counts.conversions, ORDERS, "one row per order ID");
    assert_eq!(counts.events, accepted.len() as u64, "one row per accepted event");
    let pageview_ids = (0..POOL).filter(|n| sent.contains(&uuid(*n))).count();
    assert_eq!(counts.events, pageview_ids as u64 + ORDERS);
    for id in accepted.keys() {
        // Bodies of events from many batches share one commit's log: each slice is its own event.
        let body = store
            .event(id)
            .unwrap()
            .unwrap_or_else(|| panic!("{id} acknowledged but missing"));
        assert!(
            body.starts_with(&format!("{{\"id\":\"{id}\"")) && body.ends_with('}'),
            "{body}"
        );
    }
}
