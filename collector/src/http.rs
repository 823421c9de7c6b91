//! The HTTP surface: the router, the shared state, and one handler per endpoint. Handlers decide
//! nothing about storage or attribution themselves; they translate HTTP to those modules.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::HashMap;
use tower_http::compression::CompressionLayer;
use utt::core::click;
use utt::core::wire::{self, Outcome, Status};

use crate::attribution::{self, Credit, Model};
use crate::config::{Config, Site};
use crate::cookie;
use crate::error::AppError;
use crate::metrics::{self, Metrics};
use crate::partners::Partner;
use crate::ratelimit::RateLimiter;
use crate::statics::Files;
use crate::store::{Store, StoredConversion};
use crate::traffic::{self, Exclude, Traffic};
use crate::writer::{WriteError, Writer};

/// The largest batch body accepted.
pub const MAX_BODY: usize = 256 * 1024;

/// Timestamps above this (2^53, JavaScript's largest exact integer) are refused: they cannot
/// come from a browser clock and would not fit the store's signed integers.
pub const MAX_TIMESTAMP: u64 = 1 << 53;

/// What every handler shares.
pub struct Shared {
    /// The configuration.
    pub config: Config,
    /// The store, for reads.
    pub store: Arc<dyn Store>,
    /// The writer, for writes.
    pub writer: Writer,
    /// The per-IP rate limiter (tests may replace it with one on a fake clock).
    pub limiter: RateLimiter,
    /// The registry `/metrics` renders.
    pub metrics: Metrics,
    /// Folders served at `/`, first match wins.
    pub statics: Vec<PathBuf>,
    /// The clock (ms since the epoch) for the times the collector records; tests may replace it.
    pub clock: fn() -> u64,
    /// Partner postbacks: the planner's hints and the sender's wake-up.
    pub postbacks: crate::postbacks::Hub,
}

/// The handle handlers receive.
pub type AppState = Arc<Shared>;

/// Milliseconds since the Unix epoch from the system clock.
pub fn system_clock() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Shared {
    /// State over a store, starting its writer thread.
    pub fn new(config: Config, store: Arc<dyn Store>, statics: Vec<PathBuf>) -> AppState {
        let writer = Writer::start(store.clone());
        Arc::new(Shared {
            limiter: RateLimiter::new(config.rate_limit),
            postbacks: crate::postbacks::Hub::new(&config),
            metrics: Metrics::new(writer.stats().clone(), store.clone()),
            writer,
            config,
            store,
            statics,
            clock: system_clock,
        })
    }
}

/// The router, with every endpoint and the metrics middleware. The read API's JSON is
/// compressed for clients that accept it (brotli or gzip); static files are sent precompressed.
pub fn app(state: AppState) -> Router {
    let files = Files::new(&state.statics);
    Router::new()
        .route("/v1/events", post(post_events).options(preflight))
        .route("/v1/cookie", post(post_cookie).options(preflight))
        .route(
            "/v1/conversions",
            get(get_conversions)
                .layer(CompressionLayer::new())
                .post(crate::s2s::post_conversion),
        )
        .route(
            "/v1/conversions/{order_id}/adjustments",
            post(crate::s2s::post_adjustment),
        )
        .route("/v1/clicks/{click_id}", get(get_click).layer(CompressionLayer::new()))
        .route(
            "/v1/postbacks",
            get(crate::postbacks::get_postbacks).layer(CompressionLayer::new()),
        )
        .route(
            "/v1/report",
            get(crate::report_api::get_report).layer(CompressionLayer::new()),
        )
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(move |req: Request| files.clone().serve(req))
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

async fn track(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = match req.extensions().get::<MatchedPath>() {
        Some(p) => p.as_str().to_string(),
        None if req.method() == Method::GET || req.method() == Method::HEAD => "static".into(),
        None => "other".into(),
    };
    let method = req.method().clone();
    let resp = next.run(req).await;
    let took = started.elapsed();
    s.metrics.request(&route, resp.status().as_u16(), took);
    tracing::debug!(%method, %route, status = resp.status().as_u16(), micros = took.as_micros() as u64, "request");
    resp
}

fn client_ip(s: &Shared, req: &Request) -> IpAddr {
    if s.config.trust_forwarded {
        let forwarded = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok());
        if let Some(ip) = forwarded {
            return ip;
        }
    }
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Adds the CORS answer for an allowed origin. `Retry-After` is exposed, or a page on another
/// origin reads it as `null` and the tag cannot wait as long as a 429 or 503 asks.
fn cors(resp: &mut Response, origin: Option<&str>, credentials: bool) {
    let h = resp.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(v) = origin.and_then(|o| HeaderValue::from_str(o).ok()) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Retry-After"),
        );
        if credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }
}

