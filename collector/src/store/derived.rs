//! The rows a batch of events derives (touches, page counts, identities), the byte format the
//! SQLite store keeps them in until they are applied, and their merge by key: what both stores
//! write into their derived tables, by the same rules.

use std::collections::HashMap;

use utt::core::wire::{Event, Kind};

use super::{url_path, StoreError};
use crate::traffic::Traffic;

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
    /// The landing's query string, what names the click's partner: the
    /// landing page view's, else the click's UTM context (from the first event carrying it).
    pub landing: String,
    /// The earliest event carrying it (ms).
    pub first: u64,
    /// The latest event carrying it (ms).
    pub last: u64,
    /// The class of the traffic that carried it: human if any event carrying it was human,
    /// else bot if any was, else automation (a merge independent of the order).
    pub traffic: Traffic,
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
    /// Derives the rows of some events of one site, all of one traffic class, merging repeated
    /// keys.
    pub fn of<'a>(events: impl IntoIterator<Item = &'a Event>, traffic: Traffic) -> Derived {
        let mut d = Derived::default();
        let mut touch_at: Rows<(&str, &str, &str, u64)> = Rows::default();
        let mut page_at: Rows<(&str, &str)> = Rows::default();
        // Per touch: whether its landing is the query of an event's URL, and else the UTM context
        // of its first sighting, written out once at the end (most touches land on a URL).
        let mut from_url: Vec<bool> = Vec::new();
        let mut utm: Vec<&'a [(String, String)]> = Vec::new();
        for e in events {
            if let Some(visitor) = e.visitor.as_deref() {
                for c in &e.clicks {
                    let key = (visitor, c.param.as_str(), c.value.as_str(), c.at);
                    let i = match touch_at.find_or_add(key) {
                        Some(i) => {
                            let t = &mut d.touches[i];
                            t.first = t.first.min(e.at);
                            t.last = t.last.max(e.at);
                            i
                        }
                        None => {
                            d.touches.push(TouchRow {
                                visitor: visitor.to_string(),
                                param: c.param.clone(),
                                value: c.value.clone(),
                                click_at: c.at,
                                network: c.network.clone(),
                                path: c.path.clone(),
                                landing: String::new(),
                                first: e.at,
                                last: e.at,
                                traffic,
                            });
                            from_url.push(false);
                            utm.push(&c.utm);
                            d.touches.len() - 1
                        }
                    };
                    // A touch's landing: the query of the first event whose URL carries its
                    // click (the landing page view), else the click's own UTM context, so a
                    // UTM source is known however the click arrived.
                    if !from_url[i] {
                        if let Some(q) = landing_query(&e.url, &c.param, &c.value) {
                            d.touches[i].landing = q;
                            from_url[i] = true;
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
        for ((t, from_url), utm) in d.touches.iter_mut().zip(from_url).zip(utm) {
            if !from_url {
                t.landing = utm_query(utm);
            }
        }
        d
    }
}

/// The query string (without `?` and fragment) of `url` when it carries `param` (any case)
/// with `value`: the landing page view of that click.
fn landing_query(url: &str, param: &str, value: &str) -> Option<String> {
    use utt::core::url::{decode_component, query_pairs};
    // Most events are later pages of the journey, without a query string to look through.
    if !url.contains('?') {
        return None;
    }
    let found = query_pairs(url).into_iter().any(|(k, v)| {
        decode_component(k).is_ok_and(|k| k.eq_ignore_ascii_case(param))
            && decode_component(v).is_ok_and(|v| v == value)
    });
    let no_fragment = url.split('#').next().unwrap_or("");
    found.then(|| {
        no_fragment
            .split_once('?')
            .map(|(_, q)| q.to_string())
            .unwrap_or_default()
    })
}

/// A click's UTM context written as a query string (`utm_source=...&utm_medium=...`).
/// A click's UTM context as a query string (`utm_source=...&utm_medium=...`), its landing when no
/// event's URL carried it.
pub fn utm_query(utm: &[(String, String)]) -> String {
    let enc = |v: &str| percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string();
    utm.iter()
        .map(|(k, v)| format!("utm_{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
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
        // A length no site has: this section's touches carry their landing and traffic class
        // (a section marked LANDING_MARK, pending from an older collector, has no class; one
        // without a mark has neither).
        out.extend_from_slice(&TRAFFIC_MARK);
        s(out, site);
        for len in [self.touches.len(), self.pages.len(), self.identities.len()] {
            n(out, len as u64);
        }
        for t in &self.touches {
            for v in [&t.visitor, &t.param, &t.value, &t.network, &t.path, &t.landing] {
                s(out, v);
            }
            for v in [t.click_at, t.first, t.last] {
                n(out, v);
            }
            out.push(t.traffic.code());
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
            let classes = r.0.starts_with(&TRAFFIC_MARK);
            let landings = classes || r.0.starts_with(&LANDING_MARK);
            if landings {
                r.take(LANDING_MARK.len())?;
            }
            let site = r.s()?;
            let (touches, pages, identities) = (r.count()?, r.count()?, r.count()?);
            let mut d = Derived::default();
            for _ in 0..touches {
                let (visitor, param, value, network, path) = (r.s()?, r.s()?, r.s()?, r.s()?, r.s()?);
                let landing = if landings { r.s()? } else { String::new() };
                let (click_at, first, last) = (r.n()?, r.n()?, r.n()?);
                let traffic = if classes {
                    match r.take(1)?[0] {
                        c @ 0..=2 => Traffic::from_code(i64::from(c)),
                        _ => return Err(StoreError("pending rows: unknown traffic class".into())),
                    }
                } else {
                    Traffic::Human
                };
                d.touches.push(TouchRow {
                    visitor,
                    param,
                    value,
                    click_at,
                    network,
                    path,
                    landing,
                    first,
                    last,
                    traffic,
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

/// Begins a pending-log section whose touches carry their landing: a site length of `u32::MAX`,
/// which no site has (written by collectors from before bot filtering).
const LANDING_MARK: [u8; 4] = [0xff; 4];

/// Begins a pending-log section whose touches carry their landing and traffic class.
const TRAFFIC_MARK: [u8; 4] = [0xfe, 0xff, 0xff, 0xff];

/// Derives a stream of stored events (a rebuild's), in chunks: consecutive events of one site
/// derive together, and every `chunk` events the sites' rows are handed back to be written.
pub struct Chunks {
    chunk: usize,
    site: String,
    traffic: Traffic,
    events: Vec<Event>,
    parts: Vec<(String, Derived)>,
    in_chunk: usize,
}

impl Chunks {
    /// Chunks of `chunk` events.
    pub fn new(chunk: usize) -> Chunks {
        Chunks {
            chunk,
            site: String::new(),
            traffic: Traffic::Human,
            events: Vec::new(),
            parts: Vec::new(),
            in_chunk: 0,
        }
    }

    /// Adds an event of a site, of a traffic class; the rows of a full chunk, to write now.
    pub fn push(&mut self, site: &str, traffic: Traffic, event: Event) -> Option<Vec<(String, Derived)>> {
        if site != self.site || traffic != self.traffic {
            if !self.events.is_empty() {
                let events = std::mem::take(&mut self.events);
                self.parts.push((self.site.clone(), Derived::of(&events, self.traffic)));
            }
            self.site = site.to_string();
            self.traffic = traffic;
        }
        self.events.push(event);
        self.in_chunk += 1;
        if self.in_chunk < self.chunk {
            return None;
        }
        self.in_chunk = 0;
        Some(self.finish())
    }

    /// The rows of what is left.
    pub fn finish(&mut self) -> Vec<(String, Derived)> {
        if !self.events.is_empty() {
            let events = std::mem::take(&mut self.events);
            self.parts.push((self.site.clone(), Derived::of(&events, self.traffic)));
        }
        std::mem::take(&mut self.parts)
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
    /// Touches by (visitor, site, param, value, click time): the first row's network, path and
    /// (if not empty) landing, the earliest first and the latest last sighting, and the least
    /// traffic class (human if any sighting was human).
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
                // Human if any sighting was: a merge that does not depend on the order, so a
                // rebuild (which may read the events in another order) derives the same class.
                kept.traffic = kept.traffic.min(later.traffic);
                if kept.landing.is_empty() {
                    kept.landing = later.landing;
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::journey;

    /// The journey's derived rows for two sites, and a third with identities only.
    fn parts() -> Vec<(String, Derived)> {
        let events = journey();
        let all = Derived::of(&events, Traffic::Human);
        let bots = Derived::of(&events[1..], Traffic::Automation);
        assert!(bots.touches.iter().all(|t| t.traffic == Traffic::Automation));
        assert!(!all.touches.is_empty() && !all.pages.is_empty() && !all.identities.is_empty());
        let idents = Derived {
            identities: all.identities.clone(),
            ..Derived::default()
        };
        vec![
            ("demo".into(), Derived::of(&events[..2], Traffic::Human)),
            ("shop-é".into(), all.clone()),
            ("bots".into(), bots),
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
        parts[5].1.encode("x", &mut kind);
        kind[1 + 4 + 24] = 7;
        assert!(Derived::decode(&kind).is_err());
        let mut text = Vec::new();
        parts[1].1.encode("s", &mut text);
        text[4] = 0xff;
        assert!(Derived::decode(&text).is_err());
    }

    /// A pending-log section written by a collector from before bot filtering (its mark says
    /// landings, no class) still reads: its touches are human. An unknown class byte is refused.
    #[test]
    fn pending_rows_from_before_bot_filtering_read_as_human() {
        let mut old = LANDING_MARK.to_vec();
        put_text(&mut old, "demo");
        for n in [1, 0, 0] {
            put_u64(&mut old, n);
        }
        for v in [
            "visitor",
            "irclickid",
            "Xy12abc",
            "impact",
            "/landing",
            "utm_source=partner",
        ] {
            put_text(&mut old, v);
        }
        for n in [10, 11, 12] {
            put_u64(&mut old, n);
        }
        let read = Derived::decode(&old).unwrap();
        let t = &read[0].1.touches[0];
        assert_eq!(
            (t.value.as_str(), t.landing.as_str(), t.last, t.traffic),
            ("Xy12abc", "utm_source=partner", 12, Traffic::Human)
        );
        // The same touch in today's format carries its class; a class byte past automation is refused.
        let mut new = Vec::new();
        Derived {
            touches: vec![TouchRow {
                traffic: Traffic::Automation,
                ..t.clone()
            }],
            ..Derived::default()
        }
        .encode("demo", &mut new);
        assert_eq!(
            Derived::decode(&new).unwrap()[0].1.touches[0].traffic,
            Traffic::Automation
        );
        *new.last_mut().unwrap() = 3;
        assert!(Derived::decode(&new).is_err());
    }

    /// Merging many batches' rows leaves what writing them one after another does (the store's
    /// upserts, modelled here by key): the first network and path, the earliest and latest
    /// sightings, views added up, the first sighting of an identity; and the rows in key order.
    #[test]
    fn merged_rows_are_what_writing_batch_after_batch_leaves() {
        use std::collections::BTreeMap;
        let mut parts = parts();
        // The same touch and page again, later and earlier, on another path.
        let mut later = parts[3].1.clone();
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
                row.1.traffic = row.1.traffic.min(t.traffic);
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
