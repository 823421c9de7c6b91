//! Attribution scenarios end to end: events in through `POST /v1/events`, credit out through
//! `GET /v1/conversions`, one table row per journey; each journey on both stores, SQLite and
//! PostgreSQL, which must credit alike.

mod common;

use common::*;
use utt::core::click::Click;
use utt::core::wire::Kind;

const EMAIL: &str = "86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d";
const OTHER_EMAIL: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Clone)]
struct Step {
    visitor: &'static str,
    at: u64,
    clicks: Vec<Click>,
    kind: Kind,
    url: &'static str,
}

fn step(visitor: &'static str, at: u64, clicks: Vec<Click>, kind: Kind) -> Step {
    landed(visitor, at, clicks, kind, "https://shop.example/product/42?x=1")
}

/// A step on a page `url` (a landing's carries its click and maybe a partner parameter).
fn landed(visitor: &'static str, at: u64, clicks: Vec<Click>, kind: Kind, url: &'static str) -> Step {
    Step {
        visitor,
        at,
        clicks,
        kind,
        url,
    }
}

fn impact(v: &str, at: u64) -> Click {
    click("irclickid", "impact", v, at)
}

fn google(v: &str, at: u64) -> Click {
    click("gclid", "google", v, at)
}

/// Runs the steps on a collector over SQLite and on one over PostgreSQL: both render the same.
async fn run(steps: Vec<Step>, model: &str) -> String {
    let sqlite = run_on(Harness::new(), steps.clone(), model).await;
    let postgres = run_on(Harness::postgres(), steps, model).await;
    assert_eq!(postgres, sqlite, "PostgreSQL credits otherwise than SQLite");
    sqlite
}

/// Sends each step as its own batch (arrival order = table order), then renders the credit of
/// every conversion as `order=model:who[(x)] [touchpoints] promo`.
async fn run_on(h: Harness, steps: Vec<Step>, model: &str) -> String {
    let v = send(&h, steps, model).await;
    let mut out = Vec::new();
    for c in v["conversions"].as_array().unwrap() {
        let a = &c["attribution"];
        let who = match a["model"].as_str() {
            None => "none".to_string(),
            Some("promo_code") => format!("promo_code:{}", a["partner"].as_str().unwrap()),
            Some(m) => format!(
                "{m}:{}:{}{}",
                a["network"].as_str().unwrap(),
                a["clickId"].as_str().unwrap(),
                if a["crossDevice"] == true { "(x)" } else { "" }
            ),
        };
        let tps = each(&c["touchpoints"], "clickId");
        let promo = match c["promo"]["partner"].as_str() {
            Some(p) => format!(" promo={p}"),
            None => String::new(),
        };
        out.push(format!(
            "{}={who} [{}]{promo}",
            c["orderId"].as_str().unwrap(),
            tps.join(",")
        ));
    }
    out.join("; ")
}

/// Sends each step as its own batch and answers the read API's conversions.
async fn send(h: &Harness, steps: Vec<Step>, model: &str) -> serde_json::Value {
    for (i, s) in steps.into_iter().enumerate() {
        let e = event_on(i as u64 + 1, Some(s.visitor), s.at, s.clicks, s.kind, s.url, "");
        let a = h.post(&batch(&[e])).await;
        assert_eq!(a.statuses(), ["accepted"], "step {i}");
    }
    h.get_json(&format!("/v1/conversions?site=demo&model={model}")).await.1
}

/// A partner as `id|name|via`, `-` for a null name, `none` for no partner.
fn partner_of(v: &serde_json::Value) -> String {
    match v["partner"].as_str() {
        None => "none".into(),
        Some(id) => format!(
            "{id}|{}|{}",
            v["partnerName"].as_str().unwrap_or("-"),
            v["partnerVia"].as_str().unwrap()
        ),
    }
}

/// Runs the steps on both stores and renders every conversion's credited partner and its
/// touchpoints' partners: `order=partner [touchpoint partners]`.
async fn partners(steps: Vec<Step>) -> String {
    let mut out = Vec::new();
    for h in [Harness::new(), Harness::postgres()] {
        let v = send(&h, steps.clone(), "last_click").await;
        let rows: Vec<String> = v["conversions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let tps: Vec<String> = c["touchpoints"].as_array().unwrap().iter().map(partner_of).collect();
                format!(
                    "{}={} [{}]",
                    c["orderId"].as_str().unwrap(),
                    partner_of(&c["attribution"]),
                    tps.join(",")
                )
            })
            .collect();
        out.push(rows.join("; "));
    }
    assert_eq!(out[1], out[0], "PostgreSQL names partners otherwise than SQLite");
    out.swap_remove(0)
}

fn with_utm(mut c: Click, source: &str) -> Click {
    c.utm = vec![("source".into(), source.into())];
    c
}