pub(crate) fn check_content_type(headers: &HeaderMap) -> Result<(), AppError> {
    let ct = header_str(headers, header::CONTENT_TYPE).unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match media.as_str() {
        "text/plain" | "application/json" => Ok(()),
        _ => Err(AppError::UnsupportedMediaType),
    }
}

/// Reads a body of at most `limit` bytes, which must have arrived within the configured
/// `server.body_timeout_ms` (a slow or stalled body is answered 408, and hyper then closes the
/// connection rather than read the rest).
pub(crate) async fn read_body(s: &Shared, headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, AppError> {
    let declared = header_str(headers, header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(AppError::TooLarge(limit));
    }
    let ms = s.config.server.body_timeout_ms;
    let read = tokio::time::timeout(Duration::from_millis(ms), axum::body::to_bytes(body, limit));
    let bytes: Bytes = read.await.map_err(|_| AppError::BodyTimeout(ms))?.map_err(|e| {
        let too_large = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit");
        if too_large {
            AppError::TooLarge(limit)
        } else {
            AppError::bad("body", "could not be read")
        }
    })?;
    Ok(bytes)
}

pub(crate) fn utf8(bytes: &Bytes) -> Result<&str, AppError> {
    std::str::from_utf8(bytes).map_err(|_| AppError::bad("body", "must be UTF-8"))
}

pub(crate) fn key_matches(expected: &str, given: Option<&str>) -> bool {
    // Constant-time over the expected key, so timing does not reveal how much of it matched.
    let given = given.unwrap_or("").as_bytes();
    let expected = expected.as_bytes();
    let mut diff = u8::from(given.len() != expected.len());
    for (i, b) in expected.iter().enumerate() {
        diff |= b ^ given.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

async fn preflight(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let origin = header_str(&headers, header::ORIGIN).filter(|o| s.config.any_allows(o));
    let Some(origin) = origin else {
        return AppError::Forbidden("origin").into_response();
    };
    let mut resp = StatusCode::NO_CONTENT.into_response();
    cors(&mut resp, Some(origin), true);
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type"),
    );
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    resp
}

async fn post_events(State(s): State<AppState>, req: Request) -> Response {
    let origin = header_str(req.headers(), header::ORIGIN).map(str::to_string);
    // Until the site is known, any configured site's origin may read the answer (so the tag can
    // see why its envelope was refused).
    let mut cors_origin = origin.clone().filter(|o| s.config.any_allows(o));
    let mut resp = match ingest(&s, req, origin.as_deref(), &mut cors_origin).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    cors(&mut resp, cors_origin.as_deref(), false);
    resp
}

async fn ingest(
    s: &Shared,
    req: Request,
    origin: Option<&str>,
    cors_origin: &mut Option<String>,
) -> Result<Response, AppError> {
    let now = (s.clock)();
    s.limiter.check(client_ip(s, &req)).map_err(AppError::TooManyRequests)?;
    let (parts, body) = req.into_parts();
    check_content_type(&parts.headers)?;
    let bytes = read_body(s, &parts.headers, body, MAX_BODY).await?;
    let batch = wire::read_batch(utf8(&bytes)?).map_err(|e| AppError::bad(e.field, e.reason))?;
    let site = s.config.site(&batch.site).ok_or(AppError::NotFound("site", "site"))?;
    match origin {
        Some(o) if !site.allows(o) => {
            *cors_origin = None;
            return Err(AppError::Forbidden("origin"));
        }
        Some(o) => *cors_origin = Some(o.to_string()),
        None => {}
    }
    if let Some(k) = &site.write_key {
        if !key_matches(k, batch.key.as_deref()) {
            return Err(AppError::Unauthorized("key"));
        }
    }
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(batch.events.len());
    let mut kinds: Vec<&'static str> = Vec::with_capacity(batch.events.len());
    let mut events = Vec::with_capacity(batch.events.len());
    let mut slots = Vec::with_capacity(batch.events.len());
    // Conversions of a site with postbacks: (outcome slot, order ID), for the planner.
    let mut orders: Vec<(usize, String)> = Vec::new();
    for item in batch.events {
        let event = match item {
            Ok(e) if e.at > MAX_TIMESTAMP || e.clicks.iter().any(|c| c.at > MAX_TIMESTAMP) => {
                Err((Some(e.id), wire_invalid("at", "timestamp out of range")))
            }
            other => other,
        };
        match event {
            Ok(e) => {
                kinds.push(wire::type_name(&e.kind));
                if let wire::Kind::Conversion(o) = &e.kind {
                    if s.postbacks.wanted(&site.id) {
                        orders.push((outcomes.len(), o.order_id.clone()));
                    }
                }
                slots.push(outcomes.len());
                outcomes.push(Outcome {
                    id: Some(e.id.clone()),
                    status: Status::Accepted,
                    reason: None,
                });
                events.push(e);
            }
            Err((id, refused)) => {
                kinds.push("unknown");
                outcomes.push(Outcome {
                    id,
                    status: Status::Rejected,
                    reason: Some(refused.to_string()),
                });
            }
        }
    }
    if !events.is_empty() {
        // One browser sent the batch: its user agent and the tag's webdriver flag class it all.
        let traffic = traffic::classify(header_str(&parts.headers, header::USER_AGENT), batch.webdriver);
        let statuses = s
            .writer
            .write(&batch.site, now, events, traffic)
            .await
            .map_err(|e| match e {
                WriteError::Closed => AppError::Unavailable,
                WriteError::Store(e) => AppError::from(e),
            })?;
        let stored = statuses.iter().filter(|st| **st == Status::Accepted).count() as u64;
        s.metrics.flagged(traffic, stored);
        for (slot, status) in slots.into_iter().zip(statuses) {
            outcomes[slot].status = status;
        }
    }
    for (slot, order_id) in orders {
        if outcomes[slot].status == Status::Accepted {
            s.postbacks
                .hint(&site.id, crate::store::PostbackKind::Conversion, &order_id, "");
        }
    }
    for (o, kind) in outcomes.iter().zip(&kinds) {
        s.metrics.event(kind, o.status);
    }
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        wire::write_outcomes(&outcomes),
    )
        .into_response())
}

