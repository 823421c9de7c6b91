//! Partner click IDs: which query parameters carry them, which network each belongs to, and
//! whether a value is a sane token worth keeping.

use alloc::string::String;
use alloc::vec::Vec;

/// One partner click of the journey, as captured from a landing URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Click {
    /// The query parameter that carried it, as configured (e.g. `irclickid`).
    pub param: String,
    /// The network that parameter belongs to (e.g. `impact`).
    pub network: String,
    /// The validated click ID.
    pub value: String,
    /// When it was captured, in milliseconds since the Unix epoch.
    pub at: u64,
    /// The landing path (no query string, so no other parameters leak with it).
    pub path: String,
    /// The referrer's host, or empty when there was none.
    pub referrer: String,
    /// UTM context of the same landing: (`source`, `medium`, `campaign`, `term`, `content`).
    pub utm: Vec<(String, String)>,
}

/// Why a click-ID value was not kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// The value was empty.
    Empty,
    /// Longer than [`MAX_VALUE_LEN`].
    TooLong,
    /// A character outside the safe set (letters, digits and `-_.~:=+/`).
    BadChar,
    /// A `%` sequence that does not decode, or bytes that are not UTF-8.
    BadEncoding,
    /// A journey parameter that was edited, cut, or decorated in another browser.
    Tampered,
    /// A journey parameter decorated too long ago to be believed.
    Expired,
}

impl Rejected {
    /// A short English reason, for the debug page and the console (its code in the production
    /// tag).
    pub fn as_str(self) -> &'static str {
        use super::text as t;
        match self {
            Rejected::Empty => t::CLICK_EMPTY,
            Rejected::TooLong => t::CLICK_LONG,
            Rejected::BadChar => t::CLICK_CHAR,
            Rejected::BadEncoding => t::CLICK_ENCODING,
            Rejected::Tampered => t::CLICK_TAMPERED,
            Rejected::Expired => t::CLICK_EXPIRED,
        }
    }
}

/// The longest click ID kept. Real ones are well under it (a `gclid` is about 100 characters).
pub const MAX_VALUE_LEN: usize = 256;

/// The longest UTM value kept; longer ones are cut at a character boundary.
pub const MAX_UTM_LEN: usize = 200;

/// The parameters recognised out of the box, with their networks: each names one network's click,
/// so an ordinary parameter of the site (`ref`, `via`, `clickid`) never passes for a partner's
/// click. A site that uses such a parameter for its partners lists it in `clickParams`.
pub const BUILTIN_PARAMS: &[(&str, &str)] = &[
    ("irclickid", "impact"),
    ("gclid", "google"),
    ("gbraid", "google"),
    ("wbraid", "google"),
    ("fbclid", "meta"),
    ("msclkid", "microsoft"),
    ("ttclid", "tiktok"),
    ("li_fat_id", "linkedin"),
    ("cjevent", "cj"),
    ("awc", "awin"),
    ("sscid", "shareasale"),
    ("ranSiteID", "rakuten"),
    ("gspk", "partnerstack"),
];

/// The UTM parameters kept as context, without their `utm_` prefix.
pub const UTM_KEYS: &[&str] = &["source", "medium", "campaign", "term", "content"];

/// The network of a click parameter: the site's own parameters first, then the built-in list.
/// Names match ASCII-case-insensitively (`ranSiteID` and `ransiteid` are the same parameter).
pub fn network_of<'a>(param: &str, custom: &'a [(String, String)]) -> Option<&'a str> {
    lookup(param, custom).map(|(_, n)| n)
}

/// The canonical spelling of a click parameter (the configured one), if it is one.
pub fn canonical_param<'a>(param: &str, custom: &'a [(String, String)]) -> Option<&'a str> {
    lookup(param, custom).map(|(p, _)| p)
}

