//! The collector's HTTP API driven through the router without a socket (`oneshot`): fixtures,
//! refusals, CORS, keys, rate limits, the read, click and cookie endpoints, metrics and files.

mod common;

use axum::http::StatusCode;
use common::*;
use utt_collector::config::{Config, RateLimit};

#[tokio::test]
async fn golden_fixtures_are_accepted_once() {
    let mut names: Vec<_> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("batch-"))
        .collect();
    names.sort();
    assert!(names.len() >= 7, "fixtures not found in {}", fixtures().display());
    for path in names {
        let h = Harness::new();
        let text = std::fs::read_to_string(&path).unwrap();
        let n = utt::core::wire::read_batch(&text).unwrap().events.len();
        let a = h.post(&text).await;
        assert_eq!(a.status, StatusCode::OK, "{}: {}", path.display(), a.body);
        assert_eq!(a.statuses(), vec!["accepted"; n], "{}", path.display());
        assert_eq!(h.events(), n as u64);
        // What is stored is each event's canonical wire JSON.
        for e in utt::core::wire::read_batch(&text).unwrap().events {
            let e = e.unwrap();
            let mut want = String::new();
            utt::core::wire::write_event(&mut want, &e);
            assert_eq!(h.store().event(&e.id).unwrap(), Some(want), "{}", path.display());
        }
        // A retry of the same batch stores nothing more.
        let again = h.post(&text).await;
        assert_eq!(again.statuses(), vec!["duplicate"; n], "{}", path.display());
        assert_eq!(h.events(), n as u64);
    }
}

