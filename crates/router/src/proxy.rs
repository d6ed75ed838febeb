//! The request path, as named phases in the spirit of pingora's `ProxyHttp`:
//!
//! 1. **route** — Host header → app ([`route`]);
//! 2. **static** — files under the app's static prefix, served from disk;
//! 3. **pick** — a backend of the app ([`crate::balance::pick`]);
//! 4. **rewrite request** — hop-by-hop out, `X-Forwarded-*` in
//!    ([`rewrite_request`]);
//! 5. **forward** — send, retrying a connect failure once when safe
//!    ([`forward`]);
//! 6. **rewrite response** — hop-by-hop out, `X-Request-Id` in;
//! 7. **log** — when the response body ends ([`finish`]).
//!
//! Per-request state lives in one [`Ctx`]. TLS, upgrades and rate limits
//! will be further phases here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use berth_client::logs::LogShipper;
use http::request::Parts;
use http::{header, HeaderValue, Method, Request, Response};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::access_log::Entry;
use crate::balance;
use crate::body::{Body, BoxError, Tracked};
use crate::config::RouterConfig;
use crate::error::{ErrorSource, ProxyError};
use crate::headers::{self, X_REQUEST_ID};
use crate::static_files;
use crate::table::{normalize_host, App, LoadGuard, Routes};
use crate::upstream::{self, Upstream};

/// What every request handler shares.
pub(crate) struct Shared {
    pub routes: Routes,
    pub config: RouterConfig,
    pub client: Upstream,
    pub access_log: Option<LogShipper>,
}

/// Per-request state, filled in phase by phase.
struct Ctx {
    peer: SocketAddr,
    request_id: HeaderValue,
    /// The log entry, once the request is known to belong to an app.
    entry: Option<Entry>,
    /// Holds the chosen backend's load until the response body ends.
    load: Option<LoadGuard>,
}

/// Answers one request. Never fails: every error becomes a page.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let mut ctx = Ctx {
        peer,
        request_id: headers::request_id(req.headers()),
        entry: None,
        load: None,
    };
    let result = match route(&shared.routes, &req) {
        Ok((app, host)) => {
            if shared.access_log.is_some() {
                ctx.entry = Some(log_entry(&app, host, &req, &ctx, started));
            }
            match serve_static(&app, &req, &mut ctx).await {
                Some(result) => result,
                None => forward(&shared, &app, req, &mut ctx).await,
            }
        }
        Err(e) => Err(e),
    };
    let resp = result.unwrap_or_else(|e| {
        let description = e.log_description();
        match e.source_kind() {
            // A router fault is the operator's business; the rest is the
            // app's and goes to its log below.
            ErrorSource::Internal => tracing::error!(request_id = ?ctx.request_id, "{description}"),
            _ => tracing::debug!(request_id = ?ctx.request_id, "{description}"),
        }
        if let Some(entry) = ctx.entry.as_mut() {
            entry.error = Some(description);
        }
        e.into_response(&shared.config.apps_domain)
    });
    finish(resp, ctx, shared.access_log.clone())
}

/// Phase 1: the app the request is for, and the normalised host.
fn route(routes: &Routes, req: &Request<Incoming>) -> Result<(Arc<App>, String), ProxyError> {
    let host = host_of(req)
        .and_then(|h| h.to_str().ok().map(normalize_host))
        .ok_or(ProxyError::BadRequest("missing or invalid Host header"))?;
    match routes.load().app(&host) {
        Some(app) => Ok((Arc::clone(app), host)),
        None => Err(ProxyError::UnknownHost(host)),
    }
}

/// The access log entry, as far as it is known before any phase ran.
fn log_entry(
    app: &App,
    host: String,
    req: &Request<Incoming>,
    ctx: &Ctx,
    started: Instant,
) -> Entry {
    Entry {
        app: app.name.clone(),
        method: req.method().clone(),
        path: req
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_string(),
        host,
        request_id: ctx.request_id.to_str().unwrap_or("-").to_string(),
        backend: "-".to_string(),
        status: http::StatusCode::OK,
        client: ctx.peer.ip(),
        started,
        error: None,
    }
}

/// The host the client asked for: the Host header, or the authority of an
/// absolute-form request target.
fn host_of<B>(req: &Request<B>) -> Option<HeaderValue> {
    match req.headers().get(header::HOST) {
        Some(h) => Some(h.clone()),
        None => req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
    }
}

