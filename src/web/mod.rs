//! The browser shell: thin adapters between the page and the core. It reads the clock, the
//! random source, the URL and the stores; hands them to the [`Tracker`]; and carries out what the
//! tracker decides (storage writes, `sendBeacon`). Nothing here decides anything, and nothing
//! here throws into the page: every call answers with a JSON result instead.
//!
//! Everything here is synchronous. What must wait for the browser (`fetch`, timers, SubtleCrypto,
//! event listeners) is done by the loader (`src/js/loader.js`), which calls the [`Tag`]'s methods:
//! in Rust each of those async paths would bring closures and a futures executor costing more
//! compressed bytes than the whole loader.

mod cookie;
mod local;

pub use cookie::CookieStore;
pub use local::LocalStore;

use alloc::string::String;
use core::cell::RefCell;

use js_sys::Reflect;
use wasm_bindgen::prelude::*;

use crate::core::command::{self, Command};
use crate::core::config::StorageMode;
use crate::core::json::{self, write_str, write_u64};
use crate::core::store::{self, MemoryStore, Store};
use crate::core::tracker::{keys, Outgoing, Page, Random, Reply, Tracker};

/// The current time in milliseconds since the Unix epoch.
pub fn now() -> u64 {
    js_sys::Date::now() as u64
}

/// `crypto.getRandomValues`, as the core's [`Random`].
pub struct Crypto;

impl Random for Crypto {
    fn fill(&mut self, buf: &mut [u8]) {
        if let Some(c) = web_sys::window().and_then(|w| w.crypto().ok()) {
            let _ = c.get_random_values_with_u8_array(buf);
        }
    }
}

struct PageNow {
    url: String,
    referrer: String,
    title: String,
}

impl PageNow {
    fn read() -> PageNow {
        let window = web_sys::window();
        let doc = window.as_ref().and_then(|w| w.document());
        PageNow {
            url: window.and_then(|w| w.location().href().ok()).unwrap_or_default(),
            referrer: doc.as_ref().map(|d| d.referrer()).unwrap_or_default(),
            title: doc.map(|d| d.title()).unwrap_or_default(),
        }
    }

    fn page(&self) -> Page<'_> {
        Page {
            url: &self.url,
            referrer: &self.referrer,
            title: &self.title,
        }
    }
}

fn log(text: &str, warn: bool) {
    let v = JsValue::from_str(text);
    if warn {
        web_sys::console::warn_1(&v);
    } else {
        web_sys::console::log_1(&v);
    }
}

struct Shell {
    tracker: Option<Tracker>,
    cookie: CookieStore,
    local: LocalStore,
    memory: MemoryStore,
    /// The batch sent and not yet answered (one at a time).
    out: Option<Outgoing>,
    /// The record text last offered to the collector's cookie endpoint.
    offered: String,
}

impl Shell {
    fn stores(&self, mode: StorageMode) -> (&dyn Store, &dyn Store) {
        match mode {
            StorageMode::None => (&self.memory, &self.memory),
            _ => (&self.cookie, &self.local),
        }
    }

    /// Writes what the tracker wants stored (coalesced), after taking in what another tab may
    /// have queued meanwhile. A store that throws degrades the mode, and the writes are made
    /// again in the mode it fell back to.
    fn persist(&mut self) {
        let now = now();
        let Shell {
            tracker,
            cookie,
            local,
            memory,
            ..
        } = self;
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
            let (c, l): (&dyn Store, &dyn Store) = match mode {
                StorageMode::None => (memory, memory),
                _ => (cookie, local),
            };
            let (cb, lb) = store::apply(&writes, mode, t.cookie_max_age(now), c, l);
            t.storage_failed(cb, lb);
        }
        for n in t.take_notes() {
            log(&n, false);
        }
    }
}

