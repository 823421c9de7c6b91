//! The journey parameter (`_uttj`): a journey carried from one page to the next in a link's
//! URL, for the two cases where storage cannot carry it.
//!
//! - **Consent pending.** Nothing may be stored before the visitor accepts, so a click captured
//!   on the landing page would live only in that page's memory. The tag carries it forward on
//!   links and forms of the site itself (as "URL passthrough" does in other tags), and the page
//!   where consent is granted stores it with its original landing time, path and referrer.
//! - **The site's other domains** (`linkDomains`): cookies and localStorage stop at a domain,
//!   so links to the site's own checkout domain carry the clicks and, with consent, the visitor
//!   and session, which the tag on the other domain adopts.
//!
//! The value is the journey record's cookie-safe text (`record::encode`) written at the moment
//! of decoration, after an 8-hex-digit checksum of that text and the browser's user agent. It
//! is believed for [`TTL_MS`] only: a link copied and opened later, or with another user agent,
//! or edited by hand, is refused and reported; and once read it leaves the address bar
//! (`Tracker::address`), so an address copied from there does not carry it. The checksum is not a signature (a page cannot keep
//! a secret); the clicks in it are validated like any others, so the worst a forged value can
//! do is claim a click, which a visitor can do anyway by typing a tracking link.

use alloc::string::String;

use super::click::Rejected;
use super::record::{self, Record};
use super::url;

/// How long after decoration a journey parameter is believed.
pub const TTL_MS: u64 = 5 * 60_000;

/// How far a decoration may be dated in the future (the same browser's clock, read twice).
const SKEW_MS: u64 = 60_000;

/// The longest record text a link carries; the first and last clicks are kept first (see
/// `record::fit`), so a long journey does not make links too long for servers.
const MAX_BYTES: usize = 1500;

/// The visitor and session of a journey that carries only clicks.
pub const NIL: &str = "00000000-0000-0000-0000-000000000000";

/// FNV-1a (32 bits) of the text then the user agent, as 8 hex digits: tells a value edited by
/// hand or opened in another browser from one this browser decorated. (The record's text always
/// ends with `)`, so where it stops and the user agent starts is never ambiguous.)
fn checksum(text: &str, ua: &str) -> String {
    let fnv = |h: u32, s: &str| s.bytes().fold(h, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    let h = fnv(fnv(0x811c_9dc5, text), ua);
    let mut out = String::new();
    for shift in (0..8).rev() {
        out.push(char::from(b"0123456789abcdef"[(h >> (shift * 4) & 15) as usize]));
    }
    out
}

/// The parameter's value for the journey `r` at `now`: with the visitor and session when
/// `identified`, else the clicks alone. Needs no further escaping in a query.
pub fn encode(r: &Record, identified: bool, now: u64, ua: &str) -> String {
    let id = |s: &str| String::from(if identified { s } else { NIL });
    let mut j = Record {
        visitor: id(&r.visitor),
        session: id(&r.session),
        last_seen: now,
        clicks: r.clicks.clone(),
        written: now,
    };
    record::fit_to(&mut j, MAX_BYTES);
    let text = record::encode(&j);
    let mut out = checksum(&text, ua);
    // `%` and `'` are the two characters of the record's text a query needs escaped (browsers
    // percent-encode `'` in queries themselves, and `%` must stay itself).
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            '\'' => out.push_str("%27"),
            c => out.push(c),
        }
    }
    out
}

