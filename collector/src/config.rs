//! The collector's configuration: the sites it accepts events for, their origins, keys,
//! attribution windows and promo codes, read from TOML or taken from the demo defaults.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The collector's public URL (e.g. `https://collect.shop.example`), when it sits behind a proxy.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Trust `X-Forwarded-For` and `X-Forwarded-Proto` (only behind a proxy that sets them).
    #[serde(default)]
    pub trust_forwarded: bool,
    /// The per-client-IP rate limit.
    #[serde(default)]
    pub rate_limit: RateLimit,
    /// Connection timeouts, the connection cap and the drain at shutdown.
    #[serde(default)]
    pub server: Server,
    /// The partner postbacks' retry policy and sender limits (`[postbacks]`).
    #[serde(default)]
    pub postbacks: crate::postbacks::Policy,
    /// The sites this collector accepts events for.
    pub sites: Vec<Site>,
}

/// A token bucket per client IP: `per_second` (plus `per_minute`) tokens refilled, at most
/// `burst` saved.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests per second sustained; 0 (with `per_minute` 0) turns the limit off.
    pub per_second: u32,
    /// Requests per minute sustained, added to `per_second`: for rates below one a second.
    #[serde(default)]
    pub per_minute: u32,
    /// Requests allowed in a burst.
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        // A busy tab sends a batch every few seconds; 50/s leaves room for many visitors behind
        // one NAT while still stopping a runaway client.
        RateLimit {
            per_second: 50,
            per_minute: 0,
            burst: 200,
        }
    }
}

/// How connections are served (`[server]`): every field has a default, so the section and each
/// key are optional.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// A connection must have sent a whole request head within this time of being opened or of
    /// its previous answer, or it is closed: silent connections, partial heads, and keep-alive
    /// connections left idle (hyper times the idle wait and the head as one).
    pub header_timeout_ms: u64,
    /// A request's body must have arrived within this time of its head, or it is answered 408.
    pub body_timeout_ms: u64,
    /// Connections served at once; more wait in the listen backlog until one closes. Lowered
    /// at start if the open-file limit cannot hold them.
    pub max_connections: usize,
    /// After SIGTERM or Ctrl-C, requests in flight have this long to finish; connections still
    /// open then are closed. What was acknowledged is committed either way.
    pub drain_timeout_ms: u64,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            max_connections: 4096,
            drain_timeout_ms: 10_000,
        }
    }
}

impl Server {
    fn check(&self) -> Result<(), ConfigError> {
        let hour = 3_600_000;
        let ms = [
            ("header_timeout_ms", self.header_timeout_ms),
            ("body_timeout_ms", self.body_timeout_ms),
            ("drain_timeout_ms", self.drain_timeout_ms),
        ];
        for (key, value) in ms {
            if value == 0 || value > hour {
                return Err(ConfigError(format!(
                    "config: server.{key} must be 1..={hour} (milliseconds), not {value}"
                )));
            }
        }
        if self.max_connections == 0 || self.max_connections > 1_000_000 {
            return Err(ConfigError(format!(
                "config: server.max_connections must be 1..=1000000, not {}",
                self.max_connections
            )));
        }
        Ok(())
    }
}

