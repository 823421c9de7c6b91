//! The browser shell: thin adapters between the page and the core. It reads the clock, the
//! random source and the stores; hands them to the [`Tracker`]; and carries out what the tracker
//! decides (storage writes, `sendBeacon`). Nothing here decides anything, and nothing here
//! throws into the page: every call answers with text instead.
//!
//! Everything here is synchronous. What must wait for the browser (`fetch`, timers, SubtleCrypto,
//! event listeners) is done by the loader (`src/js/loader.js`), which calls [`op`]: in Rust
//! each async path would bring closures and a futures executor costing more compressed bytes
//! than the whole loader. For the same reason the loader talks to the wasm through one method
//! with an operation code rather than a dozen exports, each of which costs glue on both sides.

mod cookie;
mod local;

pub use cookie::CookieStore;
pub use local::LocalStore;

use alloc::string::String;
use core::cell::RefCell;

use spin::Mutex;

use wasm_bindgen::prelude::*;
use web_sys::Window;

use crate::core::command::{self, Command};
use crate::core::config::StorageMode;
use crate::core::json::{self, write_str, write_u64, Json};
use crate::core::store::{self, Broken, MemoryStore, Store};
use crate::core::text;
use crate::core::tracker::{keys, Outgoing, Page, Random, Reply, Tracker, VERSION};
use crate::core::{split_byte, wire};

/// The current time in milliseconds since the Unix epoch.
pub fn now() -> u64 {
    js_sys::Date::now() as u64
}

/// `crypto.getRandomValues`, as the core's [`Random`].
pub struct Crypto(Option<web_sys::Crypto>);

impl Crypto {
    /// The page's `crypto` (none without a window: then the bytes stay zero).
    pub fn new(window: Option<&Window>) -> Crypto {
        Crypto(window.and_then(|w| w.crypto().ok()))
    }
}

impl Random for Crypto {
    fn fill(&mut self, buf: &mut [u8]) {
        if let Some(c) = &self.0 {
            let _ = c.get_random_values_with_u8_array(buf);
        }
    }
}

/// The shell's stores, as one type: the core's [`store::load`] and [`store::apply`] are generic
/// over the [`Store`], and an enum gives them direct calls where `&dyn Store` needed the wasm's
/// function table (whose shared signatures kept `core::fmt` in the tag).
enum Stores<'a> {
    Cookie(&'a CookieStore),
    Local(&'a LocalStore),
    Memory(&'a MemoryStore),
}

impl Store for Stores<'_> {
    fn get(&self, key: &str) -> Result<Option<String>, Broken> {
        match self {
            Stores::Cookie(s) => s.get(key),
            Stores::Local(s) => s.get(key),
            Stores::Memory(s) => s.get(key),
        }
    }

    fn set(&self, key: &str, value: &str, max_age: u64) -> Result<(), Broken> {
        match self {
            Stores::Cookie(s) => s.set(key, value, max_age),
            Stores::Local(s) => s.set(key, value, max_age),
            Stores::Memory(s) => s.set(key, value, max_age),
        }
    }

    fn remove(&self, key: &str) -> Result<(), Broken> {
        match self {
            Stores::Cookie(s) => s.remove(key),
            Stores::Local(s) => s.remove(key),
            Stores::Memory(s) => s.remove(key),
        }
    }
}

/// The (cookie, localStorage) pair for a storage mode: the in-memory store for both in `none`.
fn pick<'a>(
    mode: StorageMode,
    cookie: &'a CookieStore,
    local: &'a LocalStore,
    memory: &'a MemoryStore,
) -> (Stores<'a>, Stores<'a>) {
    match mode {
        StorageMode::None => (Stores::Memory(memory), Stores::Memory(memory)),
        _ => (Stores::Cookie(cookie), Stores::Local(local)),
    }
}

/// The debug build's console notes (the loader logs refusals, in both builds).
#[cfg(not(lean))]
fn log(text: &str) {
    web_sys::console::log_1(&JsValue::from_str(text));
}

