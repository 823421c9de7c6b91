//! `cargo xtask build`: the deployable tag in `dist/` (cargo, then wasm-bindgen, then wasm-opt -Oz,
//! and terser for the JavaScript).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use wasm_bindgen_cli_support::{Bindgen, EncodeInto};

use crate::setup::WASM_TARGET;
use crate::{dist_dir, proc, root, size, target_dir, Result};

/// wasm-opt's flags: the tag profile keeps the target-features section, but spelling the
/// features out keeps wasm-opt from rejecting the module if a future profile strips it.
pub const WASM_OPT_FEATURES: &[&str] = &[
    "--enable-bulk-memory",
    "--enable-nontrapping-float-to-int",
    "--enable-sign-ext",
    "--enable-mutable-globals",
    "--enable-reference-types",
    "--enable-multivalue",
];

/// wasm-opt's passes for the deployable wasm, in order, each measured (brotli): the short names
/// (about 500 bytes with the glue's), no `producers` and `target_features` sections (about 100;
/// the browser reads neither), the lowest 1 KB of memory known unused (it is: the stack starts
/// at 1 MB and the data above it), each function's side effects computed so calls whose results
/// go unused can go (about 40), similar functions merged and the control flow flattened and
/// rebuilt before `-Oz` (about 400), and all of it repeated until it stops shrinking (about 200).
/// Tried and left out, each measured larger: `--gufa`, `--dae-optimizing`, `-O4` first, no
/// `--flatten`; `--type-merging` and stack IR changed nothing.
const DIST_WASM_OPT: &[&str] = &[
    "--minify-imports-and-exports-and-modules",
    "--strip-producers",
    "--strip-target-features",
    "--low-memory-unused",
    "--generate-global-effects",
    "--merge-similar-functions",
    "--flatten",
    "--rereloop",
    "-Oz",
    "--merge-similar-functions",
    "-Oz",
    "--converge",
];

/// One of the two builds of the tag, from the same crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    /// What every page loads: `utt.js` + `utt_bg.wasm` (the `tag` feature: codes, no debug state).
    Production,
    /// What the debug page and `?utt_debug=1` load: `utt_debug.js` + `utt_debug_bg.wasm`
    /// (`tag` and `debug`: the same decisions, with the debug state, notes and sentences).
    Debug,
}

impl Build {
    /// The cargo features of this build.
    fn features(self) -> &'static str {
        match self {
            Build::Production => "tag",
            Build::Debug => "tag,debug",
        }
    }

    /// The module's name: `NAME.js` and `NAME_bg.wasm` in `dist/`.
    pub fn name(self) -> &'static str {
        match self {
            Build::Production => "utt",
            Build::Debug => "utt_debug",
        }
    }
}

