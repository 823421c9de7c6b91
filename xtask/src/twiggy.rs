//! `cargo xtask twiggy`: where the tag's bytes go, by `twiggy top`, installed on first use.

use std::process::Command;

use crate::{build, proc, target_dir, Result};

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
    let bindgen_dir = build::bindgen()?;
    // The shipped file has no name section, so twiggy could only say `code[42]`: `-g` keeps the
    // names and changes nothing else that twiggy counts.
    let named = target_dir().join("utt-twiggy.wasm");
    build::wasm_opt(&bindgen_dir.join("utt_bg.wasm"), &named, &["-g"])?;
    proc::run(Command::new(twiggy).args(["top", "-n", "30"]).arg(&named))
}
