//! The storage interface the handlers and the writer use, and the rows it hands back. Two
//! implementations sit beneath it: [`sqlite`] (one file, one process: the default) and
//! [`postgres`] (one database shared by any number of collectors).

use std::fmt;

use utt::core::click::Click;
use utt::core::wire::{Event, Kind, Order, Status};

use crate::traffic::{Exclude, Traffic};

pub mod derived;
pub mod import;
pub mod orders;
pub mod postbacks;
pub mod postgres;
pub mod sqlite;

pub(crate) use derived::{put_text, put_u64, ByteReader};
pub use derived::{Chunks, Derived, IdentityRow, Merged, PageRow, TouchRow};
pub use orders::{Adjusted, Adjustment, AdjustmentKind, OrdersExport, ServerOrder};
pub use postbacks::{
    Attempted, Claim, Delivery, Plan, PostbackKind, PostbackQuery, PostbackRow, PostbackStatus, Unplanned,
};

/// One decoded event ready to store: what the tag sent, re-written as canonical wire JSON, and
/// the few fields the writer indexes. The decoded event itself is freed on the request's
/// thread, right after it was read: the writer never sees its dozens of small strings.
#[derive(Clone, Debug)]
pub struct Record {
    /// When the collector received it (its own clock, ms).
    pub received: u64,
    /// The event as wire JSON (`utt::core::wire::write_event`), what the store keeps.
    pub body: String,
    /// The event ID.
    pub id: String,
    /// The event type's wire name.
    pub kind: &'static str,
    /// When it happened (ms).
    pub at: u64,
    /// The visitor ID, if consent allowed one.
    pub visitor: Option<String>,
    /// For a conversion: its order.
    pub order: Option<Box<Order>>,
    /// For a conversion: its order lines as a JSON array (decimals as strings).
    pub items: Option<String>,
    /// Where the click list's JSON is in `body` (byte range), if it is not empty.
    pub clicks: Option<(usize, usize)>,
    /// An earlier event of the same batch whose click list's JSON is the same (index in the
    /// batch): the store may keep that text once.
    pub same_clicks_as: Option<usize>,
}

/// The marker that replaces a click list kept once per batch in the body log. Canonical wire
/// JSON escapes every control character, so this byte never occurs in a body.
pub const CLICKS_REF: u8 = 0x01;

impl Record {
    /// An event made ready to store, on the request's thread: its canonical wire JSON and, for
    /// a conversion, its order lines' JSON are written here rather than by the single writer.
    pub fn new(received: u64, event: Event) -> Record {
        Record::with_clicks(received, event, None).0
    }

    /// [`Record::new`], copying the JSON of the event's click list from an earlier record with
    /// the same clicks instead of writing it again; also hands back the event's clicks.
    fn with_clicks(received: u64, event: Event, clicks: Option<&str>) -> (Record, Vec<Click>) {
        let mut body = String::with_capacity(1024);
        let (from, to) = utt::core::wire::write_event_with_clicks(&mut body, &event, clicks);
        let kind = utt::core::wire::type_name(&event.kind);
        let Event {
            id,
            at,
            visitor,
            kind: k,
            clicks: event_clicks,
            ..
        } = event;
        let (order, items) = match k {
            Kind::Conversion(o) => {
                let items = items_json(&o);
                (Some(Box::new(o)), Some(items))
            }
            _ => (None, None),
        };
        let record = Record {
            received,
            body,
            id,
            kind,
            at,
            visitor,
            order,
            items,
            clicks: (to > from).then_some((from, to)),
            same_clicks_as: None,
        };
        (record, event_clicks)
    }

    /// The event again, read back from its canonical JSON (for the rare batch with duplicates,
    /// whose derived rows are computed again from its new events only).
    pub fn event(&self) -> Result<Event, StoreError> {
        utt::core::wire::read_event(&self.body)
            .map_err(|e| StoreError(format!("stored body: {}: {}", e.field, e.reason)))
    }
}

/// A conversion's order lines as the JSON array the read API answers (`wire::Item`'s serde form).
pub(crate) fn items_json(o: &Order) -> String {
    serde_json::to_string(&o.items).unwrap_or_else(|_| "[]".to_string())
}

