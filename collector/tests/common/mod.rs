//! Helpers shared by the collector's integration tests: temporary databases, an app over them,
//! `oneshot` requests, and event builders.
#![allow(dead_code)]

pub mod pg;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::ServiceExt;
use utt::core::click::Click;
use utt::core::wire::{self, Event, Kind, Order};
use utt_collector::config::{Config, RateLimit};
use utt_collector::ratelimit::{FakeRelativeClock, RateLimiter};
use utt_collector::store::sqlite::SqliteStore;
use utt_collector::store::Store;
use utt_collector::{app, AppState, Shared};

/// A folder removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh, empty folder under the system temp folder.
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "utt-collector-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The demo configuration with the rate limit off.
pub fn unlimited() -> Config {
    let mut c = Config::demo();
    c.rate_limit = RateLimit {
        per_second: 0,
        per_minute: 0,
        burst: 0,
    };
    c
}

/// `utt.toml` in `dir`: the demo site (on `http://localhost:*`) without a rate limit, with
/// these `[server]` lines.
pub fn config_file(dir: &TempDir, server: &str) -> PathBuf {
    let path = dir.join("utt.toml");
    std::fs::write(
        &path,
        format!(
            "[rate_limit]\nper_second = 0\nburst = 0\n\n[server]\n{server}\n\n[[sites]]\nid = \"demo\"\nallowed_origins = [\"http://localhost:*\"]\n"
        ),
    )
    .unwrap();
    path
}

/// Spawns a `utt-collector` command (perhaps behind a wrapper that `exec`s it) with its stdout
/// piped, and reads the address from the line it prints first.
pub fn listening(cmd: &mut Command) -> (Child, SocketAddr) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("utt-collector listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    (child, addr)
}

/// Starts the `utt-collector` binary on a free port over the database `db` with the
/// configuration file `config` (its warnings on the test's stderr), and reads its address.
pub fn spawn_collector(db: &Path, config: &Path) -> (Child, SocketAddr) {
    listening(
        Command::new(env!("CARGO_BIN_EXE_utt-collector"))
            .args(["--listen", "127.0.0.1:0", "--db"])
            .arg(db)
            .arg("--config")
            .arg(config)
            .env("UTT_LOG", "warn")
            .stderr(Stdio::inherit()),
    )
}

/// Opens a connection and sends `bytes`: a request, or the start of one.
pub async fn send_raw(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    s
}

