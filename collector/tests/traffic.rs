//! Bot filtering through the HTTP API: batches classed by their user agent and the tag's
//! `webdriver` flag, stored either way, kept out of attribution and `GET /v1/conversions` by a
//! site's `[sites.traffic]` (bots and automation by default), shown with `traffic=all`,
//! counted in `/metrics`, and explained on the click debug API.

mod common;

use axum::http::StatusCode;
use common::*;
use utt::core::wire;
use utt_collector::config::Config;
use utt_collector::traffic::{Traffic, TrafficConfig};

const HEADLESS: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36";

/// The demo site (which counts automation, `exclude = ["bot"]`) and `shop`, the same site with
/// the default exclusions, as a production site has them.
fn harness() -> Harness {
    let mut config = Config::demo();
    let mut shop = config.sites[0].clone();
    shop.id = "shop".into();
    shop.traffic = TrafficConfig::default();
    config.sites.push(shop);
    Harness::with_config(config)
}

/// One visitor's landing on a click and its conversion, as one batch to `site` with the
/// webdriver flag.
fn journey_batch(site: &str, n: u64, webdriver: bool, click_id: &str) -> String {
    let visitor = format!("visitor-{n}");
    let clicks = || vec![click("irclickid", "impact", click_id, T0)];
    let events = [
        event(n, Some(&visitor), T0, clicks(), pageview()),
        event(
            n + 1,
            Some(&visitor),
            T0 + 1000,
            clicks(),
            conversion(&format!("O-{click_id}"), None),
        ),
    ];
    let refs: Vec<&str> = events.iter().map(String::as_str).collect();
    wire::write_batch(site, None, T0, webdriver, &refs)
}

/// POSTs a batch with a user agent (none when empty).
async fn post_as(h: &Harness, ua: &str, body: &str) -> Answer {
    let mut headers = vec![("content-type", "text/plain;charset=UTF-8")];
    if !ua.is_empty() {
        headers.push(("user-agent", ua));
    }
    h.send("POST", "/v1/events", &headers, body).await
}

/// [`journey_batch`], sent with a user agent: both events are stored, whatever their class.
async fn journey(h: &Harness, site: &str, n: u64, ua: &str, webdriver: bool, click_id: &str) {
    let a = post_as(h, ua, &journey_batch(site, n, webdriver, click_id)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.statuses(), ["accepted", "accepted"], "stored whatever its class");
}

/// Each traffic class's journey on a site: a human's, an automated browser's (the tag's flag),
/// a headless browser's (its user agent only), a crawler's and an HTTP library's.
async fn every_class(h: &Harness, site: &str) {
    journey(h, site, 100, BROWSER_UA, false, "C-HUMAN").await;
    journey(h, site, 200, BROWSER_UA, true, "C-WEBDRIVER").await;
    journey(h, site, 300, HEADLESS, false, "C-HEADLESS").await;
    journey(
        h,
        site,
        400,
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        false,
        "C-CRAWLER",
    )
    .await;
    journey(h, site, 500, "", false, "C-NOUA").await;
}

