//! [`ProxyError`]: everything that can stop a request from being answered by
//! an app, with who is to blame and whether trying again is safe. That pair
//! decides between retry, `502` and `504`, as pingora's `ErrorSource` and
//! `RetryType` do.
//!
//! For retries, what matters is how far the request got:
//! - [`ProxyError::Connect`]: nowhere — any request whose body is still at
//!   hand may go to another backend ([`ProxyError::retry_safe`]);
//! - [`ProxyError::EmptyResponse`]: the backend took it and closed or reset
//!   the connection before a single response byte (a process killed with
//!   requests in its accept queue, a keep-alive connection closed as it was
//!   reused). It may have acted on the request, so only a request that is
//!   idempotent and had no body may be sent again
//!   ([`ProxyError::unanswered`]);
//! - anything later, and every timeout: never. A response had begun, or a
//!   slow app may still be working on the request.
//!
//! The first two also count against the backend's passive health
//! ([`ProxyError::marks_backend`]).

use std::time::Duration;

use http::{header, HeaderValue, Response, StatusCode};
use thiserror::Error;

use crate::body::{self, Body, BoxError};

/// Who caused a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The request itself is wrong (unknown host, bad path).
    Client,
    /// The app or its instances failed.
    Upstream,
    /// The router failed.
    Internal,
}

