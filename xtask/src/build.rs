//! `cargo xtask build`: the deployable tag in `dist/` (cargo, then wasm-bindgen, then wasm-opt -Oz,
//! and terser for the JavaScript).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use wasm_bindgen_cli_support::Bindgen;

use crate::setup::WASM_TARGET;
use crate::{dist_dir, proc, root, target_dir, Result};

/// wasm-opt's flags: the release profile keeps the target-features section, but spelling the
/// features out keeps wasm-opt from rejecting the module if a future profile strips it.
pub const WASM_OPT_FEATURES: &[&str] = &[
    "--enable-bulk-memory",
    "--enable-nontrapping-float-to-int",
    "--enable-sign-ext",
    "--enable-mutable-globals",
    "--enable-reference-types",
    "--enable-multivalue",
];

/// Builds the tag and writes `dist/`: `utt_bg.wasm`, `utt.js`, `utt.d.ts` and `snippet.js`.
pub fn run() -> Result {
    let bindgen_dir = bindgen()?;
    let dist = dist_dir();
    // Start from an empty folder so nothing stale (a snippet that was deleted) is measured or shipped.
    if dist.exists() {
        fs::remove_dir_all(&dist).map_err(|e| format!("cannot clear {}: {e}", dist.display()))?;
    }
    fs::create_dir_all(&dist).map_err(|e| format!("cannot create {}: {e}", dist.display()))?;

    wasm_opt(&bindgen_dir.join("utt_bg.wasm"), &dist.join("utt_bg.wasm"), &[])?;

    let js_dir = root().join("src/js");
    let glue = read(&bindgen_dir.join("utt.js"))?;
    let module = match read_if_exists(&js_dir.join("loader.js"))? {
        Some(loader) => join_glue_and_loader(&glue, &loader)?,
        None => glue,
    };
    minify(&module, &dist.join("utt.js"))?;

    let types = match read_if_exists(&js_dir.join("utt.d.ts"))? {
        Some(types) => types,
        None => read(&bindgen_dir.join("utt.d.ts"))?,
    };
    write(&dist.join("utt.d.ts"), types.as_bytes())?;

    if let Some(snippet) = read_if_exists(&js_dir.join("snippet.js"))? {
        write(&dist.join("snippet.js"), snippet.as_bytes())?;
    }

    println!("build: wrote");
    let mut names: Vec<PathBuf> = fs::read_dir(&dist)
        .map_err(|e| format!("cannot list {}: {e}", dist.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    names.sort();
    for path in names {
        let len = path.metadata().map(|m| m.len()).unwrap_or(0);
        println!(
            "  {:<40} {len:>8} bytes",
            path.strip_prefix(root()).unwrap_or(&path).display()
        );
    }
    Ok(())
}

/// Compiles the tag for wasm32 and runs wasm-bindgen on it; returns the folder of its output.
pub fn bindgen() -> Result<PathBuf> {
    let mut cargo = Command::new(crate::cargo());
    cargo.current_dir(root()).args([
        "build",
        "--release",
        "--target",
        WASM_TARGET,
        "-p",
        "utt",
        "--lib",
        "--features",
        "tag",
        "--message-format=json-render-diagnostics",
    ]);
    proc::echo(&cargo);
    let json = proc::output(&mut cargo).map_err(|e| format!("building the tag failed: {e}"))?;
    let wasm = tag_artifact(&json).ok_or("cargo built no utt .wasm (is `cdylib` still in [lib] crate-type?)")?;

    let out = target_dir().join("utt-bindgen");
    if out.exists() {
        fs::remove_dir_all(&out).map_err(|e| format!("cannot clear {}: {e}", out.display()))?;
    }
    Bindgen::new()
        .input_path(&wasm)
        .out_name("utt")
        .web(true)
        .map_err(|e| format!("wasm-bindgen: {e:#}"))?
        .typescript(true)
        .omit_default_module_path(false)
        .generate(&out)
        .map_err(|e| format!("wasm-bindgen on {}: {e:#}", wasm.display()))?;
    Ok(out)
}

/// Runs the npm package's wasm-opt (binaryen 132: Debian's 108 breaks the module) with -Oz.
pub fn wasm_opt(input: &Path, output: &Path, extra: &[&str]) -> Result {
    let wasm_opt = root().join("node_modules/.bin/wasm-opt");
    if !wasm_opt.exists() {
        return Err(format!("{} is missing: run `cargo xtask setup`", wasm_opt.display()));
    }
    proc::run(
        Command::new(wasm_opt)
            .arg("-Oz")
            .args(WASM_OPT_FEATURES)
            .args(extra)
            .arg(input)
            .arg("-o")
            .arg(output),
    )
}

/// Minifies the joined module with the npm package's terser (as an ES module, so the exports keep
/// their names) into `output`: about 2 KB brotli less for every first load.
fn minify(module: &str, output: &Path) -> Result {
    let terser = root().join("node_modules/.bin/terser");
    if !terser.exists() {
        return Err(format!("{} is missing: run `cargo xtask setup`", terser.display()));
    }
    let input = target_dir().join("utt-bindgen/utt.joined.js");
    write(&input, module.as_bytes())?;
    proc::run(
        Command::new(terser)
            .arg(&input)
            .args(["--module", "--compress", "passes=2", "--mangle", "--toplevel", "-o"])
            .arg(output),
    )
}

/// Finds the `.wasm` file of the `utt` library among cargo's JSON messages.
fn tag_artifact(json: &str) -> Option<PathBuf> {
    json.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "utt")
        .flat_map(|msg| msg["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|name| name.as_str().map(PathBuf::from))
        .find(|path| path.extension().is_some_and(|ext| ext == "wasm"))
}

/// The glue's own default export, which a loader with an `export default` of its own replaces.
const GLUE_DEFAULT_EXPORTS: &[(&str, &str)] = &[
    ("export { initSync, __wbg_init as default };", "export { initSync };"),
    ("export default __wbg_init;", ""),
];

/// Makes one ES module of the bindgen glue followed by the loader, which uses the glue's
/// top-level bindings (`__wbg_init`, `initSync`, the exported functions) directly.
fn join_glue_and_loader(glue: &str, loader: &str) -> Result<String> {
    if !glue.contains("new URL('utt_bg.wasm', import.meta.url)") {
        return Err("the bindgen glue no longer loads `utt_bg.wasm` beside itself; dist/ would not work".into());
    }
    let mut glue = glue.to_string();
    let loader_has_default = loader
        .lines()
        .any(|line| line.trim_start().starts_with("export default"));
    if loader_has_default {
        let (from, to) = GLUE_DEFAULT_EXPORTS
            .iter()
            .find(|(from, _)| glue.contains(from))
            .ok_or("src/js/loader.js has `export default` but the glue's default export was not found to drop")?;
        glue = glue.replacen(from, to, 1);
    }
    Ok(format!("{}\n{loader}", glue.trim_end()))
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn read_if_exists(path: &Path) -> Result<Option<String>> {
    if path.exists() {
        read(path).map(Some)
    } else {
        Ok(None)
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result {
    fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::join_glue_and_loader;

    const GLUE: &str = "\
let wasm;
async function __wbg_init(module_or_path) {
    if (module_or_path === undefined) { module_or_path = new URL('utt_bg.wasm', import.meta.url); }
}
export { initSync, __wbg_init as default };
";

    #[test]
    fn loader_follows_the_glue_and_keeps_its_default_export_when_it_has_none() {
        let joined = join_glue_and_loader(GLUE, "export function utt() { return __wbg_init(); }\n").unwrap();
        assert!(joined.starts_with("let wasm;"));
        assert!(joined.contains("export { initSync, __wbg_init as default };"));
        assert!(joined.ends_with("export function utt() { return __wbg_init(); }\n"));
    }

    #[test]
    fn a_loader_default_export_replaces_the_glue_one() {
        let joined = join_glue_and_loader(GLUE, "export default utt;\n").unwrap();
        assert!(joined.contains("export { initSync };"));
        assert_eq!(joined.matches("export default").count(), 1);
        assert!(!joined.contains("__wbg_init as default"));
    }

    #[test]
    fn refuses_glue_that_does_not_load_the_wasm_beside_it() {
        let glue = GLUE.replace("new URL('utt_bg.wasm', import.meta.url)", "'/elsewhere.wasm'");
        assert!(join_glue_and_loader(&glue, "").is_err());
    }
}
