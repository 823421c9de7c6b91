//! Bot filtering: the class of traffic each stored event belongs to, how a batch is classified
//! (its request's `User-Agent` and the tag's `webdriver` flag), and which classes a site
//! excludes from attribution and the read API (`[sites.traffic]`).
//!
//! A batch comes from one browser, so one class covers all its events. The class is stored with
//! the events, the conversions and the touches they derive, and is never recomputed: a stored
//! event keeps the class its request had.

use std::sync::LazyLock;

use serde::Deserialize;

/// The class of an event's traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Traffic {
    /// A browser that said nothing of automation, with a user agent not known as a bot.
    #[default]
    Human,
    /// A known bot, crawler or HTTP library by its user agent (or no user agent at all).
    Bot,
    /// A browser driven by automation: `navigator.webdriver` was true, or its user agent names a
    /// headless browser or an automation tool.
    Automation,
}

impl Traffic {
    /// Every class, in code order.
    pub const ALL: [Traffic; 3] = [Traffic::Human, Traffic::Bot, Traffic::Automation];

    /// The name the read API and the configuration use.
    pub fn as_str(self) -> &'static str {
        match self {
            Traffic::Human => "human",
            Traffic::Bot => "bot",
            Traffic::Automation => "automation",
        }
    }

    /// The small integer the stores keep (0 human, 1 bot, 2 automation).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The class of a stored code; an unknown code (a newer collector's) reads as automation,
    /// excluded by default, rather than as human.
    pub fn from_code(code: i64) -> Traffic {
        match code {
            0 => Traffic::Human,
            1 => Traffic::Bot,
            _ => Traffic::Automation,
        }
    }
}

/// A set of classes (a bit per [`Traffic::code`]): what a site excludes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exclude(u8);

impl Exclude {
    /// Nothing excluded (`&traffic=all`).
    pub const NONE: Exclude = Exclude(0);

    /// The default: bots and automation.
    pub const FLAGGED: Exclude = Exclude(0b110);

    /// The set of these classes.
    pub fn of(classes: &[Traffic]) -> Exclude {
        Exclude(classes.iter().fold(0, |m, t| m | 1 << t.code()))
    }

    /// Whether the set holds `t`.
    pub fn contains(self, t: Traffic) -> bool {
        self.0 & (1 << t.code()) != 0
    }

    /// The bit mask the stores' queries test (`(mask >> traffic) & 1`).
    pub fn mask(self) -> i64 {
        i64::from(self.0)
    }
}

/// A site's `[sites.traffic]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficConfig {
    /// The classes stored but kept out of attribution and the read API's default answers.
    #[serde(default = "default_exclude")]
    pub exclude: Vec<Traffic>,
}

fn default_exclude() -> Vec<Traffic> {
    vec![Traffic::Bot, Traffic::Automation]
}

impl Default for TrafficConfig {
    fn default() -> Self {
        TrafficConfig {
            exclude: default_exclude(),
        }
    }
}

impl TrafficConfig {
    /// The excluded classes as a set.
    pub fn excluded(&self) -> Exclude {
        Exclude::of(&self.exclude)
    }

    /// Refuses `human` in `exclude` (a site that counts nothing is a mistake, not a policy).
    pub fn check(&self, site: &str) -> Result<(), String> {
        if self.exclude.contains(&Traffic::Human) {
            return Err(format!(
                "config: site {site:?}: traffic.exclude may name \"bot\" and \"automation\", not \"human\""
            ));
        }
        Ok(())
    }
}

/// Substrings (lowercase) of user agents of headless browsers and automation tools: automation,
/// not bots, whatever the bot list says (isbot lists `headlesschrome` among its bots).
const AUTOMATION: &[&str] = &[
    "headless",
    "phantomjs",
    "slimerjs",
    "puppeteer",
    "playwright",
    "selenium",
    "webdriver",
    "cypress",
    "nightmare",
];

/// Substrings (lowercase) of bot user agents the crate's list lacks.
const MORE_BOTS: &[&str] = &[
    "undici",
    "node-fetch",
    "axios/",
    "got (https://",
    "httpie/",
    "reqwest/",
    "hyper/",
];