/// The demo's partners (`Config::demo`): impact's `irpid`, `impact:1001` is "demo-affiliate",
/// as is the UTM source `partner`; promo codes credit their owners.
#[tokio::test]
async fn partner_identities() {
    let cases: Vec<(&str, Vec<Step>, &str)> = vec![
        (
            "two clicks of the same affiliate are the same partner, found on the landing URL",
            vec![
                landed(
                    "v1",
                    T0 - 3 * DAY,
                    vec![impact("A1", T0 - 3 * DAY)],
                    pageview(),
                    "https://shop.example/?irclickid=A1&irpid=1001",
                ),
                step(
                    "v1",
                    T0 - 2 * DAY,
                    vec![impact("A1", T0 - 3 * DAY)],
                    conversion("O1", None),
                ),
                landed(
                    "v2",
                    T0 - DAY,
                    vec![impact("A2", T0 - DAY)],
                    pageview(),
                    "https://shop.example/p?IRPID=1001&irclickid=A2#top",
                ),
                step("v2", T0, vec![impact("A2", T0 - DAY)], conversion("O2", None)),
            ],
            "O1=demo-affiliate|Demo Affiliate|param [demo-affiliate|Demo Affiliate|param]; \
             O2=demo-affiliate|Demo Affiliate|param [demo-affiliate|Demo Affiliate|param]",
        ),
        (
            "an unmapped partner ID is its own partner, unnamed; the parameter beats the UTM source",
            vec![
                landed(
                    "v1",
                    T0 - DAY,
                    vec![with_utm(impact("B1", T0 - DAY), "partner")],
                    pageview(),
                    "https://shop.example/?irclickid=B1&irpid=77&utm_source=partner",
                ),
                step(
                    "v1",
                    T0,
                    vec![with_utm(impact("B1", T0 - DAY), "partner")],
                    conversion("O1", None),
                ),
            ],
            "O1=impact:77|-|param [impact:77|-|param]",
        ),
        (
            "a UTM source partner, from the click's UTM context when no landing URL carried it",
            vec![
                step(
                    "v1",
                    T0 - DAY,
                    vec![with_utm(google("G1", T0 - DAY), "Partner")],
                    pageview(),
                ),
                step(
                    "v1",
                    T0,
                    vec![with_utm(google("G1", T0 - DAY), "Partner")],
                    conversion("O1", None),
                ),
            ],
            "O1=demo-affiliate|Demo Affiliate|utm_source [demo-affiliate|Demo Affiliate|utm_source]",
        ),
        (
            "a promo-code partner, and an unmapped click beside a promo code",
            vec![
                step("v1", T0, vec![], conversion("O1", Some("spring10"))),
                landed(
                    "v2",
                    T0 - DAY,
                    vec![google("G2", T0 - DAY)],
                    pageview(),
                    "https://shop.example/?gclid=G2&utm_source=google",
                ),
                step(
                    "v2",
                    T0,
                    vec![google("G2", T0 - DAY)],
                    conversion("O2", Some("WELCOME5")),
                ),
            ],
            "O1=influencer-anna|Anna (influencer)|promo_code []; O2=none [none]",
        ),
        (
            "nothing maps: no partner",
            vec![
                landed(
                    "v1",
                    T0 - DAY,
                    vec![impact("N1", T0 - DAY)],
                    pageview(),
                    "https://shop.example/?irclickid=N1",
                ),
                step("v1", T0, vec![impact("N1", T0 - DAY)], conversion("O1", None)),
                step("v2", T0, vec![], conversion("O2", None)),
            ],
            "O1=none [none]; O2=none []",
        ),
    ];
    for (name, steps, want) in cases {
        assert_eq!(partners(steps).await, want, "{name}");
    }
}

