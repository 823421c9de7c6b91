//! The tracker: the tag's decisions in one place. It takes commands, the page, the time and
//! random bytes; it says what to store, what to send and what to report. The browser shell
//! only carries those out.

use alloc::string::String;
use alloc::vec::Vec;

use super::command::Command;
use super::config::{Config, StorageMode};
use super::id;
#[cfg(not(lean))]
use super::json::{write_str, write_u64};
use super::link;
use super::queue::{Queue, Settled};
use super::record::{self, Record};
use super::url;
#[cfg(not(lean))]
use super::url::Refusal;
use super::wire::{self, Event, Kind};

/// The tag's version, shown on the debug page.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Storage keys (cookie and localStorage names).
pub mod keys {
    /// The journey record (cookie and localStorage).
    pub const RECORD: &str = "_utt";
    /// The outbound queue (localStorage).
    pub const QUEUE: &str = "_utt_q";
    /// Recently sent order IDs (localStorage).
    pub const ORDERS: &str = "_utt_o";
    /// An explicit grant of consent (cookie and localStorage).
    pub const CONSENT: &str = "_utt_c";
}

/// How many order IDs are remembered for deduplication.
pub const ORDER_MEMORY: usize = 50;
/// How many recent sends the debug page sees.
#[cfg(not(lean))]
const SEND_LOG: usize = 20;
/// The most events held in memory until consent is granted.
pub const MAX_HELD: usize = 1000;

/// A source of random bytes (the browser's `crypto.getRandomValues`; a counter in tests).
pub trait Random {
    /// Fills `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]);
}

/// What the page looks like right now.
#[derive(Clone, Copy, Debug)]
pub struct Page<'a> {
    /// `location.href`
    pub url: &'a str,
    /// `document.referrer`
    pub referrer: &'a str,
    /// `document.title`
    pub title: &'a str,
    /// `navigator.userAgent` (journey parameters are bound to the browser that made them)
    pub ua: &'a str,
}

/// What the shell read from storage at start.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    /// The record from the cookie.
    pub cookie: Option<String>,
    /// The record from localStorage.
    pub local: Option<String>,
    /// The stored queue.
    pub queue: Option<String>,
    /// The stored order IDs.
    pub orders: Option<String>,
    /// The stored consent grant.
    pub consent: Option<String>,
    /// The browser's Global Privacy Control signal.
    pub gpc: bool,
    /// The browser reports that automation drives it (`navigator.webdriver`): every batch
    /// says so, and the collector classifies its events as automation.
    pub webdriver: bool,
}

/// What a command did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Nothing to report.
    Done,
    /// An event was queued (persisted at the next write).
    Queued(String),
    /// A conversion whose order ID was already sent: not sent again.
    Duplicate(String),
    /// Held in memory until consent is granted.
    Held(String),
    /// Dropped: consent is denied and the site chose not to wait.
    Dropped,
    /// Not kept: the outbound queue's budget (or, while consent is pending, the events held)
    /// is used up. Nothing already queued is ever pushed out for a newer event.
    Full,
    /// The shell must hash this normalised email, then call [`Tracker::identify`].
    Hash(Option<String>, String),
}

/// A write for the shell to carry out: `Some(text)` to store, `None` to remove.
pub type Write = (&'static str, Option<String>);

/// A batch ready to POST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// The events in it, to settle afterwards.
    pub ids: Vec<String>,
    /// The collector URL.
    pub url: String,
    /// The body (`text/plain` JSON).
    pub body: String,
}

#[cfg(not(lean))]
#[derive(Clone, Debug)]
struct SendLog {
    at: u64,
    via: &'static str,
    events: usize,
    status: u16,
    settled: Settled,
}