/// The order IDs, traffic classes and credited click IDs of a conversions answer (at equal
/// times, in order ID order).
fn listed(v: &serde_json::Value) -> Vec<(String, String, String)> {
    v["conversions"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|c| {
            (
                c["orderId"].as_str().unwrap().to_string(),
                c["traffic"].as_str().unwrap().to_string(),
                c["attribution"]["clickId"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect()
}

fn row(order: &str, traffic: &str, click: &str) -> (String, String, String) {
    (order.into(), traffic.into(), click.into())
}

#[tokio::test]
async fn flagged_conversions_are_stored_but_left_out_by_default_and_shown_with_traffic_all() {
    let h = harness();
    every_class(&h, "shop").await;
    assert_eq!(h.events(), 10, "every event is stored");
    // The default: bots and automation are out of the list and its totals.
    let (status, v) = h.get_json("/v1/conversions?site=shop").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(listed(&v), [row("O-C-HUMAN", "human", "C-HUMAN")]);
    assert_eq!(v["excluded"], serde_json::json!(["bot", "automation"]));
    assert_eq!(v["totals"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["conversions"][0]["touchpoints"][0]["traffic"], "human");
    // traffic=all: every conversion, each with its class, its touchpoints with theirs.
    let (_, v) = h.get_json("/v1/conversions?site=shop&traffic=all").await;
    assert_eq!(v["excluded"], serde_json::json!([]));
    assert_eq!(
        listed(&v),
        [
            row("O-C-CRAWLER", "bot", "C-CRAWLER"),
            row("O-C-HEADLESS", "automation", "C-HEADLESS"),
            row("O-C-HUMAN", "human", "C-HUMAN"),
            row("O-C-NOUA", "bot", "C-NOUA"),
            row("O-C-WEBDRIVER", "automation", "C-WEBDRIVER"),
        ]
    );
    for c in v["conversions"].as_array().unwrap() {
        assert_eq!(c["touchpoints"][0]["traffic"], c["traffic"], "{c}");
    }
    // A bad value is refused, not ignored.
    let (status, e) = h.get_json("/v1/conversions?site=shop&traffic=bots").await;
    assert_eq!(
        (status, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("traffic")),
        "{e}"
    );
}

#[tokio::test]
async fn a_site_that_counts_automation_credits_it_and_still_leaves_bots_out() {
    let h = harness();
    every_class(&h, "demo").await;
    let (_, v) = h.get_json("/v1/conversions?site=demo").await;
    assert_eq!(v["excluded"], serde_json::json!(["bot"]));
    assert_eq!(
        listed(&v),
        [
            row("O-C-HEADLESS", "automation", "C-HEADLESS"),
            row("O-C-HUMAN", "human", "C-HUMAN"),
            row("O-C-WEBDRIVER", "automation", "C-WEBDRIVER"),
        ]
    );
}

#[tokio::test]
async fn flagged_events_are_counted_in_metrics_by_class() {
    let h = harness();
    every_class(&h, "shop").await;
    // A retry of a flagged batch stores nothing new and counts nothing more.
    journey(&h, "shop", 900, BROWSER_UA, true, "C-AGAIN").await;
    let again = post_as(&h, BROWSER_UA, &journey_batch("shop", 900, true, "C-AGAIN")).await;
    assert_eq!(again.statuses(), ["duplicate", "duplicate"]);
    let a = h.send("GET", "/metrics", &[], "").await;
    for line in [
        "utt_flagged_events_total{class=\"automation\"} 6\n",
        "utt_flagged_events_total{class=\"bot\"} 4\n",
    ] {
        assert!(a.body.contains(line), "{line} in {}", a.body);
    }
}

#[tokio::test]
async fn the_click_api_shows_a_flagged_conversion_as_not_credited() {
    let h = harness();
    journey(&h, "shop", 200, BROWSER_UA, true, "C-WEBDRIVER").await;
    journey(&h, "demo", 600, BROWSER_UA, true, "C-DEMO").await;
    // Default site: the click converted, but the conversion was an automated browser's.
    let (status, v) = h.get_json("/v1/clicks/C-WEBDRIVER?site=shop").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["conversions"], serde_json::json!([]));
    let flagged = v["flagged"].as_array().unwrap();
    assert_eq!(flagged.len(), 1, "{v}");
    assert_eq!(
        (flagged[0]["traffic"].as_str(), flagged[0]["clickTraffic"].as_str()),
        (Some("automation"), Some("automation"))
    );
    assert_eq!(
        flagged[0]["orderId"], "O-C-WEBDRIVER",
        "the demo config has no read key"
    );
    // The click's own class, beside its times, and that this site excludes it.
    assert_eq!((&v["traffic"], &v["excluded"]), (&"automation".into(), &true.into()));
    // A site that counts automation: credited.
    let (_, v) = h.get_json("/v1/clicks/C-DEMO?site=demo").await;
    assert_eq!((&v["traffic"], &v["excluded"]), (&"automation".into(), &false.into()));
    assert_eq!(v["flagged"], serde_json::json!([]));
    assert_eq!(v["conversions"][0]["traffic"], "automation");
    assert_eq!(v["conversions"][0]["orderId"], "O-C-DEMO");
}

#[tokio::test]
async fn a_bad_webdriver_member_refuses_the_batch() {
    let h = harness();
    let e = event(1, Some("v"), T0, vec![], pageview());
    let body = wire::write_batch("shop", None, T0, true, &[&e]).replace("\"webdriver\":true", "\"webdriver\":\"yes\"");
    let a = h.post(&body).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(a.body.contains("\"field\":\"webdriver\""), "{}", a.body);
    assert_eq!(h.events(), 0);
}

#[test]
fn sites_choose_what_they_exclude() {
    let site = |extra: &str| format!("[[sites]]\nid = \"s\"\nallowed_origins = [\"https://s.example\"]\n{extra}");
    let c = Config::from_toml(&site("")).unwrap();
    assert_eq!(c.sites[0].traffic.exclude, [Traffic::Bot, Traffic::Automation]);
    let c = Config::from_toml(&site("[sites.traffic]\nexclude = [\"bot\"]\n")).unwrap();
    assert_eq!(c.sites[0].traffic.exclude, [Traffic::Bot]);
    let c = Config::from_toml(&site("[sites.traffic]\nexclude = []\n")).unwrap();
    assert!(c.sites[0].traffic.exclude.is_empty());
    for (bad, why) in [
        ("[sites.traffic]\nexclude = [\"human\"]\n", "not \"human\""),
        ("[sites.traffic]\nexclude = [\"robots\"]\n", "unknown variant"),
        ("[sites.traffic]\nexcluded = [\"bot\"]\n", "unknown field"),
    ] {
        let e = Config::from_toml(&site(bad)).unwrap_err().to_string();
        assert!(e.contains(why), "{bad}: {e}");
    }
    // The demo counts automation (its browser tests are automated) and keeps bots out.
    assert_eq!(Config::demo().sites[0].traffic.exclude, [Traffic::Bot]);
}

/// A click without orders still names its own class: a partner checking a link from an
/// automated browser or a crawler sees that the site excludes it before any order is placed.
#[tokio::test]
async fn the_click_api_names_a_clicks_class_without_orders() {
    let h = harness();
    let landing = |n: u64, webdriver: bool, click_id: &str, visitor: &str| {
        let e = event(
            n,
            Some(visitor),
            T0,
            vec![click("irclickid", "impact", click_id, T0)],
            pageview(),
        );
        wire::write_batch("shop", None, T0, webdriver, &[&e])
    };
    let crawler = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)";
    for (n, ua, webdriver, id) in [
        (1, BROWSER_UA, false, "L-HUMAN"),
        (2, BROWSER_UA, true, "L-WEBDRIVER"),
        (3, crawler, false, "L-CRAWLER"),
    ] {
        let a = post_as(&h, ua, &landing(n, webdriver, id, &format!("v{n}"))).await;
        assert_eq!(a.statuses(), ["accepted"], "{}", a.body);
    }
    for (id, class, excluded) in [
        ("L-HUMAN", "human", false),
        ("L-WEBDRIVER", "automation", true),
        ("L-CRAWLER", "bot", true),
    ] {
        let (status, v) = h.get_json(&format!("/v1/clicks/{id}?site=shop")).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(
            (&v["traffic"], &v["excluded"]),
            (&class.into(), &excluded.into()),
            "{id}: {v}"
        );
        assert_eq!(
            (&v["conversions"], &v["flagged"]),
            (&serde_json::json!([]), &serde_json::json!([]))
        );
    }
    // A human visitor opens the automated browser's link too: the click is human now (its best
    // sighting, the least class of its touches across visitors). Attribution still classes each
    // visitor's own touch: an order of the automated browser would stay flagged.
    let a = post_as(&h, BROWSER_UA, &landing(4, false, "L-WEBDRIVER", "v4")).await;
    assert_eq!(a.statuses(), ["accepted"], "{}", a.body);
    let (_, v) = h.get_json("/v1/clicks/L-WEBDRIVER?site=shop").await;
    assert_eq!((&v["traffic"], &v["excluded"]), (&"human".into(), &false.into()), "{v}");
    // Without a visitor ID (consent denied) a click leaves no touch: no class to name.
    let e = event(
        5,
        None,
        T0,
        vec![click("irclickid", "impact", "L-ANON", T0)],
        pageview(),
    );
    let a = post_as(&h, BROWSER_UA, &wire::write_batch("shop", None, T0, false, &[&e])).await;
    assert_eq!(a.statuses(), ["accepted"], "{}", a.body);
    let (status, v) = h.get_json("/v1/clicks/L-ANON?site=shop").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["traffic"], &v["excluded"], &v["pageViews"]),
        (&serde_json::Value::Null, &serde_json::Value::Null, &1.into())
    );
}
