//! `GET /v1/report` through the router, on both stores: clicks and conversions by partner
//! (the demo's partners: impact's `irpid`, a promo code, no partner), the server's amount and a
//! refund in gross, adjustments and net, days at an offset, the range's edges, the numbers
//! equal to `GET /v1/conversions`, and every refusal.

mod common;

use axum::http::StatusCode;
use common::*;
use utt::core::wire;
use utt_collector::config::Config;

const SERVER: &str = "server-secret-0123456789";
const READ: &str = "read-key-for-reports";

fn config() -> Config {
    let mut c = unlimited();
    let s = &mut c.sites[0];
    s.server_key = Some(SERVER.into());
    s.read_key = Some(READ.into());
    c
}

async fn get(h: &Harness, uri: &str, key: Option<&str>) -> (StatusCode, serde_json::Value) {
    let auth = key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let a = h.send("GET", uri, &headers, "").await;
    (
        a.status,
        serde_json::from_str(&a.body).unwrap_or(serde_json::Value::Null),
    )
}

async fn server(h: &Harness, path: &str, body: &str) {
    let auth = format!("Bearer {SERVER}");
    let a = h
        .send(
            "POST",
            path,
            &[("content-type", "application/json"), ("authorization", &auth)],
            body,
        )
        .await;
    assert_eq!(a.statuses(), ["accepted"], "{path} {body}");
}

fn impact(id: &str, at: u64) -> utt::core::click::Click {
    click("irclickid", "impact", id, at)
}

/// Seeds the journeys: T0 is 2025-11-26 09:40 UTC.
async fn seed(h: &Harness) {
    let landing = |n, v, at, c, url: &str| event_on(n, Some(v), at, vec![c], pageview(), url, "");
    let events = vec![
        // demo-affiliate: two clicks (one converts, O1), on two days.
        landing(
            1,
            "v1",
            T0 - 2 * DAY,
            impact("A1", T0 - 2 * DAY),
            "https://shop.example/?irclickid=A1&irpid=1001",
        ),
        event(
            2,
            Some("v1"),
            T0,
            vec![impact("A1", T0 - 2 * DAY)],
            conversion("O1", None),
        ),
        landing(
            3,
            "v2",
            T0 - DAY,
            impact("A2", T0 - DAY),
            "https://shop.example/?irclickid=A2&irpid=1001",
        ),
        // An unmapped partner ID: its own partner, a click without a conversion.
        landing(
            4,
            "v3",
            T0 - DAY,
            impact("B1", T0 - DAY),
            "https://shop.example/?irclickid=B1&irpid=77",
        ),
        // A click nobody maps (no partner), without a conversion.
        landing(
            5,
            "v4",
            T0 - DAY,
            click("gclid", "google", "G1", T0 - DAY),
            "https://shop.example/?gclid=G1",
        ),
        // A promo-code conversion (influencer-anna) and one credited to nobody.
        event(6, Some("v5"), T0 + 1000, vec![], conversion("O2", Some("spring10"))),
        event(7, Some("v6"), T0 + 2000, vec![], conversion("O3", None)),
        // Outside the range: a click and its conversion a month before.
        landing(
            8,
            "v7",
            T0 - 30 * DAY,
            impact("OLD", T0 - 30 * DAY),
            "https://shop.example/?irclickid=OLD&irpid=1001",
        ),
        event(
            9,
            Some("v7"),
            T0 - 29 * DAY,
            vec![impact("OLD", T0 - 30 * DAY)],
            conversion("O0", None),
        ),
    ];
    let a = h.post(&batch(&events)).await;
    assert!(a.statuses().iter().all(|s| s == "accepted"), "{}", a.body);
    // The merchant's server confirms O1 at 45.00 and refunds 10.00 of it.
    server(
        h,
        "/v1/conversions?site=demo",
        &format!(r#"{{"order":{{"orderId":"O1","amount":"45.00","currency":"EUR"}},"at":{T0}}}"#),
    )
    .await;
    server(
        h,
        "/v1/conversions/O1/adjustments?site=demo",
        r#"{"adjustmentId":"RF-1","type":"refund","amount":"10.00","reason":"returned"}"#,
    )
    .await;
}

/// A report row as `partner|name clicks conversions [currency conversions gross adj net]…`.
fn row(r: &serde_json::Value) -> String {
    let money: Vec<String> = r["money"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{} {} {} {} {}",
                m["currency"].as_str().unwrap_or("-"),
                m["conversions"],
                m["gross"].as_str().unwrap(),
                m["adjustments"].as_str().unwrap(),
                m["net"].as_str().unwrap()
            )
        })
        .collect();
    format!(
        "{}|{} {} {} [{}]",
        r["partner"].as_str().unwrap_or("none"),
        r["partnerName"].as_str().unwrap_or("-"),
        r["clicks"],
        r["conversions"],
        money.join("; ")
    )
}

