//! Signed partner postbacks: when a conversion is credited to a partner that registered a
//! postback URL (`[[sites.postbacks]]`), and when such an order is adjusted, the collector
//! POSTs a signed JSON body to the partner from a durable outbox.
//!
//! - [`plan`] decides, after the order is committed, who the conversion is credited to (the
//!   read API's last-click attribution) and records that decision with its delivery in one
//!   transaction: once per conversion and adjustment, however often or wherever it is planned.
//! - [`send`] claims due deliveries, sends them (`Idempotency-Key`, `Utt-Signature`) and
//!   records each attempt: delivered on 2xx, retried with exponential backoff and jitter on a
//!   network error, a timeout, 408, 425, 429 or 5xx until the give-up age, failed at once on
//!   any other answer.
//! - This module: the configuration, the URL template, the body, the signature, and the read
//!   API (`GET /v1/postbacks`).

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};

use crate::config::Site;
use crate::error::AppError;
use crate::http::{query, AppState};
use crate::store::{PostbackKind, PostbackQuery, PostbackRow, PostbackStatus};

pub mod plan;
pub mod send;

/// One partner's postback on a site (`[[sites.postbacks]]`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// The partner, as the read API names it (`partner`): one that `[sites.partners]` or
    /// `promo_codes` credits, or `<network>:<partner ID>` for an unmapped partner parameter.
    pub partner: String,
    /// The URL template (`http://` or `https://`), with placeholders among [`PLACEHOLDERS`].
    pub url: String,
    /// The HMAC-SHA256 key the partner verifies `Utt-Signature` with.
    pub secret: String,
    /// What is posted back: `conversion`, `adjustment` (both by default).
    #[serde(default = "both")]
    pub on: Vec<String>,
}

fn both() -> Vec<String> {
    vec!["conversion".into(), "adjustment".into()]
}

impl Endpoint {
    /// Whether this kind of postback is sent to it.
    pub fn wants(&self, kind: PostbackKind) -> bool {
        self.on.iter().any(|k| k == kind.as_str())
    }
}

/// The retry policy and the sender's limits (`[postbacks]`); every key is optional.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// The wait after the first failed attempt; doubled after each further one.
    pub initial_backoff_ms: u64,
    /// The longest wait between two attempts.
    pub max_backoff_ms: u64,
    /// A delivery still failing this long after it was planned is given up (`failed`).
    pub give_up_after_ms: u64,
    /// How long one attempt may take until the answer's head (connecting, sending, waiting);
    /// its body, kept for an error's snippet, gets at most 2 s more and counts for nothing.
    pub timeout_ms: u64,
    /// How often the outbox is looked at for due deliveries when nothing wakes the sender.
    pub poll_ms: u64,
    /// How often orders and adjustments without a decision are looked for (a collector that
    /// stopped between storing an order and planning it; another collector's orders).
    pub sweep_ms: u64,
    /// Deliveries sent at the same time by one collector.
    pub max_in_flight: usize,
    /// How long after an order arrived a decision that nobody is credited stays provisional:
    /// within it nothing is stored, so the order's other report (a browser conversion whose
    /// visitor has the partner's click, after a server confirmation without cookie or click)
    /// still decides; after it, the sweep stores "nobody".
    pub undecided_grace_ms: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            initial_backoff_ms: 10_000,
            max_backoff_ms: 3_600_000,
            give_up_after_ms: 72 * 3_600_000,
            timeout_ms: 10_000,
            poll_ms: 1_000,
            sweep_ms: 60_000,
            max_in_flight: 16,
            undecided_grace_ms: 600_000,
        }
    }
}

impl Policy {
    /// Checks the bounds, naming the key at fault.
    pub fn check(&self) -> Result<(), String> {
        let day = 86_400_000;
        let ms = [
            ("initial_backoff_ms", self.initial_backoff_ms, day),
            ("max_backoff_ms", self.max_backoff_ms, day),
            ("give_up_after_ms", self.give_up_after_ms, 30 * day),
            ("timeout_ms", self.timeout_ms, 300_000),
            ("poll_ms", self.poll_ms, 3_600_000),
            ("sweep_ms", self.sweep_ms, day),
            ("undecided_grace_ms", self.undecided_grace_ms, day),
        ];
        for (key, value, max) in ms {
            if value == 0 || value > max {
                return Err(format!(
                    "config: postbacks.{key} must be 1..={max} (milliseconds), not {value}"
                ));
            }
        }
        if self.initial_backoff_ms > self.max_backoff_ms {
            return Err("config: postbacks.initial_backoff_ms must not exceed max_backoff_ms".into());
        }
        if self.max_in_flight == 0 || self.max_in_flight > 1024 {
            return Err(format!(
                "config: postbacks.max_in_flight must be 1..=1024, not {}",
                self.max_in_flight
            ));
        }
        Ok(())
    }

