//! The event model and its wire format: the one module that writes and reads the JSON the tag
//! sends and the collector answers. The golden fixtures under `tests/fixtures/` pin it, and
//! both the tag's and the collector's tests check them.
//!
//! A batch is `{"v":1,"site":…,"key":…?,"sentAt":ms,"webdriver":true?,"events":[…]}`. Every event has an `id`
//! (a time-ordered UUIDv7 made in the browser, the idempotency key), a `type`, the time `at`,
//! the `visitor` and `session` IDs (absent while consent is denied), the page `url` and
//! `referrer`, the `clicks` in force, and the fields of its type. `docs/wire-format.md`
//! describes each field.

use alloc::string::String;
use alloc::vec::Vec;

use super::click::{self, Click};
use super::json::{self, write_str, write_u64, Json};
#[cfg(feature = "serde")]
use super::url::{self, Refusal};

/// The version written in every batch; the collector refuses others.
pub const VERSION: u64 = 1;

/// Bounds every decoded value must respect (the tag checks the same ones on input).
pub mod limits {
    /// Events in one batch.
    pub const MAX_EVENTS: usize = 100;
    /// Bytes of a URL or referrer.
    pub const MAX_URL: usize = 2048;
    /// Bytes of a name, ID or other short string.
    pub const MAX_SHORT: usize = 128;
    /// Bytes of a page title or item name.
    pub const MAX_TEXT: usize = 512;
    /// Clicks carried by one event.
    pub const MAX_CLICKS: usize = 20;
    /// Items in one order.
    pub const MAX_ITEMS: usize = 200;
    /// Bytes of the compact JSON of `props` or `custom`.
    pub const MAX_PROPS: usize = 8192;
}

/// One tracked event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The event ID (UUIDv7 text), unique per event and stable across retries.
    pub id: String,
    /// When it happened, in milliseconds since the Unix epoch.
    pub at: u64,
    /// The visitor ID; `None` while consent is denied.
    pub visitor: Option<String>,
    /// The session ID; `None` while consent is denied.
    pub session: Option<String>,
    /// The page URL.
    pub url: String,
    /// The document referrer, or empty.
    pub referrer: String,
    /// The partner clicks in force, oldest first.
    pub clicks: Vec<Click>,
    /// What kind of event, with its own fields.
    pub kind: Kind,
}

/// The kinds of event and their fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A page was viewed.
    PageView {
        /// The document title, or empty.
        title: String,
        /// Custom properties (a JSON object), if any.
        props: Option<Json>,
    },
    /// An order or other conversion.
    Conversion(Order),
    /// The visitor said who they are.
    Identify {
        /// The merchant's own customer ID.
        customer_id: Option<String>,
        /// SHA-256 (lowercase hex) of the normalised email address.
        email_hash: Option<String>,
    },
    /// A custom event.
    Custom {
        /// The event name.
        name: String,
        /// Custom properties (a JSON object), if any.
        props: Option<Json>,
    },
    /// The visitor granted or denied consent.
    Consent {
        /// True when granted.
        granted: bool,
    },
}

/// A conversion's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    /// The merchant's order ID: the deduplication key per site.
    pub order_id: String,
    /// The amount, exactly as given.
    pub amount: Option<Decimal>,
    /// ISO 4217 currency code (three capital letters).
    pub currency: Option<String>,
    /// The order lines.
    pub items: Vec<Item>,
    /// A promo code, as entered.
    pub promo_code: Option<String>,
    /// Whether the customer is new or returning.
    pub customer_status: Option<CustomerStatus>,
    /// The discount, exactly as given.
    pub discount: Option<Decimal>,
    /// Custom fields (a JSON object), if any.
    pub custom: Option<Json>,
}

/// One order line. The collector stores a conversion's lines as their serde JSON (absent
/// members left out, the price as a string).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Item {
    /// Stock-keeping unit.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub sku: Option<String>,
    /// Product name.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub name: Option<String>,
    /// Unit price, exactly as given.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub price: Option<Decimal>,
    /// Quantity.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub quantity: Option<u64>,
    /// Product category.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub category: Option<String>,
}

