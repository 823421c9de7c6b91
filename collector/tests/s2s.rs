//! Server-to-server conversions and adjustments through HTTP, on both stores: the dedupe with
//! browser conversions in both arrival orders, the `_utt` cookie's clicks credited, refunds and
//! corrections in the read API's gross and net, and every refusal.

mod common;

use axum::http::StatusCode;
use common::*;
use utt::core::record::{self, Record};
use utt::core::wire;
use utt_collector::config::Config;

const SERVER: &str = "server-secret-0123456789";
const WRITE: &str = "browser-write-key";
const READ: &str = "read-key-for-reports";

fn config() -> Config {
    let mut c = unlimited();
    let s = &mut c.sites[0];
    s.server_key = Some(SERVER.into());
    s.write_key = Some(WRITE.into());
    s.read_key = Some(READ.into());
    c
}

async fn browser(h: &Harness, events: &[String]) -> Answer {
    let refs: Vec<&str> = events.iter().map(String::as_str).collect();
    h.post(&wire::write_batch("demo", Some(WRITE), T0, false, &refs)).await
}

async fn server(h: &Harness, path: &str, key: &str, body: &str) -> Answer {
    h.post_json(path, key, body).await
}

/// The `_utt` cookie of a visitor carrying one click, as the tag writes it.
fn cookie(visitor: &str, click_id: &str, at: u64) -> String {
    record::encode(&Record {
        visitor: visitor_id(visitor),
        session: visitor_id(visitor),
        last_seen: at,
        clicks: vec![click("irclickid", "impact", click_id, at)],
        written: at,
    })
}

fn error(a: &Answer) -> (u16, String, String) {
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    (
        a.status.as_u16(),
        v["field"].as_str().unwrap_or("").to_string(),
        v["error"].as_str().unwrap_or("").to_string(),
    )
}

/// A refused request: path, key, body, and the status and field of the answer.
type Refusal<'a> = (&'a str, Option<&'a str>, String, (u16, &'a str));

