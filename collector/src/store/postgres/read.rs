//! The PostgreSQL store's read path: the read API's queries, the same answers as the SQLite
//! store's for the same events. Every query of one site names it, so on a database distributed
//! by site it runs on that site's shard; the click API's queries across sites use the click
//! ID's own indexes.

use tokio_postgres::Row;

use super::write::int;
use super::{pg, Client};
use crate::store::{ClickSeen, Counts, Landing, PageSeen, StoreError, StoredConversion, Touch};
use crate::traffic::{Exclude, Traffic};

pub(super) const CONVERSION_COLUMNS: &str =
    "c.site, c.event_id, c.order_id, c.at, c.visitor, c.amount, c.currency, c.discount, \
     c.promo_code, c.customer_status, c.items, c.custom";

/// The most page paths the click API answers with: the most recently viewed.
const PAGES_SHOWN: i64 = 100;

pub(super) fn conversion_row(r: &Row) -> StoredConversion {
    StoredConversion {
        site: r.get(0),
        event_id: r.get(1),
        order_id: r.get(2),
        at: r.get::<_, i64>(3) as u64,
        visitor: r.get(4),
        amount: r.get(5),
        currency: r.get(6),
        discount: r.get(7),
        promo_code: r.get(8),
        customer_status: r.get(9),
        items: r.get(10),
        custom: r.get(11),
        traffic: Traffic::Human,
    }
}

/// [`conversion_row`] followed by the conversion's traffic class.
pub(super) fn classified_row(r: &Row) -> StoredConversion {
    StoredConversion {
        traffic: Traffic::from_code(i64::from(r.get::<_, i32>(12))),
        ..conversion_row(r)
    }
}

pub async fn conversions(
    c: &Client,
    site: &str,
    since: u64,
    limit: usize,
    exclude: Exclude,
) -> Result<Vec<StoredConversion>, StoreError> {
    let sql = format!(
        "SELECT {CONVERSION_COLUMNS}, c.traffic FROM conversions c WHERE c.site = $1 AND c.at >= $2 \
         AND (($4::integer >> least(c.traffic, 2)) & 1) = 0 ORDER BY c.at, c.order_id LIMIT $3"
    );
    let st = c.prepare_cached(&sql).await.map_err(pg)?;
    let mask = exclude.mask() as i32;
    let rows = c
        .query(&st, &[&site, &int(since), &(limit as i64), &mask])
        .await
        .map_err(pg)?;
    Ok(rows.iter().map(classified_row).collect())
}

pub async fn touches(c: &Client, site: &str, visitor: &str, from: u64, to: u64) -> Result<Vec<Touch>, StoreError> {
    let st = c
        .prepare_cached(
            "SELECT param, network, value, click_at, path, visitor <> $2, landing, traffic FROM touches \
             WHERE site = $1 AND click_at BETWEEN $3 AND $4 AND visitor IN ( \
               SELECT $2::text UNION \
               SELECT i2.visitor FROM identities i1 JOIN identities i2 \
                 ON i2.site = i1.site AND i2.kind = i1.kind AND i2.value = i1.value \
               WHERE i1.site = $1 AND i1.visitor = $2) \
             ORDER BY click_at, visitor, param, value",
        )
        .await
        .map_err(pg)?;
    let rows = c
        .query(&st, &[&site, &visitor, &int(from), &int(to)])
        .await
        .map_err(pg)?;
    Ok(rows.iter().map(touch_row).collect())
}

/// A touch as [`touches`] selects it (and the report's clicks).
pub(super) fn touch_row(r: &Row) -> Touch {
    Touch {
        param: r.get(0),
        network: r.get(1),
        value: r.get(2),
        at: r.get::<_, i64>(3) as u64,
        path: r.get(4),
        cross_device: r.get(5),
        landing: r.get(6),
        traffic: Traffic::from_code(i64::from(r.get::<_, i32>(7))),
    }
}