/// New or returning customer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CustomerStatus {
    /// First order.
    New,
    /// Has ordered before.
    Returning,
}

/// A money amount kept as the caller wrote it: decimal digits, at most one point, no sign, no
/// exponent. `quoted` remembers whether it came as a JSON string (`"49.90"`) or number (`49.9`),
/// so the wire carries it back unchanged. No float ever touches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decimal {
    /// The digits, e.g. `49.90`.
    pub text: String,
    /// True when it was given as a string.
    pub quoted: bool,
}

/// Why an event or batch was refused. `field` names where, `reason` says what is wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// The field at fault (e.g. `order.currency`).
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

const fn bad(field: &'static str, reason: &'static str) -> Invalid {
    Invalid { field, reason }
}

// Why a member is refused, in both readers' words. A string member is checked in this order:
// present, a string, not empty, at most its bytes, no control character.
use super::text::{self as t, CONTROL, EMPTY, NOT_NUMBER, NOT_OBJECT, NOT_STRING, REQUIRED, TOO_LONG};

impl Decimal {
    /// Validates a JSON number or string as an amount.
    pub fn from_json(v: &Json, field: &'static str) -> Result<Decimal, Invalid> {
        let (text, quoted) = match v {
            Json::Num(n) => (n.as_str(), false),
            Json::Str(s) => (s.as_str(), true),
            _ => return Err(bad(field, NOT_NUMBER)),
        };
        Decimal::new(text, quoted, field)
    }

    /// Validates a number's text (`quoted` false) or a string as an amount.
    pub fn new(text: &str, quoted: bool, field: &'static str) -> Result<Decimal, Invalid> {
        if !is_decimal(text) {
            return Err(bad(field, t::NOT_DECIMAL));
        }
        Ok(Decimal {
            text: String::from(text),
            quoted,
        })
    }

    fn write(&self, out: &mut String) {
        if self.quoted {
            write_str(out, &self.text);
        } else {
            out.push_str(&self.text);
        }
    }
}

/// An amount serializes as its text, a string (`"49.90"`), whichever way it was sent.
#[cfg(feature = "serde")]
impl serde::Serialize for Decimal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// True for `digits[.digits]` with at most 15 integer and 8 fraction digits.
pub fn is_decimal(s: &str) -> bool {
    let (int, frac) = match crate::core::split_byte(s, b'.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let digits = |t: &str, max: usize| !t.is_empty() && t.len() <= max && t.bytes().all(|b| b.is_ascii_digit());
    digits(int, 15) && frac.is_none_or(|f| digits(f, 8))
}

/// True for an ISO 4217-shaped currency code: three ASCII capital letters.
pub fn is_currency(s: &str) -> bool {
    s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase())
}

/// True for UUID text: 8-4-4-4-12 lowercase hex digits.
pub fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => matches!(b, b'0'..=b'9' | b'a'..=b'f'),
        })
}

/// True for 64 lowercase hex digits (a SHA-256 digest).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Appends `,"name":` for a field name that needs no escaping (all of ours are constants).
fn field_name(out: &mut String, name: &str) {
    out.push_str(",\"");
    out.push_str(name);
    out.push_str("\":");
}

/// Appends `,"name":"value"`: the writers here and the tracker's debug state share these.
pub(crate) fn field_str(out: &mut String, name: &str, value: &str) {
    field_name(out, name);
    write_str(out, value);
}

fn field_opt(out: &mut String, name: &str, value: &Option<String>) {
    if let Some(v) = value {
        field_str(out, name, v);
    }
}

/// Appends `,"name":number`.
pub(crate) fn field_u64(out: &mut String, name: &str, value: u64) {
    field_name(out, name);
    write_u64(out, value);
}

/// Appends `,"name":true|false` (the debug state's).
#[cfg(not(lean))]
pub(crate) fn field_bool(out: &mut String, name: &str, value: bool) {
    field_name(out, name);
    out.push_str(if value { "true" } else { "false" });
}

