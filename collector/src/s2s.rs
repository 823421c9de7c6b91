//! Server-to-server: the merchant's backend reports an order (`POST /v1/conversions`) and its
//! refunds and corrected amounts (`POST /v1/conversions/{orderId}/adjustments`), with the site's
//! server key. And what the read API makes of them: a browser conversion and a server
//! confirmation of the same (site, order ID) are one conversion, `confirmed`, with the server's
//! amount, the browser's kept beside it, and gross, adjustments and net.

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::collections::HashMap;
use utt::core::json::{self, Json};
use utt::core::wire::{self, CustomerStatus, Outcome, Status};
use utt::core::{click, record};

use crate::config::Site;
use crate::error::AppError;
use crate::http::{check_content_type, key_matches, query, read_body, utf8, AppState, MAX_BODY, MAX_TIMESTAMP};
use crate::money::Money;
use crate::store::{Adjusted, Adjustment, AdjustmentKind, ServerOrder, Store, StoredConversion, Touch};
use crate::traffic::{Exclude, Traffic};

/// The largest adjustment body accepted.
pub const MAX_ADJUSTMENT_BODY: usize = 8 * 1024;

/// Checks the site's server key in `Authorization: Bearer …`.
fn server_key(site: &Site, headers: &HeaderMap) -> Result<(), AppError> {
    let Some(key) = &site.server_key else {
        return Err(AppError::Denied(
            "authorization",
            "this site has no server_key: server-to-server conversions are off for it",
        ));
    };
    let Some(given) = headers.get(header::AUTHORIZATION) else {
        return Err(AppError::Unauthorized("authorization"));
    };
    let given = given.to_str().ok().and_then(|v| v.strip_prefix("Bearer "));
    if key_matches(key, given) {
        return Ok(());
    }
    let other = [&site.write_key, &site.read_key]
        .into_iter()
        .flatten()
        .any(|k| key_matches(k, given));
    if other {
        // The write key is in every page of the shop: it must never confirm or refund orders.
        return Err(AppError::Denied(
            "authorization",
            "this is the site's write or read key, not its server key",
        ));
    }
    Err(AppError::Unauthorized("authorization"))
}

/// The site named by `?site=`, with its server key checked.
fn site_of<'a>(s: &'a AppState, q: &HashMap<String, String>, headers: &HeaderMap) -> Result<&'a Site, AppError> {
    let id = q.get("site").ok_or(AppError::bad("site", "is required"))?;
    let site = s.config.site(id).ok_or(AppError::NotFound("site", "site"))?;
    server_key(site, headers)?;
    Ok(site)
}

/// Reads the body as a JSON object whose members are all among `allowed`.
async fn object(
    s: &AppState,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    allowed: &[&str],
) -> Result<Json, AppError> {
    check_content_type(headers)?;
    let bytes = read_body(s, headers, body, limit).await?;
    let v = json::parse(utf8(&bytes)?).map_err(|_| AppError::bad("body", "must be JSON"))?;
    let Some(members) = v.as_obj() else {
        return Err(AppError::bad("body", "must be a JSON object"));
    };
    if let Some((k, _)) = members.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        return Err(AppError::bad(k, "is not a known member"));
    }
    Ok(v)
}

fn time(v: &Json, field: &str, default: Option<u64>) -> Result<u64, AppError> {
    match v.get(field) {
        None | Some(Json::Null) => default.ok_or(AppError::bad(field, "is required")),
        Some(t) => t
            .as_u64()
            .filter(|&t| t <= MAX_TIMESTAMP)
            .ok_or(AppError::bad(field, "must be a millisecond timestamp")),
    }
}

fn text(v: &Json, field: &str, max: usize) -> Result<Option<String>, AppError> {
    match v.get(field) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Str(s)) if !s.is_empty() && s.len() <= max && !s.chars().any(char::is_control) => {
            Ok(Some(s.clone()))
        }
        Some(_) => Err(AppError::bad(
            field,
            &format!("must be a string of 1 to {max} bytes without control characters"),
        )),
    }
}