    /// How long a claimed delivery is leased to the collector sending it: the attempt's
    /// timeout and time to record it. After that another collector (or this one, restarted)
    /// may send it again.
    pub fn lease_ms(&self) -> u64 {
        self.timeout_ms + 30_000
    }

    /// The wait before attempt `failed + 1`, after `failed` failed attempts (1 or more): the
    /// initial backoff doubled per further failure, at most the maximum, then jittered down by
    /// up to half (from `seed`, so deliveries failing together spread out).
    pub fn backoff_ms(&self, failed: u32, seed: &str) -> u64 {
        let doubled = self
            .initial_backoff_ms
            .saturating_mul(1u64 << failed.saturating_sub(1).min(40));
        let base = doubled.min(self.max_backoff_ms);
        let jitter = {
            use sha2::{Digest, Sha256};
            let h = Sha256::new()
                .chain_update(seed.as_bytes())
                .chain_update(failed.to_le_bytes())
                .finalize();
            u64::from(u16::from_le_bytes([h[0], h[1]]))
        };
        // base × (1 − jitter/2^17): between half and all of it.
        base - ((u128::from(base) * u128::from(jitter)) >> 17) as u64
    }
}

/// The placeholders a URL template may use, each replaced by the body's value, percent-encoded
/// (an absent value by nothing).
pub const PLACEHOLDERS: [&str; 10] = [
    "clickId",
    "orderId",
    "amount",
    "currency",
    "partner",
    "eventTime",
    "network",
    "kind",
    "adjustmentId",
    "deliveryId",
];

/// Everything but unreserved characters is percent-encoded in a substituted value.
const VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The body of a postback, frozen when it is planned: every attempt sends these same bytes.
/// Fields it does not know are ignored when read back: a newer collector's body stays sendable
/// by an older one (the bytes sent are the stored ones).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    /// The delivery's ID, also its `Idempotency-Key`.
    pub delivery_id: String,
    /// `conversion` or `adjustment`.
    pub kind: String,
    /// The site.
    pub site: String,
    /// The merchant's order ID.
    pub order_id: String,
    /// The adjustment's ID (adjustments only).
    pub adjustment_id: Option<String>,
    /// The partner credited.
    pub partner: String,
    /// The credited click's network (`null` for promo-code credit).
    pub network: Option<String>,
    /// The credited click's ID (`null` for promo-code credit).
    pub click_id: Option<String>,
    /// A conversion's amount (the server's when it confirmed the order); an adjustment's
    /// change to it (negative for a refund). Exact decimal text.
    pub amount: Option<String>,
    /// The order's currency.
    pub currency: Option<String>,
    /// When the order was placed or the adjustment made (ms since the epoch).
    pub event_time: u64,
    /// Whether the merchant's server confirmed the order (when planned).
    pub confirmed: bool,
    /// An adjustment's type: `refund` or `correction`.
    pub adjustment_type: Option<String>,
    /// The order's net amount after the adjustment (adjustments only).
    pub net_amount: Option<String>,
}

impl Payload {
    /// The value of a placeholder.
    fn value(&self, name: &str) -> Option<String> {
        match name {
            "clickId" => self.click_id.clone(),
            "orderId" => Some(self.order_id.clone()),
            "amount" => self.amount.clone(),
            "currency" => self.currency.clone(),
            "partner" => Some(self.partner.clone()),
            "eventTime" => Some(self.event_time.to_string()),
            "network" => self.network.clone(),
            "kind" => Some(self.kind.clone()),
            "adjustmentId" => self.adjustment_id.clone(),
            "deliveryId" => Some(self.delivery_id.clone()),
            _ => None,
        }
    }
}