fn field_json(out: &mut String, name: &str, value: &Option<Json>) {
    if let Some(v) = value {
        field_name(out, name);
        v.write(out);
    }
}

/// Appends one click as wire JSON.
pub fn write_click(out: &mut String, c: &Click) {
    out.push_str("{\"param\":");
    write_str(out, &c.param);
    field_str(out, "network", &c.network);
    field_str(out, "value", &c.value);
    field_u64(out, "at", c.at);
    field_str(out, "path", &c.path);
    if !c.referrer.is_empty() {
        field_str(out, "ref", &c.referrer);
    }
    if !c.utm.is_empty() {
        out.push_str(",\"utm\":{");
        for (i, (k, v)) in c.utm.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_str(out, k);
            out.push(':');
            write_str(out, v);
        }
        out.push('}');
    }
    out.push('}');
}

/// Appends one event as wire JSON. Returns where its click list's elements are in `out` (the
/// byte range between the brackets of `"clicks":[…]`, empty when it has none): the collector
/// keeps a batch's repeated click list once.
pub fn write_event(out: &mut String, e: &Event) -> (usize, usize) {
    write_event_with_clicks(out, e, None)
}

/// [`write_event`], copying `clicks` (the JSON of the event's click list without its brackets,
/// as [`write_event`] wrote it for an event with the same clicks) instead of writing the list
/// again: the events of a batch usually all carry the same clicks.
// In the tag `clicks` is always `None`: inlined into `write_event`, the copy is gone.
#[cfg_attr(feature = "tag", inline(always))]
pub fn write_event_with_clicks(out: &mut String, e: &Event, clicks: Option<&str>) -> (usize, usize) {
    out.push_str("{\"id\":");
    write_str(out, &e.id);
    field_str(out, "type", type_name(&e.kind));
    field_u64(out, "at", e.at);
    field_opt(out, "visitor", &e.visitor);
    field_opt(out, "session", &e.session);
    field_str(out, "url", &e.url);
    if !e.referrer.is_empty() {
        field_str(out, "referrer", &e.referrer);
    }
    out.push_str(",\"clicks\":[");
    let clicks_at = out.len();
    match clicks {
        Some(text) => out.push_str(text),
        None => {
            for (i, c) in e.clicks.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_click(out, c);
            }
        }
    }
    let clicks = (clicks_at, out.len());
    out.push(']');
    match &e.kind {
        Kind::PageView { title, props } => {
            if !title.is_empty() {
                field_str(out, "title", title);
            }
            field_json(out, "props", props);
        }
        Kind::Conversion(o) => {
            out.push_str(",\"order\":{\"orderId\":");
            write_str(out, &o.order_id);
            if let Some(a) = &o.amount {
                out.push_str(",\"amount\":");
                a.write(out);
            }
            field_opt(out, "currency", &o.currency);
            if !o.items.is_empty() {
                out.push_str(",\"items\":[");
                for (i, it) in o.items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_item(out, it);
                }
                out.push(']');
            }
            field_opt(out, "promoCode", &o.promo_code);
            if let Some(s) = o.customer_status {
                field_str(
                    out,
                    "customerStatus",
                    if s == CustomerStatus::New { "new" } else { "returning" },
                );
            }
            if let Some(d) = &o.discount {
                out.push_str(",\"discount\":");
                d.write(out);
            }
            field_json(out, "custom", &o.custom);
            out.push('}');
        }
        Kind::Identify {
            customer_id,
            email_hash,
        } => {
            field_opt(out, "customerId", customer_id);
            field_opt(out, "emailHash", email_hash);
        }
        Kind::Custom { name, props } => {
            field_str(out, "name", name);
            field_json(out, "props", props);
        }
        Kind::Consent { granted } => field_str(out, "consent", if *granted { "granted" } else { "denied" }),
    }
    out.push('}');
    clicks
}

