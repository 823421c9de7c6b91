//! `cargo xtask size`: what the tag weighs in `dist/`, raw and compressed, against its budget.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::{dist_dir, Result};

/// The issue's budget for what a page downloads on first load (`utt.js` + `utt_bg.wasm`),
/// brotli-compressed. Not met yet: every line the command prints shows the distance to it.
pub const FIRST_LOAD_BROTLI_BUDGET: u64 = 20_000;
/// What the build may not exceed meanwhile: the size the tag measured when the budget above was
/// found out of reach for this feature set (ARCHITECTURE.md, "Where the bytes go"), plus 2% for
/// small fixes, so the tag can only shrink from here; raised once, by the 1.5 KB the journey
/// features were allowed (36,232 measured, plus about 170 for brotli's noise between builds). Lower
/// it whenever the tag shrinks; raising it is a decision for the changelog, not a way to make a
/// build pass.
pub const FIRST_LOAD_BROTLI_CEILING: u64 = 36_400;
/// The most the inline snippet may weigh, uncompressed: it is pasted into every page.
pub const SNIPPET_RAW_BUDGET: u64 = 700;
/// The files a page downloads when the tag loads; the snippet is inline and the .d.ts is for tools.
const FIRST_LOAD: &[&str] = &["utt.js", "utt_bg.wasm"];

/// One file's size, raw and compressed the way a server would send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sizes {
    /// The file's name in `dist/`.
    pub name: String,
    /// Bytes on disk.
    pub raw: u64,
    /// Bytes after gzip at level 9.
    pub gzip: u64,
    /// Bytes after brotli at quality 11.
    pub brotli: u64,
}

/// Prints the size of every file in `dist/` and fails if the tag is over its budget.
pub fn run() -> Result {
    let dist = dist_dir();
    let mut files: Vec<_> = fs::read_dir(&dist)
        .map_err(|e| format!("cannot read {}: {e} (run `cargo xtask build` first)", dist.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file() && !is_precompressed(path))
        .collect();
    files.sort();
    let mut all = Vec::new();
    println!("{:<16} {:>9} {:>9} {:>9}", "dist/", "raw", "gzip -9", "brotli 11");
    for path in files {
        let bytes = fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let sizes = measure(name, &bytes);
        println!(
            "{:<16} {:>9} {:>9} {:>9}",
            sizes.name, sizes.raw, sizes.gzip, sizes.brotli
        );
        all.push(sizes);
    }
    let verdicts = check(&all)?;
    for line in &verdicts.report {
        println!("{line}");
    }
    if verdicts.over.is_empty() {
        Ok(())
    } else {
        Err(format!("over budget: {}", verdicts.over.join("; ")))
    }
}

/// Whether a file in `dist/` is a precompressed copy of another (`utt.js.br`, `utt.js.gz`, as
/// `cargo xtask build` writes them for servers): the table measures the originals only.
pub fn is_precompressed(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "br" || e == "gz")
}

/// `bytes` after gzip at level 9.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes).expect("unreachable: writing to a Vec cannot fail");
    gz.finish().expect("unreachable: writing to a Vec cannot fail")
}

/// `bytes` after brotli at quality 11 (window 22).
pub fn brotli(bytes: &[u8]) -> Vec<u8> {
    let params = brotli::enc::BrotliEncoderParams {
        quality: 11,
        lgwin: 22,
        ..Default::default()
    };
    let mut br = Vec::new();
    brotli::BrotliCompress(&mut &bytes[..], &mut br, &params).expect("unreachable: writing to a Vec cannot fail");
    br
}

/// Measures one file; the compressors run in-process so the figures never depend on installed
/// tools, and are the very bytes of the build's `.gz` and `.br` files.
pub fn measure(name: String, bytes: &[u8]) -> Sizes {
    Sizes {
        name,
        raw: bytes.len() as u64,
        gzip: gzip(bytes).len() as u64,
        brotli: brotli(bytes).len() as u64,
    }
}

/// The budget's verdict: lines to print, and what is over (empty when all is within budget).
#[derive(Debug, Default)]
pub struct Verdicts {
    /// The totals, budgets and headroom, one line each.
    pub report: Vec<String>,
    /// One description per budget that is exceeded.
    pub over: Vec<String>,
}

