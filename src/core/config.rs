//! The site's configuration, as given to `utt('init', {...})`, validated with a clear reason for
//! every refusal.

use alloc::string::String;
use alloc::vec::Vec;

use super::json::Json;
use super::text as t;
use super::wire::Invalid;

/// Where the journey record is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageMode {
    /// A first-party cookie and localStorage, each repairing the other (the default).
    Both,
    /// The cookie only.
    Cookie,
    /// localStorage only.
    Local,
    /// Nothing written: memory only, for cookieless operation.
    None,
}

impl StorageMode {
    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            StorageMode::Both => "cookie+local",
            StorageMode::Cookie => "cookie",
            StorageMode::Local => "local",
            StorageMode::None => "none",
        }
    }

    /// The next mode down when a store turns out to throw: a broken cookie jar leaves
    /// localStorage, a broken localStorage leaves the cookie, and either alone leaves memory.
    pub fn without(self, cookie_broken: bool, local_broken: bool) -> StorageMode {
        let cookie = matches!(self, StorageMode::Both | StorageMode::Cookie) && !cookie_broken;
        let local = matches!(self, StorageMode::Both | StorageMode::Local) && !local_broken;
        match (cookie, local) {
            (true, true) => StorageMode::Both,
            (true, false) => StorageMode::Cookie,
            (false, true) => StorageMode::Local,
            (false, false) => StorageMode::None,
        }
    }

    /// True if the cookie is written.
    pub fn cookie(self) -> bool {
        matches!(self, StorageMode::Both | StorageMode::Cookie)
    }

    /// True if localStorage is written.
    pub fn local(self) -> bool {
        matches!(self, StorageMode::Both | StorageMode::Local)
    }
}

/// The validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The site ID the collector knows.
    pub site: String,
    /// The collector's base URL (`https://collect.shop.example`); empty means this origin.
    pub collector: String,
    /// The site's write key, if the collector requires one.
    pub write_key: Option<String>,
    /// The attribution window, in milliseconds (default 30 days).
    pub window_ms: u64,
    /// The site's own click parameters: (parameter, network).
    pub click_params: Vec<(String, String)>,
    /// Where the journey is kept.
    pub storage: StorageMode,
    /// The cookie domain: `None` for `auto`.
    pub cookie_domain: Option<String>,
    /// The site's other domains (and their subdomains), whose links carry the journey.
    pub link_domains: Vec<String>,
    /// Consent before the site says anything (default granted).
    pub consent_default: bool,
    /// While consent is denied: hold events until granted (true, the default) or drop them.
    pub wait_for_consent: bool,
    /// Treat Global Privacy Control as a denial.
    pub honor_gpc: bool,
    /// Send a page view on load and on SPA navigations.
    pub auto_pageview: bool,
    /// Ask the collector to re-issue the cookie server-side (same-site collectors only).
    pub server_cookie: bool,
    /// Log decisions to the console.
    pub debug: bool,
    /// The session timeout, in milliseconds.
    pub session_timeout_ms: u64,
}

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

impl Config {
    /// The defaults for a site.
    pub fn new(site: &str) -> Config {
        Config {
            site: String::from(site),
            collector: String::new(),
            write_key: None,
            window_ms: 30 * DAY_MS,
            click_params: Vec::new(),
            storage: StorageMode::Both,
            cookie_domain: None,
            link_domains: Vec::new(),
            consent_default: true,
            wait_for_consent: true,
            honor_gpc: false,
            auto_pageview: true,
            server_cookie: false,
            debug: false,
            session_timeout_ms: super::id::SESSION_TIMEOUT_MS,
        }
    }

    /// The URL batches are POSTed to.
    pub fn events_url(&self) -> String {
        let mut u = String::from(self.collector.as_str());
        while u.ends_with('/') {
            u.pop();
        }
        u.push_str("/v1/events");
        u
    }

