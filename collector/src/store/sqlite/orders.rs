//! The SQLite store's server confirmations and adjustments: each its own small transaction on
//! the writer's connection (committed, with `synchronous=FULL`, before the answer), idempotent
//! by `ON CONFLICT DO NOTHING` on the site's order ID or adjustment ID.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use utt::core::wire::Status;

use super::read::conversion_row;
use super::schema::open;
use super::{err, int, SqliteStore};
use crate::store::{Adjusted, Adjustment, AdjustmentKind, OrdersExport, ServerOrder, StoreError};

const ORDER_COLUMNS: &str = "site, order_id, at, received, visitor, amount, currency, discount, promo_code, \
     customer_status, items, custom, clicks";

/// What a read of `server_orders` selects: a stored conversion's columns in `conversion_row`'s
/// order (a confirmation has no event ID), then `received` and `clicks`.
const ORDER_SELECT: &str = "site, '' AS event_id, order_id, at, visitor, amount, currency, discount, \
     promo_code, customer_status, items, custom, received, clicks";

const ADJUSTMENT_COLUMNS: &str = "site, adjustment_id, order_id, kind, amount, reason, at, received";

fn order_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(ServerOrder, String)> {
    let order = ServerOrder {
        conversion: conversion_row(r)?,
        received: r.get::<_, i64>(12)? as u64,
        clicks: Vec::new(),
    };
    Ok((order, r.get(13)?))
}

fn with_clicks((mut o, clicks): (ServerOrder, String)) -> Result<ServerOrder, StoreError> {
    o.clicks = ServerOrder::clicks_from(&clicks)?;
    Ok(o)
}

fn adjustment_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Adjustment> {
    let kind: String = r.get(3)?;
    Ok(Adjustment {
        site: r.get(0)?,
        adjustment_id: r.get(1)?,
        order_id: r.get(2)?,
        kind: AdjustmentKind::parse(&kind).unwrap_or(AdjustmentKind::Correction),
        amount: r.get(4)?,
        reason: r.get(5)?,
        at: r.get::<_, i64>(6)? as u64,
        received: r.get::<_, i64>(7)? as u64,
    })
}

impl SqliteStore {
    pub(super) fn confirm_order(&self, o: &ServerOrder) -> Result<Status, StoreError> {
        let c = &o.conversion;
        let fresh = self.write_one(|tx| {
            tx.execute(
                &format!(
                    "INSERT INTO server_orders ({ORDER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
                     ON CONFLICT (site, order_id) DO NOTHING"
                ),
                params![
                    c.site,
                    c.order_id,
                    int(c.at),
                    int(o.received),
                    c.visitor,
                    c.amount,
                    c.currency,
                    c.discount,
                    c.promo_code,
                    c.customer_status,
                    c.items,
                    c.custom,
                    o.clicks_json(),
                ],
            )
        })?;
        Ok(if fresh == 1 {
            Status::Accepted
        } else {
            Status::Duplicate
        })
    }

    pub(super) fn server_order_of(&self, site: &str, order_id: &str) -> Result<Option<ServerOrder>, StoreError> {
        let row = self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {ORDER_SELECT} FROM server_orders WHERE site = ?1 AND order_id = ?2"
            ))?
            .query_row(params![site, order_id], order_row)
            .optional()
        })?;
        row.map(with_clicks).transpose()
    }

    pub(super) fn server_only(&self, site: &str, since: u64, limit: usize) -> Result<Vec<ServerOrder>, StoreError> {
        let rows = self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {ORDER_SELECT} FROM server_orders s WHERE site = ?1 AND at >= ?2 AND NOT EXISTS \
                 (SELECT 1 FROM conversions c WHERE c.site = s.site AND c.order_id = s.order_id) \
                 ORDER BY at, order_id LIMIT ?3"
            ))?;
            let rows = st.query_map(params![site, int(since), limit as i64], order_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter().map(with_clicks).collect()
    }

    pub(super) fn adjust_order(&self, a: &Adjustment) -> Result<Adjusted, StoreError> {
        self.write_one(|tx| {
            let known: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM conversions WHERE site = ?1 AND order_id = ?2) \
                 OR EXISTS (SELECT 1 FROM server_orders WHERE site = ?1 AND order_id = ?2)",
                params![a.site, a.order_id],
                |r| r.get(0),
            )?;
            if !known {
                return Ok(Adjusted::UnknownOrder);
            }
            let fresh = tx.execute(
                &format!(
                    "INSERT INTO adjustments ({ADJUSTMENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                     ON CONFLICT (site, adjustment_id) DO NOTHING"
                ),
                params![
                    a.site,
                    a.adjustment_id,
                    a.order_id,
                    a.kind.as_str(),
                    a.amount,
                    a.reason,
                    int(a.at),
                    int(a.received)
                ],
            )?;
            Ok(if fresh == 1 {
                Adjusted::Accepted
            } else {
                Adjusted::Duplicate
            })
        })
    }

    pub(super) fn adjustments_of(&self, site: &str, order_id: &str) -> Result<Vec<Adjustment>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {ADJUSTMENT_COLUMNS} FROM adjustments WHERE site = ?1 AND order_id = ?2 \
                 ORDER BY at, received, adjustment_id"
            ))?;
            let rows = st.query_map(params![site, order_id], adjustment_row)?;
            rows.collect()
        })
    }

    pub(super) fn all_orders(&self) -> Result<OrdersExport, StoreError> {
        self.read(read_all)?
    }
}

/// Every confirmation and adjustment of a database, in one read transaction; none from a file
/// made before they existed (schema version 1).
fn read_all(c: &Connection) -> rusqlite::Result<Result<OrdersExport, StoreError>> {
    let has: bool = c.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'server_orders')",
        [],
        |r| r.get(0),
    )?;
    if !has {
        return Ok(Ok((Vec::new(), Vec::new())));
    }
    let orders = c
        .prepare(&format!(
            "SELECT {ORDER_SELECT} FROM server_orders ORDER BY site, at, order_id"
        ))?
        .query_map([], order_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let adjustments = c
        .prepare(&format!(
            "SELECT {ADJUSTMENT_COLUMNS} FROM adjustments ORDER BY site, at, received, adjustment_id"
        ))?
        .query_map([], adjustment_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(orders
        .into_iter()
        .map(with_clicks)
        .collect::<Result<_, _>>()
        .map(|o| (o, adjustments)))
}

/// Every server confirmation and adjustment stored in the SQLite database `db`, for a move to
/// another store (`--import-sqlite`); read-only, and may run while a collector writes to it.
pub fn export_orders(db: &Path) -> Result<OrdersExport, StoreError> {
    if !db.is_file() {
        return Err(StoreError(format!("{} does not exist", db.display())));
    }
    let main = open(db).map_err(err)?;
    main.execute_batch("PRAGMA query_only=1; BEGIN;").map_err(err)?;
    let out = read_all(&main).map_err(err)?;
    main.execute_batch("COMMIT;").map_err(err)?;
    out
}