/// Builds the tag twice (production and debug) and writes `dist/`: `utt.js`, `utt_bg.wasm`,
/// `utt_texts.js` (the sentences of the production tag's codes), `utt_debug.js`,
/// `utt_debug_bg.wasm`, `utt.d.ts`, `ire.js` (the opt-in `ire()`
/// compatibility script) and `snippet.js`, each with its `.br` and `.gz` beside it.
pub fn run() -> Result {
    let dist = dist_dir();
    // Start from an empty folder so nothing stale (a snippet that was deleted) is measured or shipped.
    if dist.exists() {
        fs::remove_dir_all(&dist).map_err(|e| format!("cannot clear {}: {e}", dist.display()))?;
    }
    fs::create_dir_all(&dist).map_err(|e| format!("cannot create {}: {e}", dist.display()))?;
    let js_dir = root().join("src/js");
    let loader = read(&js_dir.join("loader.js"))?;
    for build in [Build::Production, Build::Debug] {
        proc::step(&format!("the {} build", build.name()), || {
            write_build(build, &dist, &loader)
        })?;
    }

    write(&dist.join("utt_texts.js"), texts_module().as_bytes())?;
    let types = read(&js_dir.join("utt.d.ts"))?;
    write(&dist.join("utt.d.ts"), types.as_bytes())?;

    // Not part of the tag: a classic script that only sites migrating from impact's `ire()` load.
    if let Some(ire) = read_if_exists(&js_dir.join("ire.js"))? {
        minify(&ire, &dist.join("ire.js"), false)?;
    }
    if let Some(snippet) = read_if_exists(&js_dir.join("snippet.js"))? {
        write(&dist.join("snippet.js"), snippet.as_bytes())?;
    }
    precompress(&dist)?;

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

/// Compiles one build and writes its module and wasm to `dist`.
fn write_build(build: Build, dist: &Path, loader: &str) -> Result {
    let name = build.name();
    let bindgen_dir = bindgen(build)?;
    let bindgen_wasm = bindgen_dir.join(format!("{name}_bg.wasm"));
    let wasm_path = dist.join(format!("{name}_bg.wasm"));
    // The import, export and module names shrink to a letter or two; the glue is renamed to match.
    let names = wasm_opt_output(&bindgen_wasm, &wasm_path, DIST_WASM_OPT)?;
    if build == Build::Production {
        // The same wasm with its names, for `cargo xtask size`'s core::fmt check and for twiggy.
        let named = size::named_wasm();
        if let Some(dir) = named.parent() {
            fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let named_passes: Vec<&str> = DIST_WASM_OPT.iter().copied().chain(["-g"]).collect();
        wasm_opt_output(&bindgen_wasm, &named, &named_passes)?;
    }
    let wasm = fs::read(&wasm_path).map_err(|e| format!("cannot read {}: {e}", wasm_path.display()))?;
    let module =
        first_import_module(&wasm).ok_or_else(|| format!("{}: no import module found", wasm_path.display()))?;
    let glue = rename_in_glue(&read(&bindgen_dir.join(format!("{name}.js")))?, &names, &module)?;
    let module = join_glue_and_loader(&glue, loader, name)?;
    minify(&module, &dist.join(format!("{name}.js")), true)
}

/// `utt_texts.js`: `export default {"1":"is required",…};`, the sentence of every code the
/// production wasm can answer, from the tag's one list (`utt::core::text::ALL`), so every code
/// has its sentence by construction. The loader imports it when a call is refused.
pub fn texts_module() -> String {
    let map: serde_json::Map<String, serde_json::Value> = utt::core::text::ALL
        .iter()
        .map(|(code, text)| (code.to_string(), serde_json::Value::from(*text)))
        .collect();
    format!(
        "// The sentence of each code the production tag answers a refused call with (written by\n\
         // `cargo xtask build` from src/core/text.rs; the loader imports it when a call is refused).\n\
         export default {};\n",
        serde_json::Value::Object(map)
    )
}

/// Writes `NAME.br` (brotli 11) and `NAME.gz` (gzip -9) beside every file of `dir`: a server
/// sends them as they are to clients that accept them (the collector's static files do), so
/// the best compression costs nothing per request. They are the compressions `cargo xtask
/// size` measures.
pub fn precompress(dir: &Path) -> Result {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file() && !size::is_precompressed(path))
        .collect();
    files.sort();
    for path in files {
        let bytes = fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let beside = |ext: &str| {
            let mut name = path.as_os_str().to_owned();
            name.push(ext);
            PathBuf::from(name)
        };
        write(&beside(".br"), &size::brotli(&bytes))?;
        write(&beside(".gz"), &size::gzip(&bytes))?;
    }
    Ok(())
}

/// Compiles one build of the tag for wasm32 and runs wasm-bindgen on it; returns the folder of
/// its output.
pub fn bindgen(build: Build) -> Result<PathBuf> {
    let mut cargo = Command::new(crate::cargo());
    cargo.current_dir(root()).args([
        "build",
        "--profile",
        "tag",
        "--target",
        WASM_TARGET,
        "-p",
        "utt",
        "--lib",
        "--features",
        build.features(),
        "--message-format=json-render-diagnostics",
    ]);
    proc::echo(&cargo);
    let json = proc::output(&mut cargo).map_err(|e| format!("building the tag failed: {e}"))?;
    let wasm = tag_artifact(&json).ok_or("cargo built no utt .wasm (is `cdylib` still in [lib] crate-type?)")?;

    let out = target_dir().join(format!("{}-bindgen", build.name()));
    if out.exists() {
        fs::remove_dir_all(&out).map_err(|e| format!("cannot clear {}: {e}", out.display()))?;
    }
    proc::step("wasm-bindgen", || bindgen_into(&wasm, &out, build.name()))?;
    Ok(out)
}

/// wasm-bindgen's glue and wasm for the tag's `wasm` in `out`.
fn bindgen_into(wasm: &Path, out: &Path, name: &str) -> Result {
    Bindgen::new()
        .input_path(wasm)
        .out_name(name)
        .web(true)
        .map_err(|e| format!("wasm-bindgen: {e:#}"))?
        .typescript(true)
        // `TextEncoder.encodeInto` is in every browser the tag supports (Safari 14.1+; the docs
        // ask for 16+), so the glue needs no fallback for it.
        .encode_into(EncodeInto::Always)
        .omit_default_module_path(false)
        .generate(out)
        .map_err(|e| format!("wasm-bindgen on {}: {e:#}", wasm.display()))
}

/// Minifies JavaScript with the npm package's terser into `output`: the joined module (`module`:
/// as an ES module, so the exports keep their names; about 2 KB brotli less for every first
/// load), or a classic script, whose top-level names are the page's and are kept.
fn minify(code: &str, output: &Path, module: bool) -> Result {
    let terser = root().join("node_modules/.bin/terser");
    if !terser.exists() {
        return Err(format!("{} is missing: run `cargo xtask setup`", terser.display()));
    }
    let name = output.file_name().and_then(|n| n.to_str()).unwrap_or("out.js");
    let dir = target_dir().join("terser");
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let input = dir.join(format!("{name}.in.js"));
    write(&input, code.as_bytes())?;
    let mut terser = Command::new(terser);
    terser.arg(&input);
    if module {
        terser.args(["--module", "--toplevel"]);
    }
    proc::run(terser.args(["--compress", "passes=2", "--mangle", "-o"]).arg(output))
}

/// Runs wasm-opt with the given passes and flags, in order, answering what it printed (the names
/// map of the `--minify-…` passes).
fn wasm_opt_output(input: &Path, output: &Path, passes: &[&str]) -> Result<String> {
    let wasm_opt = root().join("node_modules/.bin/wasm-opt");
    if !wasm_opt.exists() {
        return Err(format!("{} is missing: run `cargo xtask setup`", wasm_opt.display()));
    }
    let mut cmd = Command::new(wasm_opt);
    cmd.args(WASM_OPT_FEATURES)
        .args(passes)
        .arg(input)
        .arg("-o")
        .arg(output);
    proc::echo(&cmd);
    proc::output(&mut cmd)
}

/// Renames in the bindgen glue what `wasm-opt --minify-imports-and-exports-and-modules` renamed
/// in the wasm (its `names` map): the import module and the keys of the imports object, and
/// every `wasm.<export>`. Each wasm-bindgen import name carries a hash, so in both files these
/// are incompressible bytes (about 500 bytes brotli). Every old name must be found in the glue,
/// or the build fails rather than ship a tag that cannot link.
fn rename_in_glue(glue: &str, names: &str, new_module: &str) -> Result<String> {
    // `--converge` runs the pass again on names already short, and an import that became
    // unused meanwhile is dropped, shifting the later names: each name is followed through every
    // map to its final one.
    let maps = serde_json::Deserializer::from_str(names)
        .into_iter::<serde_json::Value>()
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| format!("wasm-opt's names map: {e}"))?;
    let Some((map, later)) = maps.split_first() else {
        return Err("wasm-opt printed no names map".into());
    };
    // The final name of `name` (the `to` column of `key` rows whose `from` column is it), or
    // `None` if a later pass dropped it.
    let follow = |key: &str, from: usize, to: usize, name: &str| {
        let mut name = name.to_string();
        for m in later {
            let rows = m[key].as_array().cloned().unwrap_or_default();
            let row = rows.iter().find(|r| r[from].as_str() == Some(&name))?;
            name = row[to].as_str()?.to_string();
        }
        Some(name)
    };
    let pairs = |key: &str| map[key].as_array().cloned().unwrap_or_default();
    let mut glue = glue.to_string();
    let mut module: Option<String> = None;
    for import in pairs("imports") {
        let (Some(m), Some(old), Some(new)) = (import[0].as_str(), import[1].as_str(), import[2].as_str()) else {
            return Err(format!("wasm-opt's names map: unexpected import {import}"));
        };
        if module.as_deref().is_some_and(|m0| m0 != m) {
            return Err(format!("the wasm imports from more than one module ({m})"));
        }
        module = Some(m.to_string());
        // A dropped import keeps its glue function under its old name: nothing calls it.
        if let Some(new) = follow("imports", 1, 2, new) {
            glue = replace_name(&glue, &format!("{old}:"), &format!("{new}:"))?;
        }
    }
    if let Some(m) = module {
        glue = replace_name(&glue, &format!("\"{m}\":"), &format!("\"{new_module}\":"))?;
    }
    for export in pairs("exports") {
        let (Some(old), Some(new)) = (export[0].as_str(), export[1].as_str()) else {
            return Err(format!("wasm-opt's names map: unexpected export {export}"));
        };
        let Some(new) = follow("exports", 0, 1, new) else {
            return Err(format!("wasm-opt dropped the export {old}"));
        };
        // wasm-opt lists every export, and the glue may not use them all (`__abort_handler`).
        if glue.contains(&format!("wasm.{old}")) {
            glue = replace_name(&glue, &format!("wasm.{old}"), &format!("wasm.{new}"))?;
        }
    }
    Ok(glue)
}