/// The tag: one per page, created by the loader, which forwards every `utt(...)` call to it.
#[wasm_bindgen]
pub struct Tag {
    shell: RefCell<Shell>,
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

fn error(field: &str, reason: &str) -> String {
    let mut e = String::from(field);
    e.push_str(": ");
    e.push_str(reason);
    log(&(String::from("[utt] ") + &e), true);
    answer(false, "error", Some(("error", &e)))
}

fn reply_answer(r: &Reply) -> String {
    match r {
        Reply::Queued(id) => answer(true, "queued", Some(("id", id))),
        Reply::Duplicate(order) => answer(true, "duplicate", Some(("orderId", order))),
        Reply::Held(id) => answer(true, "held", Some(("id", id))),
        Reply::Dropped => answer(true, "dropped", None),
        Reply::Done => answer(true, "done", None),
        Reply::Hash(customer_id, email) => {
            // The loader hashes the address with SubtleCrypto and calls `identified`.
            let mut s = answer(true, "hash", Some(("email", email)));
            if let Some(c) = customer_id {
                s.pop();
                s.push_str(",\"customerId\":");
                write_str(&mut s, c);
                s.push('}');
            }
            s
        }
    }
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    Crypto.fill(&mut b);
    u32::from_le_bytes(b)
}

fn busy() -> String {
    error("command", "busy; try again")
}

impl Default for Tag {
    fn default() -> Self {
        Tag::new()
    }
}

#[wasm_bindgen]
impl Tag {
    /// A tag for this page; it does nothing until `init`.
    #[wasm_bindgen(constructor)]
    pub fn new() -> Tag {
        Tag {
            shell: RefCell::new(Shell {
                tracker: None,
                cookie: CookieStore::new(None),
                local: LocalStore::new(),
                memory: MemoryStore::default(),
                out: None,
                offered: String::new(),
            }),
        }
    }

    /// Runs one `utt(...)` call, given as the JSON text of its arguments, and answers with JSON
    /// (`{"ok":…,"status":…}`). The event is in the queue in memory; the loader calls
    /// [`Tag::persist`] once the current burst of calls is over.
    pub fn command(&self, call: &str) -> String {
        let parsed = json::parse(call)
            .map_err(|e| ("command", e.as_str()))
            .and_then(|j| command::parse(&j).map_err(|e| (e.field, e.reason)));
        let cmd = match parsed {
            Ok(c) => c,
            Err((field, reason)) => return error(field, reason),
        };
        let Ok(mut s) = self.shell.try_borrow_mut() else {
            return busy();
        };
        let p = PageNow::read();
        match cmd {
            Command::Init(mut config) => {
                if s.tracker.is_some() {
                    return error("init", "already initialised; init runs once per page");
                }
                if crate::core::url::query_pairs(&p.url)
                    .iter()
                    .any(|&(k, v)| k == "utt_debug" && v == "1")
                {
                    config.debug = true;
                }
                if let Some(d) = config.cookie_domain.clone() {
                    s.cookie = CookieStore::new(Some(d));
                }
                let (c, l) = s.stores(config.storage);
                let (mut loaded, cb, lb) = store::load(config.storage, c, l);
                loaded.gpc = web_sys::window()
                    .and_then(|w| Reflect::get(&w.navigator(), &JsValue::from_str("globalPrivacyControl")).ok())
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                let mut t = Tracker::start(config, p.page(), loaded, now(), &mut Crypto);
                t.storage_failed(cb, lb);
                s.tracker = Some(t);
                answer(true, "ready", Some(("version", crate::core::tracker::VERSION)))
            }
            cmd => match s.tracker.as_mut() {
                Some(t) => reply_answer(&t.command(cmd, p.page(), now(), &mut Crypto)),
                None => error("command", "call utt('init', {site: …}) first"),
            },
        }
    }

    /// Queues the identify event once the loader has hashed the email (lowercase hex SHA-256).
    pub fn identified(&self, customer_id: Option<String>, email_hash: Option<String>) -> String {
        if email_hash
            .as_deref()
            .is_some_and(|h| !crate::core::wire::is_sha256_hex(h))
        {
            return error("identify.email", "could not be hashed");
        }
        let Ok(mut s) = self.shell.try_borrow_mut() else {
            return busy();
        };
        let p = PageNow::read();
        match s.tracker.as_mut() {
            Some(t) => reply_answer(&t.identify(customer_id, email_hash, p.page(), now(), &mut Crypto)),
            None => error("command", "call utt('init', {site: …}) first"),
        }
    }

    /// Writes to storage what the calls since the last time changed: one write per key however
    /// many calls there were.
    pub fn persist(&self) {
        if let Ok(mut s) = self.shell.try_borrow_mut() {
            s.persist();
        }
    }

    /// The body of the next batch to POST, or an empty string when nothing is due or a batch is
    /// already on its way. The events stay queued until [`Tag::settle`].
    pub fn batch(&self) -> String {
        let Ok(mut s) = self.shell.try_borrow_mut() else {
            return String::new();
        };
        if s.out.is_some() {
            return String::new();
        }
        let Some(out) = s.tracker.as_mut().and_then(|t| t.next_batch(now())) else {
            return String::new();
        };
        let body = out.body.clone();
        s.out = Some(out);
        body
    }

