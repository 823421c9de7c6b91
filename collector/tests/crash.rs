//! Crash safety: the real `utt-collector` binary is killed with SIGKILL in the middle of
//! ingest, restarted on the same database, and every event it acknowledged must be there.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use utt::core::wire::{self, Status};
use utt_collector::store::sqlite::SqliteStore;
use utt_collector::store::Store;

#[tokio::test]
async fn acknowledged_events_survive_kill_9() {
    let dir = TempDir::new("crash");
    let db = dir.join("utt.db");
    let config = config_file(&dir, "");
    let next = Arc::new(AtomicU64::new(1));
    let mut acknowledged: Vec<String> = Vec::new();
    let mut orders: Vec<String> = Vec::new();
    let mut clicked: Vec<String> = Vec::new();
    let acked_so_far = Arc::new(AtomicU64::new(0));
    // Kill at a different point of the load each round: once this many events were acknowledged
    // in the round (so the kill always lands in the middle of ingest, however slow the machine).
    for kill_after in [50u64, 400, 1500] {
        let (mut child, addr) = spawn_collector(&db, &config);
        acked_so_far.store(0, Ordering::Relaxed);
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let next = next.clone();
            let acked_so_far = acked_so_far.clone();
            tasks.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                let c = Remote::new(addr);
                loop {
                    let first = next.fetch_add(10, Ordering::Relaxed);
                    // Each batch carries a click of its own: its touch and page counts are
                    // written behind the acknowledgement, and must be there after the kill too.
                    // (A visitor of its own too: one visitor's hundreds of clicks and orders
                    // would make each click's answer weigh all of them.)
                    let clicks = vec![click("irclickid", "impact", &format!("CRASH{first}"), T0 - 1000)];
                    let visitor = format!("V{first}");
                    let mut events: Vec<String> = (first..first + 9)
                        .map(|n| event(n, Some(&visitor), T0, clicks.clone(), pageview()))
                        .collect();
                    events.push(event(
                        first + 9,
                        Some(&visitor),
                        T0,
                        clicks,
                        conversion(&format!("ORD-{first}"), None),
                    ));
                    // A connection cut by the kill ends this client; what it had acknowledged stands.
                    let Ok(a) = c.post("/v1/events", "text/plain", batch(&events).as_bytes()).await else {
                        return acked;
                    };
                    assert_eq!(a.status, 200, "{}", a.body);
                    for o in wire::read_outcomes(&a.body).unwrap() {
                        assert_eq!(o.status, Status::Accepted);
                        acked.push(o.id.unwrap());
                    }
                    acked_so_far.fetch_add(10, Ordering::Relaxed);
                }
            }));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while acked_so_far.load(Ordering::Relaxed) < kill_after && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        child.kill().unwrap(); // SIGKILL: no shutdown code runs.
        child.wait().unwrap();
        for t in tasks {
            let acked = t.await.unwrap();
            for chunk in acked.chunks(10) {
                if chunk.len() == 10 {
                    let first = chunk[0]
                        .rsplit('-')
                        .next()
                        .map_or(0, |h| u64::from_str_radix(h, 16).unwrap());
                    orders.push(format!("ORD-{first}"));
                    clicked.push(format!("CRASH{first}"));
                }
            }
            acknowledged.extend(acked);
        }
    }
    assert!(
        acknowledged.len() > 100,
        "the load did not run: {} acknowledged",
        acknowledged.len()
    );

    // Restart on the same database: the read API lists every acknowledged order.
    let (mut child, addr) = spawn_collector(&db, &config);
    let c = Remote::new(addr);
    let a = c.get("/v1/conversions?site=demo&limit=10000").await.unwrap();
    assert_eq!(a.status, 200);
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    let listed: std::collections::HashSet<&str> = each(&v["conversions"], "orderId").into_iter().collect();
    for o in &orders {
        assert!(
            listed.contains(o.as_str()),
            "{o} acknowledged but missing after restart"
        );
    }
    // Every acknowledged batch's click has its 9 page views, counted once: derived from the
    // pending rows the kill left, or before it, never both.
    for value in &clicked {
        let a = c.get(&format!("/v1/clicks/{value}")).await.unwrap();
        assert_eq!(a.status, 200, "{value}: {}", a.body);
        let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        let views: u64 = v["pages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["views"].as_u64().unwrap())
            .sum();
        assert_eq!(views, 9, "{value}: {v}");
        assert_eq!(v["conversions"].as_array().map(Vec::len), Some(1), "{value}: {v}");
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // And every acknowledged event ID is stored.
    let store = SqliteStore::open(&db).unwrap();
    for id in &acknowledged {
        assert!(
            store.has_event(id).unwrap(),
            "{id} acknowledged but missing after kill -9"
        );
    }
    assert!(store.counts().unwrap().events >= acknowledged.len() as u64);

    // The derived file made again from the events by the binary (the collector stopped) has
    // the same rows: every acknowledged click as the API showed it.
    let seen: Vec<_> = clicked.iter().map(|v| store.click(v, None).unwrap()).collect();
    store.close().unwrap();
    drop(store);
    let derived = utt_collector::store::sqlite::derived_path(&db);
    std::fs::remove_file(&derived).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_utt-collector"))
        .args(["--rebuild-derived", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}{}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains(" events of "), "{said}");
    let store = SqliteStore::open(&db).unwrap();
    for (value, before) in clicked.iter().zip(seen) {
        assert_eq!(store.click(value, None).unwrap(), before, "{value}");
    }
    store.close().unwrap();
}
