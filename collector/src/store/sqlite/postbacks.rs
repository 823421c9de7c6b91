//! The SQLite store's postback outbox: a decision and its delivery in one transaction on the
//! writer's connection, claims and attempts each a small transaction too (`synchronous=FULL`,
//! so a planned delivery is on disk before anything is sent). One process writes the file, so
//! a claim needs no lock beyond the writer's.

use rusqlite::{params, OptionalExtension};

use super::read::{classified_row, CONVERSION_COLUMNS};
use super::{int, SqliteStore};
use crate::store::{
    Attempted, Claim, Delivery, Plan, PostbackKind, PostbackQuery, PostbackRow, PostbackStatus, StoreError,
    StoredConversion, Unplanned,
};

/// What a read of `postbacks` selects, in [`postback_row`]'s order.
pub(crate) const POSTBACK_COLUMNS: &str = "site, id, kind, order_id, adjustment_id, partner, body, created_at, \
     status, attempts, last_error, next_at, delivered_at";

fn postback_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PostbackRow> {
    let kind: String = r.get(2)?;
    let status: String = r.get(8)?;
    let opt = |i: usize| -> rusqlite::Result<Option<u64>> { Ok(r.get::<_, Option<i64>>(i)?.map(|n| n as u64)) };
    Ok(PostbackRow {
        delivery: Delivery {
            site: r.get(0)?,
            id: r.get(1)?,
            kind: PostbackKind::parse(&kind).unwrap_or(PostbackKind::Conversion),
            order_id: r.get(3)?,
            adjustment_id: r.get(4)?,
            partner: r.get(5)?,
            body: r.get(6)?,
            created_at: r.get::<_, i64>(7)? as u64,
        },
        status: PostbackStatus::parse(&status).unwrap_or(PostbackStatus::Pending),
        attempts: r.get::<_, i64>(9)? as u32,
        last_error: r.get(10)?,
        next_at: opt(11)?,
        delivered_at: opt(12)?,
    })
}

/// The conditions under which a pending delivery may be claimed at `?1`: due, and not an
/// adjustment whose order's conversion postback is still pending (it goes first).
pub(crate) const DUE: &str = "p.status = 'pending' AND p.next_at <= ?1 AND NOT (p.kind = 'adjustment' AND EXISTS \
     (SELECT 1 FROM postbacks c WHERE c.site = p.site AND c.order_id = p.order_id \
      AND c.kind = 'conversion' AND c.status = 'pending'))";

