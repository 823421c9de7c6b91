//! Sets `cfg(lean)` for the production tag (the `tag` feature without `debug`): the build that
//! carries codes instead of sentences and no debug state (see `src/core/text.rs`).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(lean)");
    let tag = std::env::var_os("CARGO_FEATURE_TAG").is_some();
    let debug = std::env::var_os("CARGO_FEATURE_DEBUG").is_some();
    if tag && !debug {
        println!("cargo::rustc-cfg=lean");
    }
}
