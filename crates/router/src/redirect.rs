//! HTTP→HTTPS redirect per app (`redirect_https`): a request that came over
//! plain HTTP gets `301` (GET, HEAD) or `308` (anything else, so the method
//! and body are kept) to the same host and path over HTTPS.
//!
//! Not redirected: requests that came over TLS; requests from a trusted
//! proxy that says (`X-Forwarded-Proto: https`) the client used HTTPS — it
//! terminated TLS in front of the router, and a redirect would loop; and
//! ACME http-01 challenges (`/.well-known/acme-challenge/`), which a CA
//! fetches over plain HTTP to issue the very certificate HTTPS needs.

use http::{header, HeaderValue, Method, Request, Response, StatusCode};

use crate::body::{self, Body};
use crate::config::RouterConfig;
use crate::headers::requested_host;
use crate::table::{normalize_host, App};
use crate::tls::OverTls;

const ACME_CHALLENGES: &str = "/.well-known/acme-challenge/";

/// Whether `req` for `app` must be sent to HTTPS instead of being served.
pub(crate) fn wanted<B>(app: &App, req: &Request<B>, trusted_peer: bool) -> bool {
    app.redirect_https
        && req.extensions().get::<OverTls>().is_none()
        && !(trusted_peer && forwarded_https(req))
        && !req.uri().path().starts_with(ACME_CHALLENGES)
}

/// The redirect of `req` to HTTPS on the router's HTTPS port.
pub(crate) fn to_https<B>(config: &RouterConfig, req: &Request<B>) -> Response<Body> {
    let status = if matches!(*req.method(), Method::GET | Method::HEAD) {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    // The host routed the request, so it is one of the table's: no header
    // injection through it.
    let host = requested_host(req).map(normalize_host).unwrap_or_default();
    let port = match config.https_port {
        None | Some(443) => String::new(),
        Some(p) => format!(":{p}"),
    };
    let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let location = format!("https://{host}{port}{path}");
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// What a trusted proxy says the client spoke: the first (client-side)
/// entry of `X-Forwarded-Proto`.
fn forwarded_https<B>(req: &Request<B>) -> bool {
    req.headers()
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}
