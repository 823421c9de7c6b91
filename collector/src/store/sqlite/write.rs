//! The SQLite store's write path: one transaction per group of batches, the events' bodies
//! appended to one body log row per commit, the rows they derive kept as one `pending` row.

use rusqlite::{params, TransactionBehavior};
use utt::core::wire::{CustomerStatus, Status};

use super::schema::{wal_path, WAL_LIMIT};
use super::{err, int, SqliteStore, WriterConn};
use crate::store::{Batch, Derived, Store, StoreError, CLICKS_REF};

/// The decimal digits of `n`.
/// Appends `n` in decimal (`write!` cost 3 % of the store's instructions here).
pub(super) fn push_decimal(out: &mut Vec<u8>, n: usize) {
    let from = out.len();
    let mut n = n;
    loop {
        out.push(b'0' + (n % 10) as u8);
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out[from..].reverse();
}

pub(super) fn digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

impl SqliteStore {
    pub(super) fn append_group(&self, batches: &[&Batch]) -> Result<Vec<Status>, StoreError> {
        // Events committed to a file no longer at the path would be lost at the next start.
        self.check()?;
        // A deriver far behind slows the acknowledgements rather than falling further behind.
        self.progress.wait_for_room();
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let applied = self.progress.lock().applied;
        let WriterConn { conn, deleted } = &mut *w;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        // Pending rows the deriver has made durable in its own file are done with.
        if applied > *deleted {
            tx.prepare_cached("DELETE FROM pending WHERE id <= ?1")
                .and_then(|mut st| st.execute([int(applied)]))
                .map_err(err)?;
        }
        let total: usize = batches.iter().map(|b| b.records.len()).sum();
        let mut statuses = Vec::with_capacity(total);
        // The group's body log: accepted events' JSON, one per line.
        let body_id: i64 = tx
            .prepare_cached("SELECT coalesce(max(id), 0) + 1 FROM bodies")
            .and_then(|mut st| st.query_row([], |r| r.get(0)))
            .map_err(err)?;
        let mut log: Vec<u8> =
            Vec::with_capacity(batches.iter().flat_map(|b| &b.records).map(|r| r.body.len() + 1).sum());
        // The rows the accepted events derive, for the deriver (`Derived::encode`).
        let mut rows: Vec<u8> = Vec::new();
        {
            let mut ins_event = tx
                .prepare_cached(
                    "INSERT INTO events (id, site, type, at, visitor, received, body_id, body_at, body_len, traffic) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (id) DO NOTHING",
                )
                .map_err(err)?;
            let mut ins_conv = tx
                .prepare_cached(
                    "INSERT INTO conversions (site, order_id, event_id, at, visitor, amount, currency, discount, \
                     promo_code, customer_status, items, custom, traffic) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
                     ON CONFLICT (site, order_id) DO NOTHING",
                )
                .map_err(err)?;
            for &b in batches {
                let start = statuses.len();
                // Where each accepted event's click list landed in the log, for the events of
                // the batch that repeat it.
                let mut clicks_at: Vec<Option<usize>> = vec![None; b.records.len()];
                for (k, r) in b.records.iter().enumerate() {
                    // The body as the log keeps it: whole, or with its click list replaced by
                    // a reference to the same text already in this log.
                    let shared = r
                        .same_clicks_as
                        .and_then(|j| Some((clicks_at[j]?, b.records[j].clicks?)));
                    let compact = match (shared, r.clicks) {
                        (Some((at, (c, d))), Some((x, y))) => Some((at, d - c, x, y)),
                        _ => None,
                    };
                    let entry_len = match compact {
                        Some((at, len, x, y)) => x + (r.body.len() - y) + 2 + digits(at) + 1 + digits(len),
                        None => r.body.len(),
                    };
                    let fresh = ins_event
                        .execute(params![
                            r.id,
                            b.site,
                            r.kind,
                            int(r.at),
                            r.visitor,
                            int(r.received),
                            body_id,
                            log.len() as i64,
                            entry_len as i64,
                            b.traffic.code()
                        ])
                        .map_err(err)?;
                    if fresh == 0 {
                        statuses.push(Status::Duplicate);
                        continue;
                    }
                    if let Some(o) = &r.order {
                        let status = o.customer_status.map(|s| match s {
                            CustomerStatus::New => "new",
                            CustomerStatus::Returning => "returning",
                        });
                        let fresh = ins_conv
                            .execute(params![
                                b.site,
                                o.order_id,
                                r.id,
                                int(r.at),
                                r.visitor,
                                o.amount.as_ref().map(|a| &a.text),
                                o.currency,
                                o.discount.as_ref().map(|a| &a.text),
                                o.promo_code,
                                status,
                                r.items.as_deref().unwrap_or("[]"),
                                o.custom.as_ref().map(|c| c.to_text()),
                                b.traffic.code(),
                            ])
                            .map_err(err)?;
                        if fresh == 0 {
                            // Same order ID under a new event ID: the order is counted once, so
                            // the event row just written goes too.
                            tx.execute("DELETE FROM events WHERE id = ?1", [&r.id]).map_err(err)?;
                            statuses.push(Status::Duplicate);
                            continue;
                        }
                    }
                    statuses.push(Status::Accepted);
                    let body = r.body.as_bytes();
                    let before = log.len();
                    match compact {
                        Some((at, len, x, y)) => {
                            log.extend_from_slice(&body[..x]);
                            log.push(CLICKS_REF);
                            push_decimal(&mut log, at);
                            log.push(b',');
                            push_decimal(&mut log, len);
                            log.push(CLICKS_REF);
                            log.extend_from_slice(&body[y..]);
                        }
                        None => {
                            if let Some((x, _)) = r.clicks {
                                clicks_at[k] = Some(before + x);
                            }
                            log.extend_from_slice(body);
                        }
                    }
                    debug_assert_eq!(log.len() - before, entry_len);
                    log.push(b'\n');
                }
                let mine = &statuses[start..];
                if mine.iter().all(|s| *s == Status::Accepted) {
                    b.derived.encode(&b.site, &mut rows);
                } else if mine.contains(&Status::Accepted) {
                    // Duplicates add nothing: derive the rows of the new events only, read back
                    // from their bodies (the decoded events were freed on the request side).
                    let mut fresh = Vec::new();
                    for (r, _) in b.records.iter().zip(mine).filter(|(_, s)| **s == Status::Accepted) {
                        fresh.push(r.event()?);
                    }
                    Derived::of(&fresh, b.traffic).encode(&b.site, &mut rows);
                }
            }
            if !log.is_empty() {
                tx.prepare_cached("INSERT INTO bodies (id, json) VALUES (?1, ?2)")
                    .and_then(|mut st| st.execute(params![body_id, log]))
                    .map_err(err)?;
            }
        }
        let accepted = statuses.iter().filter(|s| **s == Status::Accepted).count() as u64;
        let pending_id = self.progress.lock().committed + 1;
        if accepted > 0 && !rows.is_empty() {
            tx.prepare_cached("INSERT INTO pending (id, events, rows) VALUES (?1, ?2, ?3)")
                .and_then(|mut st| st.execute(params![int(pending_id), int(accepted), rows]))
                .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        *deleted = (*deleted).max(applied);
        if accepted > 0 && !rows.is_empty() {
            self.progress.committed(pending_id, accepted);
        }
        // Under constant writing the background checkpoint never quite catches up (new frames
        // land while it copies), so the WAL would grow without bound. Right after a commit
        // nothing new is being appended: finishing the copy here lets the next transaction
        // restart the WAL from its beginning. Most frames are already copied, so this is short.
        if std::fs::metadata(wal_path(&self.path)).is_ok_and(|m| m.len() > WAL_LIMIT) {
            // Busy (the background checkpoint is running) is fine: the next commit tries again.
            let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        }
        Ok(statuses)
    }

    pub(super) fn probe_commit(&self) -> Result<(), StoreError> {
        self.write_one(|tx| {
            tx.execute(
                "INSERT INTO health (id, probes) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET probes = probes + 1",
                [],
            )
            .map(drop)
        })
    }

    /// Runs `f` in one IMMEDIATE transaction of the writing connection (`synchronous=FULL`) and
    /// commits it: a small write outside the writer's groups (a probe, a confirmation, an
    /// adjustment), durable when this returns.
    pub(super) fn write_one<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.check()?;
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = w
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let out = f(&tx).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(out)
    }
}
