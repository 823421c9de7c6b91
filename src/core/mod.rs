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
