//! The `utt-collector` binary as operators run it: under a low open-file limit with more
//! silent and slow connections than it allows, stopped with SIGTERM while a client stalls,
//! configured from the environment alone, its logs on a pipe, and restarted on its database
//! while the tag sends a batch again.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use utt::core::wire::{self, Status};
use utt_collector::server::RESERVED_FILES;
use utt_collector::store::sqlite::SqliteStore;
use utt_collector::store::Store;

const BIN: &str = env!("CARGO_BIN_EXE_utt-collector");

/// Reads the child's stderr to its end on a thread.
fn stderr_of(child: &mut Child) -> JoinHandle<String> {
    let mut err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut text = String::new();
        err.read_to_string(&mut text).unwrap();
        text
    })
}

/// Sends SIGTERM.
fn terminate(child: &Child) {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// Waits for the child to exit, at most `limit` (then kills it and fails).
async fn exit_within(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running {limit:?} after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A batch of `n` page views numbered from `first`, and their event IDs.
fn views(first: u64, n: u64) -> (String, Vec<String>) {
    let events: Vec<String> = (first..first + n)
        .map(|i| event(i, Some("v"), T0, vec![], pageview()))
        .collect();
    (batch(&events), (first..first + n).map(uuid).collect())
}

/// A POST of a batch, head and body.
fn post_request(body: &str) -> String {
    format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Sends a batch and checks that every event was accepted.
async fn post_accepted(c: &Remote, body: &str) {
    let a = c.post("/v1/events", "text/plain", body.as_bytes()).await.unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    let outcomes = wire::read_outcomes(&a.body).unwrap();
    assert!(outcomes.iter().all(|o| o.status == Status::Accepted), "{}", a.body);
}

/// Every stored event among `ids`.
fn stored(db: &Path, ids: &[String]) -> Vec<String> {
    let store = SqliteStore::open(db).unwrap();
    let found = ids.iter().filter(|id| store.has_event(id).unwrap()).cloned().collect();
    store.close().unwrap();
    found
}

#[tokio::test]
async fn more_connections_than_open_files_leave_requests_served() {
    const OPEN: usize = 300;
    let dir = TempDir::new("files");
    let db = dir.join("utt.db");
    let config = config_file(&dir, "header_timeout_ms = 1000\nbody_timeout_ms = 1000");
    // 256 open files (soft and hard), set by the shell that then becomes the collector.
    let (mut child, addr) = listening(
        Command::new("sh")
            .args(["-c", "ulimit -n 256 && exec \"$0\" \"$@\""])
            .arg(BIN)
            .args(["--listen", "127.0.0.1:0", "--log-format", "json", "--db"])
            .arg(&db)
            .arg("--config")
            .arg(&config)
            .env("UTT_LOG", "warn")
            .stderr(Stdio::piped()),
    );
    let logs = stderr_of(&mut child);

    // Silent connections, partial heads and stalled bodies, more than the process has files.
    let (body, ids) = views(1, 5);
    let request = post_request(&body);
    let mut held: Vec<(usize, TcpStream)> = Vec::new();
    for i in 0..OPEN {
        let s = match i % 3 {
            0 => TcpStream::connect(addr).await.unwrap(),
            1 => send_raw(addr, b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Ty").await,
            _ => send_raw(addr, &request.as_bytes()[..request.len() - 20]).await,
        };
        held.push((i % 3, s));
    }

    // A normal client is answered: once the timeouts have closed enough of them, at the latest.
    let started = Instant::now();
    let served = tokio::time::timeout(Duration::from_secs(60), async {
        let c = Remote::new(addr);
        let a = c.get("/healthz").await.unwrap();
        assert_eq!(
            (a.status.as_u16(), a.body.clone()),
            (200, "{\"status\":\"ok\"}".to_string())
        );
        post_accepted(&c, &body).await;
    });
    served.await.expect("no answer within 60 s");
    eprintln!("answered after {:?}", started.elapsed());

    // And the server closed every one of them: the stalled bodies with a 408.
    for (kind, mut s) in held {
        let got = read_to_close(&mut s, Duration::from_secs(60)).await;
        if kind == 2 {
            let (status, _, text) = parse_answer(&got);
            assert_eq!(status, 408, "{text}");
            assert_eq!(
                text,
                "{\"error\":\"body not received within 1000 ms\",\"field\":\"body\"}"
            );
        } else {
            assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
        }
    }
    // An idle connection is closed after the header timeout, not before.
    let opened = Instant::now();
    let mut idle = TcpStream::connect(addr).await.unwrap();
    read_to_close(&mut idle, Duration::from_secs(30)).await;
    assert!(
        opened.elapsed() >= Duration::from_millis(1000),
        "{:?}",
        opened.elapsed()
    );

    terminate(&child);
    let status = exit_within(&mut child, Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}");
    // Every log line is a JSON object; the collector lowered its cap to what 256 files hold.
    let logs = logs.join().unwrap();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["open_file_limit"] == 256 && l["fields"]["cap"] == 256 - RESERVED_FILES),
        "{logs}"
    );
    assert_eq!(stored(&db, &ids), ids);
}

#[tokio::test]
async fn sigterm_drains_for_a_bounded_time_behind_a_stalled_client() {
    const DRAIN: Duration = Duration::from_millis(4000);
    let dir = TempDir::new("drain");
    let db = dir.join("utt.db");
    let config = config_file(&dir, "drain_timeout_ms = 4000\nbody_timeout_ms = 600000");
    let (mut child, addr) = listening(
        Command::new(BIN)
            .args(["--listen", "127.0.0.1:0", "--db"])
            .arg(&db)
            .arg("--config")
            .arg(&config)
            .stderr(Stdio::piped()),
    );
    let logs = stderr_of(&mut child);

    // Acknowledged before the stop.
    let (first, acked) = views(1, 10);
    let c = Remote::new(addr);
    post_accepted(&c, &first).await;
    // Two clients, each answered once (so the server holds their connections), then halfway
    // through a batch's body: one finishes it during the drain, the other never does.
    let mut halfway = Vec::new();
    let mut rests = Vec::new();
    for first in [100, 200] {
        let mut s = send_raw(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let mut answer = Vec::new();
        while !answer.ends_with(b"{\"status\":\"ok\"}") {
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buf[..n]);
        }
        let (body, ids) = views(first, 10);
        let request = post_request(&body);
        let (head, rest) = request.split_at(request.len() - body.len() / 2);
        s.write_all(head.as_bytes()).await.unwrap();
        halfway.push((s, ids));
        rests.push(rest.to_string());
    }
    let (mut finishing, finishing_ids) = halfway.remove(0);
    let (mut stalled, stalled_ids) = halfway.remove(0);

    let stopped = Instant::now();
    terminate(&child);
    // The listener closes first.
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A request in flight may finish during the drain, and is answered with `Connection: close`.
    finishing.write_all(rests[0].as_bytes()).await.unwrap();
    let (status, head, text) = parse_answer(&read_to_close(&mut finishing, Duration::from_secs(20)).await);
    assert_eq!(status, 200, "{text}");
    assert!(head.contains("connection: close"), "{head}");
    // The stalled one is cut when the drain time is over, and the process exits 0.
    let cut = read_to_close(&mut stalled, DRAIN + Duration::from_secs(20)).await;
    assert!(cut.is_empty(), "{:?}", String::from_utf8_lossy(&cut));
    let status = exit_within(&mut child, DRAIN + Duration::from_secs(20)).await;
    let took = stopped.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took >= DRAIN, "exited after {took:?}, before the drain time");
    eprintln!("exited {took:?} after SIGTERM");

    // Logs on a pipe carry no colour codes.
    let logs = logs.join().unwrap();
    assert!(!logs.contains('\x1b'), "{logs:?}");
    assert!(logs.contains("drain time over"), "{logs}");
    // Everything acknowledged is stored; the stalled batch is not.
    assert_eq!(stored(&db, &acked), acked);
    assert_eq!(stored(&db, &finishing_ids), finishing_ids);
    assert!(stored(&db, &stalled_ids).is_empty());
}

#[tokio::test]
async fn the_environment_configures_the_binary() {
    let dir = TempDir::new("env");
    let db = dir.join("data.db");
    let config = dir.join("env.toml");
    std::fs::write(
        &config,
        "[[sites]]\nid = \"envsite\"\nallowed_origins = [\"http://localhost:*\"]\n",
    )
    .unwrap();
    for (folder, text) in [("a", "from a"), ("b", "from b")] {
        std::fs::create_dir(dir.join(folder)).unwrap();
        std::fs::write(dir.join(folder).join("page.txt"), text).unwrap();
    }
    std::fs::write(dir.join("b").join("only-b.txt"), "only b").unwrap();
    let statics = format!("{},{}", dir.join("a").display(), dir.join("b").display());
    let (mut child, addr) = listening(
        Command::new(BIN)
            .env("UTT_LISTEN", "127.0.0.1:0")
            .env("UTT_DB", &db)
            .env("UTT_CONFIG", &config)
            .env("UTT_STATIC", statics)
            .env("UTT_LOG", "info")
            .env("UTT_LOG_FORMAT", "json")
            .stderr(Stdio::piped()),
    );
    let logs = stderr_of(&mut child);
    let c = Remote::new(addr);
    for (path, want) in [("/page.txt", "from a"), ("/only-b.txt", "only b")] {
        let a = c.get(path).await.unwrap();
        assert_eq!((a.status.as_u16(), a.body.clone()), (200, want.to_string()), "{path}");
    }
    // The configured site, not the demo's.
    let id = uuid(7);
    let body = wire::write_batch(
        "envsite",
        None,
        T0,
        false,
        &[&event(7, Some("v"), T0, vec![], pageview())],
    );
    let a = c.post("/v1/events", "text/plain", body.as_bytes()).await.unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    let demo = batch(&[event(8, Some("v"), T0, vec![], pageview())]);
    let a = c.post("/v1/events", "text/plain", demo.as_bytes()).await.unwrap();
    assert_eq!(a.status, 404, "{}", a.body);
    drop(c);
    terminate(&child);
    assert!(exit_within(&mut child, Duration::from_secs(30)).await.success());
    let logs = logs.join().unwrap();
    for line in logs.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
    assert!(logs.contains("utt-collector started"), "{logs}");
    assert_eq!(stored(&db, std::slice::from_ref(&id)), [id]);
}

#[test]
fn bad_command_lines_and_environments_are_refused_clearly() {
    let listen = "invalid value 'nowhere' for '--listen <ADDR>'";
    let cases = [
        (vec!["--listen", "nowhere"], None, listen),
        (vec![], Some(("UTT_LISTEN", "nowhere")), listen),
        (
            vec![],
            Some(("UTT_LOG_FORMAT", "xml")),
            "invalid value 'xml' for '--log-format <FORMAT>'",
        ),
        (
            vec![],
            Some(("UTT_REBUILD_DERIVED", "maybe")),
            "invalid value 'maybe' for '--rebuild-derived'",
        ),
    ];
    for (args, env, want) in cases {
        let out = Command::new(BIN).args(&args).envs(env).output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {said}");
        assert!(said.contains(want), "{args:?} {env:?}: {said}");
    }
}

/// Starts the binary on `db` with JSON logs at `warn` on a pipe.
fn start_on(db: &Path, config: &Path) -> (Child, std::net::SocketAddr, JoinHandle<String>) {
    let (mut child, addr) = listening(
        Command::new(BIN)
            .args(["--listen", "127.0.0.1:0", "--log-format", "json", "--db"])
            .arg(db)
            .arg("--config")
            .arg(config)
            .env("UTT_LOG", "warn")
            .stderr(Stdio::piped()),
    );
    let logs = stderr_of(&mut child);
    (child, addr, logs)
}

/// Stops the child with SIGTERM: it must exit 0 and have logged no error.
async fn stop_cleanly(mut child: Child, logs: JoinHandle<String>) {
    terminate(&child);
    let status = exit_within(&mut child, Duration::from_secs(30)).await;
    let logs = logs.join().unwrap();
    assert!(status.success(), "{status:?}\n{logs}");
    for line in logs.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_ne!(v["level"], "ERROR", "{line}");
    }
}

