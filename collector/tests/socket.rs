//! The collector on a real socket (port 0): a round trip with graceful shutdown, many
//! concurrent clients sending overlapping batches (duplicate event IDs and order IDs), the
//! connection timeouts, a half-closed client, and which error answers are JSON.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use utt::core::wire::{self, Status};
use utt_collector::store::sqlite::SqliteStore;
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

/// A POST of a batch as the tag sends it, head and body.
fn post_request(body: &str) -> String {
    format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn a_half_closed_client_gets_its_answer() {
    let h = Harness::new();
    let (addr, stop, server) = start(h.state.clone()).await;
    let body = batch(&[
        event(1, Some("v"), T0, vec![], pageview()),
        event(2, Some("v"), T0, vec![], pageview()),
    ]);
    let mut s = send_raw(addr, post_request(&body).as_bytes()).await;
    // shutdown(Write): the request is complete and the client sends nothing more.
    s.shutdown().await.unwrap();
    let (status, _, answer) = parse_answer(&read_to_close(&mut s, Duration::from_secs(30)).await);
    assert_eq!(status, 200, "{answer}");
    let outcomes = wire::read_outcomes(&answer).unwrap();
    assert!(outcomes.iter().all(|o| o.status == Status::Accepted), "{answer}");
    assert_eq!(h.events(), 2);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn silent_slow_and_idle_connections_are_closed() {
    const MS: u64 = 300;
    let mut config = unlimited();
    config.server.header_timeout_ms = MS;
    config.server.body_timeout_ms = MS;
    let h = Harness::with_config(config);
    let (addr, stop, server) = start(h.state.clone()).await;
    let opened = Instant::now();
    let silent = TcpStream::connect(addr).await.unwrap();
    let partial_head = send_raw(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
    let idle = send_raw(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let body = batch(&[event(1, Some("v"), T0, vec![], pageview())]);
    let request = post_request(&body);
    let slow_body = send_raw(addr, &request.as_bytes()[..request.len() - 10]).await;
    let cases = [
        ("silent", silent, None),
        ("a partial head", partial_head, None),
        ("idle after an answer", idle, Some(200)),
        ("a slow body", slow_body, Some(408)),
    ];
    for (what, mut stream, answer) in cases {
        let got = read_to_close(&mut stream, Duration::from_secs(20)).await;
        let took = opened.elapsed();
        // The server's clock for each started after `opened`; none is closed before its time.
        assert!(took >= Duration::from_millis(MS), "{what}: closed after {took:?}");
        match answer {
            None => assert!(got.is_empty(), "{what}: {:?}", String::from_utf8_lossy(&got)),
            Some(want) => {
                let (status, _, body) = parse_answer(&got);
                assert_eq!(status, want, "{what}: {body}");
                if want == 408 {
                    assert_eq!(
                        body,
                        "{\"error\":\"body not received within 300 ms\",\"field\":\"body\"}"
                    );
                }
            }
        }
    }
    assert_eq!(h.events(), 0, "the slow body's batch is not stored");
    // The server still answers.
    let c = Remote::new(addr);
    let a = c.post("/v1/events", "text/plain", body.as_bytes()).await.unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    drop(c);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn error_answers_are_json_except_hypers_own() {
    let h = Harness::new();
    let (addr, stop, server) = start(h.state.clone()).await;
    // The router's refusals, on the socket too.
    let c = Remote::new(addr);
    for (method, path, status, field) in [
        ("DELETE", "/healthz", 405, "method"),
        ("PUT", "/v1/events", 405, "method"),
        ("GET", "/nope", 404, "path"),
        ("POST", "/v1/clicks/%ff", 405, "method"),
        ("GET", "/v1/clicks/%ff", 400, "click_id"),
    ] {
        let a = c.request(method, path).await.unwrap();
        assert_eq!(a.status, status, "{method} {path}");
        assert_eq!(a.header("content-type"), Some("application/json"), "{method} {path}");
        let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(v["field"].as_str(), Some(field), "{method} {path}: {v}");
        assert!(v["error"].is_string(), "{method} {path}: {v}");
    }
    // What hyper refuses before any of our code runs: a status line and no body (documented in
    // docs/collector.md), then the connection is closed.
    let many_headers: String = (0..200).map(|i| format!("X-{i}: {}\r\n", "a".repeat(100))).collect();
    let long_uri = format!("/{}", "a".repeat(70_000));
    for (request, want) in [
        ("GARBAGE\r\n\r\n".to_string(), 400),
        ("GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n".to_string(), 400),
        (format!("GET / HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n"), 431),
        (format!("GET {long_uri} HTTP/1.1\r\nHost: x\r\n\r\n"), 414),
    ] {
        let mut s = send_raw(addr, request.as_bytes()).await;
        let (status, head, body) = parse_answer(&read_to_close(&mut s, Duration::from_secs(20)).await);
        assert_eq!(status, want, "{head}");
        assert!(head.contains("content-length: 0"), "{head}");
        assert!(body.is_empty(), "{body}");
    }
    drop(c);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