#[tokio::test]
async fn scenarios() {
    let cases: Vec<(&str, Vec<Step>, &str, &str)> = vec![
        (
            "single click",
            vec![
                step("v1", T0 - DAY, vec![impact("I1", T0 - DAY)], pageview()),
                step("v1", T0, vec![impact("I1", T0 - DAY)], conversion("O1", None)),
            ],
            "last_click",
            "O1=last_click:impact:I1 [I1]",
        ),
        (
            "several partners: the last wins, all are kept",
            vec![
                step("v1", T0 - 5 * DAY, vec![google("G1", T0 - 5 * DAY)], pageview()),
                step(
                    "v1",
                    T0 - DAY,
                    vec![google("G1", T0 - 5 * DAY), impact("I1", T0 - DAY)],
                    pageview(),
                ),
                step(
                    "v1",
                    T0,
                    vec![google("G1", T0 - 5 * DAY), impact("I1", T0 - DAY)],
                    conversion("O1", None),
                ),
            ],
            "last_click",
            "O1=last_click:impact:I1 [G1,I1]",
        ),
        (
            "several partners, first click model",
            vec![
                step("v1", T0 - 5 * DAY, vec![google("G1", T0 - 5 * DAY)], pageview()),
                step(
                    "v1",
                    T0,
                    vec![google("G1", T0 - 5 * DAY), impact("I1", T0 - DAY)],
                    conversion("O1", None),
                ),
            ],
            "first_click",
            "O1=first_click:google:G1 [G1,I1]",
        ),
        (
            "click outside the 30-day window",
            vec![
                step("v1", T0 - 31 * DAY, vec![impact("OLD", T0 - 31 * DAY)], pageview()),
                step("v1", T0, vec![impact("OLD", T0 - 31 * DAY)], conversion("O1", None)),
            ],
            "last_click",
            "O1=none []",
        ),
        (
            "a click after the conversion does not count for it",
            vec![
                step("v1", T0, vec![], conversion("O1", None)),
                step("v1", T0 + DAY, vec![impact("LATE", T0 + DAY)], pageview()),
            ],
            "last_click",
            "O1=none []",
        ),
        (
            "promo code only (matched ignoring case)",
            vec![step("v1", T0, vec![], conversion("O1", Some("spring10")))],
            "last_click",
            "O1=promo_code:influencer-anna [] promo=influencer-anna",
        ),
        (
            "promo code beside a click: the click takes the credit, the promo is reported",
            vec![step(
                "v1",
                T0,
                vec![impact("I1", T0 - DAY)],
                conversion("O1", Some("WELCOME5")),
            )],
            "last_click",
            "O1=last_click:impact:I1 [I1] promo=newsletter-partner",
        ),
        (
            "unknown promo code",
            vec![step("v1", T0, vec![], conversion("O1", Some("NOPE")))],
            "last_click",
            "O1=none []",
        ),
        (
            "cross-device via email hash",
            vec![
                step("laptop", T0 - 2 * DAY, vec![impact("I1", T0 - 2 * DAY)], pageview()),
                step(
                    "laptop",
                    T0 - 2 * DAY + 1,
                    vec![impact("I1", T0 - 2 * DAY)],
                    identify(Some(EMAIL), None),
                ),
                step("phone", T0 - 1, vec![], identify(Some(EMAIL), None)),
                step("phone", T0, vec![], conversion("O1", None)),
            ],
            "last_click",
            "O1=last_click:impact:I1(x) [I1]",
        ),
        (
            "cross-device when the laptop's identify arrives after the conversion",
            vec![
                step("phone", T0 - 1, vec![], identify(None, Some("cust-7"))),
                step("phone", T0, vec![], conversion("O1", None)),
                step("laptop", T0 - 2 * DAY, vec![impact("I1", T0 - 2 * DAY)], pageview()),
                step(
                    "laptop",
                    T0 + DAY,
                    vec![impact("I1", T0 - 2 * DAY)],
                    identify(None, Some("cust-7")),
                ),
            ],
            "last_click",
            "O1=last_click:impact:I1(x) [I1]",
        ),
        (
            "different identities are not linked",
            vec![
                step(
                    "laptop",
                    T0 - 2 * DAY,
                    vec![impact("I1", T0 - 2 * DAY)],
                    identify(Some(OTHER_EMAIL), None),
                ),
                step("phone", T0 - 1, vec![], identify(Some(EMAIL), None)),
                step("phone", T0, vec![], conversion("O1", None)),
            ],
            "last_click",
            "O1=none []",
        ),
        (
            "the converting device's later click beats a linked device's earlier one",
            vec![
                step(
                    "laptop",
                    T0 - 2 * DAY,
                    vec![impact("I1", T0 - 2 * DAY)],
                    identify(Some(EMAIL), None),
                ),
                step(
                    "phone",
                    T0 - 3_600_000,
                    vec![google("G1", T0 - 3_600_000)],
                    identify(Some(EMAIL), None),
                ),
                step("phone", T0, vec![google("G1", T0 - 3_600_000)], conversion("O1", None)),
            ],
            "last_click",
            "O1=last_click:google:G1 [I1,G1]",
        ),
        (
            "two orders of one visitor are credited separately",
            vec![
                step("v1", T0 - DAY, vec![impact("I1", T0 - 2 * DAY)], conversion("O1", None)),
                step(
                    "v1",
                    T0,
                    vec![impact("I1", T0 - 2 * DAY), google("G1", T0 - 3_600_000)],
                    conversion("O2", None),
                ),
            ],
            "last_click",
            "O1=last_click:impact:I1 [I1]; O2=last_click:google:G1 [I1,G1]",
        ),
    ];
    for (name, steps, model, want) in cases {
        assert_eq!(run(steps, model).await, want, "{name}");
    }
}
