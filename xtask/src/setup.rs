//! `cargo xtask setup`: makes this machine ready for every test, quickly when it already is.

use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use crate::{proc, root, Result};

/// The wasm target the tag compiles to.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";
/// Debian's Chromium: the browser most tests drive.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's ChromeDriver, installed with the browser so their versions match.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The programs the browser tests run, each with the Debian packages that provide it (Chromium
/// and its driver always together, so their versions match). The cross-engine tests
/// (`tests/engines/`) drive Firefox ESR through Marionette and WebKitGTK's MiniBrowser (in
/// `libwebkit2gtk-4.1-0`, which the driver depends on) through WebKitWebDriver, on a virtual X
/// server since MiniBrowser has no headless mode.
const BROWSERS: &[(&str, &[&str])] = &[
    (CHROMIUM, &["chromium", "chromium-driver"]),
    (CHROMEDRIVER, &["chromium", "chromium-driver"]),
    ("/usr/bin/firefox-esr", &["firefox-esr"]),
    ("/usr/bin/WebKitWebDriver", &["webkit2gtk-driver"]),
    ("/usr/bin/xvfb-run", &["xvfb", "xauth"]),
    ("/usr/bin/xauth", &["xauth"]),
];

/// Says up front, on a machine where this is the first run, what will be installed and built and
/// roughly how long it takes (rough estimates for a 2-core machine, not measured on a fresh one), so
/// nobody waits in silence.
pub fn first_run_notice(command: &str) {
    let root = root();
    let mut work: Vec<(&str, u64)> = Vec::new();
    if !root.join("node_modules/.package-lock.json").exists() {
        work.push(("the npm tools (wasm-opt, terser, playwright-core)", 10));
    }
    let browser = matches!(command, "setup" | "test" | "wasm-test" | "bench-burst");
    if browser && BROWSERS.iter().any(|(program, _)| !Path::new(program).exists()) {
        work.push(("the browsers: Chromium, Firefox ESR, WebKitGTK, Xvfb (apt-get)", 90));
    }
    if command == "test" && !has_postgres() {
        work.push(("PostgreSQL's server programs (apt-get)", 30));
    }
    let builds = matches!(command, "build" | "demo" | "test" | "twiggy" | "bench-burst");
    if builds && !crate::target_dir().join(WASM_TARGET).join("tag").exists() {
        work.push(("the first build of the tag (wasm32, optimised for size)", 90));
    }
    if matches!(command, "demo" | "test" | "bench-burst") && !crate::target_dir().join("debug/utt-collector").exists() {
        work.push(("the first build of the collector (SQLite is compiled from C)", 150));
    }
    if command == "test" && !crate::target_dir().join(WASM_TARGET).join("debug").exists() {
        work.push(("the test builds (native, wasm32 and clippy)", 600));
    }
    if work.is_empty() {
        return;
    }
    let total: u64 = work.iter().map(|(_, secs)| secs).sum();
    println!("xtask {command}: first run on this machine; it installs and builds, once:");
    for (what, secs) in &work {
        println!("  - {what}: about {}", proc::duration(*secs as f64));
    }
    println!(
        "  about {} in all on a 2-core machine; later runs take seconds",
        proc::duration(total as f64)
    );
}

/// Where Debian's PostgreSQL packages put the server programs (one folder per major version).
pub const POSTGRES_LIB: &str = "/usr/lib/postgresql";

/// Installs what is missing: the wasm target, rustfmt/clippy, the browsers with their drivers,
/// PostgreSQL's server programs, npm tools.
pub fn run() -> Result {
    rust_target()?;
    rust_components()?;
    browsers()?;
    postgresql()?;
    npm_tools()?;
    println!("setup: ready ({WASM_TARGET}, Chromium, Firefox ESR, WebKitGTK, {POSTGRES_LIB}, node_modules)");
    Ok(())
}

/// True when some `/usr/lib/postgresql/<version>/bin` has the programs the tests run their
/// throwaway server with.
fn has_postgres() -> bool {
    std::fs::read_dir(POSTGRES_LIB)
        .into_iter()
        .flatten()
        .flatten()
        .any(|v| {
            let bin = v.path().join("bin");
            ["initdb", "pg_ctl", "postgres", "createdb", "psql"]
                .iter()
                .all(|p| bin.join(p).is_file())
        })
}