/// The operations of [`op`] (and [`Tag::op`]); the loader names them by number.
pub mod ops {
    /// Runs a `utt(...)` call: `arg` is the JSON array of its arguments. Answers JSON.
    pub const COMMAND: u32 = 0;
    /// The loader hashed an email: `arg` is `[customerId|null, sha256hex|null]`. Answers JSON.
    pub const IDENTIFIED: u32 = 1;
    /// Writes to storage what changed since the last time.
    pub const PERSIST: u32 = 2;
    /// The next batch body to POST ("" when nothing is due or one is in flight).
    pub const BATCH: u32 = 3;
    /// The URL batches go to.
    pub const ENDPOINT: u32 = 4;
    /// The answer to the batch in flight: `arg` is `status\nretry-after\nbody`.
    pub const SETTLE: u32 = 5;
    /// Milliseconds until something is due, or "-1".
    pub const WAKE: u32 = 6;
    /// The browser is back online.
    pub const ONLINE: u32 = 7;
    /// The URL may have changed without a load.
    pub const NAVIGATED: u32 = 8;
    /// The page is being hidden or closed: persist and beacon. Answers "1" if a beacon went.
    pub const HIDE: u32 = 9;
    /// The body for the collector's cookie endpoint, or "".
    pub const SERVER_COOKIE: u32 = 10;
    /// The state, as JSON: `{ready, queued, held, consent}` in the production tag, everything
    /// the debug page shows in the debug build.
    pub const STATE: u32 = 11;
    /// A link or form of the page is about to be followed: `arg` is its absolute URL. Answers
    /// the URL to go to instead, with the journey parameter, or "" to leave it alone.
    pub const DECORATE: u32 = 12;
    /// The tag's version, for `utt.version()` (one operation more costs less than an export).
    pub const VERSION: u32 = 13;
}

/// What the tag keeps between calls: Rust data only, so it can live in a `static` (see
/// [`op`]). The page's objects (window, cookie jar, localStorage, crypto) are reached anew on
/// every call through the [`Env`] made from the `globalThis` the loader passes.
#[derive(Default)]
struct Shell {
    tracker: Option<Tracker>,
    memory: MemoryStore,
    /// The batch sent and not yet answered (one at a time).
    out: Option<Outgoing>,
    /// The record text last offered to the collector's cookie endpoint.
    offered: String,
    /// The cookie domain in force, once configured or probed (see [`CookieStore::domain`]).
    cookie_domain: Option<Option<String>>,
}

/// The page's objects for one call, made from its `window`.
struct Env {
    window: Option<Window>,
    crypto: Crypto,
    cookie: CookieStore,
    local: LocalStore,
}

impl Env {
    fn new(window: Option<Window>, href: &str, cookie_domain: Option<Option<String>>) -> Env {
        let w = window.as_ref();
        Env {
            crypto: Crypto::new(w),
            cookie: CookieStore::remembering(w, href, cookie_domain),
            local: LocalStore::new(w),
            window,
        }
    }
}

impl Shell {
    /// Runs one operation with the page's objects made from `window`, and keeps the cookie
    /// domain they probed for the next call.
    fn run(&mut self, window: Option<Window>, op: u32, arg: &str, page: &str) -> String {
        let href = PageText::read(page).url;
        let mut env = Env::new(window, href, self.cookie_domain.take());
        let answer = self.op(&mut env, op, arg, page);
        self.cookie_domain = env.cookie.known();
        answer
    }

    /// Writes what the tracker wants stored (coalesced), after taking in what another tab may
    /// have queued meanwhile. A store that throws degrades the mode, and the writes are made
    /// again in the mode it fell back to.
    fn persist(&mut self, env: &Env) {
        let now = now();
        let Shell { tracker, memory, .. } = self;
        let Env { cookie, local, .. } = env;
        let Some(t) = tracker.as_mut() else { return };
        if t.queue().is_dirty() && t.storage().local() {
            if let Ok(Some(q)) = local.get(keys::QUEUE) {
                t.merge_stored_queue(&q);
            }
        }
        for _ in 0..3 {
            let writes = t.take_writes(now);
            if writes.is_empty() {
                break;
            }
            let mode = t.storage();
            let (c, l) = pick(mode, cookie, local, memory);
            let (cb, lb) = store::apply(&writes, mode, t.cookie_max_age(now), &c, &l);
            t.storage_failed(cb, lb);
        }
        #[cfg(not(lean))]
        for n in t.take_notes() {
            log(&n);
        }
    }
}

