//! The storage interface the handlers and the writer use, and the rows it hands back. SQLite is
//! the one backend today (`sqlite.rs`); a server database can be added behind the same trait.

use std::collections::HashMap;
use std::fmt;

use utt::core::click::Click;
use utt::core::wire::{Event, Kind, Order, Status};

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
fn items_json(o: &Order) -> String {
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
}

impl Batch {
    /// Prepares a request's valid events for the writer: derives their rows, writes their
    /// canonical JSON, and frees what the writer does not need (here, on the request's thread).
    pub fn new(site: &str, received: u64, events: Vec<Event>) -> Batch {
        let derived = Derived::of(&events);
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
        }
    }
}

/// A click carried by a visitor's events, merged over a batch: first and last event time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TouchRow {
    /// The visitor.
    pub visitor: String,
    /// The parameter that carried it.
    pub param: String,
    /// The click ID.
    pub value: String,
    /// The click time (ms).
    pub click_at: u64,
    /// The network (from the first event carrying it).
    pub network: String,
    /// The landing path (from the first event carrying it).
    pub path: String,
    /// The earliest event carrying it (ms).
    pub first: u64,
    /// The latest event carrying it (ms).
    pub last: u64,
}

/// Page views carrying a click ID on one path, merged over a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageRow {
    /// The click ID.
    pub value: String,
    /// The page path (no query string).
    pub path: String,
    /// How many page views.
    pub views: u64,
    /// The latest one (ms).
    pub last_at: u64,
}

/// An identity an identify event linked to a visitor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityRow {
    /// `customer` or `email`.
    pub kind: &'static str,
    /// The customer ID or email hash.
    pub value: String,
    /// The visitor.
    pub visitor: String,
    /// When (ms).
    pub at: u64,
}

/// The rows a set of events of one site adds to the derived tables (touches, page counts,
/// identities), each key once, in the order first seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Derived {
    /// Touches, one per (visitor, param, value, click time).
    pub touches: Vec<TouchRow>,
    /// Page counts, one per (value, path).
    pub pages: Vec<PageRow>,
    /// Identities in event order (the store keeps the first of each).
    pub identities: Vec<IdentityRow>,
}

impl Derived {
    /// Derives the rows of some events of one site, merging repeated keys.
    pub fn of<'a>(events: impl IntoIterator<Item = &'a Event>) -> Derived {
        let mut d = Derived::default();
        let mut touch_at: Rows<(&str, &str, &str, u64)> = Rows::default();
        let mut page_at: Rows<(&str, &str)> = Rows::default();
        for e in events {
            if let Some(visitor) = e.visitor.as_deref() {
                for c in &e.clicks {
                    let key = (visitor, c.param.as_str(), c.value.as_str(), c.at);
                    match touch_at.find_or_add(key) {
                        Some(i) => {
                            let t = &mut d.touches[i];
                            t.first = t.first.min(e.at);
                            t.last = t.last.max(e.at);
                        }
                        None => {
                            d.touches.push(TouchRow {
                                visitor: visitor.to_string(),
                                param: c.param.clone(),
                                value: c.value.clone(),
                                click_at: c.at,
                                network: c.network.clone(),
                                path: c.path.clone(),
                                first: e.at,
                                last: e.at,
                            });
                        }
                    }
                }
                if let Kind::Identify {
                    customer_id,
                    email_hash,
                } = &e.kind
                {
                    for (kind, value) in [("customer", customer_id), ("email", email_hash)] {
                        if let Some(v) = value {
                            d.identities.push(IdentityRow {
                                kind,
                                value: v.clone(),
                                visitor: visitor.to_string(),
                                at: e.at,
                            });
                        }
                    }
                }
            }
            if matches!(e.kind, Kind::PageView { .. }) {
                let path = url_path(&e.url);
                for (i, c) in e.clicks.iter().enumerate() {
                    // One page view counts once per click ID, even if two parameters carried it.
                    if e.clicks[..i].iter().any(|o| o.value == c.value) {
                        continue;
                    }
                    let key = (c.value.as_str(), path);
                    match page_at.find_or_add(key) {
                        Some(i) => {
                            let p = &mut d.pages[i];
                            p.views += 1;
                            p.last_at = p.last_at.max(e.at);
                        }
                        None => {
                            d.pages.push(PageRow {
                                value: c.value.clone(),
                                path: path.to_string(),
                                views: 1,
                                last_at: e.at,
                            });
                        }
                    }
                }
            }
        }
        d
    }
}