    /// Reads `init`'s argument. Unknown keys are refused so that a typo (`colector`) is reported
    /// instead of silently ignored.
    pub fn from_json(v: &Json) -> Result<Config, Invalid> {
        let members = v.as_obj().ok_or(bad("config", t::NOT_OBJECT))?;
        let site = match v.get("site") {
            Some(Json::Str(s)) if is_token(s, 64) => s.as_str(),
            _ => return Err(bad("site", t::SITE)),
        };
        let mut c = Config::new(site);
        for (key, val) in members {
            match key.as_str() {
                "site" => {}
                "collector" => {
                    let s = val.as_str().ok_or(bad("collector", t::COLLECTOR_STRING))?;
                    if !(s.is_empty() || s.starts_with("https://") || s.starts_with("http://") || s.starts_with('/'))
                        || s.len() > 512
                        || crate::core::has_control(s)
                        || s.bytes().any(|b| b == b' ')
                    {
                        return Err(bad("collector", t::COLLECTOR_URL));
                    }
                    c.collector = String::from(s);
                }
                "writeKey" => c.write_key = Some(String::from(token(val, "writeKey", 128)?)),
                "windowDays" => {
                    let d = val.as_u64().filter(|d| (1..=395).contains(d));
                    c.window_ms = d.ok_or(bad("windowDays", t::WINDOW_DAYS))? * DAY_MS;
                }
                "sessionTimeoutMinutes" => {
                    let m = val.as_u64().filter(|m| (1..=24 * 60).contains(m));
                    c.session_timeout_ms = m.ok_or(bad("sessionTimeoutMinutes", t::SESSION_TIMEOUT))? * 60_000;
                }
                "clickParams" => {
                    let m = val.as_obj().ok_or(bad("clickParams", t::CLICK_PARAMS))?;
                    if m.len() > 32 {
                        return Err(bad("clickParams", t::CLICK_PARAMS_MAX));
                    }
                    for (p, n) in m {
                        if !is_token(p, 64) {
                            return Err(bad("clickParams", t::PARAM_NAMES));
                        }
                        c.click_params
                            .push((p.clone(), String::from(token(n, "clickParams", 64)?)));
                    }
                }
                "storage" => {
                    c.storage = match val.as_str() {
                        Some("cookie+local") => StorageMode::Both,
                        Some("cookie") => StorageMode::Cookie,
                        Some("local") => StorageMode::Local,
                        Some("none") => StorageMode::None,
                        _ => return Err(bad("storage", t::STORAGE)),
                    }
                }
                "cookieDomain" => {
                    let s = val.as_str().ok_or(bad("cookieDomain", t::COOKIE_DOMAIN))?;
                    c.cookie_domain = if s == "auto" {
                        None
                    } else if is_domain(s) {
                        Some(String::from(
                            s.get(s.bytes().take_while(|&b| b == b'.').count()..).unwrap_or(""),
                        ))
                    } else {
                        return Err(bad("cookieDomain", t::COOKIE_DOMAIN));
                    };
                }
                "linkDomains" => {
                    let e = bad("linkDomains", t::LINK_DOMAINS);
                    for d in val.as_arr().filter(|l| l.len() <= 16).ok_or(e)? {
                        c.link_domains
                            .push(String::from(d.as_str().filter(|d| is_domain(d)).ok_or(e)?));
                    }
                }
                "consent" => {
                    c.consent_default = match val.as_str() {
                        Some("granted") => true,
                        Some("denied") => false,
                        _ => return Err(bad("consent", t::CONSENT_OPTION)),
                    }
                }
                "whileDenied" => {
                    c.wait_for_consent = match val.as_str() {
                        Some("wait") => true,
                        Some("drop") => false,
                        _ => return Err(bad("whileDenied", t::WHILE_DENIED)),
                    }
                }
                "honorGpc" => c.honor_gpc = flag(val, "honorGpc")?,
                "autoPageview" => c.auto_pageview = flag(val, "autoPageview")?,
                "serverCookie" => c.server_cookie = flag(val, "serverCookie")?,
                "debug" => c.debug = flag(val, "debug")?,
                _ => return Err(bad("config", t::UNKNOWN_OPTION)),
            }
        }
        Ok(c)
    }
}

const fn bad(field: &'static str, reason: &'static str) -> Invalid {
    Invalid { field, reason }
}

