//! Property tests of the parsers that read outside input: the landing URL and its query with
//! the click capture (`url`), the journey record kept in the cookie and localStorage (`record`),
//! the journey parameter of links (`link`), the snippet's commands (`command`) and `init`'s
//! configuration (`config`). For each: it never panics, whatever it accepts round-trips (written
//! again and read back, it is the same), whatever it refuses comes with a reason, and nothing it
//! refuses is kept (a refused click value is never captured, nor left in a cleaned URL).
//!
//! `PROPTEST_CASES` sets the cases per property (a few thousand by default, what the test command
//! runs); `cargo xtask fuzz` runs each property with a million and prints the time per parser.
//! The wire decoder the collector reads batches with (`wire::read_batch`) is held to the same:
//! any text, the golden batches edited, and events built as the tag writes them.
#![cfg(not(target_arch = "wasm32"))]

use proptest::prelude::*;
use proptest::test_runner::Config as Cases;
use utt::core::click::{self, Click, Rejected};
use utt::core::command::{self, Command};
use utt::core::config::{Config, StorageMode};
use utt::core::json;
use utt::core::link;
use utt::core::record::{self, Record};
use utt::core::url;
use utt::core::wire;

/// The cases per property: `PROPTEST_CASES`, or what the test command runs.
fn cases() -> Cases {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3000);
    Cases {
        cases,
        // A failure prints its smallest input; nothing is written into the source tree.
        failure_persistence: None,
        ..Cases::default()
    }
}

// ---- generators ----

/// Any text, weighted towards what URLs, records and JSON are made of.
fn text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        2 => proptest::collection::vec(any::<char>(), 0..max).prop_map(|c| c.into_iter().collect()),
        3 => proptest::collection::vec(
            prop_oneof![
                Just('%'), Just('+'), Just('&'), Just('='), Just('?'), Just('#'), Just('/'), Just(':'),
                Just('.'), Just('~'), Just('<'), Just('"'), Just('\''), Just(' '), Just('('), Just(')'),
                Just('!'), Just('*'), Just('['), Just(']'), Just('{'), Just('}'), Just(','), Just('\\'),
                Just('\u{0}'), Just('\u{85}'), Just('é'), Just('😀'),
                proptest::char::range('0', '9'), proptest::char::range('a', 'f'), proptest::char::range('A', 'Z'),
            ],
            0..max,
        )
        .prop_map(|c| c.into_iter().collect()),
    ]
}

/// Text without control characters (what the wire format takes for paths, referrers and names).
fn plain(min: usize, max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            4 => proptest::char::range(' ', '~'),
            1 => proptest::char::range('\u{a0}', '\u{2fff}'),
            1 => Just('😀'),
        ],
        min..=max,
    )
    .prop_map(|c| c.into_iter().collect())
}

/// A click ID the tag keeps.
fn safe_value() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9_.~:=+/-]{1,40}", "[A-Za-z0-9]{250,256}",]
}

/// Lowercase UUID text.
fn uuid() -> impl Strategy<Value = String> {
    "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
}

/// A click as a record keeps it (what `wire::read_click` accepts).
fn valid_click() -> impl Strategy<Value = Click> {
    (
        plain(1, 30),
        plain(1, 30),
        safe_value(),
        any::<u64>(),
        plain(1, 60),
        prop_oneof![Just(String::new()), plain(1, 40)],
        proptest::sample::subsequence(click::UTM_KEYS.to_vec(), 0..=click::UTM_KEYS.len()),
        proptest::collection::vec(plain(0, 30), 5),
    )
        .prop_map(|(param, network, value, at, path, referrer, keys, values)| Click {
            param,
            network,
            value,
            at,
            path,
            referrer,
            utm: keys.into_iter().zip(values).map(|(k, v)| (k.to_string(), v)).collect(),
        })
}

fn valid_record() -> impl Strategy<Value = Record> {
    (
        uuid(),
        uuid(),
        any::<u64>(),
        proptest::collection::vec(valid_click(), 0..=record::MAX_CLICKS),
        any::<u64>(),
    )
        .prop_map(|(visitor, session, last_seen, clicks, written)| Record {
            visitor,
            session,
            last_seen,
            clicks,
            written,
        })
}

/// Edits to a text: (where, what) pairs, each deleting, replacing or inserting one byte from
/// the alphabet of records and links (and a few others).
fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    let byte = prop_oneof![
        proptest::sample::select(b"'()!*%0123456789ABCDEFabcdefxyz.-_~\"{}:,<;".to_vec()),
        any::<u8>().prop_map(|b| b & 0x7f),
    ];
    proptest::collection::vec((any::<usize>(), 0u8..3, byte), 1..4)
}