/// The click a merchant's server kept itself: `{"clickId", "param", "network"?, "at"?}`.
fn stored_click(v: &Json, at: u64) -> Result<Touch, AppError> {
    if v.as_obj().is_none_or(|m| {
        m.iter()
            .any(|(k, _)| !["clickId", "param", "network", "at"].contains(&k.as_str()))
    }) {
        return Err(AppError::bad(
            "click",
            "must be an object of clickId, param, network and at",
        ));
    }
    let value = text(v, "clickId", click::MAX_VALUE_LEN)?.ok_or(AppError::bad("click.clickId", "is required"))?;
    click::validate(&value).map_err(|r| AppError::bad("click.clickId", r.as_str()))?;
    let param = text(v, "param", 128)?.ok_or(AppError::bad("click.param", "is required"))?;
    let network = match (text(v, "network", 128)?, click::network_of(&param, &[])) {
        (Some(n), _) => n,
        (None, Some(n)) => n.to_string(),
        (None, None) => {
            return Err(AppError::bad(
                "click.network",
                "is required for a parameter that is not built in",
            ))
        }
    };
    let param = click::canonical_param(&param, &[]).map_or(param, str::to_string);
    let clicked = time(v, "at", Some(at)).map_err(|_| AppError::bad("click.at", "must be a millisecond timestamp"))?;
    Ok(Touch {
        param,
        network,
        value,
        at: clicked,
        path: String::new(),
        // No landing URL came with it: its partner is found by click ID (`partners.clicks`).
        landing: String::new(),
        // The merchant's server vouches for the clicks it passes.
        traffic: Traffic::Human,
        cross_device: false,
    })
}

/// `POST /v1/conversions?site=…`: an order reported by the merchant's server.
pub async fn post_conversion(
    State(s): State<AppState>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    let received = (s.clock)();
    let q = query(q)?;
    let site = site_of(&s, &q, &headers)?;
    let mut v = object(&s, &headers, body, MAX_BODY, &["order", "at", "cookie", "click"]).await?;
    let at = time(&v, "at", None)?;
    let order = match v.get_mut("order") {
        Some(o) => wire::read_order(o).map_err(|e| AppError::bad(e.field, e.reason))?,
        None => return Err(AppError::bad("order", "is required")),
    };
    let mut visitor = None;
    let mut clicks = Vec::new();
    match v.get("cookie") {
        None | Some(Json::Null) => {}
        Some(Json::Str(c)) => {
            let r = record::decode(c).ok_or(AppError::bad(
                "cookie",
                "is not a _utt record (pass the cookie's value exactly as the Cookie header has it)",
            ))?;
            visitor = Some(r.visitor);
            clicks.extend(r.clicks.into_iter().map(|c| Touch {
                param: c.param,
                network: c.network,
                value: c.value,
                at: c.at,
                // The cookie keeps the landing's UTM context, not its other parameters.
                landing: crate::store::derived::utm_query(&c.utm),
                path: c.path,
                cross_device: false,
                traffic: Traffic::Human,
            }));
        }
        Some(_) => return Err(AppError::bad("cookie", "must be a string")),
    }
    if let Some(c) = v.get("click").filter(|c| **c != Json::Null) {
        clicks.push(stored_click(c, at)?);
    }
    let conversion = StoredConversion {
        site: site.id.clone(),
        event_id: String::new(),
        order_id: order.order_id.clone(),
        at,
        visitor,
        amount: order.amount.as_ref().map(|a| a.text.clone()),
        currency: order.currency.clone(),
        discount: order.discount.as_ref().map(|a| a.text.clone()),
        promo_code: order.promo_code.clone(),
        customer_status: order.customer_status.map(|c| match c {
            CustomerStatus::New => "new".to_string(),
            CustomerStatus::Returning => "returning".to_string(),
        }),
        items: crate::store::items_json(&order),
        custom: order.custom.as_ref().map(|c| c.to_text()),
        traffic: Traffic::Human,
    };
    let confirmed = ServerOrder {
        conversion,
        received,
        clicks,
    };
    let store = s.store.clone();
    let status = tokio::task::spawn_blocking(move || store.confirm(&confirmed))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))??;
    s.metrics.event("server_conversion", status);
    if status == Status::Accepted {
        s.postbacks
            .hint(&site.id, crate::store::PostbackKind::Conversion, &order.order_id, "");
    }
    Ok(outcome(order.order_id, status))
}

