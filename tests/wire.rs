//! Golden fixtures of the wire format: the events the tag writes must match the files under
//! `tests/fixtures/` byte for byte, and reading those files must give the same events back.
//! The collector's tests post the same files. `UPDATE_FIXTURES=1 cargo test --test wire`
//! rewrites them after a deliberate format change (then review the diff).
#![cfg(not(target_arch = "wasm32"))]

use utt::core::click::Click;
use utt::core::json::{self, Json};
use utt::core::wire::{self, CustomerStatus, Decimal, Event, Item, Kind, Order};

fn click(param: &str, network: &str, value: &str, at: u64) -> Click {
    Click {
        param: param.into(),
        network: network.into(),
        value: value.into(),
        at,
        path: "/product/42".into(),
        referrer: "partner.example".into(),
        utm: vec![
            ("source".into(), "partner".into()),
            ("medium".into(), "affiliate".into()),
        ],
    }
}

fn base(id: &str, at: u64, kind: Kind) -> Event {
    Event {
        id: id.into(),
        at,
        visitor: Some("5b0e3f0a-6c1d-4f3e-9a8b-2c7d1e0f4a5b".into()),
        session: Some("0c9a7e52-3b1f-4d6a-8e2c-9f1b3d5a7c9e".into()),
        url: "https://shop.example/product/42?irclickid=Xy12abc".into(),
        referrer: "https://partner.example/review".into(),
        clicks: vec![
            click("gclid", "google", "Cj0KCQiA_BwE", 1764000000000),
            click("irclickid", "impact", "Xy12abc", 1764150000000),
        ],
        kind,
    }
}

fn obj(text: &str) -> Json {
    json::parse(text).unwrap()
}