fn apply(text: &str, edits: &[(usize, u8, u8)]) -> String {
    let mut b = text.as_bytes().to_vec();
    for &(at, op, byte) in edits {
        let i = if b.is_empty() {
            0
        } else {
            at % (b.len() + usize::from(op == 2))
        };
        match op {
            0 if i < b.len() => {
                b.remove(i);
            }
            1 if i < b.len() => b[i] = byte,
            _ => b.insert(i.min(b.len()), byte),
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

// ---- a form encoder and a JSON writer, the tests' own ----

/// `s` form-encoded as a query component: unreserved bytes as they are, every other `%XX`.
fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A JSON value to feed the parsers, and its text.
#[derive(Clone, Debug)]
enum J {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl J {
    fn text(&self) -> String {
        match self {
            J::Null => "null".into(),
            J::Bool(b) => b.to_string(),
            J::Num(n) => n.clone(),
            J::Str(s) => quote(s),
            J::Arr(a) => format!("[{}]", a.iter().map(J::text).collect::<Vec<_>>().join(",")),
            J::Obj(m) => format!(
                "{{{}}}",
                m.iter()
                    .map(|(k, v)| format!("{}:{}", quote(k), v.text()))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn s(v: &str) -> J {
    J::Str(v.into())
}

/// Any JSON value, with the words the command and config parsers look for.
fn json_value() -> impl Strategy<Value = J> {
    let word = proptest::sample::select(vec![
        "init",
        "pageview",
        "conversion",
        "identify",
        "consent",
        "event",
        "flush",
        "granted",
        "denied",
        "site",
        "demo",
        "orderId",
        "amount",
        "currency",
        "EUR",
        "email",
        "customerId",
        "a@b.co",
        "wait",
        "drop",
        "cookie",
        "local",
        "none",
        "cookie+local",
        "auto",
        "https://c.example",
        "/collect",
    ])
    .prop_map(s);
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            (0u64..500).prop_map(|n| n.to_string()),
            Just("1.5".to_string()),
            Just("1e3".to_string()),
            Just("-0".to_string()),
            Just("99999999999999999999999".to_string()),
        ]
        .prop_map(J::Num),
        text(12).prop_map(J::Str),
        word,
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(J::Arr),
            proptest::collection::vec((prop_oneof![text(8), config_key()], inner), 0..6).prop_map(J::Obj),
        ]
    })
}

// ---- url: query_pairs, decode_component, capture, clean ----

/// A click parameter of the site's configuration in these tests, besides the built-in ones.
fn custom() -> Vec<(String, String)> {
    vec![("aff_id".to_string(), "myprogram".to_string())]
}

/// The value of one query pair: kept, refused (carrying a marker that appears nowhere else), or
/// anything at all.
#[derive(Clone, Debug)]
enum Value {
    Safe(String),
    Refused(String),
    Any(String),
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => safe_value().prop_map(|v| Value::Safe(form_encode(&v))),
        // Each holds a marker `<R@>` (raw or encoded; `@` becomes the part's index) and is
        // refused for it.
        3 => (0u8..5).prop_map(|how| Value::Refused(match how {
            0 => "%3CR@%3E".to_string(),
            1 => "a%3CR@%3E%zz".to_string(),
            2 => format!("{}%3CR@%3E", "x".repeat(260)),
            3 => "%3CR@%3E%FF".to_string(),
            _ => "<R@>".to_string(),
        })),
        1 => Just(Value::Refused(String::new())),
        2 => "[A-Za-z0-9%+._~-]{0,20}".prop_map(Value::Any),
    ]
}

fn raw(v: &Value) -> &str {
    match v {
        Value::Safe(s) | Value::Refused(s) | Value::Any(s) => s,
    }
}

/// A query key: a click parameter (built-in or the site's), a UTM key, the journey parameter,
/// or another one.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(vec!["irclickid", "gclid", "fbclid", "msclkid", "aff_id"]).prop_map(String::from),
        1 => proptest::sample::select(vec!["utm_source", "utm_campaign"]).prop_map(String::from),
        1 => Just(url::JOURNEY_PARAM.to_string()),
        2 => "[a-z]{1,6}",
    ]
}

/// The decoded value of a raw query value, if the tag would keep it as a click ID.
fn kept(raw: &str) -> Option<String> {
    url::decode_component(raw).ok().filter(|v| click::validate(v).is_ok())
}

fn refusal(raw: &str) -> Rejected {
    match url::decode_component(raw) {
        Err(r) => r,
        Ok(v) => click::validate(&v).expect_err("a refused value"),
    }
}

proptest! {
    #![proptest_config(cases())]

    /// Any text as a page URL and a referrer: nothing panics, every captured click validates,
    /// each refusal names a click parameter with a reason, and the cleaned URL and referrer
    /// carry no refused value and no journey parameter, whatever the input.
    #[test]
    fn url_any_text(page in text(80), referrer in text(40), now in any::<u64>()) {
        let c = custom();
        for (k, v) in url::query_pairs(&page) {
            prop_assert!(!k.contains(['&', '#', '=']) && !v.contains(['&', '#']), "{k:?}={v:?}");
        }
        let _ = url::path_of(&page);
        let _ = url::host_of(&referrer);
        let cap = url::capture(&page, &referrer, now, &c);
        for k in &cap.clicks {
            prop_assert_eq!(click::validate(&k.value), Ok(()));
            prop_assert_eq!(click::canonical_param(&k.param, &c), Some(k.param.as_str()));
            prop_assert_eq!(k.at, now);
        }
        for r in &cap.rejected {
            prop_assert!(click::canonical_param(&r.param, &c).is_some(), "{:?}", r);
            prop_assert!(!r.reason.as_str().is_empty());
        }
        let cleaned = url::clean(&page, &c);
        prop_assert_eq!(url::refused_param(&cleaned, &c), None);
        prop_assert!(url::query_pairs(&cleaned).iter().all(|(k, _)| *k != url::JOURNEY_PARAM));
        prop_assert_eq!(&url::clean(&cleaned, &c), &cleaned, "cleaning twice changes nothing");
        // Cleaning drops nothing the capture keeps.
        prop_assert_eq!(&url::capture(&cleaned, &referrer, now, &c).clicks, &cap.clicks);
        let sent = url::clean_referrer(&referrer, &page, &c);
        prop_assert_eq!(url::refused_param(&sent, &c), None);
        prop_assert!(url::query_pairs(&sent).iter().all(|(k, _)| *k != url::JOURNEY_PARAM));
    }

    /// A query component decodes to what it encodes, and a refusal is always `BadEncoding`.
    #[test]
    fn url_components_round_trip(v in text(40), junk in text(20)) {
        prop_assert_eq!(url::decode_component(&form_encode(&v)), Ok(v.clone()));
        match url::decode_component(&junk) {
            Ok(d) => prop_assert_eq!(url::decode_component(&form_encode(&d)), Ok(d)),
            Err(r) => prop_assert_eq!(r, Rejected::BadEncoding),
        }
    }

    /// A landing URL built from known parts: each click parameter's first kept value is
    /// captured, in URL order; a parameter with only refused values is reported with the
    /// reason of its first; no refused value (each carries a unique marker) is captured or left
    /// in the cleaned URL, which is otherwise the URL byte for byte.
    #[test]
    fn url_capture_keeps_nothing_refused(
        parts in proptest::collection::vec((key(), value()), 0..8),
        fragment in prop_oneof![Just(None), "[a-z=&?]{0,8}".prop_map(Some)],
        now in any::<u64>(),
    ) {
        let c = custom();
        let parts: Vec<(String, Value)> = parts
            .into_iter()
            .enumerate()
            .map(|(i, (k, v))| match v {
                Value::Refused(r) => (k, Value::Refused(r.replace('@', &i.to_string()))),
                v => (k, v),
            })
            .collect();
        let mut page = String::from("https://shop.example/p/1");
        for (i, (k, v)) in parts.iter().enumerate() {
            page.push(if i == 0 { '?' } else { '&' });
            page.push_str(k);
            page.push('=');
            page.push_str(raw(v));
        }
        if let Some(f) = &fragment {
            page.push('#');
            page.push_str(f);
        }
        let cap = url::capture(&page, "", now, &c);

        // What the capture must find, from the parts.
        let mut want: Vec<(String, String)> = Vec::new();
        let mut refused: Vec<(String, Rejected)> = Vec::new();
        for (k, v) in &parts {
            let Some(param) = click::canonical_param(k, &c) else { continue };
            if want.iter().any(|(p, _)| p == param) {
                continue;
            }
            match kept(raw(v)) {
                Some(value) => want.push((param.to_string(), value)),
                None if !refused.iter().any(|(p, _)| p == param) => refused.push((param.to_string(), refusal(raw(v)))),
                None => {}
            }
        }
        let got: Vec<(String, String)> = cap.clicks.iter().map(|k| (k.param.clone(), k.value.clone())).collect();
        prop_assert_eq!(&got, &want);
        for (param, reason) in &refused {
            if want.iter().all(|(p, _)| p != param) {
                prop_assert!(
                    cap.rejected.iter().any(|r| &r.param == param && r.reason == *reason),
                    "{} refused for {:?}: {:?}", param, reason, cap.rejected
                );
            }
        }
        prop_assert_eq!(
            cap.journey.as_deref(),
            parts.iter().find(|(k, _)| k == url::JOURNEY_PARAM).map(|(_, v)| raw(v))
        );

        let cleaned = url::clean(&page, &c);
        let mut expected = String::from("https://shop.example/p/1");
        let mut sep = '?';
        for (k, v) in &parts {
            let refused_click = click::canonical_param(k, &c).is_some() && kept(raw(v)).is_none();
            if k == url::JOURNEY_PARAM || refused_click {
                continue;
            }
            expected.push(sep);
            sep = '&';
            expected.push_str(&format!("{k}={}", raw(v)));
        }
        if let Some(f) = &fragment {
            expected.push('#');
            expected.push_str(f);
        }
        prop_assert_eq!(&cleaned, &expected);
        for (i, (k, v)) in parts.iter().enumerate() {
            if matches!(v, Value::Refused(r) if !r.is_empty()) && click::canonical_param(k, &c).is_some() {
                for marker in [format!("R{i}%3E"), format!("R{i}>")] {
                    prop_assert!(!cleaned.contains(&marker), "{} left in {}", marker, cleaned);
                    prop_assert!(cap.clicks.iter().all(|k| !k.value.contains(&marker)));
                }
            }
        }
    }
}

// ---- record: the journey record ----

proptest! {
    #![proptest_config(cases())]

    /// A valid record is written as cookie-safe text and read back the same.
    #[test]
    fn record_round_trips(r in valid_record()) {
        let text = record::encode(&r);
        prop_assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~'()!*%".contains(&b)), "{}", text);
        prop_assert_eq!(record::decode(&text), Some(r));
    }

    /// Any text, or a valid record's text edited: reading never panics, and whatever it accepts
    /// holds only UUIDs and valid clicks, at most `MAX_CLICKS`, and round-trips.
    #[test]
    fn record_decode_accepts_only_what_round_trips(
        r in valid_record(),
        edits in edits(),
        junk in text(60),
    ) {
        for input in [apply(&record::encode(&r), &edits), junk.clone(), format!("1.{junk}")] {
            let Some(back) = record::decode(&input) else { continue };
            prop_assert!(back.clicks.len() <= record::MAX_CLICKS);
            for id in [&back.visitor, &back.session] {
                prop_assert!(utt::core::wire::is_uuid(id), "{}", id);
            }
            for k in &back.clicks {
                prop_assert_eq!(click::validate(&k.value), Ok(()));
            }
            prop_assert_eq!(record::decode(&record::encode(&back)), Some(back));
        }
    }
}

// ---- link: the journey parameter ----

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) Chrome/156";