/// Why a request was not answered by the app.
#[derive(Debug, Error)]
pub enum ProxyError {
    #[error("no app is served at host {0:?}")]
    UnknownHost(String),
    #[error("not found")]
    NotFound,
    #[error("app {0} has no running web instances")]
    NoBackends(String),
    #[error("cannot connect to backend {backend}")]
    Connect {
        backend: String,
        #[source]
        source: BoxError,
    },
    #[error("backend {backend} closed the connection without answering")]
    EmptyResponse {
        backend: String,
        #[source]
        source: BoxError,
    },
    #[error("backend {backend} did not answer within {timeout:?}")]
    Timeout { backend: String, timeout: Duration },
    #[error("backend {backend} failed")]
    Upstream {
        backend: String,
        #[source]
        source: BoxError,
    },
    #[error("invalid request: {0}")]
    BadRequest(&'static str),
    #[error("request body larger than the app's limit of {max} bytes")]
    PayloadTooLarge { max: u64 },
    #[error("request body stalled for {0:?}")]
    BodyTimeout(Duration),
    #[error("rate limit of {limit} exceeded; next request allowed in {retry_after:?}")]
    TooManyRequests {
        limit: String,
        retry_after: Duration,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl ProxyError {
    /// Who is to blame.
    pub fn source_kind(&self) -> ErrorSource {
        match self {
            Self::UnknownHost(_)
            | Self::NotFound
            | Self::BadRequest(_)
            | Self::PayloadTooLarge { .. }
            | Self::BodyTimeout(_)
            | Self::TooManyRequests { .. } => ErrorSource::Client,
            Self::NoBackends(_) | Self::Connect { .. } | Self::Timeout { .. } => {
                ErrorSource::Upstream
            }
            Self::EmptyResponse { .. } | Self::Upstream { .. } => ErrorSource::Upstream,
            Self::Internal(_) => ErrorSource::Internal,
        }
    }

    /// True when the request certainly never reached the backend, so sending
    /// it to another one cannot repeat its effects. Only a failed connect
    /// qualifies: once bytes are written, the backend may have acted on them.
    pub fn retry_safe(&self) -> bool {
        matches!(self, Self::Connect { .. })
    }

    /// True when the backend took the request and closed or reset the
    /// connection before sending any response byte. The request may have
    /// had effects, so it may be sent again only if it is idempotent and has
    /// no body (a body is consumed by the first attempt).
    pub fn unanswered(&self) -> bool {
        matches!(self, Self::EmptyResponse { .. })
    }

    /// True when the failure says the backend's process is unreachable or
    /// dying — not slow, not answering badly — so it counts towards taking
    /// the backend out of rotation for a while.
    pub fn marks_backend(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::EmptyResponse { .. })
    }

    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnknownHost(_) | Self::NotFound => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::NoBackends(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Connect { .. } | Self::EmptyResponse { .. } | Self::Upstream { .. } => {
                StatusCode::BAD_GATEWAY
            }
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short description for the access log; unlike the page, it may name
    /// the backend, since only the app's owner reads it.
    pub fn log_description(&self) -> String {
        let mut out = self.to_string();
        let mut cur = std::error::Error::source(self);
        while let Some(s) = cur {
            out.push_str(": ");
            out.push_str(&s.to_string());
            cur = s.source();
        }
        out
    }

    /// The page the client sees. It names no backend, version or software:
    /// visitors of an app must learn nothing about the machinery behind it.
    pub fn into_response(&self, apps_domain: &str) -> Response<Body> {
        let (title, text) = match self {
            Self::UnknownHost(_) => (
                "No such app",
                format!(
                    "No app is served at this address. Apps on this server are \
                     reached at <code>NAME.{}</code>.",
                    html_escape(apps_domain)
                ),
            ),
            Self::NotFound => ("Not found", "There is nothing at this path.".to_string()),
            Self::BadRequest(_) => ("Bad request", "The request is not valid.".to_string()),
            Self::PayloadTooLarge { max } => (
                "Request too large",
                format!("This app accepts request bodies of at most {max} bytes."),
            ),
            Self::BodyTimeout(_) => (
                "Request timeout",
                "The request body did not arrive in time.".to_string(),
            ),
            Self::TooManyRequests { .. } => (
                "Too many requests",
                "Too many requests from your address. Try again shortly.".to_string(),
            ),
            Self::NoBackends(_) => (
                "App not running",
                "This app is not running right now. Try again in a few seconds.".to_string(),
            ),
            Self::Connect { .. } | Self::EmptyResponse { .. } | Self::Upstream { .. } => (
                "Bad gateway",
                "The app could not answer this request.".to_string(),
            ),
            Self::Timeout { .. } => (
                "Gateway timeout",
                "The app took too long to answer this request.".to_string(),
            ),
            Self::Internal(_) => (
                "Server error",
                "Something went wrong while handling this request.".to_string(),
            ),
        };
        let page = format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
             <body><h1>{title}</h1><p>{text}</p></body></html>\n"
        );
        let mut resp = Response::new(body::full(page));
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        // Error pages describe a moment, not the resource: no cache may keep them.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match self {
            Self::NoBackends(_) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            Self::TooManyRequests { retry_after, .. } => {
                // Whole seconds, rounded up: a client that waits exactly
                // this long is let through.
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                h.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            // The rest of the body is unread, or its framing is not to be
            // trusted: the connection cannot carry another request.
            Self::PayloadTooLarge { .. } | Self::BodyTimeout(_) | Self::BadRequest(_) => {
                h.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        resp
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_retry() {
        assert_eq!(
            ProxyError::NoBackends("a".into()).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let t = ProxyError::Timeout {
            backend: "x".into(),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(t.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(!t.retry_safe());
        assert!(!t.unanswered(), "a slow app must not get the request twice");
        assert!(!t.marks_backend(), "slow is not down");
        assert_eq!(t.source_kind(), ErrorSource::Upstream);
        assert_eq!(
            ProxyError::UnknownHost("h".into()).source_kind(),
            ErrorSource::Client
        );
    }

    #[test]
    fn pages_name_no_internals() {
        let resp = ProxyError::UnknownHost("<x>".into()).into_response("apps.<b>");
        assert!(resp.headers().get(header::SERVER).is_none());
        let resp = ProxyError::NoBackends("shop".into()).into_response("localhost");
        assert_eq!(resp.headers()[header::RETRY_AFTER], "5");
        assert_eq!(html_escape("<a&\">"), "&lt;a&amp;&quot;&gt;");
        let resp = ProxyError::TooManyRequests {
            limit: "1/s".into(),
            retry_after: Duration::from_millis(1200),
        }
        .into_response("localhost");
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "2");
    }
}
