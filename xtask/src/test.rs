//! `cargo xtask test`: the project's one test command, and the wasm test runner it hands to cargo.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::proc::{self, Counts};
use crate::setup::{CHROMEDRIVER, WASM_TARGET};
use crate::{build, cargo, root, setup, size, Result};

/// Runs every check in order, stops at the first failure, and closes with `N passed, N failed`.
pub fn run() -> Result {
    let mut counts = Counts::default();
    let outcome = steps(&mut counts);
    if let Err(message) = &outcome {
        eprintln!("xtask test: FAILED: {message}");
    }
    // A step that failed without a test count (fmt, clippy, a build, the budget) is one failure.
    let failed = counts.failed.max(u64::from(outcome.is_err()));
    println!("{} passed, {failed} failed", counts.passed);
    // The message is already printed above; an empty one tells main to print nothing more.
    outcome.map_err(|_| String::new())
}

fn steps(counts: &mut Counts) -> Result {
    step("setup", setup::run())?;
    step("rustfmt", proc::run(&mut cargo_cmd(&["fmt", "--all", "--check"])))?;
    step(
        "clippy (native, whole workspace)",
        proc::run(&mut cargo_cmd(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ])),
    )?;
    step(
        "clippy (the tag, wasm32)",
        proc::run(&mut cargo_cmd(&[
            "clippy",
            "-p",
            "utt",
            "--lib",
            "--target",
            WASM_TARGET,
            "--features",
            "tag",
            "--",
            "-D",
            "warnings",
        ])),
    )?;
    // The browser test files exist only on wasm32, so the native clippy above never sees them.
    step(
        "clippy (browser tests, wasm32)",
        proc::run(&mut cargo_cmd(&[
            "clippy",
            "-p",
            "utt",
            "--tests",
            "--target",
            WASM_TARGET,
            "--",
            "-D",
            "warnings",
        ])),
    )?;
    step(
        "native tests",
        proc::run_counted(&mut cargo_cmd(&["test", "--workspace", "--no-fail-fast"]), counts),
    )?;
    step("wasm tests in headless Chromium", wasm_tests(&[], counts))?;
    step("build", build::run())?;
    step("size budget", size::run())?;
    step("browser and end-to-end tests (node --test)", node_tests(counts))?;
    Ok(())
}

fn step(name: &str, outcome: Result) -> Result {
    outcome.map_err(|e| format!("step `{name}`: {e}"))
}

fn cargo_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root()).args(args);
    cmd
}

/// Runs the `utt` crate's wasm-bindgen tests in headless Chromium, with `args` added to `cargo test`.
pub fn wasm_tests(args: &[String], counts: &mut Counts) -> Result {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the xtask binary: {e}"))?;
    if exe.to_string_lossy().contains(char::is_whitespace) {
        return Err(format!(
            "cargo splits a runner at spaces, so {} cannot be the runner",
            exe.display()
        ));
    }
    let tmp = private_tmp("wasm-test")?;
    let mut cmd = cargo_cmd(&["test", "-p", "utt", "--target", WASM_TARGET, "--tests"]);
    cmd.args(args)
        // This very binary is the runner, so the runner is the workspace's pinned wasm-bindgen and
        // no `cargo run` waits on the lock the outer cargo holds.
        .env(
            "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER",
            format!("{} wasm-test-runner", exe.display()),
        )
        .env("CHROMEDRIVER", CHROMEDRIVER)
        .env("WASM_BINDGEN_TEST_WEBDRIVER_JSON", root().join("webdriver.json"))
        // Chromium's profile folders and the runner's files land here and go away with it.
        .env("TMPDIR", &tmp);
    let outcome = proc::run_counted(&mut cmd, counts);
    remove_tmp(&tmp);
    outcome
}

/// What cargo runs for each test wasm: wasm-bindgen's test runner, linked into xtask.
pub fn runner(args: &[String]) -> Result {
    let argv = std::iter::once(OsString::from("wasm-bindgen-test-runner")).chain(args.iter().map(OsString::from));
    wasm_bindgen_cli::wasm_bindgen_test_runner::run_cli_with_args(argv).map_err(|e| format!("{e:#}"))
}

/// Where node's tests live: the tag in a page, and end to end against the real collector.
const NODE_TEST_DIRS: &[&str] = &["tests/browser", "tests/e2e"];

/// Runs the Playwright tests, `*.test.mjs` under [`NODE_TEST_DIRS`], with node's test runner.
fn node_tests(counts: &mut Counts) -> Result {
    let mut files = Vec::new();
    for dir in NODE_TEST_DIRS {
        collect_tests(&root().join(dir), &mut files)?;
    }
    if files.is_empty() {
        println!(
            "browser tests: no *.test.mjs under {} yet, step skipped",
            NODE_TEST_DIRS.join(" or ")
        );
        return Ok(());
    }
    files.sort();
    let tmp = private_tmp("node-test")?;
    let mut cmd = Command::new("node");
    cmd.current_dir(root())
        .args(["--test", "--test-reporter=tap"])
        .args(files.iter().map(|f| f.strip_prefix(root()).unwrap_or(f)))
        .env("TMPDIR", &tmp);
    let outcome = proc::run_counted(&mut cmd, counts);
    remove_tmp(&tmp);
    outcome
}

fn collect_tests(dir: &Path, files: &mut Vec<PathBuf>) -> Result {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?.path();
        if path.is_dir() {
            collect_tests(&path, files)?;
        } else if path.to_string_lossy().ends_with(".test.mjs") {
            files.push(path);
        }
    }
    Ok(())
}

/// A fresh temporary folder for one run of browsers, so their leftovers can be removed whole.
fn private_tmp(what: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("utt-{what}-{}", std::process::id()));
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

fn remove_tmp(dir: &Path) {
    if let Err(e) = fs::remove_dir_all(dir) {
        eprintln!("note: could not remove {}: {e}", dir.display());
    }
}
