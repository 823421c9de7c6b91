//! The PostgreSQL store's write path: a group of batches in one transaction, each table written
//! by one multi-row statement over arrays (`INSERT ... SELECT FROM unnest(...)`), idempotent by
//! primary key (`ON CONFLICT DO NOTHING`), the derived rows upserted in the same transaction.
//! Two collectors racing on the same event or the same order: the database's unique index
//! decides, the second waits for the first's commit and then finds the row there.

use std::collections::{HashMap, HashSet};

use utt::core::wire::{CustomerStatus, Status};

use super::{derive, is_conflict, pg, Client};
use crate::store::{Batch, Derived, StoreError};

/// How often a group that met another collector's transaction (a deadlock, a serialisation
/// failure) is tried again before its error is answered.
const TRIES: usize = 5;

/// Stores a group of batches; one status per event, in order (see [`crate::store::Store::append`]).
pub async fn append(client: &mut Client, batches: &[&Batch]) -> Result<Vec<Status>, StoreError> {
    let mut tries = 0;
    loop {
        match try_append(client, batches).await {
            Err(Failed::Conflict(e)) if tries + 1 < TRIES => {
                tries += 1;
                tracing::debug!(error = %e, tries, "group met another transaction; trying again");
            }
            Err(Failed::Conflict(e)) => return Err(pg(e)),
            Err(Failed::Other(e)) => return Err(e),
            Ok(statuses) => return Ok(statuses),
        }
    }
}

/// Why a try failed: meeting another transaction is tried again.
enum Failed {
    Conflict(tokio_postgres::Error),
    Other(StoreError),
}

impl From<tokio_postgres::Error> for Failed {
    fn from(e: tokio_postgres::Error) -> Failed {
        if is_conflict(&e) {
            Failed::Conflict(e)
        } else {
            Failed::Other(pg(e))
        }
    }
}

impl From<StoreError> for Failed {
    fn from(e: StoreError) -> Failed {
        Failed::Other(e)
    }
}

const INSERT_EVENTS: &str = "INSERT INTO events (site, id, type, at, visitor, received, body, traffic) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[], $7::text[], $8::integer[]) \
     ON CONFLICT DO NOTHING RETURNING site, id";

const INSERT_CONVERSIONS: &str = "INSERT INTO conversions (site, order_id, event_id, at, visitor, amount, currency, \
     discount, promo_code, customer_status, items, custom, traffic) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], \
     $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::integer[]) \
     ON CONFLICT DO NOTHING RETURNING site, order_id";

const DELETE_EVENTS: &str = "DELETE FROM events WHERE (site, id) IN (SELECT * FROM unnest($1::text[], $2::text[]))";

/// Timestamps are below 2^53; PostgreSQL's integers are signed.
pub(super) fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