/// Phase 2: a static file, if the request is for one.
async fn serve_static(
    app: &App,
    req: &Request<Incoming>,
    ctx: &mut Ctx,
) -> Option<Result<Response<Body>, ProxyError>> {
    let sf = app.static_files.as_ref()?;
    let rest = static_files::matches(sf, req.method(), req.uri().path())?;
    if let Some(entry) = ctx.entry.as_mut() {
        entry.backend = "static".to_string();
    }
    Some(static_files::serve(&sf.dir, rest, req.method(), req.headers()).await)
}

/// Phases 3–6: pick a backend, rewrite, send, and once more elsewhere if the
/// first connect failed and the request allows it.
async fn forward(
    shared: &Shared,
    app: &App,
    req: Request<Incoming>,
    ctx: &mut Ctx,
) -> Result<Response<Body>, ProxyError> {
    let (mut parts, body) = req.into_parts();
    rewrite_request(&mut parts, ctx);
    let retry_allowed = retry_allowed(&parts.method, &body);

    let first = balance::pick(app, None).ok_or_else(|| ProxyError::NoBackends(app.name.clone()))?;
    let failed = match attempt(shared, app, first, &parts, body, ctx).await {
        Ok(resp) => return Ok(resp),
        Err(failed) => failed,
    };
    let second = if failed.error.retry_safe() && retry_allowed {
        balance::pick(app, Some(first))
    } else {
        None
    };
    match (second, failed.body) {
        (Some(second), Some(body)) => {
            tracing::debug!(app = %app.name, "retrying on another backend: {}", failed.error.log_description());
            attempt(shared, app, second, &parts, body, ctx)
                .await
                .map_err(|f| f.error)
        }
        _ => Err(failed.error),
    }
}

/// One try on one backend: count its load, send, rewrite the response.
async fn attempt(
    shared: &Shared,
    app: &App,
    index: usize,
    parts: &Parts,
    body: Incoming,
    ctx: &mut Ctx,
) -> Result<Response<Body>, upstream::Failed> {
    let backend = &app.backends[index];
    if let Some(entry) = ctx.entry.as_mut() {
        entry.backend = backend.id.clone();
    }
    let load = backend.begin();
    let timeout = shared.config.upstream_timeout;
    let mut resp = upstream::send(&shared.client, backend, parts, body, timeout).await?;
    ctx.load = Some(load);
    headers::strip_hop_by_hop(resp.headers_mut());
    Ok(resp.map(|b| b.map_err(BoxError::from).boxed_unsync()))
}

/// Phase 4: what the backend sees of the request head.
fn rewrite_request(parts: &mut Parts, ctx: &Ctx) {
    // The client's Host goes to the app unchanged (apps build URLs from it);
    // an absolute-form request without one gets the authority it named.
    let host = host_of_parts(parts);
    headers::strip_hop_by_hop(&mut parts.headers);
    // The router already answered the expectation to the client (hyper sends
    // `100 Continue` when the body is first read) and sends the body without
    // waiting, so passing it on would only make the backend send a stray 100.
    parts.headers.remove(header::EXPECT);
    if let Some(h) = &host {
        parts.headers.insert(header::HOST, h.clone());
    }
    headers::set_forwarded(
        &mut parts.headers,
        ctx.peer.ip(),
        host.as_ref(),
        &ctx.request_id,
    );
}

fn host_of_parts(parts: &Parts) -> Option<HeaderValue> {
    parts.headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    })
}

/// Whether a request may be sent a second time after a failed connect.
/// Idempotent methods only, and among those a body only for methods where
/// a body has no defined meaning: a PUT body is the change itself, and the
/// router will not be the one to apply it twice.
fn retry_allowed(method: &Method, body: &Incoming) -> bool {
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let idempotent = safe || matches!(*method, Method::PUT | Method::DELETE);
    idempotent && (safe || body.is_end_stream())
}

/// Phase 7: stamp the request id on the response and arrange for the load
/// counter and the access log to settle when its body ends.
fn finish(mut resp: Response<Body>, ctx: Ctx, access_log: Option<LogShipper>) -> Response<Body> {
    resp.headers_mut().insert(X_REQUEST_ID, ctx.request_id);
    let Ctx { entry, load, .. } = ctx;
    let entry = entry.map(|mut e| {
        e.status = resp.status();
        e
    });
    if entry.is_none() && load.is_none() {
        return resp;
    }
    resp.map(|body| {
        Tracked::new(
            body,
            Box::new(move |bytes| {
                drop(load);
                if let (Some(entry), Some(log)) = (entry, access_log) {
                    entry.send(&log, bytes);
                }
            }),
        )
        .boxed_unsync()
    })
}
