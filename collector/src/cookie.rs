//! The server-set cookie: checks the value the tag asks to re-issue and builds the
//! `Set-Cookie` line, choosing `Domain` so that `www.` and `collect.` of one site share it.

use std::net::IpAddr;

/// The only cookie name the endpoint sets.
pub const NAME: &str = "_utt";

/// The longest value accepted (browsers keep at least 4096 bytes per cookie, name included).
pub const MAX_VALUE: usize = 3800;

/// True for a value made only of cookie-safe characters, non-empty and bounded.
pub fn valid_value(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= MAX_VALUE
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'()*+-./:<=>?@[]^_`{|}~".contains(&b))
}

/// Suffixes under which anyone can register a name (a small part of the public suffix list:
/// the multi-label ones merchants meet most). A cookie for one of them is refused by browsers.
const PUBLIC_SUFFIXES: &[&str] = &[
    "co.uk",
    "org.uk",
    "ac.uk",
    "gov.uk",
    "me.uk",
    "com.au",
    "net.au",
    "org.au",
    "co.nz",
    "co.jp",
    "ne.jp",
    "com.br",
    "com.cn",
    "co.in",
    "co.za",
    "com.mx",
    "com.tr",
    "co.kr",
    "com.sg",
    "com.hk",
    "github.io",
    "vercel.app",
    "netlify.app",
    "herokuapp.com",
    "pages.dev",
    "workers.dev",
    "web.app",
    "firebaseapp.com",
    "azurewebsites.net",
    "cloudfront.net",
    "appspot.com",
    "fly.dev",
    "onrender.com",
    "glitch.me",
];

/// The host of an origin or URL (`https://www.shop.example:8443/x` → `www.shop.example`).
pub fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.starts_with('[') {
        return authority.split_once(']').map_or(authority, |(h, _)| &h[1..]);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

fn is_local(host: &str) -> bool {
    host.parse::<IpAddr>().is_ok() || host == "localhost" || host.ends_with(".localhost") || !host.contains('.')
}

/// The registrable domain of a host: one label under its public suffix (two labels, or three
/// under a known multi-label suffix). `None` for IPs, `localhost` and single labels.
pub fn registrable(host: &str) -> Option<String> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if is_local(&host) {
        return None;
    }
    let labels: Vec<&str> = host.split('.').collect();
    let last_two = labels[labels.len() - 2..].join(".");
    let take = if PUBLIC_SUFFIXES.contains(&last_two.as_str()) {
        3
    } else {
        2
    };
    if labels.len() < take {
        return None;
    }
    Some(labels[labels.len() - take..].join("."))
}

/// The `Domain` attribute for a cookie set by `collector_host` for a page of `origin_host`:
/// the origin's registrable domain when the collector is on it (itself or a subdomain),
/// otherwise none (a host-only cookie).
pub fn domain_for(origin_host: &str, collector_host: &str) -> Option<String> {
    let reg = registrable(origin_host)?;
    let collector = collector_host.trim_end_matches('.').to_ascii_lowercase();
    let on_it = collector == reg || collector.ends_with(&format!(".{reg}"));
    on_it.then_some(reg)
}

/// The `Set-Cookie` value.
pub fn set_cookie(value: &str, max_age: u64, secure: bool, domain: Option<&str>) -> String {
    let mut s = format!("{NAME}={value}; Path=/; Max-Age={max_age}; SameSite=Lax");
    if let Some(d) = domain {
        s.push_str("; Domain=");
        s.push_str(d);
    }
    if secure {
        s.push_str("; Secure");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        let cases = [
            ("v1.abc", true),
            ("a!#$%&'()*+-./:<=>?@[]^_`{|}~z", true),
            ("", false),
            ("has space", false),
            ("semi;colon", false),
            ("comma,", false),
            ("quote\"", false),
            ("back\\slash", false),
            ("é", false),
            ("new\nline", false),
        ];
        for (v, want) in cases {
            assert_eq!(valid_value(v), want, "{v:?}");
        }
        assert!(valid_value(&"a".repeat(MAX_VALUE)));
        assert!(!valid_value(&"a".repeat(MAX_VALUE + 1)));
    }

    #[test]
    fn hosts_and_domains() {
        let hosts = [
            ("https://www.shop.example:8443/x", "www.shop.example"),
            ("http://127.0.0.1:8080", "127.0.0.1"),
            ("http://[::1]:8080", "::1"),
            ("shop.example", "shop.example"),
        ];
        for (url, want) in hosts {
            assert_eq!(host_of(url), want);
        }
        // (origin host, collector host, Domain)
        let cases = [
            ("www.shop.example", "collect.shop.example", Some("shop.example")),
            ("shop.example", "collect.shop.example", Some("shop.example")),
            ("www.shop.example", "shop.example", Some("shop.example")),
            ("www.shop.co.uk", "collect.shop.co.uk", Some("shop.co.uk")),
            ("a.vercel.app", "b.vercel.app", None),
            ("www.shop.example", "collector.other.example", None),
            ("localhost", "localhost", None),
            ("127.0.0.1", "127.0.0.1", None),
            ("app.localhost", "api.localhost", None),
            ("co.uk", "x.co.uk", None),
        ];
        for (origin, collector, want) in cases {
            assert_eq!(domain_for(origin, collector).as_deref(), want, "{origin} / {collector}");
        }
    }

    #[test]
    fn set_cookie_line() {
        assert_eq!(
            set_cookie("v", 60, false, None),
            "_utt=v; Path=/; Max-Age=60; SameSite=Lax"
        );
        assert_eq!(
            set_cookie("v", 60, true, Some("shop.example")),
            "_utt=v; Path=/; Max-Age=60; SameSite=Lax; Domain=shop.example; Secure"
        );
    }
}