/// One site (one merchant property).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// The site ID the tag sends in every batch.
    pub id: String,
    /// Origins allowed to send events (`https://shop.example`, or `http://localhost:*` for any port).
    pub allowed_origins: Vec<String>,
    /// The write key batches must carry, if any.
    #[serde(default)]
    pub write_key: Option<String>,
    /// The bearer token the read API requires for this site, if any.
    #[serde(default)]
    pub read_key: Option<String>,
    /// The bearer token the merchant's server sends to report and adjust orders
    /// (`POST /v1/conversions`); without it those endpoints are off for the site.
    #[serde(default)]
    pub server_key: Option<String>,
    /// The attribution window in days.
    #[serde(default = "default_window_days")]
    pub window_days: u32,
    /// The cookie `Domain` the cookie endpoint sets, overriding the automatic choice.
    #[serde(default)]
    pub cookie_domain: Option<String>,
    /// Promo codes and the partner each one credits (matched case-insensitively).
    #[serde(default)]
    pub promo_codes: BTreeMap<String, String>,
    /// Who drove a click: partner parameters, click IDs and UTM sources mapped to partners
    /// (`[sites.partners]`, see docs/collector.md).
    #[serde(default)]
    pub partners: crate::partners::Partners,
    /// Which traffic classes are stored but excluded from attribution and the read API
    /// (`[sites.traffic]`, default `exclude = ["bot", "automation"]`; see `crate::traffic`).
    #[serde(default)]
    pub traffic: crate::traffic::TrafficConfig,
    /// Partners' postback URLs (`[[sites.postbacks]]`, see docs/collector.md).
    #[serde(default)]
    pub postbacks: Vec<crate::postbacks::Endpoint>,
}

/// The demo's partners: impact's partner ID parameter, one named affiliate, and the demo
/// links' UTM source.
fn demo_partners() -> crate::partners::Partners {
    let pairs = |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    crate::partners::Partners {
        params: pairs(&[("impact", "irpid")]),
        ids: pairs(&[("impact:1001", "demo-affiliate")]),
        utm_sources: pairs(&[("partner", "demo-affiliate")]),
        names: pairs(&[
            ("demo-affiliate", "Demo Affiliate"),
            ("influencer-anna", "Anna (influencer)"),
        ]),
        ..Default::default()
    }
}

fn default_window_days() -> u32 {
    30
}

/// Why a configuration was refused.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// The built-in configuration: the demo site on any local port.
    pub fn demo() -> Config {
        Config {
            public_url: None,
            trust_forwarded: false,
            rate_limit: RateLimit::default(),
            server: Server::default(),
            postbacks: crate::postbacks::Policy::default(),
            sites: vec![Site {
                id: "demo".into(),
                allowed_origins: vec!["http://127.0.0.1:*".into(), "http://localhost:*".into()],
                write_key: None,
                read_key: None,
                server_key: None,
                window_days: 30,
                cookie_domain: None,
                promo_codes: [("SPRING10", "influencer-anna"), ("WELCOME5", "newsletter-partner")]
                    .into_iter()
                    .map(|(c, p)| (c.to_string(), p.to_string()))
                    .collect(),
                partners: demo_partners(),
                // The demo and its browser tests run in automated browsers: the demo site
                // counts automation (a staging site's choice), and keeps bots out.
                traffic: crate::traffic::TrafficConfig {
                    exclude: vec![crate::traffic::Traffic::Bot],
                },
                postbacks: Vec::new(),
            }],
        }
    }

    /// Parses and checks a TOML configuration.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError(format!("config: {e}")))?;
        config.check()?;
        Ok(config)
    }

    /// Checks what serde cannot: unique, well-formed site IDs and origin patterns.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.sites.is_empty() {
            return Err(ConfigError("config: at least one site is required".into()));
        }
        self.server.check()?;
        self.postbacks.check().map_err(ConfigError)?;
        for (i, s) in self.sites.iter().enumerate() {
            let ok_id = !s.id.is_empty()
                && s.id.len() <= 128
                && s.id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !ok_id {
                return Err(ConfigError(format!(
                    "config: site id {:?} must be letters, digits, '-', '_' or '.'",
                    s.id
                )));
            }
            if self.sites[..i].iter().any(|o| o.id == s.id) {
                return Err(ConfigError(format!("config: site id {:?} appears twice", s.id)));
            }
            for o in &s.allowed_origins {
                if !valid_origin_pattern(o) {
                    return Err(ConfigError(format!(
                        "config: site {:?}: origin {o:?} must look like https://host or http://host:*",
                        s.id
                    )));
                }
            }
            s.partners.check(&s.id, &s.promo_codes).map_err(ConfigError)?;
            s.traffic.check(&s.id).map_err(ConfigError)?;
            crate::postbacks::check(s).map_err(ConfigError)?;
            if let Some(k) = &s.server_key {
                if k.len() < 16 || !k.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(ConfigError(format!(
                        "config: site {:?}: server_key must be at least 16 visible ASCII characters",
                        s.id
                    )));
                }
                if s.write_key.as_ref() == Some(k) || s.read_key.as_ref() == Some(k) {
                    return Err(ConfigError(format!(
                        "config: site {:?}: server_key must differ from write_key and read_key (the write key is in every page)",
                        s.id
                    )));
                }
            }
            if s.window_days == 0 || s.window_days > 3650 {
                return Err(ConfigError(format!(
                    "config: site {:?}: window_days must be 1..=3650",
                    s.id
                )));
            }
        }
        Ok(())
    }

    /// The site with this ID.
    pub fn site(&self, id: &str) -> Option<&Site> {
        self.sites.iter().find(|s| s.id == id)
    }

    /// True when any site allows this origin (used before the site is known: preflights, bad envelopes).
    pub fn any_allows(&self, origin: &str) -> bool {
        self.sites.iter().any(|s| s.allows(origin))
    }

    /// True when the collector is reached over https according to its public URL.
    pub fn public_https(&self) -> bool {
        self.public_url.as_deref().is_some_and(|u| u.starts_with("https://"))
    }
}