    /// The URL batches go to.
    pub fn endpoint(&self) -> String {
        self.shell
            .try_borrow()
            .ok()
            .and_then(|s| s.tracker.as_ref().map(|t| t.config().events_url()))
            .unwrap_or_default()
    }

    /// The collector's answer to the batch in flight (`status` 0: the request failed).
    pub fn settle(&self, status: u16, body: Option<String>, retry_after: Option<String>) {
        let Ok(mut s) = self.shell.try_borrow_mut() else { return };
        let Shell { tracker, out, .. } = &mut *s;
        if let (Some(t), Some(out)) = (tracker.as_mut(), out.take()) {
            t.settle(
                &out,
                status,
                body.as_deref(),
                retry_after.as_deref(),
                now(),
                random_u32(),
            );
        }
        s.persist();
    }

    /// Milliseconds until something is due to be sent, or -1 when nothing waits.
    pub fn wake(&self) -> f64 {
        let now = now();
        self.shell
            .try_borrow()
            .ok()
            .and_then(|s| s.tracker.as_ref().and_then(|t| t.next_wake()))
            .map_or(-1.0, |at| at.saturating_sub(now) as f64)
    }

    /// The browser is back online: what waits is due now.
    pub fn online(&self) {
        if let Ok(mut s) = self.shell.try_borrow_mut() {
            if let Some(t) = s.tracker.as_mut() {
                t.hurry(now());
            }
        }
    }

    /// The URL may have changed without a load (`pushState`, `replaceState`, `popstate`).
    pub fn navigated(&self) {
        let p = PageNow::read();
        if let Ok(mut s) = self.shell.try_borrow_mut() {
            if let Some(t) = s.tracker.as_mut() {
                t.navigated(p.page(), now(), &mut Crypto);
            }
        }
    }

    /// The page is being hidden or closed: write everything now and hand what waits to
    /// `navigator.sendBeacon`. It stays queued until the collector answers on a later page, so a
    /// lost beacon costs nothing and a delivered one is deduplicated by event ID.
    pub fn hide(&self) -> bool {
        let Ok(mut s) = self.shell.try_borrow_mut() else {
            return false;
        };
        s.persist();
        let Some(out) = s.tracker.as_mut().and_then(|t| t.beacon(now())) else {
            return false;
        };
        web_sys::window()
            .and_then(|w| w.navigator().send_beacon_with_opt_str(&out.url, Some(&out.body)).ok())
            .unwrap_or(false)
    }

    /// For same-site collectors (`serverCookie: true`): the body to POST to `/v1/cookie` so the
    /// collector re-issues the record as a server-set cookie, or an empty string when the record
    /// has not changed since the last offer.
    pub fn server_cookie(&self) -> String {
        let Ok(mut s) = self.shell.try_borrow_mut() else {
            return String::new();
        };
        let now = now();
        let Some(t) = s.tracker.as_ref() else {
            return String::new();
        };
        if !t.config().server_cookie || !t.consent() {
            return String::new();
        }
        let record = crate::core::record::encode(t.record());
        let mut body = String::from("{\"site\":");
        write_str(&mut body, &t.config().site);
        body.push_str(",\"name\":\"_utt\",\"value\":");
        write_str(&mut body, &record);
        body.push_str(",\"maxAge\":");
        write_u64(&mut body, t.cookie_max_age(now));
        body.push('}');
        if s.offered == record {
            return String::new();
        }
        s.offered = record;
        body
    }

    /// Everything the debug page shows, as JSON text (`{"ready":false}` before `init`).
    pub fn state(&self) -> String {
        let Ok(s) = self.shell.try_borrow() else {
            return String::from("{\"ready\":false,\"busy\":true}");
        };
        let Some(t) = s.tracker.as_ref() else {
            return String::from("{\"ready\":false}");
        };
        let cookie = s.cookie.get(keys::RECORD).ok().flatten();
        let local = s.local.get(keys::RECORD).ok().flatten();
        let mut out = String::from("{\"ready\":true,");
        let state = t.state(cookie.as_deref(), local.as_deref(), now());
        out.push_str(state.strip_prefix('{').unwrap_or(&state));
        out
    }
}
