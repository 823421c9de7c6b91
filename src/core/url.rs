//! Landing URLs: query strings, paths and hosts, and the capture of partner click IDs from them.
//!
//! These functions take the page URL and referrer as text and never look at the browser, so a
//! hostile URL is just a test case. A refused click-ID value is never kept, only its parameter
//! name and the reason, so it can never be reflected into a page.

use alloc::string::String;
use alloc::vec::Vec;

use super::click::{self, Click, Rejected};
use super::{parts, split_byte};

/// The longest landing path kept with a click, in bytes; longer ones are cut at a character
/// boundary.
pub const MAX_PATH: usize = 512;

/// The longest referrer host kept, in bytes (the longest DNS name); longer ones are dropped,
/// since a cut host would name another site.
pub const MAX_HOST: usize = 253;

/// What [`capture`] found on a landing URL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capture {
    /// The valid click IDs, in the order their parameters appear in the URL.
    pub clicks: Vec<Click>,
    /// The click-ID parameters whose value was refused, with why.
    pub rejected: Vec<Refusal>,
}

/// A click-ID parameter whose value was refused. The value itself is deliberately not kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The canonical parameter name (e.g. `irclickid`).
    pub param: String,
    /// Why the value was refused.
    pub reason: Rejected,
}

/// The value of one hex digit, either case.
pub(crate) fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes one form-encoded query component: `+` is a space and `%XX` a byte; a stray `%` or
/// bytes that are not UTF-8 are [`Rejected::BadEncoding`].
pub fn decode_component(raw: &str) -> Result<String, Rejected> {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        i += 1;
        match c {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = b.get(i).copied().and_then(hex_val);
                let lo = b.get(i + 1).copied().and_then(hex_val);
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => return Err(Rejected::BadEncoding),
                }
                i += 2;
            }
            c => out.push(c),
        }
    }
    String::from_utf8(out).map_err(|_| Rejected::BadEncoding)
}

/// The text before the first `c` (all of `s` if there is none).
fn before(s: &str, c: u8) -> &str {
    split_byte(s, c).map_or(s, |(head, _)| head)
}

/// The raw `(key, value)` pairs of the query of `url` (an absolute URL or a bare `?a=b`): after
/// the first `?` and before the fragment, split on `&`; a pair without `=` has an empty value.
pub fn query_pairs(url: &str) -> Vec<(&str, &str)> {
    // A `?` inside the fragment does not start a query, so the fragment goes first.
    let Some((_, query)) = split_byte(before(url, b'#'), b'?') else {
        return Vec::new();
    };
    parts(query, b'&')
        .filter(|p| !p.is_empty())
        .map(|p| split_byte(p, b'=').unwrap_or((p, "")))
        .collect()
}

/// Splits an absolute URL into its scheme and what follows `://`; `None` for a relative URL.
fn split_scheme(url: &str) -> Option<(&str, &str)> {
    // The scheme is the run of scheme characters before `://`, so a relative URL carrying `://`
    // in its query (`/p?u=https://x`) is not mistaken for one. Scanning by hand rather than
    // searching for "://" keeps the substring searcher out of the tag.
    let end = url
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))?;
    let rest = url.get(end..)?.strip_prefix("://")?;
    url.get(..end).filter(|s| !s.is_empty()).map(|scheme| (scheme, rest))
}

/// The authority (`user@host:port`) of what follows `scheme://`.
fn authority(rest: &str) -> &str {
    rest.bytes()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .and_then(|i| rest.get(..i))
        .unwrap_or(rest)
}