fn wire_invalid(field: &'static str, reason: &'static str) -> wire::Refused {
    wire::Invalid { field, reason }.into()
}

/// The cookie endpoint's body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CookieRequest {
    site: String,
    name: String,
    value: String,
    max_age: u64,
}

async fn post_cookie(State(s): State<AppState>, req: Request) -> Response {
    let origin = header_str(req.headers(), header::ORIGIN).map(str::to_string);
    // As for events: until the site is known (a 429, a bad body), any configured site's origin
    // may read the answer.
    let mut allowed = origin.clone().filter(|o| s.config.any_allows(o));
    let mut resp = match set_cookie(&s, req, origin.as_deref(), &mut allowed).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    cors(&mut resp, allowed.as_deref(), true);
    resp
}

async fn set_cookie(
    s: &Shared,
    req: Request,
    origin: Option<&str>,
    allowed: &mut Option<String>,
) -> Result<Response, AppError> {
    s.limiter.check(client_ip(s, &req)).map_err(AppError::TooManyRequests)?;
    let (parts, body) = req.into_parts();
    check_content_type(&parts.headers)?;
    let bytes = read_body(s, &parts.headers, body, 8 * 1024).await?;
    let r: CookieRequest = serde_json::from_str(utf8(&bytes)?).map_err(|e| AppError::bad("body", &e.to_string()))?;
    let site = s.config.site(&r.site).ok_or(AppError::NotFound("site", "site"))?;
    // Only a page of the site may have the collector set its cookie: no Origin, no cookie.
    let origin = origin.filter(|o| site.allows(o));
    *allowed = origin.map(str::to_string);
    let origin = origin.ok_or(AppError::Forbidden("origin"))?;
    if r.name != cookie::NAME {
        return Err(AppError::bad("name", "must be _utt"));
    }
    if !cookie::valid_value(&r.value) {
        return Err(AppError::bad("value", "must be 1 to 3800 cookie-safe characters"));
    }
    if r.max_age > site.window_ms() / 1000 {
        return Err(AppError::bad("maxAge", "must not exceed the site's attribution window"));
    }
    let forwarded_https = header_str(&parts.headers, header::HeaderName::from_static("x-forwarded-proto"))
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let secure = forwarded_https || s.config.public_https();
    let collector_host = match s.config.public_url.as_deref() {
        Some(u) => cookie::host_of(u).to_string(),
        None => cookie::host_of(header_str(&parts.headers, header::HOST).unwrap_or("")).to_string(),
    };
    let domain = match &site.cookie_domain {
        Some(d) => Some(d.clone()),
        None => cookie::domain_for(cookie::host_of(origin), &collector_host),
    };
    let line = cookie::set_cookie(&r.value, r.max_age, secure, domain.as_deref());
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&line).map_err(|e| AppError::Internal(e.to_string()))?,
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Whether a request may read the site's orders: always when the site has no read key, else
/// with `Authorization: Bearer <read_key>`. A wrong key is refused (401), not ignored.
fn read_access(site: &Site, headers: &HeaderMap) -> Result<bool, AppError> {
    let Some(k) = &site.read_key else { return Ok(true) };
    let Some(given) = headers.get(header::AUTHORIZATION) else {
        return Ok(false);
    };
    let given = given.to_str().ok().and_then(|v| v.strip_prefix("Bearer "));
    if key_matches(k, given) {
        Ok(true)
    } else {
        Err(AppError::Unauthorized("authorization"))
    }
}

