//! Journeys through the tracker with in-memory stores standing in for the cookie jar and
//! localStorage: what a visitor does, and what the tag stores and sends because of it.
#![cfg(not(target_arch = "wasm32"))]

use utt::core::command;
use utt::core::config::{Config, StorageMode};
use utt::core::json::{self, Json};
use utt::core::store::{self, MemoryStore, Store};
use utt::core::tracker::{keys, Page, Random, Reply, Tracker};
use utt::core::wire;

const DAY: u64 = 86_400_000;
const T0: u64 = 1_764_150_000_000;

struct Counter(u8);
impl Random for Counter {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 = self.0.wrapping_add(37);
            *b = self.0;
        }
    }
}

/// A browser profile: its two stores survive "page loads"; each load starts a new tracker.
struct Browser {
    cookie: MemoryStore,
    local: MemoryStore,
    rng: Counter,
}

impl Browser {
    fn new() -> Browser {
        Browser {
            cookie: MemoryStore::default(),
            local: MemoryStore::default(),
            rng: Counter(0),
        }
    }

    fn load(&mut self, config: &str, url: &str, now: u64) -> Tracker {
        let config = Config::from_json(&json::parse(config).unwrap()).unwrap();
        let (loaded, cb, lb) = store::load(config.storage, &self.cookie, &self.local);
        let mut t = Tracker::start(config, page(url), loaded, now, &mut self.rng);
        t.storage_failed(cb, lb);
        self.persist(&mut t, now);
        t
    }

    fn persist(&self, t: &mut Tracker, now: u64) -> usize {
        let writes = t.take_writes(now);
        let (cb, lb) = store::apply(&writes, t.storage(), t.cookie_max_age(now), &self.cookie, &self.local);
        t.storage_failed(cb, lb);
        writes.len()
    }

    fn run(&mut self, t: &mut Tracker, call: &str, url: &str, now: u64) -> Reply {
        let cmd = command::parse(&mut json::parse(call).unwrap()).unwrap();
        let reply = t.command(cmd, page(url), now, &mut self.rng);
        self.persist(t, now);
        reply
    }
}

fn page(url: &str) -> Page<'_> {
    Page {
        url,
        referrer: "https://partner.example/post",
        title: "Shop",
        ua: "Mozilla/5.0 (test)",
    }
}

const CONFIG: &str = r#"{"site":"demo","collector":"https://collect.shop.example"}"#;

/// The events a batch would carry now, decoded as the collector would.
fn sent(t: &mut Tracker, now: u64) -> Vec<wire::Event> {
    let Some(out) = t.next_batch(now) else { return vec![] };
    assert_eq!(out.url, "https://collect.shop.example/v1/events");
    let batch = wire::read_batch(&out.body).expect("the tag's batches are valid wire format");
    batch.events.into_iter().map(|e| e.unwrap()).collect()
}

fn accept_all(t: &mut Tracker, now: u64) -> usize {
    let Some(out) = t.next_batch(now) else { return 0 };
    let outcomes: Vec<wire::Outcome> = out
        .ids
        .iter()
        .map(|id| wire::Outcome {
            id: Some(id.clone()),
            status: wire::Status::Accepted,
            reason: None,
        })
        .collect();
    t.settle(&out, 200, Some(&wire::write_outcomes(&outcomes)), None, now, 0);
    out.ids.len()
}

#[test]
fn a_partner_click_is_captured_stored_twice_and_carried_by_every_event() {
    let mut b = Browser::new();
    let mut t = b.load(
        CONFIG,
        "https://shop.example/p/42?irclickid=Xy12abc&utm_source=partner",
        T0,
    );
    let rec = b.cookie.get(keys::RECORD).unwrap().expect("cookie written");
    assert_eq!(
        Some(rec.clone()),
        b.local.get(keys::RECORD).unwrap(),
        "cookie and localStorage hold the same record"
    );
    assert!(
        b.local.get(keys::QUEUE).unwrap().unwrap().contains("Xy12abc"),
        "the page view is persisted before it is sent"
    );
    let events = sent(&mut t, T0);
    assert_eq!(events.len(), 1);
    let pv = &events[0];
    assert!(matches!(pv.kind, wire::Kind::PageView { .. }));
    assert_eq!(pv.visitor.as_deref(), Some(t.record().visitor.as_str()));
    assert_eq!(pv.clicks.len(), 1);
    assert_eq!(
        (pv.clicks[0].param.as_str(), pv.clicks[0].network.as_str()),
        ("irclickid", "impact")
    );
    assert_eq!(pv.clicks[0].referrer, "partner.example");
    assert_eq!(pv.clicks[0].utm, [("source".to_string(), "partner".to_string())]);
    assert_eq!(t.cookie_max_age(T0), 30 * DAY / 1000);

    // Next page, a day later: same visitor, the click is still in force and not captured again.
    let mut t2 = b.load(CONFIG, "https://shop.example/cart", T0 + DAY);
    assert_eq!(t2.record().visitor, t.record().visitor);
    assert_eq!(t2.record().clicks.len(), 1);
    assert_eq!(
        t2.cookie_max_age(T0 + DAY),
        29 * DAY / 1000,
        "only a new click refreshes the expiry"
    );
    // The first page's view was never acknowledged, so it is still queued and goes again.
    assert_eq!(sent(&mut t2, T0 + DAY).len(), 2);
}