fn write_item(out: &mut String, it: &Item) {
    // Items have only optional fields; build them as "," + field and drop the first comma.
    let mut s = String::new();
    field_opt(&mut s, "sku", &it.sku);
    field_opt(&mut s, "name", &it.name);
    if let Some(p) = &it.price {
        s.push_str(",\"price\":");
        p.write(&mut s);
    }
    if let Some(q) = it.quantity {
        field_u64(&mut s, "quantity", q);
    }
    field_opt(&mut s, "category", &it.category);
    out.push('{');
    out.push_str(s.strip_prefix(',').unwrap_or(&s));
    out.push('}');
}

/// The wire name of an event kind.
pub fn type_name(k: &Kind) -> &'static str {
    match k {
        Kind::PageView { .. } => "pageview",
        Kind::Conversion(_) => "conversion",
        Kind::Identify { .. } => "identify",
        Kind::Custom { .. } => "event",
        Kind::Consent { .. } => "consent",
    }
}

/// Writes a batch around events that are already wire JSON (the queue stores them that way,
/// so a retry sends exactly the bytes that were persisted). `webdriver`: the browser reports
/// that automation drives it (`navigator.webdriver`); written only when true.
pub fn write_batch(site: &str, key: Option<&str>, sent_at: u64, webdriver: bool, events: &[&str]) -> String {
    let mut out = String::from("{\"v\":1");
    field_str(&mut out, "site", site);
    if let Some(k) = key {
        field_str(&mut out, "key", k);
    }
    field_u64(&mut out, "sentAt", sent_at);
    if webdriver {
        out.push_str(",\"webdriver\":true");
    }
    out.push_str(",\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(e);
    }
    out.push_str("]}");
    out
}

// ---------------------------------------------------------------------------------------------
// Reading. The collector reads batches and stored events with serde_json (`de.rs`, the `serde`
// feature: [`read_batch`], [`read_event`]); the tag reads only what its own commands and
// stores hold, from a parsed [`Json`] ([`read_click`], [`read_order`], [`props`]). Both apply the
// rules below, and a test holds the two readers to the same answers. What only the collector
// needs is built with the `serde` feature alone.

#[cfg(feature = "serde")]
mod de;
#[cfg(feature = "serde")]
pub use de::{read_batch, read_event};

/// A decoded batch: the envelope, and each event or the reason it was refused.
#[cfg(feature = "serde")]
#[derive(Debug)]
pub struct Batch {
    /// The site ID.
    pub site: String,
    /// The write key, if sent.
    pub key: Option<String>,
    /// When the tag sent it (the tag's clock).
    pub sent_at: u64,
    /// The browser reports that automation drives it (`navigator.webdriver`); false when the
    /// member is absent (a tag from before it).
    pub webdriver: bool,
    /// Each event in order: decoded, or refused with the event ID when one could be read.
    pub events: Vec<Result<Event, (Option<String>, Refused)>>,
}

/// Why [`read_batch`] refused one event. Its `Display` is the answer's reason, `field: what is
/// wrong`.
#[cfg(feature = "serde")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// A member is missing or malformed ([`read_event`]).
    Invalid(Invalid),
    /// The event's `url` or `referrer` carries a click-ID parameter whose value the tag refuses
    /// ([`refused_click`]).
    ClickId {
        /// `url` or `referrer`.
        field: &'static str,
        /// The parameter, and why its value is refused.
        refusal: Refusal,
    },
}

#[cfg(feature = "serde")]
impl Refused {
    /// The field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            Refused::Invalid(i) => i.field,
            Refused::ClickId { field, .. } => field,
        }
    }
}

#[cfg(feature = "serde")]
impl From<Invalid> for Refused {
    fn from(i: Invalid) -> Refused {
        Refused::Invalid(i)
    }
}

#[cfg(feature = "serde")]
impl core::fmt::Display for Refused {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Refused::Invalid(i) => write!(f, "{}: {}", i.field, i.reason),
            Refused::ClickId { field, refusal } => write!(
                f,
                "{field}: carries a refused click ID in {} ({})",
                refusal.param,
                refusal.reason.as_str()
            ),
        }
    }
}