/// The path of an absolute or relative URL, without query or fragment; `/` when it has none.
pub fn path_of(url: &str) -> &str {
    let rest = match split_scheme(url) {
        Some((_, rest)) => rest.get(authority(rest).len()..).unwrap_or(""),
        None => url,
    };
    // After the authority comes `/`, `?`, `#` or nothing, so the path is empty or starts with `/`.
    let path = before(before(rest, b'#'), b'?');
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

/// The host (without user info and port) of an absolute `http:` or `https:` URL; empty for
/// anything else, such as an empty referrer.
pub fn host_of(url: &str) -> &str {
    let Some((scheme, rest)) = split_scheme(url) else {
        return "";
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return "";
    }
    let auth = authority(rest);
    let host_port = auth
        .bytes()
        .rposition(|b| b == b'@')
        .and_then(|i| auth.get(i + 1..))
        .unwrap_or(auth);
    if host_port.starts_with('[') {
        // An IPv6 literal keeps its brackets; its colons are not a port.
        return host_port
            .bytes()
            .position(|b| b == b']')
            .and_then(|i| host_port.get(..=i))
            .unwrap_or("");
    }
    before(host_port, b':')
}

/// `s` without control characters, cut to `max` bytes at a character boundary.
pub(crate) fn bounded(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

/// True when a decoded query key is `utm_<name>`, ignoring ASCII case.
fn is_utm_key(key: &str, name: &str) -> bool {
    key.len() == 4 + name.len()
        && key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("utm_"))
        && key.get(4..).is_some_and(|n| n.eq_ignore_ascii_case(name))
}

/// Why the value of one query pair would be refused, when its key names a click-ID parameter (the
/// site's or a built-in one) and its value does not decode or validate; `None` otherwise.
pub(crate) fn refusal_of(key: &str, raw: &str, custom: &[(String, String)]) -> Option<Refusal> {
    let key = decode_component(key).ok()?;
    let (param, _) = click::lookup(&key, custom)?;
    let reason = decode_component(raw).and_then(|v| click::validate(&v)).err()?;
    Some(Refusal {
        param: String::from(param),
        reason,
    })
}

/// The first click-ID parameter of `url` whose value would be refused, with why: a URL the tag
/// sends never carries one (it cuts them), and the collector refuses an event whose `url` or
/// `referrer` does, so a refused value is stored nowhere.
pub fn refused_param(url: &str, custom: &[(String, String)]) -> Option<Refusal> {
    query_pairs(url).into_iter().find_map(|(k, v)| refusal_of(k, v, custom))
}

/// Captures the click IDs of a landing URL: each recognised parameter (the site's `custom`
/// `(param, network)` pairs first, then the built-ins) whose first valid value is kept, with the
/// landing path, the external referrer host and the UTM context of the same URL, at `now`.
pub fn capture(url: &str, referrer: &str, now: u64, custom: &[(String, String)]) -> Capture {
    // Keys are decoded once: `%69rclickid` is `irclickid`; an undecodable key names nothing.
    let mut pairs = Vec::new();
    for (k, v) in query_pairs(url) {
        if let Ok(k) = decode_component(k) {
            pairs.push((k, v));
        }
    }

    let mut utm = Vec::new();
    for name in click::UTM_KEYS {
        // The first value of `utm_<name>` that decodes and is not empty once cleaned.
        for (k, v) in &pairs {
            if !is_utm_key(k, name) {
                continue;
            }
            let v = decode_component(v).map(|v| click::clean_utm(&v)).unwrap_or_default();
            if !v.is_empty() {
                utm.push((String::from(*name), v));
                break;
            }
        }
    }

    let path = bounded(path_of(url), MAX_PATH);
    let from = host_of(referrer);
    // Navigation inside the site is not a referral; a host too long or odd to be real is noise.
    let referrer = if from.eq_ignore_ascii_case(host_of(url)) || from.len() > MAX_HOST || crate::core::has_control(from)
    {
        String::new()
    } else {
        String::from(from)
    };

    let mut out = Capture::default();
    for (key, raw) in &pairs {
        let Some((param, network)) = click::lookup(key, custom) else {
            continue;
        };
        if out.clicks.iter().any(|c| c.param == param) {
            continue;
        }
        match decode_component(raw).and_then(|v| click::validate(&v).map(|()| v)) {
            Ok(value) => out.clicks.push(Click {
                param: String::from(param),
                network: String::from(network),
                value,
                at: now,
                path: path.clone(),
                referrer: referrer.clone(),
                utm: utm.clone(),
            }),
            Err(reason) => {
                if !out.rejected.iter().any(|r| r.param == param && r.reason == reason) {
                    out.rejected.push(Refusal {
                        param: String::from(param),
                        reason,
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn decodes_components() {
        let cases: &[(&str, Result<&str, Rejected>)] = &[
            ("", Ok("")),
            ("abc", Ok("abc")),
            ("a+b", Ok("a b")),
            ("a%20b", Ok("a b")),
            ("%2B%2b", Ok("++")),
            ("%C3%A9t%c3%a9", Ok("été")),
            ("%F0%9F%98%80", Ok("😀")),
            ("é", Ok("é")),
            ("%3Cscript%3E", Ok("<script>")),
            ("%00", Ok("\u{0}")),
            ("%", Err(Rejected::BadEncoding)),
            ("%4", Err(Rejected::BadEncoding)),
            ("abc%", Err(Rejected::BadEncoding)),
            ("%G1", Err(Rejected::BadEncoding)),
            ("%1G", Err(Rejected::BadEncoding)),
            ("%%41", Err(Rejected::BadEncoding)),
            ("%C3", Err(Rejected::BadEncoding)),
            ("%FF%FE", Err(Rejected::BadEncoding)),
            ("%ED%A0%80", Err(Rejected::BadEncoding)),
            // A `%` right before a multi-byte character must not split it.
            ("%é", Err(Rejected::BadEncoding)),
            ("%1é", Err(Rejected::BadEncoding)),
        ];
        for (raw, want) in cases {
            assert_eq!(decode_component(raw).as_deref().map_err(|e| *e), *want, "{raw:?}");
        }
    }

    #[test]
    fn splits_query_pairs() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("https://h/p?a=b&c=d", &[("a", "b"), ("c", "d")]),
            ("?a=b", &[("a", "b")]),
            (
                "https://h/p?a&b=&=c&&d=e=f",
                &[("a", ""), ("b", ""), ("", "c"), ("d", "e=f")],
            ),
            ("https://h/p?a=1#frag&b=2", &[("a", "1")]),
            ("https://h/p#frag?a=1", &[]),
            ("https://h/p?x=1?y=2", &[("x", "1?y=2")]),
            ("https://h/p", &[]),
            ("https://h/p?", &[]),
            ("", &[]),
            ("?&&&", &[]),
            ("?%61=%62", &[("%61", "%62")]),
        ];
        for (url, want) in cases {
            assert_eq!(query_pairs(url), want.to_vec(), "{url:?}");
        }
    }

    #[test]
    fn finds_paths() {
        let cases = [
            ("https://h/p/q?x#y", "/p/q"),
            ("https://h", "/"),
            ("https://h?x=1", "/"),
            ("https://h#top", "/"),
            ("https://h/", "/"),
            ("https://user:pw@h:8080/a/b", "/a/b"),
            ("/p?x", "/p"),
            ("/p#x", "/p"),
            ("/p?u=https://evil/x", "/p"),
            ("?a=b", "/"),
            ("", "/"),
            ("https://h/caf%C3%A9", "/caf%C3%A9"),
        ];
        for (url, want) in cases {
            assert_eq!(path_of(url), want, "{url:?}");
        }
    }

    #[test]
    fn finds_hosts() {
        let cases = [
            ("https://partner.example/review", "partner.example"),
            ("http://partner.example", "partner.example"),
            ("HTTPS://Partner.Example:443/x", "Partner.Example"),
            ("https://user:pw@h.example:8080/a", "h.example"),
            ("https://a@b@h.example/", "h.example"),
            ("https://h.example?x=1", "h.example"),
            ("https://h.example#x", "h.example"),
            ("https://[::1]:8080/p", "[::1]"),
            ("https://[::1", ""),
            ("", ""),
            ("/relative/path", ""),
            ("android-app://com.example.app/", ""),
            ("javascript://x/%0Aalert(1)", ""),
            ("ftp://h.example/", ""),
            ("/p?u=https://evil.example/", ""),
        ];
        for (url, want) in cases {
            assert_eq!(host_of(url), want, "{url:?}");
        }
    }

    fn click(param: &str, network: &str, value: &str, path: &str, referrer: &str, utm: &[(&str, &str)]) -> Click {
        Click {
            param: param.to_string(),
            network: network.to_string(),
            value: value.to_string(),
            at: 1_000,
            path: path.to_string(),
            referrer: referrer.to_string(),
            utm: utm.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    fn refusal(param: &str, reason: Rejected) -> Refusal {
        Refusal {
            param: param.to_string(),
            reason,
        }
    }

    #[test]
    fn captures_clicks() {
        let ext = "https://partner.example/review";
        let cases: Vec<(&str, &str, Vec<Click>, Vec<Refusal>)> =
            vec![
            (
                "https://shop.example/product/42?irclickid=Xy12abc",
                ext,
                vec![click("irclickid", "impact", "Xy12abc", "/product/42", "partner.example", &[])],
                vec![],
            ),
            // Several networks at once, in URL order, sharing the landing context.
            (
                "https://shop.example/p?gclid=Cj0&utm_source=partner&fbclid=IwAR&utm_medium=affiliate",
                "",
                vec![
                    click("gclid", "google", "Cj0", "/p", "", &[("source", "partner"), ("medium", "affiliate")]),
                    click("fbclid", "meta", "IwAR", "/p", "", &[("source", "partner"), ("medium", "affiliate")]),
                ],
                vec![],
            ),
            // UTM keys follow UTM_KEYS order, are decoded, cleaned, and the first one wins.
            (
                "/l?utm_content=c&UTM_Campaign=Spring+Sale&utm_source=a&utm_source=b&utm_term=%ZZ&utm_term=t&sscid=r1",
                "",
                vec![click(
                    "sscid",
                    "shareasale",
                    "r1",
                    "/l",
                    "",
                    &[("source", "a"), ("campaign", "Spring Sale"), ("term", "t"), ("content", "c")],
                )],
                vec![],
            ),
            // An empty or control-only UTM value gives no context.
            (
                "/l?utm_source=&utm_medium=%00&awc=r",
                "",
                vec![click("awc", "awin", "r", "/l", "", &[])],
                vec![],
            ),
            // Internal navigation has no referrer, whatever the case of the host.
            (
                "https://shop.example/p?awc=1",
                "https://SHOP.example/cart",
                vec![click("awc", "awin", "1", "/p", "", &[])],
                vec![],
            ),
            // Keys are decoded and matched without case; the canonical name is kept.
            (
                "https://shop.example/?%69rclickid=A1&RANSITEID=B2",
                ext,
                vec![
                    click("irclickid", "impact", "A1", "/", "partner.example", &[]),
                    click("ranSiteID", "rakuten", "B2", "/", "partner.example", &[]),
                ],
                vec![],
            ),
            // The first valid occurrence wins; a bad one before it is reported, later ones ignored.
            (
                "/p?gclid=%3Cscript%3E&gclid=good1&gclid=good2&gclid=%",
                "",
                vec![click("gclid", "google", "good1", "/p", "", &[])],
                vec![refusal("gclid", Rejected::BadChar)],
            ),
            // Hostile values: refused with the reason, never kept.
            (
                "/p?irclickid=%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E&gclid=1%27%3B%20DROP%20TABLE%20x%3B--\
                 &fbclid=%E0%A4&msclkid=&ttclid=caf%C3%A9&cjevent=a%2",
                "",
                vec![],
                vec![
                    refusal("irclickid", Rejected::BadChar),
                    refusal("gclid", Rejected::BadChar),
                    refusal("fbclid", Rejected::BadEncoding),
                    refusal("msclkid", Rejected::Empty),
                    refusal("ttclid", Rejected::BadChar),
                    refusal("cjevent", Rejected::BadEncoding),
                ],
            ),
            // The same refusal twice is reported once.
            (
                "/p?sscid=a%20b&sscid=c%20d",
                "",
                vec![],
                vec![refusal("sscid", Rejected::BadChar)],
            ),
            // Unknown parameters, fragments and undecodable keys name no click.
            ("/p?page=2&%ZZ=1#gclid=frag", "", vec![], vec![]),
            ("", "", vec![], vec![]),
            // A referrer that is not http(s) gives no host.
            (
                "https://shop.example/p?gspk=v",
                "android-app://com.example/",
                vec![click("gspk", "partnerstack", "v", "/p", "", &[])],
                vec![],
            ),
            // An ordinary parameter of the site is not a partner's click, whatever its name
            // suggests: a site that means one lists it in `clickParams`.
            ("/product.html?sku=CAP-1&ref=footer&via=nav&clickid=1&click_id=2", "", vec![], vec![]),
        ];
        for (url, referrer, clicks, rejected) in cases {
            let got = capture(url, referrer, 1_000, &[]);
            assert_eq!(got, Capture { clicks, rejected }, "{url:?}");
        }
    }

    #[test]
    fn finds_refused_parameters() {
        let custom = [(String::from("aff"), String::from("mine"))];
        let cases = [
            (
                "https://s.example/p?irclickid=ok&gclid=%3Cx%3E",
                Some(refusal("gclid", Rejected::BadChar)),
            ),
            ("/p?%67clid=a%20b", Some(refusal("gclid", Rejected::BadChar))),
            ("/p?AFF=%", Some(refusal("aff", Rejected::BadEncoding))),
            ("/p?irclickid=", Some(refusal("irclickid", Rejected::Empty))),
            // A bad value after a good one is refused too: it would still be in the URL.
            ("/p?gclid=good&gclid=b%20d", Some(refusal("gclid", Rejected::BadChar))),
            ("/p?ref=%3Cx%3E&q=a%20b&gclid=fine", None),
            ("/p#gclid=%3Cx%3E", None),
            ("", None),
        ];
        for (url, want) in cases {
            assert_eq!(refused_param(url, &custom), want, "{url:?}");
        }
    }

    #[test]
    fn site_parameters_come_first() {
        let custom = [
            ("aff_id".to_string(), "myprogram".to_string()),
            ("gclid".to_string(), "google-ads".to_string()),
        ];
        let got = capture("/p?AFF_ID=42&gclid=G&irclickid=I", "", 7, &custom);
        let names: Vec<(&str, &str, &str)> = got
            .clicks
            .iter()
            .map(|c| (c.param.as_str(), c.network.as_str(), c.value.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("aff_id", "myprogram", "42"),
                ("gclid", "google-ads", "G"),
                ("irclickid", "impact", "I")
            ]
        );
        assert!(got.clicks.iter().all(|c| c.at == 7));
    }

    #[test]
    fn bounds_hostile_sizes() {
        let long_value = "a".repeat(10_000);
        let long_path = "/".to_string() + &"é".repeat(5_000);
        let url = long_path.clone() + "?gclid=" + &long_value + "&fbclid=ok&utm_source=" + &"x".repeat(10_000);
        let long_ref = "https://".to_string() + &"h".repeat(300) + "/";
        let got = capture(&url, &long_ref, 1, &[]);
        assert_eq!(got.rejected, vec![refusal("gclid", Rejected::TooLong)]);
        let [c] = got.clicks.as_slice() else {
            panic!("one click expected: {got:?}");
        };
        assert_eq!(c.value, "ok");
        assert!(
            c.path.len() <= MAX_PATH && c.path.len() > MAX_PATH - 4,
            "{}",
            c.path.len()
        );
        assert!(long_path.starts_with(&c.path));
        assert_eq!(c.referrer, "", "a 300-byte host is not kept");
        assert_eq!(c.utm, vec![("source".to_string(), "x".repeat(click::MAX_UTM_LEN))]);
    }

    #[test]
    fn captured_clicks_survive_the_wire() {
        // Whatever capture keeps must be readable again by wire::read_click, or a stored record
        // holding it would be refused as a whole.
        let url = "https://shop.example/a%00b/\u{7}?gclid=G&utm_source=%E2%80%AEevil%0A&utm_term=<b>";
        let got = capture(url, "https://ref.example/", 1, &[]);
        assert_eq!(got.clicks.len(), 1);
        for c in &got.clicks {
            let mut text = String::new();
            super::super::wire::write_click(&mut text, c);
            let back = super::super::wire::read_click(&mut super::super::json::parse(&text).unwrap());
            assert_eq!(back.as_ref(), Ok(c), "{text}");
        }
    }
}
