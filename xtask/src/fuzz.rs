//! `cargo xtask fuzz [CASES]`: the property tests of the parsers that read outside input
//! (`tests/props.rs`) with many more cases than the test command runs, a million per property
//! unless told, optimised, one property at a time, timed per property and per parser.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::{cargo, proc, root, Result};

/// Cases per property unless the command line says otherwise.
const DEFAULT_CASES: u64 = 1_000_000;

/// Runs every property of `tests/props.rs` with `CASES` cases and prints the figures.
pub fn run(args: &[String]) -> Result {
    let cases = match args {
        [] => DEFAULT_CASES,
        [n] => n
            .replace(['_', ','], "")
            .parse()
            .ok()
            .filter(|&n: &u64| n > 0)
            .ok_or_else(|| format!("`{n}` is not a number of cases"))?,
        _ => return Err("usage: cargo xtask fuzz [CASES]".into()),
    };
    proc::run(&mut props(&["--no-run"]))?;
    let listed = proc::output(props(&["-q", "--", "--list", "--format", "terse"]).env("PROPTEST_CASES", "1"))?;
    let names: Vec<&str> = listed.lines().filter_map(|l| l.strip_suffix(": test")).collect();
    if names.is_empty() {
        return Err("tests/props.rs lists no property".into());
    }
    let mut figures: Vec<(&str, Duration)> = Vec::new();
    for name in &names {
        let started = Instant::now();
        proc::run(
            props(&["-q", "--", "--exact", name, "--test-threads", "1"]).env("PROPTEST_CASES", cases.to_string()),
        )?;
        let took = started.elapsed();
        println!("fuzz: {name}: {} cases in {}", thousands(cases), per_case(took, cases));
        figures.push((name, took));
    }
    println!("\nfuzz: {} cases per property, by parser:", thousands(cases));
    let mut parsers: Vec<&str> = Vec::new();
    for (name, _) in &figures {
        let parser = parser_of(name);
        if !parsers.contains(&parser) {
            parsers.push(parser);
        }
    }
    for parser in parsers {
        let of: Vec<&(&str, Duration)> = figures.iter().filter(|(n, _)| parser_of(n) == parser).collect();
        let took: Duration = of.iter().map(|(_, t)| *t).sum();
        let n = cases * of.len() as u64;
        println!(
            "  {parser:<10} {} properties, {} cases in {}",
            of.len(),
            thousands(n),
            per_case(took, n)
        );
    }
    Ok(())
}

/// `cargo test --release -p utt --test props` with more arguments.
fn props(args: &[&str]) -> Command {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root())
        .args(["test", "--release", "-p", "utt", "--test", "props"])
        .args(args);
    cmd
}

/// The parser a property tests: its name up to the first `_` (`url_any_text` → `url`), and
/// `command_and_config…` counts for both.
fn parser_of(name: &str) -> &str {
    name.split('_').next().unwrap_or(name)
}

fn per_case(took: Duration, cases: u64) -> String {
    let us = took.as_secs_f64() * 1e6 / cases.max(1) as f64;
    format!("{:.1} s ({us:.1} µs a case)", took.as_secs_f64())
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_well() {
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(0), "0");
        assert_eq!(parser_of("url_any_text"), "url");
        assert_eq!(per_case(Duration::from_secs(2), 1_000_000), "2.0 s (2.0 µs a case)");
    }
}
