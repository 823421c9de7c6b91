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
}

fn step(visitor: &'static str, at: u64, clicks: Vec<Click>, kind: Kind) -> Step {
    Step {
        visitor,
        at,
        clicks,
        kind,
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
    for (i, s) in steps.into_iter().enumerate() {
        let e = event(i as u64 + 1, Some(s.visitor), s.at, s.clicks, s.kind);
        let a = h.post(&batch(&[e])).await;
        assert_eq!(a.statuses(), ["accepted"], "step {i}");
    }
    let (_, v) = h.get_json(&format!("/v1/conversions?site=demo&model={model}")).await;
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