/// Reads until the server closes the connection (an end of file or a reset), waiting at most
/// `limit`: what it sent.
pub async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => panic!(
                "the connection is still open after {limit:?}; received {:?}",
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(0) | Err(_)) => return got,
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The status, lowercase head and body of one raw HTTP/1.1 answer.
pub fn parse_answer(bytes: &[u8]) -> (u16, String, String) {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// A collector over a fresh database; the folder lives as long as the value.
pub struct Harness {
    pub dir: TempDir,
    pub state: AppState,
}

impl Harness {
    /// The demo configuration with the rate limit off.
    pub fn new() -> Harness {
        Harness::with_config(unlimited())
    }

    /// A given configuration.
    pub fn with_config(config: Config) -> Harness {
        Harness::with(config, Vec::new())
    }

    /// A given configuration and static folders.
    pub fn with(config: Config, statics: Vec<PathBuf>) -> Harness {
        let dir = TempDir::new("h");
        let db = dir.join("utt.db");
        Harness::at(dir, &db, config, statics)
    }

    /// The rate limit off and the database at `db` (elsewhere than the harness's folder).
    pub fn with_db(db: &Path) -> Harness {
        let mut c = Config::demo();
        c.rate_limit = RateLimit {
            per_second: 0,
            per_minute: 0,
            burst: 0,
        };
        Harness::at(TempDir::new("h"), db, c, Vec::new())
    }

    fn at(dir: TempDir, db: &Path, config: Config, statics: Vec<PathBuf>) -> Harness {
        let store = SqliteStore::open(db).unwrap();
        let state = Shared::new(config, Arc::new(store), statics);
        Harness { dir, state }
    }

    /// The demo configuration with the rate limit off, over a fresh database of the test
    /// binary's PostgreSQL server.
    pub fn postgres() -> Harness {
        Harness::postgres_with(unlimited())
    }

    /// A given configuration over a fresh database of the test binary's PostgreSQL server.
    pub fn postgres_with(config: Config) -> Harness {
        let url = pg::database("h");
        let store = utt_collector::store::postgres::PostgresStore::open(&url).unwrap();
        let state = Shared::new(config, Arc::new(store), Vec::new());
        Harness {
            dir: TempDir::new("h"),
            state,
        }
    }

    /// Puts the configured rate limit on a fake clock, which stands still until advanced: no
    /// token comes back between requests, however slow the machine.
    pub fn fake_limit_clock(&mut self) -> FakeRelativeClock {
        let clock = FakeRelativeClock::default();
        let state = Arc::get_mut(&mut self.state).expect("before any request");
        state.limiter = RateLimiter::with_clock(state.config.rate_limit, clock.clone());
        clock
    }

    /// The store, for checking what was written.
    pub fn store(&self) -> &dyn Store {
        self.state.store.as_ref()
    }

    /// Stored events.
    pub fn events(&self) -> u64 {
        self.store().counts().unwrap().events
    }

    /// Sends a request through the router without a socket.
    pub async fn send(&self, method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        self.send_bytes(method, uri, headers, body.as_bytes().to_vec()).await
    }

    /// Sends raw bytes through the router.
    pub async fn send_bytes(&self, method: &str, uri: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
        let mut b = Request::builder().method(method).uri(uri);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        let resp = app(self.state.clone())
            .oneshot(b.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        Answer::new(&parts, &axum::body::to_bytes(body, usize::MAX).await.unwrap())
    }

    /// POSTs a JSON body with `Authorization: Bearer <key>`, as a merchant's server does.
    pub async fn post_json(&self, path: &str, key: &str, body: &str) -> Answer {
        let auth = format!("Bearer {key}");
        self.send(
            "POST",
            path,
            &[("content-type", "application/json"), ("authorization", &auth)],
            body,
        )
        .await
    }

    /// POSTs a batch as the tag does (text/plain, from a browser's user agent: without one the
    /// collector classes the batch as a bot's).
    pub async fn post(&self, body: &str) -> Answer {
        self.send(
            "POST",
            "/v1/events",
            &[("content-type", "text/plain;charset=UTF-8"), ("user-agent", BROWSER_UA)],
            body,
        )
        .await
    }

    /// GETs a path and parses the JSON answer.
    pub async fn get_json(&self, uri: &str) -> (StatusCode, serde_json::Value) {
        let a = self.send("GET", uri, &[], "").await;
        let v = serde_json::from_str(&a.body).unwrap_or(serde_json::Value::Null);
        (a.status, v)
    }
}

/// A small tmpfs mounted on a fresh folder (root only), unmounted when dropped: a disk that
/// really fills up. `None` when mounting is not possible here (not root).
pub struct Tmpfs(TempDir);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` reads it, e.g. `2m`). The tests run as root
    /// (the test command and CI do); anywhere else this fails with the reason rather than let a
    /// test pass without testing anything.
    pub fn mount(size: &str) -> Tmpfs {
        use std::os::unix::fs::MetadataExt;
        let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1);
        assert_eq!(uid, 0, "mounting a tmpfs for the full-disk test needs root");
        let dir = TempDir::new("tmpfs");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir.0)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "mount -t tmpfs as root failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir)
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Fills the rest of it with one file, and answers its path.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0x5a; 64 * 1024];
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        // Whatever a last partial block did not take.
        while f.write(&[0x5a]).is_ok_and(|n| n == 1) {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // A thread of the store may still hold a file open: then detach it lazily, and the
        // kernel frees it when the last file closes.
        let umount = |lazy: bool| {
            let mut c = std::process::Command::new("umount");
            if lazy {
                c.arg("-l");
            }
            c.arg(&self.0 .0).status().is_ok_and(|s| s.success())
        };
        if !umount(false) && !umount(true) {
            eprintln!("could not unmount {}", self.0 .0.display());
        }
    }
}

/// An answer from the router.
pub struct Answer {
    pub status: StatusCode,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    /// An answer of this status and headers, and this body.
    fn new(parts: &axum::http::response::Parts, body: &[u8]) -> Answer {
        Answer {
            status: parts.status,
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                .collect(),
            body: String::from_utf8_lossy(body).into_owned(),
        }
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The statuses of a 200 batch answer, in order.
    pub fn statuses(&self) -> Vec<String> {
        wire::read_outcomes(&self.body)
            .unwrap_or_else(|| panic!("not an outcomes answer: {}", self.body))
            .iter()
            .map(|o| match &o.reason {
                Some(r) => format!("{}: {r}", o.status.as_str()),
                None => o.status.as_str().to_string(),
            })
            .collect()
    }
}

/// A keep-alive HTTP/1.1 client of a collector on a real socket (hyper-util's), whose answers
/// read as the router's do.
pub struct Remote {
    client: hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    base: String,
}

/// Why a request to a [`Remote`] got no answer (the server is gone, the connection was cut).
pub type Failed = Box<dyn std::error::Error + Send + Sync>;

impl Remote {
    /// A client of the collector listening at `addr` (connections are opened as needed).
    pub fn new(addr: SocketAddr) -> Remote {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        Remote {
            client,
            base: format!("http://{addr}"),
        }
    }

    /// POSTs `body` with a content type to `path`.
    pub async fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Result<Answer, Failed> {
        let req = Request::post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .header("user-agent", BROWSER_UA)
            .body(Full::new(Bytes::copy_from_slice(body)))?;
        self.send(req).await
    }

    /// GETs `path`.
    pub async fn get(&self, path: &str) -> Result<Answer, Failed> {
        self.request("GET", path).await
    }

    /// Sends `method` to `path` without a body.
    pub async fn request(&self, method: &str, path: &str) -> Result<Answer, Failed> {
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .body(Full::default())?;
        self.send(req).await
    }

    /// Sends a request (its URI absolute, e.g. `http://127.0.0.1:PORT/path`).
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Result<Answer, Failed> {
        let (parts, body) = self.client.request(req).await?.into_parts();
        Ok(Answer::new(&parts, &body.collect().await?.to_bytes()))
    }
}

/// The string `field` of each element of a JSON array (e.g. the click IDs of `touchpoints`).
pub fn each<'a>(list: &'a serde_json::Value, field: &str) -> Vec<&'a str> {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .map(|v| {
            v[field]
                .as_str()
                .unwrap_or_else(|| panic!("no string {field:?} in {v}"))
        })
        .collect()
}