/// The event endpoint's answer for one item.
fn outcome(id: String, status: Status) -> Response {
    let body = wire::write_outcomes(&[Outcome {
        id: Some(id),
        status,
        reason: None,
    }]);
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `POST /v1/conversions/{orderId}/adjustments?site=…`: a refund or a corrected amount.
pub async fn post_adjustment(
    State(s): State<AppState>,
    order_id: Result<Path<String>, PathRejection>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    let received = (s.clock)();
    let Path(order_id) = order_id.map_err(|_| AppError::bad("orderId", "must be URL-encoded UTF-8"))?;
    let q = query(q)?;
    let site = site_of(&s, &q, &headers)?;
    let allowed = ["adjustmentId", "type", "amount", "reason", "at"];
    let v = object(&s, &headers, body, MAX_ADJUSTMENT_BODY, &allowed).await?;
    let adjustment_id = text(&v, "adjustmentId", 128)?.ok_or(AppError::bad("adjustmentId", "is required"))?;
    let kind = match v.get("type") {
        Some(Json::Str(t)) => AdjustmentKind::parse(t),
        _ => None,
    }
    .ok_or(AppError::bad("type", "must be refund or correction"))?;
    let amount = match v.get("amount") {
        None | Some(Json::Null) => None,
        Some(a) => Some(
            wire::Decimal::from_json(a, "amount")
                .map_err(|e| AppError::bad(e.field, e.reason))?
                .text,
        ),
    };
    if kind == AdjustmentKind::Correction && amount.is_none() {
        return Err(AppError::bad(
            "amount",
            "is required for a correction (the order's new amount)",
        ));
    }
    let reason = text(&v, "reason", 512)?.ok_or(AppError::bad("reason", "is required"))?;
    let at = time(&v, "at", Some(received))?;
    if order_id.is_empty() || order_id.len() > 128 || order_id.chars().any(char::is_control) {
        return Err(AppError::bad(
            "orderId",
            "must be 1 to 128 bytes without control characters",
        ));
    }
    let a = Adjustment {
        site: site.id.clone(),
        order_id: order_id.clone(),
        adjustment_id: adjustment_id.clone(),
        kind,
        amount,
        reason,
        at,
        received,
    };
    let store = s.store.clone();
    let done = tokio::task::spawn_blocking(move || store.adjust(&a))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))??;
    let status = match done {
        Adjusted::Accepted => Status::Accepted,
        Adjusted::Duplicate => Status::Duplicate,
        Adjusted::UnknownOrder => return Err(AppError::NotFound("order", "orderId")),
    };
    s.metrics.event("adjustment", status);
    if status == Status::Accepted {
        s.postbacks.hint(
            &site.id,
            crate::store::PostbackKind::Adjustment,
            &order_id,
            &adjustment_id,
        );
    }
    Ok(outcome(adjustment_id, status))
}

/// One conversion of the read API: the browser's, the server's, or both merged.
pub struct Merged {
    /// The conversion as shown: the server's order when it confirmed it (with the browser's
    /// event ID and visitor when there is a browser conversion), else the browser's.
    pub shown: StoredConversion,
    /// Whether the merchant's server confirmed it.
    pub confirmed: bool,
    /// The browser's amount, when both the browser and the server reported the order.
    pub browser_amount: Option<String>,
    /// Whether the browser reported it.
    pub from_browser: bool,
    /// The clicks the server passed (credited like the visitor's own).
    pub clicks: Vec<Touch>,
}

/// The site's conversions at or after `since` (and before `until`, when given), oldest first,
/// at most `limit`: browser conversions (each with its server confirmation, if any) and
/// confirmations the browser never reported, each order once. A browser conversion whose
/// traffic class is in `exclude` is left out with its confirmation: the browser's class stands
/// for the order (a test order the merchant's server also confirmed is still a test order).
/// Rows at or after `until` are cut before their confirmations are looked up.
pub fn merged(
    store: &dyn Store,
    site: &str,
    since: u64,
    until: Option<u64>,
    limit: usize,
    exclude: Exclude,
) -> Result<Vec<Merged>, AppError> {
    let before = |at: u64| until.is_none_or(|u| at < u);
    let mut out = Vec::new();
    for c in store.conversions(site, since, limit, exclude)? {
        // Oldest first: the first row at or after `until` ends the range.
        if !before(c.at) {
            break;
        }
        let o = store.server_order(site, &c.order_id)?;
        out.extend(merge_one(Some(c), o));
    }
    for o in store.server_only_orders(site, since, limit)? {
        if before(o.conversion.at) {
            out.extend(merge_one(None, Some(o)));
        }
    }
    out.sort_by(|a, b| (a.shown.at, &a.shown.order_id).cmp(&(b.shown.at, &b.shown.order_id)));
    out.truncate(limit);
    Ok(out)
}

