//! `GET /v1/report`: the merchant's report of a range of days, by partner, computed by the
//! collector from the same attributed and settled conversions as `GET /v1/conversions`
//! ([`crate::http::attributed`]) and from the clicks that landed ([`crate::store::Store::clicks`]),
//! summed by [`crate::report`].

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Serialize;

use crate::error::AppError;
use crate::http::{attributed, json_response, model_param, query, read_site, traffic_param, AppState};
use crate::money::Money;
use crate::report::{self, Click, Credited, Range, Report, Sale};

/// The most conversions a report sums; a range with more is refused (choose a shorter one).
pub const MAX_CONVERSIONS: usize = 50_000;

/// The most clicks a report counts; a range with more is refused.
pub const MAX_CLICKS: usize = 1_000_000;

#[derive(Serialize)]
struct Answer<'a> {
    site: &'a str,
    model: &'static str,
    #[serde(flatten)]
    report: Report,
}

fn too_many(what: &str, max: usize) -> AppError {
    AppError::bad(
        "from",
        &format!("the range holds more than {max} {what}: choose a shorter one"),
    )
}

/// `GET /v1/report?site=…[&from=YYYY-MM-DD][&to=YYYY-MM-DD][&offset=minutes][&model=…][&traffic=all]`.
pub async fn get_report(
    State(s): State<AppState>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let q = query(q)?;
    let site = read_site(&s, &q, &headers)?;
    let site_id = site.id.clone();
    let model = model_param(&q)?;
    // Bots and automation the site excludes are left out of every number, as from the read API.
    let exclude = traffic_param(&q, site)?;
    let get = |k: &str| q.get(k).map(String::as_str);
    let range = Range::parse(get("from"), get("to"), get("offset"), (s.clock)())
        .map_err(|(field, reason)| AppError::bad(field, &reason))?;
    let state = s.clone();
    let out = tokio::task::spawn_blocking(move || -> Result<Response, AppError> {
        let site = state.config.site(&site_id).ok_or(AppError::NotFound("site", "site"))?;
        let store = state.store.as_ref();
        let (from, to) = (range.from_ms(), range.to_ms());
        // The store leaves the excluded clicks out before its limit: they count toward nothing.
        let touches = store.clicks(&site_id, from, to, MAX_CLICKS + 1, exclude)?;
        if touches.len() > MAX_CLICKS {
            return Err(too_many("clicks", MAX_CLICKS));
        }
        let clicks: Vec<Click> = touches
            .iter()
            .map(|t| {
                let p = site.partners.of_click(t);
                Click {
                    at: t.at,
                    partner: Credited {
                        id: p.as_ref().map(|p| p.id.clone()),
                        name: p.and_then(|p| p.name),
                    },
                }
            })
            .collect();
        // The range's conversions, oldest first: one more than the bound says whether the
        // range holds more.
        let rows = crate::s2s::merged(store, &site_id, from, Some(to), MAX_CONVERSIONS + 1, exclude)?;
        if rows.len() > MAX_CONVERSIONS {
            return Err(too_many("conversions", MAX_CONVERSIONS));
        }
        let sales: Vec<Sale> = attributed(store, site, rows, model, exclude)?
            .into_iter()
            .map(|c| {
                let partner = c.attribution.map(|a| a.partner).unwrap_or_default();
                let s = c.settlement.as_ref().map(|s| s.sums);
                Sale {
                    at: c.at,
                    partner: Credited {
                        id: partner.partner,
                        name: partner.partner_name,
                    },
                    currency: c.currency,
                    gross: s.map_or(Money::ZERO, |s| s.gross),
                    adjustments: s.map_or(Money::ZERO, |s| s.adjustments),
                    net: s.map_or(Money::ZERO, |s| s.net),
                }
            })
            .collect();
        json_response(&Answer {
            site: &site_id,
            model: model.as_str(),
            report: report::build(&range, &clicks, &sales),
        })
    })
    .await
    .map_err(|e| AppError::Internal(e.to_string()))??;
    Ok(out)
}