async fn try_append(client: &mut Client, batches: &[&Batch]) -> Result<Vec<Status>, Failed> {
    // Every event of the group, in order, as (batch, record).
    let all: Vec<(usize, usize)> = batches
        .iter()
        .enumerate()
        .flat_map(|(b, batch)| (0..batch.records.len()).map(move |r| (b, r)))
        .collect();
    let site = |&(b, _): &(usize, usize)| batches[b].site.as_str();
    let rec = |&(b, r): &(usize, usize)| &batches[b].records[r];
    // An event ID repeated within the group: its first occurrence is the one stored.
    let mut seen: HashSet<(&str, &str)> = HashSet::with_capacity(all.len());
    let first: Vec<bool> = all.iter().map(|e| seen.insert((site(e), rec(e).id.as_str()))).collect();
    // In one key order, so that two collectors writing the same events lock them in the same
    // order rather than deadlock.
    let mut order: Vec<usize> = (0..all.len()).filter(|&i| first[i]).collect();
    order.sort_unstable_by(|&i, &j| (site(&all[i]), &rec(&all[i]).id).cmp(&(site(&all[j]), &rec(&all[j]).id)));

    let tx = client.transaction().await?;
    let ins_events = tx.prepare_cached(INSERT_EVENTS).await?;
    let (mut sites, mut ids, mut kinds, mut ats, mut visitors, mut received, mut bodies, mut traffic) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for &i in &order {
        let (e, r) = (&all[i], rec(&all[i]));
        sites.push(site(e));
        ids.push(r.id.as_str());
        kinds.push(r.kind);
        ats.push(int(r.at));
        visitors.push(r.visitor.as_deref());
        received.push(int(r.received));
        bodies.push(r.body.as_str());
        traffic.push(i32::from(batches[e.0].traffic.code()));
    }
    let rows = tx
        .query(
            &ins_events,
            &[&sites, &ids, &kinds, &ats, &visitors, &received, &bodies, &traffic],
        )
        .await?;
    let fresh: HashSet<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let is_fresh = |i: usize| first[i] && fresh.contains(&(site(&all[i]).to_string(), rec(&all[i]).id.clone()));

    // The new events' orders; an order repeated within the group is stored for its first event.
    let mut orders: HashMap<(&str, &str), usize> = HashMap::new();
    let mut conv: Vec<usize> = Vec::new();
    let mut dropped: Vec<usize> = Vec::new();
    for i in (0..all.len()).filter(|&i| is_fresh(i)) {
        if let Some(o) = &rec(&all[i]).order {
            match orders.entry((site(&all[i]), o.order_id.as_str())) {
                std::collections::hash_map::Entry::Occupied(_) => dropped.push(i),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(i);
                    conv.push(i);
                }
            }
        }
    }
    conv.sort_unstable_by(|&i, &j| {
        let key = |i: usize| (site(&all[i]), rec(&all[i]).order.as_ref().map(|o| o.order_id.as_str()));
        key(i).cmp(&key(j))
    });
    if !conv.is_empty() {
        let columns = ConversionColumns::of(
            conv.iter()
                .map(|&i| (site(&all[i]), batches[all[i].0].traffic, rec(&all[i]))),
        );
        let ins = tx.prepare_cached(INSERT_CONVERSIONS).await?;
        let rows = tx.query(&ins, &columns.params()).await?;
        let stored: HashSet<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        for &i in &conv {
            let o = rec(&all[i])
                .order
                .as_ref()
                .map(|o| o.order_id.clone())
                .unwrap_or_default();
            if !stored.contains(&(site(&all[i]).to_string(), o)) {
                dropped.push(i);
            }
        }
    }
    if !dropped.is_empty() {
        // Same order ID under a new event ID: the order is counted once, so the event row just
        // written goes too.
        let sites: Vec<&str> = dropped.iter().map(|&i| site(&all[i])).collect();
        let ids: Vec<&str> = dropped.iter().map(|&i| rec(&all[i]).id.as_str()).collect();
        let del = tx.prepare_cached(DELETE_EVENTS).await?;
        tx.execute(&del, &[&sites, &ids]).await?;
    }
    let dropped: HashSet<usize> = dropped.into_iter().collect();
    let statuses: Vec<Status> = (0..all.len())
        .map(|i| {
            if is_fresh(i) && !dropped.contains(&i) {
                Status::Accepted
            } else {
                Status::Duplicate
            }
        })
        .collect();

    // The derived rows of the accepted events, batch by batch, as the SQLite store derives them.
    let mut parts: Vec<(String, Derived)> = Vec::new();
    let mut at = 0;
    for b in batches {
        let mine = &statuses[at..at + b.records.len()];
        at += b.records.len();
        if mine.iter().all(|s| *s == Status::Accepted) {
            parts.push((b.site.clone(), b.derived.clone()));
        } else if mine.contains(&Status::Accepted) {
            let mut events = Vec::new();
            for (r, _) in b.records.iter().zip(mine).filter(|(_, s)| **s == Status::Accepted) {
                events.push(r.event()?);
            }
            parts.push((b.site.clone(), Derived::of(&events, b.traffic)));
        }
    }
    derive::write(&tx, parts).await?;
    tx.commit().await?;
    Ok(statuses)
}

/// A conversion's columns, one array each.
#[derive(Default)]
struct ConversionColumns<'a> {
    site: Vec<&'a str>,
    order_id: Vec<&'a str>,
    event_id: Vec<&'a str>,
    at: Vec<i64>,
    visitor: Vec<Option<&'a str>>,
    amount: Vec<Option<&'a str>>,
    currency: Vec<Option<&'a str>>,
    discount: Vec<Option<&'a str>>,
    promo_code: Vec<Option<&'a str>>,
    status: Vec<Option<&'static str>>,
    items: Vec<&'a str>,
    custom: Vec<Option<String>>,
    traffic: Vec<i32>,
}

impl<'a> ConversionColumns<'a> {
    fn of(
        records: impl Iterator<Item = (&'a str, crate::traffic::Traffic, &'a crate::store::Record)>,
    ) -> ConversionColumns<'a> {
        let mut c = ConversionColumns::default();
        for (site, traffic, r) in records {
            let Some(o) = &r.order else { continue };
            c.site.push(site);
            c.order_id.push(&o.order_id);
            c.event_id.push(&r.id);
            c.at.push(int(r.at));
            c.visitor.push(r.visitor.as_deref());
            c.amount.push(o.amount.as_ref().map(|a| a.text.as_str()));
            c.currency.push(o.currency.as_deref());
            c.discount.push(o.discount.as_ref().map(|a| a.text.as_str()));
            c.promo_code.push(o.promo_code.as_deref());
            c.status.push(o.customer_status.map(|s| match s {
                CustomerStatus::New => "new",
                CustomerStatus::Returning => "returning",
            }));
            c.items.push(r.items.as_deref().unwrap_or("[]"));
            c.custom.push(o.custom.as_ref().map(|c| c.to_text()));
            c.traffic.push(i32::from(traffic.code()));
        }
        c
    }

    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 13] {
        [
            &self.site,
            &self.order_id,
            &self.event_id,
            &self.at,
            &self.visitor,
            &self.amount,
            &self.currency,
            &self.discount,
            &self.promo_code,
            &self.status,
            &self.items,
            &self.custom,
            &self.traffic,
        ]
    }
}