impl Derived {
    /// True when the events derive no row.
    pub fn is_empty(&self) -> bool {
        self.touches.is_empty() && self.pages.is_empty() && self.identities.is_empty()
    }

    /// Appends a site's rows to `out` in the pending log's format (read by [`Derived::decode`]):
    /// the site, the three row counts, then the rows, each string length-prefixed (u32 LE) and
    /// each number a u64 LE. The store keeps these bytes durably with the events that derived
    /// them, so the derived tables can be brought up to date after the acknowledgement.
    pub fn encode(&self, site: &str, out: &mut Vec<u8>) {
        let (s, n) = (put_text, put_u64);
        s(out, site);
        for len in [self.touches.len(), self.pages.len(), self.identities.len()] {
            n(out, len as u64);
        }
        for t in &self.touches {
            for v in [&t.visitor, &t.param, &t.value, &t.network, &t.path] {
                s(out, v);
            }
            for v in [t.click_at, t.first, t.last] {
                n(out, v);
            }
        }
        for p in &self.pages {
            s(out, &p.value);
            s(out, &p.path);
            n(out, p.views);
            n(out, p.last_at);
        }
        for i in &self.identities {
            out.push(u8::from(i.kind == "email"));
            s(out, &i.value);
            s(out, &i.visitor);
            n(out, i.at);
        }
    }

    /// The sites' rows [`Derived::encode`] wrote into `bytes`, in order.
    pub fn decode(bytes: &[u8]) -> Result<Vec<(String, Derived)>, StoreError> {
        let mut r = ByteReader(bytes);
        let mut out = Vec::new();
        while !r.0.is_empty() {
            let site = r.s()?;
            let (touches, pages, identities) = (r.count()?, r.count()?, r.count()?);
            let mut d = Derived::default();
            for _ in 0..touches {
                let (visitor, param, value, network, path) = (r.s()?, r.s()?, r.s()?, r.s()?, r.s()?);
                let (click_at, first, last) = (r.n()?, r.n()?, r.n()?);
                d.touches.push(TouchRow {
                    visitor,
                    param,
                    value,
                    click_at,
                    network,
                    path,
                    first,
                    last,
                });
            }
            for _ in 0..pages {
                let (value, path, views, last_at) = (r.s()?, r.s()?, r.n()?, r.n()?);
                d.pages.push(PageRow {
                    value,
                    path,
                    views,
                    last_at,
                });
            }
            for _ in 0..identities {
                let kind = match r.take(1)?[0] {
                    0 => "customer",
                    1 => "email",
                    _ => return Err(StoreError("pending rows: unknown identity kind".into())),
                };
                let (value, visitor, at) = (r.s()?, r.s()?, r.n()?);
                d.identities.push(IdentityRow {
                    kind,
                    value,
                    visitor,
                    at,
                });
            }
            out.push((site, d));
        }
        Ok(out)
    }
}

/// Appends a text to a byte format: its length (u32 LE), then its bytes.
pub(crate) fn put_text(out: &mut Vec<u8>, v: &str) {
    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    out.extend_from_slice(v.as_bytes());
}

/// Appends a number to a byte format (u64 LE).
pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Reads what [`put_text`] and [`put_u64`] wrote; a cut or damaged input is an error.
pub(crate) struct ByteReader<'a>(pub &'a [u8]);

impl<'a> ByteReader<'a> {
    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.0.len() < n {
            return Err(StoreError("stored rows: cut short".into()));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    /// A number.
    pub fn n(&mut self) -> Result<u64, StoreError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }

    /// A text, borrowed.
    pub fn text(&mut self) -> Result<&'a str, StoreError> {
        let b = self.take(4)?;
        let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        std::str::from_utf8(self.take(len)?).map_err(|_| StoreError("stored rows: not UTF-8".into()))
    }

    /// A text, owned.
    pub fn s(&mut self) -> Result<String, StoreError> {
        self.text().map(str::to_string)
    }

    /// A row count, bounded by the bytes left (every row takes more than one byte).
    pub fn count(&mut self) -> Result<usize, StoreError> {
        let n = self.n()?;
        if n > self.0.len() as u64 {
            return Err(StoreError("stored rows: count past the end".into()));
        }
        Ok(n as usize)
    }
}