/// The tracker.
pub struct Tracker {
    config: Config,
    storage: StorageMode,
    consent: bool,
    record: Record,
    record_dirty: bool,
    consent_dirty: bool,
    queue: Queue,
    held: Vec<Event>,
    /// Calls answered `dropped` on this page because the budget was used up (the debug page
    /// shows the count).
    dropped: u64,
    /// The visitor said no on this page: links are no longer decorated.
    declined: bool,
    /// [`Loaded::webdriver`].
    webdriver: bool,
    orders: Vec<String>,
    orders_dirty: bool,
    // What only the debug build keeps, for its state and the console (the production tag,
    // `cfg(lean)`, decides the same without recording why).
    #[cfg(not(lean))]
    rejected: Vec<Refusal>,
    #[cfg(not(lean))]
    sends: Vec<SendLog>,
    #[cfg(not(lean))]
    notes: Vec<String>,
    last_url: String,
}

/// True when `host` is `domain` or one of its subdomains (ASCII case ignored).
fn domain_match(host: &str, domain: &str) -> bool {
    let (h, d) = (host.as_bytes(), domain.as_bytes());
    h.len() >= d.len()
        && h.get(h.len() - d.len()..).is_some_and(|t| t.eq_ignore_ascii_case(d))
        && (h.len() == d.len() || h.get(h.len() - d.len() - 1) == Some(&b'.'))
}

fn random16<R: Random + ?Sized>(rng: &mut R) -> [u8; 16] {
    let mut b = [0u8; 16];
    rng.fill(&mut b);
    b
}

impl Tracker {
    /// Starts the tracker on a page: reads (and repairs) what was stored, captures the click IDs
    /// of the landing URL, and queues the automatic page view.
    pub fn start<R: Random + ?Sized>(config: Config, page: Page, loaded: Loaded, now: u64, rng: &mut R) -> Tracker {
        let stored = record::merge(
            loaded.cookie.as_deref().and_then(record::decode),
            loaded.local.as_deref().and_then(record::decode),
        );
        // Repair: whatever one store lacks, the other provides, and both are written back.
        let record_dirty = match (&loaded.cookie, &loaded.local, config.storage) {
            (Some(c), Some(l), StorageMode::Both) => c != l,
            _ => true,
        };
        let mut record = stored.unwrap_or_else(|| Record {
            visitor: id::uuid_v4(&random16(rng)),
            session: id::uuid_v4(&random16(rng)),
            last_seen: now,
            clicks: Vec::new(),
            written: now,
        });
        record::expire(&mut record, now, config.window_ms);
        let granted = loaded.consent.as_deref() == Some("granted");
        // Global Privacy Control, when honoured, is the visitor's no: nothing is held or carried.
        let declined = !granted && config.honor_gpc && loaded.gpc;
        let consent = granted || (!declined && config.consent_default);
        let mut queue = Queue::default();
        if let Some(q) = loaded.queue.as_deref() {
            queue.merge_stored(q);
        }
        let mut orders = Vec::new();
        if let Some(o) = loaded.orders.as_deref() {
            orders.extend(
                super::parts(o, b'\n')
                    .filter(|s| !s.is_empty() && s.len() <= 128)
                    .take(ORDER_MEMORY)
                    .map(String::from),
            );
        }
        let storage = config.storage;
        let mut t = Tracker {
            config,
            storage,
            consent,
            record,
            record_dirty,
            consent_dirty: false,
            queue,
            held: Vec::new(),
            dropped: 0,
            declined,
            webdriver: loaded.webdriver,
            orders,
            orders_dirty: false,
            #[cfg(not(lean))]
            rejected: Vec::new(),
            #[cfg(not(lean))]
            sends: Vec::new(),
            #[cfg(not(lean))]
            notes: Vec::new(),
            last_url: String::new(),
        };
        // Landing is the first navigation: capture the URL's click IDs, then the automatic view.
        t.navigated(page, now, rng);
        t
    }

