//! The browser shell in a real headless Chromium: the cookie jar and localStorage adapters, their
//! mutual repair, degradation when a store throws, the queue surviving a reload, the beacon when
//! the page is hidden, and no call ever throwing into the page.
#![cfg(target_arch = "wasm32")]

use js_sys::{Function, Object, Reflect};
use utt::core::json::{self, Json};
use utt::core::store::Store;
use utt::core::tracker::keys;
use utt::web::{ops, CookieStore, LocalStore, Tag};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

fn window() -> web_sys::Window {
    web_sys::window().expect("a window")
}

fn href() -> String {
    window().location().href().expect("href")
}

/// The page text the loader hands to `Tag::op`: href, referrer, GPC, title.
fn page(url: &str) -> String {
    format!("{url}\n\n0\nTest page")
}

/// Removes everything the tag may have stored, so each test starts from a fresh browser.
fn clean() {
    let cookies = CookieStore::new(Some(&window()), None);
    for k in [keys::RECORD, keys::CONSENT] {
        let _ = cookies.remove(k);
    }
    window().local_storage().unwrap().unwrap().clear().unwrap();
}

fn state(tag: &Tag) -> Json {
    json::parse(&tag.op(ops::STATE, "", &page(&href()))).expect("state is JSON")
}

fn start(url: &str) -> Tag {
    let tag = Tag::new(Some(window()));
    let answer = tag.op(
        ops::COMMAND,
        r#"["init",{"site":"demo","collector":"/collect"}]"#,
        &page(url),
    );
    assert!(answer.contains("\"ready\""), "{answer}");
    tag.op(ops::PERSIST, "", &page(url));
    tag
}

fn landing() -> String {
    let base = href();
    let base = base.split(['?', '#']).next().unwrap().to_string();
    format!("{base}?irclickid=Xy12abc&utm_source=partner")
}

/// Makes the getter `name` on `target` throw, until the returned closure puts the original back.
fn make_throw(target: &JsValue, name: &str) -> impl FnOnce() {
    let target: Object = target.clone().unchecked_into();
    let original = Object::get_own_property_descriptor(&target, &name.into());
    let thrower = Function::new_no_args("throw new DOMException('denied in this test', 'SecurityError')");
    let desc = Object::new();
    Reflect::set(&desc, &"get".into(), &thrower).unwrap();
    Reflect::set(&desc, &"configurable".into(), &JsValue::TRUE).unwrap();
    Object::define_property(&target, &name.into(), &desc);
    let name = name.to_string();
    move || {
        Object::define_property(&target, &name.into(), original.unchecked_ref::<Object>());
    }
}

#[wasm_bindgen_test]
fn cookie_domain_auto_is_host_only_on_an_ip_address() {
    // The test page is served from 127.0.0.1: no Domain attribute can be set, so `auto` must
    // fall back to a host-only cookie rather than fail.
    let host = window().location().hostname().unwrap();
    assert_eq!(host, "127.0.0.1");
    let jar = CookieStore::new(Some(&window()), None);
    assert_eq!(jar.domain(), None);
    jar.set("_utt_probe", "1", 60).expect("a host-only cookie sticks");
    assert_eq!(jar.get("_utt_probe").unwrap().as_deref(), Some("1"));
    jar.remove("_utt_probe").unwrap();
    assert_eq!(jar.get("_utt_probe").unwrap(), None);
    // A configured domain the browser refuses is reported as a broken store, not thrown.
    let foreign = CookieStore::new(Some(&window()), Some("example.com".into()));
    assert!(foreign.set("_utt_probe", "1", 60).is_err());
}

#[wasm_bindgen_test]
fn the_record_is_written_to_both_stores_and_each_repairs_the_other() {
    clean();
    let url = landing();
    let tag = start(&url);
    let cookie = CookieStore::new(Some(&window()), None)
        .get(keys::RECORD)
        .unwrap()
        .expect("cookie written");
    let local = LocalStore::new(Some(&window()))
        .get(keys::RECORD)
        .unwrap()
        .expect("localStorage written");
    assert_eq!(cookie, local);
    assert!(cookie.contains("Xy12abc"), "{cookie} from {url}");
    let visitor = state(&tag).get("visitor").unwrap().as_str().unwrap().to_string();

    // The visitor clears cookies; the next page repairs the cookie from localStorage.
    CookieStore::new(Some(&window()), None).remove(keys::RECORD).unwrap();
    let tag = start(&href());
    assert_eq!(state(&tag).get("visitor").unwrap().as_str(), Some(visitor.as_str()));
    let repaired = CookieStore::new(Some(&window()), None)
        .get(keys::RECORD)
        .unwrap()
        .expect("cookie repaired");
    assert!(repaired.contains("Xy12abc"));

    // Now localStorage is cleared; the cookie repairs it.
    window().local_storage().unwrap().unwrap().clear().unwrap();
    let tag = start(&href());
    assert_eq!(state(&tag).get("visitor").unwrap().as_str(), Some(visitor.as_str()));
    assert!(LocalStore::new(Some(&window()))
        .get(keys::RECORD)
        .unwrap()
        .unwrap()
        .contains("Xy12abc"));
    let s = state(&tag);
    let click = &s.get("clicks").unwrap().as_arr().unwrap()[0];
    assert_eq!(click.get("inCookie"), Some(&Json::Bool(true)));
    assert_eq!(click.get("inLocalStorage"), Some(&Json::Bool(true)));
    clean();
}