/// Holds the measured files against the budgets.
pub fn check(all: &[Sizes]) -> Result<Verdicts> {
    let mut verdicts = Verdicts::default();
    let mut first_load = 0;
    for name in FIRST_LOAD {
        let file = all
            .iter()
            .find(|s| s.name == *name)
            .ok_or_else(|| format!("dist/{name} is missing (run `cargo xtask build`)"))?;
        first_load += file.brotli;
    }
    verdicts.report.push(line(
        "first load (utt.js + utt_bg.wasm), brotli",
        first_load,
        FIRST_LOAD_BROTLI_BUDGET,
    ));
    if first_load > FIRST_LOAD_BROTLI_BUDGET {
        verdicts.report.push(format!(
            "first load is NOT within the {FIRST_LOAD_BROTLI_BUDGET}-byte budget: {} bytes over; \
             enforced meanwhile: ceiling {FIRST_LOAD_BROTLI_CEILING}, headroom {}",
            first_load - FIRST_LOAD_BROTLI_BUDGET,
            FIRST_LOAD_BROTLI_CEILING as i64 - first_load as i64,
        ));
    }
    if first_load > FIRST_LOAD_BROTLI_CEILING {
        verdicts.over.push(format!(
            "first load is {first_load} bytes brotli, above the ceiling {FIRST_LOAD_BROTLI_CEILING} \
             (budget {FIRST_LOAD_BROTLI_BUDGET}; run `cargo xtask twiggy`)"
        ));
    }
    if let Some(snippet) = all.iter().find(|s| s.name == "snippet.js") {
        verdicts
            .report
            .push(line("snippet.js, raw", snippet.raw, SNIPPET_RAW_BUDGET));
        if snippet.raw > SNIPPET_RAW_BUDGET {
            verdicts.over.push(format!(
                "snippet.js is {} bytes raw, budget {SNIPPET_RAW_BUDGET}",
                snippet.raw
            ));
        }
    }
    Ok(verdicts)
}

fn line(what: &str, size: u64, budget: u64) -> String {
    let headroom = budget as i64 - size as i64;
    format!("{what}: {size} bytes, budget {budget}, headroom {headroom}")
}

#[cfg(test)]
mod tests {
    use super::{check, is_precompressed, measure, Sizes, FIRST_LOAD_BROTLI_CEILING};

    fn sizes(name: &str, raw: u64, brotli: u64) -> Sizes {
        Sizes {
            name: name.into(),
            raw,
            gzip: brotli + 10,
            brotli,
        }
    }

    #[test]
    fn first_load_counts_glue_and_wasm_but_not_snippet_or_types() {
        let all = [
            sizes("snippet.js", 600, 300),
            sizes("utt.d.ts", 9_000, 5_000),
            sizes("utt.js", 12_000, 4_000),
            sizes("utt_bg.wasm", 40_000, 15_000),
        ];
        let verdicts = check(&all).unwrap();
        assert!(verdicts.over.is_empty(), "{:?}", verdicts.over);
        assert!(
            verdicts.report[0].contains("19000 bytes, budget 20000, headroom 1000"),
            "{:?}",
            verdicts.report
        );
        assert!(
            verdicts.report[1].contains("600 bytes, budget 700, headroom 100"),
            "{:?}",
            verdicts.report
        );
    }

    #[test]
    fn over_the_ceiling_and_over_the_snippet_budget_both_fail() {
        let all = [
            sizes("snippet.js", 701, 300),
            sizes("utt.js", 5_000, FIRST_LOAD_BROTLI_CEILING - 15_000 + 1),
            sizes("utt_bg.wasm", 40_000, 15_000),
        ];
        let verdicts = check(&all).unwrap();
        assert_eq!(verdicts.over.len(), 2, "{:?}", verdicts.over);
        assert!(verdicts.over[0].contains("above the ceiling"), "{:?}", verdicts.over);
        assert!(
            verdicts.report.iter().any(|l| l.contains("headroom -1")),
            "{:?}",
            verdicts.report
        );
    }

    #[test]
    fn between_budget_and_ceiling_passes_but_says_how_far_from_the_budget() {
        let all = [sizes("utt.js", 5_000, 3_000), sizes("utt_bg.wasm", 40_000, 20_000)];
        let verdicts = check(&all).unwrap();
        assert!(verdicts.over.is_empty(), "{:?}", verdicts.over);
        assert!(
            verdicts.report[0].contains("23000 bytes, budget 20000, headroom -3000"),
            "{:?}",
            verdicts.report
        );
        assert!(
            verdicts.report[1].contains("NOT within the 20000-byte budget: 3000 bytes over"),
            "{:?}",
            verdicts.report
        );
    }

    #[test]
    fn a_missing_first_load_file_is_an_error_not_a_pass() {
        assert!(check(&[sizes("utt.js", 10, 10)]).is_err());
    }

    #[test]
    fn precompressed_copies_are_not_measured_as_files() {
        for (name, skipped) in [
            ("utt.js.br", true),
            ("utt_bg.wasm.gz", true),
            ("utt.js", false),
            ("utt_bg.wasm", false),
            ("utt.d.ts", false),
        ] {
            assert_eq!(is_precompressed(std::path::Path::new(name)), skipped, "{name}");
        }
    }

    #[test]
    fn compressed_sizes_are_real_and_smaller_for_repetitive_input() {
        let text = "utt(\"pageview\");\n".repeat(200);
        let measured = measure("x.js".into(), text.as_bytes());
        assert_eq!(measured.raw, text.len() as u64);
        assert!(measured.gzip > 0 && measured.gzip < measured.raw / 10, "{measured:?}");
        assert!(measured.brotli > 0 && measured.brotli <= measured.gzip, "{measured:?}");
    }
}