async fn scenario(h: Harness) {
    let conv = "/v1/conversions?site=demo";
    // A: the browser first (49.90, credited to I1), then the server (45.00).
    let a = browser(
        &h,
        &[event(
            1,
            Some("anna"),
            T0,
            vec![click("irclickid", "impact", "I1", T0 - DAY)],
            conversion("A", None),
        )],
    )
    .await;
    assert_eq!(a.statuses(), ["accepted"]);
    let body_a = format!(
        r#"{{"order":{{"orderId":"A","amount":"45.00","currency":"EUR"}},"at":{},"cookie":"{}"}}"#,
        T0 + 1000,
        cookie("anna", "I1", T0 - DAY)
    );
    let a = server(&h, conv, SERVER, &body_a).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (StatusCode::OK, r#"{"results":[{"id":"A","status":"accepted"}]}"#)
    );
    // A resend is a duplicate, and changes nothing.
    let a = server(&h, conv, SERVER, &body_a.replace("45.00", "1.00")).await;
    assert_eq!(a.statuses(), ["duplicate"]);

    // B: the server first (100.00, with the click ID it kept), then the browser (49.90).
    let body_b = format!(
        r#"{{"order":{{"orderId":"B","amount":"100.00","currency":"EUR"}},"at":{},"click":{{"clickId":"S2","param":"irclickid","at":{}}}}}"#,
        T0 + 2000,
        T0 - 2 * DAY
    );
    assert_eq!(server(&h, conv, SERVER, &body_b).await.statuses(), ["accepted"]);
    let a = browser(&h, &[event(2, Some("bob"), T0 + 2000, vec![], conversion("B", None))]).await;
    assert_eq!(a.statuses(), ["accepted"]);
    // The browser's resend is a duplicate too.
    let a = browser(&h, &[event(3, Some("bob"), T0 + 2000, vec![], conversion("B", None))]).await;
    assert_eq!(a.statuses(), ["duplicate"]);

    // C: only the server, with a cookie whose click the collector never saw (a blocked tag).
    let body_c = format!(
        r#"{{"order":{{"orderId":"C","amount":"20","currency":"EUR","items":[{{"sku":"X","price":"20","quantity":1}}]}},"at":{},"cookie":"{}"}}"#,
        T0 + 3000,
        cookie("carl", "C3", T0 - 3 * DAY)
    );
    assert_eq!(server(&h, conv, SERVER, &body_c).await.statuses(), ["accepted"]);

    // Adjustments: a partial refund of A (idempotent), a correction of B, a full refund of C.
    let refund = r#"{"adjustmentId":"RF-1","type":"refund","amount":"10.00","reason":"one item returned"}"#;
    let adj = "/v1/conversions/A/adjustments?site=demo";
    let a = server(&h, adj, SERVER, refund).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (StatusCode::OK, r#"{"results":[{"id":"RF-1","status":"accepted"}]}"#)
    );
    assert_eq!(server(&h, adj, SERVER, refund).await.statuses(), ["duplicate"]);
    let fix =
        r#"{"adjustmentId":"FX-1","type":"correction","amount":"80.00","reason":"price match","at":1764150010000}"#;
    assert_eq!(
        server(&h, "/v1/conversions/B/adjustments?site=demo", SERVER, fix)
            .await
            .statuses(),
        ["accepted"]
    );
    let full = r#"{"adjustmentId":"RF-2","type":"refund","reason":"cancelled"}"#;
    assert_eq!(
        server(&h, "/v1/conversions/C/adjustments?site=demo", SERVER, full)
            .await
            .statuses(),
        ["accepted"]
    );
    let a = server(
        &h,
        "/v1/conversions/NOPE/adjustments?site=demo",
        SERVER,
        r#"{"adjustmentId":"RF-3","type":"refund","reason":"x"}"#,
    )
    .await;
    assert_eq!(error(&a), (404, "orderId".into(), "unknown order".into()));

    // The read API: each order once, confirmed, the server's amount, the browser's beside it.
    let a = h
        .send(
            "GET",
            "/v1/conversions?site=demo",
            &[("authorization", &format!("Bearer {READ}"))],
            "",
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    let list = v["conversions"].as_array().unwrap();
    assert_eq!(each(&v["conversions"], "orderId"), ["A", "B", "C"], "{v}");
    let pick = |c: &serde_json::Value, keys: &[&str]| -> Vec<serde_json::Value> {
        keys.iter().map(|k| c[*k].clone()).collect()
    };
    let money = [
        "confirmed",
        "amount",
        "browserAmount",
        "gross",
        "adjustmentTotal",
        "net",
    ];
    use serde_json::json;
    assert_eq!(
        pick(&list[0], &money),
        [
            json!(true),
            json!("45.00"),
            json!("49.90"),
            json!("45.00"),
            json!("-10.00"),
            json!("35.00")
        ]
    );
    assert_eq!(
        pick(&list[1], &money),
        [
            json!(true),
            json!("100.00"),
            json!("49.90"),
            json!("100.00"),
            json!("-20.00"),
            json!("80.00")
        ]
    );
    assert_eq!(
        pick(&list[2], &money),
        [
            json!(true),
            json!("20"),
            json!(null),
            json!("20"),
            json!("-20"),
            json!("0")
        ]
    );
    assert_eq!(list[0]["adjustments"][0]["change"], "-10.00");
    assert_eq!(list[0]["adjustments"][0]["reason"], "one item returned");
    assert!(list[0]["eventId"].is_string() && list[2]["eventId"].is_null());
    // Credits: A by the browser's click, B by the server's stored click ID, C by its cookie's.
    let credited: Vec<&str> = list
        .iter()
        .map(|c| c["attribution"]["clickId"].as_str().unwrap())
        .collect();
    assert_eq!(credited, ["I1", "S2", "C3"]);
    assert_eq!(list[2]["items"][0]["sku"], "X");
    // Totals per credited click: gross, adjustments, net.
    let totals: Vec<[&str; 4]> = v["totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| ["clickId", "gross", "adjustments", "net"].map(|k| t[k].as_str().unwrap()))
        .collect();
    // The adjustments are negative (refunds): summed as such, not dropped.
    assert_eq!(
        totals,
        [
            ["I1", "45.00", "-10.00", "35.00"],
            ["S2", "100.00", "-20.00", "80.00"],
            ["C3", "20", "-20", "0"]
        ]
    );

    // Refusals, each with its status and field; none stores anything.
    let ok_body = r#"{"order":{"orderId":"Z"},"at":1}"#;
    let cases: Vec<Refusal> = vec![
        (conv, None, ok_body.into(), (401, "authorization")),
        (
            conv,
            Some("wrong-key-0123456789"),
            ok_body.into(),
            (401, "authorization"),
        ),
        (conv, Some(WRITE), ok_body.into(), (403, "authorization")),
        (conv, Some(READ), ok_body.into(), (403, "authorization")),
        ("/v1/conversions", Some(SERVER), ok_body.into(), (400, "site")),
        (
            "/v1/conversions?site=other",
            Some(SERVER),
            ok_body.into(),
            (404, "site"),
        ),
        (conv, Some(SERVER), "{".into(), (400, "body")),
        (conv, Some(SERVER), "[]".into(), (400, "body")),
        (
            conv,
            Some(SERVER),
            r#"{"order":{"orderId":"Z","amount":"1,5"},"at":1}"#.into(),
            (400, "order.amount"),
        ),
        (
            conv,
            Some(SERVER),
            r#"{"order":{"orderId":"Z","items":[{"quantity":-1}]},"at":1}"#.into(),
            (400, "order.items.quantity"),
        ),
        (conv, Some(SERVER), r#"{"order":{"orderId":"Z"}}"#.into(), (400, "at")),
        (conv, Some(SERVER), r#"{"at":1}"#.into(), (400, "order")),
        (
            conv,
            Some(SERVER),
            r#"{"order":{"orderId":"Z"},"at":1,"cookie":"1.garbage"}"#.into(),
            (400, "cookie"),
        ),
        (
            conv,
            Some(SERVER),
            r#"{"order":{"orderId":"Z"},"at":1,"click":{"clickId":"a b","param":"irclickid"}}"#.into(),
            (400, "click.clickId"),
        ),
        (
            conv,
            Some(SERVER),
            r#"{"order":{"orderId":"Z"},"at":1,"click":{"clickId":"ab","param":"ref"}}"#.into(),
            (400, "click.network"),
        ),
        (
            conv,
            Some(SERVER),
            r#"{"order":{"orderId":"Z"},"at":1,"extra":1}"#.into(),
            (400, "extra"),
        ),
        (
            conv,
            Some(SERVER),
            format!(
                r#"{{"order":{{"orderId":"Z","custom":{{"x":"{}"}}}},"at":1}}"#,
                "x".repeat(300_000)
            ),
            (413, "body"),
        ),
        (
            adj,
            Some(SERVER),
            r#"{"adjustmentId":"X","type":"correction","reason":"r"}"#.into(),
            (400, "amount"),
        ),
        (
            adj,
            Some(SERVER),
            r#"{"adjustmentId":"X","type":"void","reason":"r"}"#.into(),
            (400, "type"),
        ),
        (
            adj,
            Some(SERVER),
            r#"{"adjustmentId":"X","type":"refund"}"#.into(),
            (400, "reason"),
        ),
        (
            adj,
            Some(SERVER),
            r#"{"adjustmentId":"X","type":"refund","amount":"-3","reason":"r"}"#.into(),
            (400, "amount"),
        ),
        (adj, None, refund.into(), (401, "authorization")),
        (adj, Some(WRITE), refund.into(), (403, "authorization")),
    ];
    for (path, key, body, (status, field)) in cases {
        let a = match key {
            Some(k) => server(&h, path, k, &body).await,
            None => {
                h.send("POST", path, &[("content-type", "application/json")], &body)
                    .await
            }
        };
        let (got, got_field, _) = error(&a);
        assert_eq!(
            (got, got_field.as_str()),
            (status, field),
            "{path} {key:?} {}: {}",
            &body[..body.len().min(120)],
            a.body
        );
    }
    let a = h
        .send(
            "POST",
            conv,
            &[
                ("content-type", "application/xml"),
                ("authorization", &format!("Bearer {SERVER}")),
            ],
            ok_body,
        )
        .await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let a = h
        .send(
            "GET",
            "/v1/conversions?site=demo",
            &[("authorization", &format!("Bearer {READ}"))],
            "",
        )
        .await;
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["conversions"].as_array().unwrap().len(), 3);
    assert_eq!(v["conversions"][0]["adjustments"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn server_conversions_and_adjustments_on_sqlite() {
    scenario(Harness::with_config(config())).await;
}

#[tokio::test]
async fn server_conversions_and_adjustments_on_postgres() {
    scenario(Harness::postgres_with(config())).await;
}

#[tokio::test]
async fn a_site_without_server_key_refuses_server_conversions() {
    let h = Harness::new();
    let a = server(
        &h,
        "/v1/conversions?site=demo",
        SERVER,
        r#"{"order":{"orderId":"Z"},"at":1}"#,
    )
    .await;
    assert_eq!(error(&a).0, 403);
    assert_eq!(error(&a).1, "authorization");
    assert!(error(&a).2.contains("no server_key"), "{}", a.body);
}

/// The credited click ID of each order a read-key `GET` lists, and the classes of its
/// touchpoints.
async fn credits(h: &Harness, query: &str) -> Vec<(String, String, Vec<String>)> {
    let a = h
        .send(
            "GET",
            &format!("/v1/conversions?site=demo{query}"),
            &[("authorization", &format!("Bearer {READ}"))],
            "",
        )
        .await;
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    v["conversions"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|c| {
            (
                c["orderId"].as_str().unwrap().to_string(),
                c["attribution"]["clickId"].as_str().unwrap_or("-").to_string(),
                c["touchpoints"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["traffic"].as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

/// A Playwright run on the production site lands on a click (the tag flags the batch as an
/// automated browser's) and the merchant's server confirms the order with its `_utt` cookie
/// before the browser's beacon arrives: the cookie's copy of the click is the stored touch,
/// still automation, so the order earns no credit where automation is excluded. A human's
/// landing confirmed the same way is credited.
async fn a_server_confirmation_keeps_the_landings_class(h: Harness) {
    let conv = "/v1/conversions?site=demo";
    for (visitor, webdriver, click_id, order) in [("qa", true, "Q1", "QA"), ("hana", false, "H1", "HU")] {
        let e = event(
            if webdriver { 1 } else { 2 },
            Some(visitor),
            T0 - DAY,
            vec![click("irclickid", "impact", click_id, T0 - DAY)],
            pageview(),
        );
        let a = h
            .post(&wire::write_batch("demo", Some(WRITE), T0, webdriver, &[&e]))
            .await;
        assert_eq!(a.statuses(), ["accepted"], "{}", a.body);
        let body = format!(
            r#"{{"order":{{"orderId":"{order}","amount":"10.00","currency":"EUR"}},"at":{},"cookie":"{}"}}"#,
            T0,
            cookie(visitor, click_id, T0 - DAY)
        );
        assert_eq!(server(&h, conv, SERVER, &body).await.statuses(), ["accepted"]);
    }
    let (human, automation) = (vec!["human".to_string()], vec!["automation".to_string()]);
    // The default (bots and automation excluded): the QA order is listed (the server's order
    // has no class of its own) but credits no one.
    assert_eq!(
        credits(&h, "").await,
        [
            ("HU".into(), "H1".into(), human.clone()),
            ("QA".into(), "-".into(), vec![]),
        ]
    );
    // traffic=all: the click is there, with its landing's class.
    assert_eq!(
        credits(&h, "&traffic=all").await,
        [
            ("HU".into(), "H1".into(), human),
            ("QA".into(), "Q1".into(), automation)
        ]
    );
}

#[tokio::test]
async fn a_server_confirmation_keeps_the_landings_class_on_sqlite() {
    let mut c = config();
    c.sites[0].traffic = utt_collector::traffic::TrafficConfig::default();
    a_server_confirmation_keeps_the_landings_class(Harness::with_config(c)).await;
}

#[tokio::test]
async fn a_server_confirmation_keeps_the_landings_class_on_postgres() {
    let mut c = config();
    c.sites[0].traffic = utt_collector::traffic::TrafficConfig::default();
    a_server_confirmation_keeps_the_landings_class(Harness::postgres_with(c)).await;
}
