//! Static files for the demo (the built tag under `dist/`, the pages under `www/`): safe path
//! mapping, MIME types the browser insists on (`application/wasm`) and cache headers.

use std::path::{Path, PathBuf};

/// The MIME type for a file name.
pub fn mime(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e).to_ascii_lowercase();
    match ext.as_str() {
        "wasm" => "application/wasm",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" | "ts" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The `Cache-Control` value: pages revalidate every time (they name the tag's files), other
/// files may be cached briefly.
pub fn cache_control(path: &str) -> &'static str {
    if mime(path).starts_with("text/html") {
        "no-cache"
    } else {
        "public, max-age=60"
    }
}

/// Turns a URL path into a relative file path: percent-decoded, `index.html` for directories,
/// and `None` for anything that could leave the folder (`..`, hidden files, backslashes, NUL).
pub fn relative_path(url_path: &str) -> Option<String> {
    let decoded = percent_decode(url_path)?;
    let mut rel = decoded.trim_start_matches('/').to_string();
    if rel.is_empty() || rel.ends_with('/') {
        rel.push_str("index.html");
    }
    let safe = !rel.contains('\\')
        && !rel.contains('\0')
        && rel.split('/').all(|seg| !seg.is_empty() && !seg.starts_with('.'));
    safe.then_some(rel)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Finds the file for a relative path in the first folder that has it (a directory falls back
/// to its `index.html`), refusing anything that resolves outside its folder (symlinks).
pub fn find(dirs: &[PathBuf], rel: &str) -> Option<PathBuf> {
    for dir in dirs {
        let Ok(root) = dir.canonicalize() else { continue };
        let mut candidate = root.join(rel);
        if candidate.is_dir() {
            candidate = candidate.join("index.html");
        }
        if let Ok(real) = candidate.canonicalize() {
            if real.starts_with(&root) && real.is_file() {
                return Some(real);
            }
        }
    }
    None
}

/// The name used for the MIME type and cache rules of a found file.
pub fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mime_and_cache() {
        let cases = [
            ("utt_bg.wasm", "application/wasm", "public, max-age=60"),
            ("utt.js", "text/javascript; charset=utf-8", "public, max-age=60"),
            ("loader.mjs", "text/javascript; charset=utf-8", "public, max-age=60"),
            ("index.html", "text/html; charset=utf-8", "no-cache"),
            ("site.css", "text/css; charset=utf-8", "public, max-age=60"),
            ("a.json", "application/json", "public, max-age=60"),
            ("logo.svg", "image/svg+xml", "public, max-age=60"),
            ("logo.PNG", "image/png", "public, max-age=60"),
            ("blob", "application/octet-stream", "public, max-age=60"),
        ];
        for (name, m, c) in cases {
            assert_eq!(mime(name), m, "{name}");
            assert_eq!(cache_control(name), c, "{name}");
        }
    }

    #[test]
    fn paths() {
        let cases = [
            ("/", Some("index.html")),
            ("/debug/", Some("debug/index.html")),
            ("/utt.js", Some("utt.js")),
            ("/a%20b.html", Some("a b.html")),
            ("/../etc/passwd", None),
            ("/%2e%2e/etc/passwd", None),
            ("/a/../../b", None),
            ("/.git/config", None),
            ("/a\\b", None),
            ("/a%5c..%5cb", None),
            ("/a%00", None),
            ("/a//b", None),
            ("/bad%zz", None),
        ];
        for (url, want) in cases {
            assert_eq!(relative_path(url).as_deref(), want, "{url}");
        }
    }
}