/// The module name of the first import of a wasm binary (wasm-opt does not print the minified
/// module name, so it is read back from its output).
fn first_import_module(wasm: &[u8]) -> Option<String> {
    fn leb(b: &[u8], i: &mut usize) -> Option<usize> {
        let (mut n, mut shift) = (0usize, 0);
        loop {
            let byte = *b.get(*i)?;
            *i += 1;
            n |= usize::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(n);
            }
            shift += 7;
        }
    }
    let mut i = 8;
    while i < wasm.len() {
        let id = wasm[i];
        i += 1;
        let size = leb(wasm, &mut i)?;
        if id == 2 {
            let mut j = i;
            leb(wasm, &mut j)?;
            let len = leb(wasm, &mut j)?;
            return String::from_utf8(wasm.get(j..j + len)?.to_vec()).ok();
        }
        i += size;
    }
    None
}

/// Replaces every occurrence of `old` in `text` that is not followed by more of an identifier.
fn replace_name(text: &str, old: &str, new: &str) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut found = false;
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '$';
    while let Some(i) = rest.find(old) {
        let after = &rest[i + old.len()..];
        // A whole name: not the end of a longer one (`data:` for `a:`) nor the start of one.
        let prev = rest[..i].chars().last().or_else(|| out.chars().last());
        let whole = !(after.starts_with(ident) || old.starts_with(ident) && prev.is_some_and(ident));
        out.push_str(&rest[..i]);
        out.push_str(if whole { new } else { old });
        found |= whole;
        rest = after;
    }
    out.push_str(rest);
    if !found {
        return Err(format!("the bindgen glue has no `{old}` to rename"));
    }
    Ok(out)
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