/// The clicks a link written at `now` carries: the journey's, as `record::fit_to` leaves them
/// within a link's 1,500 bytes.
fn fits(visitor: &str, session: &str, now: u64, clicks: &[Click]) -> Vec<Click> {
    let mut r = Record {
        visitor: visitor.to_string(),
        session: session.to_string(),
        last_seen: now,
        clicks: clicks.to_vec(),
        written: now,
    };
    record::fit_to(&mut r, 1500);
    r.clicks
}

proptest! {
    #![proptest_config(cases())]

    /// A journey written into a link is read back within its lifetime by the same browser, with
    /// the visitor only when identified, and refused as expired outside it.
    #[test]
    fn link_round_trips(
        r in valid_record(),
        identified in any::<bool>(),
        now in (link::TTL_MS + 120_000)..(1u64 << 60),
        later in 0..=link::TTL_MS,
        ua in plain(0, 60),
    ) {
        let value = link::encode(&r, identified, now, &ua);
        prop_assert!(
            value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~!*()%".contains(&b)),
            "{}", value
        );
        let back = link::decode(&value, now + later, &ua).map_err(|e| TestCaseError::fail(e.as_str()))?;
        let (visitor, session) = if identified { (r.visitor.as_str(), r.session.as_str()) } else { (link::NIL, link::NIL) };
        prop_assert_eq!(&back.clicks, &fits(visitor, session, now, &r.clicks));
        prop_assert_eq!((back.visitor.as_str(), back.session.as_str()), (visitor, session));
        prop_assert_eq!((back.written, back.last_seen), (now, now));
        prop_assert_eq!(link::decode(&value, now + link::TTL_MS + 1 + later, &ua), Err(Rejected::Expired));
        prop_assert_eq!(link::decode(&value, now - 60_001 - later, &ua), Err(Rejected::Expired));
    }

    /// Any text, or a link edited: reading never panics, a refusal is `Tampered` or `Expired`,
    /// and whatever it accepts holds only valid clicks and round-trips.
    #[test]
    fn link_decode_accepts_only_what_round_trips(
        r in valid_record(),
        edits in edits(),
        junk in text(60),
        now in any::<u64>(),
    ) {
        let value = link::encode(&r, true, r.written, UA);
        for (input, at) in [(apply(&value, &edits), r.written), (junk.clone(), now), (value.clone(), now)] {
            match link::decode(&input, at, UA) {
                Err(e) => prop_assert!(matches!(e, Rejected::Tampered | Rejected::Expired), "{:?}", e),
                Ok(back) => {
                    for k in &back.clicks {
                        prop_assert_eq!(click::validate(&k.value), Ok(()));
                    }
                    let again = link::encode(&back, true, back.written, UA);
                    let reread = link::decode(&again, back.written, UA).map_err(|e| TestCaseError::fail(e.as_str()))?;
                    prop_assert_eq!(reread.clicks, fits(&back.visitor, &back.session, back.written, &back.clicks));
                }
            }
        }
    }
}