    /// The page's address as it should show: without the journey parameter (which may carry
    /// the visitor: a copied address must not take them to somebody else) and without refused
    /// click values. The shell puts it in the address bar when it differs.
    pub fn address(&self) -> &str {
        &self.last_url
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// True while consent is granted.
    pub fn consent(&self) -> bool {
        self.consent
    }

    /// The storage mode in force (after any degradation).
    pub fn storage(&self) -> StorageMode {
        self.storage
    }

    /// The journey record in memory.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// The queue.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// A store threw: fall back to the next mode and write the record again where it can go.
    pub fn storage_failed(&mut self, cookie: bool, local: bool) {
        let next = self.storage.without(cookie, local);
        if next != self.storage {
            self.note("storage failed; now using", next.as_str());
            self.storage = next;
            self.record_dirty = true;
        }
    }

    /// Logs a decision for the console, in debug mode of the debug build (nothing at all in
    /// the production tag).
    #[cfg_attr(lean, allow(unused_variables, clippy::unused_self))]
    fn note(&mut self, what: &str, detail: &str) {
        #[cfg(not(lean))]
        if self.config.debug {
            let mut s = String::from("[utt] ");
            s.push_str(what);
            s.push(' ');
            s.push_str(detail);
            self.notes.push(s);
        }
    }

    /// Takes the decisions logged since the last call (only in debug mode), for the console.
    #[cfg(not(lean))]
    pub fn take_notes(&mut self) -> Vec<String> {
        core::mem::take(&mut self.notes)
    }

    fn capture(&mut self, page: Page, now: u64) {
        let cap = url::capture(page.url, page.referrer, now, &self.config.click_params);
        // A journey carried by a link first, so that a click it carries keeps its original time
        // even when the same click ID is in this URL too.
        if let Some(raw) = cap.journey {
            match link::decode(&raw, now, page.ua) {
                Ok(j) => self.adopt(j),
                #[cfg(lean)]
                Err(_) => {}
                #[cfg(not(lean))]
                Err(reason) => {
                    self.note("journey ignored:", reason.as_str());
                    self.rejected.push(Refusal {
                        param: String::from(url::JOURNEY_PARAM),
                        reason,
                    });
                }
            }
        }
        #[cfg(not(lean))]
        for r in cap.rejected {
            self.note("rejected click ID in", &r.param);
            self.note("  reason:", r.reason.as_str());
            if self.rejected.len() < 20 {
                self.rejected.push(r);
            }
        }
        for c in cap.clicks {
            // The same click ID again (a reload, a back button) is not a new click.
            if self
                .record
                .clicks
                .iter()
                .any(|k| k.param == c.param && k.value == c.value)
            {
                continue;
            }
            self.note("captured click ID", &c.param);
            self.record.clicks.push(c);
            self.record_dirty = true;
        }
        record::fit(&mut self.record);
    }

    /// Takes in a journey a link carried: its clicks (each at its earliest time) and, when it
    /// carries them, the visitor and session of the site's other domain.
    fn adopt(&mut self, j: Record) {
        if j.visitor != link::NIL {
            self.record.visitor = j.visitor;
            self.record.session = j.session;
        }
        let clicks = &mut self.record.clicks;
        for c in j.clicks {
            // A click already here is the same touchpoint; only a new one is added, in time order.
            if !clicks.iter().any(|o| o.param == c.param && o.value == c.value) {
                let at = clicks.iter().position(|o| o.at > c.at).unwrap_or(clicks.len());
                super::insert_at(clicks, at, c);
            }
        }
        record::fit(&mut self.record);
        self.record_dirty = true;
    }

    /// The URL a link or form of this page should go to instead of `href`, when a journey
    /// must travel with it: while consent is pending, the clicks, on links to the site itself
    /// and its `linkDomains`; with consent, the visitor and clicks, on links to `linkDomains`.
    /// Never on links to other sites, never after the visitor declined, and never with a
    /// refused value (only validated clicks are in the record).
    pub fn decorate(&self, href: &str, page: Page, now: u64) -> Option<String> {
        let to = url::host_of(href);
        let own = !to.is_empty() && to.eq_ignore_ascii_case(url::host_of(page.url));
        let linked = !to.is_empty() && self.config.link_domains.iter().any(|d| domain_match(to, d));
        let pending = !self.consent && self.config.wait_for_consent && !self.declined;
        let identified = self.consent && linked && !own;
        let carry = identified || (pending && (own || linked) && !self.record.clicks.is_empty());
        carry.then(|| {
            let value = link::encode(&self.record, identified, now, page.ua);
            url::with_journey(href, &value)
        })
    }

    /// Runs one command. Errors are reported by the caller; nothing here throws.
    pub fn command<R: Random + ?Sized>(&mut self, cmd: Command, page: Page, now: u64, rng: &mut R) -> Reply {
        match cmd {
            // A second init is refused by the shell before it gets here.
            Command::Init(_) => Reply::Done,
            Command::PageView(props) => self.submit(
                Kind::PageView {
                    title: String::from(page.title),
                    props,
                },
                page,
                now,
                rng,
            ),
            Command::Conversion(order) => {
                if self.orders.contains(&order.order_id) {
                    self.note("duplicate order not sent again:", &order.order_id);
                    return Reply::Duplicate(order.order_id);
                }
                if self.orders.len() >= ORDER_MEMORY {
                    super::remove_at(&mut self.orders, 0);
                }
                self.orders.push(order.order_id.clone());
                self.orders_dirty = true;
                self.submit(Kind::Conversion(order), page, now, rng)
            }
            Command::Identify {
                customer_id,
                email: Some(email),
            } => Reply::Hash(customer_id, email),
            Command::Identify {
                customer_id,
                email: None,
            } => self.identify(customer_id, None, page, now, rng),
            Command::Consent(granted) => self.set_consent(granted, page, now, rng),
            Command::Event(name, props) => self.submit(Kind::Custom { name, props }, page, now, rng),
            Command::Flush => {
                self.queue.hurry(now);
                Reply::Done
            }
        }
    }

    /// Queues an identify event once the shell has hashed the email.
    pub fn identify<R: Random + ?Sized>(
        &mut self,
        customer_id: Option<String>,
        email_hash: Option<String>,
        page: Page,
        now: u64,
        rng: &mut R,
    ) -> Reply {
        self.submit(
            Kind::Identify {
                customer_id,
                email_hash,
            },
            page,
            now,
            rng,
        )
    }

    /// The page's URL changed without a load (SPA navigation): a page view when it really
    /// changed, none for a `replaceState` to the same URL.
    pub fn navigated<R: Random + ?Sized>(&mut self, page: Page, now: u64, rng: &mut R) -> Option<Reply> {
        // Compared cleaned, so putting the cleaned address in the address bar is no navigation.
        let u = url::clean(page.url, &self.config.click_params);
        if u == self.last_url {
            return None;
        }
        self.last_url = u;
        self.capture(page, now);
        self.config.auto_pageview.then(|| {
            self.submit(
                Kind::PageView {
                    title: String::from(page.title),
                    props: None,
                },
                page,
                now,
                rng,
            )
        })
    }

    fn set_consent<R: Random + ?Sized>(&mut self, granted: bool, page: Page, now: u64, rng: &mut R) -> Reply {
        let was = self.consent;
        self.consent = granted;
        self.declined = !granted;
        self.consent_dirty = true;
        self.note("consent", if granted { "granted" } else { "denied" });
        if granted {
            self.record_dirty = true;
            self.orders_dirty = true;
        } else if was {
            // Withdrawn: what waits to be sent carries identifiers, so it goes.
            self.queue.clear();
        }
        let reply = self.submit(Kind::Consent { granted }, page, now, rng);
        if granted && !was {
            for mut e in core::mem::take(&mut self.held) {
                self.stamp(&mut e);
                self.enqueue(e);
            }
        }
        reply
    }

    /// Fills the identifying fields of an event from the journey.
    fn stamp(&mut self, e: &mut Event) {
        e.visitor = Some(self.record.visitor.clone());
        e.session = Some(self.record.session.clone());
        e.clicks = self.record.clicks.clone();
    }

    fn enqueue(&mut self, e: Event) -> Reply {
        let mut body = String::new();
        wire::write_event(&mut body, &e);
        let conversion = matches!(e.kind, Kind::Conversion(_));
        if !self.queue.push(e.id.clone(), body, conversion, e.at) {
            return self.full();
        }
        self.note("queued", wire::type_name(&e.kind));
        Reply::Queued(e.id)
    }

    fn full(&mut self) -> Reply {
        // No note: the answer says why, and the debug page counts them.
        self.dropped += 1;
        Reply::Full
    }

    fn submit<R: Random + ?Sized>(&mut self, kind: Kind, page: Page, now: u64, rng: &mut R) -> Reply {
        if !id::session_alive(self.record.last_seen, now, self.config.session_timeout_ms) {
            self.record.session = id::uuid_v4(&random16(rng));
        }
        self.record.last_seen = now;
        self.record_dirty = true;
        record::expire(&mut self.record, now, self.config.window_ms);
        let is_consent = matches!(kind, Kind::Consent { .. });
        let mut e = Event {
            id: id::uuid_v7(now, &random16(rng)),
            at: now,
            visitor: None,
            session: None,
            // Nothing refused leaves in either: the parameters are cut (see `url::clean`).
            url: url::clean(page.url, &self.config.click_params),
            referrer: url::clean_referrer(page.referrer, page.url, &self.config.click_params),
            clicks: Vec::new(),
            kind,
        };
        if self.consent {
            self.stamp(&mut e);
            return self.enqueue(e);
        }
        if is_consent {
            // A denial is sent, but anonymously: no IDs, no clicks, no query string.
            // Cut at an ASCII byte, so on a character boundary; `get` rather than `truncate`,
            // whose boundary assertion would ship its message and this file's path.
            if let Some(end) = e.url.bytes().position(|b| b == b'?' || b == b'#') {
                e.url = String::from(e.url.get(..end).unwrap_or_default());
            }
            e.referrer = String::from(url::host_of(page.referrer));
            return self.enqueue(e);
        }
        if self.config.wait_for_consent {
            if self.held.len() >= MAX_HELD {
                return self.full();
            }
            self.note("held until consent:", wire::type_name(&e.kind));
            let id = e.id.clone();
            self.held.push(e);
            Reply::Held(id)
        } else {
            self.note("dropped (consent denied):", wire::type_name(&e.kind));
            Reply::Dropped
        }
    }

    /// What to write to storage now, coalesced: each key at most once however many commands
    /// ran since the last call. While consent is denied nothing is written, and what was
    /// stored before is removed.
    pub fn take_writes(&mut self, now: u64) -> Vec<Write> {
        let mut w = Vec::new();
        if !self.consent {
            if self.consent_dirty || self.record_dirty || self.queue.is_dirty() || self.orders_dirty {
                for k in [keys::RECORD, keys::QUEUE, keys::ORDERS, keys::CONSENT] {
                    w.push((k, None));
                }
            }
        } else {
            if self.record_dirty {
                self.record.written = now;
                w.push((keys::RECORD, Some(record::encode(&self.record))));
            }
            if self.queue.is_dirty() {
                w.push((
                    keys::QUEUE,
                    (!self.queue.items().is_empty()).then(|| self.queue.encode()),
                ));
            }
            if self.orders_dirty {
                let mut text = String::new();
                for o in &self.orders {
                    text.push_str(o);
                    text.push('\n');
                }
                w.push((keys::ORDERS, Some(text)));
            }
            if self.consent_dirty {
                w.push((keys::CONSENT, Some(String::from("granted"))));
            }
        }
        self.record_dirty = false;
        self.orders_dirty = false;
        self.consent_dirty = false;
        self.queue.saved();
        w
    }

    /// Seconds the record's cookie should live: the attribution window from the latest click
    /// (so only a new click refreshes it), or a full window for a journey without clicks.
    pub fn cookie_max_age(&self, now: u64) -> u64 {
        let mut from = None;
        for c in &self.record.clicks {
            if from.is_none_or(|f| c.at > f) {
                from = Some(c.at);
            }
        }
        let from = from.unwrap_or(now);
        (from + self.config.window_ms).saturating_sub(now) / 1000
    }

    /// Another tab may have written the queue: adds what it stored and this tab lacks.
    pub fn merge_stored_queue(&mut self, text: &str) {
        self.queue.merge_stored(text);
    }

    /// The next batch to POST, if anything is due.
    pub fn next_batch(&mut self, now: u64) -> Option<Outgoing> {
        let ids = self.queue.take(now)?;
        let body = wire::write_batch(
            &self.config.site,
            self.config.write_key.as_deref(),
            now,
            self.webdriver,
            &self.queue.bodies(&ids),
        );
        Some(Outgoing {
            ids,
            url: self.config.events_url(),
            body,
        })
    }

    /// Everything waiting, as one batch for `sendBeacon` when the page is hidden.
    pub fn beacon(&mut self, now: u64) -> Option<Outgoing> {
        let ids = self.queue.for_beacon();
        if ids.is_empty() {
            return None;
        }
        let body = wire::write_batch(
            &self.config.site,
            self.config.write_key.as_deref(),
            now,
            self.webdriver,
            &self.queue.bodies(&ids),
        );
        self.log_send(now, "beacon", ids.len(), 0, Settled::default());
        Some(Outgoing {
            ids,
            url: self.config.events_url(),
            body,
        })
    }

    /// Applies the collector's answer to a batch.
    pub fn settle(
        &mut self,
        out: &Outgoing,
        status: u16,
        answer: Option<&str>,
        retry_after: Option<&str>,
        now: u64,
        jitter: u32,
    ) {
        let settled = self.queue.settle(&out.ids, status, answer, retry_after, now, jitter);
        #[cfg(not(lean))]
        for (id, reason) in &settled.dropped {
            self.note("dropped", id);
            self.note("  reason:", reason);
        }
        self.log_send(now, "fetch", out.ids.len(), status, settled);
    }

    #[cfg_attr(lean, allow(unused_variables, clippy::unused_self))]
    fn log_send(&mut self, at: u64, via: &'static str, events: usize, status: u16, settled: Settled) {
        #[cfg(not(lean))]
        if self.sends.len() >= SEND_LOG {
            super::remove_at(&mut self.sends, 0);
        }
        #[cfg(not(lean))]
        self.sends.push(SendLog {
            at,
            via,
            events,
            status,
            settled,
        });
    }

    /// The browser is back online, or the site asked: send what waits now.
    pub fn hurry(&mut self, now: u64) {
        self.queue.hurry(now);
    }

    /// When the shell should wake up to send again.
    pub fn next_wake(&self) -> Option<u64> {
        self.queue.next_due()
    }

    /// Events held in memory until consent is granted.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Everything the debug page shows, as JSON (the debug build only). `cookie` and `local` are what the stores
    /// hold right now, so the page can say where each click is present.
    #[cfg(not(lean))]
    pub fn state(&self, cookie: Option<&str>, local: Option<&str>, now: u64) -> String {
        let in_cookie = cookie.and_then(record::decode);
        let in_local = local.and_then(record::decode);
        let has = |r: &Option<Record>, c: &super::click::Click| {
            r.as_ref()
                .is_some_and(|r| r.clicks.iter().any(|k| k.param == c.param && k.value == c.value))
        };
        let c = &self.config;
        let mut o = String::from("{\"version\":");
        write_str(&mut o, VERSION);
        o.push_str(",\"config\":{\"site\":");
        write_str(&mut o, &c.site);
        wire::field_str(&mut o, "collector", &c.events_url());
        wire::field_str(&mut o, "storage", c.storage.as_str());
        wire::field_str(&mut o, "storageInUse", self.storage.as_str());
        wire::field_u64(&mut o, "windowDays", c.window_ms / 86_400_000);
        wire::field_str(
            &mut o,
            "consentDefault",
            if c.consent_default { "granted" } else { "denied" },
        );
        wire::field_str(&mut o, "whileDenied", if c.wait_for_consent { "wait" } else { "drop" });
        wire::field_bool(&mut o, "honorGpc", c.honor_gpc);
        wire::field_bool(&mut o, "autoPageview", c.auto_pageview);
        wire::field_bool(&mut o, "debug", c.debug);

        o.push_str(",\"clickParams\":{");
        for (i, (p, n)) in c.click_params.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            write_str(&mut o, p);
            o.push(':');
            write_str(&mut o, n);
        }
        o.push_str("}}");
        wire::field_str(&mut o, "consent", if self.consent { "granted" } else { "denied" });
        wire::field_str(&mut o, "visitor", &self.record.visitor);
        wire::field_str(&mut o, "session", &self.record.session);
        o.push_str(",\"clicks\":[");
        let n = self.record.clicks.len();
        for (i, k) in self.record.clicks.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            let mut click = String::new();
            wire::write_click(&mut click, k);
            click.pop();
            o.push_str(&click);
            wire::field_u64(&mut o, "expiresAt", k.at + c.window_ms);
            wire::field_bool(&mut o, "expired", k.at + c.window_ms <= now);
            wire::field_bool(&mut o, "first", i == 0);
            wire::field_bool(&mut o, "last", i + 1 == n);
            wire::field_bool(&mut o, "inCookie", has(&in_cookie, k));
            wire::field_bool(&mut o, "inLocalStorage", has(&in_local, k));
            o.push('}');
        }
        o.push_str("],\"rejected\":[");
        for (i, r) in self.rejected.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            o.push_str("{\"param\":");
            write_str(&mut o, &r.param);
            wire::field_str(&mut o, "reason", r.reason.as_str());
            o.push('}');
        }
        o.push_str("],\"queue\":[");
        for (i, p) in self.queue.items().iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            o.push_str("{\"id\":");
            write_str(&mut o, &p.id);
            wire::field_bool(&mut o, "conversion", p.conversion);
            wire::field_u64(&mut o, "attempts", p.attempts as u64);
            wire::field_u64(&mut o, "notBefore", p.not_before);
            wire::field_bool(&mut o, "inFlight", p.in_flight);
            o.push_str(",\"event\":");
            o.push_str(&p.body);
            o.push('}');
        }
        o.push(']');
        wire::field_u64(&mut o, "queued", self.queue.items().len() as u64);
        wire::field_u64(&mut o, "held", self.held.len() as u64);
        wire::field_u64(&mut o, "dropped", self.dropped);
        o.push_str(",\"sends\":[");
        for (i, s) in self.sends.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            o.push_str("{\"at\":");
            write_u64(&mut o, s.at);
            wire::field_str(&mut o, "via", s.via);
            wire::field_u64(&mut o, "events", s.events as u64);
            wire::field_u64(&mut o, "status", s.status as u64);
            wire::field_u64(&mut o, "delivered", s.settled.delivered as u64);
            wire::field_u64(&mut o, "retrying", s.settled.retrying as u64);
            o.push_str(",\"dropped\":[");
            for (j, (id, reason)) in s.settled.dropped.iter().enumerate() {
                if j > 0 {
                    o.push(',');
                }
                o.push_str("{\"id\":");
                write_str(&mut o, id);
                wire::field_str(&mut o, "reason", reason);
                o.push('}');
            }
            o.push_str("]}");
        }
        o.push_str("],\"orders\":[");
        for (i, id) in self.orders.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            write_str(&mut o, id);
        }
        o.push_str("]}");
        o
    }
}
