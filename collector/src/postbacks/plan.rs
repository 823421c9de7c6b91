//! The planner: decides, once per conversion and per adjustment, which partner it is credited
//! to and whether that partner gets a postback, and stores the decision with its delivery.
//!
//! Attribution is computed at read time, so the decision is the read API's last-click credit at
//! the moment of planning: after the order was committed, and (reads wait for the deriver) after
//! the touches of everything acknowledged before it are derived. The first decision about an
//! order stands: a server confirmation arriving after the browser's conversion was planned
//! sends no second conversion postback, and an adjustment goes to the partner its order's
//! conversion was credited to.

use crate::attribution::{Credit, Model};
use crate::config::Site;
use crate::s2s::{self, Merged};
use crate::store::postbacks::delivery_id;
use crate::store::{Delivery, Plan, PostbackKind, Store, Unplanned};

use super::Payload;

/// Why planning failed (it is tried again by the next sweep).
#[derive(Debug)]
pub struct PlanError(pub String);

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<crate::store::StoreError> for PlanError {
    fn from(e: crate::store::StoreError) -> PlanError {
        PlanError(e.0)
    }
}

impl From<crate::error::AppError> for PlanError {
    fn from(e: crate::error::AppError) -> PlanError {
        PlanError(format!("{e:?}"))
    }
}

/// Who an order is credited to: the partner and, for click credit, the click.
struct Credited {
    partner: Option<String>,
    network: Option<String>,
    click_id: Option<String>,
}

/// The order as the read API shows it, or `None` when the site has no such order.
fn order(store: &dyn Store, site: &Site, order_id: &str) -> Result<Option<Merged>, PlanError> {
    Ok(arrived(store, site, order_id)?.map(|(m, _)| m))
}

/// The order as the read API shows it and when it arrived (ms): its server confirmation's
/// receipt, else the browser conversion's time.
fn arrived(store: &dyn Store, site: &Site, order_id: &str) -> Result<Option<(Merged, u64)>, PlanError> {
    let browser = store.order_conversion(&site.id, order_id)?;
    let server = store.server_order(&site.id, order_id)?;
    let at = server.as_ref().map(|o| o.received).or(browser.as_ref().map(|c| c.at));
    Ok(s2s::merge_one(browser, server).zip(at))
}

fn credit(store: &dyn Store, site: &Site, m: &Merged) -> Result<Credited, PlanError> {
    // Traffic the site excludes (bots, automation) earns no credit, so no postback: the same
    // exclusions as the read API's default answer.
    let exclude = site.traffic.excluded();
    let credit = if exclude.contains(m.shown.traffic) {
        None
    } else {
        crate::http::attribute_with(store, site, &m.shown, Model::LastClick, &m.clicks, exclude)?.credit
    };
    Ok(match credit {
        Some(Credit::Click(_, t)) => Credited {
            partner: site.partners.of_click(&t).map(|p| p.id),
            network: Some(t.network),
            click_id: Some(t.value),
        },
        Some(Credit::Promo(p)) => Credited {
            partner: Some(site.partners.of_promo(&p).id),
            network: None,
            click_id: None,
        },
        None => Credited {
            partner: None,
            network: None,
            click_id: None,
        },
    })
}

/// Decides about an order's conversion, if not decided yet, and returns the partner it is
/// credited to (the decision that stands, whoever made it). An order the site does not have is
/// left undecided, and so is one credited to nobody within `grace_ms` of its arrival: its other
/// report (the browser's conversion after the server's confirmation) may still credit a
/// partner, and is planned again when it comes (or by a later sweep).
pub fn conversion(
    store: &dyn Store,
    site: &Site,
    order_id: &str,
    now: u64,
    grace_ms: u64,
) -> Result<Option<String>, PlanError> {
    let kind = PostbackKind::Conversion;
    if let Some(decided) = store.planned(&site.id, kind, order_id, "")? {
        return Ok(decided);
    }
    let Some((m, arrival)) = arrived(store, site, order_id)? else {
        return Ok(None);
    };
    let c = credit(store, site, &m)?;
    if c.partner.is_none() && now < arrival.saturating_add(grace_ms) {
        return Ok(None);
    }
    let delivery = c
        .partner
        .as_deref()
        .and_then(|p| site.postback(p))
        .filter(|e| e.wants(kind))
        .map(|e| {
            let id = delivery_id(&site.id, kind, order_id, "", &e.partner);
            let body = Payload {
                delivery_id: id.clone(),
                kind: kind.as_str().into(),
                site: site.id.clone(),
                order_id: order_id.to_string(),
                adjustment_id: None,
                partner: e.partner.clone(),
                network: c.network.clone(),
                click_id: c.click_id.clone(),
                amount: m.shown.amount.clone(),
                currency: m.shown.currency.clone(),
                event_time: m.shown.at,
                confirmed: m.confirmed,
                adjustment_type: None,
                net_amount: None,
            };
            delivery(site, id, kind, order_id, None, &e.partner, &body, now)
        })
        .transpose()?;
    let plan = Plan {
        site: site.id.clone(),
        kind,
        order_id: order_id.to_string(),
        adjustment_id: String::new(),
        partner: c.partner,
        planned_at: now,
    };
    store.plan_postback(&plan, delivery.as_ref())?;
    // Another collector may have decided first: its decision stands.
    Ok(store.planned(&site.id, kind, order_id, "")?.flatten())
}