/// The repository's golden fixtures folder.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

pub const DAY: u64 = 86_400_000;
/// A fixed "now" for scenarios (2025-11-26).
pub const T0: u64 = 1_764_150_000_000;

/// A UUID-shaped event ID from a number.
/// A desktop Chrome's user agent: what the tag's requests carry.
pub const BROWSER_UA: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

pub fn uuid(n: u64) -> String {
    format!("019ac0f1-0000-7000-8000-{n:012x}")
}

/// The visitor (and session) ID a test's visitor name stands for: a UUID, as the wire format
/// requires, the same for the same name (a UUID is kept as it is).
pub fn visitor_id(name: &str) -> String {
    if wire::is_uuid(name) {
        return name.to_string();
    }
    // FNV-1a of the name, twice over, as the UUID's hex digits.
    let hash = |seed: u64| {
        name.bytes()
            .fold(seed, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
    };
    let (a, b) = (hash(0xcbf2_9ce4_8422_2325), hash(0x8422_2325_cbf2_9ce4));
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

/// A click.
pub fn click(param: &str, network: &str, value: &str, at: u64) -> Click {
    Click {
        param: param.into(),
        network: network.into(),
        value: value.into(),
        at,
        path: "/landing".into(),
        referrer: String::new(),
        utm: Vec::new(),
    }
}

/// An event of a kind for a visitor at a time, carrying clicks.
pub fn event(n: u64, visitor: Option<&str>, at: u64, clicks: Vec<Click>, kind: Kind) -> String {
    event_on(n, visitor, at, clicks, kind, "https://shop.example/product/42?x=1", "")
}

/// [`event`] on a page `url` reached from `referrer`.
pub fn event_on(
    n: u64,
    visitor: Option<&str>,
    at: u64,
    clicks: Vec<Click>,
    kind: Kind,
    url: &str,
    referrer: &str,
) -> String {
    let e = Event {
        id: uuid(n),
        at,
        visitor: visitor.map(visitor_id),
        session: visitor.map(visitor_id),
        url: url.into(),
        referrer: referrer.into(),
        clicks,
        kind,
    };
    let mut s = String::new();
    wire::write_event(&mut s, &e);
    s
}

/// A page view.
pub fn pageview() -> Kind {
    Kind::PageView {
        title: String::new(),
        props: None,
    }
}

/// A conversion for an order ID, with an optional promo code.
pub fn conversion(order_id: &str, promo: Option<&str>) -> Kind {
    Kind::Conversion(Order {
        order_id: order_id.into(),
        amount: Some(wire::Decimal {
            text: "49.90".into(),
            quoted: true,
        }),
        currency: Some("EUR".into()),
        items: Vec::new(),
        promo_code: promo.map(String::from),
        customer_status: None,
        discount: None,
        custom: None,
    })
}

/// An identify with an email hash and/or customer ID.
pub fn identify(email_hash: Option<&str>, customer_id: Option<&str>) -> Kind {
    Kind::Identify {
        customer_id: customer_id.map(String::from),
        email_hash: email_hash.map(String::from),
    }
}

/// A demo batch of wire events.
pub fn batch(events: &[String]) -> String {
    let refs: Vec<&str> = events.iter().map(String::as_str).collect();
    wire::write_batch("demo", None, T0, false, &refs)
}