fn events() -> Vec<(&'static str, Event)> {
    vec![
        (
            "pageview",
            base(
                "019ac0f1-2a00-7c3d-8e4f-0a1b2c3d4e5f",
                1764150000000,
                Kind::PageView {
                    title: "Trail shoe 42 — Shop".into(),
                    props: Some(obj(r#"{"section":"product"}"#)),
                },
            ),
        ),
        (
            "conversion",
            base(
                "019ac0f1-2a01-7c3d-8e4f-0a1b2c3d4e60",
                1764150060000,
                Kind::Conversion(Order {
                    order_id: "ORD-1001".into(),
                    amount: Some(Decimal {
                        text: "129.90".into(),
                        quoted: true,
                    }),
                    currency: Some("EUR".into()),
                    items: vec![
                        Item {
                            sku: Some("SHOE-42".into()),
                            name: Some("Trail shoe".into()),
                            price: Some(Decimal {
                                text: "119.90".into(),
                                quoted: false,
                            }),
                            quantity: Some(1),
                            category: Some("shoes".into()),
                        },
                        Item {
                            sku: Some("SOCK-1".into()),
                            name: None,
                            price: Some(Decimal {
                                text: "5".into(),
                                quoted: false,
                            }),
                            quantity: Some(2),
                            category: None,
                        },
                    ],
                    promo_code: Some("SPRING10".into()),
                    customer_status: Some(CustomerStatus::New),
                    discount: Some(Decimal {
                        text: "10.00".into(),
                        quoted: true,
                    }),
                    custom: Some(obj(r#"{"channel":"web","giftWrap":true}"#)),
                }),
            ),
        ),
        (
            "identify",
            base(
                "019ac0f1-2a02-7c3d-8e4f-0a1b2c3d4e61",
                1764150030000,
                Kind::Identify {
                    customer_id: Some("cust-77".into()),
                    // SHA-256 of "jane.doe@example.com", the normalised form of " Jane.Doe@Example.com ".
                    email_hash: Some("86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d".into()),
                },
            ),
        ),
        (
            "event",
            base(
                "019ac0f1-2a03-7c3d-8e4f-0a1b2c3d4e62",
                1764150040000,
                Kind::Custom {
                    name: "newsletter_signup".into(),
                    props: Some(obj(r#"{"list":"weekly"}"#)),
                },
            ),
        ),
        (
            "consent",
            base(
                "019ac0f1-2a04-7c3d-8e4f-0a1b2c3d4e63",
                1764150001000,
                Kind::Consent { granted: true },
            ),
        ),
        (
            "conversion-minimal",
            Event {
                id: "019ac0f1-2a05-7c3d-8e4f-0a1b2c3d4e64".into(),
                at: 1764150070000,
                visitor: None,
                session: None,
                url: "https://shop.example/thanks".into(),
                referrer: String::new(),
                clicks: vec![],
                kind: Kind::Conversion(Order {
                    order_id: "ORD-1002".into(),
                    amount: Some(Decimal {
                        text: "20".into(),
                        quoted: false,
                    }),
                    currency: Some("USD".into()),
                    items: vec![],
                    promo_code: None,
                    customer_status: None,
                    discount: None,
                    custom: None,
                }),
            },
        ),
    ]
}

fn batch_text(events: &[&Event]) -> String {
    let texts: Vec<String> = events
        .iter()
        .map(|e| {
            let mut s = String::new();
            wire::write_event(&mut s, e);
            s
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    wire::write_batch("demo", None, 1764150100000, false, &refs)
}

fn check_golden(name: &str, text: &str) {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    // Batches are stored with one event per line, so a diff shows which event changed.
    let pretty = match text.strip_suffix("]}") {
        Some(head) if text.starts_with("{\"v\":") => {
            head.replacen("\"events\":[", "\"events\":[\n  ", 1)
                .replace("},{\"id\"", "},\n  {\"id\"")
                + "\n]}\n"
        }
        _ => format!("{text}\n"),
    };
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        std::fs::write(&path, &pretty).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(pretty, want, "{name}: the written wire format differs from the fixture");
}

#[test]
fn every_event_kind_matches_its_golden_fixture_and_reads_back() {
    for (name, event) in events() {
        let text = batch_text(&[&event]);
        check_golden(&format!("batch-{name}"), &text);
        let batch = wire::read_batch(&text).unwrap();
        assert_eq!(batch.site, "demo");
        assert_eq!(batch.sent_at, 1764150100000);
        assert_eq!(batch.events.len(), 1);
        assert_eq!(batch.events[0].as_ref().unwrap(), &event, "{name} did not read back");
    }
}

#[test]
fn a_journey_batch_reads_back_in_order() {
    let all = events();
    let refs: Vec<&Event> = all.iter().map(|(_, e)| e).collect();
    let text = batch_text(&refs);
    check_golden("batch-journey", &text);
    let batch = wire::read_batch(&text).unwrap();
    let got: Vec<&Event> = batch.events.iter().map(|r| r.as_ref().unwrap()).collect();
    assert_eq!(got, refs);
}

#[test]
fn envelope_errors_refuse_the_whole_batch() {
    let cases = [
        ("", "body"),
        ("[]", "body"),
        ("{\"v\":2,\"site\":\"demo\",\"sentAt\":1,\"events\":[{}]}", "v"),
        ("{\"v\":1,\"sentAt\":1,\"events\":[{}]}", "site"),
        ("{\"v\":1,\"site\":\"<script>\",\"sentAt\":1,\"events\":[{}]}", "site"),
        ("{\"v\":1,\"site\":\"demo\",\"events\":[{}]}", "sentAt"),
        ("{\"v\":1,\"site\":\"demo\",\"sentAt\":1,\"events\":[]}", "events"),
        ("{\"v\":1,\"site\":\"demo\",\"sentAt\":1,\"events\":{}}", "events"),
        (
            "{\"v\":1,\"site\":\"demo\",\"sentAt\":1,\"webdriver\":\"yes\",\"events\":[{}]}",
            "webdriver",
        ),
        (
            "{\"v\":1,\"site\":\"demo\",\"sentAt\":1,\"webdriver\":1,\"events\":[{}]}",
            "webdriver",
        ),
    ];
    for (text, field) in cases {
        assert_eq!(wire::read_batch(text).unwrap_err().field, field, "{text}");
    }
    let too_many = format!(
        "{{\"v\":1,\"site\":\"demo\",\"sentAt\":1,\"events\":[{}{{}}]}}",
        "{},".repeat(wire::limits::MAX_EVENTS)
    );
    assert_eq!(wire::read_batch(&too_many).unwrap_err().field, "events");
}

/// A browser driven by automation (`navigator.webdriver`) says so once per batch: `"webdriver":true`
/// after `sentAt`, pinned by its fixture. Without the member (every other fixture, and any tag
/// from before it) or with `false` or `null`, the batch is not flagged by it.
#[test]
fn the_webdriver_flag_is_written_once_per_batch_and_read_back() {
    let (_, event) = events().remove(0);
    let mut body = String::new();
    wire::write_event(&mut body, &event);
    let text = wire::write_batch("demo", None, 1764150100000, true, &[&body]);
    check_golden("batch-webdriver", &text);
    assert!(wire::read_batch(&text).unwrap().webdriver);
    let plain = batch_text(&[&event]);
    assert!(!plain.contains("webdriver"));
    assert!(!wire::read_batch(&plain).unwrap().webdriver);
    for member in ["false", "null"] {
        let t = text.replace("\"webdriver\":true", &format!("\"webdriver\":{member}"));
        assert!(!wire::read_batch(&t).unwrap().webdriver, "{t}");
    }
}

/// Takes the conversion fixture's event and changes one member, to see the event refused for
/// the right field.
fn mutate(path: &[&str], value: Option<&str>) -> Result<Event, wire::Invalid> {
    let text = std::fs::read_to_string(format!(
        "{}/tests/fixtures/batch-conversion.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let batch = json::parse(&text).unwrap();
    let mut event = batch.get("events").unwrap().as_arr().unwrap()[0].clone();
    fn set(v: &mut Json, path: &[&str], value: Option<&str>) {
        let Json::Obj(members) = v else { panic!("not an object") };
        if path.len() == 1 {
            members.retain(|(k, _)| k != path[0]);
            if let Some(t) = value {
                members.push((path[0].to_string(), json::parse(t).unwrap()));
            }
        } else {
            let (_, child) = members.iter_mut().find(|(k, _)| k == path[0]).unwrap();
            set(child, &path[1..], value);
        }
    }
    set(&mut event, path, value);
    wire::read_event(&event.to_text())
}

#[test]
fn bad_events_are_refused_for_the_right_field() {
    let long = format!("\"{}\"", "a".repeat(3000));
    let cases: Vec<(&[&str], Option<&str>, &str)> = vec![
        (&["id"], None, "id"),
        (&["id"], Some("\"not-a-uuid\""), "id"),
        (&["id"], Some("\"'; DROP TABLE events;--\""), "id"),
        (&["type"], Some("\"purchase\""), "type"),
        (&["at"], Some("-1"), "at"),
        (&["at"], Some("\"yesterday\""), "at"),
        (&["url"], None, "url"),
        (&["url"], Some(&long), "url"),
        (&["clicks"], Some("[{\"param\":\"irclickid\",\"network\":\"impact\",\"value\":\"<img src=x onerror=alert(1)>\",\"at\":1,\"path\":\"/\"}]"), "clicks.value"),
        (&["clicks"], Some("\"x\""), "clicks"),
        (&["order"], None, "order"),
        (&["order", "orderId"], None, "order.orderId"),
        (&["order", "orderId"], Some("\"\""), "order.orderId"),
        (&["order", "amount"], Some("1e21"), "order.amount"),
        (&["order", "amount"], Some("-5"), "order.amount"),
        (&["order", "amount"], Some("\"12,50\""), "order.amount"),
        (&["order", "amount"], Some("true"), "order.amount"),
        (&["order", "currency"], Some("\"eur\""), "order.currency"),
        (&["order", "currency"], Some("\"EURO\""), "order.currency"),
        (&["order", "items"], Some("[{\"quantity\":1.5}]"), "order.items.quantity"),
        (&["order", "items"], Some("{}"), "order.items"),
        (&["order", "customerStatus"], Some("\"vip\""), "order.customerStatus"),
        (&["order", "custom"], Some("[1]"), "order.custom"),
        (&["order", "promoCode"], Some("\"a\\u0000b\""), "order.promoCode"),
    ];
    for (path, value, field) in cases {
        assert_eq!(mutate(path, value).unwrap_err().field, field, "{path:?} = {value:?}");
    }
    // And the untouched fixture is fine, a numeric orderId is kept as its text.
    assert!(mutate(&["order", "note"], None).is_ok());
    let Kind::Conversion(o) = mutate(&["order", "orderId"], Some("1001")).unwrap().kind else {
        panic!()
    };
    assert_eq!(o.order_id, "1001");
}

#[test]
fn a_bad_event_refuses_only_itself() {
    let text = std::fs::read_to_string(format!(
        "{}/tests/fixtures/batch-journey.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let text = text.replacen("\"type\":\"event\"", "\"type\":\"bogus\"", 1);
    let batch = wire::read_batch(&text).unwrap();
    let bad: Vec<_> = batch.events.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].0.as_deref(), Some("019ac0f1-2a03-7c3d-8e4f-0a1b2c3d4e62"));
    assert_eq!(bad[0].1.field(), "type");
    assert_eq!(batch.events.iter().filter(|r| r.is_ok()).count(), 5);
}

#[test]
fn a_refused_click_id_in_the_url_or_referrer_refuses_only_its_event() {
    let text = std::fs::read_to_string(format!(
        "{}/tests/fixtures/batch-journey.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let url = "\"url\":\"https://shop.example/product/42?irclickid=Xy12abc\"";
    let referrer = "\"referrer\":\"https://partner.example/review\"";
    let refused =
        |field: &str, param: &str, why: &str| format!("{field}: carries a refused click ID in {param} ({why})");
    // (member replaced in the first event, its new value, the reason it is refused for)
    let cases = [
        (
            url,
            "/p?irclickid=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E",
            Some(refused("url", "irclickid", "character outside the safe set")),
        ),
        (url, "/p?q=1&gclid=", Some(refused("url", "gclid", "empty value"))),
        (url, "/p?gclid", Some(refused("url", "gclid", "empty value"))),
        (
            url,
            "/p?%67clid=ok&GCLID=a%2",
            Some(refused("url", "gclid", "malformed percent-encoding")),
        ),
        (
            url,
            "/p?ransiteid=caf%C3%A9",
            Some(refused("url", "ranSiteID", "character outside the safe set")),
        ),
        (
            referrer,
            "https://partner.example/r?msclkid=a%20b",
            Some(refused("referrer", "msclkid", "character outside the safe set")),
        ),
        // A valid click ID beside the site's own parameters, whatever their values.
        (url, "/p?irclickid=Xy12abc&ref=footer&q=%3Cb%3E", None),
        // A fragment is not a query.
        (url, "/p#gclid=%3Cx%3E", None),
        // A site's own click parameters are not known to the reader: only the built-in ones.
        (url, "/p?aff_id=%3Cx%3E", None),
    ];
    for (member, value, want) in cases {
        let (name, _) = member.split_once(':').unwrap();
        let text = text.replacen(member, &format!("{name}:\"{value}\""), 1);
        let batch = wire::read_batch(&text).unwrap();
        match &want {
            Some(reason) => {
                let (id, why) = batch.events[0].as_ref().unwrap_err();
                assert_eq!(id.as_deref(), Some("019ac0f1-2a00-7c3d-8e4f-0a1b2c3d4e5f"), "{value}");
                assert_eq!(&why.to_string(), reason, "{value}");
                assert_eq!(why.field(), name.trim_matches('"'), "{value}");
            }
            None => assert!(batch.events[0].is_ok(), "{value}: {:?}", batch.events[0]),
        }
        assert!(
            batch.events[1..].iter().all(Result::is_ok),
            "{value}: the others are read"
        );
        // A stored event is read again with read_event, which keeps reading one stored before
        // the rule.
        let v = json::parse(&text).unwrap();
        let list = v.get("events").and_then(Json::as_arr).unwrap();
        assert!(wire::read_event(&list[0].to_text()).is_ok(), "{value}");
    }
}

#[test]
fn outcomes_round_trip() {
    use wire::{Outcome, Status};
    let outcomes = vec![
        Outcome {
            id: Some("019ac0f1-2a00-7c3d-8e4f-0a1b2c3d4e5f".into()),
            status: Status::Accepted,
            reason: None,
        },
        Outcome {
            id: Some("019ac0f1-2a01-7c3d-8e4f-0a1b2c3d4e60".into()),
            status: Status::Duplicate,
            reason: None,
        },
        Outcome {
            id: None,
            status: Status::Rejected,
            reason: Some("id: must be a lowercase UUID".into()),
        },
    ];
    let text = wire::write_outcomes(&outcomes);
    check_golden("answer", &text);
    assert_eq!(wire::read_outcomes(&text), Some(outcomes));
    assert_eq!(wire::read_outcomes("<html>502</html>"), None);
    assert_eq!(wire::read_outcomes("{\"results\":[{\"status\":\"maybe\"}]}"), None);
}

/// The checks a batch gets beyond those of a stored event: `visitor` and `session` must be
/// lowercase UUIDs, and `props` and `order.custom` hold no control character in a key or a
/// string, however deep. Each refuses only its event, named by its ID; a stored event is still
/// read (it may have been stored before the check).
#[test]
fn batches_refuse_ids_that_are_not_uuids_and_control_characters_in_free_values() {
    let text = std::fs::read_to_string(format!(
        "{}/tests/fixtures/batch-journey.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let visitor = "\"visitor\":\"5b0e3f0a-6c1d-4f3e-9a8b-2c7d1e0f4a5b\"";
    let session = "\"session\":\"0c9a7e52-3b1f-4d6a-8e2c-9f1b3d5a7c9e\"";
    let props = "\"props\":{\"section\":\"product\"}";
    let list = "\"props\":{\"list\":\"weekly\"}";
    let custom = "\"custom\":{\"channel\":\"web\",\"giftWrap\":true}";
    // (member replaced in the first event carrying it, its replacement, the reason, or none)
    let cases = [
        (visitor, "\"visitor\":\"v1\"", Some("visitor: must be a lowercase UUID")),
        (
            visitor,
            "\"visitor\":\"5B0E3F0A-6C1D-4F3E-9A8B-2C7D1E0F4A5B\"",
            Some("visitor: must be a lowercase UUID"),
        ),
        (
            visitor,
            "\"visitor\":\"5b0e3f0a6c1d4f3e9a8b2c7d1e0f4a5b\"",
            Some("visitor: must be a lowercase UUID"),
        ),
        (
            session,
            "\"session\":\"s-1\"",
            Some("session: must be a lowercase UUID"),
        ),
        (visitor, "\"visitor\":null", None),
        (
            props,
            "\"props\":{\"sec\\u0001tion\":\"product\"}",
            Some("props: must not contain control characters"),
        ),
        (
            props,
            "\"props\":{\"section\":\"pro\\nduct\"}",
            Some("props: must not contain control characters"),
        ),
        (
            props,
            "\"props\":{\"section\":\"pro\u{85}duct\"}",
            Some("props: must not contain control characters"),
        ),
        (
            props,
            "\"props\":{\"section\":\"pro\u{7f}duct\"}",
            Some("props: must not contain control characters"),
        ),
        (
            props,
            "\"props\":{\"a\":[1,{\"b\":[\"\\t\"]}]}",
            Some("props: must not contain control characters"),
        ),
        (
            props,
            "\"props\":{\"a\":[1,{\"b\":[\"\\\\t ©\"]},null,true,2.50]}",
            None,
        ),
        (
            list,
            "\"props\":{\"list\\r\":\"weekly\"}",
            Some("props: must not contain control characters"),
        ),
        (
            custom,
            "\"custom\":{\"note\":\"a\\u001fb\"}",
            Some("order.custom: must not contain control characters"),
        ),
    ];
    for (member, value, want) in cases {
        let changed = text.replacen(member, value, 1);
        assert_ne!(changed, text, "{member}");
        let batch = wire::read_batch(&changed).unwrap();
        let i = changed.lines().position(|l| l.contains(value)).unwrap() - 1;
        let others = batch.events.iter().enumerate().filter(|(j, _)| *j != i);
        assert!(others.clone().all(|(_, e)| e.is_ok()), "{value}: the others are read");
        match want {
            Some(reason) => {
                let (id, why) = batch.events[i].as_ref().unwrap_err();
                assert!(id.as_deref().is_some_and(wire::is_uuid), "{value}: {id:?}");
                assert_eq!(why.to_string(), reason, "{value}");
            }
            None => assert!(batch.events[i].is_ok(), "{value}: {:?}", batch.events[i]),
        }
        // As a stored event, it is read.
        let event = json::parse(&changed).unwrap().get("events").unwrap().as_arr().unwrap()[i].to_text();
        assert!(wire::read_event(&event).is_ok(), "{value}");
    }
}