/// The site's read key, required.
pub(crate) fn read_key(site: &Site, headers: &HeaderMap) -> Result<(), AppError> {
    if read_access(site, headers)? {
        Ok(())
    } else {
        Err(AppError::Unauthorized("authorization"))
    }
}

/// One conversion as the read API shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConversionOut {
    event_id: Option<String>,
    order_id: String,
    pub(crate) at: u64,
    amount: Option<String>,
    pub(crate) currency: Option<String>,
    discount: Option<String>,
    promo_code: Option<String>,
    customer_status: Option<String>,
    items: Box<RawValue>,
    custom: Option<Box<RawValue>>,
    pub(crate) attribution: Option<CreditOut>,
    touchpoints: Vec<TouchOut>,
    promo: Option<PromoOut>,
    traffic: &'static str,
    #[serde(flatten)]
    pub(crate) settlement: Option<crate::s2s::Settlement>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreditOut {
    model: &'static str,
    network: Option<String>,
    param: Option<String>,
    click_id: Option<String>,
    click_at: Option<u64>,
    cross_device: bool,
    #[serde(flatten)]
    pub(crate) partner: PartnerOut,
}

/// The partner a click or promo code names (`crate::partners`): its ID (`null` when nothing
/// maps), display name (`null` also for an unmapped partner parameter) and how it was found.
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PartnerOut {
    pub(crate) partner: Option<String>,
    pub(crate) partner_name: Option<String>,
    partner_via: Option<&'static str>,
}