/// The path of a URL, without scheme, host, query or fragment (page paths are reported to
/// partners; query strings may carry other people's parameters).
pub fn url_path(url: &str) -> &str {
    let rest = match url.find("://") {
        Some(i) => {
            let after = &url[i + 3..];
            match after.find(['/', '?', '#']) {
                Some(j) if after[j..].starts_with('/') => &after[j..],
                _ => "/",
            }
        }
        None => url,
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let path = &rest[..end];
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

/// One request's valid events, in order, with the rows derived from them, computed on the
/// request's thread. The store writes the derived rows as they are when every event of the
/// batch is new (the common case); when some are duplicates it derives them again from the
/// new ones only.
pub struct Batch {
    /// The site the batch named.
    pub site: String,
    /// The events.
    pub records: Vec<Record>,
    /// What they add to the derived tables, if all are stored.
    pub derived: Derived,
    /// The class of the batch's traffic (`crate::traffic::classify`): one browser sent it.
    pub traffic: Traffic,
}

impl Batch {
    /// Prepares a request's valid events for the writer: derives their rows, writes their
    /// canonical JSON, and frees what the writer does not need (here, on the request's thread).
    pub fn new(site: &str, received: u64, events: Vec<Event>) -> Batch {
        Batch::classified(site, received, events, Traffic::Human)
    }

    /// [`Batch::new`] for a batch of a traffic class (`crate::traffic::classify`).
    pub fn classified(site: &str, received: u64, events: Vec<Event>, traffic: Traffic) -> Batch {
        let derived = Derived::of(&events, traffic);
        let mut records: Vec<Record> = Vec::with_capacity(events.len());
        // Every event carries every click in force, so a batch repeats the same click list: it
        // is written once, copied into the JSON of the events that follow with the same clicks,
        // and they point at the record that wrote it (the store may keep it once).
        let mut first: Option<(Vec<Click>, usize)> = None;
        for e in events {
            let same = match &first {
                Some((clicks, j)) if !e.clicks.is_empty() && *clicks == e.clicks => Some(*j),
                _ => None,
            };
            let text = same.and_then(|j| {
                let (a, b) = records[j].clicks?;
                records[j].body.get(a..b)
            });
            let (mut r, clicks) = Record::with_clicks(received, e, text);
            r.same_clicks_as = same;
            if same.is_none() && !clicks.is_empty() {
                first = Some((clicks, records.len()));
            }
            records.push(r);
        }
        Batch {
            site: site.to_string(),
            records,
            derived,
            traffic,
        }
    }
}

/// A click carried by a visitor's events: one touchpoint of a journey.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Touch {
    /// The query parameter that carried it.
    pub param: String,
    /// The network of that parameter.
    pub network: String,
    /// The click ID.
    pub value: String,
    /// When the click happened (ms).
    pub at: u64,
    /// The landing path.
    pub path: String,
    /// The landing's query string (no `?`): the landing page view's, else the click's UTM
    /// context as `utm_source=...`; empty for touches stored before partners were added and
    /// not rebuilt since. What [`crate::partners`] reads the click's partner from.
    pub landing: String,
    /// True when it was seen on another visitor linked by identity, not the converting one.
    pub cross_device: bool,
    /// The class of the traffic that carried it, human if any of it was (a bot's click earns no
    /// credit).
    pub traffic: Traffic,
}

/// A stored conversion, as the read API needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredConversion {
    /// The site.
    pub site: String,
    /// The event ID of the conversion.
    pub event_id: String,
    /// The merchant's order ID.
    pub order_id: String,
    /// When it happened (ms).
    pub at: u64,
    /// The visitor who converted, if consent allowed an ID.
    pub visitor: Option<String>,
    /// The amount's exact decimal text.
    pub amount: Option<String>,
    /// The currency code.
    pub currency: Option<String>,
    /// The discount's exact decimal text.
    pub discount: Option<String>,
    /// The promo code as entered.
    pub promo_code: Option<String>,
    /// `new` or `returning`.
    pub customer_status: Option<String>,
    /// The order lines as a JSON array (decimals as strings).
    pub items: String,
    /// The custom fields as a JSON object, if any.
    pub custom: Option<String>,
    /// The class of the traffic that sent it (a confirmation by the merchant's server: human).
    pub traffic: Traffic,
}

/// Where a click ID landed, once per distinct (param, time) seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Landing {
    /// The site.
    pub site: String,
    /// The parameter that carried it.
    pub param: String,
    /// The network.
    pub network: String,
    /// The click time (ms).
    pub at: u64,
    /// The landing path.
    pub path: String,
}