fn answer(ok: bool, status: &str, detail: Option<(&str, &str)>) -> String {
    let mut s = String::from(if ok { "{\"ok\":true" } else { "{\"ok\":false" });
    s.push_str(",\"status\":");
    write_str(&mut s, status);
    if let Some((k, v)) = detail {
        s.push(',');
        write_str(&mut s, k);
        s.push(':');
        write_str(&mut s, v);
    }
    s.push('}');
    s
}

/// Adds `"key":value` to the answer `s` (a JSON object).
fn add_field(s: &mut String, key: &str, value: &str) {
    s.pop();
    s.push(',');
    write_str(s, key);
    s.push(':');
    write_str(s, value);
    s.push('}');
}

fn error(field: &str, reason: &str) -> String {
    // In the production tag `reason` is a code (`#12`): the loader puts its sentence in its
    // place, and logs the refusal to the console.
    let mut e = String::from(field);
    e.push_str(": ");
    e.push_str(reason);
    answer(false, "error", Some(("error", &e)))
}

fn reply_answer(r: &Reply) -> String {
    match r {
        Reply::Queued(id) => answer(true, "queued", Some(("id", id))),
        Reply::Duplicate(order) => answer(true, "duplicate", Some(("orderId", order))),
        Reply::Held(id) => answer(true, "held", Some(("id", id))),
        Reply::Dropped => answer(true, "dropped", None),
        Reply::Full => answer(false, "dropped", Some(("error", text::QUEUE_FULL))),
        Reply::Done => answer(true, "done", None),
        Reply::Hash(customer_id, email) => {
            // The loader hashes the address with SubtleCrypto and comes back with IDENTIFIED.
            let mut s = answer(true, "hash", Some(("email", email)));
            if let Some(c) = customer_id {
                add_field(&mut s, "customerId", c);
            }
            s
        }
    }
}

/// The production tag's state: `{"ready":true,"queued":n,"held":n,"consent":"granted"}`.
#[cfg(lean)]
fn lean_state(t: &Tracker) -> String {
    let mut s = String::from("{\"ready\":true,\"queued\":");
    write_u64(&mut s, t.queue().items().len() as u64);
    s.push_str(",\"held\":");
    write_u64(&mut s, t.held() as u64);
    s.push_str(if t.consent() {
        ",\"consent\":\"granted\"}"
    } else {
        ",\"consent\":\"denied\"}"
    });
    s
}

fn random_u32(rng: &mut Crypto) -> u32 {
    let mut b = [0u8; 4];
    rng.fill(&mut b);
    u32::from_le_bytes(b)
}

/// The page as the loader saw it: `href\nreferrer\nflags\nuserAgent\ntitle` (the title last:
/// it is the only part that may itself hold a newline). `flags` is a digit: 1 for Global
/// Privacy Control, plus 2 when `navigator.webdriver` is true.
struct PageText<'a> {
    url: &'a str,
    referrer: &'a str,
    gpc: bool,
    webdriver: bool,
    ua: &'a str,
    title: &'a str,
}

impl<'a> PageText<'a> {
    fn read(text: &'a str) -> PageText<'a> {
        let (url, rest) = split_byte(text, b'\n').unwrap_or((text, ""));
        let (referrer, rest) = split_byte(rest, b'\n').unwrap_or((rest, ""));
        let (flags, rest) = split_byte(rest, b'\n').unwrap_or((rest, ""));
        let (ua, title) = split_byte(rest, b'\n').unwrap_or((rest, ""));
        let flags = flags.as_bytes().first().map_or(0, |b| b.wrapping_sub(b'0'));
        PageText {
            url,
            referrer,
            gpc: flags & 1 != 0,
            webdriver: flags & 2 != 0,
            ua,
            title,
        }
    }

    fn page(&self) -> Page<'a> {
        Page {
            url: self.url,
            referrer: self.referrer,
            title: self.title,
            ua: self.ua,
        }
    }
}

/// The tag's state, one per page: the loader calls [`op`], which needs no exported object
/// (wasm-bindgen's class glue, its ownership checks and messages cost about 500 bytes brotli of
/// every first load). `try_lock` answers "busy" to a call made from inside another (a page's
/// cookie setter calling `utt.state()`, say) instead of waiting forever.
static SHELL: Mutex<Option<Shell>> = Mutex::new(None);