/// The first click-ID parameter of the event's `url`, then of its `referrer`, whose value the tag
/// would refuse (it does not decode, is empty, too long, or has a character outside the safe
/// set). The tag cuts those before sending, so only another client sends one, and [`read_batch`]
/// refuses such an event: a refused value is stored nowhere, not even inside a URL. Only the
/// built-in parameters are known here, not a site's own `clickParams`.
#[cfg(feature = "serde")]
pub fn refused_click(e: &Event) -> Option<Refused> {
    for (field, text) in [("url", &e.url), ("referrer", &e.referrer)] {
        if let Some(refusal) = url::refused_param(text, &[]) {
            return Some(Refused::ClickId { field, refusal });
        }
    }
    None
}

/// What [`read_batch`] refuses beyond [`read_event`]'s rules (which also read events stored
/// before these checks, and must keep reading them), first: a `visitor` or `session` that is
/// not a lowercase UUID.
#[cfg(feature = "serde")]
pub fn refused_ids(e: &Event) -> Option<Refused> {
    for (field, id) in [("visitor", &e.visitor), ("session", &e.session)] {
        if id.as_deref().is_some_and(|s| !is_uuid(s)) {
            return Some(bad(field, "must be a lowercase UUID").into());
        }
    }
    None
}

/// What [`read_batch`] refuses beyond [`read_event`]'s rules, after [`refused_ids`]: a `url` or
/// `referrer` that [`refused_click`] names, and a control character in a key or string of
/// `props` or `order.custom`.
#[cfg(feature = "serde")]
pub fn refused_content(e: &Event) -> Option<Refused> {
    if let Some(r) = refused_click(e) {
        return Some(r);
    }
    let (field, free) = match &e.kind {
        Kind::PageView { props, .. } | Kind::Custom { props, .. } => ("props", props),
        Kind::Conversion(o) => (t::AT_ORDER_CUSTOM, &o.custom),
        _ => return None,
    };
    free.as_ref()
        .filter(|v| json_has_control(v))
        .map(|_| bad(field, CONTROL).into())
}

/// True when a key or string anywhere in `v` holds a control character.
#[cfg(feature = "serde")]
fn json_has_control(v: &Json) -> bool {
    match v {
        Json::Str(s) => crate::core::has_control(s),
        Json::Arr(a) => a.iter().any(json_has_control),
        Json::Obj(m) => m
            .iter()
            .any(|(k, v)| crate::core::has_control(k) || json_has_control(v)),
        _ => false,
    }
}

/// Takes the string member `key` out of the decoded tree (readers own the tree they decode, so
/// every string is moved into the event, never copied).
fn req_str(v: &mut Json, key: &str, field: &'static str, max: usize) -> Result<String, Invalid> {
    match v.get_mut(key) {
        Some(Json::Str(s)) if s.is_empty() => Err(bad(field, EMPTY)),
        Some(Json::Str(s)) if s.len() > max => Err(bad(field, TOO_LONG)),
        Some(Json::Str(s)) if crate::core::has_control(s) => Err(bad(field, CONTROL)),
        Some(Json::Str(s)) => Ok(core::mem::take(s)),
        Some(_) => Err(bad(field, NOT_STRING)),
        None => Err(bad(field, REQUIRED)),
    }
}

fn opt_str(v: &mut Json, key: &str, field: &'static str, max: usize) -> Result<Option<String>, Invalid> {
    match v.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(_) => req_str(v, key, field, max).map(Some),
    }
}

fn req_short(v: &mut Json, key: &str, field: &'static str) -> Result<String, Invalid> {
    req_str(v, key, field, limits::MAX_SHORT)
}

fn opt_short(v: &mut Json, key: &str, field: &'static str) -> Result<Option<String>, Invalid> {
    opt_str(v, key, field, limits::MAX_SHORT)
}

/// Validates an optional `props`/`custom` member, a JSON object of bounded size, and takes it.
pub fn read_props(v: &mut Json, key: &str, field: &'static str) -> Result<Option<Json>, Invalid> {
    props(v.get_mut(key), field)
}

