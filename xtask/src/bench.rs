//! `cargo xtask bench-burst`: how the tag takes a burst of 1,000 calls in one task, measured in
//! headless Chromium against the real collector on another origin (`tests/bench/burst.mjs`).

use std::process::Command;

use crate::{demo, proc, root, setup, Result};

/// Builds the tag and the collector as `cargo xtask demo` does, then runs the measurement;
/// `args` (`--runs N`, default 3) go to the script.
pub fn burst(args: &[String]) -> Result {
    // Chromium as well as the build tools: the measurement runs in the browser.
    setup::run()?;
    demo::build_tag_and_collector()?;
    proc::run(
        Command::new("node")
            .current_dir(root())
            .arg("tests/bench/burst.mjs")
            .args(args),
    )
}
