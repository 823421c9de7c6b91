//! The collector's reader of the wire format, on serde and serde_json: a batch or a stored event
//! is decoded in one pass over the body into views that borrow its strings, checked by the rules
//! of `wire` (the same the tag's reader applies), and made into [`Event`]s.
//!
//! Why the `Deserialize` impls are written out rather than derived: a derived struct refuses a
//! repeated member, where the wire format takes the last one (as `JSON.parse` does), and fails
//! the whole text at the first member of the wrong type, where a bad event must refuse only
//! itself, for the field at fault. So every object is read member by member ([`Members`]) into
//! [`Leaf`]s that keep what the text held, and the rules run once the text is read.
//!
//! The JSON accepted is exactly what `core::json` accepts (a test holds them to it), so the
//! collector refuses the same bodies for the same reasons as before serde:
//! - numbers are never parsed as floats: members that may hold one (timestamps, amounts,
//!   quantities, an `orderId`) and every member the format does not know are read as their raw
//!   text ([`Raw`]), and a number keeps the text it was sent with;
//! - serde_json has no nesting limit of [`json::MAX_DEPTH`] and does not check `\u` surrogates
//!   in what it skips, so every array or object read as raw text is parsed by `core::json` at
//!   its depth (which is also how `props` and `order.custom` are kept), and every escaped string
//!   is unescaped;
//! - a body serde_json refuses is parsed by `core::json`, whose error is the answer's reason.

use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::marker::PhantomData;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{
    bad, is_currency, is_sha256_hex, is_uuid, limits, refused_content, refused_ids, Batch, CustomerStatus, Decimal,
    Event, Invalid, Item, Kind, Order, Refused, CONTROL, EMPTY, NOT_NUMBER, NOT_OBJECT, NOT_STRING, REQUIRED, TOO_LONG,
    VERSION,
};
use crate::core::click::{self, Click};
use crate::core::json::{self, Json, JsonError};

/// Decodes a batch. An envelope error refuses the whole batch; a bad event refuses only itself,
/// and so does one that [`refused_ids`] or [`refused_content`] names (those rules are here and
/// not in [`read_event`], which also reads stored events again: one stored before a rule must
/// stay readable).
pub fn read_batch(text: &str) -> Result<Batch, Invalid> {
    let raw = decode(text, Object::<RawBatch>::at).map_err(|e| bad("body", e.as_str()))?;
    let Shaped::Is(mut b) = raw else {
        return Err(bad("body", "must be a JSON object"));
    };
    if number(&b.v) != Some(VERSION) {
        return Err(bad("v", "unsupported wire version (expected 1)"));
    }
    let site = req_str(b.site.take(), "site", limits::MAX_SHORT)?;
    if !site
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
    {
        return Err(bad("site", "must be letters, digits, '-', '_' or '.'"));
    }
    let key = opt_str(b.key.take(), "key", limits::MAX_SHORT)?;
    let sent_at = number(&b.sent_at).ok_or(bad("sentAt", "must be a millisecond timestamp"))?;
    // The browser said it is driven by automation (`navigator.webdriver`); a tag from before
    // the member sends none.
    let webdriver = match b.webdriver {
        None | Some(Leaf::Null) => false,
        Some(Leaf::Bool(w)) => w,
        Some(_) => return Err(bad("webdriver", "must be true or false")),
    };
    let Some(Shaped::Is(list)) = b.events.take() else {
        return Err(bad("events", "must be an array"));
    };
    if list.is_empty() {
        return Err(bad("events", "must not be empty"));
    }
    if list.len() > limits::MAX_EVENTS {
        return Err(bad("events", "too many events in one batch"));
    }
    Ok(Batch {
        site,
        key,
        sent_at,
        webdriver,
        events: list,
    })
}

/// One event of a batch, or why it is refused and its ID if it had a readable one (it names
/// the event in the answer). `ids` are the `visitor` and `session` of the last event that passed
/// [`refused_ids`]: the events of a batch usually share them, and they are checked once.
fn batch_event(e: Shaped<RawEvent<'_>>, ids: &mut Ids) -> Checked {
    let Shaped::Is(mut raw) = e else {
        return Err((None, Refused::Invalid(bad("event", NOT_OBJECT))));
    };
    match event(&mut raw) {
        Ok(event) => {
            let checked = ids
                .as_ref()
                .is_some_and(|(v, s)| *v == event.visitor && *s == event.session);
            let why = match checked {
                true => refused_content(&event),
                false => refused_ids(&event).or_else(|| {
                    *ids = Some((event.visitor.clone(), event.session.clone()));
                    refused_content(&event)
                }),
            };
            match why {
                Some(why) => Err((Some(event.id), why)),
                None => Ok(event),
            }
        }
        Err(err) => Err((
            match raw.id {
                Some(Leaf::Str(id)) if id.len() <= 64 => Some(id.into_owned()),
                _ => None,
            },
            Refused::Invalid(err),
        )),
    }
}

/// Decodes and validates one event's JSON text (an event of a batch, or one the collector
/// stored).
pub fn read_event(text: &str) -> Result<Event, Invalid> {
    match decode(text, Object::<RawEvent>::at).map_err(|e| bad("body", e.as_str()))? {
        Shaped::Is(mut raw) => event(&mut raw),
        _ => Err(bad("event", NOT_OBJECT)),
    }
}