impl Site {
    /// True when `origin` (an `Origin` header value) matches one of the allowed patterns.
    pub fn allows(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|p| origin_matches(p, origin))
    }

    /// The attribution window in milliseconds.
    pub fn window_ms(&self) -> u64 {
        u64::from(self.window_days) * 86_400_000
    }

    /// The postback registered for a partner, if any.
    pub fn postback(&self, partner: &str) -> Option<&crate::postbacks::Endpoint> {
        self.postbacks.iter().find(|e| e.partner == partner)
    }

    /// The partner a promo code credits: codes match ignoring ASCII case and surrounding spaces.
    pub fn promo_partner(&self, code: &str) -> Option<&str> {
        let code = code.trim();
        self.promo_codes
            .iter()
            .find(|(c, _)| c.eq_ignore_ascii_case(code))
            .map(|(_, p)| p.as_str())
    }
}

fn valid_origin_pattern(p: &str) -> bool {
    let Some(rest) = p.strip_prefix("https://").or_else(|| p.strip_prefix("http://")) else {
        return false;
    };
    let host = rest.strip_suffix(":*").unwrap_or(rest);
    !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
}

/// Matches an origin against a pattern: exact, or with a trailing `:*` that stands for any port
/// (including none, the scheme's default).
pub fn origin_matches(pattern: &str, origin: &str) -> bool {
    match pattern.strip_suffix(":*") {
        None => pattern == origin,
        Some(base) => match origin.strip_prefix(base) {
            Some("") => true,
            Some(port) => port
                .strip_prefix(':')
                .is_some_and(|d| !d.is_empty() && d.len() <= 5 && d.bytes().all(|b| b.is_ascii_digit())),
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_patterns() {
        let cases = [
            ("http://localhost:*", "http://localhost:8080", true),
            ("http://localhost:*", "http://localhost", true),
            ("http://localhost:*", "http://localhost.evil.example", false),
            ("http://localhost:*", "http://localhost:80x", false),
            ("http://localhost:*", "https://localhost:8080", false),
            ("http://127.0.0.1:*", "http://127.0.0.1:5173", true),
            ("http://127.0.0.1:*", "http://127.0.0.10:5173", false),
            ("https://shop.example", "https://shop.example", true),
            ("https://shop.example", "https://shop.example:444", false),
            ("https://shop.example", "https://www.shop.example", false),
            ("https://shop.example", "null", false),
        ];
        for (pattern, origin, want) in cases {
            assert_eq!(origin_matches(pattern, origin), want, "{pattern} vs {origin}");
        }
    }

    #[test]
    fn toml_config_is_checked() {
        let good = r#"
            [[sites]]
            id = "shop"
            allowed_origins = ["https://shop.example"]
            write_key = "k1"
            [sites.promo_codes]
            SPRING10 = "anna"
            [sites.partners]
            params = { impact = "irpid" }
            [sites.partners.ids]
            "impact:12345" = "anna"
        "#;
        let c = Config::from_toml(good).unwrap();
        let s = c.site("shop").unwrap();
        assert_eq!(s.window_days, 30);
        assert_eq!(s.promo_partner(" spring10 "), Some("anna"));
        assert_eq!(s.partners.ids.get("impact:12345").map(String::as_str), Some("anna"));
        assert_eq!(c.rate_limit, RateLimit::default());
        assert_eq!(c.server, Server::default());
        let c = Config::from_toml(&format!("[server]\nbody_timeout_ms = 500\n{good}")).unwrap();
        assert_eq!(
            c.server,
            Server {
                body_timeout_ms: 500,
                ..Server::default()
            }
        );

        let bad = [
            ("sites = []", "at least one site"),
            ("[[sites]]\nid = \"a b\"\nallowed_origins = []", "must be letters"),
            (
                "[[sites]]\nid = \"a\"\nallowed_origins = [\"shop.example\"]",
                "must look like",
            ),
            (
                "[[sites]]\nid = \"a\"\nallowed_origins = []\nwindow_days = 0",
                "window_days",
            ),
            (
                "[[sites]]\nid = \"a\"\nallowed_origins = []\n[[sites]]\nid = \"a\"\nallowed_origins = []",
                "twice",
            ),
            (
                "[[sites]]\nid = \"a\"\nallowed_origins = []\nwrite_kee = \"x\"",
                "unknown field",
            ),
            (
                "[[sites]]\nid = \"a\"\nallowed_origins = []\nserver_key = \"short\"",
                "server_key must be at least 16",
            ),
            (
                "[[sites]]\nid = \"a\"\nallowed_origins = []\nwrite_key = \"0123456789abcdef\"\nserver_key = \"0123456789abcdef\"",
                "server_key must differ",
            ),
            (
                "[server]\nheader_timeout_ms = 0\n[[sites]]\nid = \"a\"\nallowed_origins = []",
                "server.header_timeout_ms must be 1..=3600000",
            ),
            (
                "[server]\nmax_connections = 0\n[[sites]]\nid = \"a\"\nallowed_origins = []",
                "server.max_connections must be",
            ),
            (
                "[[sites]]\nid = \"a\"\nallowed_origins = []\n[sites.partners.ids]\n\"1\" = \"x\"",
                "config: site \"a\": partners.ids key \"1\" must be",
            ),
            (
                "[[sites]]\nid = \"a\"\nallowed_origins = []\n[sites.partners]\nutm_source = { x = \"y\" }",
                "unknown field `utm_source`",
            ),
            (
                "[server]\nheader_timeout = 5\n[[sites]]\nid = \"a\"\nallowed_origins = []",
                "unknown field",
            ),
            (
                "[server]\ndrain_timeout_ms = -1\n[[sites]]\nid = \"a\"\nallowed_origins = []",
                "drain_timeout_ms",
            ),
        ];
        for (text, want) in bad {
            let err = Config::from_toml(text).unwrap_err().0;
            assert!(err.contains(want), "{text:?} gave {err:?}");
        }
    }

    #[test]
    fn postbacks_are_checked() {
        let site = |postbacks: &str| {
            format!(
                "[[sites]]\nid = \"shop\"\nallowed_origins = []\n[sites.promo_codes]\nX = \"anna\"\n\
                 [sites.partners]\nparams = {{ impact = \"irpid\" }}\n{postbacks}"
            )
        };
        let one = |partner: &str, url: &str, secret: &str, extra: &str| {
            format!("[[sites.postbacks]]\npartner = \"{partner}\"\nurl = \"{url}\"\nsecret = \"{secret}\"\n{extra}")
        };
        let secret = "0123456789abcdef";
        let good = site(&one("anna", "https://p.example/pb?o={orderId}&a={amount}", secret, ""));
        let c = Config::from_toml(&format!("[postbacks]\ntimeout_ms = 500\n{good}")).unwrap();
        let s = c.site("shop").unwrap();
        assert_eq!(s.postback("anna").unwrap().on, ["conversion", "adjustment"]);
        assert!(s.postback("bob").is_none());
        assert_eq!(c.postbacks.timeout_ms, 500);
        assert_eq!(c.postbacks.give_up_after_ms, 72 * 3_600_000);
        // An unmapped partner parameter's identity is a partner too.
        Config::from_toml(&site(&one("impact:42", "http://10.0.0.1:8080/x", secret, ""))).unwrap();

        let bad = [
            (
                site(&one("anna", "https://p.example/?o={order}", secret, "")),
                "config: site \"shop\": postbacks[0].url has an unknown placeholder {order}",
            ),
            (
                site(&one("anna", "https://p.example/?o={orderId", secret, "")),
                "postbacks[0].url has a '{'",
            ),
            (
                site(&one("anna", "ftp://p.example/", secret, "")),
                "postbacks[0].url must be an http:// or https://",
            ),
            (
                site(&one("anna", "https:///nohost", secret, "")),
                "postbacks[0].url must be",
            ),
            (
                site(&one("anna", "https://p.example/", "short", "")),
                "postbacks[0].secret must be at least 16",
            ),
            (
                site(&one("bob", "https://p.example/", secret, "")),
                "postbacks[0].partner \"bob\" is a partner no mapping",
            ),
            (
                site(&one("awin:1", "https://p.example/", secret, "")),
                "postbacks[0].partner \"awin:1\"",
            ),
            (
                site(&one("anna", "https://p.example/", secret, "on = [\"refund\"]")),
                "postbacks[0].on must list",
            ),
            (
                site(&one("anna", "https://p.example/", secret, "on = []")),
                "postbacks[0].on must list",
            ),
            (
                site(&format!(
                    "{}{}",
                    one("anna", "https://p.example/", secret, ""),
                    one("anna", "https://q.example/", secret, "")
                )),
                "postbacks[1].partner \"anna\" has two postbacks",
            ),
            (
                site(&one("anna", "https://p.example/", secret, "secrett = \"x\"")),
                "unknown field `secrett`",
            ),
            (
                format!("[postbacks]\ngive_up_after_ms = 0\n{good}"),
                "postbacks.give_up_after_ms must be",
            ),
            (
                format!("[postbacks]\ninitial_backoff_ms = 5000\nmax_backoff_ms = 1000\n{good}"),
                "initial_backoff_ms must not exceed",
            ),
            (
                format!("[postbacks]\nmax_in_flight = 0\n{good}"),
                "postbacks.max_in_flight must be",
            ),
            (format!("[postbacks]\nretries = 3\n{good}"), "unknown field `retries`"),
        ];
        for (text, want) in bad {
            let err = Config::from_toml(&text).unwrap_err().0;
            assert!(err.contains(want), "{text:?} gave {err:?}");
        }
        // A click ID must not choose the host (or port, or user) a signed postback goes to.
        for url in [
            "https://api.p.example{clickId}/pb",
            "https://{network}:{orderId}@p.example/",
            "https://p.example:{amount}",
        ] {
            let err = Config::from_toml(&site(&one("anna", url, secret, ""))).unwrap_err().0;
            let want = "config: site \"shop\": postbacks[0].url must not have a placeholder before its path";
            assert!(err.starts_with(want), "{url} gave {err:?}");
        }
    }

    #[test]
    fn demo_defaults() {
        let c = Config::demo();
        c.check().unwrap();
        let s = c.site("demo").unwrap();
        assert!(s.allows("http://127.0.0.1:41234"));
        assert!(s.allows("http://localhost:3000"));
        assert!(!s.allows("https://evil.example"));
        assert_eq!(s.promo_partner("WELCOME5"), Some("newsletter-partner"));
        assert_eq!(s.window_ms(), 30 * 86_400_000);
    }
}
