//! `utt-bench`: the collector's throughput benchmark. It starts the real collector (SQLite on
//! disk in a temporary folder, `synchronous=FULL`) and a bare server that reads the body and
//! answers 204, both on loopback, sends the same load of ~20-event batches to each from
//! concurrent clients for a fixed time, and prints durable events per second, request
//! latency and the ratio to the bare server (the figure that compares across machines).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use tokio::net::TcpListener;
use utt::core::click::Click;
use utt::core::wire::{self, Decimal, Event, Item, Kind, Order};
use utt_collector::client::Client;
use utt_collector::config::{Config, RateLimit};
use utt_collector::sqlite::SqliteStore;
use utt_collector::{serve, Shared};

const USAGE: &str = "usage: utt-bench [--seconds N] [--clients N] [--events N]
  --seconds N   how long each server is loaded (default 5)
  --clients N   concurrent keep-alive connections (default 32)
  --events N    events per batch (default 20)";

struct Opts {
    seconds: u64,
    clients: usize,
    events: usize,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Opts, String> {
    let mut o = Opts {
        seconds: 5,
        clients: 32,
        events: 20,
    };
    while let Some(flag) = args.next() {
        let v: usize = args
            .next()
            .and_then(|v| v.parse().ok())
            .ok_or(format!("{flag} needs a number"))?;
        match flag.as_str() {
            "--seconds" => o.seconds = v as u64,
            "--clients" => o.clients = v.max(1),
            "--events" => o.events = v.clamp(1, wire::limits::MAX_EVENTS),
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    Ok(o)
}

/// Makes batches of realistic events with unique, time-ordered (UUIDv7-shaped) IDs.
struct Gen {
    next: Arc<AtomicU64>,
    start_ms: u64,
}

impl Gen {
    fn id(&self, n: u64) -> String {
        let ms = self.start_ms + n / 1000;
        format!(
            "{:08x}-{:04x}-7{:03x}-8{:03x}-{:012x}",
            ms >> 16,
            ms & 0xffff,
            (n >> 48) & 0xfff,
            (n >> 36) & 0xfff,
            n & 0xffff_ffff_ffff
        )
    }

    /// One batch: one visitor's page views, a custom event, and an identify or (every fourth
    /// batch) a conversion, each carrying the visitor's two partner clicks.
    fn batch(&self, events: usize) -> String {
        let first = self.next.fetch_add(events as u64, Ordering::Relaxed);
        let visitor = self.id(first | (1 << 62));
        let now = self.start_ms + first / 1000;
        let clicks = vec![
            click("gclid", "google", &format!("Cj0KCQiA{first}"), now - 86_400_000),
            click("irclickid", "impact", &format!("Xy{first}"), now - 60_000),
        ];
        let mut texts = Vec::with_capacity(events);
        for i in 0..events {
            let n = first + i as u64;
            let kind = if i + 1 < events.saturating_sub(1) || events < 3 {
                Kind::PageView {
                    title: "Trail shoe 42 — Shop".into(),
                    props: None,
                }
            } else if i + 2 == events {
                Kind::Custom {
                    name: "add_to_cart".into(),
                    props: None,
                }
            } else if (first / events as u64) % 4 == 0 {
                Kind::Conversion(order(n))
            } else {
                Kind::Identify {
                    customer_id: Some(format!("cust-{first}")),
                    email_hash: None,
                }
            };
            let e = Event {
                id: self.id(n),
                at: now + i as u64,
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
        wire::write_batch("demo", None, now + events as u64, &refs)
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
        utm: vec![("source".into(), "partner".into()), ("medium".into(), "affiliate".into())],
    }
}

fn order(n: u64) -> Order {
    let dec = |t: &str| Decimal {
        text: t.into(),
        quoted: true,
    };
    Order {
        order_id: format!("ORD-{n}"),
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

/// Loads `addr` from `clients` connections for `seconds`; counts the events the answer says
/// were accepted (or, for the bare server, every event of a 204).
async fn load(addr: SocketAddr, opts: &Opts, gen: &Arc<Gen>) -> Figures {
    let deadline = Instant::now() + Duration::from_secs(opts.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..opts.clients {
        let gen = gen.clone();
        let events = opts.events;
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await.expect("connect to the server under test");
            let (mut reqs, mut ok_events, mut errors) = (0u64, 0u64, 0u64);
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let body = gen.batch(events);
                let t = Instant::now();
                let a = match c.post("/v1/events", "text/plain;charset=UTF-8", body.as_bytes()).await {
                    Ok(a) => a,
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                };
                lat.push(t.elapsed().as_micros() as u64);
                reqs += 1;
                match a.status {
                    204 => ok_events += events as u64,
                    200 => ok_events += a.text().matches("\"accepted\"").count() as u64,
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
    let dir: PathBuf = std::env::temp_dir().join(format!("utt-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the temporary folder");
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let mut config = Config::demo();
        // One loopback client IP sends everything: the per-IP limit would measure itself.
        config.rate_limit = RateLimit {
            per_second: 0,
            burst: 0,
        };
        let db = dir.join("bench.db");
        let store = SqliteStore::open(&db).expect("open the database");
        let state = Shared::new(config, Arc::new(store), Vec::new());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let collector = listener.local_addr().expect("address");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, state.clone(), async {
            let _ = stop_rx.await;
        }));

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

        let gen = Arc::new(Gen {
            next: Arc::new(AtomicU64::new(0)),
            start_ms: utt_collector::http::system_clock(),
        });
        let sample = gen.batch(opts.events);
        println!(
            "utt-bench: {} clients, {} events per batch ({} bytes), {} s per server, SQLite synchronous=FULL at {}",
            opts.clients,
            opts.events,
            sample.len(),
            opts.seconds,
            db.display()
        );
        let stored = load(collector, &opts, &gen).await;
        let bare_figures = load(bare, &opts, &gen).await;
        print("collector (durable)", &stored);
        print("bare 204 server", &bare_figures);
        println!(
            "ratio collector/bare: 1/{:.1}  (collector {:.0} events/s, database {} MB)",
            bare_figures.rate() / stored.rate().max(1.0),
            stored.rate(),
            state.store.size_bytes() / 1_000_000
        );
        let _ = stop_tx.send(());
        let _ = server.await;
        let counts = state.store.counts().expect("count rows");
        println!("rows stored: {} events, {} conversions", counts.events, counts.conversions);
    });
    let _ = std::fs::remove_dir_all(&dir);
}