/// Decodes `text` with the seed `at` makes for its root. If serde_json refuses it, `core::json`
/// says why; if `core::json` accepts it, serde_json refused a number beyond an `f64`'s range
/// where an array or object was expected (it parses numbers there), and the text is decoded
/// again reading each such value's text first.
fn decode<'a, S: DeserializeSeed<'a>>(text: &'a str, at: impl Fn(Ctx) -> S) -> Result<S::Value, JsonError> {
    // Most bodies hold no DEL or C1 control character, nor any other character starting with
    // 0xC2: then no string of theirs is looked at again for one.
    let clean = memchr::memchr2(0x7f, 0xc2, text.as_bytes()).is_none();
    let read = |raw_first| -> Result<S::Value, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_str(text);
        let value = at(Ctx {
            depth: 0,
            raw_first,
            clean,
        })
        .deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    };
    read(false).or_else(|_| match json::parse(text) {
        Err(e) => Err(e),
        Ok(_) => read(true).map_err(|_| JsonError::Syntax),
    })
}

// ---------------------------------------------------------------------------------------------
// The views

/// Where a value stands: how deep (the root is 0, as in `core::json`), whether values expected
/// to be arrays or objects are captured as text first (see [`decode`]), and whether the body
/// holds no byte 0x7F or 0xC2 (so no string borrowed from it holds a control character).
#[derive(Clone, Copy)]
struct Ctx {
    depth: usize,
    raw_first: bool,
    clean: bool,
}

impl Ctx {
    /// The members or elements of a value here.
    fn inner(self) -> Ctx {
        Ctx {
            depth: self.depth + 1,
            ..self
        }
    }
}

/// A member's value, as far as the rules need it.
enum Leaf<'a> {
    /// `null`.
    Null,
    /// A string. Borrowed only when it holds no control character: it had no escape (and JSON
    /// has no raw C0 control in a string), and neither DEL nor C1 (`0xC2 0x80..=0x9F`) is in it.
    Str(Cow<'a, str>),
    /// A number, as its text.
    Num(&'a str),
    /// An array or object read as text ([`Raw`]), parsed by `core::json`.
    Tree(Json),
    /// `true` or `false`, read as [`Raw`].
    Bool(bool),
    /// A boolean, or an array or object where a string was expected.
    Other,
}

impl<'a> Leaf<'a> {
    /// A string without escape, borrowed from the body (or copied, when it may hold a control
    /// character: see [`Leaf::Str`]).
    fn plain(s: &'a str, ctx: Ctx) -> Leaf<'a> {
        if ctx.clean || !s.bytes().any(|b| b == 0x7f || b == 0xc2) {
            Leaf::Str(Cow::Borrowed(s))
        } else {
            Leaf::Str(Cow::Owned(s.to_string()))
        }
    }

    /// The value whose JSON text is `raw` (valid JSON: serde_json has read it).
    fn from_raw(raw: &'a str, ctx: Ctx) -> Result<Leaf<'a>, JsonError> {
        Ok(match raw.as_bytes().first() {
            Some(b'"') => {
                let inner = raw.get(1..raw.len().saturating_sub(1)).unwrap_or_default();
                if !inner.as_bytes().contains(&b'\\') {
                    Leaf::plain(inner, ctx)
                } else {
                    let s = serde_json::from_str::<String>(raw).map_err(|_| JsonError::BadEscape)?;
                    Leaf::Str(Cow::Owned(s))
                }
            }
            Some(b'n') => Leaf::Null,
            Some(b'-' | b'0'..=b'9') => Leaf::Num(raw),
            Some(b'[' | b'{') => Leaf::Tree(json::parse_at(raw, ctx.depth)?),
            Some(b't') => Leaf::Bool(true),
            Some(b'f') => Leaf::Bool(false),
            _ => Leaf::Other,
        })
    }
}

/// What stood where an object or an array was expected.
enum Shaped<T> {
    /// It.
    Is(T),
    /// `null`.
    Null,
    /// A value of another kind.
    Not,
}

/// The members of an object, read one at a time; a repeated member replaces the earlier one.
trait Members<'de>: Default {
    /// Reads the value of the member `key`.
    fn member<A: MapAccess<'de>>(&mut self, key: Cow<'de, str>, map: &mut A, ctx: Ctx) -> Result<(), A::Error>;
}

impl<'de, T: Members<'de>> Members<'de> for Box<T> {
    fn member<A: MapAccess<'de>>(&mut self, key: Cow<'de, str>, map: &mut A, ctx: Ctx) -> Result<(), A::Error> {
        T::member(self, key, map, ctx)
    }
}

/// A `visitor` and `session` that passed [`refused_ids`].
type Ids = Option<(Option<String>, Option<String>)>;

/// An event of a batch, or why it is refused and its ID if it had a readable one.
type Checked = Result<Event, (Option<String>, Refused)>;

/// A batch's envelope.
#[derive(Default)]
struct RawBatch<'a> {
    v: Option<Leaf<'a>>,
    site: Option<Leaf<'a>>,
    key: Option<Leaf<'a>>,
    sent_at: Option<Leaf<'a>>,
    webdriver: Option<Leaf<'a>>,
    /// Each event is checked as soon as it is read.
    events: Option<Shaped<Vec<Checked>>>,
    ids: Ids,
}

impl<'de> Members<'de> for RawBatch<'de> {
    fn member<A: MapAccess<'de>>(&mut self, key: Cow<'de, str>, map: &mut A, ctx: Ctx) -> Result<(), A::Error> {
        match &*key {
            "v" => self.v = Some(map.next_value_seed(Raw(ctx))?),
            "site" => self.site = Some(map.next_value_seed(Text(ctx))?),
            "key" => self.key = Some(map.next_value_seed(Text(ctx))?),
            "sentAt" => self.sent_at = Some(map.next_value_seed(Raw(ctx))?),
            "webdriver" => self.webdriver = Some(map.next_value_seed(Raw(ctx))?),
            "events" => {
                let ids = &mut self.ids;
                self.events = Some(map.next_value_seed(List::each(ctx, |e| batch_event(e, ids)))?);
            }
            _ => drop(map.next_value_seed(Raw(ctx))?),
        }
        Ok(())
    }
}