// ---- command and config ----

/// The error field of a refused member of `init`'s configuration, by key.
const CONFIG_KEYS: &[&str] = &[
    "collector",
    "writeKey",
    "windowDays",
    "sessionTimeoutMinutes",
    "clickParams",
    "storage",
    "cookieDomain",
    "linkDomains",
    "consent",
    "whileDenied",
    "honorGpc",
    "autoPageview",
    "serverCookie",
    "debug",
];

fn config_key() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(CONFIG_KEYS.to_vec()).prop_map(String::from),
        Just("site".to_string()),
    ]
}

/// One member of a configuration: its key, its JSON value, and what it does to the defaults
/// when valid (`None`: it must be refused, with the key as the error field, or `config` for an
/// unknown key).
type Member = (String, J, Option<fn(&mut Config, &J)>);

fn token(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[A-Za-z0-9_.-]{{1,{max}}}")).unwrap()
}

fn domain() -> impl Strategy<Value = String> {
    "[a-z0-9-]{1,10}(\\.[a-z0-9-]{1,10}){0,2}"
}

fn str_of(j: &J) -> String {
    match j {
        J::Str(s) => s.clone(),
        _ => unreachable!("a string member"),
    }
}

fn flag_of(j: &J) -> bool {
    matches!(j, J::Bool(true))
}

fn num_of(j: &J) -> u64 {
    match j {
        J::Num(n) => n.parse().unwrap(),
        _ => unreachable!("a number member"),
    }
}