/// The glue's export of its own loader (`__wbg_init`, `initSync`): the tag's loader starts the
/// wasm itself, so the build drops this line and terser drops what only it used (about 1 KB raw:
/// the module forms, deprecation warnings and MIME fallback message the tag never needs).
const GLUE_EXPORTS: &str = "export { initSync, __wbg_init as default };";

/// What the loader uses of the glue to start the wasm itself.
const GLUE_START: &[&str] = &[
    "function __wbg_get_imports(",
    "function __wbg_finalize_init(instance, module)",
];

/// Where the loader names the wasm file it starts (`'NAME_bg.wasm'` once joined).
const LOADER_WASM: &str = "UTT_WASM";

/// Makes one ES module of the bindgen glue followed by the loader, which uses the glue's
/// top-level bindings (`__wbg_get_imports`, `__wbg_finalize_init`, the exported functions)
/// directly and starts `NAME_bg.wasm` beside the module. Fails rather than join a module that
/// could not start.
fn join_glue_and_loader(glue: &str, loader: &str, name: &str) -> Result<String> {
    if let Some(missing) = GLUE_START.iter().find(|f| !glue.contains(*f)) {
        return Err(format!(
            "the bindgen glue has no `{missing}`: the loader cannot start the wasm"
        ));
    }
    if !glue.contains(GLUE_EXPORTS) {
        return Err(format!("the bindgen glue has no `{GLUE_EXPORTS}` to drop"));
    }
    if !loader.contains(LOADER_WASM) {
        return Err(format!("the loader does not name the wasm with `{LOADER_WASM}`"));
    }
    let glue = glue.replacen(GLUE_EXPORTS, "", 1);
    let loader = loader.replace(LOADER_WASM, &format!("'{name}_bg.wasm'"));
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

    #[test]
    fn every_code_of_the_tag_has_its_sentence_in_utt_texts_js() {
        let module = super::texts_module();
        let json = module
            .split_once("export default ")
            .and_then(|(_, rest)| rest.trim_end().strip_suffix(';'))
            .expect("utt_texts.js is `export default {…};`");
        let table: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json).unwrap();
        assert_eq!(table.len(), utt::core::text::ALL.len());
        for (code, text) in utt::core::text::ALL {
            assert_eq!(table[*code].as_str(), Some(*text), "code {code}");
        }
        // Spot checks of the list itself: the codes the browser tests provoke.
        assert_eq!(table["15"], "must be an ISO 4217 code like EUR");
        assert_eq!(table["27"], "must be 'granted' or 'denied'");
    }

    #[test]
    fn precompressed_copies_decompress_to_each_file() {
        use std::io::Read;
        let dir = std::env::temp_dir().join(format!("utt-xtask-precompress-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let files = [
            ("utt.js", "export function utt() {}\n".repeat(50)),
            ("snippet.js", "x".into()),
        ];
        for (name, text) in &files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        // Twice: the second run rewrites the copies and makes none of the copies.
        super::precompress(&dir).unwrap();
        super::precompress(&dir).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "snippet.js",
                "snippet.js.br",
                "snippet.js.gz",
                "utt.js",
                "utt.js.br",
                "utt.js.gz"
            ]
        );
        for (name, text) in &files {
            let mut from_br = String::new();
            let br = std::fs::read(dir.join(format!("{name}.br"))).unwrap();
            brotli::Decompressor::new(&br[..], 4096)
                .read_to_string(&mut from_br)
                .unwrap();
            let mut from_gz = String::new();
            let gz = std::fs::read(dir.join(format!("{name}.gz"))).unwrap();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_string(&mut from_gz)
                .unwrap();
            assert_eq!((&from_br, &from_gz), (text, text), "{name}");
            let measured = crate::size::measure(name.to_string(), text.as_bytes());
            assert_eq!(
                br.len() as u64,
                measured.brotli,
                "{name}: what size measures is what is served"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    const GLUE: &str = "\
let wasm;
function __wbg_get_imports() { return {}; }
function __wbg_finalize_init(instance, module) { wasm = instance.exports; }
export { initSync, __wbg_init as default };
";

    #[test]
    fn the_loader_follows_the_glue_starts_the_named_wasm_and_the_glue_loader_goes() {
        let loader = "const r = fetch(new URL(UTT_WASM, import.meta.url));\nexport function utt() {}\n";
        let joined = join_glue_and_loader(GLUE, loader, "utt_debug").unwrap();
        assert!(joined.starts_with("let wasm;"));
        assert!(!joined.contains("export { initSync"), "{joined}");
        assert!(
            joined.contains("new URL('utt_debug_bg.wasm', import.meta.url)"),
            "{joined}"
        );
        assert!(joined.ends_with("export function utt() {}\n"));
    }

    #[test]
    fn refuses_glue_the_loader_cannot_start_and_a_loader_that_names_no_wasm() {
        let loader = "fetch(new URL(UTT_WASM, import.meta.url));";
        for gone in super::GLUE_START.iter().chain([&super::GLUE_EXPORTS]) {
            let glue = GLUE.replace(gone, "");
            assert!(join_glue_and_loader(&glue, loader, "utt").is_err(), "{gone}");
        }
        assert!(join_glue_and_loader(GLUE, "fetch('utt_bg.wasm');", "utt").is_err());
    }

    #[test]
    fn renames_the_minified_imports_and_exports_in_the_glue() {
        let glue = r#"const i = { "./utt_bg.js": { __wbg_now_12ab: function() {}, __wbg_now_12abc: f } };
wasm.tag_op(1); wasm.tag_opx; wasm.memory.buffer;"#;
        let names = r#"{"imports":[["./utt_bg.js","__wbg_now_12ab","a"]],
            "exports":[["tag_op","B"],["memory","C"],["__abort_handler","D"]]}"#;
        let out = super::rename_in_glue(glue, names, "a").unwrap();
        assert!(
            out.contains(r#"{ "a": { a: function() {}, __wbg_now_12abc: f } }"#),
            "{out}"
        );
        assert!(out.contains("wasm.B(1); wasm.tag_opx; wasm.C.buffer;"), "{out}");
        // A second pass that drops import `a` shifts the others: the names are followed.
        let glue2 = r#"const i = { "./utt_bg.js": { __wbg_x_1: f, __wbg_y_2: g } }; wasm.tag_op(1);"#;
        let twice = r#"{"imports":[["./utt_bg.js","__wbg_x_1","a"],["./utt_bg.js","__wbg_y_2","b"]],
            "exports":[["tag_op","C"]]}
            {"imports":[["a","b","a"]],"exports":[["C","B"]]}"#;
        let out = super::rename_in_glue(glue2, twice, "a").unwrap();
        assert_eq!(out, r#"const i = { "a": { __wbg_x_1: f, a: g } }; wasm.B(1);"#);
        let missing = r#"{"imports":[["./utt_bg.js","__wbg_gone_99","a"]],"exports":[]}"#;
        assert!(super::rename_in_glue(glue, missing, "a").is_err());
    }
}