#[test]
fn every_click_of_the_journey_is_kept_first_and_last_distinguishable() {
    let mut b = Browser::new();
    b.load(CONFIG, "https://shop.example/?gclid=G1", T0);
    b.load(CONFIG, "https://shop.example/?gclid=G1", T0 + 1000); // a reload is not a new click
    b.load(CONFIG, "https://shop.example/?irclickid=I2", T0 + DAY);
    let mut t = b.load(CONFIG, "https://shop.example/?awc=A3", T0 + 2 * DAY);
    let values: Vec<_> = t.record().clicks.iter().map(|c| c.value.as_str()).collect();
    assert_eq!(values, ["G1", "I2", "A3"]);
    let state = json::parse(&t.state(b.cookie.get(keys::RECORD).unwrap().as_deref(), None, T0 + 2 * DAY)).unwrap();
    let clicks = state.get("clicks").unwrap().as_arr().unwrap();
    let flags: Vec<_> = clicks
        .iter()
        .map(|c| {
            (
                c.get("first") == Some(&Json::Bool(true)),
                c.get("last") == Some(&Json::Bool(true)),
                c.get("inCookie") == Some(&Json::Bool(true)),
                c.get("inLocalStorage") == Some(&Json::Bool(true)),
            )
        })
        .collect();
    assert_eq!(
        flags,
        [
            (true, false, true, false),
            (false, false, true, false),
            (false, true, true, false)
        ]
    );
    // Thirty days after the first click it has expired; the others remain.
    accept_all(&mut t, T0 + 2 * DAY);
    let t = b.load(CONFIG, "https://shop.example/", T0 + 30 * DAY);
    let values: Vec<_> = t.record().clicks.iter().map(|c| c.value.as_str()).collect();
    assert_eq!(values, ["I2", "A3"]);
}

#[test]
fn hostile_click_ids_are_reported_never_stored_or_sent() {
    let mut b = Browser::new();
    let url = "https://shop.example/?irclickid=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E&gclid=%E0%A4&fbclid=ok_1";
    let mut t = b.load(
        r#"{"site":"demo","collector":"https://collect.shop.example","debug":true}"#,
        url,
        T0,
    );
    assert_eq!(
        t.record().clicks.iter().map(|c| c.value.as_str()).collect::<Vec<_>>(),
        ["ok_1"]
    );
    let state = t.state(None, None, T0);
    assert!(!state.contains("onerror") && !state.contains("<img"), "{state}");
    let rejected = json::parse(&state).unwrap().get("rejected").unwrap().to_text();
    assert_eq!(
        rejected,
        r#"[{"param":"irclickid","reason":"character outside the safe set"},{"param":"gclid","reason":"malformed percent-encoding"}]"#
    );
    assert!(t
        .take_notes()
        .iter()
        .any(|n| n.contains("rejected click ID in irclickid")));
    let stored = b.cookie.get(keys::RECORD).unwrap().unwrap() + &b.local.get(keys::QUEUE).unwrap().unwrap();
    assert!(!stored.contains("onerror") && !stored.contains("%E0%A4"), "{stored}");
    let events = sent(&mut t, T0);
    assert_eq!(
        events[0].url, "https://shop.example/?fbclid=ok_1",
        "refused parameters are cut from the URL too"
    );
    assert_eq!(
        t.address(),
        "https://shop.example/?fbclid=ok_1",
        "and from the address bar"
    );
}

#[test]
fn an_order_is_sent_once_even_across_reloads() {
    let mut b = Browser::new();
    let mut t = b.load(CONFIG, "https://shop.example/thanks", T0);
    let order = r#"["conversion",{"orderId":"ORD-1","amount":"49.90","currency":"EUR"}]"#;
    assert!(matches!(
        b.run(&mut t, order, "https://shop.example/thanks", T0),
        Reply::Queued(_)
    ));
    assert_eq!(
        b.run(&mut t, order, "https://shop.example/thanks", T0),
        Reply::Duplicate("ORD-1".into())
    );
    // The thank-you page is reloaded.
    let mut t = b.load(CONFIG, "https://shop.example/thanks", T0 + 5000);
    assert_eq!(
        b.run(&mut t, order, "https://shop.example/thanks", T0 + 5000),
        Reply::Duplicate("ORD-1".into())
    );
    let conversions: Vec<_> = sent(&mut t, T0 + 5000)
        .into_iter()
        .filter(|e| matches!(e.kind, wire::Kind::Conversion(_)))
        .collect();
    assert_eq!(conversions.len(), 1);
    let wire::Kind::Conversion(o) = &conversions[0].kind else {
        unreachable!()
    };
    assert_eq!(
        o.amount.as_ref().unwrap().text,
        "49.90",
        "the amount is carried exactly as given"
    );
}