/// A struct of the members of an object, each an `Option` read by its seed (a repeated member
/// replaces the earlier one), and its [`Members`] impl, which reads an unknown member as [`Raw`]
/// (so that it is checked) and drops it.
macro_rules! members {
    ($(#[$doc:meta])* struct $name:ident { $($key:literal => $field:ident: $ty:ty = $seed:expr,)* }) => {
        $(#[$doc])*
        #[derive(Default)]
        struct $name<'a> {
            $($field: Option<$ty>,)*
        }

        impl<'de> Members<'de> for $name<'de> {
            fn member<A: MapAccess<'de>>(&mut self, key: Cow<'de, str>, map: &mut A, ctx: Ctx) -> Result<(), A::Error> {
                match &*key {
                    $($key => self.$field = Some(map.next_value_seed($seed(ctx))?),)*
                    _ => drop(map.next_value_seed(Raw(ctx))?),
                }
                Ok(())
            }
        }
    };
}

members! {
    /// An event: the members of every type.
    struct RawEvent {
        "id" => id: Leaf<'a> = Text,
        "type" => ty: Leaf<'a> = Text,
        "at" => at: Leaf<'a> = Raw,
        "visitor" => visitor: Leaf<'a> = Text,
        "session" => session: Leaf<'a> = Text,
        "url" => url: Leaf<'a> = Text,
        "referrer" => referrer: Leaf<'a> = Text,
        "clicks" => clicks: Shaped<Vec<Shaped<RawClick<'a>>>> = List::at,
        "title" => title: Leaf<'a> = Text,
        "props" => props: Leaf<'a> = Raw,
        "order" => order: Shaped<Box<RawOrder<'a>>> = Object::at,
        "customerId" => customer_id: Leaf<'a> = Text,
        "emailHash" => email_hash: Leaf<'a> = Text,
        "name" => name: Leaf<'a> = Text,
        "consent" => consent: Leaf<'a> = Text,
    }
}

members! {
    /// A click.
    struct RawClick {
        "param" => param: Leaf<'a> = Text,
        "network" => network: Leaf<'a> = Text,
        "value" => value: Leaf<'a> = Text,
        "at" => at: Leaf<'a> = Raw,
        "path" => path: Leaf<'a> = Text,
        "ref" => referrer: Leaf<'a> = Text,
        "utm" => utm: Shaped<Utm<'a>> = Object::at,
    }
}

/// A click's UTM parameters: every member, in order (repeated ones too, as before).
#[derive(Default)]
struct Utm<'a>(Vec<(Cow<'a, str>, Leaf<'a>)>);

impl<'de> Members<'de> for Utm<'de> {
    fn member<A: MapAccess<'de>>(&mut self, key: Cow<'de, str>, map: &mut A, ctx: Ctx) -> Result<(), A::Error> {
        let value = map.next_value_seed(Text(ctx))?;
        self.0.push((key, value));
        Ok(())
    }
}

members! {
    /// A conversion's order (`orderId` may be a number, kept as its text).
    struct RawOrder {
        "orderId" => order_id: Leaf<'a> = Raw,
        "amount" => amount: Leaf<'a> = Raw,
        "currency" => currency: Leaf<'a> = Text,
        "items" => items: Shaped<Vec<Shaped<RawItem<'a>>>> = List::at,
        "promoCode" => promo_code: Leaf<'a> = Text,
        "customerStatus" => customer_status: Leaf<'a> = Text,
        "discount" => discount: Leaf<'a> = Raw,
        "custom" => custom: Leaf<'a> = Raw,
    }
}

members! {
    /// An order line.
    struct RawItem {
        "sku" => sku: Leaf<'a> = Text,
        "name" => name: Leaf<'a> = Text,
        "price" => price: Leaf<'a> = Raw,
        "quantity" => quantity: Leaf<'a> = Raw,
        "category" => category: Leaf<'a> = Text,
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the views (serde)

/// A value read as its JSON text: numbers, amounts, free JSON values, unknown members.
struct Raw(Ctx);

impl<'de> DeserializeSeed<'de> for Raw {
    type Value = Leaf<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Leaf<'de>, D::Error> {
        let raw = <&'de RawValue>::deserialize(d)?;
        Leaf::from_raw(raw.get(), self.0).map_err(|e| D::Error::custom(e.as_str()))
    }
}

/// A value expected to be a string, read in one pass.
struct Text(Ctx);

impl<'de> DeserializeSeed<'de> for Text {
    type Value = Leaf<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Leaf<'de>, D::Error> {
        if self.0.raw_first {
            return Raw(self.0).deserialize(d);
        }
        d.deserialize_any(self)
    }
}

/// The scalars a visitor takes for `$value` (a string too, unless it says otherwise).
macro_rules! scalars {
    ($value:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

impl<'de> Visitor<'de> for Text {
    type Value = Leaf<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    scalars!(Leaf::Other);

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Leaf<'de>, E> {
        Ok(Leaf::plain(v, self.0))
    }

    fn visit_str<E>(self, v: &str) -> Result<Leaf<'de>, E> {
        Ok(Leaf::Str(Cow::Owned(v.to_string())))
    }

    fn visit_string<E>(self, v: String) -> Result<Leaf<'de>, E> {
        Ok(Leaf::Str(Cow::Owned(v)))
    }

    fn visit_unit<E>(self) -> Result<Leaf<'de>, E> {
        Ok(Leaf::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Leaf<'de>, A::Error> {
        skip_seq(seq, self.0).map(|()| Leaf::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Leaf<'de>, A::Error> {
        skip_map(map, self.0).map(|()| Leaf::Other)
    }
}

/// Reads the elements of an array that is of no use where it stands (each checked as [`Raw`]).
fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A, ctx: Ctx) -> Result<(), A::Error> {
    while seq.next_element_seed(Raw(ctx.inner()))?.is_some() {}
    Ok(())
}