/// The bot list: the `isbot` crate's patterns (one regular expression over about 350 known
/// crawlers, monitors, preview fetchers and HTTP libraries), built once.
static BOTS: LazyLock<isbot::Bots> = LazyLock::new(isbot::Bots::default);

/// The class of a batch: `webdriver` is the tag's flag; `user_agent` the request's header.
pub fn classify(user_agent: Option<&str>, webdriver: bool) -> Traffic {
    if webdriver {
        return Traffic::Automation;
    }
    let ua = user_agent.unwrap_or("").trim();
    if ua.is_empty() {
        // Every browser sends one, with fetch and sendBeacon alike.
        return Traffic::Bot;
    }
    let lower = ua.to_ascii_lowercase();
    if AUTOMATION.iter().any(|p| lower.contains(p)) {
        Traffic::Automation
    } else if MORE_BOTS.iter().any(|p| lower.contains(p)) || BOTS.is_bot(&lower) {
        Traffic::Bot
    } else {
        Traffic::Human
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME: &str =
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
    const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    const SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
    const WEBKITGTK: &str =
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.0 Safari/605.1.15";
    const EDGE: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0";
    const ANDROID: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36";

    #[test]
    fn browsers_are_human_bots_and_libraries_are_bots_automation_is_automation() {
        let cases: &[(Option<&str>, bool, Traffic)] = &[
            (Some(CHROME), false, Traffic::Human),
            (Some(FIREFOX), false, Traffic::Human),
            (Some(SAFARI), false, Traffic::Human),
            (Some(WEBKITGTK), false, Traffic::Human),
            (Some(EDGE), false, Traffic::Human),
            (Some(ANDROID), false, Traffic::Human),
            // The tag's flag wins over any user agent.
            (Some(CHROME), true, Traffic::Automation),
            (Some(FIREFOX), true, Traffic::Automation),
            (Some("Googlebot/2.1 (+http://www.google.com/bot.html)"), true, Traffic::Automation),
            // Crawlers and previews.
            (Some("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"), false, Traffic::Bot),
            (Some("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"), false, Traffic::Bot),
            (Some("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"), false, Traffic::Bot),
            (Some("Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)"), false, Traffic::Bot),
            (Some("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"), false, Traffic::Bot),
            // HTTP libraries.
            (Some("curl/8.5.0"), false, Traffic::Bot),
            (Some("Wget/1.21.3"), false, Traffic::Bot),
            (Some("python-requests/2.32.3"), false, Traffic::Bot),
            (Some("Go-http-client/1.1"), false, Traffic::Bot),
            (Some("okhttp/4.12.0"), false, Traffic::Bot),
            (Some("axios/1.7.2"), false, Traffic::Bot),
            (Some("node-fetch/1.0 (+https://github.com/bitinn/node-fetch)"), false, Traffic::Bot),
            (Some("undici"), false, Traffic::Bot),
            (None, false, Traffic::Bot),
            (Some("  "), false, Traffic::Bot),
            // Headless browsers and automation tools (isbot calls HeadlessChrome a bot).
            (
                Some("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36"),
                false,
                Traffic::Automation,
            ),
            (Some("Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1"), false, Traffic::Automation),
        ];
        for (ua, webdriver, want) in cases {
            assert_eq!(classify(*ua, *webdriver), *want, "{ua:?} webdriver={webdriver}");
        }
    }

    #[test]
    fn codes_and_sets_round_trip() {
        for t in Traffic::ALL {
            assert_eq!(Traffic::from_code(i64::from(t.code())), t);
        }
        assert_eq!(Traffic::from_code(9), Traffic::Automation);
        let d = TrafficConfig::default().excluded();
        assert_eq!(d, Exclude::FLAGGED);
        assert!(!d.contains(Traffic::Human) && d.contains(Traffic::Bot) && d.contains(Traffic::Automation));
        let bots = Exclude::of(&[Traffic::Bot]);
        assert!(bots.contains(Traffic::Bot) && !bots.contains(Traffic::Automation));
        assert!(Traffic::ALL.iter().all(|t| !Exclude::NONE.contains(*t)));
        // The mask the queries test.
        for t in Traffic::ALL {
            assert_eq!((d.mask() >> t.code()) & 1 == 1, d.contains(t));
        }
    }
}