/// The URL of a template with the body's values substituted, percent-encoded; or why the
/// template is refused (an unknown placeholder, a brace without its pair).
pub fn expand(template: &str, p: &Payload) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        if rest[i..].starts_with('}') {
            return Err("has a '}' without its '{'".into());
        }
        let Some(j) = rest[i..].find('}') else {
            return Err("has a '{' without its '}'".into());
        };
        let name = &rest[i + 1..i + j];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "has an unknown placeholder {{{name}}} (known: {})",
                PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(" ")
            ));
        }
        out.extend(utf8_percent_encode(&p.value(name).unwrap_or_default(), VALUE));
        rest = &rest[i + j + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `Utt-Signature`'s value for a body sent at `t` (Unix seconds): `t=<t>,v1=<hex
/// HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &str, t: u64, body: &str) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("unreachable: HMAC takes a key of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!(
        "t={t},v1={}",
        crate::store::postbacks::hex(&mac.finalize().into_bytes())
    )
}

/// A sample body, for checking templates at start.
fn sample() -> Payload {
    Payload {
        delivery_id: "0".repeat(32),
        kind: "conversion".into(),
        site: "site".into(),
        order_id: "ORD-1".into(),
        adjustment_id: Some("RF-1".into()),
        partner: "partner".into(),
        network: Some("impact".into()),
        click_id: Some("abc".into()),
        amount: Some("1.00".into()),
        currency: Some("EUR".into()),
        event_time: 1,
        confirmed: false,
        adjustment_type: None,
        net_amount: None,
    }
}

/// Checks a site's postbacks, with the site and key in the message: known placeholders, an
/// http(s) URL with a host, a secret of at least 16 visible ASCII characters, `on` among the
/// kinds, one postback per partner, and a partner some mapping credits.
pub fn check(site: &Site) -> Result<(), String> {
    let at = |i: usize, key: &str, what: &str| format!("config: site {:?}: postbacks[{i}].{key} {what}", site.id);
    for (i, e) in site.postbacks.iter().enumerate() {
        let p = &e.partner;
        if p.trim().is_empty() || p.len() > 128 || p.chars().any(char::is_control) {
            return Err(at(
                i,
                "partner",
                "must be 1 to 128 characters without control characters",
            ));
        }
        if !credited(site, p) {
            return Err(at(
                i,
                "partner",
                &format!("{p:?} is a partner no mapping (partners.ids, clicks, utm_sources, promo_codes) credits, nor \"<network>:<partner ID>\" of a network in partners.params"),
            ));
        }
        if site.postbacks[..i].iter().any(|o| o.partner == *p) {
            return Err(at(i, "partner", &format!("{p:?} has two postbacks")));
        }
        let url = expand(&e.url, &sample()).map_err(|why| at(i, "url", &why))?;
        // A value in the scheme, user, host or port would let a click ID choose where the
        // signed postback goes.
        let head = e.url.split_once("://").map_or("", |(scheme, rest)| {
            &e.url[..scheme.len() + 3 + rest.find(['/', '?', '#']).unwrap_or(rest.len())]
        });
        if head.contains(['{', '}']) {
            return Err(at(
                i,
                "url",
                "must not have a placeholder before its path (in its scheme, host or port)",
            ));
        }
        let uri: Result<hyper::Uri, _> = url.parse();
        let ok = uri
            .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some_and(|h| !h.is_empty()));
        if !ok {
            return Err(at(i, "url", "must be an http:// or https:// URL with a host"));
        }
        if e.secret.len() < 16 || !e.secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(at(i, "secret", "must be at least 16 visible ASCII characters"));
        }
        if e.on.is_empty() || e.on.iter().any(|k| PostbackKind::parse(k).is_none()) {
            return Err(at(i, "on", "must list \"conversion\" and/or \"adjustment\""));
        }
    }
    Ok(())
}

/// Whether some mapping of the site credits this partner ID.
fn credited(site: &Site, partner: &str) -> bool {
    let m = &site.partners;
    let mapped = [&m.ids, &m.clicks, &m.utm_sources]
        .iter()
        .any(|t| t.values().any(|v| v == partner))
        || site.promo_codes.values().any(|v| v == partner);
    let unmapped_id = partner
        .split_once(':')
        .is_some_and(|(net, id)| !id.is_empty() && m.params.contains_key(net));
    mapped || unmapped_id
}

