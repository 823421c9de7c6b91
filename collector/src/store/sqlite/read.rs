//! The SQLite store's read path: the read API's queries, over a small pool of read-only
//! connections that see the derived file attached.

use rusqlite::{params, Connection, OptionalExtension};

use super::schema::open;
use super::{derive, err, int, SqliteStore};
use crate::store::{ClickSeen, Counts, Landing, PageSeen, StoreError, StoredConversion, Touch, CLICKS_REF};
use crate::traffic::{Exclude, Traffic};

pub(super) const CONVERSION_COLUMNS: &str =
    "c.site, c.event_id, c.order_id, c.at, c.visitor, c.amount, c.currency, c.discount, \
     c.promo_code, c.customer_status, c.items, c.custom";

/// The site's conversions since a time (`conversions_at` index), without the excluded traffic
/// classes (`?4`, a bit per class; a code above 2, unknown here, counts as automation, as
/// `Traffic::from_code` reads it), with their class last.
pub(super) fn conversions_sql() -> String {
    format!(
        "SELECT {CONVERSION_COLUMNS}, c.traffic FROM conversions c WHERE c.site = ?1 AND c.at >= ?2 \
         AND ((?4 >> min(c.traffic, 2)) & 1) = 0 ORDER BY c.at, c.order_id LIMIT ?3"
    )
}

/// A visitor's touches and those of visitors sharing an identity with it (identities by visitor
/// and by value, then `touches` by its primary key, site and visitor). CROSS JOIN fixes the join
/// order (SQLite does not reorder it), so the site's identities are never scanned; the unary `+`
/// keeps the time range from making the report's `touches_at` index (site, click_at) look
/// better than the visitor's own rows: without it SQLite read every touch of the site in the
/// window for each conversion (7.5 ms a conversion instead of a few µs on a benchmark database).
pub(super) const TOUCHES_SQL: &str =
    "SELECT t.param, t.network, t.value, t.click_at, t.path, t.visitor <> ?2, t.landing, t.traffic FROM ( \
                   SELECT ?2 AS visitor UNION \
                   SELECT i2.visitor FROM identities i1 CROSS JOIN identities i2 \
                     ON i2.site = i1.site AND i2.kind = i1.kind AND i2.value = i1.value \
                   WHERE i1.site = ?1 AND i1.visitor = ?2) AS v \
                 CROSS JOIN touches t ON t.site = ?1 AND t.visitor = v.visitor \
                   AND +t.click_at BETWEEN ?3 AND ?4 \
                 ORDER BY t.click_at";

/// One click ID's landings (`touches_value` index), each row with the least traffic class of
/// all its touches (the subquery runs once, and is not bounded by the landings' limit).
pub(super) const CLICK_SQL: &str = "SELECT site, param, network, click_at, path, min(first_seen), max(last_seen), \
                 (SELECT min(traffic) FROM touches WHERE value = ?1 AND (?2 IS NULL OR site = ?2)) FROM touches \
                 WHERE value = ?1 AND (?2 IS NULL OR site = ?2) GROUP BY site, param, network, click_at, path \
                 ORDER BY click_at LIMIT 100";

/// One click ID's page views, a row per site (`click_pages` primary key starts with the value).
pub(super) const PAGES_SQL: &str = "SELECT site, pages FROM click_pages WHERE value = ?1 AND (?2 IS NULL OR site = ?2)";

/// The most page paths the click API answers with: the most recently viewed.
pub(super) const PAGES_SHOWN: usize = 100;

/// Conversions of visitors who carried a click ID or share an identity with one who did.
pub(super) fn near_click_sql() -> String {
    format!(
        "WITH carriers AS ( \
                   SELECT site, visitor, min(click_at) AS since FROM touches \
                   WHERE value = ?1 AND (?2 IS NULL OR site = ?2) GROUP BY site, visitor), \
                 linked AS ( \
                   SELECT site, visitor, since FROM carriers UNION \
                   SELECT i2.site, i2.visitor, k.since FROM carriers k \
                     CROSS JOIN identities i1 ON i1.site = k.site AND i1.visitor = k.visitor \
                     CROSS JOIN identities i2 ON i2.site = i1.site AND i2.kind = i1.kind AND i2.value = i1.value) \
                 SELECT DISTINCT {CONVERSION_COLUMNS}, c.traffic FROM linked l \
                   CROSS JOIN conversions c ON c.site = l.site AND c.visitor = l.visitor AND c.at >= l.since \
                 ORDER BY c.at LIMIT ?3"
    )
}

/// A log entry whose click list is a reference: (before, offset, length, after).
pub(super) fn split_clicks_ref(entry: &[u8]) -> Option<(&[u8], i64, i64, &[u8])> {
    let a = entry.iter().position(|&b| b == CLICKS_REF)?;
    let n = entry[a + 1..].iter().position(|&b| b == CLICKS_REF)? + a + 1;
    let r = std::str::from_utf8(&entry[a + 1..n]).ok()?;
    let (at, len) = r.split_once(',')?;
    Some((&entry[..a], at.parse().ok()?, len.parse().ok()?, &entry[n + 1..]))
}

/// A touch as [`TOUCHES_SQL`] selects it (and the report's clicks).
pub(super) fn touch_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Touch> {
    Ok(Touch {
        param: r.get(0)?,
        network: r.get(1)?,
        value: r.get(2)?,
        at: r.get::<_, i64>(3)? as u64,
        path: r.get(4)?,
        cross_device: r.get(5)?,
        landing: r.get(6)?,
        traffic: Traffic::from_code(r.get(7)?),
    })
}

