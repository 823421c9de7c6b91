//! The pure core of the tag: every decision, no browser. Nothing here names `web_sys`, `js_sys`
//! or `wasm_bindgen`, and nothing reads a clock or a random source: time and random bytes are
//! arguments. Everything is tested natively with `cargo test`.

pub mod click;
pub mod command;
pub mod config;
pub mod id;
pub mod json;
pub mod queue;
pub mod record;
pub mod retry;
pub mod store;
pub mod tracker;
pub mod url;
pub mod wire;

use alloc::vec::Vec;

/// `Vec::remove` without its panic path: the tag carries no panic formatting, so every index is
/// checked first and a bad one is simply nothing.
pub(crate) fn remove_at<T>(v: &mut Vec<T>, at: usize) -> Option<T> {
    (at < v.len()).then(|| v.remove(at))
}

/// `Vec::insert` without its panic path (an index past the end appends).
pub(crate) fn insert_at<T>(v: &mut Vec<T>, at: usize, item: T) {
    let at = at.min(v.len());
    v.insert(at, item);
}