/// Page views that carried a click ID, per page path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageSeen {
    /// The site.
    pub site: String,
    /// The page path (no query string).
    pub path: String,
    /// How many page views.
    pub views: u64,
    /// The latest one (ms).
    pub last_at: u64,
}

/// What the collector has seen for one click ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClickSeen {
    /// The earliest event carrying it (ms).
    pub first_seen: u64,
    /// The latest event carrying it (ms).
    pub last_seen: u64,
    /// Its landings.
    pub landings: Vec<Landing>,
    /// The click's own traffic class: its best sighting, the least of its touches' (human if
    /// any visitor that carried it was human; attribution classes each visitor's own touch
    /// instead); `None` when it left no touch
    /// (only page views without a visitor ID, which no conversion can credit).
    pub traffic: Option<Traffic>,
    /// Page views carrying it, per path.
    pub pages: Vec<PageSeen>,
}

impl ClickSeen {
    /// What was seen for a click from its landings (with the earliest and latest sighting and
    /// the least traffic class among its touches) and its page views, most recent first; `None`
    /// when there is neither.
    pub fn of(
        landings: Vec<Landing>,
        first_seen: u64,
        last_seen: u64,
        traffic: Option<Traffic>,
        pages: Vec<PageSeen>,
    ) -> Option<ClickSeen> {
        if landings.is_empty() && pages.is_empty() {
            return None;
        }
        let (first_seen, last_seen) = if landings.is_empty() {
            // Page views without a visitor ID (consent denied) leave no touch rows.
            (
                pages.iter().map(|p| p.last_at).min().unwrap_or(0),
                pages.iter().map(|p| p.last_at).max().unwrap_or(0),
            )
        } else {
            (first_seen, last_seen)
        };
        Some(ClickSeen {
            first_seen,
            last_seen,
            landings,
            traffic,
            pages,
        })
    }
}

/// How the derived rows keep up with the acknowledged events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeriveStatus {
    /// Acknowledged events whose derived rows are not written yet (reads wait for them).
    pub lag: u64,
    /// Attempts to write derived rows that failed since the store opened (each is retried).
    pub failures: u64,
    /// True while the latest attempt failed: nothing after it is derived until one succeeds.
    pub failing: bool,
}

/// Row counts, for health checks and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Stored events.
    pub events: u64,
    /// Stored conversions.
    pub conversions: u64,
}

/// A storage failure. It is logged and answered 500; its text never reaches a client.
#[derive(Debug)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

impl StoreError {
    /// How the text of an [`StoreError::unavailable`] error begins.
    const UNAVAILABLE: &'static str = "the database is unreachable: ";

    /// The database cannot be reached just now (a server store whose server is down or
    /// restarting): the events are answered 503, and the tag sends them again later.
    pub fn unavailable(why: impl fmt::Display) -> StoreError {
        StoreError(format!("{}{why}", Self::UNAVAILABLE))
    }

    /// A store that keeps no confirmations or adjustments (a test double).
    pub fn no_orders() -> StoreError {
        StoreError("this store keeps no server confirmations or adjustments".into())
    }

    /// A store that keeps no postback outbox (a test double).
    pub fn no_postbacks() -> StoreError {
        StoreError("this store keeps no postback outbox".into())
    }

    /// Whether this is an [`StoreError::unavailable`] error.
    pub fn is_unavailable(&self) -> bool {
        self.0.starts_with(Self::UNAVAILABLE)
    }
}

/// The durable store. `append` is called by the writer threads only ([`Store::writers`] of
/// them, so by one thread at a time unless the store says otherwise); reads may run on any
/// thread at the same time.
pub trait Store: Send + Sync {
    /// Stores a group of batches in one durable transaction (on disk when it returns `Ok`) and
    /// says, per event and in order (batch after batch), whether it was new or a duplicate (by event ID, or by
    /// site and order ID for conversions). On error nothing of the group is stored.
    fn append(&self, batches: &[&Batch]) -> Result<Vec<Status>, StoreError>;

    /// The site's conversions at or after `since` (ms), oldest first, at most `limit`, leaving
    /// out those whose traffic class is in `exclude`.
    fn conversions(
        &self,
        site: &str,
        since: u64,
        limit: usize,
        exclude: Exclude,
    ) -> Result<Vec<StoredConversion>, StoreError>;

    /// The clicks seen between `from` and `to` (ms, inclusive) for a visitor and for every other
    /// visitor sharing an identity (email hash or customer ID) with it, the latter marked
    /// `cross_device`.
    fn touches(&self, site: &str, visitor: &str, from: u64, to: u64) -> Result<Vec<Touch>, StoreError>;