/// One order as the read API shows it, from the browser's conversion and the server's
/// confirmation of it (either may be missing; `None` when both are).
pub fn merge_one(browser: Option<StoredConversion>, server: Option<ServerOrder>) -> Option<Merged> {
    Some(match (browser, server) {
        (Some(c), Some(o)) => Merged {
            browser_amount: c.amount.clone(),
            shown: StoredConversion {
                event_id: c.event_id,
                at: c.at,
                visitor: c.visitor.or(o.conversion.visitor.clone()),
                traffic: c.traffic,
                ..o.conversion
            },
            confirmed: true,
            from_browser: true,
            clicks: o.clicks,
        },
        (Some(c), None) => Merged {
            shown: c,
            confirmed: false,
            browser_amount: None,
            from_browser: true,
            clicks: Vec::new(),
        },
        (None, Some(o)) => Merged {
            shown: o.conversion,
            confirmed: true,
            browser_amount: None,
            from_browser: false,
            clicks: o.clicks,
        },
        (None, None) => return None,
    })
}

/// One adjustment as the read API shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdjustmentOut {
    pub(crate) adjustment_id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    amount: Option<String>,
    reason: String,
    at: u64,
    /// What it changed the net amount by (negative for a refund).
    pub(crate) change: String,
}

/// A conversion's money: gross (its amount), the adjustments in order, their total, and net.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Settlement {
    /// Whether the merchant's server confirmed the order.
    pub confirmed: bool,
    /// The browser's amount, when the server confirmed an order the browser reported too.
    pub browser_amount: Option<String>,
    /// The amount before adjustments (the server's when confirmed).
    pub gross: Option<String>,
    /// The adjustments, by time.
    pub adjustments: Vec<AdjustmentOut>,
    /// What they changed in all (`0` without any).
    pub adjustment_total: Option<String>,
    /// Gross plus adjustments.
    pub net: Option<String>,
    /// Gross, the adjustments' total and net as numbers (zero where the texts are absent), for
    /// the totals and the report to sum without reading the texts back.
    #[serde(skip)]
    pub sums: Sums,
}

/// A settlement's amounts as numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sums {
    /// The amount before adjustments.
    pub gross: Money,
    /// What the adjustments changed in all.
    pub adjustments: Money,
    /// Gross plus adjustments.
    pub net: Money,
}

/// Applies an order's adjustments in order to its gross amount: a refund takes its amount off
/// (all that is left without one), a correction makes the amount what it says.
pub fn settle(m: &Merged, adjustments: Vec<Adjustment>) -> Settlement {
    let gross = m.shown.amount.as_deref().and_then(Money::parse);
    let start = gross.unwrap_or(Money::ZERO);
    let mut net = start;
    let mut list = Vec::with_capacity(adjustments.len());
    for a in adjustments {
        let amount = a.amount.as_deref().and_then(Money::parse);
        let after = match (a.kind, amount) {
            (AdjustmentKind::Refund, Some(x)) => net.minus(x),
            (AdjustmentKind::Refund, None) => net.minus(net),
            (AdjustmentKind::Correction, Some(x)) => x.plus(net.minus(net)),
            (AdjustmentKind::Correction, None) => net,
        };
        list.push(AdjustmentOut {
            adjustment_id: a.adjustment_id,
            kind: a.kind.as_str(),
            amount: a.amount,
            reason: a.reason,
            at: a.at,
            change: after.minus(net).text(),
        });
        net = after;
    }
    let any = gross.is_some() || !list.is_empty();
    Settlement {
        confirmed: m.confirmed,
        browser_amount: m.browser_amount.clone(),
        gross: m.shown.amount.clone(),
        adjustment_total: any.then(|| net.minus(start).text()),
        net: any.then(|| net.text()),
        adjustments: list,
        sums: Sums {
            gross: start,
            adjustments: net.minus(start),
            net,
        },
    }
}

/// Per credited click or partner and currency: conversions, gross, adjustments and net.
#[derive(Default)]
pub struct Totals {
    rows: Vec<(serde_json::Value, u64, Money, Money, Money)>,
}

impl Totals {
    /// Counts one conversion under its credit (`key`: the credit's identifying fields and the
    /// currency).
    pub fn add(&mut self, key: serde_json::Value, s: &Settlement) {
        let Sums {
            gross,
            adjustments: adj,
            net,
        } = s.sums;
        match self.rows.iter_mut().find(|r| r.0 == key) {
            Some(r) => {
                r.1 += 1;
                r.2 = r.2.plus(gross);
                r.3 = r.3.plus(adj);
                r.4 = r.4.plus(net);
            }
            None => self.rows.push((key, 1, gross, adj, net)),
        }
    }