fn member() -> impl Strategy<Value = Member> {
    let valid: Vec<BoxedStrategy<Member>> = vec![
        prop_oneof![
            Just(String::new()),
            "https://[a-z.]{1,20}(/[a-z]{0,5})?",
            "/[a-z/]{0,10}"
        ]
        .prop_map(|u| {
            (
                "collector".into(),
                s(&u),
                Some((|c: &mut Config, j: &J| c.collector = str_of(j)) as fn(&mut Config, &J)),
            )
        })
        .boxed(),
        token(128)
            .prop_map(|t| {
                (
                    "writeKey".into(),
                    s(&t),
                    Some((|c: &mut Config, j: &J| c.write_key = Some(str_of(j))) as fn(&mut Config, &J)),
                )
            })
            .boxed(),
        (1u64..=395)
            .prop_map(|d| {
                (
                    "windowDays".into(),
                    J::Num(d.to_string()),
                    Some((|c: &mut Config, j: &J| c.window_ms = num_of(j) * 86_400_000) as fn(&mut Config, &J)),
                )
            })
            .boxed(),
        (1u64..=1440)
            .prop_map(|m| {
                (
                    "sessionTimeoutMinutes".into(),
                    J::Num(m.to_string()),
                    Some((|c: &mut Config, j: &J| c.session_timeout_ms = num_of(j) * 60_000) as fn(&mut Config, &J)),
                )
            })
            .boxed(),
        proptest::collection::vec((token(64), token(64)), 0..4)
            .prop_map(|m| {
                let mut seen = Vec::new();
                let m: Vec<(String, J)> = m
                    .into_iter()
                    .filter(|(k, _)| {
                        let new = !seen.contains(k);
                        seen.push(k.clone());
                        new
                    })
                    .map(|(k, v)| (k, s(&v)))
                    .collect();
                (
                    "clickParams".into(),
                    J::Obj(m),
                    Some(
                        (|c: &mut Config, j: &J| {
                            if let J::Obj(m) = j {
                                c.click_params = m.iter().map(|(k, v)| (k.clone(), str_of(v))).collect();
                            }
                        }) as fn(&mut Config, &J),
                    ),
                )
            })
            .boxed(),
        proptest::sample::select(vec!["cookie+local", "cookie", "local", "none"])
            .prop_map(|m| {
                (
                    "storage".into(),
                    s(m),
                    Some(
                        (|c: &mut Config, j: &J| {
                            c.storage = match str_of(j).as_str() {
                                "cookie" => StorageMode::Cookie,
                                "local" => StorageMode::Local,
                                "none" => StorageMode::None,
                                _ => StorageMode::Both,
                            }
                        }) as fn(&mut Config, &J),
                    ),
                )
            })
            .boxed(),
        prop_oneof![
            Just("auto".to_string()),
            domain(),
            domain().prop_map(|d| format!(".{d}"))
        ]
        .prop_map(|d| {
            (
                "cookieDomain".into(),
                s(&d),
                Some(
                    (|c: &mut Config, j: &J| {
                        let d = str_of(j);
                        c.cookie_domain = (d != "auto").then(|| d.trim_start_matches('.').to_string());
                    }) as fn(&mut Config, &J),
                ),
            )
        })
        .boxed(),
        proptest::collection::vec(domain(), 0..4)
            .prop_map(|l| {
                (
                    "linkDomains".into(),
                    J::Arr(l.iter().map(|d| s(d)).collect()),
                    Some(
                        (|c: &mut Config, j: &J| {
                            if let J::Arr(l) = j {
                                c.link_domains = l.iter().map(str_of).collect();
                            }
                        }) as fn(&mut Config, &J),
                    ),
                )
            })
            .boxed(),
        proptest::sample::select(vec!["granted", "denied"])
            .prop_map(|v| {
                (
                    "consent".into(),
                    s(v),
                    Some((|c: &mut Config, j: &J| c.consent_default = str_of(j) == "granted") as fn(&mut Config, &J)),
                )
            })
            .boxed(),
        proptest::sample::select(vec!["wait", "drop"])
            .prop_map(|v| {
                (
                    "whileDenied".into(),
                    s(v),
                    Some((|c: &mut Config, j: &J| c.wait_for_consent = str_of(j) == "wait") as fn(&mut Config, &J)),
                )
            })
            .boxed(),
        any::<bool>()
            .prop_map(|b| {
                (
                    "honorGpc".into(),
                    J::Bool(b),
                    Some((|c: &mut Config, j: &J| c.honor_gpc = flag_of(j)) as fn(&mut Config, &J)),
                )
            })
            .boxed(),
        any::<bool>()
            .prop_map(|b| {
                (
                    "autoPageview".into(),
                    J::Bool(b),
                    Some((|c: &mut Config, j: &J| c.auto_pageview = flag_of(j)) as fn(&mut Config, &J)),
                )
            })
            .boxed(),
        any::<bool>()
            .prop_map(|b| {
                (
                    "serverCookie".into(),
                    J::Bool(b),
                    Some((|c: &mut Config, j: &J| c.server_cookie = flag_of(j)) as fn(&mut Config, &J)),
                )
            })
            .boxed(),
        any::<bool>()
            .prop_map(|b| {
                (
                    "debug".into(),
                    J::Bool(b),
                    Some((|c: &mut Config, j: &J| c.debug = flag_of(j)) as fn(&mut Config, &J)),
                )
            })
            .boxed(),
    ];
    let invalid: Vec<BoxedStrategy<Member>> = vec![
        prop_oneof![
            Just(s("javascript:alert(1)")),
            Just(s("https://a b")),
            Just(s("ftp://x")),
            Just(J::Num("1".into())),
            Just(s(&format!("https://{}", "a".repeat(520)))),
            Just(s("https://x/\u{7}")),
        ]
        .prop_map(|v| ("collector".into(), v, None))
        .boxed(),
        prop_oneof![
            Just(s("")),
            Just(s("a b")),
            Just(s("' OR 1=1")),
            Just(s(&"k".repeat(129))),
            Just(J::Bool(true))
        ]
        .prop_map(|v| ("writeKey".into(), v, None))
        .boxed(),
        prop_oneof![
            Just(J::Num("0".into())),
            Just(J::Num("396".into())),
            Just(J::Num("1.5".into())),
            Just(s("30")),
            Just(J::Num("-1".into()))
        ]
        .prop_map(|v| ("windowDays".into(), v, None))
        .boxed(),
        prop_oneof![Just(J::Num("0".into())), Just(J::Num("1441".into())), Just(J::Null)]
            .prop_map(|v| ("sessionTimeoutMinutes".into(), v, None))
            .boxed(),
        prop_oneof![
            Just(J::Arr(vec![s("aff")])),
            Just(J::Obj(vec![("a b".into(), s("x"))])),
            Just(J::Obj(vec![("aff".into(), s("net work"))])),
            Just(J::Obj((0..33).map(|i| (format!("p{i}"), s("n"))).collect())),
        ]
        .prop_map(|v| ("clickParams".into(), v, None))
        .boxed(),
        prop_oneof![Just(s("indexeddb")), Just(s("Cookie")), Just(J::Null)]
            .prop_map(|v| ("storage".into(), v, None))
            .boxed(),
        prop_oneof![
            Just(s("shop.example; secure")),
            Just(s("")),
            Just(s(&"a".repeat(254))),
            Just(J::Bool(false))
        ]
        .prop_map(|v| ("cookieDomain".into(), v, None))
        .boxed(),
        prop_oneof![
            Just(s("a.example")),
            Just(J::Arr(vec![s("a b")])),
            Just(J::Arr((0..17).map(|_| s("a.example")).collect()))
        ]
        .prop_map(|v| ("linkDomains".into(), v, None))
        .boxed(),
        prop_oneof![Just(s("maybe")), Just(J::Bool(true))]
            .prop_map(|v| ("consent".into(), v, None))
            .boxed(),
        prop_oneof![Just(s("queue")), Just(J::Null)]
            .prop_map(|v| ("whileDenied".into(), v, None))
            .boxed(),
        proptest::sample::select(vec!["honorGpc", "autoPageview", "serverCookie", "debug"])
            .prop_flat_map(|k| {
                prop_oneof![Just(s("yes")), Just(J::Num("1".into())), Just(J::Null)]
                    .prop_map(move |v| (k.to_string(), v, None))
            })
            .boxed(),
        "[a-z]{1,8}"
            .prop_filter("an unknown option", |k| {
                !CONFIG_KEYS.contains(&k.as_str()) && k != "site"
            })
            .prop_map(|k| (k, J::Null, None))
            .boxed(),
    ];
    prop_oneof![
        6 => proptest::strategy::Union::new(valid),
        1 => proptest::strategy::Union::new(invalid),
    ]
}

