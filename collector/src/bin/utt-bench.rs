//! `utt-bench`: the collector's throughput benchmark. It starts the real collector (SQLite on
//! disk in a temporary folder, `synchronous=FULL`; or, with `--db postgres://...`, one or more
//! collectors on that PostgreSQL database, `synchronous_commit=on`) and a bare server that reads the body and
//! answers 204, both on loopback, sends the same load of ~20-event batches to each from
//! concurrent clients for a fixed time, and prints durable events per second, request
//! latency and the ratio to the bare server (the figure that compares across machines), then
//! the CPU the handler's decoding alone takes per event (`--decode-only`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{header, Request, StatusCode};
use axum::routing::post;
use axum::Router;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use utt::core::click::Click;
use utt::core::wire::{self, Decimal, Event, Item, Kind, Order};
use utt_collector::config::{Config, RateLimit};
use utt_collector::store::postgres::{self, PostgresStore};
use utt_collector::store::sqlite::SqliteStore;
use utt_collector::store::Store;
use utt_collector::{serve, AppState, Shared};

// The same allocator as the `utt-collector` binary, so the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: utt-bench [--seconds N] [--rounds N] [--clients N] [--events N] [--keep DIR]
                 [--db postgres://... [--collectors N]]
  --seconds N   how long each server is loaded in each round (default 3)
  --rounds N    rounds; in each the collector is loaded, then the bare server (default 3), so
                that other work on the machine falls on both alike
  --clients N   concurrent keep-alive connections (default 128)
  --events N    events per batch (default 20)
  --keep DIR    put the database in DIR and keep it (default: a temporary folder, removed)
  --db URL      store into this PostgreSQL database instead of a new SQLite file (the events
                are added to what it holds)
  --collectors N  collectors on the PostgreSQL database (default 1), each with its own writer
                and connection pool as separate processes would have; the clients are spread
                over them, as a load balancer would
  --no-bare     load only the collector (for profiling it)
  --ordered-ids visitor and click IDs ordered by time like the event IDs (the figures before
                2026-11-26's second session); by default they are random, as the tag's
                visitor IDs (UUIDv4) and partners' click IDs are
  --append-only no HTTP: decode batches, then time the store's group commits on this thread;
                prints the CPU per event of each side (decoding, storing), which machine
                load disturbs far less than wall-clock rates
  --decode-only no HTTP, no store: only the handler's decoding, validation and preparation
                of each batch, in rounds of 1,000 batches on this thread; prints the
                fastest round's CPU per event (the least disturbed). A full run ends with
                5 such rounds";

struct Opts {
    seconds: u64,
    clients: usize,
    events: usize,
    keep: Option<PathBuf>,
    bare: bool,
    append_only: bool,
    decode_only: bool,
    rounds: usize,
    ordered_ids: bool,
    /// A PostgreSQL URL, instead of a SQLite file.
    db: Option<String>,
    collectors: usize,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Opts, String> {
    let mut o = Opts {
        seconds: 3,
        clients: 128,
        events: 20,
        keep: None,
        bare: true,
        append_only: false,
        decode_only: false,
        rounds: 3,
        ordered_ids: false,
        db: None,
        collectors: 1,
    };
    while let Some(flag) = args.next() {
        if flag == "--keep" {
            o.keep = Some(PathBuf::from(args.next().ok_or("--keep needs a folder")?));
            continue;
        }
        if flag == "--db" {
            let url = args.next().ok_or("--db needs a postgres:// URL")?;
            if !postgres::is_url(&url) {
                return Err(format!("--db {url:?}: only a postgres:// URL (SQLite is the default)"));
            }
            o.db = Some(url);
            continue;
        }
        if flag == "--append-only" {
            o.append_only = true;
            continue;
        }
        if flag == "--decode-only" {
            o.decode_only = true;
            continue;
        }
        if flag == "--ordered-ids" {
            o.ordered_ids = true;
            continue;
        }
        if flag == "--no-bare" {
            o.bare = false;
            continue;
        }
        let v: usize = args
            .next()
            .and_then(|v| v.parse().ok())
            .ok_or(format!("{flag} needs a number"))?;
        match flag.as_str() {
            "--seconds" => o.seconds = v as u64,
            "--rounds" => o.rounds = v.max(1),
            "--clients" => o.clients = v.max(1),
            "--events" => o.events = v.clamp(1, wire::limits::MAX_EVENTS),
            "--collectors" => o.collectors = v.max(1),
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    if o.collectors > 1 && o.db.is_none() {
        return Err("--collectors needs --db postgres://...: a SQLite file has one collector".into());
    }
    if o.db.is_some() && o.append_only {
        return Err("--append-only measures the SQLite store".into());
    }
    Ok(o)
}

/// Makes batches of realistic events with unique, time-ordered (UUIDv7-shaped) IDs. The batch
/// is written once with `wire::write_event` around marker values; each request copies it and
/// overwrites the markers in place, so the load generator spends its time sending, not
/// formatting, and leaves the CPU to the server it measures.
struct Gen {
    next: AtomicU64,
    start_ms: u64,
    /// Batches ending in a conversion (every fourth) and in an identify (the others).
    templates: [Template; 2],
    events: usize,
    /// Visitor and click IDs time-ordered instead of random.
    ordered_ids: bool,
}

/// A batch with the byte offsets of its variable parts.
struct Template {
    text: Vec<u8>,
    /// (offset, which): event IDs are `0..events`, then the visitor, order and click IDs.
    slots: Vec<(usize, usize)>,
}

const MARK: &str = "ffffffff";

/// A 36-character marker for slot `i`: unique, UUID-shaped, never produced by `fill`.
fn marker(i: usize) -> String {
    format!("{MARK}-ffff-7fff-8fff-{i:012x}")
}

fn template(events: usize, ends_in_conversion: bool, start_ms: u64) -> Template {
    let visitor = marker(1000);
    let clicks = vec![
        click("gclid", "google", &marker(1002), start_ms - 86_400_000),
        click("irclickid", "impact", &marker(1003), start_ms - 60_000),
    ];
    let mut texts = Vec::with_capacity(events);
    for i in 0..events {
        let kind = if i + 2 < events || events < 3 {
            Kind::PageView {
                title: "Trail shoe 42 — Shop".into(),
                props: None,
            }
        } else if i + 2 == events {
            Kind::Custom {
                name: "add_to_cart".into(),
                props: None,
            }
        } else if ends_in_conversion {
            Kind::Conversion(order(&marker(1001)))
        } else {
            Kind::Identify {
                customer_id: Some(marker(1001)),
                email_hash: None,
            }
        };
        let e = Event {
            id: marker(i),
            at: start_ms + i as u64,
            visitor: Some(visitor.clone()),
            session: Some(visitor.clone()),
            url: format!("https://shop.example/product/{}?utm_source=partner", i % 7),
            referrer: "https://partner.example/review".into(),
            clicks: clicks.clone(),
            kind,
        };
        let mut s = String::with_capacity(800);
        wire::write_event(&mut s, &e);
        texts.push(s);
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let text = wire::write_batch("demo", None, start_ms, false, &refs);
    let mut slots = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find(MARK) {
        let at = from + i;
        let which = usize::from_str_radix(&text[at + 24..at + 36], 16).expect("marker");
        slots.push((at, which));
        from = at + 36;
    }
    Template {
        text: text.into_bytes(),
        slots,
    }
}

/// Writes `n` as lowercase hex digits filling `out`.
fn hex(out: &mut [u8], mut n: u64) {
    for b in out.iter_mut().rev() {
        *b = b"0123456789abcdef"[(n & 15) as usize];
        n >>= 4;
    }
}

/// Writes a UUIDv7-shaped ID: the time in ms, then a counter.
fn uuid7(out: &mut [u8], ms: u64, n: u64) {
    hex(&mut out[0..8], ms >> 16);
    hex(&mut out[9..13], ms & 0xffff);
    out[14] = b'7';
    hex(&mut out[15..18], n >> 60);
    out[19] = b'8';
    hex(&mut out[20..23], (n >> 48) & 0xfff);
    hex(&mut out[24..36], n & 0xffff_ffff_ffff);
}

/// SplitMix64: a well-mixed 64-bit value of `n` (the same `n`, the same value).
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Writes a UUIDv4-shaped ID whose 122 random-looking bits are a function of `n`.
fn uuid4(out: &mut [u8], n: u64) {
    let (a, b) = (mix(n), mix(!n));
    hex(&mut out[0..8], a >> 32);
    hex(&mut out[9..13], a >> 16);
    out[14] = b'4';
    hex(&mut out[15..18], a);
    out[19] = b"89ab"[(b >> 62) as usize];
    hex(&mut out[20..23], b >> 48);
    hex(&mut out[24..36], b);
}

impl Gen {
    fn new(events: usize, ordered_ids: bool) -> Gen {
        let start_ms = utt_collector::http::system_clock();
        Gen {
            next: AtomicU64::new(0),
            start_ms,
            templates: [template(events, true, start_ms), template(events, false, start_ms)],
            events,
            ordered_ids,
        }
    }

    /// The next batch, decoded, validated and prepared for the writer as the handler does it
    /// (`buf` holds its text).
    fn prepared(&self, buf: &mut Vec<u8>) -> utt_collector::store::Batch {
        self.batch(buf);
        let batch = wire::read_batch(std::str::from_utf8(buf).expect("UTF-8")).expect("valid batch");
        let now = utt_collector::http::system_clock();
        let events = batch.events.into_iter().map(|e| e.expect("valid event")).collect();
        utt_collector::store::Batch::new(&batch.site, now, events)
    }

    /// The next batch into `buf`: fresh event, visitor, order and click IDs.
    fn batch(&self, buf: &mut Vec<u8>) {
        let first = self.next.fetch_add(self.events as u64, Ordering::Relaxed);
        let batch_no = first / self.events as u64;
        let t = &self.templates[usize::from(!batch_no.is_multiple_of(4))];
        buf.clear();
        buf.extend_from_slice(&t.text);
        let ms = self.start_ms + first / 1000;
        for &(at, which) in &t.slots {
            let slot = &mut buf[at..at + 36];
            match which {
                // Visitor, order, customer and click IDs: one per batch, kept apart by the high bits.
                // The visitor and the two click IDs: random, as the tag's visitor IDs (UUIDv4)
                // and partners' click IDs are, so that the tables keyed by them are written at
                // random places, as in production.
                1000 | 1002 | 1003 if !self.ordered_ids => {
                    uuid4(slot, batch_no.wrapping_mul(4).wrapping_add(which as u64))
                }
                1000..=1003 => uuid7(slot, ms, batch_no | ((which as u64 - 999) << 56)),
                i => uuid7(slot, ms, first + i as u64),
            }
        }
    }
}

fn click(param: &str, network: &str, value: &str, at: u64) -> Click {
    Click {
        param: param.into(),
        network: network.into(),
        value: value.into(),
        at,
        path: "/product/42".into(),
        referrer: "partner.example".into(),
        utm: vec![
            ("source".into(), "partner".into()),
            ("medium".into(), "affiliate".into()),
        ],
    }
}

fn order(id: &str) -> Order {
    let dec = |t: &str| Decimal {
        text: t.into(),
        quoted: true,
    };
    Order {
        order_id: id.into(),
        amount: Some(dec("129.90")),
        currency: Some("EUR".into()),
        items: vec![Item {
            sku: Some("SHOE-42".into()),
            name: Some("Trail shoe".into()),
            price: Some(dec("119.90")),
            quantity: Some(1),
            category: Some("shoes".into()),
        }],
        promo_code: Some("SPRING10".into()),
        customer_status: None,
        discount: None,
        custom: None,
    }
}

#[derive(Default)]
struct Figures {
    requests: u64,
    events: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
    errors: u64,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
}

/// One keep-alive HTTP/1.1 connection to `addr` (hyper's client connection, without a pool:
/// each load task owns one, as each browser tab would).
async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (send, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(send)
}

/// Loads `addrs` from `clients` connections (spread over them in turn) for `seconds`; counts
/// the events the answer says were accepted (or, for the bare server, every event of a 204).
async fn load(addrs: &[SocketAddr], opts: &Opts, gen: &Arc<Gen>) -> Figures {
    let deadline = Instant::now() + Duration::from_secs(opts.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..opts.clients {
        let addr = addrs[i % addrs.len()];
        let gen = gen.clone();
        let events = opts.events;
        tasks.push(tokio::spawn(async move {
            let mut c = connect(addr).await.expect("connect to the server under test");
            let (mut reqs, mut ok_events, mut errors) = (0u64, 0u64, 0u64);
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let mut body = Vec::with_capacity(16 * 1024);
                gen.batch(&mut body);
                let req = Request::post("/v1/events")
                    .header(header::HOST, "127.0.0.1")
                    .header(header::CONTENT_TYPE, "text/plain;charset=UTF-8")
                    .body(Full::new(Bytes::from(body)))
                    .expect("a valid request");
                let t = Instant::now();
                let answer = match c.send_request(req).await {
                    Ok(resp) => {
                        let status = resp.status();
                        resp.into_body().collect().await.map(|b| (status, b.to_bytes()))
                    }
                    Err(e) => Err(e),
                };
                let Ok((status, text)) = answer else {
                    errors += 1;
                    break;
                };
                lat.push(t.elapsed().as_micros() as u64);
                reqs += 1;
                match status.as_u16() {
                    204 => ok_events += events as u64,
                    200 => ok_events += accepted(&text),
                    _ => errors += 1,
                }
            }
            (reqs, ok_events, errors, lat)
        }));
    }
    let mut f = Figures {
        requests: 0,
        events: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
        errors: 0,
    };
    for t in tasks {
        let (r, e, x, l) = t.await.expect("load task");
        f.requests += r;
        f.events += e;
        f.errors += x;
        f.latencies_us.extend(l);
    }
    f.elapsed = started.elapsed();
    f.latencies_us.sort_unstable();
    f
}

/// How many events an answer says were accepted.
fn accepted(answer: &[u8]) -> u64 {
    std::str::from_utf8(answer).map_or(0, |t| t.matches("\"accepted\"").count() as u64)
}

/// The figures of several rounds added up (rates are then over the rounds' summed time).
#[derive(Default)]
struct Totals {
    figures: Figures,
    cpu: Duration,
}

impl Totals {
    fn add(&mut self, f: Figures, cpu: Duration) {
        self.figures.requests += f.requests;
        self.figures.events += f.events;
        self.figures.elapsed += f.elapsed;
        self.figures.errors += f.errors;
        self.figures.latencies_us.extend(f.latencies_us);
        self.figures.latencies_us.sort_unstable();
        self.cpu += cpu;
    }
}

/// One thread of this process, found by name, and its scheduler counters when found.
struct ThreadCpu {
    stat: Option<PathBuf>,
    start: (Duration, Duration),
}

impl ThreadCpu {
    fn of(name: &str) -> ThreadCpu {
        let find = || {
            std::fs::read_dir("/proc/self/task").ok().and_then(|tasks| {
                tasks
                    .flatten()
                    .map(|t| t.path())
                    .find(|t| std::fs::read_to_string(t.join("comm")).is_ok_and(|c| c.trim_end() == name))
            })
        };
        // A new thread names itself once it first runs, which on a busy machine can be a while
        // after it was spawned: look for up to a second.
        let mut stat = find();
        for _ in 0..100 {
            if stat.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
            stat = find();
        }
        let stat = stat.map(|t| t.join("schedstat"));
        let start = stat.as_deref().and_then(schedstat).unwrap_or_default();
        ThreadCpu { stat, start }
    }

    /// Time on a CPU and time ready but waiting for one, since [`ThreadCpu::of`].
    fn since(&self) -> Option<(Duration, Duration)> {
        let (run, wait) = schedstat(self.stat.as_deref()?)?;
        Some((run.saturating_sub(self.start.0), wait.saturating_sub(self.start.1)))
    }
}

/// A thread's `schedstat`: nanoseconds on a CPU, then nanoseconds waiting in the run queue.
fn schedstat(path: &std::path::Path) -> Option<(Duration, Duration)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut n = text.split_whitespace().map(|n| n.parse::<u64>().ok());
    Some((Duration::from_nanos(n.next()??), Duration::from_nanos(n.next()??)))
}

fn print(name: &str, f: &Figures) {
    println!(
        "{name:<24} {:>10.0} events/s  {:>8} requests  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}",
        f.rate(),
        f.requests,
        f.percentile(0.50),
        f.percentile(0.99),
        f.errors
    );
}

fn main() {
    let opts = match parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("utt-bench: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let dir: PathBuf = match &opts.keep {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("utt-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).expect("create the temporary folder");
    if opts.decode_only {
        decode_only(&opts, (opts.seconds as usize * 10).max(5));
        return;
    }
    if opts.append_only {
        append_only(&opts, &dir);
        if opts.keep.is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let mut config = Config::demo();
        // One loopback client IP sends everything: the per-IP limit would measure itself.
        config.rate_limit = RateLimit {
            per_second: 0,
            per_minute: 0,
            burst: 0,
        };
        let db = dir.join("bench.db");
        let mut states: Vec<AppState> = Vec::new();
        let mut collectors = Vec::new();
        let mut servers = Vec::new();
        let mut stops = Vec::new();
        for _ in 0..opts.collectors {
            let store: Arc<dyn Store> = match &opts.db {
                Some(url) => Arc::new(PostgresStore::open(url).expect("open the PostgreSQL database")),
                None => Arc::new(SqliteStore::open(&db).expect("open the database")),
            };
            let state = Shared::new(config.clone(), store, Vec::new());
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            collectors.push(listener.local_addr().expect("address"));
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            servers.push(tokio::spawn(serve(listener, state.clone(), async {
                let _ = stop_rx.await;
            })));
            stops.push(stop_tx);
            states.push(state);
        }
        let state = states[0].clone();

        let bare_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let bare = bare_listener.local_addr().expect("address");
        let bare_app = Router::new().route(
            "/v1/events",
            post(|body: Bytes| async move {
                std::hint::black_box(body);
                StatusCode::NO_CONTENT
            }),
        );
        tokio::spawn(async move { axum::serve(bare_listener, bare_app).await });

        let gen = Arc::new(Gen::new(opts.events, opts.ordered_ids));
        let sample = &gen.templates[0].text;
        let store = match &opts.db {
            Some(url) => format!(
                "PostgreSQL synchronous_commit=on at {}, {} collector(s)",
                postgres::redact(url),
                opts.collectors
            ),
            None => format!("SQLite synchronous=FULL at {}", db.display()),
        };
        println!(
            "utt-bench: {} clients, {} events per batch ({} bytes), {} rounds of {} s per server, {store}",
            opts.clients,
            opts.events,
            sample.len(),
            opts.rounds,
            opts.seconds,
        );
        // The two servers take turns, round by round: other work on the machine comes and goes
        // over a minute, and alternating spreads it over both instead of loading one server
        // in a quiet stretch and the other in a busy one.
        let mut stored = Totals::default();
        let mut bare_totals = Totals::default();
        let writer_cpu = ThreadCpu::of("utt-writer");
        let deriver_cpu = ThreadCpu::of("utt-deriver");
        let mut catch_up = Duration::ZERO;
        for round in 1..=opts.rounds {
            let cpu = process_cpu();
            let mut f = load(&collectors, &opts, &gen).await;
            // The derived rows of what was acknowledged are written behind it: the round lasts
            // until they are all written, so its rate and CPU are those of storing everything,
            // and none of that work spills into the bare server's round.
            let waited = Instant::now();
            while states.iter().any(|s| s.store.derive_status().lag > 0) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            catch_up += waited.elapsed();
            f.elapsed += waited.elapsed();
            let used = process_cpu().saturating_sub(cpu);
            if opts.rounds > 1 {
                print(&format!("round {round}: collector"), &f);
            }
            if opts.bare {
                let cpu = process_cpu();
                let b = load(&[bare], &opts, &gen).await;
                let bare_used = process_cpu().saturating_sub(cpu);
                if opts.rounds > 1 {
                    print(&format!("round {round}: bare 204"), &b);
                    println!("  ratio this round: 1/{:.1}", b.rate() / f.rate().max(1.0));
                }
                bare_totals.add(b, bare_used);
            }
            stored.add(f, used);
        }
        println!("all rounds:");
        print("collector (durable)", &stored.figures);
        print_cpu(&stored.figures, stored.cpu);
        for (i, state) in states.iter().enumerate() {
            let w = state.writer.stats();
            let commits = w.commits.load(Ordering::Relaxed).max(1);
            let busy = w.busy_us.load(Ordering::Relaxed) as f64 / 1e6;
            let threads = state.store.writers();
            println!(
                "  writer {}: {commits} commits, {:.0} events per commit, {:.1} ms per commit, {threads} thread(s) \
                 each busy {:.0}% of the run",
                i + 1,
                w.events.load(Ordering::Relaxed) as f64 / commits as f64,
                busy * 1000.0 / commits as f64,
                100.0 * busy / threads as f64 / stored.figures.elapsed.as_secs_f64()
            );
        }
        for (name, thread) in [("writer", &writer_cpu), ("deriver", &deriver_cpu)] {
            if let Some((on_cpu, waiting)) = thread.since() {
                // Of the thread's whole life (the bare rounds included, when it idles): on a
                // CPU, and ready to run but waiting for one.
                println!(
                    "  {name} thread: {:.1} s on a CPU ({:.2} µs per event), {:.1} s ready but waiting for a CPU",
                    on_cpu.as_secs_f64(),
                    on_cpu.as_secs_f64() * 1e6 / stored.figures.events.max(1) as f64,
                    waiting.as_secs_f64()
                );
            }
        }
        println!(
            "  derived rows caught up {:.0} ms after the load stopped, in all (counted in the rounds' time)",
            catch_up.as_secs_f64() * 1000.0
        );
        if opts.bare {
            let b = &bare_totals.figures;
            print("bare 204 server", b);
            print_cpu(b, bare_totals.cpu);
            println!(
                "ratio collector/bare: 1/{:.1}  (collector {:.0} events/s, bare {:.0} events/s, {} rounds)",
                b.rate() / stored.figures.rate().max(1.0),
                stored.figures.rate(),
                b.rate(),
                opts.rounds
            );
            let per = |f: &Figures, cpu: Duration| cpu.as_secs_f64() / f.events.max(1) as f64;
            println!(
                "CPU per event collector/bare: {:.1}x",
                per(&stored.figures, stored.cpu) / per(b, bare_totals.cpu).max(1e-12)
            );
        }
        // Counted before the collectors close their stores (a closed pool answers nothing).
        let counts = state.store.counts().expect("count rows");
        for stop in stops {
            let _ = stop.send(());
        }
        for server in servers {
            let _ = server.await;
        }
        println!(
            "rows stored: {} events, {} conversions",
            counts.events, counts.conversions
        );
    });
    // The handler's share of that work alone, measured the same way every run.
    decode_only(&opts, 5);
    if opts.keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// The whole process's CPU time (user + system, all threads: servers, writer and clients).
fn process_cpu() -> Duration {
    // `/proc/self/stat`: after the command name in parentheses, utime and stime are the 12th
    // and 13th fields, in clock ticks (100 per second on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|n| n.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// CPU of the whole process per event: how much machine one event costs, which other work on
/// the machine disturbs far less than the rate.
fn print_cpu(f: &Figures, cpu: Duration) {
    // How much of the machine the process kept busy: a server that leaves cores idle is waiting
    // (for the disk, or for its clients' next requests), not short of CPU. The kernel's own
    // writeback threads are not counted.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "  CPU: {:.1} s for the run, {:.2} µs per event (all threads, load generator included), \
         {:.0} % of the {cores} cores over the rounds",
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / f.events.max(1) as f64,
        100.0 * cpu.as_secs_f64() / (f.elapsed.as_secs_f64() * cores as f64).max(1e-9)
    );
}

/// This thread's CPU time (user + system).
fn thread_cpu() -> Duration {
    schedstat(std::path::Path::new("/proc/thread-self/schedstat")).map_or(Duration::ZERO, |(run, _)| run)
}

/// Decodes, validates and prepares batches as the handler does (then frees them), on this
/// thread, in `rounds` rounds of 1,000 batches, and prints the CPU per event of the fastest
/// round and the rate that makes for one core.
fn decode_only(opts: &Opts, rounds: usize) {
    let gen = Gen::new(opts.events, opts.ordered_ids);
    let mut buf = Vec::new();
    let mut best = Duration::MAX;
    let mut all = Duration::ZERO;
    for _ in 0..rounds {
        let t0 = thread_cpu();
        for _ in 0..1000 {
            std::hint::black_box(gen.prepared(&mut buf));
        }
        let spent = thread_cpu() - t0;
        best = best.min(spent);
        all += spent;
    }
    let per_event = |d: Duration, batches: usize| d.as_secs_f64() * 1e6 / (batches * opts.events) as f64;
    println!(
        "decode-only: {rounds} rounds of 1000 batches of {} events: fastest {:.2} µs CPU per event \
         ({:.0} events/s on one core), mean {:.2}",
        opts.events,
        per_event(best, 1000),
        1e6 / per_event(best, 1000).max(1e-9),
        per_event(all, rounds * 1000)
    );
}

/// Decodes batches as the handler does, then stores them in groups of about 800 events (what
/// the writer takes per commit under load) on this thread, and prints the CPU per event.
fn append_only(opts: &Opts, dir: &std::path::Path) {
    use utt_collector::store::{Batch, Store};
    let db = dir.join("append.db");
    let store = SqliteStore::open(&db).expect("open the database");
    let gen = Gen::new(opts.events, opts.ordered_ids);
    let per_group = 800 / opts.events.max(1);
    let groups = (opts.seconds as usize * 125).max(10);
    let mut buf = Vec::new();
    let (mut cpu, mut wall, mut events) = (Duration::ZERO, Duration::ZERO, 0usize);
    let mut decode = Duration::ZERO;
    let deriver = ThreadCpu::of("utt-deriver");
    for _ in 0..groups {
        let d0 = thread_cpu();
        let mut jobs: Vec<Batch> = Vec::with_capacity(per_group);
        for _ in 0..per_group {
            jobs.push(gen.prepared(&mut buf));
        }
        let group: Vec<&Batch> = jobs.iter().collect();
        let (c0, w0) = (thread_cpu(), Instant::now());
        decode += c0 - d0;
        let statuses = store.append(&group).expect("append");
        cpu += thread_cpu() - c0;
        wall += w0.elapsed();
        events += statuses.len();
        let d1 = thread_cpu();
        drop(group);
        drop(jobs);
        decode += thread_cpu() - d1;
    }
    println!(
        "request side: {:.2} µs CPU per event to decode, validate and prepare the events and free them \
         (the handler's work without HTTP)",
        decode.as_secs_f64() * 1e6 / events as f64
    );
    while store.derive_status().lag > 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    if let Some((on_cpu, _)) = deriver.since() {
        println!(
            "deriver: {:.2} µs CPU per event to write the derived rows behind the writer",
            on_cpu.as_secs_f64() * 1e6 / events as f64
        );
    }
    let counts = store.counts().expect("count rows");
    println!(
        "append-only: {events} events in {groups} groups, {:.2} µs CPU and {:.2} µs wall per event \
         ({:.0} events/s of writer CPU); rows {} events, {} conversions, {} bytes on disk",
        cpu.as_secs_f64() * 1e6 / events as f64,
        wall.as_secs_f64() * 1e6 / events as f64,
        events as f64 / cpu.as_secs_f64(),
        counts.events,
        counts.conversions,
        store.size_bytes()
    );
    store.close().expect("close");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_valid_with_fresh_ids() {
        for ordered in [false, true] {
            batches_are_valid(Gen::new(20, ordered), ordered);
        }
    }

    fn batches_are_valid(gen: Gen, ordered: bool) {
        let mut ids = std::collections::HashSet::new();
        let mut orders = std::collections::HashSet::new();
        let mut visitors = Vec::new();
        let mut buf = Vec::new();
        for _ in 0..8 {
            gen.batch(&mut buf);
            let text = std::str::from_utf8(&buf).unwrap();
            assert!(!text.contains(MARK), "a marker was left: {text}");
            let b = wire::read_batch(text).unwrap();
            assert_eq!(b.events.len(), 20);
            for (i, e) in b.events.into_iter().enumerate() {
                let e = e.unwrap();
                assert!(ids.insert(e.id.clone()), "repeated ID {}", e.id);
                if i == 0 {
                    let v = e.visitor.clone().unwrap();
                    assert!(wire::is_uuid(&v), "{v}");
                    assert_eq!(&v[14..15], if ordered { "7" } else { "4" }, "{v}");
                    visitors.push((v, e.clicks[0].value.clone(), e.clicks[1].value.clone()));
                }
                if let Kind::Conversion(o) = e.kind {
                    assert!(orders.insert(o.order_id));
                }
            }
        }
        assert_eq!(orders.len(), 2);
        // A new visitor and new clicks in every batch; in time order only when asked.
        let all: std::collections::HashSet<&String> = visitors.iter().flat_map(|(v, a, b)| [v, a, b]).collect();
        assert_eq!(all.len(), visitors.len() * 3);
        let sorted = |list: Vec<&String>| list.windows(2).all(|w| w[0] < w[1]);
        assert_eq!(sorted(visitors.iter().map(|t| &t.0).collect()), ordered);
        assert_eq!(sorted(visitors.iter().map(|t| &t.1).collect()), ordered);
    }
}
