//! The PostgreSQL store's server confirmations and adjustments: one statement or one short
//! transaction each (synchronous commit on, so durable before the answer), idempotent by
//! `ON CONFLICT DO NOTHING` on the site's order ID or adjustment ID. Every query names the site.

use tokio_postgres::Row;
use utt::core::wire::Status;

use super::read::conversion_row;
use super::write::int;
use super::{pg, Client};
use crate::store::{Adjusted, Adjustment, AdjustmentKind, OrdersExport, ServerOrder, StoreError};

const ORDER_COLUMNS: &str = "site, order_id, at, received, visitor, amount, currency, discount, promo_code, \
     customer_status, items, custom, clicks";

/// What a read of `server_orders` selects: a stored conversion's columns in `conversion_row`'s
/// order (a confirmation has no event ID), then `received` and `clicks`.
const ORDER_SELECT: &str = "site, '' AS event_id, order_id, at, visitor, amount, currency, discount, \
     promo_code, customer_status, items, custom, received, clicks";

const ADJUSTMENT_COLUMNS: &str = "site, adjustment_id, order_id, kind, amount, reason, at, received";

fn order_row(r: &Row) -> Result<ServerOrder, StoreError> {
    Ok(ServerOrder {
        conversion: conversion_row(r),
        received: r.get::<_, i64>(12) as u64,
        clicks: ServerOrder::clicks_from(r.get(13))?,
    })
}

fn adjustment_row(r: &Row) -> Adjustment {
    let kind: &str = r.get(3);
    Adjustment {
        site: r.get(0),
        adjustment_id: r.get(1),
        order_id: r.get(2),
        kind: AdjustmentKind::parse(kind).unwrap_or(AdjustmentKind::Correction),
        amount: r.get(4),
        reason: r.get(5),
        at: r.get::<_, i64>(6) as u64,
        received: r.get::<_, i64>(7) as u64,
    }
}

pub async fn confirm(c: &Client, o: &ServerOrder) -> Result<Status, StoreError> {
    let v = &o.conversion;
    let n = c
        .execute(
            &format!(
                "INSERT INTO server_orders ({ORDER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                 ON CONFLICT (site, order_id) DO NOTHING"
            ),
            &[
                &v.site,
                &v.order_id,
                &int(v.at),
                &int(o.received),
                &v.visitor,
                &v.amount,
                &v.currency,
                &v.discount,
                &v.promo_code,
                &v.customer_status,
                &v.items,
                &v.custom,
                &o.clicks_json(),
            ],
        )
        .await
        .map_err(pg)?;
    Ok(if n == 1 { Status::Accepted } else { Status::Duplicate })
}

pub async fn server_order(c: &Client, site: &str, order_id: &str) -> Result<Option<ServerOrder>, StoreError> {
    let row = c
        .query_opt(
            &format!("SELECT {ORDER_SELECT} FROM server_orders WHERE site = $1 AND order_id = $2"),
            &[&site, &order_id],
        )
        .await
        .map_err(pg)?;
    row.as_ref().map(order_row).transpose()
}

pub async fn server_only(c: &Client, site: &str, since: u64, limit: usize) -> Result<Vec<ServerOrder>, StoreError> {
    let rows = c
        .query(
            &format!(
                "SELECT {ORDER_SELECT} FROM server_orders s WHERE site = $1 AND at >= $2 AND NOT EXISTS \
                 (SELECT 1 FROM conversions c WHERE c.site = s.site AND c.order_id = s.order_id) \
                 ORDER BY at, order_id LIMIT $3"
            ),
            &[&site, &int(since), &(limit as i64)],
        )
        .await
        .map_err(pg)?;
    rows.iter().map(order_row).collect()
}

pub async fn adjust(c: &mut Client, a: &Adjustment) -> Result<Adjusted, StoreError> {
    let tx = c.transaction().await.map_err(pg)?;
    let known: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM conversions WHERE site = $1 AND order_id = $2) \
             OR EXISTS (SELECT 1 FROM server_orders WHERE site = $1 AND order_id = $2)",
            &[&a.site, &a.order_id],
        )
        .await
        .map_err(pg)?
        .get(0);
    if !known {
        return Ok(Adjusted::UnknownOrder);
    }
    let n = tx
        .execute(
            &format!(
                "INSERT INTO adjustments ({ADJUSTMENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (site, adjustment_id) DO NOTHING"
            ),
            &[
                &a.site,
                &a.adjustment_id,
                &a.order_id,
                &a.kind.as_str(),
                &a.amount,
                &a.reason,
                &int(a.at),
                &int(a.received),
            ],
        )
        .await
        .map_err(pg)?;
    tx.commit().await.map_err(pg)?;
    Ok(if n == 1 {
        Adjusted::Accepted
    } else {
        Adjusted::Duplicate
    })
}

pub async fn adjustments(c: &Client, site: &str, order_id: &str) -> Result<Vec<Adjustment>, StoreError> {
    let rows = c
        .query(
            &format!(
                "SELECT {ADJUSTMENT_COLUMNS} FROM adjustments WHERE site = $1 AND order_id = $2 \
                 ORDER BY at, received, adjustment_id"
            ),
            &[&site, &order_id],
        )
        .await
        .map_err(pg)?;
    Ok(rows.iter().map(adjustment_row).collect())
}

pub async fn all(c: &Client) -> Result<OrdersExport, StoreError> {
    let orders = c
        .query(
            &format!("SELECT {ORDER_SELECT} FROM server_orders ORDER BY site, at, order_id"),
            &[],
        )
        .await
        .map_err(pg)?;
    let adjustments = c
        .query(
            &format!("SELECT {ADJUSTMENT_COLUMNS} FROM adjustments ORDER BY site, at, received, adjustment_id"),
            &[],
        )
        .await
        .map_err(pg)?;
    Ok((
        orders.iter().map(order_row).collect::<Result<_, _>>()?,
        adjustments.iter().map(adjustment_row).collect(),
    ))
}