proptest! {
    #![proptest_config(cases())]

    /// `init`'s configuration built from valid and refused members: it is accepted exactly
    /// when every member is valid, and then it is the defaults with each member applied (read
    /// back from what we wrote); otherwise the error names the first refused member.
    #[test]
    fn config_reads_what_was_written(
        site in prop_oneof![4 => token(64), 1 => Just(String::new()), 1 => Just("<script>".to_string()), 1 => token(70)],
        members in proptest::collection::vec(member(), 0..8),
        site_at in any::<usize>(),
    ) {
        let mut unique: Vec<Member> = Vec::new();
        for m in members {
            if !unique.iter().any(|u| u.0 == m.0) {
                unique.push(m);
            }
        }
        let mut object: Vec<(String, J)> = unique.iter().map(|(k, v, _)| (k.clone(), v.clone())).collect();
        object.insert(site_at % (object.len() + 1), ("site".into(), s(&site)));
        let text = J::Obj(object).text();
        let read = Config::from_json(&json::parse(&text).map_err(|e| TestCaseError::fail(e.as_str()))?);

        let site_ok = !site.is_empty() && site.len() <= 64;
        let site_ok = site_ok && site.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        let first_bad = unique.iter().find(|(_, _, apply)| apply.is_none());
        match (site_ok, first_bad) {
            (false, _) => prop_assert_eq!(read.map_err(|e| e.field), Err("site"), "{}", text),
            (true, Some((k, _, _))) => {
                let field = if CONFIG_KEYS.contains(&k.as_str()) { k.as_str() } else { "config" };
                let e = read.expect_err("a refused member");
                prop_assert_eq!(e.field, field, "{}", text);
                prop_assert!(!e.reason.is_empty());
            }
            (true, None) => {
                let mut want = Config::new(&site);
                for (_, v, apply) in &unique {
                    (apply.expect("valid"))(&mut want, v);
                }
                prop_assert_eq!(read.map_err(|e| e.field), Ok(want), "{}", text);
            }
        }
    }

    /// Any JSON, as a command or as a configuration: nothing panics, a refusal names a field
    /// and a reason, and what is accepted keeps the parser's promises.
    #[test]
    fn command_and_config_any_json(args in proptest::collection::vec(json_value(), 0..4), junk in text(40)) {
        let text = J::Arr(args.clone()).text();
        for input in [text.clone(), junk.clone()] {
            let Ok(mut parsed) = json::parse(&input) else { continue };
            match command::parse(&mut parsed) {
                Err(e) => prop_assert!(!e.field.is_empty() && !e.reason.is_empty()),
                Ok(Command::Init(c)) => config_invariants(&c)?,
                Ok(Command::Event(name, _)) => prop_assert!(!name.is_empty() && name.len() <= 128),
                Ok(Command::Identify { customer_id, email }) => {
                    prop_assert!(customer_id.is_some() || email.is_some());
                    if let Some(e) = email {
                        let again = command::normalize_email(&e);
                        prop_assert_eq!(again.as_deref(), Some(e.as_str()), "normalised once");
                    }
                }
                Ok(Command::Conversion(o)) => prop_assert!(!o.order_id.is_empty()),
                Ok(_) => {}
            }
        }
        if let Some(first) = args.first() {
            match Config::from_json(&json::parse(&first.text()).map_err(|e| TestCaseError::fail(e.as_str()))?) {
                Ok(c) => config_invariants(&c)?,
                Err(e) => prop_assert!(!e.field.is_empty() && !e.reason.is_empty()),
            }
        }
    }
}

