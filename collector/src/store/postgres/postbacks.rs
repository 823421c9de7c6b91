//! The PostgreSQL store's postback outbox, shared by every collector on the database: a
//! decision and its delivery in one transaction (the first decision stands, `ON CONFLICT DO
//! NOTHING` on its key), and claims with `FOR UPDATE SKIP LOCKED`, which move a delivery's
//! next attempt to the end of a lease in the same statement: two collectors never claim one
//! delivery at once, and one that dies while sending leaves it due again after the lease.

use tokio_postgres::Row;

use super::read::{classified_row, CONVERSION_COLUMNS};
use super::write::int;
use super::{pg, Client};
use crate::store::{
    Attempted, Claim, Delivery, Plan, PostbackKind, PostbackQuery, PostbackRow, PostbackStatus, StoreError,
    StoredConversion, Unplanned,
};

/// What a read of `postbacks` selects, in [`postback_row`]'s order.
const POSTBACK_COLUMNS: &str = "p.site, p.id, p.kind, p.order_id, p.adjustment_id, p.partner, p.body, \
     p.created_at, p.status, p.attempts, p.last_error, p.next_at, p.delivered_at";

fn postback_row(r: &Row) -> PostbackRow {
    let opt = |i: usize| r.get::<_, Option<i64>>(i).map(|n| n as u64);
    PostbackRow {
        delivery: Delivery {
            site: r.get(0),
            id: r.get(1),
            kind: PostbackKind::parse(r.get(2)).unwrap_or(PostbackKind::Conversion),
            order_id: r.get(3),
            adjustment_id: r.get(4),
            partner: r.get(5),
            body: r.get(6),
            created_at: r.get::<_, i64>(7) as u64,
        },
        status: PostbackStatus::parse(r.get(8)).unwrap_or(PostbackStatus::Pending),
        attempts: r.get::<_, i32>(9) as u32,
        last_error: r.get(10),
        next_at: opt(11),
        delivered_at: opt(12),
    }
}

pub async fn order_conversion(c: &Client, site: &str, order_id: &str) -> Result<Option<StoredConversion>, StoreError> {
    let sql =
        format!("SELECT {CONVERSION_COLUMNS}, c.traffic FROM conversions c WHERE c.site = $1 AND c.order_id = $2");
    let row = c.query_opt(&sql, &[&site, &order_id]).await.map_err(pg)?;
    Ok(row.as_ref().map(classified_row))
}

pub async fn planned(
    c: &Client,
    site: &str,
    kind: PostbackKind,
    order_id: &str,
    adjustment_id: &str,
) -> Result<Option<Option<String>>, StoreError> {
    let row = c
        .query_opt(
            "SELECT partner FROM postback_plans WHERE site = $1 AND kind = $2 AND order_id = $3 AND adjustment_id = $4",
            &[&site, &kind.as_str(), &order_id, &adjustment_id],
        )
        .await
        .map_err(pg)?;
    Ok(row.map(|r| r.get(0)))
}

pub async fn unplanned(c: &Client, site: &str, since: u64, limit: usize) -> Result<Vec<Unplanned>, StoreError> {
    let rows = c
        .query(
            "SELECT kind, order_id, adjustment_id FROM ( \
               SELECT 'conversion' AS kind, o.order_id, '' AS adjustment_id, min(o.arrived) AS arrived FROM ( \
                 SELECT order_id, at AS arrived FROM conversions WHERE site = $1 AND at >= $2 \
                 UNION ALL SELECT order_id, received FROM server_orders WHERE site = $1 AND received >= $2) o \
               WHERE NOT EXISTS (SELECT 1 FROM postback_plans p WHERE p.site = $1 AND p.kind = 'conversion' \
                 AND p.order_id = o.order_id AND p.adjustment_id = '') \
               GROUP BY o.order_id \
               UNION ALL \
               SELECT 'adjustment', a.order_id, a.adjustment_id, a.received FROM adjustments a \
               WHERE a.site = $1 AND a.received >= $2 \
                 AND NOT EXISTS (SELECT 1 FROM postback_plans p WHERE p.site = $1 AND p.kind = 'adjustment' \
                 AND p.order_id = a.order_id AND p.adjustment_id = a.adjustment_id)) u \
             ORDER BY arrived, kind, order_id, adjustment_id LIMIT $3",
            &[&site, &int(since), &(limit as i64)],
        )
        .await
        .map_err(pg)?;
    Ok(rows
        .iter()
        .map(|r| Unplanned {
            kind: PostbackKind::parse(r.get(0)).unwrap_or(PostbackKind::Conversion),
            order_id: r.get(1),
            adjustment_id: r.get(2),
        })
        .collect())
}