/// Reads the members of an object that is of no use where it stands.
fn skip_map<'de, A: MapAccess<'de>>(mut map: A, ctx: Ctx) -> Result<(), A::Error> {
    while map.next_key::<Key>()?.is_some() {
        map.next_value_seed(Raw(ctx.inner()))?;
    }
    Ok(())
}

/// A member's name, borrowed from the body when it had no escape.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(v.to_string())))
    }
}

/// A value expected to be an object of `T`'s members.
struct Object<T>(Ctx, PhantomData<T>);

impl<T> Object<T> {
    fn at(ctx: Ctx) -> Self {
        Object(ctx, PhantomData)
    }
}

impl<'de, T: Members<'de>> DeserializeSeed<'de> for Object<T> {
    type Value = Shaped<T>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Shaped<T>, D::Error> {
        shaped(d, self.0, self)
    }
}

impl<'de, T: Members<'de>> Visitor<'de> for Object<T> {
    type Value = Shaped<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    scalars!(Shaped::Not);

    fn visit_str<E>(self, _: &str) -> Result<Shaped<T>, E> {
        Ok(Shaped::Not)
    }

    fn visit_unit<E>(self) -> Result<Shaped<T>, E> {
        Ok(Shaped::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Shaped<T>, A::Error> {
        skip_seq(seq, self.0).map(|()| Shaped::Not)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shaped<T>, A::Error> {
        let mut members = T::default();
        let inner = self.0.inner();
        while let Some(Key(key)) = map.next_key()? {
            members.member(key, &mut map, inner)?;
        }
        Ok(Shaped::Is(members))
    }
}

/// A value expected to be an array of objects of `T`'s members, each made into a `U` by `F` as
/// soon as it is read.
struct List<T, F>(Ctx, F, PhantomData<T>);

impl<T> List<T, fn(Shaped<T>) -> Shaped<T>> {
    fn at(ctx: Ctx) -> Self {
        List(ctx, |t| t, PhantomData)
    }
}

impl<T, U, F: FnMut(Shaped<T>) -> U> List<T, F> {
    fn each(ctx: Ctx, each: F) -> Self {
        List(ctx, each, PhantomData)
    }
}

impl<'de, T: Members<'de>, U, F: FnMut(Shaped<T>) -> U> DeserializeSeed<'de> for List<T, F> {
    type Value = Shaped<Vec<U>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let ctx = self.0;
        shaped(d, ctx, self)
    }
}

impl<'de, T: Members<'de>, U, F: FnMut(Shaped<T>) -> U> Visitor<'de> for List<T, F> {
    type Value = Shaped<Vec<U>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    scalars!(Shaped::Not);

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Shaped::Not)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Shaped::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut list = Vec::new();
        while let Some(element) = seq.next_element_seed(Object::<T>::at(self.0.inner()))? {
            list.push((self.1)(element));
        }
        Ok(Shaped::Is(list))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        skip_map(map, self.0).map(|()| Shaped::Not)
    }
}