fn rows(list: &serde_json::Value) -> Vec<String> {
    list.as_array().unwrap().iter().map(row).collect()
}

async fn scenario(h: Harness) {
    seed(&h).await;
    let uri = "/v1/report?site=demo&from=2025-11-20&to=2025-11-30";
    let (status, v) = get(&h, uri, Some(READ)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        (v["site"].as_str(), v["model"].as_str()),
        (Some("demo"), Some("last_click"))
    );
    assert_eq!(
        (v["from"].as_str(), v["to"].as_str()),
        (Some("2025-11-20"), Some("2025-11-30"))
    );
    assert_eq!(v["days"].as_array().unwrap().len(), 11);
    assert_eq!(v["fromMs"], 1_763_596_800_000u64);
    assert_eq!(v["toMs"], 1_763_596_800_000u64 + 11 * DAY);
    assert_eq!(
        rows(&v["partners"]),
        [
            "demo-affiliate|Demo Affiliate 2 1 [EUR 1 45.00 -10.00 35.00]",
            "influencer-anna|Anna (influencer) 0 1 [EUR 1 49.90 0.00 49.90]",
            "impact:77|- 1 0 []",
            "none|- 1 1 [EUR 1 49.90 0.00 49.90]",
        ]
    );
    assert_eq!(row(&v["totals"]), "none|- 4 3 [EUR 3 144.80 -10.00 134.80]");
    let series: Vec<String> = v["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{} {}", p["day"].as_str().unwrap(), row(p)))
        .collect();
    assert_eq!(
        series,
        [
            "2025-11-24 demo-affiliate|Demo Affiliate 1 0 []",
            "2025-11-25 demo-affiliate|Demo Affiliate 1 0 []",
            "2025-11-25 impact:77|- 1 0 []",
            "2025-11-25 none|- 1 0 []",
            "2025-11-26 demo-affiliate|Demo Affiliate 0 1 [EUR 1 45.00 -10.00 35.00]",
            "2025-11-26 influencer-anna|Anna (influencer) 0 1 [EUR 1 49.90 0.00 49.90]",
            "2025-11-26 none|- 0 1 [EUR 1 49.90 0.00 49.90]",
        ]
    );

    // The same numbers as the read API's conversions of the range.
    let (_, c) = get(&h, "/v1/conversions?site=demo&since=1763596800000", Some(READ)).await;
    let list = c["conversions"].as_array().unwrap();
    assert_eq!(each(&c["conversions"], "orderId"), ["O1", "O2", "O3"]);
    let nets: Vec<(&str, &str)> = list
        .iter()
        .map(|c| {
            (
                c["attribution"]["partner"].as_str().unwrap_or("none"),
                c["net"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        nets,
        [
            ("demo-affiliate", "35.00"),
            ("influencer-anna", "49.90"),
            ("none", "49.90")
        ]
    );

    // First click is the model asked for; with one click per visitor the credit is the same.
    let (_, f) = get(&h, &format!("{uri}&model=first_click"), Some(READ)).await;
    assert_eq!(f["model"], "first_click");
    assert_eq!(rows(&f["partners"]), rows(&v["partners"]));

    // Days at UTC-10:00: T0 (09:40 UTC) is the 25th there, and the range's edges move with it.
    let (_, o) = get(&h, &format!("{uri}&offset=-600"), Some(READ)).await;
    assert_eq!(o["offsetMinutes"], -600);
    assert_eq!(o["fromMs"], 1_763_596_800_000u64 + 10 * 3_600_000);
    let days: Vec<&str> = o["series"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["conversions"] != 0)
        .map(|p| p["day"].as_str().unwrap())
        .collect();
    assert_eq!(days, ["2025-11-25", "2025-11-25", "2025-11-25"]);

    // A range that ends the day before the conversions: only the clicks; the old month alone.
    let (_, before) = get(&h, "/v1/report?site=demo&from=2025-11-20&to=2025-11-25", Some(READ)).await;
    assert_eq!(row(&before["totals"]), "none|- 4 0 []");
    let (_, old) = get(&h, "/v1/report?site=demo&from=2025-10-27&to=2025-10-28", Some(READ)).await;
    assert_eq!(
        rows(&old["partners"]),
        ["demo-affiliate|Demo Affiliate 1 1 [EUR 1 49.90 0.00 49.90]"]
    );
    // Without from and to: the 30 days up to today by the collector's clock.
    let (status, d) = get(&h, "/v1/report?site=demo", Some(READ)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(d["days"].as_array().unwrap().len(), 30);

    // Refusals: status, field.
    let cases: Vec<(&str, Option<&str>, u16, &str)> = vec![
        ("/v1/report", Some(READ), 400, "site"),
        ("/v1/report?site=nope", Some(READ), 404, "site"),
        ("/v1/report?site=demo", None, 401, "authorization"),
        ("/v1/report?site=demo", Some("wrong-key"), 401, "authorization"),
        ("/v1/report?site=demo", Some(SERVER), 401, "authorization"),
        ("/v1/report?site=demo&from=2025-11-31", Some(READ), 400, "from"),
        ("/v1/report?site=demo&to=yesterday", Some(READ), 400, "to"),
        (
            "/v1/report?site=demo&from=2025-12-02&to=2025-12-01",
            Some(READ),
            400,
            "to",
        ),
        (
            "/v1/report?site=demo&from=2024-01-01&to=2025-12-01",
            Some(READ),
            400,
            "from",
        ),
        ("/v1/report?site=demo&offset=900", Some(READ), 400, "offset"),
        ("/v1/report?site=demo&model=linear", Some(READ), 400, "model"),
        ("/v1/report?site=demo&from=%ff", Some(READ), 400, "from"),
        ("/v1/report?site=demo&from=2025-%C3%A9-01", Some(READ), 400, "from"),
    ];
    for (uri, key, status, field) in cases {
        let (s, v) = get(&h, uri, key).await;
        assert_eq!(
            (s.as_u16(), v["field"].as_str().unwrap_or("")),
            (status, field),
            "{uri}: {v}"
        );
        assert!(v["error"].is_string(), "{uri}: {v}");
    }
}

#[tokio::test]
async fn report_by_partner_on_sqlite() {
    scenario(Harness::with_config(config())).await;
}

#[tokio::test]
async fn report_by_partner_on_postgres() {
    scenario(Harness::postgres_with(config())).await;
}

/// A site without a read key reports to anyone, as its conversions are read.
#[tokio::test]
async fn a_site_without_a_read_key_reports_to_anyone() {
    let h = Harness::new();
    let e = event(1, Some("v1"), T0, vec![], conversion("O1", Some("SPRING10")));
    assert_eq!(
        h.post(&wire::write_batch("demo", None, T0, false, &[&e]))
            .await
            .statuses(),
        ["accepted"]
    );
    let (status, v) = h.get_json("/v1/report?site=demo&from=2025-11-26&to=2025-11-26").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        rows(&v["partners"]),
        ["influencer-anna|Anna (influencer) 0 1 [EUR 1 49.90 0.00 49.90]"]
    );
}

/// A crawler's click and its conversion (a batch without a user agent: classed bot, which the
/// demo excludes) are stored but left out of every number, unless `traffic=all` asks for them.
#[tokio::test]
async fn a_bots_clicks_and_conversions_are_left_out() {
    let h = Harness::with_config(config());
    let human = event(1, Some("v1"), T0, vec![], conversion("O1", Some("SPRING10")));
    assert_eq!(
        h.post(&wire::write_batch("demo", None, T0, false, &[&human]))
            .await
            .statuses(),
        ["accepted"]
    );
    let landing = event_on(
        2,
        Some("bot"),
        T0 - DAY,
        vec![impact("BOT1", T0 - DAY)],
        pageview(),
        "https://shop.example/?irclickid=BOT1&irpid=1001",
        "",
    );
    let order = event(
        3,
        Some("bot"),
        T0,
        vec![impact("BOT1", T0 - DAY)],
        conversion("OB", None),
    );
    let a = h
        .send(
            "POST",
            "/v1/events",
            &[("content-type", "text/plain;charset=UTF-8")],
            &wire::write_batch("demo", None, T0, false, &[&landing, &order]),
        )
        .await;
    assert_eq!(a.statuses(), ["accepted", "accepted"]);
    let uri = "/v1/report?site=demo&from=2025-11-25&to=2025-11-26";
    let (status, v) = get(&h, uri, Some(READ)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        rows(&v["partners"]),
        ["influencer-anna|Anna (influencer) 0 1 [EUR 1 49.90 0.00 49.90]"]
    );
    let (status, v) = get(&h, &format!("{uri}&traffic=all"), Some(READ)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let all = rows(&v["partners"]);
    assert_eq!(
        all,
        [
            "demo-affiliate|Demo Affiliate 1 1 [EUR 1 49.90 0.00 49.90]",
            "influencer-anna|Anna (influencer) 0 1 [EUR 1 49.90 0.00 49.90]"
        ]
    );
    let (status, v) = get(&h, &format!("{uri}&traffic=bots"), Some(READ)).await;
    assert_eq!((status, &v["field"]), (StatusCode::BAD_REQUEST, &"traffic".into()));
}