pub async fn plan(c: &mut Client, plan: &Plan, delivery: Option<&Delivery>) -> Result<bool, StoreError> {
    let tx = c.transaction().await.map_err(pg)?;
    let fresh = tx
        .execute(
            "INSERT INTO postback_plans (site, kind, order_id, adjustment_id, partner, planned_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            &[
                &plan.site,
                &plan.kind.as_str(),
                &plan.order_id,
                &plan.adjustment_id,
                &plan.partner,
                &int(plan.planned_at),
            ],
        )
        .await
        .map_err(pg)?;
    if fresh == 0 {
        return Ok(false);
    }
    if let Some(d) = delivery {
        tx.execute(
            "INSERT INTO postbacks (site, id, kind, order_id, adjustment_id, partner, body, status, attempts, \
             created_at, next_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8) ON CONFLICT DO NOTHING",
            &[
                &d.site,
                &d.id,
                &d.kind.as_str(),
                &d.order_id,
                &d.adjustment_id,
                &d.partner,
                &d.body,
                &int(d.created_at),
            ],
        )
        .await
        .map_err(pg)?;
    }
    tx.commit().await.map_err(pg)?;
    Ok(true)
}

pub async fn claim(c: &Client, claim: &Claim<'_>) -> Result<Vec<PostbackRow>, StoreError> {
    let Claim {
        sites,
        now,
        lease_until,
        limit,
    } = *claim;
    let sql = format!(
        "UPDATE postbacks p SET next_at = $2 FROM ( \
           SELECT q.site, q.id FROM postbacks q WHERE q.status = 'pending' AND q.next_at <= $1 AND q.site = ANY($4) \
           AND NOT (q.kind = 'adjustment' AND EXISTS (SELECT 1 FROM postbacks c WHERE c.site = q.site \
             AND c.order_id = q.order_id AND c.kind = 'conversion' AND c.status = 'pending')) \
           ORDER BY q.next_at LIMIT $3 FOR UPDATE SKIP LOCKED) d \
         WHERE p.site = d.site AND p.id = d.id RETURNING {POSTBACK_COLUMNS}"
    );
    let rows = c
        .query(&sql, &[&int(now), &int(lease_until), &(limit as i64), &sites])
        .await
        .map_err(pg)?;
    Ok(rows.iter().map(postback_row).collect())
}

/// Records an attempt of the delivery (site, ID) claimed until the lease's end.
pub async fn attempted(c: &Client, claimed: (&str, &str, u64), outcome: &Attempted) -> Result<bool, StoreError> {
    let (site, id, lease) = claimed;
    let (status, error, next_at, delivered_at) = outcome.row();
    let (next_at, delivered_at) = (next_at.map(int), delivered_at.map(int));
    let changed = c
        .execute(
            "UPDATE postbacks SET status = $3, attempts = attempts + 1, last_error = coalesce($4, last_error), \
             next_at = $5, delivered_at = $6 WHERE site = $1 AND id = $2 AND status = 'pending' AND next_at = $7",
            &[
                &site,
                &id,
                &status.as_str(),
                &error,
                &next_at,
                &delivered_at,
                &int(lease),
            ],
        )
        .await
        .map_err(pg)?;
    Ok(changed == 1)
}

pub async fn list(c: &Client, site: &str, q: &PostbackQuery) -> Result<Vec<PostbackRow>, StoreError> {
    let sql = format!(
        "SELECT {POSTBACK_COLUMNS} FROM postbacks p WHERE p.site = $1 AND p.created_at >= $2 \
         AND ($3::text IS NULL OR p.status = $3) AND ($4::text IS NULL OR p.order_id = $4) \
         ORDER BY p.created_at, p.id LIMIT $5"
    );
    let rows = c
        .query(
            &sql,
            &[
                &site,
                &int(q.since),
                &q.status.map(PostbackStatus::as_str),
                &q.order_id,
                &(q.limit as i64),
            ],
        )
        .await
        .map_err(pg)?;
    Ok(rows.iter().map(postback_row).collect())
}

pub async fn pending(c: &Client) -> Result<u64, StoreError> {
    let row = c
        .query_one("SELECT count(*) FROM postbacks WHERE status = 'pending'", &[])
        .await
        .map_err(pg)?;
    Ok(row.get::<_, i64>(0) as u64)
}
