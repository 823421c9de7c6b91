//! `cargo xtask test`: the project's one test command, and the wasm test runner it hands to cargo.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::proc::{self, Counts};
use crate::setup::{CHROMEDRIVER, WASM_TARGET};
use crate::{build, cargo, root, setup, size, Result};

/// Variables that turn a test into something else, which the test command refuses to run with:
/// `UPDATE_FIXTURES` has `tests/wire.rs` rewrite the golden fixtures from what the code writes
/// and then compare them with themselves, so a change of the wire format would pass unseen.
const REFUSED_VARIABLES: &[(&str, &str)] = &[(
    "UPDATE_FIXTURES",
    "it rewrites the golden fixtures instead of checking them (run `UPDATE_FIXTURES=1 cargo test -p utt --test wire` alone, review the diff, then test without it)",
)];

/// The first variable of [`REFUSED_VARIABLES`] that is set, with why it is refused.
fn refused_variable(set: impl Fn(&str) -> bool) -> Option<String> {
    REFUSED_VARIABLES
        .iter()
        .find(|(name, _)| set(name))
        .map(|(name, why)| format!("{name} is set: {why}"))
}

/// Runs every check in order, stops at the first failure, and closes with `N passed, N failed`.
pub fn run() -> Result {
    let mut counts = Counts::default();
    let outcome = match refused_variable(|name| std::env::var_os(name).is_some()) {
        Some(why) => Err(why),
        // Timed here rather than by main: the summary below must stay the last line.
        None => proc::step("xtask test (all steps)", || steps(&mut counts)),
    };
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
    step(
        "browser, end-to-end and cross-engine tests (node --test)",
        node_tests(counts),
    )?;
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

/// Where node's tests live: the tag in a page, end to end against the real collector, and the
/// cross-engine smoke suite in Firefox ESR and WebKitGTK against the same collector.
const NODE_TEST_DIRS: &[&str] = &["tests/browser", "tests/e2e", "tests/engines"];

/// Runs the browser tests, `*.test.mjs` under [`NODE_TEST_DIRS`], with node's test runner.
fn node_tests(counts: &mut Counts) -> Result {
    let files = node_test_files(&root())?;
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

/// The `*.test.mjs` files under each of [`NODE_TEST_DIRS`] of `root`, sorted. A folder without
/// one is an error: a broken checkout or a moved folder must fail the step, never pass it.
fn node_test_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for dir in NODE_TEST_DIRS {
        let before = files.len();
        collect_tests(&root.join(dir), &mut files)?;
        if files.len() == before {
            return Err(format!(
                "no *.test.mjs under {dir}: the browser and end-to-end tests are missing"
            ));
        }
    }
    files.sort();
    Ok(files)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_fixtures_is_refused_whatever_its_value() {
        let why = refused_variable(|name| name == "UPDATE_FIXTURES").expect("refused");
        assert!(why.starts_with("UPDATE_FIXTURES is set: "), "{why}");
        assert_eq!(refused_variable(|_| false), None);
    }

    #[test]
    fn node_tests_missing_from_a_folder_fail_the_step() {
        let dir = std::env::temp_dir().join(format!("utt-xtask-node-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let err = node_test_files(&dir).unwrap_err();
        assert!(err.contains("no *.test.mjs under tests/browser"), "{err}");
        fs::create_dir_all(dir.join("tests/browser")).unwrap();
        fs::create_dir_all(dir.join("tests/e2e/more")).unwrap();
        fs::write(dir.join("tests/browser/tag.test.mjs"), "").unwrap();
        fs::write(dir.join("tests/browser/harness.mjs"), "").unwrap();
        let err = node_test_files(&dir).unwrap_err();
        assert!(err.contains("no *.test.mjs under tests/e2e"), "{err}");
        fs::write(dir.join("tests/e2e/more/b.test.mjs"), "").unwrap();
        fs::write(dir.join("tests/e2e/a.test.mjs"), "").unwrap();
        let err = node_test_files(&dir).unwrap_err();
        assert!(err.contains("no *.test.mjs under tests/engines"), "{err}");
        fs::create_dir_all(dir.join("tests/engines")).unwrap();
        fs::write(dir.join("tests/engines/firefox.test.mjs"), "").unwrap();
        let found = node_test_files(&dir).unwrap();
        let names: Vec<_> = found
            .iter()
            .map(|f| f.strip_prefix(&dir).unwrap().to_path_buf())
            .collect();
        assert_eq!(
            names,
            [
                "tests/browser/tag.test.mjs",
                "tests/e2e/a.test.mjs",
                "tests/e2e/more/b.test.mjs",
                "tests/engines/firefox.test.mjs"
            ]
            .map(PathBuf::from)
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