/// Does operation `op` (see [`ops`]) with the text argument `arg`, on the page whose `window`
/// is `global` (the loader passes `globalThis`: reading it from Rust would cost a lazily
/// initialised global and the futures code that comes with it) and described by `page`
/// (`href\nreferrer\nflags\nuserAgent\ntitle`). Answers text; never throws. The state is made on
/// the first call and does nothing until `init`.
#[wasm_bindgen(js_name = tagOp)]
pub fn op(global: Option<Window>, op: u32, arg: &str, page: &str) -> String {
    let Some(mut shell) = SHELL.try_lock() else {
        return error("command", text::BUSY);
    };
    shell.get_or_insert_with(Shell::default).run(global, op, arg, page)
}

/// A tag with its own state, for the browser tests of the shell (`tests/web.rs`): each test
/// starts from a fresh one, where the page's one tag is [`op`]'s.
pub struct Tag {
    window: Option<Window>,
    shell: RefCell<Shell>,
}

impl Tag {
    /// A tag for the page whose `window` is `global`. It does nothing until `init`.
    pub fn new(global: Option<Window>) -> Tag {
        Tag {
            window: global,
            shell: RefCell::new(Shell::default()),
        }
    }

    /// [`op`] on this tag's state.
    pub fn op(&self, op: u32, arg: &str, page: &str) -> String {
        match self.shell.try_borrow_mut() {
            Ok(mut s) => s.run(self.window.clone(), op, arg, page),
            Err(_) => error("command", text::BUSY),
        }
    }
}

impl Shell {
    /// Does operation `op` (see [`ops`]) with the text argument `arg` on the page `page`.
    fn op(&mut self, env: &mut Env, op: u32, arg: &str, page: &str) -> String {
        let s = self;
        let p = PageText::read(page);
        let now = now();
        if op == ops::COMMAND {
            return s.command(env, arg, &p);
        }
        if op == ops::VERSION {
            return String::from(VERSION);
        }
        if op == ops::STATE {
            let Some(t) = s.tracker.as_ref() else {
                return String::from("{\"ready\":false}");
            };
            // The production tag answers what a page or a test may wait for, in numbers: the
            // debug build (below) answers everything the debug page shows, these included.
            #[cfg(lean)]
            return lean_state(t);
            #[cfg(not(lean))]
            {
                let cookie = env.cookie.get(keys::RECORD).ok().flatten();
                let local = env.local.get(keys::RECORD).ok().flatten();
                let state = t.state(cookie.as_deref(), local.as_deref(), now);
                return String::from("{\"ready\":true,") + state.get(1..).unwrap_or("}");
            }
        }
        if op == ops::PERSIST {
            s.persist(env);
            return String::new();
        }
        if op == ops::HIDE {
            // Write everything now and hand what waits to `navigator.sendBeacon`. It stays
            // queued until the collector answers on a later page, so a lost beacon costs nothing
            // and a delivered one is deduplicated by event ID.
            s.persist(env);
            let Some(out) = s.tracker.as_mut().and_then(|t| t.beacon(now)) else {
                return String::new();
            };
            let sent = env
                .window
                .as_ref()
                .and_then(|w| w.navigator().send_beacon_with_opt_str(&out.url, Some(&out.body)).ok())
                .unwrap_or(false);
            return String::from(if sent { "1" } else { "" });
        }
        if op == ops::SETTLE {
            let (status, rest) = split_byte(arg, b'\n').unwrap_or((arg, ""));
            let (retry_after, body) = split_byte(rest, b'\n').unwrap_or((rest, ""));
            let status = json::parse_u64(status).unwrap_or(0).min(999) as u16;
            if let (Some(t), Some(out)) = (s.tracker.as_mut(), s.out.take()) {
                let ra = (!retry_after.is_empty()).then_some(retry_after);
                let body = (!body.is_empty()).then_some(body);
                t.settle(&out, status, body, ra, now, random_u32(&mut env.crypto));
            }
            s.persist(env);
            return String::new();
        }
        if op == ops::BATCH {
            if s.out.is_some() {
                return String::new();
            }
            let Some(out) = s.tracker.as_mut().and_then(|t| t.next_batch(now)) else {
                return String::new();
            };
            let body = out.body.clone();
            s.out = Some(out);
            return body;
        }
        if op == ops::SERVER_COOKIE {
            return s.server_cookie(now);
        }
        let crypto = &mut env.crypto;
        let Some(t) = s.tracker.as_mut() else {
            return error("command", text::NOT_READY);
        };
        let page = p.page();
        match op {
            ops::IDENTIFIED => {
                // `[customerId, hash]`, both optional; a hash that is not one is refused.
                let v = json::parse(arg).unwrap_or(Json::Null);
                let item = |i: usize| {
                    v.as_arr()
                        .and_then(|a| a.get(i))
                        .and_then(Json::as_str)
                        .map(String::from)
                };
                let hash = item(1);
                if hash.as_deref().is_none_or(|h| !wire::is_sha256_hex(h)) {
                    return error(text::AT_IDENTIFY_EMAIL, text::NOT_HASHED);
                }
                reply_answer(&t.identify(item(0), hash, page, now, crypto))
            }
            ops::ENDPOINT => t.config().events_url(),
            ops::WAKE => {
                let mut w = String::new();
                match t.next_wake() {
                    Some(at) => write_u64(&mut w, at.saturating_sub(now)),
                    None => w.push_str("-1"),
                }
                w
            }
            ops::ONLINE => {
                t.hurry(now);
                String::new()
            }
            ops::NAVIGATED => {
                t.navigated(page, now, crypto);
                String::new()
            }
            ops::DECORATE => t.decorate(arg, page, now).unwrap_or_default(),
            _ => error("op", text::UNKNOWN_OP),
        }
    }
}