/// Validates a `props`-like value itself (absent or `null`: none) and takes it.
pub(crate) fn props(v: Option<&mut Json>, field: &'static str) -> Result<Option<Json>, Invalid> {
    match v {
        None | Some(Json::Null) => Ok(None),
        Some(p @ Json::Obj(_)) => {
            if p.to_text().len() > limits::MAX_PROPS {
                Err(bad(field, t::TOO_LARGE))
            } else {
                Ok(Some(core::mem::replace(p, Json::Null)))
            }
        }
        Some(_) => Err(bad(field, NOT_OBJECT)),
    }
}

/// Decodes one click object, validating its value as the tag does.
pub fn read_click(c: &mut Json) -> Result<Click, Invalid> {
    if c.as_obj().is_none() {
        return Err(bad("clicks", t::CLICK_NOT_OBJECT));
    }
    let value = req_str(c, "value", t::AT_CLICKS_VALUE, click::MAX_VALUE_LEN)?;
    click::validate(&value).map_err(|r| bad(t::AT_CLICKS_VALUE, r.as_str()))?;
    let mut utm = Vec::new();
    if let Some(u) = c.get_mut("utm") {
        let Json::Obj(members) = u else {
            return Err(bad(t::AT_CLICKS_UTM, NOT_OBJECT));
        };
        for (k, val) in members {
            if !click::UTM_KEYS.contains(&k.as_str()) {
                return Err(bad(t::AT_CLICKS_UTM, t::UTM_KEY));
            }
            let Json::Str(s) = val else {
                return Err(bad(t::AT_CLICKS_UTM, t::UTM_NOT_STRINGS));
            };
            if s.len() > click::MAX_UTM_LEN || crate::core::has_control(s) {
                return Err(bad(t::AT_CLICKS_UTM, t::UTM_VALUE));
            }
            utm.push((core::mem::take(k), core::mem::take(s)));
        }
    }
    Ok(Click {
        param: req_short(c, "param", t::AT_CLICKS_PARAM)?,
        network: req_short(c, "network", t::AT_CLICKS_NETWORK)?,
        value,
        at: c
            .get("at")
            .and_then(Json::as_u64)
            .ok_or(bad(t::AT_CLICKS_AT, t::CLICK_AT))?,
        path: req_str(c, "path", t::AT_CLICKS_PATH, limits::MAX_URL)?,
        referrer: opt_str(c, "ref", t::AT_CLICKS_REF, limits::MAX_SHORT * 2)?.unwrap_or_default(),
        utm,
    })
}

fn opt_decimal(v: &mut Json, key: &str, field: &'static str) -> Result<Option<Decimal>, Invalid> {
    match v.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(a) => Decimal::from_json(a, field).map(Some),
    }
}

/// Decodes and validates an order (the `order` member of a conversion, or the argument of the
/// tag's `conversion` command, which has the same shape).
pub fn read_order(o: &mut Json) -> Result<Order, Invalid> {
    if o.as_obj().is_none() {
        return Err(bad("order", NOT_OBJECT));
    }
    let order_id = match o.get("orderId") {
        // A numeric order ID is common in shop code; keep its text.
        Some(Json::Num(n)) if json::parse_u64(n).is_some() => n.clone(),
        _ => req_short(o, "orderId", t::AT_ORDER_ORDER_ID)?,
    };
    let currency = opt_short(o, "currency", t::AT_ORDER_CURRENCY)?;
    if currency.as_deref().is_some_and(|c| !is_currency(c)) {
        return Err(bad(t::AT_ORDER_CURRENCY, t::CURRENCY));
    }
    let items = match o.get_mut("items") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Arr(a)) if a.len() <= limits::MAX_ITEMS => {
            let mut items = Vec::new();
            for it in a {
                items.push(read_item(it)?);
            }
            items
        }
        Some(Json::Arr(_)) => return Err(bad(t::AT_ORDER_ITEMS, t::TOO_MANY_ITEMS)),
        Some(_) => return Err(bad(t::AT_ORDER_ITEMS, t::NOT_ARRAY)),
    };
    let customer_status = match o.get("customerStatus") {
        None | Some(Json::Null) => None,
        Some(Json::Str(s)) if s == "new" => Some(CustomerStatus::New),
        Some(Json::Str(s)) if s == "returning" => Some(CustomerStatus::Returning),
        Some(_) => return Err(bad(t::AT_ORDER_CUSTOMER_STATUS, t::CUSTOMER_STATUS)),
    };
    Ok(Order {
        order_id,
        amount: opt_decimal(o, "amount", t::AT_ORDER_AMOUNT)?,
        currency,
        items,
        promo_code: opt_short(o, "promoCode", t::AT_ORDER_PROMO_CODE)?,
        customer_status,
        discount: opt_decimal(o, "discount", t::AT_ORDER_DISCOUNT)?,
        custom: read_props(o, "custom", t::AT_ORDER_CUSTOM)?,
    })
}