#[test]
fn while_consent_is_denied_nothing_is_stored_and_events_wait() {
    let mut b = Browser::new();
    let cfg = r#"{"site":"demo","collector":"https://collect.shop.example","consent":"denied"}"#;
    let url = "https://shop.example/p?irclickid=Xy12";
    let mut t = b.load(cfg, url, T0);
    assert_eq!(b.cookie.get(keys::RECORD).unwrap(), None);
    assert_eq!(b.local.get(keys::RECORD).unwrap(), None);
    assert_eq!(b.local.get(keys::QUEUE).unwrap(), None);
    assert!(matches!(
        b.run(&mut t, r#"["conversion",{"orderId":"O1"}]"#, url, T0),
        Reply::Held(_)
    ));
    assert!(sent(&mut t, T0).is_empty(), "nothing is sent while denied");
    // Granted: the held page view and conversion go, with the visitor and the click.
    b.run(&mut t, r#"["consent","granted"]"#, url, T0 + 10);
    let events = sent(&mut t, T0 + 10);
    let kinds: Vec<_> = events.iter().map(|e| wire::type_name(&e.kind)).collect();
    assert_eq!(kinds, ["conversion", "consent", "pageview"]);
    assert!(events.iter().all(|e| e.visitor.is_some() && e.clicks.len() == 1));
    assert!(b.cookie.get(keys::RECORD).unwrap().is_some());
    assert_eq!(b.cookie.get(keys::CONSENT).unwrap().as_deref(), Some("granted"));
    // The grant is remembered on the next page, whatever the default.
    let t = b.load(cfg, "https://shop.example/next", T0 + 20);
    assert!(t.consent());
}

#[test]
fn withdrawing_consent_removes_what_was_stored_and_sends_only_an_anonymous_denial() {
    let mut b = Browser::new();
    let url = "https://shop.example/p?irclickid=Xy12";
    let mut t = b.load(CONFIG, url, T0);
    assert!(b.local.get(keys::QUEUE).unwrap().is_some());
    b.run(&mut t, r#"["consent","denied"]"#, url, T0 + 1);
    for k in [keys::RECORD, keys::QUEUE, keys::CONSENT] {
        assert_eq!((b.cookie.get(k).unwrap(), b.local.get(k).unwrap()), (None, None), "{k}");
    }
    let events = sent(&mut t, T0 + 1);
    assert_eq!(
        events.len(),
        1,
        "the queued page view carried identifiers and was dropped"
    );
    let e = &events[0];
    assert!(matches!(e.kind, wire::Kind::Consent { granted: false }));
    assert_eq!(
        (e.visitor.as_deref(), e.clicks.len(), e.url.as_str()),
        (None, 0, "https://shop.example/p")
    );
    assert!(matches!(b.run(&mut t, r#"["event","x"]"#, url, T0 + 2), Reply::Held(_)));
    assert_eq!(
        b.local.get(keys::QUEUE).unwrap(),
        None,
        "held events are never written while denied"
    );
}

#[test]
fn drop_mode_drops_events_while_denied() {
    let mut b = Browser::new();
    let cfg = r#"{"site":"demo","collector":"https://collect.shop.example","consent":"denied","whileDenied":"drop"}"#;
    let mut t = b.load(cfg, "https://shop.example/", T0);
    assert_eq!(
        b.run(
            &mut t,
            r#"["conversion",{"orderId":"O1"}]"#,
            "https://shop.example/",
            T0
        ),
        Reply::Dropped
    );
    b.run(&mut t, r#"["consent","granted"]"#, "https://shop.example/", T0 + 1);
    let kinds: Vec<_> = sent(&mut t, T0 + 1).iter().map(|e| wire::type_name(&e.kind)).collect();
    assert_eq!(kinds, ["consent"], "dropped events stay dropped");
}

#[test]
fn global_privacy_control_denies_when_honoured() {
    for (honor, gpc, want) in [(true, true, false), (true, false, true), (false, true, true)] {
        let cfg = Config {
            honor_gpc: honor,
            ..Config::new("demo")
        };
        let loaded = utt::core::tracker::Loaded {
            gpc,
            ..Default::default()
        };
        let t = Tracker::start(cfg, page("https://shop.example/"), loaded, T0, &mut Counter(0));
        assert_eq!(t.consent(), want, "honor {honor} gpc {gpc}");
    }
}

#[test]
fn spa_navigations_count_only_real_url_changes() {
    let mut b = Browser::new();
    let mut t = b.load(CONFIG, "https://shop.example/app", T0);
    let nav = |t: &mut Tracker, b: &mut Browser, url: &str| t.navigated(page(url), T0 + 1, &mut b.rng).is_some();
    assert!(
        !nav(&mut t, &mut b, "https://shop.example/app"),
        "replaceState to the same URL"
    );
    assert!(nav(&mut t, &mut b, "https://shop.example/app/cart"));
    assert!(!nav(&mut t, &mut b, "https://shop.example/app/cart"));
    assert!(nav(&mut t, &mut b, "https://shop.example/app?irclickid=SPA1"));
    assert_eq!(
        t.record().clicks.len(),
        1,
        "a click ID arriving on an SPA route is captured"
    );
    assert_eq!(sent(&mut t, T0 + 1).len(), 3);
}

#[test]
fn each_store_repairs_the_other_and_tampering_is_not_trusted() {
    let mut b = Browser::new();
    let t = b.load(CONFIG, "https://shop.example/?irclickid=Xy12", T0);
    let visitor = t.record().visitor.clone();
    // The visitor cleared cookies: localStorage brings everything back, and the cookie is rewritten.
    b.cookie.remove(keys::RECORD).unwrap();
    let t = b.load(CONFIG, "https://shop.example/", T0 + 1);
    assert_eq!(t.record().visitor, visitor);
    assert_eq!(b.cookie.get(keys::RECORD).unwrap(), b.local.get(keys::RECORD).unwrap());
    // localStorage cleared: the cookie repairs it.
    b.local.remove(keys::RECORD).unwrap();
    b.load(CONFIG, "https://shop.example/", T0 + 2);
    assert!(b.local.get(keys::RECORD).unwrap().unwrap().contains("Xy12"));
    // Tampered cookie, tampered localStorage: dropped and rewritten, never trusted.
    for junk in ["1.%7B%22v%22%3A1", "garbage", "9.{}", "1.%ZZ", "", "1.%7B%7D"] {
        b.cookie.set(keys::RECORD, junk, 1).unwrap();
        b.local.set(keys::RECORD, "<script>alert(1)</script>", 1).unwrap();
        let t = b.load(CONFIG, "https://shop.example/", T0 + 3);
        assert!(t.record().clicks.is_empty(), "{junk}");
        assert!(utt::core::record::decode(&b.cookie.get(keys::RECORD).unwrap().unwrap()).is_some());
        assert_eq!(b.cookie.get(keys::RECORD).unwrap(), b.local.get(keys::RECORD).unwrap());
    }
}

#[test]
fn a_throwing_local_storage_degrades_to_the_cookie() {
    let mut b = Browser {
        local: MemoryStore::broken(),
        ..Browser::new()
    };
    let t = b.load(CONFIG, "https://shop.example/?irclickid=Xy12", T0);
    assert_eq!(t.storage(), StorageMode::Cookie);
    assert!(b.cookie.get(keys::RECORD).unwrap().unwrap().contains("Xy12"));
    let mut b = Browser {
        local: MemoryStore::broken(),
        cookie: MemoryStore::broken(),
        ..Browser::new()
    };
    let mut t = b.load(CONFIG, "https://shop.example/?irclickid=Xy12", T0);
    assert_eq!(t.storage(), StorageMode::None);
    assert_eq!(sent(&mut t, T0).len(), 1, "memory-only still tracks this page");
}

#[test]
fn a_burst_of_a_thousand_calls_costs_one_write_per_key() {
    let mut b = Browser::new();
    let mut t = b.load(CONFIG, "https://shop.example/", T0);
    let cmd = command::parse(&mut json::parse(r#"["event","tick",{"n":1}]"#).unwrap()).unwrap();
    for i in 0..1000 {
        assert!(matches!(
            t.command(cmd.clone(), page("https://shop.example/"), T0 + i, &mut b.rng),
            Reply::Queued(_)
        ));
    }
    let writes = t.take_writes(T0 + 1000);
    let keys: Vec<_> = writes.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, [keys::RECORD, keys::QUEUE]);
    assert!(
        t.take_writes(T0 + 1000).is_empty(),
        "nothing more until something changes"
    );
    assert_eq!(t.queue().items().len(), 1001, "the page view and all thousand are kept");
}

#[test]
fn a_full_queue_answers_dropped_at_the_call_and_keeps_room_for_conversions() {
    let mut b = Browser::new();
    let url = "https://shop.example/";
    let mut t = b.load(CONFIG, url, T0);
    let big = format!(r#"["event","big",{{"pad":"{}"}}]"#, "x".repeat(7000));
    let mut queued = 0;
    // Each call a millisecond later: the test's counter repeats its random bytes, so event IDs
    // made in the same millisecond would collide.
    let reply = loop {
        match b.run(&mut t, &big, url, T0 + 1 + queued) {
            Reply::Queued(_) => queued += 1,
            other => break other,
        }
    };
    assert_eq!(
        reply,
        Reply::Full,
        "refused when it is called, not queued and evicted later"
    );
    assert!(queued > 100, "{queued}");
    let before = t.queue().items().len();
    // Nothing queued was pushed out, and a conversion still fits.
    assert!(matches!(
        b.run(&mut t, r#"["conversion",{"orderId":"O-FULL"}]"#, url, T0 + 5_000),
        Reply::Queued(_)
    ));
    assert_eq!(t.queue().items().len(), before + 1);
    let state = json::parse(&t.state(None, None, T0)).unwrap();
    assert_eq!(state.get("dropped").and_then(Json::as_u64), Some(1));
    // Everything kept is delivered, the conversion first.
    let mut sent_ids = 0;
    let later = T0 + 10_000;
    let first = t.next_batch(later).unwrap();
    assert!(first.body.contains("O-FULL"));
    t.settle(&first, 0, None, None, later, 0);
    t.hurry(later);
    loop {
        let n = accept_all(&mut t, later);
        if n == 0 {
            break;
        }
        sent_ids += n;
    }
    assert_eq!(sent_ids, before + 1);
}

#[test]
fn delivery_failures_are_retried_and_answers_are_logged_for_the_debug_page() {
    let mut b = Browser::new();
    let mut t = b.load(CONFIG, "https://shop.example/", T0);
    b.run(
        &mut t,
        r#"["conversion",{"orderId":"O1"}]"#,
        "https://shop.example/",
        T0,
    );
    let out = t.next_batch(T0).unwrap();
    t.settle(&out, 503, None, Some("30"), T0, 0);
    assert_eq!(t.next_batch(T0 + 1000), None, "Retry-After is honoured");
    assert!(t.next_wake().unwrap() >= T0 + 30_000);
    b.persist(&mut t, T0);
    // The tab closes; on the next page the queue is still there.
    let mut t = b.load(CONFIG, "https://shop.example/", T0 + 60_000);
    assert_eq!(accept_all(&mut t, T0 + 60_000), 3);
    b.persist(&mut t, T0 + 60_000);
    assert_eq!(
        b.local.get(keys::QUEUE).unwrap(),
        None,
        "acknowledged events are removed"
    );
    let state = json::parse(&t.state(None, None, T0)).unwrap();
    let sends = state.get("sends").unwrap().as_arr().unwrap();
    assert_eq!(sends[0].get("delivered").unwrap().as_u64(), Some(3));
}

#[test]
fn a_beacon_carries_everything_waiting_and_keeps_it_queued() {
    let mut b = Browser::new();
    let mut t = b.load(CONFIG, "https://shop.example/", T0);
    b.run(
        &mut t,
        r#"["conversion",{"orderId":"O1"}]"#,
        "https://shop.example/",
        T0,
    );
    t.next_batch(T0); // in flight when the page is hidden
    let out = t.beacon(T0).unwrap();
    assert_eq!(wire::read_batch(&out.body).unwrap().events.len(), 2);
    assert_eq!(t.queue().items().len(), 2);
}

#[test]
fn state_is_valid_json_with_what_the_debug_page_needs() {
    let mut b = Browser::new();
    let t = b.load(
        r#"{"site":"demo","clickParams":{"aff":"mynet"}}"#,
        "https://shop.example/?aff=P1",
        T0,
    );
    let s = json::parse(&t.state(
        b.cookie.get(keys::RECORD).unwrap().as_deref(),
        b.local.get(keys::RECORD).unwrap().as_deref(),
        T0,
    ))
    .unwrap();
    for k in [
        "version", "config", "consent", "visitor", "session", "clicks", "rejected", "queue", "sends", "orders",
    ] {
        assert!(s.get(k).is_some(), "missing {k}");
    }
    let c = &s.get("clicks").unwrap().as_arr().unwrap()[0];
    assert_eq!(c.get("network").unwrap().as_str(), Some("mynet"));
    assert_eq!(c.get("expiresAt").unwrap().as_u64(), Some(T0 + 30 * DAY));
    assert_eq!(
        (c.get("inCookie"), c.get("inLocalStorage")),
        (Some(&Json::Bool(true)), Some(&Json::Bool(true)))
    );
}

#[test]
fn identify_with_email_asks_the_shell_to_hash_first() {
    let mut b = Browser::new();
    let mut t = b.load(CONFIG, "https://shop.example/", T0);
    let r = b.run(
        &mut t,
        r#"["identify",{"email":" Jane@Example.com ","customerId":"c1"}]"#,
        "https://shop.example/",
        T0,
    );
    assert_eq!(r, Reply::Hash(Some("c1".into()), "jane@example.com".into()));
    let hash = "86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d";
    assert!(matches!(
        t.identify(
            Some("c1".into()),
            Some(hash.into()),
            page("https://shop.example/"),
            T0,
            &mut b.rng
        ),
        Reply::Queued(_)
    ));
    let events = sent(&mut t, T0);
    let id = events
        .iter()
        .find(|e| matches!(e.kind, wire::Kind::Identify { .. }))
        .unwrap();
    assert!(!format!("{id:?}").contains("jane"), "the plain address never leaves");
}

const EU: &str =
    r#"{"site":"demo","collector":"https://collect.shop.example","consent":"denied","whileDenied":"wait"}"#;

fn page_from<'a>(url: &'a str, referrer: &'a str) -> Page<'a> {
    Page { referrer, ..page(url) }
}

impl Browser {
    /// A page load with an explicit referrer.
    fn load_from(&mut self, config: &str, url: &str, referrer: &str, now: u64) -> Tracker {
        let config = Config::from_json(&json::parse(config).unwrap()).unwrap();
        let (loaded, _, _) = store::load(config.storage, &self.cookie, &self.local);
        let mut t = Tracker::start(config, page_from(url, referrer), loaded, now, &mut self.rng);
        self.persist(&mut t, now);
        t
    }
}

/// The link `href` as the tag decorates it on `t`'s page `at`, followed: the next page's URL.
fn follow(t: &Tracker, at: &str, href: &str, now: u64) -> String {
    t.decorate(href, page(at), now).unwrap_or_else(|| href.to_string())
}

#[test]
fn a_click_survives_pages_until_consent_is_given_and_keeps_its_landing() {
    let mut b = Browser::new();
    let landing = "https://shop.example/?irclickid=AFF-1&utm_source=blog";
    let t1 = b.load(EU, landing, T0);
    // Page 1: the banner stays open; the visitor follows a product link.
    let p2 = follow(
        &t1,
        landing,
        "https://shop.example/product.html?sku=CAP-1#reviews",
        T0 + 20_000,
    );
    assert!(
        p2.starts_with("https://shop.example/product.html?sku=CAP-1&_uttj="),
        "{p2}"
    );
    assert!(p2.ends_with("#reviews"), "{p2}");
    assert_eq!(
        t1.decorate("https://elsewhere.example/", page(landing), T0),
        None,
        "links to other sites are never decorated"
    );
    assert_eq!(t1.decorate("mailto:a@b.example", page(landing), T0), None);
    // Page 2, then page 3: still nothing stored, the click still carried.
    let t2 = b.load_from(EU, &p2, landing, T0 + 21_000);
    assert_eq!(b.cookie.get(keys::RECORD).unwrap(), None);
    assert_eq!(b.local.get(keys::RECORD).unwrap(), None);
    let p3 = follow(&t2, &p2, "https://shop.example/cart.html", T0 + 60_000);
    let mut t3 = b.load_from(EU, &p3, &p2, T0 + 61_000);
    // Consent on page 3: the click is stored as it was captured on page 1.
    b.run(&mut t3, r#"["consent","granted"]"#, &p3, T0 + 62_000);
    let stored = utt::core::record::decode(&b.cookie.get(keys::RECORD).unwrap().unwrap()).unwrap();
    assert_eq!(stored.clicks.len(), 1);
    let c = &stored.clicks[0];
    assert_eq!(
        (c.value.as_str(), c.at, c.path.as_str(), c.referrer.as_str()),
        ("AFF-1", T0, "/", "partner.example")
    );
    assert_eq!(c.utm, [("source".to_string(), "blog".to_string())]);
    // What page 3 sends names the click, and neither its URL nor its referrer carries the
    // journey parameter.
    let events = sent(&mut t3, T0 + 62_000);
    assert!(!events.is_empty());
    for e in &events {
        assert!(!e.url.contains("_uttj") && !e.referrer.contains("_uttj"), "{e:?}");
        assert_eq!(e.clicks.len(), 1);
    }
    assert_eq!(events[0].url, "https://shop.example/cart.html");
    // With consent the site's own links need nothing: storage carries the journey.
    assert_eq!(
        t3.decorate("https://shop.example/checkout.html", page(&p3), T0 + 63_000),
        None
    );
}

#[test]
fn links_are_not_decorated_after_a_no_or_when_nothing_is_held() {
    let mut b = Browser::new();
    let landing = "https://shop.example/?irclickid=AFF-1";
    let href = "https://shop.example/product.html";
    let mut t = b.load(EU, landing, T0);
    assert!(t.decorate(href, page(landing), T0).is_some());
    b.run(&mut t, r#"["consent","denied"]"#, landing, T0 + 1);
    assert_eq!(t.decorate(href, page(landing), T0 + 2), None, "declined for good");
    // Dropping mode does not wait for consent, so nothing is carried either.
    let drop = r#"{"site":"demo","consent":"denied","whileDenied":"drop"}"#;
    let t = Browser::new().load(drop, landing, T0);
    assert_eq!(t.decorate(href, page(landing), T0), None);
    // Without a click there is nothing to carry.
    let t = Browser::new().load(EU, "https://shop.example/", T0);
    assert_eq!(t.decorate(href, page("https://shop.example/"), T0), None);
    assert_eq!(
        t.address(),
        "https://shop.example/",
        "an address with nothing to cut stays"
    );
    // Global Privacy Control, honoured, is a no.
    let cfg = Config {
        consent_default: false,
        honor_gpc: true,
        ..Config::new("demo")
    };
    let loaded = utt::core::tracker::Loaded {
        gpc: true,
        ..Default::default()
    };
    let t = Tracker::start(cfg, page(landing), loaded, T0, &mut Counter(0));
    assert_eq!(t.decorate(href, page(landing), T0), None);
}

#[test]
fn a_stale_copied_or_edited_journey_parameter_is_ignored_and_reported() {
    let mut b = Browser::new();
    let landing = "https://shop.example/?irclickid=AFF-1";
    let t1 = b.load(EU, landing, T0);
    let next = follow(&t1, landing, "https://shop.example/p", T0);
    // Six minutes later (a bookmark, a link pasted into a chat): refused.
    let t = Browser::new().load(EU, &next, T0 + 6 * 60_000);
    assert!(t.record().clicks.is_empty());
    let s = json::parse(&t.state(None, None, T0)).unwrap();
    assert_eq!(
        s.get("rejected").unwrap().to_text(),
        r#"[{"param":"_uttj","reason":"expired"}]"#
    );
    // Another browser, or an edited value: refused.
    let config = Config::from_json(&json::parse(EU).unwrap()).unwrap();
    let other = Page {
        ua: "another browser",
        ..page(&next)
    };
    let t = Tracker::start(config, other, Default::default(), T0, &mut Counter(0));
    assert!(t.record().clicks.is_empty());
    let edited = next.replace("AFF-1", "AFF-9");
    let t = Browser::new().load(EU, &edited, T0);
    assert!(t.record().clicks.is_empty());
    let s = json::parse(&t.state(None, None, T0)).unwrap();
    assert_eq!(
        s.get("rejected").unwrap().to_text(),
        r#"[{"param":"_uttj","reason":"tampered, or from another browser"}]"#
    );
}

#[test]
fn the_same_click_seen_again_is_the_same_touchpoint_and_site_parameters_are_not_clicks() {
    let mut b = Browser::new();
    b.load(CONFIG, "https://shop.example/?irclickid=AFF-1", T0);
    // An ordinary internal link with `ref=`, then the landing page again from history.
    b.load(
        CONFIG,
        "https://shop.example/product.html?sku=CAP-1&ref=footer",
        T0 + 1000,
    );
    b.load(CONFIG, "https://shop.example/?gclid=G-2", T0 + 2000);
    let t = b.load(CONFIG, "https://shop.example/?irclickid=AFF-1", T0 + 3000);
    let clicks: Vec<_> = t.record().clicks.iter().map(|c| (c.value.as_str(), c.at)).collect();
    assert_eq!(
        clicks,
        [("AFF-1", T0), ("G-2", T0 + 2000)],
        "AFF-1 is not a new last click"
    );
    // A site that does mean `ref` for its partners says so.
    let cfg = r#"{"site":"demo","clickParams":{"ref":"inhouse"}}"#;
    let t = Browser::new().load(cfg, "https://shop.example/?ref=partner-7", T0);
    assert_eq!(t.record().clicks[0].network, "inhouse");
}

#[test]
fn referrers_are_sent_cleaned() {
    let bad = "https://shop.example/?irclickid=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E&sku=1";
    let cases = [
        // The previous page of the site: cleaned like the page URL.
        (bad, "https://shop.example/?sku=1"),
        // Another site: its origin and path, never its query.
        (
            "https://search.example:8443/results?q=my+name&uid=42#top",
            "https://search.example:8443/results",
        ),
        ("android-app://com.example/", ""),
        ("", ""),
    ];
    for (referrer, want) in cases {
        let mut b = Browser::new();
        let mut t = b.load_from(CONFIG, "https://shop.example/product.html", referrer, T0);
        let events = sent(&mut t, T0);
        assert_eq!(events[0].referrer, want, "{referrer:?}");
    }
}

#[test]
fn the_sites_other_domains_share_the_journey_and_the_visitor() {
    let cfg = r#"{"site":"demo","collector":"https://collect.shop.example","linkDomains":["checkout.example.net"]}"#;
    let mut shop = Browser::new();
    let landing = "https://shop.example/?irclickid=AFF-1";
    let t = shop.load(cfg, landing, T0);
    assert_eq!(t.decorate("https://shop.example/cart", page(landing), T0), None);
    assert_eq!(
        t.decorate("https://example.net/", page(landing), T0),
        None,
        "only the listed domain"
    );
    assert_eq!(t.decorate("https://evilcheckout.example.net/", page(landing), T0), None);
    let pay = follow(&t, landing, "https://pay.checkout.example.net/start?cart=9", T0 + 5_000);
    assert!(pay.contains("&_uttj="), "{pay}");
    // The checkout domain has its own storage and an older visit of its own.
    let mut checkout = Browser::new();
    checkout.load(cfg, "https://pay.checkout.example.net/?gclid=OLD", T0 - DAY);
    let mut t2 = checkout.load_from(cfg, &pay, "https://shop.example/cart", T0 + 6_000);
    assert_eq!(t2.record().visitor, t.record().visitor, "one visitor on both domains");
    // The address bar loses the parameter (a copied address must not take the visitor along),
    // and showing that address is no new page view.
    assert_eq!(t2.address(), "https://pay.checkout.example.net/start?cart=9");
    let views = t2.queue().items().len();
    let shown = t2.address().to_string();
    assert_eq!(t2.navigated(page(&shown), T0 + 6_001, &mut checkout.rng), None);
    assert_eq!(t2.queue().items().len(), views);
    let clicks: Vec<_> = t2.record().clicks.iter().map(|c| c.value.as_str()).collect();
    assert_eq!(clicks, ["OLD", "AFF-1"]);
    let events = sent(&mut t2, T0 + 6_000);
    let view = events.iter().find(|e| e.url.contains("/start")).unwrap();
    assert_eq!(view.url, "https://pay.checkout.example.net/start?cart=9");
    assert_eq!(view.referrer, "https://shop.example/cart");
    assert_eq!(view.visitor.as_deref(), Some(t.record().visitor.as_str()));
    assert!(b_has_click(&checkout, "AFF-1"), "stored on the checkout domain");
}

fn b_has_click(b: &Browser, value: &str) -> bool {
    let rec = b.cookie.get(keys::RECORD).unwrap().unwrap();
    utt::core::record::decode(&rec)
        .unwrap()
        .clicks
        .iter()
        .any(|c| c.value == value)
}

#[test]
fn events_held_for_consent_are_bounded_and_the_excess_answered_dropped() {
    let mut b = Browser::new();
    let url = "https://shop.example/";
    let mut t = b.load(EU, url, T0);
    let mut held = 1; // the page view
    let reply = loop {
        match b.run(&mut t, r#"["event","x"]"#, url, T0) {
            Reply::Held(_) => held += 1,
            other => break other,
        }
    };
    assert_eq!(held, utt::core::tracker::MAX_HELD);
    assert_eq!(reply, Reply::Full);
}

/// A denial is sent anonymously: of the referrer only the host stays (no scheme, port, path,
/// query or fragment, which may name the visitor), while an event sent with consent carries
/// the other site's origin and path.
#[test]
fn a_denial_keeps_only_the_referrers_host() {
    let referrer = "https://search.example:8443/results/jane-doe?q=my+name&uid=42#top";
    let url = "https://shop.example/p?irclickid=Xy12";
    let mut b = Browser::new();
    let mut t = b.load_from(CONFIG, url, referrer, T0);
    let events = sent(&mut t, T0);
    assert_eq!(events[0].referrer, "https://search.example:8443/results/jane-doe");
    accept_all(&mut t, T0);
    let cmd = command::parse(&mut json::parse(r#"["consent","denied"]"#).unwrap()).unwrap();
    t.command(cmd, page_from(url, referrer), T0 + 1, &mut b.rng);
    let events = sent(&mut t, T0 + 1);
    assert_eq!(events.len(), 1);
    assert!(matches!(events[0].kind, wire::Kind::Consent { granted: false }));
    assert_eq!(events[0].referrer, "search.example");
    assert_eq!(events[0].url, "https://shop.example/p");
    assert_eq!((events[0].visitor.as_deref(), events[0].clicks.len()), (None, 0));
}