    /// The rows as the read API shows them, in the order the credits first appeared.
    pub fn json(self) -> Vec<serde_json::Value> {
        self.rows
            .into_iter()
            .map(|(mut key, n, gross, adj, net)| {
                key["conversions"] = n.into();
                key["gross"] = gross.text().into();
                key["adjustments"] = adj.text().into();
                key["net"] = net.text().into();
                key
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Batch, ClickSeen, Counts, StoreError};
    use std::sync::Mutex;

    /// Browser conversions at 10, 20, …, 100 ms and server-only orders at 15 and 95 ms, which
    /// records the orders it is asked to look up.
    #[derive(Default)]
    struct Orders {
        looked_up: Mutex<Vec<String>>,
    }

    fn order(id: &str, at: u64) -> StoredConversion {
        StoredConversion {
            site: "demo".into(),
            event_id: format!("e-{id}"),
            order_id: id.into(),
            at,
            visitor: None,
            amount: None,
            currency: None,
            discount: None,
            promo_code: None,
            customer_status: None,
            items: "[]".into(),
            custom: None,
            traffic: Traffic::Human,
        }
    }

    impl Store for Orders {
        fn append(&self, _: &[&Batch]) -> Result<Vec<Status>, StoreError> {
            Ok(Vec::new())
        }
        fn conversions(
            &self,
            _: &str,
            since: u64,
            limit: usize,
            _: Exclude,
        ) -> Result<Vec<StoredConversion>, StoreError> {
            let all = (1..=10).map(|n| order(&format!("B{n}"), n * 10));
            Ok(all.filter(|c| c.at >= since).take(limit).collect())
        }
        fn server_order(&self, _: &str, order_id: &str) -> Result<Option<ServerOrder>, StoreError> {
            self.looked_up.lock().unwrap().push(order_id.to_string());
            Ok(None)
        }
        fn server_only_orders(&self, _: &str, since: u64, limit: usize) -> Result<Vec<ServerOrder>, StoreError> {
            let all = [("S15", 15), ("S95", 95)].map(|(id, at)| ServerOrder {
                conversion: StoredConversion {
                    event_id: String::new(),
                    ..order(id, at)
                },
                received: at,
                clicks: Vec::new(),
            });
            Ok(all
                .into_iter()
                .filter(|o| o.conversion.at >= since)
                .take(limit)
                .collect())
        }
        fn touches(&self, _: &str, _: &str, _: u64, _: u64) -> Result<Vec<Touch>, StoreError> {
            Ok(Vec::new())
        }
        fn click(&self, _: &str, _: Option<&str>) -> Result<Option<ClickSeen>, StoreError> {
            Ok(None)
        }
        fn conversions_near_click(
            &self,
            _: &str,
            _: Option<&str>,
            _: usize,
        ) -> Result<Vec<StoredConversion>, StoreError> {
            Ok(Vec::new())
        }
        fn event(&self, _: &str) -> Result<Option<String>, StoreError> {
            Ok(None)
        }
        fn counts(&self) -> Result<Counts, StoreError> {
            Ok(Counts::default())
        }
        fn size_bytes(&self) -> u64 {
            0
        }
        fn close(&self) -> Result<(), StoreError> {
            Ok(())
        }
    }

    fn ids(rows: &[Merged]) -> Vec<&str> {
        rows.iter().map(|m| m.shown.order_id.as_str()).collect()
    }

    /// The report's range [20, 50): only its orders, and only its browser conversions'
    /// confirmations looked up (not every conversion after the range's end).
    #[test]
    fn a_bounded_read_looks_up_only_the_ranges_orders() {
        let store = Orders::default();
        let rows = merged(&store, "demo", 20, Some(50), 1000, Exclude::NONE).unwrap();
        assert_eq!(ids(&rows), ["B2", "B3", "B4"]);
        assert_eq!(*store.looked_up.lock().unwrap(), ["B2", "B3", "B4"]);
        // Unbounded (GET /v1/conversions): everything from `since` on, up to the limit.
        let store = Orders::default();
        let rows = merged(&store, "demo", 20, None, 1000, Exclude::NONE).unwrap();
        assert_eq!(
            ids(&rows),
            ["B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "S95", "B10"]
        );
        assert_eq!(store.looked_up.lock().unwrap().len(), 9);
        let rows = merged(&Orders::default(), "demo", 10, Some(20), 1000, Exclude::NONE).unwrap();
        assert_eq!(ids(&rows), ["B1", "S15"]);
    }
}
