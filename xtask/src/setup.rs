//! `cargo xtask setup`: makes this machine ready for every test, quickly when it already is.

use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use crate::{proc, root, Result};

/// The wasm target the tag compiles to.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";
/// Debian's Chromium: the browser every test drives.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's ChromeDriver, installed with the browser so their versions match.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Where Debian's PostgreSQL packages put the server programs (one folder per major version).
pub const POSTGRES_LIB: &str = "/usr/lib/postgresql";

/// Installs what is missing: the wasm target, rustfmt/clippy, Chromium with ChromeDriver,
/// PostgreSQL's server programs, npm tools.
pub fn run() -> Result {
    rust_target()?;
    rust_components()?;
    chromium()?;
    postgresql()?;
    npm_tools()?;
    println!("setup: ready ({WASM_TARGET}, {CHROMIUM}, {CHROMEDRIVER}, {POSTGRES_LIB}, node_modules)");
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

fn chromium() -> Result {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return Ok(());
    }
    let packages = "chromium chromium-driver";
    if !is_root() {
        return Err(format!(
            "{CHROMIUM} or {CHROMEDRIVER} is missing and we are not root: install the Debian packages \
             `{packages}` together (sudo apt-get install -y {packages}), then run this again"
        ));
    }
    proc::run(Command::new("apt-get").arg("update"))?;
    // Both packages in one transaction, so the driver matches the browser's version.
    proc::run(Command::new("apt-get").env("DEBIAN_FRONTEND", "noninteractive").args([
        "install",
        "-y",
        "chromium",
        "chromium-driver",
    ]))?;
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        Ok(())
    } else {
        Err(format!(
            "apt-get installed {packages} but {CHROMIUM} or {CHROMEDRIVER} is still missing"
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