impl SqliteStore {
    /// A read of the derived tables: waits until what was acknowledged before it is derived.
    pub(super) fn read_derived<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        self.progress.wait_for_reads();
        self.read(f)
    }

    pub(super) fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = open(&self.path).map_err(err)?;
                // The derived tables' names are not in the main file: unqualified, they name
                // the attached file's.
                c.execute("ATTACH DATABASE ?1 AS derived", [&self.derived])
                    .map_err(err)?;
                c.execute_batch("PRAGMA query_only=1;").map_err(err)?;
                c
            }
        };
        let out = f(&conn).map_err(err);
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < 8 {
            pool.push(conn);
        }
        out
    }

    pub(super) fn conversions_since(
        &self,
        site: &str,
        since: u64,
        limit: usize,
        exclude: Exclude,
    ) -> Result<Vec<StoredConversion>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare_cached(&conversions_sql())?;
            let rows = st.query_map(params![site, int(since), limit as i64, exclude.mask()], classified_row)?;
            rows.collect()
        })
    }

    pub(super) fn touches_of(&self, site: &str, visitor: &str, from: u64, to: u64) -> Result<Vec<Touch>, StoreError> {
        self.read_derived(|c| {
            let mut st = c.prepare_cached(TOUCHES_SQL)?;
            let rows = st.query_map(params![site, visitor, int(from), int(to)], touch_row)?;
            rows.collect()
        })
    }

    pub(super) fn click_seen(&self, value: &str, site: Option<&str>) -> Result<Option<ClickSeen>, StoreError> {
        self.read_derived(|c| {
            let mut st = c.prepare_cached(CLICK_SQL)?;
            let mut first_seen = u64::MAX;
            let mut last_seen = 0;
            let mut landings = Vec::new();
            let mut traffic = None;
            let mut rows = st.query(params![value, site])?;
            while let Some(r) = rows.next()? {
                first_seen = first_seen.min(r.get::<_, i64>(5)? as u64);
                last_seen = last_seen.max(r.get::<_, i64>(6)? as u64);
                traffic = Some(Traffic::from_code(r.get(7)?));
                landings.push(Landing {
                    site: r.get(0)?,
                    param: r.get(1)?,
                    network: r.get(2)?,
                    at: r.get::<_, i64>(3)? as u64,
                    path: r.get(4)?,
                });
            }
            let mut st = c.prepare_cached(PAGES_SQL)?;
            let mut rows = st.query(params![value, site])?;
            let mut pages = Vec::new();
            while let Some(r) = rows.next()? {
                let site: String = r.get(0)?;
                let bytes: Vec<u8> = r.get(1)?;
                let each = derive::decode_pages(&bytes).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Blob, Box::new(e))
                })?;
                pages.extend(each.into_iter().map(|p| PageSeen {
                    site: site.clone(),
                    path: p.path.to_string(),
                    views: p.views,
                    last_at: p.last_at,
                }));
            }
            pages.sort_by(|x, y| {
                y.last_at
                    .cmp(&x.last_at)
                    .then_with(|| (&x.site, &x.path).cmp(&(&y.site, &y.path)))
            });
            pages.truncate(PAGES_SHOWN);
            Ok(ClickSeen::of(landings, first_seen, last_seen, traffic, pages))
        })
    }

    pub(super) fn near_click(
        &self,
        value: &str,
        site: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredConversion>, StoreError> {
        self.read_derived(|c| {
            let mut st = c.prepare_cached(&near_click_sql())?;
            let rows = st.query_map(params![value, site, limit as i64], classified_row)?;
            rows.collect()
        })
    }

    pub(super) fn event_json(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.read(|c| {
            let found: Option<(i64, Vec<u8>)> = c
                .query_row(
                    "SELECT e.body_id, substr(b.json, e.body_at + 1, e.body_len) FROM events e \
                     JOIN bodies b ON b.id = e.body_id WHERE e.id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((body_id, entry)) = found else { return Ok(None) };
            let text = match split_clicks_ref(&entry) {
                None => entry,
                Some((prefix, at, len, suffix)) => {
                    let clicks: Vec<u8> = c.query_row(
                        "SELECT substr(json, ?2 + 1, ?3) FROM bodies WHERE id = ?1",
                        params![body_id, at, len],
                        |r| r.get(0),
                    )?;
                    [prefix, &clicks, suffix].concat()
                }
            };
            String::from_utf8(text)
                .map(Some)
                .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e)))
        })
    }

    pub(super) fn row_counts(&self) -> Result<Counts, StoreError> {
        self.read(|c| {
            let events: i64 = c.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?;
            let conversions: i64 = c.query_row("SELECT count(*) FROM conversions", [], |r| r.get(0))?;
            Ok(Counts {
                events: events as u64,
                conversions: conversions as u64,
            })
        })
    }
}

pub(super) fn conversion_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredConversion> {
    Ok(StoredConversion {
        site: r.get(0)?,
        event_id: r.get(1)?,
        order_id: r.get(2)?,
        at: r.get::<_, i64>(3)? as u64,
        visitor: r.get(4)?,
        amount: r.get(5)?,
        currency: r.get(6)?,
        discount: r.get(7)?,
        promo_code: r.get(8)?,
        customer_status: r.get(9)?,
        items: r.get(10)?,
        custom: r.get(11)?,
        traffic: Traffic::Human,
    })
}

/// [`conversion_row`] followed by the conversion's traffic class.
pub(super) fn classified_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredConversion> {
    Ok(StoredConversion {
        traffic: Traffic::from_code(r.get(12)?),
        ..conversion_row(r)?
    })
}