/// Work for the planner: a conversion or adjustment just stored (by this collector).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hint {
    /// The site.
    pub site: String,
    /// Conversion or adjustment.
    pub kind: PostbackKind,
    /// The order.
    pub order_id: String,
    /// The adjustment's ID, empty for a conversion.
    pub adjustment_id: String,
}

/// The most hints kept waiting; beyond, they are dropped and the sweep finds their orders.
const MAX_HINTS: usize = 100_000;

/// Where handlers leave hints for the planner, and how they wake the sender. Only sites with
/// postbacks get hints: a site without any costs nothing.
#[derive(Debug, Default)]
pub struct Hub {
    sites: Vec<String>,
    hints: Mutex<Vec<Hint>>,
    /// Wakes the sender: hints waiting, or a delivery finished.
    pub wake: tokio::sync::Notify,
}

impl Hub {
    /// A hub for the sites of a configuration that have postbacks.
    pub fn new(config: &crate::config::Config) -> Hub {
        Hub {
            sites: config
                .sites
                .iter()
                .filter(|s| !s.postbacks.is_empty())
                .map(|s| s.id.clone())
                .collect(),
            ..Hub::default()
        }
    }

    /// Whether the site has postbacks.
    pub fn wanted(&self, site: &str) -> bool {
        self.sites.iter().any(|s| s == site)
    }

    /// The sites with postbacks.
    pub fn sites(&self) -> &[String] {
        &self.sites
    }

    /// Asks the planner to decide about a conversion or adjustment just stored.
    pub fn hint(&self, site: &str, kind: PostbackKind, order_id: &str, adjustment_id: &str) {
        if !self.wanted(site) {
            return;
        }
        let mut h = self.hints.lock().unwrap_or_else(|p| p.into_inner());
        if h.len() < MAX_HINTS {
            h.push(Hint {
                site: site.to_string(),
                kind,
                order_id: order_id.to_string(),
                adjustment_id: adjustment_id.to_string(),
            });
        }
        drop(h);
        self.wake.notify_one();
    }

    /// At most `max` of the hints waiting, oldest first; when more wait, the sender is woken
    /// again for them.
    pub fn take(&self, max: usize) -> Vec<Hint> {
        let mut h = self.hints.lock().unwrap_or_else(|p| p.into_inner());
        let n = h.len().min(max);
        let taken: Vec<Hint> = h.drain(..n).collect();
        if !h.is_empty() {
            self.wake.notify_one();
        }
        taken
    }
}

/// One delivery as `GET /v1/postbacks` shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PostbackOut {
    id: String,
    kind: &'static str,
    order_id: String,
    adjustment_id: Option<String>,
    partner: String,
    status: &'static str,
    attempts: u32,
    last_error: Option<String>,
    created_at: u64,
    next_attempt_at: Option<u64>,
    delivered_at: Option<u64>,
}

impl From<PostbackRow> for PostbackOut {
    fn from(r: PostbackRow) -> PostbackOut {
        let pending = r.status == PostbackStatus::Pending;
        PostbackOut {
            id: r.delivery.id,
            kind: r.delivery.kind.as_str(),
            order_id: r.delivery.order_id,
            adjustment_id: r.delivery.adjustment_id,
            partner: r.delivery.partner,
            status: r.status.as_str(),
            attempts: r.attempts,
            last_error: r.last_error,
            created_at: r.delivery.created_at,
            next_attempt_at: r.next_at.filter(|_| pending),
            delivered_at: r.delivered_at,
        }
    }
}