/// The derived rows of many batches (of any sites), each key once: what writing them one batch
/// after another would leave. They are sorted by their random ID (the visitor for touches and
/// identities, the click ID for page counts), then the rest of the key: for one site that is
/// the order the tables are keyed in, so rows sharing a page are written together.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Merged {
    /// Touches by (visitor, site, param, value, click time): the first row's network and
    /// path, the earliest first and the latest last sighting.
    pub touches: Vec<(String, TouchRow)>,
    /// Page counts by (value, site, path): views added up, the latest view.
    pub pages: Vec<(String, PageRow)>,
    /// Identities by (visitor, site, kind, value): the first sighting.
    pub identities: Vec<(String, IdentityRow)>,
}

impl Merged {
    /// Merges the sites' rows, given in the order they were stored.
    pub fn of(parts: Vec<(String, Derived)>) -> Merged {
        let mut m = Merged::default();
        for (site, d) in parts {
            m.touches.extend(d.touches.into_iter().map(|t| (site.clone(), t)));
            m.pages.extend(d.pages.into_iter().map(|p| (site.clone(), p)));
            m.identities.extend(d.identities.into_iter().map(|i| (site.clone(), i)));
        }
        m.touches = merge_by_key(
            m.touches,
            |(_, t)| &t.visitor,
            |(a, x), (b, y)| {
                (&x.visitor, a, &x.param, &x.value, x.click_at).cmp(&(&y.visitor, b, &y.param, &y.value, y.click_at))
            },
            |(_, kept), (_, later)| {
                kept.first = kept.first.min(later.first);
                kept.last = kept.last.max(later.last);
            },
        );
        m.pages = merge_by_key(
            m.pages,
            |(_, p)| &p.value,
            |(a, x), (b, y)| (&x.value, a, &x.path).cmp(&(&y.value, b, &y.path)),
            |(_, kept), (_, later)| {
                kept.views += later.views;
                kept.last_at = kept.last_at.max(later.last_at);
            },
        );
        m.identities = merge_by_key(
            m.identities,
            |(_, i)| &i.visitor,
            |(a, x), (b, y)| (&x.visitor, a, x.kind, &x.value).cmp(&(&y.visitor, b, y.kind, &y.value)),
            |_, _| {},
        );
        m
    }
}

/// The first eight bytes of a text (zero-padded) as a number that orders as the text does.
fn prefix(s: &str) -> u64 {
    let mut b = [0u8; 8];
    let n = s.len().min(8);
    b[..n].copy_from_slice(&s.as_bytes()[..n]);
    u64::from_be_bytes(b)
}

/// `rows` sorted by key, each key once: a later row with the key of an earlier one is merged
/// into it (`merge(earlier, later)`), in the order the rows came. `lead` is the key's leading
/// text, whose first bytes decide most comparisons: the rows' random IDs, so sorting compares
/// numbers and only rarely the whole key (`cmp`, which must order by `lead` first), and moves
/// indices, not rows.
fn merge_by_key<R>(
    rows: Vec<R>,
    lead: impl Fn(&R) -> &str,
    cmp: impl Fn(&R, &R) -> std::cmp::Ordering,
    mut merge: impl FnMut(&mut R, R),
) -> Vec<R> {
    let mut order: Vec<(u64, usize)> = rows.iter().map(|r| prefix(lead(r))).zip(0..).collect();
    order.sort_unstable_by(|(p, i), (q, j)| p.cmp(q).then_with(|| cmp(&rows[*i], &rows[*j])).then(i.cmp(j)));
    let mut slots: Vec<Option<R>> = rows.into_iter().map(Some).collect();
    let mut out: Vec<R> = Vec::with_capacity(order.len());
    for (_, i) in order {
        let Some(row) = slots[i].take() else { continue };
        match out.last_mut() {
            Some(last) if cmp(last, &row).is_eq() => merge(last, row),
            _ => out.push(row),
        }
    }
    out
}

/// Finds the row already made for a key, in the order rows were made: by comparing keys while a
/// batch has few distinct ones (the usual: two clicks, a handful of pages), where hashing every
/// lookup cost more than the comparisons; by a hash map once it has more, so that a hostile
/// batch stays linear in its size.
struct Rows<K> {
    keys: Vec<K>,
    map: HashMap<K, usize>,
}

