//! The visitor's record: the IDs and the clicks of the journey, as one compact, versioned,
//! cookie-safe text written to the `_utt` cookie and to localStorage alike.
//!
//! The text is `1.` followed by the record's compact JSON, with the JSON structure characters
//! `"{}:,` written as the one-byte stand-ins `'()!*` and every other byte outside
//! `A-Za-z0-9-._~` percent-encoded. The stand-ins themselves are always percent-encoded when
//! they occur in the JSON, so the mapping is reversible, and the text holds no `;`, `,`, space,
//! quote or backslash. Reading re-validates everything: storage is page-writable, so a record
//! is input like any other.

use alloc::string::String;
use alloc::vec::Vec;

use super::click::Click;
use super::json::{self, write_str, write_u64, Json};
use super::url::hex_val;
use super::wire;

/// The most clicks a record keeps: the first, the last, and the latest ones in between.
pub const MAX_CLICKS: usize = 10;

/// The longest encoded record, in bytes: a cookie holds about 4 KB with its name and attributes.
pub const MAX_BYTES: usize = 3800;

/// The version marker every encoded record starts with.
const PREFIX: &str = "1.";

/// The longest text [`decode`] looks at: far beyond anything [`fit`] lets through, so only
/// garbage is refused by it, before any work is spent on it.
const MAX_INPUT: usize = 16 * MAX_BYTES;

/// How far in the future a click may be dated and still be believed (clocks drift).
const DAY_MS: u64 = 86_400_000;

/// What the tag remembers about a visitor between pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The visitor ID (UUID text).
    pub visitor: String,
    /// The current session ID (UUID text).
    pub session: String,
    /// The time of the last activity, in milliseconds since the Unix epoch (for the session
    /// timeout).
    pub last_seen: u64,
    /// The clicks of the journey, oldest first.
    pub clicks: Vec<Click>,
    /// When this record was written, in milliseconds since the Unix epoch.
    pub written: u64,
}

/// Encodes a record as cookie-safe text (see the module documentation for the form).
pub fn encode(r: &Record) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut j = String::from("{\"visitor\":");
    write_str(&mut j, &r.visitor);
    j.push_str(",\"session\":");
    write_str(&mut j, &r.session);
    j.push_str(",\"lastSeen\":");
    write_u64(&mut j, r.last_seen);
    j.push_str(",\"written\":");
    write_u64(&mut j, r.written);
    j.push_str(",\"clicks\":[");
    for (i, c) in r.clicks.iter().enumerate() {
        if i > 0 {
            j.push(',');
        }
        wire::write_click(&mut j, c);
    }
    j.push_str("]}");

    let mut out = String::with_capacity(j.len() + j.len() / 4);
    out.push_str(PREFIX);
    for b in j.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            b'"' => out.push('\''),
            b'{' => out.push('('),
            b'}' => out.push(')'),
            b':' => out.push('!'),
            b',' => out.push('*'),
            _ => {
                out.push('%');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 15)] as char);
            }
        }
    }
    out
}

/// Decodes a record written by [`encode`]; `None` for anything tampered, truncated, of another
/// version, or holding an ID that is not a UUID or a click that does not validate.
pub fn decode(text: &str) -> Option<Record> {
    if text.len() > MAX_INPUT {
        return None;
    }
    let b = text.strip_prefix(PREFIX)?.as_bytes();
    let mut j = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        i += 1;
        j.push(match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => c,
            b'\'' => b'"',
            b'(' => b'{',
            b')' => b'}',
            b'!' => b':',
            b'*' => b',',
            b'%' => {
                let hi = hex_val(*b.get(i)?)?;
                let lo = hex_val(*b.get(i + 1)?)?;
                i += 2;
                hi << 4 | lo
            }
            _ => return None,
        });
    }
    let mut v = json::parse(core::str::from_utf8(&j).ok()?).ok()?;
    let Json::Arr(list) = v.get_mut("clicks")? else {
        return None;
    };
    let mut clicks = Vec::new();
    for c in list {
        clicks.push(wire::read_click(c).ok()?);
    }
    let id = |key: &str| {
        v.get(key)
            .and_then(Json::as_str)
            .filter(|s| wire::is_uuid(s))
            .map(String::from)
    };
    while clicks.len() > MAX_CLICKS {
        drop_one(&mut clicks);
    }
    Some(Record {
        visitor: id("visitor")?,
        session: id("session")?,
        last_seen: v.get("lastSeen")?.as_u64()?,
        clicks,
        written: v.get("written")?.as_u64()?,
    })
}