#[tokio::test]
async fn journey_fixture_is_attributed() {
    let h = Harness::new();
    let text = std::fs::read_to_string(fixtures().join("batch-journey.json")).unwrap();
    assert_eq!(h.post(&text).await.status, StatusCode::OK);
    let (status, v) = h.get_json("/v1/conversions?site=demo").await;
    assert_eq!(status, StatusCode::OK);
    let list = v["conversions"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{v}");
    let c = &list[0];
    assert_eq!(c["orderId"], "ORD-1001");
    // Money keeps its exact text, whether it came as a string or a number.
    assert_eq!(c["amount"], "129.90");
    assert_eq!(c["discount"], "10.00");
    assert_eq!(c["items"][0]["price"], "119.90");
    assert_eq!(c["items"][1]["price"], "5");
    assert_eq!(c["custom"], serde_json::json!({"channel": "web", "giftWrap": true}));
    assert_eq!(
        c["attribution"],
        serde_json::json!({"model": "last_click", "network": "impact", "param": "irclickid",
            "clickId": "Xy12abc", "clickAt": 1764150000000u64, "crossDevice": false, "partner": null,
            "partnerName": null, "partnerVia": null})
    );
    let tps = each(&c["touchpoints"], "clickId");
    assert_eq!(tps, ["Cj0KCQiA_BwE", "Xy12abc"]);
    assert_eq!(
        c["promo"],
        serde_json::json!({"code": "SPRING10", "partner": "influencer-anna"})
    );
    // The minimal conversion has no visitor and no promo code: nobody is credited.
    let m = &list[1];
    assert_eq!(m["orderId"], "ORD-1002");
    assert_eq!(m["amount"], "20");
    assert!(m["attribution"].is_null() && m["promo"].is_null(), "{m}");

    let (_, first) = h.get_json("/v1/conversions?site=demo&model=first_click").await;
    assert_eq!(first["conversions"][0]["attribution"]["clickId"], "Cj0KCQiA_BwE");
    assert_eq!(first["conversions"][0]["attribution"]["model"], "first_click");
    let (_, later) = h.get_json("/v1/conversions?site=demo&since=1764150065000").await;
    assert_eq!(later["conversions"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn bad_envelopes_are_refused_and_nothing_is_stored() {
    let h = Harness::new();
    let ok_event = event(1, Some("v1"), T0, vec![], pageview());
    let many: Vec<String> = (0..101).map(|i| event(i, Some("v1"), T0, vec![], pageview())).collect();
    let huge = format!(
        r#"{{"v":1,"site":"demo","sentAt":1,"events":[{ok_event}],"pad":"{}"}}"#,
        "x".repeat(300 * 1024)
    );
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let text = "text/plain";
    // (content type, body, status, error field)
    let cases: Vec<(&str, String, u16, Option<&str>)> = vec![
        (text, "{".into(), 400, Some("body")),
        (text, "[]".into(), 400, Some("body")),
        (text, deep, 400, Some("body")),
        (
            text,
            r#"{"v":2,"site":"demo","sentAt":1,"events":[]}"#.into(),
            400,
            Some("v"),
        ),
        (text, r#"{"v":1,"sentAt":1,"events":[]}"#.into(), 400, Some("site")),
        (
            text,
            r#"{"v":1,"site":"de mo","sentAt":1,"events":[]}"#.into(),
            400,
            Some("site"),
        ),
        (
            text,
            r#"{"v":1,"site":"demo","sentAt":"x","events":[]}"#.into(),
            400,
            Some("sentAt"),
        ),
        (
            text,
            r#"{"v":1,"site":"demo","sentAt":1,"events":{}}"#.into(),
            400,
            Some("events"),
        ),
        (
            text,
            r#"{"v":1,"site":"demo","sentAt":1,"events":[]}"#.into(),
            400,
            Some("events"),
        ),
        (text, batch(&many), 400, Some("events")),
        (
            text,
            format!(r#"{{"v":1,"site":"nope","sentAt":1,"events":[{ok_event}]}}"#),
            404,
            Some("site"),
        ),
        (text, huge, 413, Some("body")),
        (
            "application/x-www-form-urlencoded",
            batch(std::slice::from_ref(&ok_event)),
            415,
            Some("content-type"),
        ),
        ("", batch(std::slice::from_ref(&ok_event)), 415, Some("content-type")),
        (
            "text/html",
            batch(std::slice::from_ref(&ok_event)),
            415,
            Some("content-type"),
        ),
    ];
    for (ct, body, status, field) in cases {
        let headers: Vec<(&str, &str)> = if ct.is_empty() {
            vec![]
        } else {
            vec![("content-type", ct)]
        };
        let a = h.send("POST", "/v1/events", &headers, &body).await;
        let short: String = body.chars().take(60).collect();
        assert_eq!(a.status.as_u16(), status, "{short}: {}", a.body);
        assert_eq!(a.header("content-type"), Some("application/json"), "{short}");
        let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{short}: {}",
            a.body
        );
        assert_eq!(v["field"].as_str(), field, "{short}: {}", a.body);
    }
    let invalid_utf8 = [b"{\"v\":1,\"site\":\"demo\xff\"}".as_slice()].concat();
    let a = h
        .send_bytes("POST", "/v1/events", &[("content-type", "text/plain")], invalid_utf8)
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains("UTF-8"), "{}", a.body);
    assert_eq!(h.events(), 0);
}

#[tokio::test]
async fn hostile_events_are_rejected_alone_and_never_echoed() {
    let h = Harness::new();
    let good = event(
        1,
        Some("v1"),
        T0,
        vec![click("irclickid", "impact", "Ok123", T0)],
        pageview(),
    );
    let script = good
        .replace("Ok123", "<script>alert(1)</script>")
        .replace(&uuid(1), &uuid(2));
    let quote = good.replace("Ok123", "a\\\"onload=x").replace(&uuid(1), &uuid(3));
    let bad_id = good.replace(&uuid(1), "not-a-uuid");
    let future = good
        .replace(
            &format!("\"at\":{T0},\"visitor\""),
            "\"at\":9007199254740993,\"visitor\"",
        )
        .replace(&uuid(1), &uuid(4));
    let bad_type = good.replace("\"pageview\"", "\"purchase\"").replace(&uuid(1), &uuid(5));
    let bad_amount = event(6, Some("v1"), T0, vec![], conversion("O-1", None)).replace("\"49.90\"", "\"1e9\"");
    let a = h
        .post(&batch(&[script, quote, bad_id, future, bad_type, bad_amount, good]))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        a.statuses(),
        [
            "rejected: clicks.value: character outside the safe set",
            "rejected: clicks.value: character outside the safe set",
            "rejected: id: must be a lowercase UUID",
            "rejected: at: timestamp out of range",
            "rejected: type: unknown event type",
            "rejected: order.amount: must be a non-negative decimal like 49.90, without exponent",
            "accepted",
        ]
    );
    assert!(!a.body.contains("script") && !a.body.contains("onload"), "{}", a.body);
    assert_eq!(h.events(), 1);
    assert!(h.store().has_event(&uuid(1)).unwrap());
    // Members the wire format does not know are dropped, not stored: only validated fields are.
    let extra = event(7, Some("v1"), T0, vec![], pageview()).replacen('{', "{\"evil\":\"<img src=x>\",", 1);
    assert_eq!(h.post(&batch(&[extra])).await.statuses(), ["accepted"]);
    let stored = h.store().event(&uuid(7)).unwrap().unwrap();
    assert!(!stored.contains("evil") && !stored.contains("<img"), "{stored}");
    assert!(!h.store().has_event(&uuid(2)).unwrap());
}

#[tokio::test]
async fn events_carrying_a_refused_click_id_are_rejected_and_stored_nowhere() {
    let h = Harness::new();
    let clicks = || vec![click("irclickid", "impact", "Ok123", T0)];
    let page = "https://shop.example/product/42";
    let hostile = format!("{page}?irclickid=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E");
    let (bad_ref, good_ref) = (
        "https://partner.example/r?GCLID=a%3Bb",
        "https://partner.example/review?ref=x",
    );
    let on = |n: u64, kind, url: &str, referrer: &str| event_on(n, Some("v1"), T0 + n, clicks(), kind, url, referrer);
    let refused = |field: &str, param: &str, why: &str| {
        format!("rejected: {field}: carries a refused click ID in {param} ({why})")
    };
    let unsafe_char = "character outside the safe set";
    // Each event beside its answer.
    let cases = [
        // A valid click ID beside the site's own parameters is fine.
        (
            on(1, pageview(), &format!("{page}?irclickid=Ok123&ref=footer&q=a%20b"), ""),
            "accepted".to_string(),
        ),
        (
            on(2, conversion("ORD-1", None), &hostile, ""),
            refused("url", "irclickid", unsafe_char),
        ),
        (
            on(3, conversion("ORD-2", None), page, bad_ref),
            refused("referrer", "gclid", unsafe_char),
        ),
        (
            on(4, pageview(), &format!("{page}?irclickid="), ""),
            refused("url", "irclickid", "empty value"),
        ),
        (on(5, conversion("ORD-3", None), page, good_ref), "accepted".to_string()),
    ];
    let (events, want): (Vec<String>, Vec<String>) = cases.into_iter().unzip();
    let a = h.post(&batch(&events)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.statuses(), want);
    assert!(!a.body.contains("img") && !a.body.contains("a;b"), "{}", a.body);
    assert_eq!(h.events(), 2);
    for n in [2, 3, 4] {
        assert!(!h.store().has_event(&uuid(n)).unwrap(), "event {n} stored");
    }
    let (_, v) = h.get_json("/v1/conversions?site=demo").await;
    assert_eq!(each(&v["conversions"], "orderId"), ["ORD-3"], "{v}");
    let (_, c) = h.get_json("/v1/clicks/Ok123").await;
    assert_eq!(c["pageViews"], 1, "{c}");
    // Nothing of the refused conversion was kept: the same order from a clean page is new.
    let again = on(6, conversion("ORD-1", None), page, "");
    assert_eq!(h.post(&batch(&[again])).await.statuses(), ["accepted"]);
}

#[tokio::test]
async fn order_ids_count_once() {
    let h = Harness::new();
    let first = event(1, Some("v1"), T0, vec![], conversion("ORD-9", None));
    let reload = event(2, Some("v1"), T0 + 5_000, vec![], conversion("ORD-9", None));
    let other = event(3, Some("v1"), T0 + 6_000, vec![], conversion("ORD-10", None));
    let a = h.post(&batch(&[first.clone(), reload.clone(), other.clone()])).await;
    assert_eq!(a.statuses(), ["accepted", "duplicate", "accepted"]);
    // The refused duplicate left no gap or overlap in the stored bodies around it.
    assert_eq!(h.store().event(&uuid(1)).unwrap(), Some(first));
    assert_eq!(h.store().event(&uuid(3)).unwrap(), Some(other));
    assert_eq!(h.store().event(&uuid(2)).unwrap(), None);
    assert_eq!(h.post(&batch(&[reload])).await.statuses(), ["duplicate"]);
    let counts = h.store().counts().unwrap();
    assert_eq!((counts.events, counts.conversions), (2, 2));
    assert!(!h.store().has_event(&uuid(2)).unwrap());
}

#[tokio::test]
async fn write_keys_and_origins() {
    let mut config = Config::demo();
    config.sites[0].write_key = Some("s3cret".into());
    config.sites[0].allowed_origins = vec!["https://shop.example".into(), "http://localhost:*".into()];
    let h = Harness::with_config(config);
    let e = event(1, Some("v1"), T0, vec![], pageview());
    let keyed = |k: &str| {
        let refs = [e.as_str()];
        utt::core::wire::write_batch("demo", Some(k), T0, false, &refs)
    };
    let ct = ("content-type", "text/plain");
    // (origin, body, status, allowed origin echoed)
    let cases: Vec<(Option<&str>, String, u16, Option<&str>)> = vec![
        (None, batch(std::slice::from_ref(&e)), 401, None),
        (None, keyed("wrong"), 401, None),
        (
            Some("https://shop.example"),
            keyed("s3cre"),
            401,
            Some("https://shop.example"),
        ),
        (Some("https://evil.example"), keyed("s3cret"), 403, None),
        (Some("https://shop.example.evil.example"), keyed("s3cret"), 403, None),
        (
            Some("http://localhost:5173"),
            keyed("s3cret"),
            200,
            Some("http://localhost:5173"),
        ),
        (
            Some("https://shop.example"),
            keyed("s3cret"),
            200,
            Some("https://shop.example"),
        ),
    ];
    for (origin, body, status, echoed) in cases {
        let mut headers = vec![ct];
        if let Some(o) = origin {
            headers.push(("origin", o));
        }
        let a = h.send("POST", "/v1/events", &headers, &body).await;
        assert_eq!(a.status.as_u16(), status, "{origin:?}: {}", a.body);
        assert_eq!(a.header("access-control-allow-origin"), echoed, "{origin:?}");
        assert_eq!(a.header("vary"), Some("Origin"));
        assert_eq!(a.header("access-control-allow-credentials"), None);
    }
    assert_eq!(h.events(), 1);

    let pre = h
        .send(
            "OPTIONS",
            "/v1/events",
            &[
                ("origin", "https://shop.example"),
                ("access-control-request-method", "POST"),
            ],
            "",
        )
        .await;
    assert_eq!(pre.status, StatusCode::NO_CONTENT);
    assert_eq!(pre.header("access-control-allow-origin"), Some("https://shop.example"));
    assert!(pre.header("access-control-allow-methods").unwrap().contains("POST"));
    let pre = h
        .send("OPTIONS", "/v1/events", &[("origin", "https://evil.example")], "")
        .await;
    assert_eq!(pre.status, StatusCode::FORBIDDEN);
    assert_eq!(pre.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    // (per second, per minute, burst, ms to wait before each request, status, Retry-After)
    type Step = (u64, u16, Option<&'static str>);
    let cases: [(u32, u32, u32, &[Step]); 2] = [
        (
            1,
            0,
            2,
            &[
                (0, 200, None),
                (0, 200, None),
                (0, 429, Some("1")),
                (999, 429, Some("1")),
                (1, 200, None),
            ],
        ),
        // Twelve a minute (the e2e retry-after test's setting): one every 5 s.
        (
            0,
            12,
            1,
            &[
                (0, 200, None),
                (0, 429, Some("5")),
                (4_000, 429, Some("1")),
                (1_000, 200, None),
            ],
        ),
    ];
    for (per_second, per_minute, burst, steps) in cases {
        let mut config = Config::demo();
        config.rate_limit = RateLimit {
            per_second,
            per_minute,
            burst,
        };
        let mut h = Harness::with_config(config);
        let clock = h.fake_limit_clock();
        let mut n = 0;
        for (i, (wait, status, retry)) in steps.iter().enumerate() {
            clock.advance(std::time::Duration::from_millis(*wait));
            n += 1;
            let a = h.post(&batch(&[event(n, Some("v1"), T0, vec![], pageview())])).await;
            let what = format!("{per_second}/s + {per_minute}/min, burst {burst}, step {i}");
            assert_eq!(a.status.as_u16(), *status, "{what}: {}", a.body);
            assert_eq!(a.header("retry-after"), *retry, "{what}");
        }
    }
}

#[tokio::test]
async fn cors_answers_expose_retry_after() {
    let mut config = Config::demo();
    config.sites[0].allowed_origins = vec!["https://shop.example".into()];
    config.rate_limit = RateLimit {
        per_second: 1,
        per_minute: 0,
        burst: 3,
    };
    let mut h = Harness::with_config(config);
    // A stopped clock: no token comes back between the requests, however slow the machine.
    let _clock = h.fake_limit_clock();
    let shop = "https://shop.example";
    let evil = "https://evil.example";
    let good = batch(&[event(1, Some("v1"), T0, vec![], pageview())]);
    // (path, origin, body, status, Retry-After): the first three take the three tokens.
    let cases = [
        ("/v1/events", shop, good.as_str(), 200, None),
        ("/v1/events", shop, "not json", 400, None),
        ("/v1/events", evil, good.as_str(), 403, None),
        ("/v1/events", shop, good.as_str(), 429, Some("1")),
        ("/v1/cookie", shop, "{}", 429, Some("1")),
        ("/v1/events", evil, good.as_str(), 429, Some("1")),
    ];
    for (path, origin, body, status, retry) in cases {
        let headers = [("content-type", "text/plain"), ("origin", origin)];
        let a = h.send("POST", path, &headers, body).await;
        let what = format!("{path} from {origin}: {status}");
        assert_eq!(a.status.as_u16(), status, "{what}: {}", a.body);
        assert_eq!(a.header("retry-after"), retry, "{what}");
        let allowed = (origin == shop).then_some(shop);
        assert_eq!(a.header("access-control-allow-origin"), allowed, "{what}");
        let exposed = allowed.map(|_| "Retry-After");
        assert_eq!(a.header("access-control-expose-headers"), exposed, "{what}");
        let credentials = (allowed.is_some() && path == "/v1/cookie").then_some("true");
        assert_eq!(a.header("access-control-allow-credentials"), credentials, "{what}");
    }
    assert_eq!(h.events(), 1);
}

#[tokio::test]
async fn cookie_endpoint() {
    let mut config = Config::demo();
    config.sites[0].allowed_origins.push("https://www.shop.example".into());
    config.sites[0].window_days = 30;
    let h = Harness::with_config(config);
    let body = |value: &str, max_age: u64| {
        serde_json::json!({"site": "demo", "name": "_utt", "value": value, "maxAge": max_age}).to_string()
    };
    let window = 30 * 86_400;
    // (origin, host, forwarded proto, body, status, Set-Cookie)
    type Case<'a> = (Option<&'a str>, &'a str, Option<&'a str>, String, u16, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (
            Some("http://localhost:5173"),
            "localhost:8080",
            None,
            body("v1.abc", 3600),
            204,
            Some("_utt=v1.abc; Path=/; Max-Age=3600; SameSite=Lax"),
        ),
        (
            Some("https://www.shop.example"),
            "collect.shop.example",
            Some("https"),
            body("v1.abc", window),
            204,
            Some("_utt=v1.abc; Path=/; Max-Age=2592000; SameSite=Lax; Domain=shop.example; Secure"),
        ),
        (
            Some("https://www.shop.example"),
            "collect.other.example",
            Some("https"),
            body("x", 60),
            204,
            Some("_utt=x; Path=/; Max-Age=60; SameSite=Lax; Secure"),
        ),
        (None, "localhost:8080", None, body("v1", 60), 403, None),
        (
            Some("https://evil.example"),
            "localhost:8080",
            None,
            body("v1", 60),
            403,
            None,
        ),
        (
            Some("http://localhost:5173"),
            "localhost:8080",
            None,
            body("v1", window + 1),
            400,
            None,
        ),
        (
            Some("http://localhost:5173"),
            "localhost:8080",
            None,
            body("a;Domain=evil", 60),
            400,
            None,
        ),
        (
            Some("http://localhost:5173"),
            "localhost:8080",
            None,
            body("a b", 60),
            400,
            None,
        ),
        (
            Some("http://localhost:5173"),
            "localhost:8080",
            None,
            body(&"a".repeat(3801), 60),
            400,
            None,
        ),
        (
            Some("http://localhost:5173"),
            "localhost:8080",
            None,
            body("", 60),
            400,
            None,
        ),
        (
            Some("http://localhost:5173"),
            "localhost:8080",
            None,
            r#"{"site":"demo","name":"session","value":"v","maxAge":60}"#.into(),
            400,
            None,
        ),
        (
            Some("http://localhost:5173"),
            "localhost:8080",
            None,
            r#"{"site":"nope","name":"_utt","value":"v","maxAge":60}"#.into(),
            404,
            None,
        ),
    ];
    for (origin, host, proto, body, status, cookie) in cases {
        let mut headers = vec![("content-type", "text/plain"), ("host", host)];
        if let Some(o) = origin {
            headers.push(("origin", o));
        }
        if let Some(p) = proto {
            headers.push(("x-forwarded-proto", p));
        }
        let a = h.send("POST", "/v1/cookie", &headers, &body).await;
        assert_eq!(a.status.as_u16(), status, "{origin:?} {body}: {}", a.body);
        assert_eq!(a.header("set-cookie"), cookie, "{origin:?} {body}");
        if status == 204 {
            assert_eq!(a.header("access-control-allow-origin"), origin);
            assert_eq!(a.header("access-control-allow-credentials"), Some("true"));
        } else if status == 403 {
            assert_eq!(a.header("access-control-allow-origin"), None);
        }
    }
}

#[tokio::test]
async fn click_debug_api_shows_only_that_click() {
    let h = Harness::new();
    let text = std::fs::read_to_string(fixtures().join("batch-journey.json")).unwrap();
    h.post(&text).await;
    let (status, v) = h.get_json("/v1/clicks/Xy12abc").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["clickId"], "Xy12abc");
    assert_eq!(v["landings"][0]["network"], "impact");
    assert_eq!(v["landings"][0]["param"], "irclickid");
    assert_eq!(v["landings"][0]["path"], "/product/42");
    assert_eq!(v["pageViews"], 1);
    assert_eq!(v["pages"][0]["path"], "/product/42");
    assert_eq!(v["firstSeen"], 1764150000000u64);
    assert_eq!(v["lastSeen"], 1764150060000u64);
    // The click's own class, and that the site counts it.
    assert_eq!((&v["traffic"], &v["excluded"]), (&"human".into(), &false.into()));
    // Exactly these members: anything more is a fact the partner was not meant to see.
    let mut members: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    members.sort_unstable();
    assert_eq!(
        members,
        [
            "clickId",
            "conversions",
            "excluded",
            "firstSeen",
            "flagged",
            "landings",
            "lastSeen",
            "orderDetails",
            "pageViews",
            "pages",
            "traffic"
        ]
    );
    let orders = each(&v["conversions"], "orderId");
    assert_eq!(orders, ["ORD-1001"]);
    let text = v.to_string();
    for secret in ["5b0e3f0a", "86e0b9e5", "cust-77", "Cj0KCQiA_BwE", "0c9a7e52"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    // The earlier partner's click is known but credited nothing under last click.
    let (status, g) = h.get_json("/v1/clicks/Cj0KCQiA_BwE").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(g["landings"][0]["network"], "google");
    assert_eq!(g["conversions"], serde_json::json!([]));
    assert!(!g.to_string().contains("Xy12abc"));

    let (status, e) = h.get_json("/v1/clicks/Unknown123").await;
    assert_eq!((status, e["field"].as_str()), (StatusCode::NOT_FOUND, Some("click_id")));
    let (status, e) = h.get_json("/v1/clicks/%3Cscript%3E").await;
    assert_eq!(
        (status, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("click_id"))
    );
    assert!(!e.to_string().contains("script"));
    let (status, _) = h.get_json("/v1/clicks/Xy12abc?site=nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // With one site configured, `site` may be left out; named, it is the same answer.
    let (_, named) = h.get_json("/v1/clicks/Xy12abc?site=demo").await;
    assert_eq!(named, v);
    // The debug page, on the shop's origin, can read the refusals too.
    let origin = [("origin", "http://localhost:5173")];
    for (uri, status) in [("/v1/clicks/Xy12abc", 200), ("/v1/clicks/%3Cscript%3E", 400)] {
        let a = h.send("GET", uri, &origin, "").await;
        assert_eq!(a.status.as_u16(), status, "{uri}");
        assert_eq!(a.header("access-control-allow-origin"), Some(origin[0].1), "{uri}");
    }
}

/// Who can read what of a click: order IDs and amounts only with the site's read key (counts
/// and times without it), and CORS only for the site's own origins, never another site's.
#[tokio::test]
async fn click_api_shows_orders_only_with_the_read_key_and_only_to_the_sites_origins() {
    let mut config = Config::demo();
    config.sites[0].read_key = Some("reader".into());
    let mut other = config.sites[0].clone();
    other.id = "other".into();
    other.allowed_origins = vec!["https://other.example".into()];
    other.read_key = None;
    config.sites.push(other);
    let h = Harness::with_config(config);
    let text = std::fs::read_to_string(fixtures().join("batch-journey.json")).unwrap();
    assert_eq!(h.post(&text).await.status, StatusCode::OK);
    let uri = "/v1/clicks/Xy12abc?site=demo";
    // Without the key: that the click converted, and when; not which order nor how much.
    let (status, v) = h.get_json(uri).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["pageViews"], 1);
    assert_eq!(v["orderDetails"], false);
    assert_eq!(
        v["conversions"],
        serde_json::json!([{"site": "demo", "at": 1764150060000u64, "model": "last_click", "crossDevice": false,
            "partner": null, "partnerName": null, "partnerVia": null, "traffic": "human", "clickTraffic": "human"}])
    );
    for secret in ["ORD-1001", "129.90", "EUR"] {
        assert!(!v.to_string().contains(secret), "{secret} without the key: {v}");
    }
    // With it, the orders.
    let a = h.send("GET", uri, &[("authorization", "Bearer reader")], "").await;
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["orderDetails"], true);
    assert_eq!(each(&v["conversions"], "orderId"), ["ORD-1001"]);
    assert_eq!(v["conversions"][0]["amount"], "129.90");
    assert_eq!(v["conversions"][0]["currency"], "EUR");
    let vary: Vec<&str> = a
        .headers
        .iter()
        .filter(|(n, _)| n == "vary")
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(vary.contains(&"Origin") && vary.contains(&"Authorization"), "{vary:?}");
    // A wrong key is refused, not taken for none.
    let a = h.send("GET", uri, &[("authorization", "Bearer nope")], "").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    assert!(a.body.contains("\"field\":\"authorization\""), "{}", a.body);
    // With several sites, the site must be named; the click is only the named site's.
    let (status, e) = h.get_json("/v1/clicks/Xy12abc").await;
    assert_eq!(
        (status, e["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("site")),
        "{e}"
    );
    let (status, _) = h.get_json("/v1/clicks/Xy12abc?site=other").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // CORS: the site's own origins only, refusals included; before the site is known, any
    // configured site's origin may read the refusal.
    let shop = "http://localhost:5173";
    let other = "https://other.example";
    let cases = [
        (uri, shop, 200, Some(shop)),
        (uri, other, 200, None),
        ("/v1/clicks/%3Cscript%3E?site=demo", shop, 400, Some(shop)),
        ("/v1/clicks/%3Cscript%3E?site=demo", other, 400, None),
        ("/v1/clicks/Xy12abc?site=other", other, 404, Some(other)),
        ("/v1/clicks/Xy12abc?site=nope", other, 404, Some(other)),
        ("/v1/clicks/Xy12abc", other, 400, Some(other)),
        (uri, "https://evil.example", 200, None),
    ];
    for (uri, origin, status, allowed) in cases {
        let a = h.send("GET", uri, &[("origin", origin)], "").await;
        assert_eq!(a.status.as_u16(), status, "{uri} from {origin}: {}", a.body);
        assert_eq!(a.header("access-control-allow-origin"), allowed, "{uri} from {origin}");
    }
}

/// The read API's JSON is compressed for clients that accept it.
#[tokio::test]
async fn read_answers_are_compressed() {
    let h = Harness::new();
    let text = std::fs::read_to_string(fixtures().join("batch-journey.json")).unwrap();
    h.post(&text).await;
    for uri in ["/v1/conversions?site=demo", "/v1/clicks/Xy12abc"] {
        for (accept, want) in [("br", Some("br")), ("gzip", Some("gzip")), ("identity", None)] {
            let a = h.send("GET", uri, &[("accept-encoding", accept)], "").await;
            assert_eq!(a.status, StatusCode::OK, "{uri}");
            assert_eq!(a.header("content-encoding"), want, "{uri} {accept}");
            assert_eq!(a.header("content-type"), Some("application/json"), "{uri}");
        }
        let plain = h.send("GET", uri, &[], "").await;
        assert!(plain.body.starts_with('{'), "{uri}: {}", plain.body);
    }
}

#[tokio::test]
async fn read_api_refusals() {
    let mut config = Config::demo();
    config.sites[0].read_key = Some("reader".into());
    let h = Harness::with_config(config);
    let cases = [
        ("/v1/conversions", 400, "site"),
        ("/v1/conversions?site=nope", 404, "site"),
        ("/v1/conversions?site=demo", 401, "authorization"),
    ];
    for (uri, status, field) in cases {
        let (s, v) = h.get_json(uri).await;
        assert_eq!((s.as_u16(), v["field"].as_str()), (status, Some(field)), "{uri}");
    }
    let auth = [("authorization", "Bearer reader")];
    let cases = [
        ("/v1/conversions?site=demo&since=yesterday", 400, Some("since")),
        ("/v1/conversions?site=demo&model=linear", 400, Some("model")),
        ("/v1/conversions?site=demo&limit=0", 400, Some("limit")),
        ("/v1/conversions?site=demo", 200, None),
        // Percent-escapes that decode to invalid UTF-8: JSON answers, not axum's plain text (a
        // query string is decoded lossily, a path is refused).
        ("/v1/conversions?site=%ff%fe", 404, Some("site")),
        ("/v1/clicks/%ff%fe", 400, Some("click_id")),
        ("/v1/clicks/Xy12abc?site=%c3%28", 404, Some("site")),
        // A known path with another method: a JSON 405.
        ("/v1/events", 405, Some("method")),
    ];
    for (uri, status, field) in cases {
        let a = h.send("GET", uri, &auth, "").await;
        let v: serde_json::Value = serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("{uri}: {e}: {}", a.body));
        assert_eq!((a.status.as_u16(), v["field"].as_str()), (status, field), "{uri}");
    }
    let a = h.send("DELETE", "/v1/conversions?site=demo", &auth, "").await;
    assert_eq!(a.status.as_u16(), 405);
    assert!(a.body.contains("method not allowed"), "{}", a.body);
}

#[tokio::test]
async fn health_and_metrics() {
    let h = Harness::new();
    let (status, v) = h.get_json("/healthz").await;
    assert_eq!((status, v["status"].as_str()), (StatusCode::OK, Some("ok")));
    let text = std::fs::read_to_string(fixtures().join("batch-journey.json")).unwrap();
    h.post(&text).await;
    h.post(&text).await;
    h.post(&batch(&[
        event(1, None, T0, vec![], pageview()).replace("pageview", "bogus")
    ]))
    .await;
    let a = h.send("GET", "/metrics", &[], "").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.header("content-type").unwrap().starts_with("text/plain"));
    for line in [
        "utt_events_total{type=\"pageview\",status=\"accepted\"} 1\n",
        "utt_events_total{type=\"conversion\",status=\"accepted\"} 2\n",
        "utt_events_total{type=\"conversion\",status=\"duplicate\"} 2\n",
        "utt_events_total{type=\"unknown\",status=\"rejected\"} 1\n",
        "utt_http_request_duration_seconds_count{route=\"/v1/events\"} 3\n",
        "utt_http_request_duration_seconds_count{route=\"/healthz\"} 1\n",
        "utt_writer_queue_depth 0\n",
        // Two batches reached the writer (the third had only a rejected event).
        "utt_writer_commits_total 2\n",
        "utt_writer_events_total 12\n",
        "utt_writer_commit_failures_total 0\n",
        "utt_store_failing 0\n",
        "utt_http_responses_total{route=\"/v1/events\",class=\"2xx\"} 3\n",
        "utt_http_responses_total{route=\"/healthz\",class=\"2xx\"} 1\n",
    ] {
        assert!(a.body.contains(line), "missing {line:?} in\n{}", a.body);
    }
    let size: u64 = a
        .body
        .lines()
        .find_map(|l| l.strip_prefix("utt_database_size_bytes "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(size > 0);
    // Every API route is labelled by its pattern (whatever its answer), none as `other`.
    for (method, uri) in [
        ("GET", "/v1/report?site=demo"),
        ("GET", "/v1/postbacks?site=demo"),
        ("POST", "/v1/conversions/O-1/adjustments?site=demo"),
    ] {
        h.send(method, uri, &[], "").await;
    }
    let a = h.send("GET", "/metrics", &[], "").await;
    for route in ["/v1/report", "/v1/postbacks", "/v1/conversions/{order_id}/adjustments"] {
        let line = format!("utt_http_request_duration_seconds_count{{route=\"{route}\"}} 1\n");
        assert!(a.body.contains(&line), "missing {line:?} in\n{}", a.body);
    }
    assert!(!a.body.contains("route=\"other\",class=\"4xx\"} 1"), "{}", a.body);
}

/// A deriver that cannot write keeps the collector in service (events are still stored) but
/// makes it say so: `/healthz` is `degraded` and `/metrics` counts the failures, until it has
/// caught up.
#[tokio::test]
async fn a_failing_deriver_shows_in_health_and_metrics() {
    let h = Harness::new();
    let c = click("gclid", "google", "Cj0-degraded", T0);
    let a = h
        .post(&batch(&[event(1, Some("v1"), T0, vec![c.clone()], pageview())]))
        .await;
    assert_eq!(a.statuses(), ["accepted"]);
    let (status, _) = h.get_json("/v1/clicks/Cj0-degraded").await;
    assert_eq!(status, StatusCode::OK);
    // A stored page-count value the deriver cannot merge with, and a page view to merge.
    let derived = rusqlite::Connection::open(h.dir.join("utt.db-derived")).unwrap();
    derived.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    derived.execute("UPDATE click_pages SET pages = x'07'", []).unwrap();
    let a = h
        .post(&batch(&[event(2, Some("v1"), T0 + 1, vec![c], pageview())]))
        .await;
    assert_eq!(a.statuses(), ["accepted"]);
    let health = || async {
        let (status, v) = h.get_json("/healthz").await;
        assert_eq!(
            status,
            StatusCode::OK,
            "a failing deriver does not take the collector out of service"
        );
        v
    };
    let mut tries = 0;
    let v = loop {
        let v = health().await;
        if v["status"] == "degraded" {
            break v;
        }
        tries += 1;
        assert!(tries < 500, "never reported degraded: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(v["problem"].as_str().unwrap().contains("derived tables"), "{v}");
    let m = h.send("GET", "/metrics", &[], "").await;
    for line in ["utt_derive_failing 1\n", "utt_derive_lag_events 1\n"] {
        assert!(m.body.contains(line), "missing {line:?} in\n{}", m.body);
    }
    assert!(!m.body.contains("utt_derive_failures_total 0\n"), "{}", m.body);
    assert_eq!(h.events(), 2, "the events are stored meanwhile");
    // The cause removed, the next retry (within a second) derives what waited.
    derived.execute("DELETE FROM click_pages", []).unwrap();
    let mut tries = 0;
    while health().await["status"] != "ok" {
        tries += 1;
        assert!(tries < 500, "never recovered");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let m = h.send("GET", "/metrics", &[], "").await;
    assert!(m.body.contains("utt_derive_failing 0\n"), "{}", m.body);
}

#[tokio::test]
async fn stopped_writer_answers_503() {
    let h = Harness::new();
    h.state.writer.close().await;
    let body = batch(&[event(1, Some("v"), T0, vec![], pageview())]);
    let headers = [("content-type", "text/plain"), ("origin", "http://localhost:5173")];
    let a = h.send("POST", "/v1/events", &headers, &body).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.header("retry-after"), Some("5"));
    // The tag on the shop's origin can read how long to wait.
    assert_eq!(a.header("access-control-allow-origin"), Some("http://localhost:5173"));
    assert_eq!(a.header("access-control-expose-headers"), Some("Retry-After"));
    let (status, _) = h.get_json("/healthz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(h.events(), 0);
}

/// The value of an unlabelled metric line.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

/// Polls `/healthz` until `done` holds for its status and body (at most 30 s).
async fn health_until(
    h: &Harness,
    what: &str,
    done: impl Fn(StatusCode, &serde_json::Value) -> bool,
) -> serde_json::Value {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (status, v) = h.get_json("/healthz").await;
        if done(status, &v) {
            return v;
        }
        assert!(std::time::Instant::now() < until, "/healthz never {what}: {status} {v}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A full disk: every batch is refused with a 500, `/healthz` answers 503 with the reason and
/// `/metrics` counts the failed commits and answers; once space is freed the collector sees by
/// itself (a probe, no event sent) that it can commit again.
#[tokio::test]
async fn a_full_disk_shows_in_health_and_metrics_until_it_recovers_by_itself() {
    let disk = Tmpfs::mount("4m");
    let h = Harness::with_db(&disk.join("utt.db"));
    let mut n = 0;
    let mut page_views = |count: u64| {
        let events: Vec<String> = (0..count)
            .map(|_| {
                n += 1;
                let kind = utt::core::wire::Kind::PageView {
                    title: "t".repeat(500),
                    props: None,
                };
                let url = format!("https://shop.example/p?q={}", "u".repeat(1500));
                event_on(n, Some("v1"), T0 + n, vec![], kind, &url, "")
            })
            .collect();
        batch(&events)
    };
    assert_eq!(h.post(&page_views(1)).await.statuses(), ["accepted"]);
    let filler = disk.fill();
    let mut failed = None;
    for _ in 0..100 {
        let a = h.post(&page_views(80)).await;
        if a.status.is_server_error() {
            failed = Some(a);
            break;
        }
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }
    let failed = failed.expect("a full disk never failed a commit");
    assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", failed.body);
    let stored = h.events();
    for _ in 0..3 {
        assert_eq!(h.post(&page_views(80)).await.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
    assert_eq!(h.events(), stored, "nothing of a failed batch is stored");

    let (status, v) = h.get_json("/healthz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["status"], "failing", "{v}");
    assert!(v["problem"].as_str().unwrap().contains("cannot commit"), "{v}");
    assert!(v["error"].as_str().unwrap().contains("full"), "{v}");
    let m = h.send("GET", "/metrics", &[], "").await.body;
    assert_eq!(metric(&m, "utt_store_failing"), 1, "{m}");
    assert!(metric(&m, "utt_writer_commit_failures_total") >= 4, "{m}");
    let class = |class: &str| format!("utt_http_responses_total{{route=\"/v1/events\",class=\"{class}\"}}");
    assert!(metric(&m, &class("5xx")) >= 4, "{m}");
    assert!(metric(&m, &class("2xx")) >= 1, "{m}");
    assert!(metric(&m, "utt_writer_queue_depth") == 0, "{m}");
    // Still failing when probed (a second later), as long as the disk is full.
    let v = health_until(&h, "probed", |_, v| v["failingForSeconds"].as_u64() >= Some(2)).await;
    assert_eq!(v["status"], "failing", "{v}");

    std::fs::remove_file(filler).unwrap();
    let v = health_until(&h, "recovered", |status, _| status == StatusCode::OK).await;
    assert!(v["status"] == "ok" || v["status"] == "degraded", "{v}");
    let m = h.send("GET", "/metrics", &[], "").await.body;
    assert_eq!(metric(&m, "utt_store_failing"), 0, "{m}");
    assert_eq!(h.post(&page_views(80)).await.statuses(), vec!["accepted"; 80]);
    // The deriver, which could not write either, catches up too.
    health_until(&h, "ok", |status, v| status == StatusCode::OK && v["status"] == "ok").await;
}

/// A database file removed under the running collector: SQLite would go on committing to the
/// deleted file, and every acknowledged event would be gone at the next start. Commits are
/// refused instead, and `/healthz` says why.
#[tokio::test]
async fn a_removed_database_is_refused_and_shown_in_health() {
    let h = Harness::new();
    let one = |n| batch(&[event(n, Some("v1"), T0, vec![], pageview())]);
    assert_eq!(h.post(&one(1)).await.statuses(), ["accepted"]);
    std::fs::remove_file(h.dir.join("utt.db")).unwrap();
    let (status, v) = h.get_json("/healthz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(v["error"].as_str().unwrap().contains("is gone"), "{v}");
    let a = h.post(&one(2)).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", a.body);
    let m = h.send("GET", "/metrics", &[], "").await.body;
    assert_eq!(metric(&m, "utt_writer_commit_failures_total"), 1, "{m}");
    assert_eq!(metric(&m, "utt_store_failing"), 1, "{m}");
}

/// Static files through tower-http's ServeDir: the folders in order, MIME types, cache headers,
/// the precompressed `.br`/`.gz` only for clients that accept them, `ETag`/`Last-Modified` and
/// `304`, hidden files and paths out of the folder refused with a JSON 404.
#[tokio::test]
async fn static_files() {
    let files = TempDir::new("www");
    let dist = TempDir::new("dist");
    std::fs::write(files.join("index.html"), "<h1>demo</h1>").unwrap();
    std::fs::create_dir(files.join("debug")).unwrap();
    std::fs::write(files.join("debug/index.html"), "debug").unwrap();
    std::fs::write(files.join(".secret"), "no").unwrap();
    std::fs::write(files.join("site.css"), "body{}").unwrap();
    std::fs::write(dist.join("utt_bg.wasm"), b"\0asm").unwrap();
    std::fs::write(dist.join("utt_bg.wasm.br"), "brotli bytes").unwrap();
    std::fs::write(dist.join("utt_bg.wasm.gz"), "gzip bytes").unwrap();
    std::fs::write(dist.join("utt.js"), "export {}").unwrap();
    std::fs::write(dist.join("index.html"), "shadowed").unwrap();
    let h = Harness::with(Config::demo(), vec![files.0.clone(), dist.0.clone()]);
    let wasm = "application/wasm";
    let long = Some("public, max-age=60");
    // (path, Accept-Encoding, status, content type, cache control, content encoding, body)
    type Case<'a> = (
        &'a str,
        &'a str,
        u16,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        &'a str,
    );
    let cases: [Case; 14] = [
        ("/", "", 200, Some("text/html"), Some("no-cache"), None, "<h1>demo</h1>"),
        ("/debug/", "", 200, Some("text/html"), Some("no-cache"), None, "debug"),
        ("/site.css", "", 200, Some("text/css"), long, None, "body{}"),
        ("/utt_bg.wasm", "", 200, Some(wasm), long, None, "\0asm"),
        ("/utt_bg.wasm", "br", 200, Some(wasm), long, Some("br"), "brotli bytes"),
        (
            "/utt_bg.wasm",
            "gzip, deflate, br",
            200,
            Some(wasm),
            long,
            Some("br"),
            "brotli bytes",
        ),
        (
            "/utt_bg.wasm",
            "gzip",
            200,
            Some(wasm),
            long,
            Some("gzip"),
            "gzip bytes",
        ),
        (
            "/utt_bg.wasm",
            "br;q=0, gzip",
            200,
            Some(wasm),
            long,
            Some("gzip"),
            "gzip bytes",
        ),
        ("/utt_bg.wasm", "deflate", 200, Some(wasm), long, None, "\0asm"),
        ("/utt.js", "br", 200, Some("text/javascript"), long, None, "export {}"),
        ("/.secret", "", 404, Some("application/json"), None, None, ""),
        ("/%2esecret", "", 404, Some("application/json"), None, None, ""),
        (
            "/%2e%2e/%2e%2e/etc/passwd",
            "",
            404,
            Some("application/json"),
            None,
            None,
            "",
        ),
        ("/missing.js", "", 404, Some("application/json"), None, None, ""),
    ];
    for (path, accept, status, ct, cache, encoding, body) in cases {
        let headers: Vec<(&str, &str)> = if accept.is_empty() {
            vec![]
        } else {
            vec![("accept-encoding", accept)]
        };
        let a = h.send("GET", path, &headers, "").await;
        let what = format!("{path} ({accept})");
        assert_eq!(a.status.as_u16(), status, "{what}: {}", a.body);
        assert_eq!(a.header("content-type"), ct, "{what}");
        assert_eq!(a.header("cache-control"), cache, "{what}");
        assert_eq!(a.header("content-encoding"), encoding, "{what}");
        if status == 200 {
            assert_eq!(a.body, body, "{what}");
            assert_eq!(a.header("x-content-type-options"), Some("nosniff"), "{what}");
            assert!(
                a.header("etag").is_some() && a.header("last-modified").is_some(),
                "{what}"
            );
        }
    }
    // Precompressed files vary with Accept-Encoding, for caches.
    let a = h.send("GET", "/utt_bg.wasm", &[], "").await;
    assert_eq!(a.header("vary"), Some("accept-encoding"));
    // Revalidation: the same file is a 304 without a body, for its ETag or its date.
    let etag = a.header("etag").unwrap().to_string();
    let date = a.header("last-modified").unwrap().to_string();
    for (name, value) in [("if-none-match", etag.as_str()), ("if-modified-since", date.as_str())] {
        let again = h.send("GET", "/utt_bg.wasm", &[(name, value)], "").await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{name}");
        assert_eq!(again.body, "", "{name}");
        assert_eq!(again.header("cache-control"), long, "{name}");
    }
    let changed = h
        .send("GET", "/utt_bg.wasm", &[("if-none-match", "\"other\"")], "")
        .await;
    assert_eq!(changed.status, StatusCode::OK);
    // A folder without its slash is redirected to it (relative links then resolve in it).
    let a = h.send("GET", "/debug", &[], "").await;
    assert_eq!(a.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(a.header("location"), Some("/debug/"));
    let a = h.send("HEAD", "/utt.js", &[], "").await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, ""));
    assert_eq!(a.header("content-type"), Some("text/javascript"));
    let a = h.send("DELETE", "/index.html", &[], "").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.header("content-type"), Some("application/json"));
}

/// The read APIs name the partner of the credited click, found on the landing URL stored with
/// the page view; a changed mapping applies to the stored history at the next read.
#[tokio::test]
async fn read_apis_name_the_partner() {
    let h = Harness::new();
    let c = click("irclickid", "impact", "P1", T0 - DAY);
    let landing = event_on(
        1,
        Some("v1"),
        T0 - DAY,
        vec![c.clone()],
        pageview(),
        "https://shop.example/?irclickid=P1&irpid=1001",
        "",
    );
    let order = event(2, Some("v1"), T0, vec![c], conversion("O-P", None));
    assert_eq!(
        h.post(&batch(&[landing, order])).await.statuses(),
        ["accepted", "accepted"]
    );
    let (status, v) = h.get_json("/v1/conversions?site=demo").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let a = &v["conversions"][0]["attribution"];
    assert_eq!(
        (&a["clickId"], &a["partner"], &a["partnerName"], &a["partnerVia"]),
        (
            &"P1".into(),
            &"demo-affiliate".into(),
            &"Demo Affiliate".into(),
            &"param".into()
        )
    );
    assert_eq!(v["conversions"][0]["touchpoints"][0]["partner"], "demo-affiliate");
    let (status, v) = h.get_json("/v1/clicks/P1?site=demo").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["conversions"][0]["partner"], "demo-affiliate");
    assert_eq!(v["conversions"][0]["partnerName"], "Demo Affiliate");

    // The same stored events read with another mapping: the partner ID is now someone else's.
    let mut config = Config::demo();
    config.sites[0].partners.ids = [("impact:1001".to_string(), "influencer-anna".to_string())].into();
    let again = Harness {
        dir: TempDir::new("h2"),
        state: utt_collector::http::Shared::new(config, h.state.store.clone(), Vec::new()),
    };
    let (_, v) = again.get_json("/v1/conversions?site=demo").await;
    let a = &v["conversions"][0]["attribution"];
    assert_eq!(
        (&a["partner"], &a["partnerName"]),
        (&"influencer-anna".into(), &"Anna (influencer)".into())
    );
}