#[allow(clippy::too_many_arguments)]
fn delivery(
    site: &Site,
    id: String,
    kind: PostbackKind,
    order_id: &str,
    adjustment_id: Option<&str>,
    partner: &str,
    body: &Payload,
    now: u64,
) -> Result<Delivery, PlanError> {
    Ok(Delivery {
        site: site.id.clone(),
        id,
        kind,
        order_id: order_id.to_string(),
        adjustment_id: adjustment_id.map(str::to_string),
        partner: partner.to_string(),
        body: serde_json::to_string(body).map_err(|e| PlanError(e.to_string()))?,
        created_at: now,
    })
}

/// Decides about an adjustment, if not decided yet (its order's conversion first).
pub fn adjustment(
    store: &dyn Store,
    site: &Site,
    order_id: &str,
    adjustment_id: &str,
    now: u64,
    grace_ms: u64,
) -> Result<(), PlanError> {
    let kind = PostbackKind::Adjustment;
    if store.planned(&site.id, kind, order_id, adjustment_id)?.is_some() {
        return Ok(());
    }
    let partner = conversion(store, site, order_id, now, grace_ms)?;
    // The conversion's decision comes first: while it is provisional, so is the adjustment's.
    if store
        .planned(&site.id, PostbackKind::Conversion, order_id, "")?
        .is_none()
    {
        return Ok(());
    }
    let Some(m) = order(store, site, order_id)? else {
        return Ok(());
    };
    let all = store.adjustments(&site.id, order_id)?;
    let Some(adj) = all.iter().find(|a| a.adjustment_id == adjustment_id).cloned() else {
        return Ok(());
    };
    let endpoint = partner
        .as_deref()
        .and_then(|p| site.postback(p))
        .filter(|e| e.wants(kind));
    let delivery = match endpoint {
        None => None,
        Some(e) => {
            // The click credited now, if it is still the decided partner's.
            let c = credit(store, site, &m)?;
            let (network, click_id) = if c.partner.as_deref() == Some(e.partner.as_str()) {
                (c.network, c.click_id)
            } else {
                (None, None)
            };
            // Its change and the net amount after it, as the read API applies adjustments (in
            // their order: those before it, then it).
            let upto = all
                .iter()
                .position(|a| a.adjustment_id == adjustment_id)
                .map_or(0, |i| i + 1);
            let settled = s2s::settle(&m, all[..upto].to_vec());
            let change = settled.adjustments.last().map(|a| a.change.clone());
            let net = settled.net;
            let id = delivery_id(&site.id, kind, order_id, adjustment_id, &e.partner);
            let body = Payload {
                delivery_id: id.clone(),
                kind: kind.as_str().into(),
                site: site.id.clone(),
                order_id: order_id.to_string(),
                adjustment_id: Some(adjustment_id.to_string()),
                partner: e.partner.clone(),
                network,
                click_id,
                amount: change,
                currency: m.shown.currency.clone(),
                event_time: adj.at,
                confirmed: m.confirmed,
                adjustment_type: Some(adj.kind.as_str().into()),
                net_amount: net,
            };
            Some(delivery(
                site,
                id,
                kind,
                order_id,
                Some(adjustment_id),
                &e.partner,
                &body,
                now,
            )?)
        }
    };
    let plan = Plan {
        site: site.id.clone(),
        kind,
        order_id: order_id.to_string(),
        adjustment_id: adjustment_id.to_string(),
        partner,
        planned_at: now,
    };
    store.plan_postback(&plan, delivery.as_ref())?;
    Ok(())
}

/// Decides about one conversion or adjustment (see [`conversion`] for `grace_ms`).
pub fn one(store: &dyn Store, site: &Site, u: &Unplanned, now: u64, grace_ms: u64) -> Result<(), PlanError> {
    match u.kind {
        PostbackKind::Conversion => conversion(store, site, &u.order_id, now, grace_ms).map(drop),
        PostbackKind::Adjustment => adjustment(store, site, &u.order_id, &u.adjustment_id, now, grace_ms),
    }
}

/// Decides about at most `max` conversions and adjustments of the site's that have no decision
/// yet and arrived at or after `since` (ms), oldest first: one slice of a sweep. One that fails
/// is logged and left for the next sweep. Returns how many were decided, and whether the sweep
/// should go on with another slice (a full slice of which some were decided: those that could
/// not be, orders still within their grace, are the newest and come last).
pub fn sweep(
    store: &dyn Store,
    site: &Site,
    since: u64,
    now: u64,
    grace_ms: u64,
    max: usize,
) -> Result<(usize, bool), PlanError> {
    let todo = store.unplanned(&site.id, since, max)?;
    let mut decided = 0;
    for u in &todo {
        match one(store, site, u, now, grace_ms) {
            Ok(()) => {
                if store
                    .planned(&site.id, u.kind, &u.order_id, &u.adjustment_id)?
                    .is_some()
                {
                    decided += 1;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, site = %site.id, order = %u.order_id, "planning a postback (the next sweep tries again)")
            }
        }
    }
    Ok((decided, todo.len() == max && decided > 0))
}