/// Drops one click: the oldest that is neither the first nor the last, or else the first.
fn drop_one(clicks: &mut Vec<Click>) {
    let middle = clicks.len().saturating_sub(1);
    let mut oldest: Option<(usize, u64)> = None;
    for (i, c) in clicks.iter().enumerate().take(middle).skip(1) {
        if oldest.is_none_or(|(_, at)| c.at < at) {
            oldest = Some((i, c.at));
        }
    }
    match oldest {
        Some((i, _)) => {
            super::remove_at(clicks, i);
        }
        None if !clicks.is_empty() => {
            super::remove_at(clicks, 0);
        }
        None => {}
    }
}

/// Trims a record to [`MAX_CLICKS`] clicks and [`MAX_BYTES`] of text, keeping the first and the
/// last click of the journey as long as they fit.
pub fn fit(r: &mut Record) {
    fit_to(r, MAX_BYTES);
}

/// [`fit`] to `max` bytes of text.
pub fn fit_to(r: &mut Record, max: usize) {
    while r.clicks.len() > MAX_CLICKS {
        drop_one(&mut r.clicks);
    }
    // A record without clicks is a few hundred bytes at most, so this ends.
    while !r.clicks.is_empty() && encode(r).len() > max {
        drop_one(&mut r.clicks);
    }
}

/// Merges the cookie's and localStorage's records when they disagree: the IDs of the one written
/// last (`a` on a tie), the clicks of both (each `(param, value)` once, at its earliest time,
/// oldest first), fitted.
pub fn merge(a: Option<Record>, b: Option<Record>) -> Option<Record> {
    let (mut a, mut b) = match (a, b) {
        (Some(a), Some(b)) => (a, b),
        (Some(mut r), None) | (None, Some(mut r)) => {
            fit(&mut r);
            return Some(r);
        }
        (None, None) => return None,
    };
    let written = a.written.max(b.written);
    let all = core::mem::take(&mut a.clicks)
        .into_iter()
        .chain(core::mem::take(&mut b.clicks));
    let mut clicks: Vec<Click> = Vec::new();
    for c in all {
        if let Some(i) = clicks.iter().position(|o| o.param == c.param && o.value == c.value) {
            if clicks.get(i).is_some_and(|o| o.at <= c.at) {
                continue;
            }
            super::remove_at(&mut clicks, i);
        }
        // Insert after every click of the same time, so equal times keep `a`'s order first.
        let at = clicks.iter().position(|o| o.at > c.at).unwrap_or(clicks.len());
        super::insert_at(&mut clicks, at, c);
    }
    let mut r = if b.written > a.written { b } else { a };
    r.clicks = clicks;
    r.written = written;
    fit(&mut r);
    Some(r)
}

