//! The pure core of the tag: every decision, no browser. Nothing here names `web_sys`, `js_sys`
//! or `wasm_bindgen`, and nothing reads a clock or a random source: time and random bytes are
//! arguments. Everything is tested natively with `cargo test`.

pub mod click;
pub mod json;
pub mod wire;