/// Debian's `postgresql`: the collector's PostgreSQL tests start a throwaway server of their
/// own with its programs (the packaged cluster is not used).
fn postgresql() -> Result {
    if has_postgres() {
        return Ok(());
    }
    if !is_root() {
        return Err(format!(
            "PostgreSQL's server programs are missing ({POSTGRES_LIB}/*/bin/initdb, pg_ctl) and we are not \
             root: install the Debian package `postgresql` (sudo apt-get install -y postgresql), then run this again"
        ));
    }
    proc::run(Command::new("apt-get").arg("update"))?;
    proc::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "postgresql"]),
    )?;
    if has_postgres() {
        Ok(())
    } else {
        Err(format!(
            "apt-get installed postgresql but {POSTGRES_LIB}/*/bin has no initdb, pg_ctl, postgres, createdb and psql"
        ))
    }
}

/// Installs only what building the tag needs (the wasm target and the npm tools): the demo
/// runs in the user's own browser, so it needs neither Chromium nor the linters.
pub fn build_tools() -> Result {
    rust_target()?;
    npm_tools()?;
    println!("setup: ready to build ({WASM_TARGET}, node_modules)");
    Ok(())
}

fn rust_target() -> Result {
    // rustup here does not install the targets named in rust-toolchain.toml by itself.
    let installed = proc::output(Command::new("rustup").args(["target", "list", "--installed"]))
        .map_err(|e| format!("{e}\nrustup is needed to add the {WASM_TARGET} target"))?;
    if installed.lines().any(|line| line.trim() == WASM_TARGET) {
        return Ok(());
    }
    proc::run(Command::new("rustup").args(["target", "add", WASM_TARGET]))
}

fn rust_components() -> Result {
    let quiet = |tool: &str| {
        Command::new(crate::cargo())
            .args([tool, "--version"])
            .output()
            .is_ok_and(|out| out.status.success())
    };
    if quiet("fmt") && quiet("clippy") {
        return Ok(());
    }
    proc::run(Command::new("rustup").args(["component", "add", "rustfmt", "clippy"]))
}

/// The Debian packages of [`BROWSERS`] whose program is missing, each once, in order.
fn missing_packages(exists: impl Fn(&str) -> bool) -> (Vec<&'static str>, Vec<&'static str>) {
    let mut paths = Vec::new();
    let mut packages = Vec::new();
    for (path, provided_by) in BROWSERS {
        if exists(path) {
            continue;
        }
        paths.push(*path);
        for p in *provided_by {
            if !packages.contains(p) {
                packages.push(*p);
            }
        }
    }
    (paths, packages)
}

fn browsers() -> Result {
    let (paths, packages) = missing_packages(|p| Path::new(p).exists());
    if paths.is_empty() {
        return Ok(());
    }
    let (paths, packages) = (paths.join(", "), packages.join(" "));
    if !is_root() {
        return Err(format!(
            "{paths} missing and we are not root: install the Debian packages `{packages}` \
             (sudo apt-get install -y {packages}), then run this again"
        ));
    }
    proc::run(Command::new("apt-get").arg("update"))?;
    // One transaction, so ChromeDriver matches the browser's version.
    proc::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y"])
            .args(packages.split(' ')),
    )?;
    let (still, _) = missing_packages(|p| Path::new(p).exists());
    if still.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "apt-get installed {packages} but {} is still missing",
            still.join(", ")
        ))
    }
}

fn is_root() -> bool {
    proc::output(Command::new("id").arg("-u")).is_ok_and(|uid| uid.trim() == "0")
}

fn npm_tools() -> Result {
    let root = root();
    let lock = root.join("package-lock.json");
    // npm writes this hidden lockfile on every install, so its age says when node_modules was made.
    let installed = root.join("node_modules/.package-lock.json");
    if modified(&installed).is_some_and(|made| modified(&lock).is_some_and(|wanted| made >= wanted)) {
        return Ok(());
    }
    proc::run(
        Command::new("npm")
            .current_dir(&root)
            .args(["ci", "--no-audit", "--no-fund"])
            // Neither package downloads a browser, and nothing here may: say so to any that would.
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1"),
    )
    .map_err(|e| format!("{e}\nNode 20 and npm are needed for wasm-opt (binaryen) and playwright-core"))
}

fn modified(path: &Path) -> Option<SystemTime> {
    path.metadata().and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_packages_of_missing_programs_are_installed_each_once() {
        assert_eq!(missing_packages(|_| true), (vec![], vec![]));
        let (paths, packages) =
            missing_packages(|p| p != CHROMEDRIVER && p != "/usr/bin/xvfb-run" && p != "/usr/bin/xauth");
        assert_eq!(paths, [CHROMEDRIVER, "/usr/bin/xvfb-run", "/usr/bin/xauth"]);
        assert_eq!(packages, ["chromium", "chromium-driver", "xvfb", "xauth"]);
        let (_, all) = missing_packages(|_| false);
        assert_eq!(
            all,
            [
                "chromium",
                "chromium-driver",
                "firefox-esr",
                "webkit2gtk-driver",
                "xvfb",
                "xauth"
            ]
        );
    }
}