/// Reads a parameter value as it arrived in the URL: the journey, or why it is refused
/// ([`Rejected::Tampered`] for anything that does not check out, [`Rejected::Expired`] when it
/// was decorated more than [`TTL_MS`] ago). The visitor is [`NIL`] when it carried only clicks.
pub fn decode(raw: &str, now: u64, ua: &str) -> Result<Record, Rejected> {
    let value = url::decode_component(raw).map_err(|_| Rejected::Tampered)?;
    let r = super::split_at(&value, 8)
        .filter(|(sum, text)| *sum == checksum(text, ua))
        .and_then(|(_, text)| record::decode(text))
        .ok_or(Rejected::Tampered)?;
    if r.written > now.saturating_add(SKEW_MS) || now.saturating_sub(r.written) > TTL_MS {
        return Err(Rejected::Expired);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::click::Click;
    use alloc::string::ToString;
    use alloc::vec;
    use alloc::vec::Vec;

    const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) Chrome/156";
    const T: u64 = 1_764_150_000_000;

    fn journey() -> Record {
        Record {
            visitor: "5b0e3f0a-6c1d-4f3e-9a8b-2c7d1e0f4a5b".to_string(),
            session: "0c9a7e52-3b1f-4d6a-8e2c-9f1b3d5a7c9e".to_string(),
            last_seen: T - 5,
            clicks: vec![Click {
                param: "irclickid".to_string(),
                network: "impact".to_string(),
                value: "AFF-1".to_string(),
                at: T - 60_000,
                path: "/caf\u{e9}/landing".to_string(),
                referrer: "partner.example".to_string(),
                utm: vec![("campaign".to_string(), "Men's 50% (spring)".to_string())],
            }],
            written: T - 5,
        }
    }

    #[test]
    fn carries_the_clicks_and_with_consent_the_visitor() {
        let r = journey();
        for identified in [true, false] {
            let value = encode(&r, identified, T, UA);
            // Safe in a query as it is: nothing a browser would re-encode, nothing that ends it.
            assert!(
                value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~!*()%".contains(&b)),
                "{value}"
            );
            let back = decode(&value, T + 1_000, UA).unwrap();
            assert_eq!(back.clicks, r.clicks, "original time, path, referrer and UTM");
            assert_eq!(back.written, T);
            let want = if identified { r.visitor.as_str() } else { NIL };
            assert_eq!(back.visitor, want);
        }
    }

    #[test]
    fn refuses_edited_foreign_and_stale_values() {
        let value = encode(&journey(), false, T, UA);
        assert_eq!(decode(&value, T + TTL_MS, UA).map(|r| r.written), Ok(T));
        assert_eq!(decode(&value, T + TTL_MS + 1, UA), Err(Rejected::Expired));
        assert_eq!(decode(&value, T - SKEW_MS - 1, UA), Err(Rejected::Expired));
        assert_eq!(decode(&value, T, "another browser"), Err(Rejected::Tampered));
        let edited = value.replace("AFF-1", "AFF-2");
        assert_ne!(edited, value);
        assert_eq!(decode(&edited, T, UA), Err(Rejected::Tampered));
        for junk in ["", "%", "deadbeef", "zzzzzzzz1.()", &value[..value.len() - 3]] {
            assert_eq!(decode(junk, T, UA), Err(Rejected::Tampered), "{junk:?}");
        }
        // A value whose checksum fits but whose record does not decode is refused too.
        let text = "1.(broken";
        let forged = checksum(text, UA) + text;
        assert_eq!(decode(&forged, T, UA), Err(Rejected::Tampered));
        // A click that would be refused on a landing URL is refused inside the journey too.
        let mut bad = journey();
        bad.clicks[0].value = "<img>".to_string();
        assert_eq!(decode(&encode(&bad, false, T, UA), T, UA), Err(Rejected::Tampered));
    }

    #[test]
    fn a_long_journey_keeps_its_first_and_last_clicks() {
        let mut r = journey();
        let first = r.clicks[0].clone();
        r.clicks = (0..10u64)
            .map(|i| Click {
                value: "x".repeat(200) + &i.to_string(),
                at: T - 1_000 + i,
                ..first.clone()
            })
            .collect();
        let back = decode(&encode(&r, true, T, UA), T, UA).unwrap();
        let values: Vec<&str> = back.clicks.iter().map(|c| c.value.as_str()).collect();
        assert!(back.clicks.len() < 10, "cut to fit a link");
        assert_eq!(values.first(), Some(&r.clicks[0].value.as_str()));
        assert_eq!(values.last(), Some(&r.clicks[9].value.as_str()));
    }
}
