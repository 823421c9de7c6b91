//! Static files for the demo (the built tag under `dist/`, the pages under `www/`), served by
//! tower-http's `ServeDir`: the folders are tried in order, each falling back to the next and the
//! last to a JSON 404. `ServeDir` maps the path safely, sends the MIME type (`application/wasm`,
//! `text/javascript`), `ETag` and `Last-Modified`, answers conditional requests with `304`, and
//! sends a file's `.br` or `.gz` beside it (as `cargo xtask build` writes them) only to a client
//! that accepts that encoding. What is ours: hidden files are refused, and the cache headers.

use std::convert::Infallible;
use std::path::PathBuf;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use tower::util::BoxCloneSyncService;
use tower::{service_fn, ServiceExt};
use tower_http::services::ServeDir;

use crate::error::AppError;

/// The static folders as one service.
#[derive(Clone)]
pub struct Files(BoxCloneSyncService<Request, Response, Infallible>);

impl Files {
    /// Serves `dirs` in order: the first folder that has the file wins.
    pub fn new(dirs: &[PathBuf]) -> Files {
        let not_found = service_fn(|_: Request| async { Ok(AppError::NotFound("file", "path").into_response()) });
        let mut service = BoxCloneSyncService::new(not_found);
        for dir in dirs.iter().rev() {
            let dir = ServeDir::new(dir)
                .precompressed_br()
                .precompressed_gzip()
                .call_fallback_on_method_not_allowed(true)
                .fallback(service)
                .map_response(|r| r.map(Body::new));
            service = BoxCloneSyncService::new(dir);
        }
        Files(service)
    }

    /// Answers a request that no route took: a file for `GET` and `HEAD`, else a JSON 404.
    pub async fn serve(self, req: Request) -> Response {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return AppError::NotFound("route", "path").into_response();
        }
        let path = req.uri().path().to_string();
        if hidden(&path) {
            return AppError::NotFound("file", "path").into_response();
        }
        let Ok(mut resp) = self.0.oneshot(req).await;
        let status = resp.status();
        if status.is_success() || status == axum::http::StatusCode::NOT_MODIFIED {
            let h = resp.headers_mut();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control(&path)));
            h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        }
        resp
    }
}

/// Whether a URL path names a hidden file or folder (a segment starting with `.`, also
/// percent-encoded), which is never served (`.git`, `.env`).
pub fn hidden(url_path: &str) -> bool {
    let decoded = percent_encoding::percent_decode_str(url_path).decode_utf8_lossy();
    decoded.split(['/', '\\']).any(|seg| seg.starts_with('.'))
}

/// The `Cache-Control` value: pages revalidate every time (they name the tag's files), other
/// files may be cached briefly (and then revalidated with their `ETag`).
pub fn cache_control(url_path: &str) -> &'static str {
    let name = url_path.rsplit('/').next().unwrap_or("");
    let ext = name.rsplit_once('.').map_or("", |(_, e)| e).to_ascii_lowercase();
    if name.is_empty() || ext == "html" || ext == "htm" {
        "no-cache"
    } else {
        "public, max-age=60"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_rules() {
        let cases = [
            ("/", "no-cache"),
            ("/debug/", "no-cache"),
            ("/index.html", "no-cache"),
            ("/A.HTM", "no-cache"),
            ("/utt_bg.wasm", "public, max-age=60"),
            ("/utt.js", "public, max-age=60"),
            ("/debug", "public, max-age=60"),
        ];
        for (path, want) in cases {
            assert_eq!(cache_control(path), want, "{path}");
        }
    }

    #[test]
    fn hidden_paths() {
        for path in [
            "/.git/config",
            "/a/.env",
            "/%2egit/config",
            "/a%2F.env",
            "/a\\.b",
            "/..",
            "/a/../b",
        ] {
            assert!(hidden(path), "{path}");
        }
        for path in ["/", "/utt.js", "/debug/", "/a.b/c", "/%zz"] {
            assert!(!hidden(path), "{path}");
        }
    }
}
