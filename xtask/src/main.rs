//! Build chores for utt: `cargo xtask <command>` (the cargo alias lives in `.cargo/config.toml`).
//!
//! Everything the build and the tests need is installed by `cargo xtask setup`, so a fresh
//! clone on a machine with only rustup, Node and npm can run `cargo xtask test`.

mod bench;
mod build;
mod demo;
mod fuzz;
mod proc;
mod setup;
mod size;
mod test;
mod twiggy;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// What every chore returns: the error is a message for the person at the terminal.
pub type Result<T = ()> = std::result::Result<T, String>;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  setup              install what the build and the tests need (wasm target, Chromium, npm tools)
  build              build the tag into dist/ (cargo, wasm-bindgen, wasm-opt -Oz)
  demo [--fresh]     build, then serve the demo shop, debug page and report on 127.0.0.1:8080
  size               print raw/gzip/brotli sizes of dist/ and fail if over the budget
  twiggy             print `twiggy top -n 30` of the optimised tag (installs twiggy on first use)
  test               everything CI runs: setup, fmt, clippy, native and wasm tests, build, size, node tests
  wasm-test [ARGS]   only the wasm-bindgen tests in headless Chromium (ARGS go to cargo test)
  wasm-test-runner   the runner cargo calls for each test wasm (not for direct use)
  bench-burst [--runs N]
                     1,000 utt() calls in one task, cross-origin to the collector, in headless
                     Chromium: main-thread and durable times, queue bytes, time until stored
  fuzz [CASES]       the parsers' property tests (tests/props.rs) with CASES cases each (a
                     million unless told), optimised, timed per property and per parser";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        eprintln!("{USAGE}");
        return ExitCode::FAILURE;
    };
    let rest = &args[1..];
    // The runner is cargo's, once per test binary, and help is instant: neither is a step.
    if !matches!(command.as_str(), "wasm-test-runner" | "help" | "--help" | "-h") {
        setup::first_run_notice(command);
    }
    // `test` times its own steps and closes with its summary line, which CI reads last.
    let timed = !matches!(
        command.as_str(),
        "wasm-test-runner" | "help" | "--help" | "-h" | "demo" | "test"
    );
    let run = || match command.as_str() {
        "setup" => setup::run(),
        "build" => setup::build_tools().and_then(|()| build::run()),
        "demo" => demo::run(rest),
        "size" => size::run(),
        "twiggy" => twiggy::run(),
        "test" => test::run(),
        "wasm-test" => setup::run().and_then(|()| test::wasm_tests(rest, &mut proc::Counts::default())),
        "wasm-test-runner" => test::runner(rest),
        "bench-burst" => bench::burst(rest),
        "fuzz" => fuzz::run(rest),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n\n{USAGE}")),
    };
    // The demo serves until Ctrl-C: its steps are timed, the whole of it is not.
    let outcome = if timed {
        proc::step(&format!("xtask {command}"), run)
    } else {
        run()
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            // `test` prints its own failure before its closing summary line and returns no message.
            if !message.is_empty() {
                eprintln!("xtask {command}: {message}");
            }
            ExitCode::FAILURE
        }
    }
}

/// The workspace root, where `Cargo.toml`, `package.json` and `dist/` live.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("unreachable: xtask lives inside the workspace")
        .to_path_buf()
}

/// Cargo's target directory, honouring `CARGO_TARGET_DIR` as cargo does.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root().join(dir),
        _ => root().join("target"),
    }
}

/// The folder `cargo xtask build` writes the deployable tag to.
pub fn dist_dir() -> PathBuf {
    root().join("dist")
}

/// The cargo that runs us (so `cargo +toolchain xtask` keeps its toolchain), or `cargo`.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}