pub async fn click(c: &Client, value: &str, site: Option<&str>) -> Result<Option<ClickSeen>, StoreError> {
    let st = c
        .prepare_cached(
            "SELECT site, param, network, click_at, path, min(first_seen), max(last_seen), \
             (SELECT min(traffic) FROM touches WHERE value = $1 AND ($2::text IS NULL OR site = $2)) FROM touches \
             WHERE value = $1 AND ($2::text IS NULL OR site = $2) GROUP BY site, param, network, click_at, path \
             ORDER BY click_at, site, param, network, path LIMIT 100",
        )
        .await
        .map_err(pg)?;
    let rows = c.query(&st, &[&value, &site]).await.map_err(pg)?;
    let mut first_seen = u64::MAX;
    let mut last_seen = 0;
    let mut landings = Vec::new();
    let mut traffic = None;
    for r in &rows {
        first_seen = first_seen.min(r.get::<_, i64>(5) as u64);
        last_seen = last_seen.max(r.get::<_, i64>(6) as u64);
        traffic = Some(Traffic::from_code(i64::from(r.get::<_, i32>(7))));
        landings.push(Landing {
            site: r.get(0),
            param: r.get(1),
            network: r.get(2),
            at: r.get::<_, i64>(3) as u64,
            path: r.get(4),
        });
    }
    let st = c
        .prepare_cached(
            "SELECT site, path, views, last_at FROM click_pages WHERE value = $1 AND ($2::text IS NULL OR site = $2) \
             ORDER BY last_at DESC, site, path LIMIT $3",
        )
        .await
        .map_err(pg)?;
    let pages: Vec<PageSeen> = c
        .query(&st, &[&value, &site, &PAGES_SHOWN])
        .await
        .map_err(pg)?
        .iter()
        .map(|r| PageSeen {
            site: r.get(0),
            path: r.get(1),
            views: r.get::<_, i64>(2) as u64,
            last_at: r.get::<_, i64>(3) as u64,
        })
        .collect();
    Ok(ClickSeen::of(landings, first_seen, last_seen, traffic, pages))
}

pub async fn near_click(
    c: &Client,
    value: &str,
    site: Option<&str>,
    limit: usize,
) -> Result<Vec<StoredConversion>, StoreError> {
    let sql = format!(
        "WITH carriers AS ( \
           SELECT site, visitor, min(click_at) AS since FROM touches \
           WHERE value = $1 AND ($2::text IS NULL OR site = $2) GROUP BY site, visitor), \
         linked AS ( \
           SELECT site, visitor, since FROM carriers UNION \
           SELECT i2.site, i2.visitor, k.since FROM carriers k \
             JOIN identities i1 ON i1.site = k.site AND i1.visitor = k.visitor \
             JOIN identities i2 ON i2.site = i1.site AND i2.kind = i1.kind AND i2.value = i1.value) \
         SELECT DISTINCT {CONVERSION_COLUMNS}, c.traffic FROM linked l \
           JOIN conversions c ON c.site = l.site AND c.visitor = l.visitor AND c.at >= l.since \
         ORDER BY c.at, c.site, c.order_id LIMIT $3"
    );
    let st = c.prepare_cached(&sql).await.map_err(pg)?;
    let rows = c.query(&st, &[&value, &site, &(limit as i64)]).await.map_err(pg)?;
    Ok(rows.iter().map(classified_row).collect())
}

pub async fn event(c: &Client, id: &str) -> Result<Option<String>, StoreError> {
    let st = c
        .prepare_cached("SELECT body FROM events WHERE id = $1 LIMIT 1")
        .await
        .map_err(pg)?;
    let row = c.query_opt(&st, &[&id]).await.map_err(pg)?;
    Ok(row.map(|r| r.get(0)))
}

pub async fn counts(c: &Client) -> Result<Counts, StoreError> {
    let row = c
        .query_one(
            "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM conversions)",
            &[],
        )
        .await
        .map_err(pg)?;
    Ok(Counts {
        events: row.get::<_, i64>(0) as u64,
        conversions: row.get::<_, i64>(1) as u64,
    })
}
