//! Proves the in-browser test mechanism: this file runs in headless Chromium through
//! `cargo xtask test` (or `cargo xtask wasm-test`), and its cookie and localStorage round trips
//! only pass in a real page served over http.
#![cfg(target_arch = "wasm32")]

use wasm_bindgen::JsCast;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use web_sys::HtmlDocument;

wasm_bindgen_test_configure!(run_in_browser);

fn document() -> HtmlDocument {
    web_sys::window()
        .expect("a browser window")
        .document()
        .expect("a document")
        .dyn_into::<HtmlDocument>()
        .expect("an HTML document")
}

/// Returns the value of cookie `name` as `document.cookie` shows it, if it is set.
fn cookie(doc: &HtmlDocument, name: &str) -> Option<String> {
    let all = doc.cookie().expect("document.cookie is readable");
    all.split("; ")
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

#[wasm_bindgen_test]
fn cookie_written_is_read_back_and_can_be_expired() {
    let doc = document();
    assert_eq!(
        cookie(&doc, "utt_smoke"),
        None,
        "a fresh page starts without the cookie"
    );

    doc.set_cookie("utt_smoke=Xy12-ab; path=/; SameSite=Lax; max-age=60")
        .expect("setting a cookie");
    assert_eq!(cookie(&doc, "utt_smoke").as_deref(), Some("Xy12-ab"));

    // An expiry in the past deletes it: the page really stores cookies, it does not echo them.
    doc.set_cookie("utt_smoke=; path=/; max-age=0")
        .expect("expiring a cookie");
    assert_eq!(cookie(&doc, "utt_smoke"), None);
}

#[wasm_bindgen_test]
fn local_storage_item_written_is_read_back_and_removed() {
    let storage = web_sys::window()
        .expect("a browser window")
        .local_storage()
        .expect("localStorage does not throw")
        .expect("localStorage exists");

    storage.set_item("utt_smoke", "{\"v\":1}").expect("setItem");
    assert_eq!(
        storage.get_item("utt_smoke").expect("getItem").as_deref(),
        Some("{\"v\":1}")
    );

    storage.remove_item("utt_smoke").expect("removeItem");
    assert_eq!(storage.get_item("utt_smoke").expect("getItem"), None);
}