impl Shell {
    fn command(&mut self, env: &mut Env, call: &str, p: &PageText) -> String {
        let parsed = json::parse(call)
            .map_err(|e| ("command", e.as_str()))
            .and_then(|mut j| command::parse(&mut j).map_err(|e| (e.field, e.reason)));
        let cmd = match parsed {
            Ok(c) => c,
            Err((field, reason)) => return error(field, reason),
        };
        let now = now();
        match cmd {
            Command::Init(mut config) => {
                if self.tracker.is_some() {
                    return error("init", text::ALREADY_INIT);
                }
                if crate::core::url::query_pairs(p.url)
                    .iter()
                    .any(|&(k, v)| k == "utt_debug" && v == "1")
                {
                    config.debug = true;
                }
                if let Some(d) = config.cookie_domain.clone() {
                    env.cookie = CookieStore::remembering(env.window.as_ref(), p.url, Some(Some(d)));
                }
                let (c, l) = pick(config.storage, &env.cookie, &env.local, &self.memory);
                let (mut loaded, cb, lb) = store::load(config.storage, &c, &l);
                loaded.gpc = p.gpc;
                loaded.webdriver = p.webdriver;
                let mut t = Tracker::start(config, p.page(), loaded, now, &mut env.crypto);
                t.storage_failed(cb, lb);
                let mut a = answer(true, "ready", Some(("version", VERSION)));
                if t.address() != p.url {
                    // The loader shows this address instead (`history.replaceState`).
                    add_field(&mut a, "url", t.address());
                }
                self.tracker = Some(t);
                a
            }
            cmd => match self.tracker.as_mut() {
                Some(t) => reply_answer(&t.command(cmd, p.page(), now, &mut env.crypto)),
                None => error("command", text::NOT_READY),
            },
        }
    }

    /// For same-site collectors (`serverCookie: true`): the body to POST to `/v1/cookie` so the
    /// collector re-issues the record as a server-set cookie, or "" when the record has not
    /// changed since the last offer.
    fn server_cookie(&mut self, now: u64) -> String {
        let Some(t) = self.tracker.as_ref() else {
            return String::new();
        };
        if !t.config().server_cookie || !t.consent() {
            return String::new();
        }
        let record = crate::core::record::encode(t.record());
        if self.offered == record {
            return String::new();
        }
        let mut body = String::from("{\"site\":");
        write_str(&mut body, &t.config().site);
        body.push_str(",\"name\":\"_utt\",\"value\":");
        write_str(&mut body, &record);
        body.push_str(",\"maxAge\":");
        write_u64(&mut body, t.cookie_max_age(now));
        body.push('}');
        self.offered = record;
        body
    }
}