/// Reads a value expected to be an object or an array with `visitor`. When `raw_first`, its text
/// is captured first: an array or object is then read from it, and any other value is not one
/// (so a number there is never parsed).
fn shaped<'de, D, V, T>(d: D, ctx: Ctx, visitor: V) -> Result<Shaped<T>, D::Error>
where
    D: Deserializer<'de>,
    V: Visitor<'de, Value = Shaped<T>>,
{
    if !ctx.raw_first {
        return d.deserialize_any(visitor);
    }
    let raw = <&'de RawValue>::deserialize(d)?.get();
    match raw.as_bytes().first() {
        Some(b'[' | b'{') => serde_json::Deserializer::from_str(raw)
            .deserialize_any(visitor)
            .map_err(D::Error::custom),
        _ => match Leaf::from_raw(raw, ctx) {
            Ok(Leaf::Null) => Ok(Shaped::Null),
            Ok(_) => Ok(Shaped::Not),
            Err(e) => Err(D::Error::custom(e.as_str())),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// The rules, on the views (each in the order and with the reasons of the tag's reader, `super`)

/// True when a string read from the body holds a control character (a borrowed one does not:
/// see [`Leaf::Str`]).
#[allow(clippy::ptr_arg)] // Whether it is borrowed is what matters.
fn has_control(s: &Cow<'_, str>) -> bool {
    matches!(s, Cow::Owned(s) if crate::core::has_control(s))
}

/// A required string member, as `super::req_str`.
fn req_str(v: Option<Leaf<'_>>, field: &'static str, max: usize) -> Result<String, Invalid> {
    match v {
        Some(Leaf::Str(s)) if s.is_empty() => Err(bad(field, EMPTY)),
        Some(Leaf::Str(s)) if s.len() > max => Err(bad(field, TOO_LONG)),
        Some(Leaf::Str(s)) if has_control(&s) => Err(bad(field, CONTROL)),
        Some(Leaf::Str(s)) => Ok(s.into_owned()),
        Some(_) => Err(bad(field, NOT_STRING)),
        None => Err(bad(field, REQUIRED)),
    }
}

/// An optional string member (absent or `null`: none).
fn opt_str(v: Option<Leaf<'_>>, field: &'static str, max: usize) -> Result<Option<String>, Invalid> {
    match v {
        None | Some(Leaf::Null) => Ok(None),
        v => req_str(v, field, max).map(Some),
    }
}

/// A number without fraction or exponent that fits a `u64`, as `Json::as_u64`.
fn number(v: &Option<Leaf<'_>>) -> Option<u64> {
    match v {
        Some(Leaf::Num(n)) => json::parse_u64(n),
        _ => None,
    }
}

fn opt_decimal(v: Option<Leaf<'_>>, field: &'static str) -> Result<Option<Decimal>, Invalid> {
    match v {
        None | Some(Leaf::Null) => Ok(None),
        Some(Leaf::Num(n)) => Decimal::new(n, false, field).map(Some),
        Some(Leaf::Str(s)) => Decimal::new(&s, true, field).map(Some),
        Some(_) => Err(bad(field, NOT_NUMBER)),
    }
}

/// A `props`-like member: a JSON object of bounded size ([`super::props`]).
fn props(v: Option<Leaf<'_>>, field: &'static str) -> Result<Option<Json>, Invalid> {
    match v {
        None | Some(Leaf::Null) => Ok(None),
        Some(Leaf::Tree(mut tree)) => super::props(Some(&mut tree), field),
        Some(_) => Err(bad(field, NOT_OBJECT)),
    }
}

/// An event; its `id` is left in `e`, so that a refused event can still be named.
fn event(e: &mut RawEvent<'_>) -> Result<Event, Invalid> {
    match &e.id {
        Some(Leaf::Str(id)) if is_uuid(id) => {}
        Some(Leaf::Str(_)) => return Err(bad("id", "must be a lowercase UUID")),
        Some(_) => return Err(bad("id", "must be a string")),
        None => return Err(bad("id", "is required")),
    }
    let at = number(&e.at).ok_or(bad("at", "must be a millisecond timestamp"))?;
    let visitor = opt_str(e.visitor.take(), "visitor", limits::MAX_SHORT)?;
    let session = opt_str(e.session.take(), "session", limits::MAX_SHORT)?;
    let url = req_str(e.url.take(), "url", limits::MAX_URL)?;
    let referrer = opt_str(e.referrer.take(), "referrer", limits::MAX_URL)?.unwrap_or_default();
    let clicks = match e.clicks.take() {
        None => Vec::new(),
        Some(Shaped::Is(list)) if list.len() <= limits::MAX_CLICKS => {
            let mut clicks = Vec::with_capacity(list.len());
            for c in list {
                clicks.push(read_click(c)?);
            }
            clicks
        }
        Some(Shaped::Is(_)) => return Err(bad("clicks", "too many clicks")),
        Some(_) => return Err(bad("clicks", "must be an array")),
    };
    let ty = match e.ty.take() {
        Some(Leaf::Str(t)) => Some(t),
        _ => None,
    };
    let kind = match ty.as_deref() {
        Some("pageview") => Kind::PageView {
            title: opt_str(e.title.take(), "title", limits::MAX_TEXT)?.unwrap_or_default(),
            props: props(e.props.take(), "props")?,
        },
        Some("conversion") => match e.order.take() {
            Some(Shaped::Is(o)) => Kind::Conversion(read_order(*o)?),
            Some(_) => return Err(bad("order", NOT_OBJECT)),
            None => return Err(bad("order", "is required")),
        },
        Some("identify") => {
            let customer_id = opt_str(e.customer_id.take(), "customerId", limits::MAX_SHORT)?;
            let email_hash = opt_str(e.email_hash.take(), "emailHash", limits::MAX_SHORT)?;
            if email_hash.as_deref().is_some_and(|h| !is_sha256_hex(h)) {
                return Err(bad("emailHash", "must be a lowercase hex SHA-256 digest"));
            }
            if customer_id.is_none() && email_hash.is_none() {
                return Err(bad("identify", "needs customerId or emailHash"));
            }
            Kind::Identify {
                customer_id,
                email_hash,
            }
        }
        Some("event") => Kind::Custom {
            name: req_str(e.name.take(), "name", limits::MAX_SHORT)?,
            props: props(e.props.take(), "props")?,
        },
        Some("consent") => match &e.consent {
            Some(Leaf::Str(c)) if c == "granted" => Kind::Consent { granted: true },
            Some(Leaf::Str(c)) if c == "denied" => Kind::Consent { granted: false },
            _ => return Err(bad("consent", "must be \"granted\" or \"denied\"")),
        },
        Some(_) => return Err(bad("type", "unknown event type")),
        None => return Err(bad("type", "is required")),
    };
    let id = match e.id.take() {
        Some(Leaf::Str(id)) => id.into_owned(),
        _ => String::new(),
    };
    Ok(Event {
        id,
        at,
        visitor,
        session,
        url,
        referrer,
        clicks,
        kind,
    })
}

/// A click, as `super::read_click`.
fn read_click(c: Shaped<RawClick<'_>>) -> Result<Click, Invalid> {
    let Shaped::Is(c) = c else {
        return Err(bad("clicks", "each click must be an object"));
    };
    let value = req_str(c.value, "clicks.value", click::MAX_VALUE_LEN)?;
    click::validate(&value).map_err(|r| bad("clicks.value", r.as_str()))?;
    let mut utm = Vec::new();
    match c.utm {
        None => {}
        Some(Shaped::Is(Utm(members))) => {
            for (k, v) in members {
                if !click::UTM_KEYS.contains(&&*k) {
                    return Err(bad("clicks.utm", "unknown UTM key"));
                }
                let Leaf::Str(s) = v else {
                    return Err(bad("clicks.utm", "values must be strings"));
                };
                if s.len() > click::MAX_UTM_LEN || has_control(&s) {
                    return Err(bad("clicks.utm", "value too long or has control characters"));
                }
                utm.push((k.into_owned(), s.into_owned()));
            }
        }
        Some(_) => return Err(bad("clicks.utm", NOT_OBJECT)),
    }
    Ok(Click {
        param: req_str(c.param, "clicks.param", limits::MAX_SHORT)?,
        network: req_str(c.network, "clicks.network", limits::MAX_SHORT)?,
        value,
        at: number(&c.at).ok_or(bad("clicks.at", "must be a millisecond timestamp"))?,
        path: req_str(c.path, "clicks.path", limits::MAX_URL)?,
        referrer: opt_str(c.referrer, "clicks.ref", limits::MAX_SHORT * 2)?.unwrap_or_default(),
        utm,
    })
}

/// An order, as `super::read_order`.
fn read_order(o: RawOrder<'_>) -> Result<Order, Invalid> {
    let order_id = match o.order_id {
        // A numeric order ID is common in shop code; keep its text.
        Some(Leaf::Num(n)) if json::parse_u64(n).is_some() => n.to_string(),
        v => req_str(v, "order.orderId", limits::MAX_SHORT)?,
    };
    let currency = opt_str(o.currency, "order.currency", limits::MAX_SHORT)?;
    if currency.as_deref().is_some_and(|c| !is_currency(c)) {
        return Err(bad("order.currency", "must be an ISO 4217 code like EUR"));
    }
    let items = match o.items {
        None | Some(Shaped::Null) => Vec::new(),
        Some(Shaped::Is(list)) if list.len() <= limits::MAX_ITEMS => {
            let mut items = Vec::with_capacity(list.len());
            for it in list {
                items.push(read_item(it)?);
            }
            items
        }
        Some(Shaped::Is(_)) => return Err(bad("order.items", "too many items")),
        Some(Shaped::Not) => return Err(bad("order.items", "must be an array")),
    };
    let customer_status = match o.customer_status {
        None | Some(Leaf::Null) => None,
        Some(Leaf::Str(s)) if s == "new" => Some(CustomerStatus::New),
        Some(Leaf::Str(s)) if s == "returning" => Some(CustomerStatus::Returning),
        Some(_) => return Err(bad("order.customerStatus", "must be \"new\" or \"returning\"")),
    };
    Ok(Order {
        order_id,
        amount: opt_decimal(o.amount, "order.amount")?,
        currency,
        items,
        promo_code: opt_str(o.promo_code, "order.promoCode", limits::MAX_SHORT)?,
        customer_status,
        discount: opt_decimal(o.discount, "order.discount")?,
        custom: props(o.custom, "order.custom")?,
    })
}

/// An order line, as `super::read_item`.
fn read_item(it: Shaped<RawItem<'_>>) -> Result<Item, Invalid> {
    let Shaped::Is(it) = it else {
        return Err(bad("order.items", "each item must be an object"));
    };
    let quantity = match &it.quantity {
        None | Some(Leaf::Null) => None,
        q => Some(
            number(q)
                .filter(|&n| n <= 1_000_000)
                .ok_or(bad("order.items.quantity", "must be a whole number"))?,
        ),
    };
    Ok(Item {
        sku: opt_str(it.sku, "order.items.sku", limits::MAX_SHORT)?,
        name: opt_str(it.name, "order.items.name", limits::MAX_TEXT)?,
        price: opt_decimal(it.price, "order.items.price")?,
        quantity,
        category: opt_str(it.category, "order.items.category", limits::MAX_SHORT)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    /// The tag's reader of a click (`super::read_click`, on a parsed `Json`), and this one.
    fn both_clicks(text: &str) -> (Result<Click, Invalid>, Result<Click, Invalid>) {
        let tag = super::super::read_click(&mut json::parse(text).unwrap());
        let ours = decode(text, Object::<RawClick>::at).unwrap();
        (tag, read_click(ours))
    }

    /// The tag's reader of an order (the `conversion` command's), and this one.
    fn both_orders(text: &str) -> (Result<Order, Invalid>, Result<Order, Invalid>) {
        let tag = super::super::read_order(&mut json::parse(text).unwrap());
        let ours = match decode(text, Object::<RawOrder>::at).unwrap() {
            Shaped::Is(o) => read_order(o),
            _ => Err(bad("order", NOT_OBJECT)),
        };
        (tag, ours)
    }

    /// Both readers take the same clicks and refuse the others for the same field and reason.
    #[test]
    fn clicks_read_as_the_tag_reads_them() {
        let ok = r#"{"param":"irclickid","network":"impact","value":"Xy12abc","at":1764150000000,"path":"/p","ref":"partner.example","utm":{"source":"partner","medium":"affiliate"}}"#;
        let long = "a".repeat(300);
        let cases = [
            ok.to_string(),
            ok.replace(r#""ref":"partner.example","#, ""),
            ok.replace(r#","utm":{"source":"partner","medium":"affiliate"}"#, ""),
            // Repeated members: the last one wins, in the click and in its UTM parameters (where
            // every member is kept, as before).
            ok.replace(r#""value":"Xy12abc""#, r#""value":"first","value":"Xy12abc""#),
            ok.replace(r#""medium":"affiliate""#, r#""medium":"a","medium":"b""#),
            // Escapes, unknown members, white space.
            ok.replace("Xy12abc", r"Xy\u0031\u00322abc"),
            ok.replace(r#""path":"/p""#, r#""path":"\/p\u00e9\t""#),
            ok.replace('{', "{ \"extra\" : [1, {\"a\": null}] ,\n"),
            "[]".into(),
            "null".into(),
            "\"click\"".into(),
            "1e400".into(),
        ];
        let mut changed = vec![];
        for (member, values) in [
            (
                "param",
                vec!["", "\"\"", "5", "null", "\"a\\u0000b\"", "\"a\u{7f}b\"", "\"a\u{85}b\""],
            ),
            ("network", vec!["", "true", "\"€\""]),
            ("value", vec!["", "\"<x>\"", "\"\"", "7"]),
            (
                "at",
                vec![
                    "",
                    "\"1\"",
                    "1.0",
                    "-1",
                    "1e3",
                    "1e400",
                    "-0",
                    "18446744073709551616",
                    "0",
                ],
            ),
            ("path", vec!["", "[]", "{}"]),
            ("ref", vec!["null", "1", "\"a\\u0085\""]),
            (
                "utm",
                vec![
                    "null",
                    "[]",
                    "{}",
                    "{\"nope\":\"x\"}",
                    "{\"source\":1}",
                    "{\"source\":\"a\\nb\"}",
                    "{\"source\":[[1]]}",
                ],
            ),
        ] {
            for v in values {
                let text = match v {
                    "" => ok.replacen(&format!("\"{member}\":"), "\"gone\":", 1),
                    v => ok.replacen(&format!("\"{member}\":"), &format!("\"{member}\":{v},\"was\":"), 1),
                };
                changed.push(text);
            }
        }
        changed.push(ok.replace("Xy12abc", &long));
        changed.push(ok.replace("/p", &format!("/{}", "p".repeat(2048))));
        changed.push(ok.replace("partner.example", &"p".repeat(257)));
        for text in cases.iter().chain(&changed) {
            let (tag, ours) = both_clicks(text);
            assert_eq!(ours, tag, "{text}");
        }
        assert!(both_clicks(ok).1.is_ok());
    }

    /// Both readers take the same orders and refuse the others for the same field and reason.
    #[test]
    fn orders_read_as_the_tag_reads_them() {
        let ok = r#"{"orderId":"ORD-1001","amount":"129.90","currency":"EUR","items":[{"sku":"SHOE-42","name":"Trail shoe","price":119.90,"quantity":1,"category":"shoes"},{"sku":"SOCK-1","price":5,"quantity":2}],"promoCode":"SPRING10","customerStatus":"new","discount":"10.00","custom":{"channel":"web","giftWrap":true}}"#;
        let mut texts = vec![ok.to_string(), "[]".into(), "null".into(), "5".into()];
        for (member, values) in [
            (
                "orderId",
                vec![
                    "",
                    "1001",
                    "0",
                    "1.5",
                    "-1",
                    "1e400",
                    "99999999999999999999",
                    "\"\"",
                    "null",
                ],
            ),
            (
                "amount",
                vec![
                    "",
                    "49.90",
                    "\"49.90\"",
                    "0.12345678",
                    "1e21",
                    "-5",
                    "\"12,50\"",
                    "true",
                    "null",
                    "[[1]]",
                    "1e400",
                    "\"4\\u0039.90\"",
                ],
            ),
            ("currency", vec!["", "\"eur\"", "\"EURO\"", "null", "1"]),
            (
                "items",
                vec![
                    "",
                    "null",
                    "{}",
                    "[1]",
                    "[null]",
                    "[{\"quantity\":1.5}]",
                    "[{\"quantity\":1000001}]",
                    "[{\"quantity\":null,\"price\":\"x\"}]",
                    "[{\"name\":\"a\\u0001\"}]",
                ],
            ),
            ("promoCode", vec!["", "\"a\\u0000b\"", "null", "\"\""]),
            ("customerStatus", vec!["", "\"returning\"", "\"vip\"", "null", "[]"]),
            ("discount", vec!["", "0", "\"0.5\"", "{}"]),
            (
                "custom",
                vec!["", "null", "[1]", "{}", "\"x\"", "{\"a\":{\"b\":[1,2.50,-0,1E-2]}}"],
            ),
        ] {
            for v in values {
                texts.push(match v {
                    "" => ok.replacen(&format!("\"{member}\":"), "\"gone\":", 1),
                    v => ok.replacen(&format!("\"{member}\":"), &format!("\"{member}\":{v},\"was\":"), 1),
                });
            }
        }
        let items: Vec<String> = (0..=limits::MAX_ITEMS).map(|_| "{}".to_string()).collect();
        texts.push(ok.replacen("\"items\":", &format!("\"items\":[{}],\"was\":", items.join(",")), 1));
        let big = format!("{{\"k\":\"{}\"}}", "x".repeat(limits::MAX_PROPS));
        texts.push(ok.replacen("\"custom\":", &format!("\"custom\":{big},\"was\":"), 1));
        for text in &texts {
            let (tag, ours) = both_orders(text);
            assert_eq!(ours, tag, "{text}");
        }
        // Numbers are the text they were sent as.
        let Ok(o) = both_orders(ok).1 else { panic!() };
        assert_eq!(
            o.items[0].price.as_ref().map(|p| (p.text.as_str(), p.quoted)),
            Some(("119.90", false))
        );
        assert_eq!(o.custom.unwrap().to_text(), r#"{"channel":"web","giftWrap":true}"#);
    }

    fn batch_of(event: &str) -> String {
        format!(r#"{{"v":1,"site":"demo","sentAt":1,"events":[{event}]}}"#)
    }

    /// Every body `core::json` refuses is refused whole, for its reason; every body it takes is
    /// read, whatever the members the wire format does not know hold.
    #[test]
    fn bodies_are_refused_as_core_json_refuses_them() {
        let event =
            r#"{"id":"019ac0f1-2a00-7c3d-8e4f-0a1b2c3d4e5f","type":"pageview","at":1,"url":"/","props":{"a":1}}"#;
        let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        let bodies = [
            String::new(),
            " ".into(),
            "{".into(),
            batch_of(event) + " x",
            batch_of(event) + " \t\r\n",
            format!("\u{feff}{}", batch_of(event)),
            batch_of(event).replace("\"url\":\"/\"", "\"url\":\"/\u{1}\""),
            batch_of(event).replace("\"url\":\"/\"", "\"url\":\"\\x\""),
            batch_of(event).replace("\"url\":\"/\"", "\"url\":\"\\ud800\""),
            batch_of(event).replace("\"url\":\"/\"", "\"url\":\"\\udc00x\""),
            batch_of(event).replace("\"url\":\"/\"", "\"url\":\"\\ud83d\\ude00\""),
            batch_of(event).replace("\"url\":\"/\"", "\"url\":\"/\",\"x\":\"\\ud800\\u0041\""),
            batch_of(event).replace("\"url\":\"/\"", "\"url\":\"/\",\"\\udfff\":1"),
            batch_of(event).replace("\"url\":\"/\"", "\"url\":\"/\",\"x\":[\"\\ud800\"]"),
            batch_of(event).replace("\"url\":\"/\"", "\"url\":\"/\",\"x\":tru"),
            batch_of(event).replace("\"url\":\"/\"", "\"url\":\"/\",\"x\":01"),
            batch_of(event).replace("\"url\":\"/\"", "\"url\":\"/\",\"x\":1.e3"),
            batch_of(event).replace("\"url\":\"/\"", "\"url\":\"/\",\"x\":[1,]"),
            batch_of(event).replace("\"a\":1", "\"a\":1,"),
            // The nesting limit counts from the body's root, wherever the value is.
            batch_of(event).replace("\"url\":\"/\"", &format!("\"url\":\"/\",\"x\":{}", deep(29))),
            batch_of(event).replace("\"url\":\"/\"", &format!("\"url\":\"/\",\"x\":{}", deep(30))),
            batch_of(event).replace("\"a\":1", &format!("\"a\":{}", deep(28))),
            batch_of(event).replace("\"a\":1", &format!("\"a\":{}", deep(29))),
            batch_of(event).replace("\"url\":\"/\"", &format!("\"url\":{}", deep(29))),
            batch_of(event).replace("\"url\":\"/\"", &format!("\"url\":{}", deep(30))),
            batch_of(event).replace(
                "\"url\":\"/\"",
                &format!("\"url\":\"/\",\"clicks\":[{{\"utm\":{{\"source\":{}}}}}]", deep(26)),
            ),
            batch_of(event).replace(
                "\"url\":\"/\"",
                &format!("\"url\":\"/\",\"clicks\":[{{\"utm\":{{\"source\":{}}}}}]", deep(27)),
            ),
            format!(
                r#"{{"v":1,"site":"demo","sentAt":1,"x":{},"events":[{event}]}}"#,
                deep(31)
            ),
            format!(
                r#"{{"v":1,"site":"demo","sentAt":1,"x":{},"events":[{event}]}}"#,
                deep(32)
            ),
            deep(100_000),
            // Numbers beyond an f64 where an array or object is expected: read, never parsed.
            batch_of(event).replace("\"url\":\"/\"", "\"url\":\"/\",\"clicks\":1e400"),
            batch_of(event).replace("\"url\":\"/\"", "\"url\":\"/\",\"clicks\":[-1e999]"),
            format!(r#"{{"v":1,"site":"demo","sentAt":1,"events":[1e400,{event}]}}"#),
            r#"{"v":1,"site":"demo","sentAt":1,"events":1e400}"#.into(),
            "1e400".into(),
            batch_of(event).replace("\"at\":1", "\"at\":1e400"),
        ];
        for text in &bodies {
            match (json::parse(text), read_batch(text)) {
                (Err(e), got) => assert_eq!(got.err(), Some(bad("body", e.as_str())), "{text:.80}"),
                (Ok(_), got) => assert!(
                    got.as_ref()
                        .err()
                        .is_none_or(|e| e.field != "body" || e.reason == "must be a JSON object"),
                    "{text:.80}: {got:?}"
                ),
            }
        }
        let body = |i: usize| {
            read_batch(&bodies[i])
                .err()
                .filter(|e| e.field == "body")
                .map(|e| e.reason)
        };
        let (bad_escape, too_deep) = (Some(JsonError::BadEscape.as_str()), Some(JsonError::TooDeep.as_str()));
        assert_eq!([body(8), body(9), body(11), body(12), body(13)], [bad_escape; 5]);
        assert_eq!(
            [body(19), body(20), body(21), body(22)],
            [None, too_deep, None, too_deep]
        );
        assert_eq!(
            [body(23), body(24), body(25), body(26)],
            [None, too_deep, None, too_deep]
        );
        assert_eq!([body(27), body(28), body(29)], [None, too_deep, too_deep]);
        assert_eq!(body(10), None);
        let refused = |text: &str| read_batch(text).unwrap().events[0].clone().unwrap_err().1.to_string();
        assert_eq!(refused(&bodies[30]), "clicks: must be an array");
        assert_eq!(refused(&bodies[31]), "clicks: each click must be an object");
        assert_eq!(refused(&bodies[32]), "event: must be an object");
        assert_eq!(read_batch(&bodies[33]).unwrap_err(), bad("events", "must be an array"));
        assert_eq!(refused(&bodies[35]), "at: must be a millisecond timestamp");
    }

    /// Repeated members: the last one wins, as in `JSON.parse`, in the envelope and in events.
    #[test]
    fn the_last_of_repeated_members_wins() {
        let event = r#"{"id":"x","id":"019ac0f1-2a00-7c3d-8e4f-0a1b2c3d4e5f","type":"event","type":"pageview","at":"no","at":2,"url":"/a","url":"/b","props":{"a":1},"props":null}"#;
        let text = format!(r#"{{"v":2,"v":1,"site":"a","site":"demo","sentAt":1,"events":[],"events":[{event}]}}"#);
        let b = read_batch(&text).unwrap();
        assert_eq!(b.site, "demo");
        let e = b.events[0].clone().unwrap();
        assert_eq!(
            (e.id.as_str(), e.at, e.url.as_str()),
            ("019ac0f1-2a00-7c3d-8e4f-0a1b2c3d4e5f", 2, "/b")
        );
        assert_eq!(
            e.kind,
            Kind::PageView {
                title: String::new(),
                props: None
            }
        );
    }
}
