//! `cargo xtask twiggy`: where the tag's bytes go, by `twiggy top`, installed on first use.

use std::process::Command;

use crate::{build, proc, size, target_dir, Result};

/// The twiggy release installed into `<target>/tools`, pinned so its figures compare across runs.
const TWIGGY_VERSION: &str = "0.8.0";

/// Prints `twiggy top -n 30` of the tag, optimised like `dist/utt_bg.wasm` but keeping function names.
pub fn run() -> Result {
    let root = target_dir().join("tools");
    let twiggy = root.join("bin/twiggy");
    if !twiggy.exists() {
        proc::run(
            Command::new(crate::cargo())
                .args([
                    "install",
                    "twiggy",
                    "--version",
                    &format!("={TWIGGY_VERSION}"),
                    "--root",
                ])
                .arg(&root),
        )
        .map_err(|e| format!("installing twiggy {TWIGGY_VERSION} failed: {e}"))?;
    }
    // The shipped file has no name section, so twiggy could only say `code[42]`: the build also
    // writes it optimised the same way with its names kept (`-g`), which changes nothing else
    // that twiggy counts.
    build::run()?;
    proc::run(Command::new(twiggy).args(["top", "-n", "30"]).arg(size::named_wasm()))
}
