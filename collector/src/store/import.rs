//! Moving a site from SQLite to PostgreSQL: every event stored in a SQLite database is read back
//! (its canonical wire JSON, its site, when it was received) and appended to another store as
//! the collector would have, so that its conversions and derived rows are made there by that
//! store's own rules. Appending is idempotent: an import run again, or over events the target
//! already has, stores nothing twice and says how many were already there.

use crate::traffic::Traffic;
use std::path::Path;

use utt::core::wire::{Event, Status};

use super::{Batch, Store, StoreError};

/// Events appended per transaction.
const GROUP: usize = 5_000;

/// What an import did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Imported {
    /// Events read from the SQLite database.
    pub read: u64,
    /// Of those, stored anew in the target.
    pub stored: u64,
    /// Of those, already in the target (by event ID, or by site and order ID).
    pub duplicates: u64,
    /// Orders confirmed by the merchant's server (`POST /v1/conversions`) read, and of those
    /// stored anew in the target (the others were there).
    pub confirmations: (u64, u64),
    /// Adjustments read, and of those stored anew in the target.
    pub adjustments: (u64, u64),
}

/// Copies every event of the SQLite database at `from` into `to`.
pub fn import_sqlite(from: &Path, to: &dyn Store) -> Result<Imported, StoreError> {
    let mut out = Imported::default();
    // Consecutive events of one site and arrival time make one batch, as they came.
    let mut batches: Vec<Batch> = Vec::new();
    let mut current: Option<(String, u64, Traffic, Vec<Event>)> = None;
    let mut pending = 0usize;
    let flush = |batches: &mut Vec<Batch>, out: &mut Imported| -> Result<(), StoreError> {
        if batches.is_empty() {
            return Ok(());
        }
        let group: Vec<&Batch> = batches.iter().collect();
        for s in to.append(&group)? {
            match s {
                Status::Accepted => out.stored += 1,
                _ => out.duplicates += 1,
            }
        }
        batches.clear();
        Ok(())
    };
    super::sqlite::export(from, |site, received, traffic, event| {
        out.read += 1;
        match &mut current {
            Some((s, r, t, events)) if s == site && *r == received && *t == traffic => events.push(event),
            _ => {
                if let Some((s, r, t, events)) = current.replace((site.to_string(), received, traffic, vec![event])) {
                    batches.push(Batch::classified(&s, r, events, t));
                }
            }
        }
        pending += 1;
        if pending >= GROUP {
            if let Some((s, r, t, events)) = current.take() {
                batches.push(Batch::classified(&s, r, events, t));
            }
            flush(&mut batches, &mut out)?;
            pending = 0;
        }
        Ok(())
    })?;
    if let Some((s, r, t, events)) = current.take() {
        batches.push(Batch::classified(&s, r, events, t));
    }
    flush(&mut batches, &mut out)?;
    // Confirmations and adjustments are no events: copied as they are, after the events, so
    // every adjustment finds its order (a browser conversion, or a confirmation just copied).
    let (orders, adjustments) = super::sqlite::export_orders(from)?;
    for o in &orders {
        out.confirmations.0 += 1;
        if to.confirm(o)? == Status::Accepted {
            out.confirmations.1 += 1;
        }
    }
    for a in &adjustments {
        out.adjustments.0 += 1;
        match to.adjust(a)? {
            super::Adjusted::Accepted => out.adjustments.1 += 1,
            super::Adjusted::Duplicate => {}
            super::Adjusted::UnknownOrder => {
                return Err(StoreError(format!(
                    "adjustment {} of site {}: its order {} is in neither store",
                    a.adjustment_id, a.site, a.order_id
                )))
            }
        }
    }
    Ok(out)
}