fn read_item(it: &mut Json) -> Result<Item, Invalid> {
    if it.as_obj().is_none() {
        return Err(bad(t::AT_ORDER_ITEMS, t::ITEM_NOT_OBJECT));
    }
    let quantity = match it.get("quantity") {
        None | Some(Json::Null) => None,
        Some(q) => Some(
            q.as_u64()
                .filter(|&n| n <= 1_000_000)
                .ok_or(bad(t::AT_ORDER_ITEMS_QUANTITY, t::QUANTITY))?,
        ),
    };
    Ok(Item {
        sku: opt_short(it, "sku", t::AT_ORDER_ITEMS_SKU)?,
        name: opt_str(it, "name", t::AT_ORDER_ITEMS_NAME, limits::MAX_TEXT)?,
        price: opt_decimal(it, "price", t::AT_ORDER_ITEMS_PRICE)?,
        quantity,
        category: opt_short(it, "category", t::AT_ORDER_ITEMS_CATEGORY)?,
    })
}

// ---------------------------------------------------------------------------------------------
// The collector's answer

/// What the collector did with one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Stored now.
    Accepted,
    /// Stored before (same event ID, or same order ID for the site): not counted again.
    Duplicate,
    /// Refused; resending it will not help.
    Rejected,
}

impl Status {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Accepted => "accepted",
            Status::Duplicate => "duplicate",
            Status::Rejected => "rejected",
        }
    }
}

/// One line of the collector's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The event ID, when the event had a readable one.
    pub id: Option<String>,
    /// What happened to it.
    pub status: Status,
    /// Why, for rejections.
    pub reason: Option<String>,
}

/// Writes the collector's answer: `{"results":[{"id":…,"status":…,"reason":…?},…]}`.
pub fn write_outcomes(outcomes: &[Outcome]) -> String {
    let mut out = String::from("{\"results\":[");
    for (i, o) in outcomes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"id\":");
        match &o.id {
            Some(id) => write_str(&mut out, id),
            None => out.push_str("null"),
        }
        field_str(&mut out, "status", o.status.as_str());
        field_opt(&mut out, "reason", &o.reason);
        out.push('}');
    }
    out.push_str("]}");
    out
}

/// Reads the collector's answer; `None` if it is not one (the tag then treats the batch by its
/// HTTP status alone).
pub fn read_outcomes(text: &str) -> Option<Vec<Outcome>> {
    let v = json::parse(text).ok()?;
    let list = v.get("results")?.as_arr()?;
    let mut out = Vec::with_capacity(list.len());
    for r in list {
        let status = match r.get("status")?.as_str()? {
            "accepted" => Status::Accepted,
            "duplicate" => Status::Duplicate,
            "rejected" => Status::Rejected,
            _ => return None,
        };
        out.push(Outcome {
            id: r.get("id").and_then(Json::as_str).map(String::from),
            status,
            reason: r.get("reason").and_then(Json::as_str).map(String::from),
        });
    }
    Some(out)
}