impl SqliteStore {
    pub(super) fn order_conversion_of(
        &self,
        site: &str,
        order_id: &str,
    ) -> Result<Option<StoredConversion>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {CONVERSION_COLUMNS}, c.traffic FROM conversions c WHERE c.site = ?1 AND c.order_id = ?2"
            ))?
            .query_row(params![site, order_id], classified_row)
            .optional()
        })
    }

    pub(super) fn planned_of(
        &self,
        site: &str,
        kind: PostbackKind,
        order_id: &str,
        adjustment_id: &str,
    ) -> Result<Option<Option<String>>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT partner FROM postback_plans WHERE site = ?1 AND kind = ?2 AND order_id = ?3 AND adjustment_id = ?4",
            )?
            .query_row(params![site, kind.as_str(), order_id, adjustment_id], |r| r.get(0))
            .optional()
        })
    }

    pub(super) fn unplanned_of(&self, site: &str, since: u64, limit: usize) -> Result<Vec<Unplanned>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT kind, order_id, adjustment_id FROM ( \
                   SELECT 'conversion' AS kind, o.order_id, '' AS adjustment_id, min(o.arrived) AS arrived FROM ( \
                     SELECT order_id, at AS arrived FROM conversions WHERE site = ?1 AND at >= ?2 \
                     UNION ALL SELECT order_id, received FROM server_orders WHERE site = ?1 AND received >= ?2) o \
                   WHERE NOT EXISTS (SELECT 1 FROM postback_plans p WHERE p.site = ?1 AND p.kind = 'conversion' \
                     AND p.order_id = o.order_id AND p.adjustment_id = '') \
                   GROUP BY o.order_id \
                   UNION ALL \
                   SELECT 'adjustment', a.order_id, a.adjustment_id, a.received FROM adjustments a \
                   WHERE a.site = ?1 AND a.received >= ?2 \
                     AND NOT EXISTS (SELECT 1 FROM postback_plans p WHERE p.site = ?1 AND p.kind = 'adjustment' \
                     AND p.order_id = a.order_id AND p.adjustment_id = a.adjustment_id)) \
                 ORDER BY arrived, kind, order_id, adjustment_id LIMIT ?3",
            )?;
            let rows = st.query_map(params![site, int(since), limit as i64], |r| {
                let kind: String = r.get(0)?;
                Ok(Unplanned {
                    kind: PostbackKind::parse(&kind).unwrap_or(PostbackKind::Conversion),
                    order_id: r.get(1)?,
                    adjustment_id: r.get(2)?,
                })
            })?;
            rows.collect()
        })
    }

    pub(super) fn plan(&self, plan: &Plan, delivery: Option<&Delivery>) -> Result<bool, StoreError> {
        self.write_one(|tx| {
            let fresh = tx.execute(
                "INSERT INTO postback_plans (site, kind, order_id, adjustment_id, partner, planned_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                params![
                    plan.site,
                    plan.kind.as_str(),
                    plan.order_id,
                    plan.adjustment_id,
                    plan.partner,
                    int(plan.planned_at)
                ],
            )?;
            if fresh == 0 {
                return Ok(false);
            }
            if let Some(d) = delivery {
                tx.execute(
                    "INSERT INTO postbacks (site, id, kind, order_id, adjustment_id, partner, body, status, attempts, \
                     created_at, next_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', 0, ?8, ?8) \
                     ON CONFLICT DO NOTHING",
                    params![
                        d.site,
                        d.id,
                        d.kind.as_str(),
                        d.order_id,
                        d.adjustment_id,
                        d.partner,
                        d.body,
                        int(d.created_at)
                    ],
                )?;
            }
            Ok(true)
        })
    }

    pub(super) fn claim(&self, claim: &Claim<'_>) -> Result<Vec<PostbackRow>, StoreError> {
        let (now, lease_until, limit) = (claim.now, claim.lease_until, claim.limit);
        // The sites, as a JSON array for `json_each`.
        let sites = serde_json::to_string(claim.sites).map_err(|e| StoreError(e.to_string()))?;
        // The sender looks every `poll_ms`: usually nothing is due, found on a reader without
        // taking the writer's connection.
        let due: bool = self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT EXISTS (SELECT 1 FROM postbacks p WHERE {DUE} AND p.site IN (SELECT value FROM json_each(?2)))"
            ))?
            .query_row(params![int(now), sites], |r| r.get(0))
        })?;
        if !due {
            return Ok(Vec::new());
        }
        self.write_one(|tx| {
            let mut st = tx.prepare_cached(&format!(
                "UPDATE postbacks SET next_at = ?2 WHERE (site, id) IN \
                 (SELECT p.site, p.id FROM postbacks p WHERE {DUE} \
                 AND p.site IN (SELECT value FROM json_each(?4)) ORDER BY p.next_at LIMIT ?3) \
                 RETURNING {POSTBACK_COLUMNS}"
            ))?;
            let rows = st.query_map(params![int(now), int(lease_until), limit as i64, sites], postback_row)?;
            rows.collect()
        })
    }

    /// Records an attempt of the delivery (site, ID) claimed until the lease's end.
    pub(super) fn record_attempt(&self, claimed: (&str, &str, u64), outcome: &Attempted) -> Result<bool, StoreError> {
        let (site, id, lease) = claimed;
        let (status, error, next_at, delivered_at) = outcome.row();
        let (next_at, delivered_at) = (next_at.map(int), delivered_at.map(int));
        let changed = self.write_one(|tx| {
            tx.execute(
                "UPDATE postbacks SET status = ?3, attempts = attempts + 1, last_error = coalesce(?4, last_error), \
                 next_at = ?5, delivered_at = ?6 WHERE site = ?1 AND id = ?2 AND status = 'pending' AND next_at = ?7",
                params![site, id, status.as_str(), error, next_at, delivered_at, int(lease)],
            )
        })?;
        Ok(changed == 1)
    }

    pub(super) fn postbacks_of(&self, site: &str, q: &PostbackQuery) -> Result<Vec<PostbackRow>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {POSTBACK_COLUMNS} FROM postbacks WHERE site = ?1 AND created_at >= ?2 \
                 AND (?3 IS NULL OR status = ?3) AND (?4 IS NULL OR order_id = ?4) \
                 ORDER BY created_at, id LIMIT ?5"
            ))?;
            let rows = st.query_map(
                params![
                    site,
                    int(q.since),
                    q.status.map(PostbackStatus::as_str),
                    q.order_id,
                    q.limit as i64
                ],
                postback_row,
            )?;
            rows.collect()
        })
    }

    pub(super) fn pending_postbacks(&self) -> Result<u64, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT count(*) FROM postbacks WHERE status = 'pending'")?
                .query_row([], |r| r.get::<_, i64>(0))
        })
        .map(|n| n as u64)
    }
}