/// What the tag does when an answer was lost: it sends the batch again, perhaps to a collector
/// that restarted meanwhile. Idempotency lives in the database, not in memory: after a SIGTERM
/// and a restart on the same file every event of the batch is answered `duplicate`, nothing is
/// stored twice, and the order is counted once, also under a new event ID.
#[tokio::test]
async fn a_batch_sent_again_after_a_restart_is_answered_duplicate_and_stored_once() {
    let dir = TempDir::new("restart");
    let db = dir.join("utt.db");
    let config = config_file(&dir, "");
    let visitor = "5b0e3f0a-6c1d-4f3e-9a8b-2c7d1e0f4a5b";
    let clicks = vec![click("irclickid", "impact", "RESTART1", T0 - 1000)];
    let mut events: Vec<String> = (1..=3)
        .map(|n| event(n, Some(visitor), T0 + n, clicks.clone(), pageview()))
        .collect();
    events.push(event(
        4,
        Some(visitor),
        T0 + 4,
        clicks.clone(),
        conversion("ORD-RESTART", None),
    ));
    let body = batch(&events);
    let ids: Vec<String> = (1..=4).map(uuid).collect();

    let (child, addr, logs) = start_on(&db, &config);
    let c = Remote::new(addr);
    post_accepted(&c, &body).await;
    drop(c);
    stop_cleanly(child, logs).await;

    let (child, addr, logs) = start_on(&db, &config);
    let c = Remote::new(addr);
    let a = c.post("/v1/events", "text/plain", body.as_bytes()).await.unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    let outcomes = wire::read_outcomes(&a.body).unwrap();
    let answered: Vec<(Option<String>, Status)> = outcomes.into_iter().map(|o| (o.id, o.status)).collect();
    let want: Vec<(Option<String>, Status)> = ids.iter().map(|id| (Some(id.clone()), Status::Duplicate)).collect();
    assert_eq!(answered, want, "{}", a.body);
    // The same order under another event ID (a reloaded thank-you page) is a duplicate too.
    let again = batch(&[event(5, Some(visitor), T0 + 5, clicks, conversion("ORD-RESTART", None))]);
    let a = c.post("/v1/events", "text/plain", again.as_bytes()).await.unwrap();
    let outcomes = wire::read_outcomes(&a.body).unwrap();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].status, Status::Duplicate, "{}", a.body);

    let a = c.get("/v1/conversions?site=demo").await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(each(&v["conversions"], "orderId"), ["ORD-RESTART"], "{v}");
    assert_eq!(each(&v["conversions"], "eventId"), [uuid(4)], "{v}");
    let a = c.get("/v1/clicks/RESTART1").await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["pageViews"], 3, "the page views counted once: {v}");
    assert_eq!(v["conversions"].as_array().map(Vec::len), Some(1), "{v}");
    drop(c);
    stop_cleanly(child, logs).await;

    let store = SqliteStore::open(&db).unwrap();
    assert_eq!(store.counts().unwrap().events, 4, "each event stored once");
    assert!(
        !store.has_event(&uuid(5)).unwrap(),
        "the second event of the order was not kept"
    );
    store.close().unwrap();
}