/// What an accepted configuration always holds.
fn config_invariants(c: &Config) -> Result<(), TestCaseError> {
    prop_assert!(utt::core::config::is_token(&c.site, 64));
    prop_assert!(
        c.collector.is_empty()
            || c.collector.starts_with("https://")
            || c.collector.starts_with("http://")
            || c.collector.starts_with('/')
    );
    prop_assert!(!c.collector.contains(' ') && c.collector.len() <= 512);
    prop_assert!((86_400_000..=395 * 86_400_000).contains(&c.window_ms));
    prop_assert!((60_000..=1440 * 60_000).contains(&c.session_timeout_ms));
    prop_assert!(c.click_params.len() <= 32);
    for (p, n) in &c.click_params {
        prop_assert!(utt::core::config::is_token(p, 64) && utt::core::config::is_token(n, 64));
    }
    prop_assert!(c.link_domains.len() <= 16);
    Ok(())
}

/// An event name: empty, ordinary, too long, or with a control character.
fn event_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        plain(1, 128),
        plain(100, 140),
        ("[a-z]{0,5}", proptest::char::range('\u{0}', '\u{1f}'), "[a-z]{0,5}")
            .prop_map(|(a, c, b)| format!("{a}{c}{b}")),
        ("[a-z]{0,5}", proptest::char::range('\u{7f}', '\u{9f}')).prop_map(|(a, c)| format!("{a}{c}")),
    ]
}

proptest! {
    #![proptest_config(cases())]

    /// The commands built from their names and arguments: `event` is accepted exactly with a
    /// name of 1 to 128 bytes without control characters and props that are absent or an
    /// object, and keeps the name as given; `consent` exactly with 'granted' or 'denied';
    /// `identify` keeps an email normalised (trimmed, lowercased), once; an unknown name is
    /// refused as such.
    #[test]
    fn command_names_and_arguments(
        name in event_name(),
        props in prop_oneof![Just(None), Just(Some(J::Obj(vec![("k".into(), s("v"))]))), Just(Some(J::Arr(vec![])))],
        choice in prop_oneof![Just("granted".to_string()), Just("denied".to_string()), text(8)],
        email in prop_oneof![("[ ]{0,2}", "[A-Za-z0-9.]{1,10}", "[A-Za-z0-9]{1,8}", "[ ]{0,2}").prop_map(|(a, l, d, b)| format!("{a}{l}@{d}.Example{b}")), text(16)],
        unknown in "[a-z]{1,10}",
    ) {
        let run = |args: Vec<J>| command::parse(&mut json::parse(&J::Arr(args).text()).expect("our JSON parses"));

        let mut args = vec![s("event"), s(&name)];
        args.extend(props.clone());
        let name_ok = !name.is_empty() && name.len() <= 128 && !name.chars().any(char::is_control);
        let props_ok = !matches!(props, Some(J::Arr(_)));
        match run(args) {
            Ok(Command::Event(n, p)) => {
                prop_assert!(name_ok && props_ok, "{:?} accepted", name);
                prop_assert_eq!(n, name);
                prop_assert_eq!(p.is_some(), props.is_some());
            }
            Err(e) => {
                prop_assert!(!(name_ok && props_ok), "{:?} refused: {:?}", name, e);
                prop_assert_eq!(e.field, if name_ok { "event.props" } else { "event" });
            }
            Ok(other) => prop_assert!(false, "{:?}", other),
        }

        let want = match choice.as_str() {
            "granted" => Ok(Command::Consent(true)),
            "denied" => Ok(Command::Consent(false)),
            _ => Err("consent"),
        };
        prop_assert_eq!(run(vec![s("consent"), s(&choice)]).map_err(|e| e.field), want);

        match run(vec![s("identify"), J::Obj(vec![("email".into(), s(&email))])]) {
            Ok(Command::Identify { customer_id: None, email: Some(e) }) => {
                prop_assert_eq!(&e, &email.trim().to_ascii_lowercase());
                let again = command::normalize_email(&e);
                prop_assert_eq!(again.as_deref(), Some(e.as_str()));
            }
            Err(e) => {
                prop_assert_eq!(e.field, "identify.email");
                prop_assert_eq!(command::normalize_email(&email), None);
            }
            Ok(other) => prop_assert!(false, "{:?}", other),
        }

        if !["init", "pageview", "conversion", "identify", "consent", "event", "flush"].contains(&unknown.as_str()) {
            prop_assert_eq!(run(vec![s(&unknown)]).map_err(|e| e.field), Err("command"));
        }
    }
}