#[wasm_bindgen_test]
fn a_local_storage_that_throws_degrades_to_the_cookie_without_breaking_the_page() {
    clean();
    // localStorage is an own accessor of the window (a global's attributes live on the instance);
    // make it throw as in a locked-down browser.
    let restore = make_throw(&window().into(), "localStorage");
    assert!(
        LocalStore::new(Some(&window())).get("x").is_err(),
        "the test really broke localStorage"
    );
    let tag = start(&landing());
    let s = state(&tag);
    assert_eq!(
        s.get("config").unwrap().get("storageInUse").unwrap().as_str(),
        Some("cookie")
    );
    assert!(CookieStore::new(Some(&window()), None)
        .get(keys::RECORD)
        .unwrap()
        .unwrap()
        .contains("Xy12abc"));
    let answer = tag.op(ops::COMMAND, r#"["conversion",{"orderId":"T-1"}]"#, &page(&href()));
    assert!(answer.contains("\"queued\""), "{answer}");
    restore();
    clean();
}

#[wasm_bindgen_test]
fn a_local_storage_whose_writes_throw_degrades_too() {
    clean();
    let proto = Reflect::get(&window().local_storage().unwrap().unwrap(), &"__proto__".into()).unwrap();
    let original = Reflect::get(&proto, &"setItem".into()).unwrap();
    let quota = Function::new_no_args("throw new DOMException('full', 'QuotaExceededError')");
    Reflect::set(&proto, &"setItem".into(), &quota).unwrap();
    let tag = start(&landing());
    Reflect::set(&proto, &"setItem".into(), &original).unwrap();
    let s = state(&tag);
    assert_eq!(
        s.get("config").unwrap().get("storageInUse").unwrap().as_str(),
        Some("cookie")
    );
    assert!(CookieStore::new(Some(&window()), None)
        .get(keys::RECORD)
        .unwrap()
        .is_some());
    clean();
}

#[wasm_bindgen_test]
fn the_queue_survives_a_reload() {
    clean();
    let tag = start(&href());
    let answer = tag.op(
        ops::COMMAND,
        r#"["conversion",{"orderId":"R-1","amount":"12.50","currency":"EUR"}]"#,
        &page(&href()),
    );
    assert!(answer.contains("\"queued\""), "{answer}");
    tag.op(ops::PERSIST, "", &page(&href()));
    drop(tag); // the page goes away before anything was sent

    let tag = start(&href());
    let queue = state(&tag).get("queue").unwrap().as_arr().unwrap().to_vec();
    let conversion = queue
        .iter()
        .find(|q| q.get("conversion") == Some(&Json::Bool(true)))
        .expect("conversion kept");
    let order = conversion.get("event").unwrap().get("order").unwrap();
    assert_eq!(order.get("orderId").unwrap().as_str(), Some("R-1"));
    assert_eq!(order.get("amount"), Some(&Json::Str("12.50".into())));
    // And it is what the next batch carries.
    let batch = tag.op(ops::BATCH, "", &page(&href()));
    assert!(batch.contains("R-1"), "{batch}");
    clean();
}

#[wasm_bindgen_test]
fn hiding_the_page_hands_the_queue_to_send_beacon() {
    clean();
    // Record what sendBeacon receives instead of sending it.
    let navigator: JsValue = window().navigator().into();
    let recorder = Function::new_with_args(
        "url, body",
        "(globalThis.__beacons = globalThis.__beacons || []).push([url, body]); return true;",
    );
    let desc = Object::new();
    Reflect::set(&desc, &"value".into(), &recorder).unwrap();
    Reflect::set(&desc, &"configurable".into(), &JsValue::TRUE).unwrap();
    Object::define_property(navigator.unchecked_ref::<Object>(), &"sendBeacon".into(), &desc);

    let tag = start(&landing());
    tag.op(ops::COMMAND, r#"["conversion",{"orderId":"B-1"}]"#, &page(&href()));
    assert_eq!(tag.op(ops::HIDE, "", &page(&href())), "1");
    Reflect::delete_property(navigator.unchecked_ref::<Object>(), &"sendBeacon".into()).unwrap();

    let beacons = Reflect::get(&js_sys::global(), &"__beacons".into()).unwrap();
    let first = Reflect::get(&beacons, &0.into()).unwrap();
    let url = Reflect::get(&first, &0.into()).unwrap().as_string().unwrap();
    let body = Reflect::get(&first, &1.into()).unwrap().as_string().unwrap();
    assert!(url.ends_with("/collect/v1/events"), "{url}");
    let batch = utt::core::wire::read_batch(&body).expect("the beacon carries a valid batch");
    assert_eq!(batch.events.len(), 2, "the page view and the conversion");
    // The events stay queued (and stored) until the collector answers on a later page.
    assert!(LocalStore::new(Some(&window()))
        .get(keys::QUEUE)
        .unwrap()
        .unwrap()
        .contains("B-1"));
    clean();
}

#[wasm_bindgen_test]
fn no_call_throws_into_the_page() {
    clean();
    let tag = Tag::new(Some(window()));
    let here = page(&href());
    // Before init, every operation answers instead of throwing.
    for op in 0..=12 {
        let _ = tag.op(op, "", &here);
    }
    let bad_calls = [
        "",
        "not json",
        "{}",
        "[]",
        "[null]",
        r#"["pageview"]"#,
        r#"["init"]"#,
        r#"["init",{"site":"<script>alert(1)</script>"}]"#,
        r#"["init",{"site":"demo","windowDays":-1}]"#,
    ];
    for call in bad_calls {
        let answer = tag.op(ops::COMMAND, call, &here);
        assert!(answer.contains("\"ok\":false"), "{call} -> {answer}");
    }
    assert!(tag
        .op(ops::COMMAND, r#"["init",{"site":"demo"}]"#, &here)
        .contains("\"ready\""));
    let huge = format!(r#"["event","x",{{"k":"{}"}}]"#, "a".repeat(100_000));
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let hostile = [
        huge.as_str(),
        deep.as_str(),
        r#"["conversion",{"orderId":"A","amount":1e999}]"#,
        r#"["conversion",{"orderId":"A","items":[{"quantity":-1}]}]"#,
        r#"["identify",{"email":"<img src=x onerror=alert(1)>"}]"#,
        r#"["consent","maybe"]"#,
        r#"["event","\u0000"]"#,
        r#"["init",{"site":"demo"}]"#,
    ];
    for call in hostile {
        let answer = tag.op(ops::COMMAND, call, &here);
        assert!(
            answer.contains("\"ok\":false"),
            "{} -> {answer}",
            &call[..call.len().min(60)]
        );
    }
    // Garbage answers from a collector, or none at all, are taken in stride.
    tag.op(ops::COMMAND, r#"["event","ok"]"#, &here);
    for answer in [
        "garbage",
        "200\n\n<html>",
        "500\nsoon\n",
        "0\n\n",
        "99999999999999999999\n\n{}",
    ] {
        let _ = tag.op(ops::BATCH, "", &here);
        let _ = tag.op(ops::SETTLE, answer, &here);
    }
    assert!(tag.op(ops::STATE, "", &here).starts_with("{\"ready\":true"));
    clean();
}

/// `serverCookie: true` (a same-site collector): the shell offers the record for the
/// collector's `/v1/cookie` only once consent is granted, as `{site, name, value, maxAge}` with
/// the very record the cookie holds and its lifetime, and once per record: nothing again while
/// it is unchanged. Without the option, nothing is ever offered.
#[wasm_bindgen_test]
fn the_server_cookie_is_offered_only_with_consent_and_once_per_record() {
    clean();
    let here = page(&href());
    let tag = Tag::new(Some(window()));
    let init = r#"["init",{"site":"demo","collector":"/collect","consent":"denied","serverCookie":true}]"#;
    assert!(tag.op(ops::COMMAND, init, &here).contains("\"ready\""));
    tag.op(ops::PERSIST, "", &here);
    assert_eq!(
        tag.op(ops::SERVER_COOKIE, "", &here),
        "",
        "nothing offered before consent"
    );

    tag.op(ops::COMMAND, r#"["consent","granted"]"#, &here);
    tag.op(ops::PERSIST, "", &here);
    let offer = tag.op(ops::SERVER_COOKIE, "", &here);
    let body = json::parse(&offer).unwrap_or_else(|e| panic!("{offer:?}: {}", e.as_str()));
    let record = CookieStore::new(Some(&window()), None)
        .get(keys::RECORD)
        .unwrap()
        .expect("the record cookie is written once consent is granted");
    assert_eq!(body.get("site").and_then(Json::as_str), Some("demo"));
    assert_eq!(body.get("name").and_then(Json::as_str), Some("_utt"));
    assert_eq!(body.get("value").and_then(Json::as_str), Some(record.as_str()));
    // A journey without clicks lives a whole window: 30 days.
    assert_eq!(body.get("maxAge").and_then(Json::as_u64), Some(30 * 86_400));
    assert_eq!(
        tag.op(ops::SERVER_COOKIE, "", &here),
        "",
        "the same record is not offered twice"
    );

    // Consent withdrawn: the record is gone and nothing is offered.
    tag.op(ops::COMMAND, r#"["consent","denied"]"#, &here);
    tag.op(ops::PERSIST, "", &here);
    assert_eq!(tag.op(ops::SERVER_COOKIE, "", &here), "");

    clean();
    let plain = Tag::new(Some(window()));
    let init = r#"["init",{"site":"demo","collector":"/collect"}]"#;
    assert!(plain.op(ops::COMMAND, init, &here).contains("\"ready\""));
    plain.op(ops::PERSIST, "", &here);
    assert_eq!(plain.op(ops::SERVER_COOKIE, "", &here), "", "not without serverCookie");
    clean();
}
