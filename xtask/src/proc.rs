//! Running child processes: echo the command, stream its output, and count test results.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::Result;

/// Tests passed and failed so far, as the runners reported them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Tests that passed.
    pub passed: u64,
    /// Tests that failed.
    pub failed: u64,
}

impl Counts {
    /// Adds what one line of runner output reports, if it is a closing line we understand.
    pub fn add_line(&mut self, line: &str) {
        if let Some((passed, failed)) = cargo_result(line) {
            self.passed += passed;
            self.failed += failed;
        } else if let Some(n) = node_count(line, "pass") {
            self.passed += n;
        } else if let Some(n) = node_count(line, "fail") {
            self.failed += n;
        }
    }
}

/// Reads libtest's `test result: ok. 3 passed; 1 failed; ...` line (the wasm runner prints the same).
fn cargo_result(line: &str) -> Option<(u64, u64)> {
    let rest = &line[line.find("test result: ")? + "test result: ".len()..];
    let (_verdict, figures) = rest.split_once(". ")?;
    let mut passed = None;
    let mut failed = None;
    for part in figures.split(';') {
        match part.trim().split_once(' ') {
            Some((n, "passed")) => passed = n.parse().ok(),
            Some((n, "failed")) => failed = n.parse().ok(),
            _ => {}
        }
    }
    Some((passed?, failed?))
}

/// Reads node's closing `# pass 3` (TAP reporter) or `ℹ pass 3` (spec reporter) lines.
fn node_count(line: &str, word: &str) -> Option<u64> {
    let rest = line.strip_prefix("# ").or_else(|| line.strip_prefix("ℹ "))?;
    rest.strip_prefix(word)?.strip_prefix(' ')?.trim().parse().ok()
}

/// Quotes a word for the shell when it needs it, so an echoed command can be pasted back.
fn quote(word: &str) -> String {
    if word.is_empty() || word.contains(|c: char| c.is_whitespace() || "'\"$`\\;&|<>()*?".contains(c)) {
        format!("'{}'", word.replace('\'', "'\\''"))
    } else {
        word.to_string()
    }
}

/// Prints the command the way a person would type it, so a failure can be reproduced.
pub fn echo(cmd: &Command) {
    let envs: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), quote(&v?.to_string_lossy()))))
        .collect();
    let args: Vec<String> = cmd.get_args().map(|a| quote(&a.to_string_lossy())).collect();
    let prefix = if envs.is_empty() {
        String::new()
    } else {
        format!("{} ", envs.join(" "))
    };
    println!("$ {prefix}{} {}", cmd.get_program().to_string_lossy(), args.join(" "));
    let _ = std::io::stdout().flush();
}

/// Runs `f` as a named step: one line when it starts, one with its duration when it ends, so
/// nobody waits in silence (a first build takes minutes).
pub fn step<T>(name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    println!("==> {name}");
    let _ = std::io::stdout().flush();
    let started = Instant::now();
    let outcome = f();
    took(name, started, outcome.is_ok());
    outcome
}

/// Prints how long something that started at `started` took.
fn took(name: &str, started: Instant, ok: bool) {
    let verdict = if ok { "done" } else { "FAILED" };
    println!("<== {name}: {verdict} in {}", duration(started.elapsed().as_secs_f64()));
    let _ = std::io::stdout().flush();
}

/// A duration for people: `0.4 s`, `12.3 s`, `4 min 05 s`.
pub fn duration(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else {
        let whole = secs.round() as u64;
        format!("{} min {:02} s", whole / 60, whole % 60)
    }
}

/// The program's name for the end line of a command (`cargo clippy`, `npm ci`, `wasm-opt`).
fn short_name(cmd: &Command) -> String {
    let program = std::path::Path::new(cmd.get_program())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match cmd.get_args().next() {
        Some(first) if !first.to_string_lossy().starts_with('-') && !first.to_string_lossy().contains('/') => {
            format!("{program} {}", first.to_string_lossy())
        }
        _ => program,
    }
}

/// Runs `cmd` with inherited output and fails unless it exits with success.
pub fn run(cmd: &mut Command) -> Result {
    echo(cmd);
    let started = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    took(&short_name(cmd), started, status.success());
    if status.success() {
        Ok(())
    } else {
        Err(format!("{:?} exited with {status}", cmd.get_program()))
    }
}

/// Runs `cmd` and returns its standard output (its errors still reach the terminal).
pub fn output(cmd: &mut Command) -> Result<String> {
    let started = Instant::now();
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    // Quick queries (`rustup target list`, `id -u`) are not steps; only what a person waits for.
    if started.elapsed().as_secs_f64() >= 1.0 {
        took(&short_name(cmd), started, out.status.success());
    }
    if !out.status.success() {
        return Err(format!("{:?} exited with {}", cmd.get_program(), out.status));
    }
    String::from_utf8(out.stdout).map_err(|_| format!("{:?} printed something that is not UTF-8", cmd.get_program()))
}

/// Runs a test command, streaming its standard output through while adding up its results.
pub fn run_counted(cmd: &mut Command, counts: &mut Counts) -> Result {
    echo(cmd);
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    let stdout = child.stdout.take().expect("unreachable: stdout was piped");
    let mut out = std::io::stdout().lock();
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("reading the output of {:?}: {e}", cmd.get_program()))?;
        counts.add_line(&line);
        let _ = writeln!(out, "{line}");
    }
    drop(out);
    let status = child
        .wait()
        .map_err(|e| format!("waiting for {:?}: {e}", cmd.get_program()))?;
    took(&short_name(cmd), started, status.success());
    if status.success() {
        Ok(())
    } else {
        Err(format!("{:?} exited with {status}", cmd.get_program()))
    }
}

#[cfg(test)]
mod tests {
    use super::{duration, Counts};

    #[test]
    fn durations_read_as_seconds_then_minutes() {
        assert_eq!(duration(0.04), "0.0 s");
        assert_eq!(duration(12.345), "12.3 s");
        assert_eq!(duration(59.94), "59.9 s");
        assert_eq!(duration(245.0), "4 min 05 s");
    }

    fn check(lines: &[&str], passed: u64, failed: u64) {
        let mut counts = Counts::default();
        for line in lines {
            counts.add_line(line);
        }
        assert_eq!(counts, Counts { passed, failed }, "lines: {lines:?}");
    }

    #[test]
    fn counts_libtest_and_node_closing_lines() {
        check(
            &["test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s"],
            12,
            0,
        );
        check(
            &[
                "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.20s",
                "test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s",
                "test result: ok. 2 passed; 0 failed; 0 ignored; 0 filtered out; finished in 1.35s",
            ],
            5,
            2,
        );
        check(
            &["# tests 4", "# suites 0", "# pass 3", "# fail 1", "# cancelled 0"],
            3,
            1,
        );
        check(&["ℹ tests 2", "ℹ pass 2", "ℹ fail 0"], 2, 0);
    }

    #[test]
    fn ignores_lines_that_only_look_like_results() {
        check(
            &[
                "test cookie_written_is_read_back ... ok",
                "# passes are fine",
                "# pass three",
                "ok 1 - test result: nothing here",
                "running 3 tests",
            ],
            0,
            0,
        );
    }
}
