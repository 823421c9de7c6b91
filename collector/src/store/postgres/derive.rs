//! The PostgreSQL store's derived tables (touches, page counts, identities): written in the
//! same transaction as the events that derive them, merged by key first ([`Merged`]) and
//! upserted by the same rules as the SQLite store (earliest and latest sighting, views added
//! up, an identity's first sighting kept), and rebuildable from the stored events.
//!
//! One difference: SQLite keeps at most 100 page paths per click and site (the most recently
//! viewed); here every path has its row, and the read API shows the 100 most recent as there.

use futures_util::TryStreamExt;

use super::write::int;
use super::{pg, Client};
use crate::store::{Chunks, Derived, Merged, StoreError};

/// What a rebuild did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rebuilt {
    /// Events read back and derived.
    pub events: u64,
    /// Touch rows.
    pub touches: u64,
    /// Page-count rows (one per click, site and path).
    pub pages: u64,
    /// Identity rows.
    pub identities: u64,
}

const UPSERT_TOUCHES: &str = "INSERT INTO touches (site, visitor, param, value, click_at, network, path, first_seen, last_seen, landing, traffic) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::text[], $11::integer[]) \
     ON CONFLICT (site, visitor, param, value, click_at) DO UPDATE SET \
     first_seen = least(touches.first_seen, excluded.first_seen), last_seen = greatest(touches.last_seen, excluded.last_seen), \
     landing = CASE WHEN touches.landing = '' THEN excluded.landing ELSE touches.landing END, \
     traffic = least(touches.traffic, excluded.traffic)";

const UPSERT_PAGES: &str = "INSERT INTO click_pages (site, value, path, views, last_at) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[]) \
     ON CONFLICT (value, site, path) DO UPDATE SET \
     views = click_pages.views + excluded.views, last_at = greatest(click_pages.last_at, excluded.last_at)";

const INSERT_IDENTITIES: &str = "INSERT INTO identities (site, kind, value, visitor, at) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[]) ON CONFLICT DO NOTHING";

/// Writes the sites' derived rows (in the order they were stored), each key once, sorted by
/// key: two collectors writing the same rows lock them in the same order.
pub async fn write(
    client: &deadpool_postgres::Transaction<'_>,
    parts: Vec<(String, Derived)>,
) -> Result<(), StoreError> {
    if parts.iter().all(|(_, d)| d.is_empty()) {
        return Ok(());
    }
    let m = Merged::of(parts);
    if !m.touches.is_empty() {
        let mut k: Vec<i32> = Vec::with_capacity(m.touches.len());
        let (mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h, mut i, mut j) = (
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
        );
        for (site, t) in &m.touches {
            a.push(site.as_str());
            b.push(t.visitor.as_str());
            c.push(t.param.as_str());
            d.push(t.value.as_str());
            e.push(int(t.click_at));
            f.push(t.network.as_str());
            g.push(t.path.as_str());
            h.push(int(t.first));
            i.push(int(t.last));
            j.push(t.landing.as_str());
            k.push(i32::from(t.traffic.code()));
        }
        let st = client.prepare_cached(UPSERT_TOUCHES).await.map_err(pg)?;
        client
            .execute(&st, &[&a, &b, &c, &d, &e, &f, &g, &h, &i, &j, &k])
            .await
            .map_err(pg)?;
    }
    if !m.pages.is_empty() {
        let (mut a, mut b, mut c, mut d, mut e) = (vec![], vec![], vec![], vec![], vec![]);
        for (site, p) in &m.pages {
            a.push(site.as_str());
            b.push(p.value.as_str());
            c.push(p.path.as_str());
            d.push(int(p.views));
            e.push(int(p.last_at));
        }
        let st = client.prepare_cached(UPSERT_PAGES).await.map_err(pg)?;
        client.execute(&st, &[&a, &b, &c, &d, &e]).await.map_err(pg)?;
    }
    if !m.identities.is_empty() {
        let (mut a, mut b, mut c, mut d, mut e) = (vec![], vec![], vec![], vec![], vec![]);
        for (site, i) in &m.identities {
            a.push(site.as_str());
            b.push(i.kind);
            c.push(i.value.as_str());
            d.push(i.visitor.as_str());
            e.push(int(i.at));
        }
        let st = client.prepare_cached(INSERT_IDENTITIES).await.map_err(pg)?;
        client.execute(&st, &[&a, &b, &c, &d, &e]).await.map_err(pg)?;
    }
    Ok(())
}

/// Events derived per statement group of a rebuild.
const CHUNK: usize = 10_000;

/// Empties the derived tables and derives them again from every stored event, in the order
/// they were received, in one transaction. It locks the events against writes meanwhile:
/// collectors' commits wait (and are not refused) until it is done.
pub async fn rebuild(client: &mut Client) -> Result<Rebuilt, StoreError> {
    let tx = client.transaction().await.map_err(pg)?;
    tx.batch_execute(
        "LOCK TABLE events IN SHARE MODE; \
         LOCK TABLE touches, click_pages, identities IN ACCESS EXCLUSIVE MODE; \
         TRUNCATE touches, click_pages, identities;",
    )
    .await
    .map_err(pg)?;
    let mut out = Rebuilt::default();
    let rows = tx
        .query_raw(
            "SELECT site, body, traffic FROM events ORDER BY received, site, id",
            std::iter::empty::<&str>(),
        )
        .await
        .map_err(pg)?;
    let mut rows = std::pin::pin!(rows);
    let mut chunks = Chunks::new(CHUNK);
    while let Some(row) = rows.try_next().await.map_err(pg)? {
        let (site, body): (&str, &str) = (row.get(0), row.get(1));
        let event = utt::core::wire::read_event(body)
            .map_err(|e| StoreError(format!("a stored event of {site}: {}: {}", e.field, e.reason)))?;
        out.events += 1;
        let traffic = crate::traffic::Traffic::from_code(i64::from(row.get::<_, i32>(2)));
        if let Some(parts) = chunks.push(site, traffic, event) {
            write(&tx, parts).await?;
        }
    }
    write(&tx, chunks.finish()).await?;
    for (table, n) in [
        ("touches", &mut out.touches),
        ("click_pages", &mut out.pages),
        ("identities", &mut out.identities),
    ] {
        let row = tx
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .map_err(pg)?;
        *n = row.get::<_, i64>(0) as u64;
    }
    tx.commit().await.map_err(pg)?;
    Ok(out)
}