/// `GET /v1/postbacks?site=…[&status=…][&order=…][&since=ms][&limit=n]`: the site's deliveries,
/// oldest first, with the read key as `GET /v1/conversions` wants it.
pub async fn get_postbacks(
    State(s): State<AppState>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let q = query(q)?;
    let site = crate::http::read_site(&s, &q, &headers)?;
    if let Some(k) = q
        .keys()
        .find(|k| !["site", "status", "order", "since", "limit"].contains(&k.as_str()))
    {
        return Err(AppError::bad(
            k,
            "is not a known parameter (site, status, order, since, limit)",
        ));
    }
    let status = match q.get("status") {
        Some(v) => {
            Some(PostbackStatus::parse(v).ok_or(AppError::bad("status", "must be pending, delivered or failed"))?)
        }
        None => None,
    };
    let order_id = match q.get("order") {
        Some(o) if o.is_empty() || o.len() > 128 || o.chars().any(char::is_control) => {
            return Err(AppError::bad(
                "order",
                "must be 1 to 128 bytes without control characters",
            ))
        }
        o => o.cloned(),
    };
    let (since, limit) = crate::http::since_and_limit(&q)?;
    let query = PostbackQuery {
        status,
        order_id,
        since,
        limit,
    };
    let store = s.store.clone();
    let id = site.id.clone();
    let rows = tokio::task::spawn_blocking(move || store.postbacks(&id, &query))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))??;
    let list: Vec<PostbackOut> = rows.into_iter().map(PostbackOut::from).collect();
    // The partners this site posts back to, so a report can tell "none configured" from "none sent".
    let mut partners: Vec<&str> = site.postbacks.iter().map(|e| e.partner.as_str()).collect();
    partners.sort_unstable();
    crate::http::json_response(&serde_json::json!({ "site": site.id, "partners": partners, "postbacks": list }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand_with_encoded_values() {
        let mut p = sample();
        p.order_id = "A/1 &b=2".into();
        p.click_id = None;
        let url = expand(
            "https://p.example/pb?o={orderId}&c={clickId}&amt={amount}{currency}&t={eventTime}",
            &p,
        )
        .unwrap();
        assert_eq!(url, "https://p.example/pb?o=A%2F1%20%26b%3D2&c=&amt=1.00EUR&t=1");
        assert_eq!(expand("https://p.example/", &p).unwrap(), "https://p.example/");
        let bad = [
            ("https://p.example/?x={order}", "unknown placeholder {order}"),
            ("https://p.example/?x={orderId", "without its '}'"),
            ("https://p.example/?x=orderId}", "without its '{'"),
        ];
        for (t, want) in bad {
            let e = expand(t, &p).unwrap_err();
            assert!(e.contains(want), "{t}: {e}");
        }
    }

    #[test]
    fn a_newer_body_is_still_read() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["aFieldOfLater"] = "x".into();
        let p: Payload = serde_json::from_value(v).expect("unknown fields are ignored");
        assert_eq!(p, sample());
    }

    #[test]
    fn signatures_are_hmac_sha256_over_time_and_body() {
        // Computed independently: python3 -c "import hmac, hashlib; print(hmac.new(
        // b'whsec_0123456789abcdef', b'1764150000.{\"kind\":\"conversion\"}',
        // hashlib.sha256).hexdigest())"
        let body = r#"{"kind":"conversion"}"#;
        assert_eq!(
            signature("whsec_0123456789abcdef", 1_764_150_000, body),
            "t=1764150000,v1=958bbee279c25fd5bdcb81dd145abbfdaa47b1e164ef6ec9599935f7a81d849a"
        );
        assert_ne!(
            signature("whsec_0123456789abcdef", 1_764_150_001, body),
            signature("whsec_0123456789abcdef", 1_764_150_000, body)
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum_with_jitter() {
        let p = Policy {
            initial_backoff_ms: 1_000,
            max_backoff_ms: 60_000,
            ..Policy::default()
        };
        for (failed, base) in [
            (1, 1_000),
            (2, 2_000),
            (3, 4_000),
            (6, 32_000),
            (7, 60_000),
            (60, 60_000),
        ] {
            let d = p.backoff_ms(failed, "id");
            assert!(d <= base && d >= base / 2, "{failed}: {d} not within half of {base}");
        }
        // Deliveries failing together do not all wait the same.
        let waits: std::collections::HashSet<u64> = (0..20).map(|i| p.backoff_ms(3, &format!("d{i}"))).collect();
        assert!(waits.len() > 10, "{waits:?}");
        assert!(Policy::default().check().is_ok());
        let bad = Policy {
            initial_backoff_ms: 2,
            max_backoff_ms: 1,
            ..Policy::default()
        };
        assert!(bad.check().unwrap_err().contains("initial_backoff_ms"));
    }
}