impl From<Option<Partner>> for PartnerOut {
    fn from(p: Option<Partner>) -> PartnerOut {
        match p {
            Some(p) => PartnerOut {
                partner: Some(p.id),
                partner_name: p.name,
                partner_via: Some(p.via.as_str()),
            },
            None => PartnerOut::default(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TouchOut {
    network: String,
    param: String,
    click_id: String,
    at: u64,
    path: String,
    cross_device: bool,
    traffic: &'static str,
    #[serde(flatten)]
    partner: PartnerOut,
}

#[derive(Serialize)]
struct PromoOut {
    code: String,
    partner: String,
}

fn raw(text: String) -> Result<Box<RawValue>, AppError> {
    RawValue::from_string(text).map_err(|e| AppError::Internal(format!("stored JSON: {e}")))
}

/// Attributes one stored conversion (blocking: it reads the store), without the touches whose
/// traffic class is in `exclude`.
fn attribute(
    store: &dyn Store,
    site: &Site,
    c: &StoredConversion,
    model: Model,
    exclude: Exclude,
) -> Result<attribution::Attribution, AppError> {
    attribute_with(store, site, c, model, &[], exclude)
}

/// [`attribute`], with clicks the merchant's server passed for the order as candidates too.
pub(crate) fn attribute_with(
    store: &dyn Store,
    site: &Site,
    c: &StoredConversion,
    model: Model,
    clicks: &[crate::store::Touch],
    exclude: Exclude,
) -> Result<attribution::Attribution, AppError> {
    let mut touches = match &c.visitor {
        Some(v) => store
            .touches(&c.site, v, c.at.saturating_sub(site.window_ms()), c.at)
            .map_err(AppError::from)?,
        None => Vec::new(),
    };
    // A click the server passes that the visitor's own touches already hold (the `_utt`
    // cookie's copy of a stored landing) is that touch, with the class its batch had: the
    // server's copy, read as human, would otherwise survive the exclusion of an automated
    // browser's or a bot's landing and take its credit.
    // (It still says the click is the visitor's own when the stored touch came from a linked
    // device.)
    let stored = touches.len();
    for t in clicks {
        let mut known = false;
        for s in touches[..stored]
            .iter_mut()
            .filter(|s| s.param == t.param && s.value == t.value && s.at == t.at)
        {
            s.cross_device &= t.cross_device;
            known = true;
        }
        if !known {
            touches.push(t.clone());
        }
    }
    let promo = c
        .promo_code
        .as_deref()
        .and_then(|code| site.promo_partner(code).map(|p| (code, p)));
    Ok(attribution::attribute(
        c.at,
        site.window_ms(),
        model,
        &touches,
        promo,
        exclude,
    ))
}

/// Attributes and settles conversions read by [`crate::s2s::merged`]: the rows of
/// `GET /v1/conversions` and what the report sums (blocking: it reads the store).
pub(crate) fn attributed(
    store: &dyn Store,
    site: &Site,
    rows: Vec<crate::s2s::Merged>,
    model: Model,
    exclude: Exclude,
) -> Result<Vec<ConversionOut>, AppError> {
    rows.into_iter()
        .map(|m| {
            let a = attribute_with(store, site, &m.shown, model, &m.clicks, exclude)?;
            let settlement = crate::s2s::settle(&m, store.adjustments(&site.id, &m.shown.order_id)?);
            let mut out = conversion_out(site, m.shown, a)?;
            out.settlement = Some(settlement);
            Ok(out)
        })
        .collect()
}

fn conversion_out(site: &Site, c: StoredConversion, a: attribution::Attribution) -> Result<ConversionOut, AppError> {
    let attribution = a.credit.map(|credit| match credit {
        Credit::Click(m, t) => CreditOut {
            model: m.as_str(),
            partner: site.partners.of_click(&t).into(),
            network: Some(t.network),
            param: Some(t.param),
            click_id: Some(t.value),
            click_at: Some(t.at),
            cross_device: t.cross_device,
        },
        Credit::Promo(partner) => CreditOut {
            model: "promo_code",
            network: None,
            param: None,
            click_id: None,
            click_at: None,
            cross_device: false,
            partner: Some(site.partners.of_promo(&partner)).into(),
        },
    });
    Ok(ConversionOut {
        event_id: Some(c.event_id).filter(|e| !e.is_empty()),
        order_id: c.order_id,
        at: c.at,
        amount: c.amount,
        currency: c.currency,
        discount: c.discount,
        promo_code: c.promo_code,
        customer_status: c.customer_status,
        items: raw(c.items)?,
        custom: c.custom.map(raw).transpose()?,
        attribution,
        touchpoints: a
            .touchpoints
            .into_iter()
            .map(|t| TouchOut {
                partner: site.partners.of_click(&t).into(),
                network: t.network,
                param: t.param,
                click_id: t.value,
                at: t.at,
                path: t.path,
                cross_device: t.cross_device,
                traffic: t.traffic.as_str(),
            })
            .collect(),
        promo: a.promo.map(|(code, partner)| PromoOut { code, partner }),
        traffic: c.traffic.as_str(),
        settlement: None,
    })
}

/// What the totals of the read API group a conversion by: its credit (model, network,
/// parameter, click ID, partner; all null when nobody earned it) and its currency.
fn credit_key(c: &ConversionOut) -> serde_json::Value {
    let a = c.attribution.as_ref();
    serde_json::json!({
        "model": a.map(|a| a.model),
        "network": a.and_then(|a| a.network.clone()),
        "param": a.and_then(|a| a.param.clone()),
        "clickId": a.and_then(|a| a.click_id.clone()),
        "partner": a.and_then(|a| a.partner.partner.clone()),
        "currency": c.currency,
    })
}

pub(crate) fn json_response<T: Serialize>(value: &T) -> Result<Response, AppError> {
    let text = serde_json::to_string(value).map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], text).into_response())
}

/// The query string's parameters, or a JSON 400 (axum's own rejection is plain text).
pub(crate) fn query(
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<HashMap<String, String>, AppError> {
    q.map(|Query(q)| q)
        .map_err(|_| AppError::bad("query", "must be URL-encoded UTF-8 name=value pairs"))
}

/// The `traffic` parameter of the read API and the report: the site's excluded traffic classes
/// are left out unless `traffic=all` asks for everything.
pub(crate) fn traffic_param(q: &HashMap<String, String>, site: &Site) -> Result<Exclude, AppError> {
    match q.get("traffic").map(String::as_str) {
        None => Ok(site.traffic.excluded()),
        Some("all") => Ok(Exclude::NONE),
        Some(_) => Err(AppError::bad(
            "traffic",
            "must be all (or absent: the site's exclusions apply)",
        )),
    }
}

/// The `model` parameter of the read API and the report (last click by default).
pub(crate) fn model_param(q: &HashMap<String, String>) -> Result<Model, AppError> {
    match q.get("model") {
        Some(m) => Model::parse(m).ok_or(AppError::bad("model", "must be last_click or first_click")),
        None => Ok(Model::LastClick),
    }
}

/// The site a read endpoint's `?site=` names, with its read key checked.
pub(crate) fn read_site<'a>(
    s: &'a Shared,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<&'a Site, AppError> {
    let id = q.get("site").ok_or(AppError::bad("site", "is required"))?;
    let site = s.config.site(id).ok_or(AppError::NotFound("site", "site"))?;
    read_key(site, headers)?;
    Ok(site)
}

/// A read endpoint's `since` (ms, default 0) and `limit` (1 to 10000, default 1000).
pub(crate) fn since_and_limit(q: &HashMap<String, String>) -> Result<(u64, usize), AppError> {
    let since = match q.get("since") {
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| AppError::bad("since", "must be a millisecond timestamp"))?,
        None => 0,
    };
    let limit = match q.get("limit") {
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or(AppError::bad("limit", "must be 1 to 10000"))?,
        None => 1000,
    };
    Ok((since, limit))
}

async fn get_conversions(
    State(s): State<AppState>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let q = query(q)?;
    let site = read_site(&s, &q, &headers)?;
    let site_id = &site.id;
    let (since, limit) = since_and_limit(&q)?;
    let model = model_param(&q)?;
    let exclude = traffic_param(&q, site)?;
    let state = s.clone();
    let site_id = site_id.clone();
    let out = tokio::task::spawn_blocking(move || -> Result<serde_json::Value, AppError> {
        let site = state.config.site(&site_id).ok_or(AppError::NotFound("site", "site"))?;
        let store = state.store.as_ref();
        let rows = crate::s2s::merged(store, &site_id, since, None, limit, exclude)?;
        let list = attributed(store, site, rows, model, exclude)?;
        let mut totals = crate::s2s::Totals::default();
        for out in &list {
            if let Some(settlement) = &out.settlement {
                totals.add(credit_key(out), settlement);
            }
        }
        let excluded: Vec<&str> = Traffic::ALL
            .into_iter()
            .filter(|t| exclude.contains(*t))
            .map(Traffic::as_str)
            .collect();
        serde_json::to_value(serde_json::json!({
            "site": site_id,
            "model": model.as_str(),
            "excluded": excluded,
            "conversions": list,
            "totals": totals.json(),
        }))
        .map_err(|e| AppError::Internal(e.to_string()))
    })
    .await
    .map_err(|e| AppError::Internal(e.to_string()))??;
    json_response(&out)
}

async fn get_click(
    State(s): State<AppState>,
    click_id: Result<Path<String>, PathRejection>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    // The debug page calls this from the merchant's own origin, and shows its refusals too:
    // only the site's own origins may read an answer about it. Before the site is known (an
    // unknown one, none named among several) any configured site's origin may read the refusal.
    let site = q.as_ref().ok().and_then(|Query(q)| click_site(&s.config, q).ok());
    let origin = header_str(&headers, header::ORIGIN).filter(|o| match site {
        Some(site) => site.allows(o),
        None => s.config.any_allows(o),
    });
    let mut resp = click_answer(&s, click_id, q, &headers)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    cors(&mut resp, origin, false);
    resp.headers_mut()
        .append(header::VARY, HeaderValue::from_static("Authorization"));
    resp
}

/// The site a click request is about: its `site` parameter, or the only site configured.
fn click_site<'a>(config: &'a Config, q: &HashMap<String, String>) -> Result<&'a Site, AppError> {
    match (q.get("site"), config.sites.as_slice()) {
        (Some(id), _) => config.site(id).ok_or(AppError::NotFound("site", "site")),
        (None, [only]) => Ok(only),
        (None, _) => Err(AppError::bad(
            "site",
            "is required: this collector serves several sites",
        )),
    }
}

