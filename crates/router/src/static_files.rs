//! Serving an app's static files straight from disk, without waking the app.
//!
//! Only `GET` and `HEAD` under the app's URL prefix are served here; a file
//! that is missing is a `404`, never a fall-through to the app, so the answer
//! for a path does not depend on which instance happens to be up.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use berth_model::StaticFiles;
use futures_util::TryStreamExt;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio_util::io::ReaderStream;

use crate::body::{self, Body, BoxError};
use crate::error::ProxyError;

/// Files change only with a deploy, which changes their ETag; an hour keeps
/// browsers from re-asking on every page while bounding staleness.
const CACHE_CONTROL: &str = "public, max-age=3600";

/// The part of `path` under the static prefix, if this request is for a
/// static file.
pub(crate) fn matches<'a>(sf: &StaticFiles, method: &Method, path: &'a str) -> Option<&'a str> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    path.strip_prefix(sf.url_prefix.as_str())
}

/// Answers a static file request; `rest` is the raw (still encoded) path
/// under the prefix.
pub(crate) async fn serve(
    dir: &str,
    rest: &str,
    method: &Method,
    req_headers: &HeaderMap,
) -> Result<Response<Body>, ProxyError> {
    let dir = Path::new(dir);
    let path = resolve(dir, rest).ok_or(ProxyError::NotFound)?;
    let meta = tokio::fs::metadata(&path)
        .await
        .map_err(|_| ProxyError::NotFound)?;
    if !meta.is_file() {
        return Err(ProxyError::NotFound);
    }
    // A symlink inside the directory must not publish a file outside it.
    let (real, root) =
        tokio::try_join!(tokio::fs::canonicalize(&path), tokio::fs::canonicalize(dir))
            .map_err(|_| ProxyError::NotFound)?;
    if !real.starts_with(&root) {
        return Err(ProxyError::NotFound);
    }

    let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
    let validators = Validators::new(meta.len(), mtime);
    let mut resp = if validators.not_modified(req_headers) {
        let mut r = Response::new(body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let body = if method == Method::HEAD {
            body::empty()
        } else {
            let file = tokio::fs::File::open(&real)
                .await
                .map_err(|_| ProxyError::NotFound)?;
            StreamBody::new(
                ReaderStream::new(file)
                    .map_ok(Frame::data)
                    .map_err(BoxError::from),
            )
            .boxed_unsync()
        };
        let mut r = Response::new(body);
        let h = r.headers_mut();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.len()));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(&real)),
        );
        r
    };
    let h = resp.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    if let Ok(v) = HeaderValue::from_str(&validators.etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(validators.mtime)) {
        h.insert(header::LAST_MODIFIED, v);
    }
    Ok(resp)
}

/// Maps the encoded URL path under the prefix to a file under `dir`, or
/// `None` for anything that could step outside it or hide a trick:
/// `..`, `.` and hidden segments, backslashes, NUL, bad percent-encoding.
fn resolve(dir: &Path, rest: &str) -> Option<PathBuf> {
    let decoded = percent_decode(rest)?;
    if decoded.contains(['\\', '\0']) {
        return None;
    }
    let mut path = dir.to_path_buf();
    let mut any = false;
    for seg in decoded.split('/').filter(|s| !s.is_empty()) {
        // Hidden files (`.env`, `.git`) are never meant for visitors, and
        // refusing every leading dot also refuses `.` and `..`.
        if seg.starts_with('.') {
            return None;
        }
        path.push(seg);
        any = true;
    }
    any.then_some(path)
}

/// Decodes `%XX` escapes; `None` on a malformed escape or non-UTF-8 result.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// ETag and Last-Modified of a file, and the checks of conditional requests.
struct Validators {
    etag: String,
    mtime: SystemTime,
}

impl Validators {
    fn new(len: u64, mtime: SystemTime) -> Self {
        let since = mtime.duration_since(UNIX_EPOCH).unwrap_or_default();
        // HTTP dates have whole seconds; comparing at that precision keeps
        // If-Modified-Since consistent with the Last-Modified we sent.
        let mtime = UNIX_EPOCH + std::time::Duration::from_secs(since.as_secs());
        Self {
            // Weak: it is derived from metadata, not the bytes.
            etag: format!("W/\"{len:x}-{:x}\"", since.as_nanos()),
            mtime,
        }
    }

    /// True when the client's cached copy is current. `If-None-Match` wins
    /// over `If-Modified-Since` when both are sent (RFC 9110 §13.2.2).
    fn not_modified(&self, h: &HeaderMap) -> bool {
        if let Some(inm) = h.get(header::IF_NONE_MATCH) {
            let Ok(inm) = inm.to_str() else { return false };
            let ours = self.etag.trim_start_matches("W/");
            return inm
                .split(',')
                .map(str::trim)
                .any(|t| t == "*" || t.trim_start_matches("W/") == ours);
        }
        h.get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .is_some_and(|since| self.mtime <= since)
    }
}

/// The `Content-Type` for a file, by extension.
fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "eot" => "application/vnd.ms-fontobject",
        "pdf" => "application/pdf",
        "wasm" => "application/wasm",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "wav" => "audio/wav",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_tricks_are_refused() {
        let dir = Path::new("/srv/static");
        for bad in [
            "../etc/passwd",
            "a/../../x",
            "%2e%2e/secret",
            "%2E%2E%2Fsecret",
            "..%2fsecret",
            "a\\..\\b",
            "a%5c..%5cb",
            "a%00.css",
            ".env",
            "bad%zz",
            "%",
            "",
            "/",
        ] {
            assert_eq!(resolve(dir, bad), None, "{bad:?}");
        }
        assert_eq!(
            resolve(dir, "css/app%20x.css"),
            Some(PathBuf::from("/srv/static/css/app x.css"))
        );
    }

    #[test]
    fn conditionals() {
        let v = Validators::new(10, UNIX_EPOCH + std::time::Duration::from_millis(5_500));
        let mut h = HeaderMap::new();
        assert!(!v.not_modified(&h));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert!(!v.not_modified(&h));
        let tag = v.etag.clone();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"x\", {tag}")).expect("ascii"),
        );
        assert!(v.not_modified(&h));

        let mut h = HeaderMap::new();
        let date = httpdate::fmt_http_date(UNIX_EPOCH + std::time::Duration::from_secs(5));
        h.insert(
            header::IF_MODIFIED_SINCE,
            HeaderValue::from_str(&date).expect("ascii"),
        );
        assert!(v.not_modified(&h), "sub-second mtime still matches");
        let earlier = httpdate::fmt_http_date(UNIX_EPOCH + std::time::Duration::from_secs(4));
        h.insert(
            header::IF_MODIFIED_SINCE,
            HeaderValue::from_str(&earlier).expect("ascii"),
        );
        assert!(!v.not_modified(&h));
    }

    #[test]
    fn types() {
        assert_eq!(
            content_type(Path::new("a/b.CSS")),
            "text/css; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("noext")), "application/octet-stream");
    }
}