fn flag(v: &Json, field: &'static str) -> Result<bool, Invalid> {
    match v {
        Json::Bool(b) => Ok(*b),
        _ => Err(bad(field, t::FLAG)),
    }
}

/// A domain name as the options take it: letters, digits, `-` and `.`, at most 253 bytes.
fn is_domain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// True for 1..=max characters of letters, digits, `-`, `_` and `.`.
pub fn is_token(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn token<'a>(v: &'a Json, field: &'static str, max: usize) -> Result<&'a str, Invalid> {
    v.as_str().filter(|s| is_token(s, max)).ok_or(bad(field, t::TOKEN))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::json::parse;

    fn read(text: &str) -> Result<Config, &'static str> {
        Config::from_json(&parse(text).unwrap()).map_err(|e| e.field)
    }

    #[test]
    fn defaults_and_options() {
        let c = read(r#"{"site":"demo"}"#).unwrap();
        assert_eq!(c, Config::new("demo"));
        assert_eq!(c.window_ms, 30 * DAY_MS);
        assert_eq!(c.events_url(), "/v1/events");
        let c = read(
            r#"{"site":"shop-1","collector":"https://collect.shop.example/","writeKey":"k_123","windowDays":7,
                "clickParams":{"aff_id":"myprogram"},"storage":"local","cookieDomain":".shop.example",
                "consent":"denied","whileDenied":"drop","honorGpc":true,"autoPageview":false,"debug":true,
                "serverCookie":true,"sessionTimeoutMinutes":10}"#,
        )
        .unwrap();
        assert_eq!(c.events_url(), "https://collect.shop.example/v1/events");
        assert_eq!(c.window_ms, 7 * DAY_MS);
        assert_eq!(c.click_params, [("aff_id".into(), "myprogram".into())]);
        assert_eq!(c.storage, StorageMode::Local);
        assert_eq!(c.cookie_domain.as_deref(), Some("shop.example"));
        assert!(!c.consent_default && !c.wait_for_consent && c.honor_gpc && !c.auto_pageview && c.debug);
        assert_eq!(c.session_timeout_ms, 600_000);
    }

    #[test]
    fn bad_configs_name_the_field() {
        let cases = [
            ("[]", "config"),
            ("{}", "site"),
            (r#"{"site":""}"#, "site"),
            (r#"{"site":"<script>"}"#, "site"),
            (r#"{"site":"a","colector":"x"}"#, "config"),
            (r#"{"site":"a","collector":"javascript:alert(1)"}"#, "collector"),
            (r#"{"site":"a","collector":42}"#, "collector"),
            (r#"{"site":"a","windowDays":0}"#, "windowDays"),
            (r#"{"site":"a","windowDays":1000}"#, "windowDays"),
            (r#"{"site":"a","windowDays":"30"}"#, "windowDays"),
            (r#"{"site":"a","windowDays":1.5}"#, "windowDays"),
            (r#"{"site":"a","storage":"indexeddb"}"#, "storage"),
            (r#"{"site":"a","consent":"maybe"}"#, "consent"),
            (r#"{"site":"a","whileDenied":"queue"}"#, "whileDenied"),
            (r#"{"site":"a","debug":"yes"}"#, "debug"),
            (r#"{"site":"a","clickParams":{"a b":"x"}}"#, "clickParams"),
            (r#"{"site":"a","clickParams":["aff"]}"#, "clickParams"),
            (r#"{"site":"a","cookieDomain":"shop.example; secure"}"#, "cookieDomain"),
            (r#"{"site":"a","writeKey":"' OR 1=1 --"}"#, "writeKey"),
        ];
        for (text, field) in cases {
            assert_eq!(read(text), Err(field), "{text}");
        }
    }

    #[test]
    fn storage_degrades_to_the_next_mode() {
        use StorageMode::*;
        let cases = [
            (Both, false, false, Both),
            (Both, true, false, Local),
            (Both, false, true, Cookie),
            (Both, true, true, None),
            (Cookie, true, false, None),
            (Local, false, true, None),
            (Local, true, false, Local),
            (None, false, false, None),
        ];
        for (mode, c, l, want) in cases {
            assert_eq!(mode.without(c, l), want, "{mode:?} {c} {l}");
        }
    }
}