/// `(canonical parameter, network)` of a click parameter: the site's own first, then the
/// built-in list.
pub(crate) fn lookup<'a>(param: &str, custom: &'a [(String, String)]) -> Option<(&'a str, &'a str)> {
    for (p, n) in custom {
        if p.eq_ignore_ascii_case(param) {
            return Some((p, n));
        }
    }
    for &(p, n) in BUILTIN_PARAMS {
        if p.eq_ignore_ascii_case(param) {
            return Some((p, n));
        }
    }
    None
}

/// True for the characters a click ID may contain.
pub fn is_safe_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | ':' | '=' | '+' | '/')
}

/// Checks a decoded click-ID value: non-empty, bounded, and made only of safe characters. Such a
/// value can be written into a cookie, a JSON text or an HTML attribute without escaping.
pub fn validate(value: &str) -> Result<(), Rejected> {
    if value.is_empty() {
        return Err(Rejected::Empty);
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(Rejected::TooLong);
    }
    // Bytes: a non-ASCII character is refused anyway, so nothing needs decoding.
    if !value.bytes().all(|b| b < 0x80 && is_safe_char(char::from(b))) {
        return Err(Rejected::BadChar);
    }
    Ok(())
}

/// Cleans a UTM value: control characters removed, cut to [`MAX_UTM_LEN`] bytes. UTM values are
/// free text ("Spring Sale"), so they are bounded rather than rejected; they are always rendered
/// and stored as text.
pub fn clean_utm(value: &str) -> String {
    super::url::bounded(value, MAX_UTM_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn validation_table() {
        let long = "a".repeat(MAX_VALUE_LEN);
        let too_long = "a".repeat(MAX_VALUE_LEN + 1);
        let cases: &[(&str, Result<(), Rejected>)] = &[
            ("Xy12abc", Ok(())),
            ("Cj0KCQiA_BwE-x.y~z", Ok(())),
            ("IwAR3+base64/pad==", Ok(())),
            ("1234_1712345678_abcdef:1", Ok(())),
            (&long, Ok(())),
            (&too_long, Err(Rejected::TooLong)),
            ("", Err(Rejected::Empty)),
            ("<img src=x onerror=alert(1)>", Err(Rejected::BadChar)),
            ("'; DROP TABLE clicks;--", Err(Rejected::BadChar)),
            ("a b", Err(Rejected::BadChar)),
            ("a\u{0}b", Err(Rejected::BadChar)),
            ("a\nb", Err(Rejected::BadChar)),
            ("café", Err(Rejected::BadChar)),
            ("a\"b", Err(Rejected::BadChar)),
            ("a;b", Err(Rejected::BadChar)),
            ("a%20b", Err(Rejected::BadChar)),
        ];
        for (value, want) in cases {
            assert_eq!(validate(value), *want, "{value:?}");
        }
    }

    #[test]
    fn networks_builtin_and_custom() {
        let custom = [
            ("aff_id".to_string(), "myprogram".to_string()),
            ("gclid".to_string(), "google-ads".to_string()),
        ];
        let cases = [
            ("irclickid", Some("impact")),
            ("IRCLICKID", Some("impact")),
            ("ranSiteID", Some("rakuten")),
            ("ransiteid", Some("rakuten")),
            ("li_fat_id", Some("linkedin")),
            ("aff_id", Some("myprogram")),
            ("gclid", Some("google-ads")),
            ("utm_source", None),
            ("page", None),
        ];
        for (param, want) in cases {
            assert_eq!(network_of(param, &custom), want, "{param}");
        }
        assert_eq!(canonical_param("RANSITEID", &[]), Some("ranSiteID"));
    }

    #[test]
    fn utm_values_are_bounded_text() {
        assert_eq!(clean_utm("Spring Sale"), "Spring Sale");
        assert_eq!(clean_utm("a\u{0}b\nc"), "abc");
        let long = "é".repeat(MAX_UTM_LEN);
        let cut = clean_utm(&long);
        assert!(cut.len() <= MAX_UTM_LEN && cut.chars().all(|c| c == 'é'));
    }
}