impl<K> Default for Rows<K> {
    fn default() -> Self {
        Rows {
            keys: Vec::new(),
            map: HashMap::new(),
        }
    }
}

impl<K: Copy + Eq + std::hash::Hash> Rows<K> {
    /// Distinct keys compared before the map takes over.
    const SCAN: usize = 16;

    /// The index of `key`'s row; `None` when it has none yet, after noting that the next row
    /// made is `key`'s.
    fn find_or_add(&mut self, key: K) -> Option<usize> {
        if self.keys.len() < Self::SCAN {
            if let Some(i) = self.keys.iter().position(|k| *k == key) {
                return Some(i);
            }
            self.keys.push(key);
            if self.keys.len() == Self::SCAN {
                self.map = self.keys.iter().enumerate().map(|(i, k)| (*k, i)).collect();
            }
            return None;
        }
        if let Some(&i) = self.map.get(&key) {
            return Some(i);
        }
        self.map.insert(key, self.map.len());
        None
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
    /// True when it was seen on another visitor linked by identity, not the converting one.
    pub cross_device: bool,
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
    /// Page views carrying it, per path.
    pub pages: Vec<PageSeen>,
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

/// The durable store. `append` is called by the single writer thread only; reads may run on any
/// thread at the same time.
pub trait Store: Send + Sync {
    /// Stores a group of batches in one durable transaction (on disk when it returns `Ok`) and
    /// says, per event and in order (batch after batch), whether it was new or a duplicate (by event ID, or by
    /// site and order ID for conversions). On error nothing of the group is stored.
    fn append(&self, batches: &[&Batch]) -> Result<Vec<Status>, StoreError>;

    /// The site's conversions at or after `since` (ms), oldest first, at most `limit`.
    fn conversions(&self, site: &str, since: u64, limit: usize) -> Result<Vec<StoredConversion>, StoreError>;

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

    /// The journey's derived rows for two sites, and a third with identities only.
    fn parts() -> Vec<(String, Derived)> {
        let events = journey();
        let all = Derived::of(&events);
        assert!(!all.touches.is_empty() && !all.pages.is_empty() && !all.identities.is_empty());
        let idents = Derived {
            identities: all.identities.clone(),
            ..Derived::default()
        };
        vec![
            ("demo".into(), Derived::of(&events[..2])),
            ("shop-é".into(), all.clone()),
            ("demo".into(), all),
            ("demo".into(), Derived::default()),
            ("x".into(), idents),
        ]
    }

    /// What the pending log keeps reads back as it was, and a cut or damaged log is an error,
    /// never a panic or a wrong row.
    #[test]
    fn derived_rows_read_back_from_the_pending_log() {
        let parts = parts();
        let mut bytes = Vec::new();
        for (site, d) in &parts {
            d.encode(site, &mut bytes);
        }
        assert_eq!(Derived::decode(&bytes).unwrap(), parts);
        assert_eq!(Derived::decode(&[]).unwrap(), vec![]);
        // Cut anywhere but at the end of a site's rows: an error.
        let mut ends = Vec::new();
        let mut one = Vec::new();
        for (site, d) in &parts {
            d.encode(site, &mut one);
            ends.push(one.len());
        }
        for cut in 0..bytes.len() {
            let r = Derived::decode(&bytes[..cut]);
            assert_eq!(r.is_ok(), cut == 0 || ends.contains(&cut), "cut at {cut}");
        }
        // A count past the end, an unknown identity kind, text that is not UTF-8.
        let mut huge = Vec::new();
        Derived::default().encode("s", &mut huge);
        huge[5..13].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Derived::decode(&huge).is_err());
        let mut kind = Vec::new();
        parts[4].1.encode("x", &mut kind);
        kind[1 + 4 + 24] = 7;
        assert!(Derived::decode(&kind).is_err());
        let mut text = Vec::new();
        parts[1].1.encode("s", &mut text);
        text[4] = 0xff;
        assert!(Derived::decode(&text).is_err());
    }

    /// Merging many batches' rows leaves what writing them one after another does (the store's
    /// upserts, modelled here by key): the first network and path, the earliest and latest
    /// sightings, views added up, the first sighting of an identity; and the rows in key order.
    #[test]
    fn merged_rows_are_what_writing_batch_after_batch_leaves() {
        use std::collections::BTreeMap;
        let mut parts = parts();
        // The same touch and page again, later and earlier, on another path.
        let mut later = parts[2].1.clone();
        for t in &mut later.touches {
            t.first += 10;
            t.last += 5_000;
            t.network = "later".into();
        }
        for p in &mut later.pages {
            p.views = 2;
            p.last_at += 7;
        }
        for i in &mut later.identities {
            i.at += 1;
        }
        let mut earlier = later.clone();
        for t in &mut earlier.touches {
            t.first -= 1_000_000;
            t.last -= 1_000_000;
        }
        parts.push(("demo".into(), later));
        parts.push(("demo".into(), earlier));
        let mut touches = BTreeMap::new();
        let mut pages = BTreeMap::new();
        let mut identities = BTreeMap::new();
        for (site, d) in &parts {
            for t in &d.touches {
                let key = (
                    t.visitor.clone(),
                    site.clone(),
                    t.param.clone(),
                    t.value.clone(),
                    t.click_at,
                );
                let row = touches.entry(key).or_insert_with(|| (site.clone(), t.clone()));
                row.1.first = row.1.first.min(t.first);
                row.1.last = row.1.last.max(t.last);
            }
            for p in &d.pages {
                let key = (p.value.clone(), site.clone(), p.path.clone());
                match pages.get_mut(&key) {
                    Some((_, row)) => {
                        let row: &mut PageRow = row;
                        row.views += p.views;
                        row.last_at = row.last_at.max(p.last_at);
                    }
                    None => {
                        pages.insert(key, (site.clone(), p.clone()));
                    }
                }
            }
            for i in &d.identities {
                let key = (i.visitor.clone(), site.clone(), i.kind, i.value.clone());
                identities.entry(key).or_insert_with(|| (site.clone(), i.clone()));
            }
        }
        let merged = Merged::of(parts);
        assert_eq!(merged.touches, touches.into_values().collect::<Vec<_>>());
        assert_eq!(merged.pages, pages.into_values().collect::<Vec<_>>());
        assert_eq!(merged.identities, identities.into_values().collect::<Vec<_>>());
        assert!(merged
            .touches
            .iter()
            .any(|(_, t)| t.network != "later" && t.last > t.first + 5_000));
    }

    /// Keys that share their first eight bytes (Google's click IDs all start `Cj0KCQjw`), are
    /// shorter than eight, or differ only after a NUL still sort in byte order, and equal keys
    /// merge in the order they came.
    #[test]
    fn rows_merge_by_key_past_a_shared_prefix() {
        let keys = [
            "Cj0KCQjwB",
            "Cj0KCQjwA",
            "Cj0K",
            "",
            "Cj0KCQjw",
            "Cj0KCQjwA",
            "a\0b",
            "a",
            "Cj0K",
            "a\0b",
        ];
        let rows: Vec<(String, usize)> = keys.iter().enumerate().map(|(i, k)| (k.to_string(), i)).collect();
        let merged = merge_by_key(
            rows,
            |(k, _)| k,
            |(a, _), (b, _)| a.cmp(b),
            |(_, kept), (_, later)| *kept = *kept * 100 + later,
        );
        let mut want: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
        for (i, k) in keys.iter().enumerate() {
            want.entry(k.to_string()).and_modify(|v| *v = *v * 100 + i).or_insert(i);
        }
        assert_eq!(merged, want.into_iter().collect::<Vec<_>>());
    }

    /// Comparing and hashing find the same rows, on both sides of the switch from one to the
    /// other, in the order the keys first came.
    #[test]
    fn rows_are_found_by_scan_and_by_map_alike() {
        let keys: Vec<u32> = (0..200).map(|i| (i * 7919) % 41).collect();
        let mut rows = Rows::default();
        let mut seen: Vec<u32> = Vec::new();
        for k in keys {
            let want = seen.iter().position(|s| *s == k);
            assert_eq!(rows.find_or_add(k), want, "key {k} after {seen:?}");
            if want.is_none() {
                seen.push(k);
            }
        }
        assert_eq!(seen.len(), 41);
    }
}