async fn click_answer(
    s: &AppState,
    click_id: Result<Path<String>, PathRejection>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: &HeaderMap,
) -> Result<Response, AppError> {
    let Path(click_id) = click_id.map_err(|_| AppError::bad("click_id", "must be URL-encoded UTF-8"))?;
    let q = query(q)?;
    let site = click_site(&s.config, &q)?;
    let site_id = site.id.clone();
    click::validate(&click_id).map_err(|r| AppError::bad("click_id", r.as_str()))?;
    // Order IDs and amounts are the site's business: only with its read key. Without it, the
    // partner's debug check still sees that its click converted, and when.
    let orders = read_access(site, headers)?;
    let site_excludes = site.traffic.excluded();
    let state = s.clone();
    let id = click_id.clone();
    let out = tokio::task::spawn_blocking(move || -> Result<Option<serde_json::Value>, AppError> {
        let store = state.store.as_ref();
        let site = Some(site_id.as_str());
        let Some(seen) = store.click(&id, site).map_err(AppError::from)? else {
            return Ok(None);
        };
        let mut credited = Vec::new();
        // Conversions this click would have earned had the site not excluded the conversion's
        // or the click's traffic class: stored, but not credited (the partner sees why).
        let mut flagged = Vec::new();
        for c in store.conversions_near_click(&id, site, 200).map_err(AppError::from)? {
            let Some(conf) = state.config.site(&c.site) else {
                continue;
            };
            let exclude = conf.traffic.excluded();
            let mine = |a: &attribution::Attribution| match &a.credit {
                Some(Credit::Click(_, t)) if t.value == id => Some(t.clone()),
                _ => None,
            };
            let credit = if exclude.contains(c.traffic) {
                None
            } else {
                mine(&attribute(store, conf, &c, Model::LastClick, exclude)?)
            };
            let (t, list) = match credit {
                Some(t) => (t, &mut credited),
                None => match mine(&attribute(store, conf, &c, Model::LastClick, Exclude::NONE)?) {
                    Some(t) if exclude.contains(c.traffic) || exclude.contains(t.traffic) => (t, &mut flagged),
                    _ => continue,
                },
            };
            // Only this click's own facts: the order, never the visitor or other clicks.
            let partner = PartnerOut::from(conf.partners.of_click(&t));
            let mut one = serde_json::json!({
                "site": c.site, "at": c.at, "model": "last_click", "crossDevice": t.cross_device,
                "partner": partner.partner, "partnerName": partner.partner_name,
                "partnerVia": partner.partner_via,
                "traffic": c.traffic.as_str(), "clickTraffic": t.traffic.as_str(),
            });
            if orders {
                one["orderId"] = c.order_id.into();
                one["amount"] = c.amount.into();
                one["currency"] = c.currency.into();
            }
            list.push(one);
        }
        let page_views: u64 = seen.pages.iter().map(|p| p.views).sum();
        Ok(Some(serde_json::json!({
            "clickId": id,
            "firstSeen": seen.first_seen,
            "lastSeen": seen.last_seen,
            // The click's own class: its best sighting (the least class of its touches, across
            // all visitors), and whether this site excludes it: then it earns no credit, with
            // or without orders (`null` when it left no touch). Attribution classes each
            // visitor's own touch instead: when a person and an automated browser both carried
            // the click, it reads human here and the automated browser's order is still flagged.
            "traffic": seen.traffic.map(Traffic::as_str),
            "excluded": seen.traffic.map(|t| site_excludes.contains(t)),
            "landings": seen.landings.iter().map(|l| serde_json::json!({
                "site": l.site, "network": l.network, "param": l.param, "at": l.at, "path": l.path,
            })).collect::<Vec<_>>(),
            "pageViews": page_views,
            "pages": seen.pages.iter().map(|p| serde_json::json!({
                "site": p.site, "path": p.path, "views": p.views, "lastAt": p.last_at,
            })).collect::<Vec<_>>(),
            "orderDetails": orders,
            "conversions": credited,
            "flagged": flagged,
        })))
    })
    .await
    .map_err(|e| AppError::Internal(e.to_string()))??;
    match out {
        Some(v) => json_response(&v),
        None => Err(AppError::NotFound("click", "click_id")),
    }
}