// ---- the wire decoder (the collector's `wire::read_batch`) ----

/// Reads `text` as a batch and checks what the decoder promises: an envelope refusal or each
/// event's refusal names a field and a reason; every accepted event, written again in canonical
/// form and read back, is the same event and the same text (nothing accepted is lost or changed
/// by storing it).
fn wire_check(text: &str) -> Result<usize, TestCaseError> {
    let batch = match wire::read_batch(text) {
        Ok(b) => b,
        Err(e) => {
            prop_assert!(!e.field.is_empty() && !e.reason.is_empty(), "{e:?}");
            return Ok(0);
        }
    };
    let mut accepted = 0;
    for e in batch.events {
        match e {
            Err((_, why)) => {
                let reason = why.to_string();
                prop_assert!(reason.contains(": ") && !reason.ends_with(": "), "{reason}");
            }
            Ok(ev) => {
                accepted += 1;
                let mut canonical = String::new();
                wire::write_event(&mut canonical, &ev);
                let body = wire::write_batch("site", None, 1, false, &[&canonical]);
                let again = wire::read_batch(&body).map_err(|e| TestCaseError::fail(format!("{e:?}: {body}")))?;
                let back = again.events.into_iter().next().expect("one event");
                let back = back.map_err(|(_, r)| TestCaseError::fail(format!("{r}: {canonical}")))?;
                prop_assert_eq!(&back, &ev);
                let mut twice = String::new();
                wire::write_event(&mut twice, &back);
                prop_assert_eq!(twice, canonical);
            }
        }
    }
    Ok(accepted)
}

/// The golden batches (`tests/fixtures/batch-*.json`), read once.
fn fixture_batches() -> &'static [String] {
    static BATCHES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    BATCHES.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("batch-")))
            .collect();
        names.sort();
        let texts: Vec<String> = names.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
        assert!(texts.len() >= 5, "the golden batches in {}", dir.display());
        texts
    })
}

/// An event the tag could send: page view, custom event, identify or consent, with any clicks.
fn built_event() -> impl Strategy<Value = wire::Event> {
    let kind = prop_oneof![
        plain(0, 40).prop_map(|title| wire::Kind::PageView { title, props: None }),
        plain(1, 40).prop_map(|name| wire::Kind::Custom { name, props: None }),
        (proptest::option::of(plain(1, 40)), proptest::option::of("[0-9a-f]{64}"))
            .prop_filter("identify needs one", |(c, e)| c.is_some() || e.is_some())
            .prop_map(|(customer_id, email_hash)| wire::Kind::Identify {
                customer_id,
                email_hash,
            }),
        any::<bool>().prop_map(|granted| wire::Kind::Consent { granted }),
    ];
    (
        uuid(),
        any::<u64>(),
        proptest::option::of((uuid(), uuid())),
        plain(0, 80),
        prop_oneof![Just(String::new()), plain(1, 80)],
        proptest::collection::vec(valid_click(), 0..4),
        kind,
    )
        .prop_map(|(id, at, ids, path, referrer, clicks, kind)| wire::Event {
            id,
            at,
            visitor: ids.as_ref().map(|(v, _)| v.clone()),
            session: ids.map(|(_, s)| s),
            url: format!("https://shop.example/{path}"),
            referrer,
            clicks,
            kind,
        })
}

proptest! {
    #![proptest_config(cases())]

    /// Any text: a clear refusal or events that round-trip; never a panic.
    #[test]
    fn wire_any_text(body in text(300)) {
        wire_check(&body)?;
    }

    /// The golden batches edited a few bytes at a time: the same promises on inputs that are
    /// almost right, where a decoder's mistakes hide.
    #[test]
    fn wire_edited_batches(which in any::<prop::sample::Index>(), edits in edits()) {
        let batches = fixture_batches();
        let original = &batches[which.index(batches.len())];
        wire_check(&apply(original, &edits))?;
    }

    /// Events as the tag writes them are accepted and read back exactly, unless their URL or
    /// referrer carries a click value the tag refuses (then refused, with the parameter named).
    #[test]
    fn wire_built_events_round_trip(e in built_event()) {
        let mut text = String::new();
        wire::write_event(&mut text, &e);
        let body = wire::write_batch("site", None, 1, false, &[&text]);
        let refused = url::refused_param(&e.url, &[]).is_some() || url::refused_param(&e.referrer, &[]).is_some();
        let b = wire::read_batch(&body).map_err(|err| TestCaseError::fail(format!("{err:?}: {body}")))?;
        match b.events.into_iter().next().expect("one event") {
            Ok(back) => {
                prop_assert!(!refused, "accepted with a refused click value: {}", text);
                prop_assert_eq!(back, e);
            }
            Err((_, why)) => {
                prop_assert!(refused, "refused: {}: {}", why, text);
                prop_assert!(why.to_string().contains("refused click ID"), "{}", why);
            }
        }
    }
}