/// Drops the clicks older than the attribution window (`at + window_ms <= now`) and those dated
/// more than a day in the future (a tampered record or a skewed clock).
pub fn expire(r: &mut Record, now: u64, window_ms: u64) {
    let horizon = now.saturating_add(DAY_MS);
    // `now - at < window` rather than `at + window > now`, which would saturate near u64::MAX.
    r.clicks
        .retain(|c| (c.at > now || now - c.at < window_ms) && c.at <= horizon);
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    const V: &str = "5b0e3f0a-6c1d-4f3e-9a8b-2c7d1e0f4a5b";
    const S: &str = "0c9a7e52-3b1f-4d6a-8e2c-9f1b3d5a7c9e";
    const V2: &str = "11111111-2222-4333-8444-555555555555";

    fn click(param: &str, value: &str, at: u64) -> Click {
        Click {
            param: param.to_string(),
            network: "net".to_string(),
            value: value.to_string(),
            at,
            path: "/p".to_string(),
            referrer: String::new(),
            utm: Vec::new(),
        }
    }

    fn record(clicks: Vec<Click>, written: u64) -> Record {
        Record {
            visitor: V.to_string(),
            session: S.to_string(),
            last_seen: written,
            clicks,
            written,
        }
    }

    fn values(r: &Record) -> Vec<(&str, u64)> {
        r.clicks.iter().map(|c| (c.value.as_str(), c.at)).collect()
    }

    fn is_cookie_safe(text: &str) -> bool {
        text.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!*'()%".contains(&b))
    }

    #[test]
    fn round_trips_as_cookie_safe_text() {
        let rich = Click {
            param: "irclickid".to_string(),
            network: "impact".to_string(),
            value: "Xy12-abc_.~:=+/".to_string(),
            at: 1_764_150_000_000,
            path: "/caf\u{e9}/ a;b,c\"d\\e'f(g)h!i*j%k<l>&".to_string(),
            referrer: "partner.example".to_string(),
            utm: vec![
                ("source".to_string(), "Men's \"best\"; 50% off, (really)!*".to_string()),
                ("campaign".to_string(), "\u{1F600} \u{2028}".to_string()),
            ],
        };
        let cases = [
            record(vec![], 0),
            record(vec![click("gclid", "G", 1)], u64::MAX),
            record(vec![rich.clone(), click("gclid", "G", 2)], 1_764_150_000_000),
        ];
        for r in cases {
            let text = encode(&r);
            assert!(text.starts_with("1."), "{text}");
            assert!(is_cookie_safe(&text), "{text}");
            assert_eq!(decode(&text).as_ref(), Some(&r), "{text}");
        }
    }

    #[test]
    fn encoding_is_compact() {
        // Structure characters cost one byte, not three.
        let text = encode(&record(vec![], 5));
        assert_eq!(
            text,
            "1.('visitor'!'5b0e3f0a-6c1d-4f3e-9a8b-2c7d1e0f4a5b'*'session'!'0c9a7e52-3b1f-4d6a-8e2c-9f1b3d5a7c9e'\
             *'lastSeen'!5*'written'!5*'clicks'!%5B%5D)"
        );
    }

    /// Wraps a JSON text as encode does, so tests can write records encode never would.
    fn wrap(json: &str) -> String {
        let mut out = String::from("1.");
        for b in json.bytes() {
            match b {
                b'"' => out.push('\''),
                b'{' => out.push('('),
                b'}' => out.push(')'),
                b':' => out.push('!'),
                b',' => out.push('*'),
                b if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => out.push(b as char),
                b => out.push_str(&alloc::format!("%{b:02X}")),
            }
        }
        out
    }

    #[test]
    fn refuses_tampered_text() {
        let good = encode(&record(vec![click("gclid", "G", 1)], 5));
        let with_click = |c: &str| {
            wrap(
                &(String::from("{\"visitor\":\"")
                    + V
                    + "\",\"session\":\""
                    + S
                    + "\",\"lastSeen\":1,\"written\":1,\"clicks\":["
                    + c
                    + "]}"),
            )
        };
        let ok_click = r#"{"param":"gclid","network":"google","value":"G","at":1,"path":"/"}"#;
        assert!(
            decode(&with_click(ok_click)).is_some(),
            "the helper makes valid records"
        );
        let with_ids = |visitor: &str, session: &str| {
            let mut r = record(vec![click("gclid", "G", 1)], 5);
            r.visitor = visitor.to_string();
            r.session = session.to_string();
            encode(&r)
        };
        let with_value = |value: &str| encode(&record(vec![click("gclid", value, 1)], 5));
        let cases: Vec<(&str, String)> = vec![
            ("empty", String::new()),
            ("version only", "1.".to_string()),
            ("other version", String::from("2") + good.get(1..).unwrap()),
            ("no version", good.get(2..).unwrap().to_string()),
            ("truncated", good.get(..good.len() - 1).unwrap().to_string()),
            (
                "cut in an escape",
                good.get(..good.len() - 4).unwrap().to_string() + "%5",
            ),
            ("bad escape", good.replace("%5B", "%ZZ")),
            ("raw quote", good.replace('\'', "\"")),
            ("raw semicolon", good.clone() + ";"),
            ("space", good.replace('*', " ")),
            ("plus", good.replace('*', "+")),
            ("not utf-8", good.replace("%5D", "%FF")),
            ("trailing text", good.clone() + "x"),
            ("huge", String::from("1.") + &"a".repeat(MAX_INPUT)),
            ("not json", "1.hello".to_string()),
            ("json but not an object", wrap("[1]")),
            ("missing written", good.replace("*'written'!5", "")),
            (
                "clicks not an array",
                wrap(
                    &(String::from("{\"visitor\":\"")
                        + V
                        + "\",\"session\":\""
                        + S
                        + "\",\"lastSeen\":1,\"written\":1,\"clicks\":{}}"),
                ),
            ),
            ("not a uuid", with_ids("bob", S)),
            ("empty session", with_ids(V, "")),
            ("upper-case uuid", with_ids(&V.to_uppercase(), S)),
            ("sql in visitor", with_ids("'; DROP TABLE visitors;--", S)),
            ("xss in value", with_value("<img src=x onerror=alert(1)>")),
            ("value with space", with_value("a b")),
            ("empty value", with_value("")),
            ("long value", with_value(&"a".repeat(10_000))),
            ("negative time", with_click(&ok_click.replace("\"at\":1", "\"at\":-1"))),
            (
                "fractional time",
                with_click(&ok_click.replace("\"at\":1", "\"at\":1.5")),
            ),
            ("missing path", with_click(&ok_click.replace(",\"path\":\"/\"", ""))),
            ("click not an object", with_click("1")),
            (
                "one bad click among good",
                with_click(&(String::from(ok_click) + ",{}")),
            ),
        ];
        for (name, text) in cases {
            assert_eq!(decode(&text), None, "{name}: {text}");
        }
    }

    #[test]
    fn decode_caps_clicks_keeping_first_and_last() {
        let clicks: Vec<Click> = (0..15).map(|i| click("ref", &i.to_string(), i)).collect();
        let text = encode(&record(clicks, 1));
        let r = decode(&text).unwrap();
        let kept: Vec<&str> = r.clicks.iter().map(|c| c.value.as_str()).collect();
        assert_eq!(kept, ["0", "6", "7", "8", "9", "10", "11", "12", "13", "14"]);
    }

    #[test]
    fn fit_keeps_first_and_last() {
        let long = |i: u64| {
            let mut c = click("gclid", &"v".repeat(200), i);
            c.value.push_str(&i.to_string());
            c.path = "/".to_string() + &"\u{e9}".repeat(100);
            c
        };
        let cases: Vec<(&str, Vec<Click>, Vec<u64>)> = vec![
            ("empty stays", vec![], vec![]),
            (
                "small stays",
                (0..3).map(|i| click("ref", "x", i)).collect(),
                vec![0, 1, 2],
            ),
            (
                "count cap",
                (0..12).map(|i| click("ref", "x", i)).collect(),
                vec![0, 3, 4, 5, 6, 7, 8, 9, 10, 11],
            ),
            // Not in time order: the oldest middle click goes first, not the second one.
            (
                "oldest middle first",
                [5, 9, 1, 7, 3, 8, 6, 2, 4, 10, 11]
                    .iter()
                    .map(|&i| click("ref", "x", i))
                    .collect(),
                vec![5, 9, 7, 3, 8, 6, 2, 4, 10, 11],
            ),
            // Each long click is about 870 bytes of text: four fit, five do not (checked below).
            ("byte cap", (0..10).map(long).collect(), vec![0, 7, 8, 9]),
        ];
        for (name, clicks, want) in cases {
            let mut r = record(clicks, 1);
            fit(&mut r);
            let got: Vec<u64> = r.clicks.iter().map(|c| c.at).collect();
            assert_eq!(got, want, "{name}");
            assert!(encode(&r).len() <= MAX_BYTES, "{name}");
        }
        // The byte cap dropped no more than it had to.
        let five = record([0, 6, 7, 8, 9].into_iter().map(long).collect(), 1);
        assert!(encode(&five).len() > MAX_BYTES);
    }

    #[test]
    fn fit_drops_the_first_when_two_do_not_fit() {
        let huge = |at: u64| {
            let mut c = click("gclid", "G", at);
            c.path = "/".to_string() + &"a".repeat(2000);
            c
        };
        // Each click alone is under the limit, two together are not.
        let one = encode(&record(vec![huge(1)], 1)).len();
        assert!(one <= MAX_BYTES && 2 * one > MAX_BYTES + 200, "{one}");
        let mut r = record(vec![huge(1), huge(2)], 1);
        fit(&mut r);
        assert_eq!(r.clicks.iter().map(|c| c.at).collect::<Vec<_>>(), [2]);

        // A single click that cannot fit at all goes too, rather than writing an oversized cookie.
        let mut c = huge(3);
        c.path.push_str(&"a".repeat(2000));
        let mut r = record(vec![c], 1);
        fit(&mut r);
        assert!(r.clicks.is_empty());
    }

    #[test]
    fn merges_two_records() {
        let other = |clicks, written| Record {
            visitor: V2.to_string(),
            session: V2.to_string(),
            last_seen: 77,
            clicks,
            written,
        };
        let a = record(vec![click("gclid", "A", 10), click("ref", "X", 30)], 100);
        let b = other(
            vec![click("gclid", "B", 20), click("ref", "X", 5), click("gclid", "A", 40)],
            200,
        );
        let m = merge(Some(a.clone()), Some(b.clone())).unwrap();
        assert_eq!(m.visitor, V2, "the later-written record's IDs win");
        assert_eq!(m.last_seen, 77);
        assert_eq!(m.written, 200);
        assert_eq!(values(&m), [("X", 5), ("A", 10), ("B", 20)]);

        // On a tie the first argument wins, and equal times keep its click first.
        let a = record(vec![click("gclid", "A", 10)], 100);
        let b = other(vec![click("ref", "B", 10)], 100);
        let m = merge(Some(a.clone()), Some(b.clone())).unwrap();
        assert_eq!(m.visitor, V);
        assert_eq!(values(&m), [("A", 10), ("B", 10)]);
        let m = merge(Some(b.clone()), Some(a.clone())).unwrap();
        assert_eq!(m.visitor, V2);
        assert_eq!(values(&m), [("B", 10), ("A", 10)]);

        // The same value under another parameter is another click.
        let a = record(vec![click("gclid", "A", 10)], 1);
        let b = record(vec![click("fbclid", "A", 10)], 1);
        assert_eq!(merge(Some(a), Some(b)).unwrap().clicks.len(), 2);

        // One side missing: the other, fitted.
        let many = record((0..12).map(|i| click("ref", &i.to_string(), i)).collect(), 9);
        for m in [merge(Some(many.clone()), None), merge(None, Some(many.clone()))] {
            assert_eq!(m.map(|r| r.clicks.len()), Some(MAX_CLICKS));
        }
        assert_eq!(merge(None, None), None);

        // The union is capped too, keeping the journey's first and last click.
        let a = record((0..8).map(|i| click("ref", &i.to_string(), i * 2)).collect(), 1);
        let b = record((0..8).map(|i| click("gclid", &i.to_string(), i * 2 + 1)).collect(), 1);
        let m = merge(Some(a), Some(b)).unwrap();
        let ats: Vec<u64> = m.clicks.iter().map(|c| c.at).collect();
        assert_eq!(ats, [0, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    }

    #[test]
    fn expires_old_and_future_clicks() {
        let now = 1_000 * DAY_MS;
        let window = 30 * DAY_MS;
        let cases: &[(u64, bool)] = &[
            (now, true),
            (now - window + 1, true),
            (now - window, false),
            (0, false),
            (now + DAY_MS, true),
            (now + DAY_MS + 1, false),
            (u64::MAX, false),
        ];
        for &(at, kept) in cases {
            let mut r = record(vec![click("gclid", "G", at)], now);
            expire(&mut r, now, window);
            assert_eq!(r.clicks.len() == 1, kept, "at {at}");
        }
        // Extreme arguments do not overflow.
        let mut r = record(vec![click("gclid", "G", u64::MAX)], 0);
        expire(&mut r, u64::MAX, u64::MAX);
        assert_eq!(r.clicks.len(), 1);
    }
}