async fn healthz(State(s): State<AppState>) -> Response {
    if !s.writer.is_running() {
        return AppError::Unavailable.into_response();
    }
    // While commits fail, a probe (at most every second) finds out whether they can again, so
    // the answer recovers by itself even when no events come; while they succeed, a cheap check
    // that the database file is still the one being written.
    let mut failure = s.writer.recheck().await;
    if failure.is_none() {
        let store = s.store.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.check()).await {
            s.writer.stats().outcome(Err(&e));
            failure = s.writer.stats().failure();
        }
    }
    if let Some(f) = failure {
        let body = serde_json::json!({
            "status": "failing",
            "problem": "the store cannot commit: events are refused (500, or 503 while the database is unreachable) until it can (probed every second)",
            "error": f.error,
            "failingForSeconds": f.since.elapsed().as_secs(),
        });
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
    }
    // A failing deriver does not stop ingestion (the events and their pending rows are stored),
    // so the collector stays in service, 200, but says it is degraded: the click and conversion
    // APIs then wait and answer with stale derived rows. The cause is in the log, not here.
    let body = if s.store.derive_status().failing {
        "{\"status\":\"degraded\",\"problem\":\"the derived tables are not being updated (see the \
         collector's log): events are still stored, but the click and conversion APIs answer late \
         and without the newest clicks\"}"
    } else {
        "{\"status\":\"ok\"}"
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn metrics(State(s): State<AppState>) -> Response {
    // Rendering reads the store's size and the deriver's state.
    match tokio::task::spawn_blocking(move || s.metrics.render()).await {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => AppError::Internal(format!("rendering the metrics: {e}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let cases = [
            ("secret", Some("secret"), true),
            ("secret", Some("secreT"), false),
            ("secret", Some("secret2"), false),
            ("secret", Some("secre"), false),
            ("secret", None, false),
            ("secret", Some(""), false),
        ];
        for (want, given, ok) in cases {
            assert_eq!(key_matches(want, given), ok, "{given:?}");
        }
    }
}