    /// What was seen for a click ID (on one site, or on all), or `None` if never.
    fn click(&self, value: &str, site: Option<&str>) -> Result<Option<ClickSeen>, StoreError>;

    /// Conversions that could be credited to a click ID: those of visitors who carried it or who
    /// share an identity with one who did, at or after the click's first landing, at most `limit`.
    fn conversions_near_click(
        &self,
        value: &str,
        site: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredConversion>, StoreError>;

    /// A stored event's wire JSON, or `None` if that ID is not stored.
    fn event(&self, id: &str) -> Result<Option<String>, StoreError>;

    /// Whether an event ID is stored.
    fn has_event(&self, id: &str) -> Result<bool, StoreError> {
        self.event(id).map(|e| e.is_some())
    }

    /// Row counts.
    fn counts(&self) -> Result<Counts, StoreError>;

    /// The bytes the database occupies on disk.
    fn size_bytes(&self) -> u64;

    /// How the derived rows (touches, page counts, identities) keep up with what was
    /// acknowledged: for `/healthz`, `/metrics` and the benchmark.
    fn derive_status(&self) -> DeriveStatus {
        DeriveStatus::default()
    }

    /// Whether the database is still there to commit to, without writing (for `/healthz`: a
    /// database file removed or replaced under a running store).
    fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// A small durable commit, made by the writer only, to find out whether the store can
    /// commit again after failures when no events come (for `/healthz`).
    fn probe(&self) -> Result<(), StoreError> {
        self.check()
    }

    /// How many groups the store can commit at the same time, each from a writer thread of its
    /// own: one for a store with one writing connection (SQLite), several for a database
    /// server, which orders concurrent transactions by its own locks.
    fn writers(&self) -> usize {
        1
    }

    /// Stores an order the merchant's server confirmed, durably before it returns: `Accepted`,
    /// or `Duplicate` when the site already has a confirmation of that order ID (the first
    /// stays). A browser conversion of the same order does not make it a duplicate: the two are
    /// kept side by side and merged when read.
    fn confirm(&self, _order: &ServerOrder) -> Result<Status, StoreError> {
        Err(StoreError::no_orders())
    }

    /// The site's confirmation of an order, if there is one.
    fn server_order(&self, _site: &str, _order_id: &str) -> Result<Option<ServerOrder>, StoreError> {
        Err(StoreError::no_orders())
    }

    /// The site's confirmations at or after `since` (ms) of orders the browser never reported
    /// (no conversion row), oldest first, at most `limit`.
    fn server_only_orders(&self, _site: &str, _since: u64, _limit: usize) -> Result<Vec<ServerOrder>, StoreError> {
        Err(StoreError::no_orders())
    }

    /// Stores an adjustment, durably before it returns, if the site has the order (from the
    /// browser or from its server); idempotent by (site, adjustment ID).
    fn adjust(&self, _adjustment: &Adjustment) -> Result<Adjusted, StoreError> {
        Err(StoreError::no_orders())
    }

    /// An order's adjustments, by time then arrival.
    fn adjustments(&self, _site: &str, _order_id: &str) -> Result<Vec<Adjustment>, StoreError> {
        Err(StoreError::no_orders())
    }

    /// The site's distinct clicks (parameter, click ID and click time) that landed at or after
    /// `from` and before `to` (ms), by click time, at most `limit`: what the report counts per
    /// partner. `landing` and `path` are those of one visitor who carried the click (the
    /// greatest landing and the least path, so both stores pick the same). A click whose class
    /// (its touches' least) is in `exclude` is left out before the limit counts.
    fn clicks(
        &self,
        _site: &str,
        _from: u64,
        _to: u64,
        _limit: usize,
        _exclude: crate::traffic::Exclude,
    ) -> Result<Vec<Touch>, StoreError> {
        Err(StoreError("this store keeps no clicks for reports".into()))
    }

    /// Every confirmation and adjustment of the store, site by site (for `--import-sqlite`).
    fn export_orders(&self) -> Result<OrdersExport, StoreError> {
        Err(StoreError::no_orders())
    }

    /// The site's browser conversion of an order, if there is one.
    fn order_conversion(&self, _site: &str, _order_id: &str) -> Result<Option<StoredConversion>, StoreError> {
        Err(StoreError::no_postbacks())
    }

    /// The postback decision made for a conversion or adjustment (`adjustment_id` empty for a
    /// conversion): `None` when none was made yet, else the partner it credited, if any.
    fn planned(
        &self,
        _site: &str,
        _kind: PostbackKind,
        _order_id: &str,
        _adjustment_id: &str,
    ) -> Result<Option<Option<String>>, StoreError> {
        Err(StoreError::no_postbacks())
    }

    /// The site's conversions (browser or server) and adjustments received at or after `since`
    /// (ms; a browser conversion by its own time) that have no postback decision yet, at most
    /// `limit`, conversions first.
    fn unplanned(&self, _site: &str, _since: u64, _limit: usize) -> Result<Vec<Unplanned>, StoreError> {
        Err(StoreError::no_postbacks())
    }

    /// Records a postback decision and its delivery, if any, in one durable transaction; `false`
    /// (and nothing stored) when a decision for the same conversion or adjustment was already
    /// there: the first decision stands.
    fn plan_postback(&self, _plan: &Plan, _delivery: Option<&Delivery>) -> Result<bool, StoreError> {
        Err(StoreError::no_postbacks())
    }

    /// Claims at most `limit` pending deliveries of `sites` due at `now` (ms), oldest due first,
    /// by moving their next attempt to `lease_until` ([`Claim`]), and returns them. An adjustment waits
    /// while its order's conversion postback is pending. On a shared database two collectors
    /// never claim the same delivery at once, and one claims only the sites it sends for (a
    /// collector with an older configuration leaves a new site's deliveries to the others).
    fn claim_postbacks(&self, _claim: &Claim<'_>) -> Result<Vec<PostbackRow>, StoreError> {
        Err(StoreError::no_postbacks())
    }

    /// Records an attempt of a delivery claimed with the lease ending at `lease` (its `next_at`
    /// as claimed, the fencing token); `false`, and nothing changed, when it is no longer pending
    /// under that lease: delivered, failed, or claimed again after the lease ran out.
    fn attempted(&self, _site: &str, _id: &str, _lease: u64, _outcome: &Attempted) -> Result<bool, StoreError> {
        Err(StoreError::no_postbacks())
    }

    /// The site's deliveries, oldest first.
    fn postbacks(&self, _site: &str, _query: &PostbackQuery) -> Result<Vec<PostbackRow>, StoreError> {
        Err(StoreError::no_postbacks())
    }

    /// Pending deliveries, all sites (for `/metrics`).
    fn postbacks_pending(&self) -> Result<u64, StoreError> {
        Err(StoreError::no_postbacks())
    }

    /// Flushes and closes what can be closed (the WAL is checkpointed); called once at shutdown.
    fn close(&self) -> Result<(), StoreError>;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The golden journey's events (the SQLite store's tests use them too).
    pub(crate) fn journey() -> Vec<Event> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/batch-journey.json");
        let text = std::fs::read_to_string(path).unwrap();
        let batch = utt::core::wire::read_batch(&text).unwrap();
        batch.events.into_iter().map(|e| e.unwrap()).collect()
    }

    /// A batch writes a repeated click list once and copies it: every body is still exactly the
    /// event's canonical JSON, and each event points at the one that wrote its list, also when
    /// the clicks change and change back within the batch.
    #[test]
    fn repeated_click_lists_are_copied_exactly() {
        let base = journey();
        assert!(base.len() >= 3 && !base[0].clicks.is_empty());
        let mut other = base[0].clicks.clone();
        other.pop();
        // Clicks A, A, B, B, none, A, A (the journey's own list is A).
        let lists = [
            None,
            None,
            Some(other.clone()),
            Some(other),
            Some(Vec::new()),
            None,
            None,
        ];
        let events: Vec<Event> = lists
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let mut e = base[i % base.len()].clone();
                e.clicks = l.clone().unwrap_or_else(|| base[0].clicks.clone());
                e.id = format!("{}-{i}", e.id);
                e
            })
            .collect();
        let batch = Batch::new("demo", 1, events.clone());
        for (r, e) in batch.records.iter().zip(&events) {
            let mut want = String::new();
            utt::core::wire::write_event(&mut want, e);
            assert_eq!(r.body, want);
        }
        let same: Vec<Option<usize>> = batch.records.iter().map(|r| r.same_clicks_as).collect();
        assert_eq!(same, [None, Some(0), None, Some(2), None, None, Some(5)]);
    }
}
