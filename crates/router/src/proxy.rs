//! The request path, as named phases in the spirit of pingora's `ProxyHttp`:
//!
//! 1. **route** — Host header → app ([`route`]);
//! 2. **admit** — framing the router will not forward, the app's rate
//!    limit and declared body size ([`admit`]); a plain-HTTP request of an
//!    app that wants HTTPS is redirected here ([`crate::redirect`]);
//! 3. **static** — files under the app's static prefix, served from disk;
//! 4. **pick** — a backend of the app that is not down
//!    ([`crate::balance::pick`]);
//! 5. **rewrite request** — hop-by-hop out, `X-Forwarded-*` in
//!    ([`rewrite_request`]);
//! 6. **forward** — send; when the backend could not be reached, or took
//!    the request and closed without a response byte, send it once more
//!    elsewhere if that is safe ([`forward`], [`resend_body`]). Every
//!    attempt feeds the backend's passive health ([`crate::health`]);
//! 7. **rewrite response** — hop-by-hop out, `X-Request-Id` in;
//! 8. **log** — when the response body ends ([`finish`]).
//!
//! A WebSocket handshake takes phases 4–7 of its own ([`upgrade`]): a
//! connection of its own, and on `101` a tunnel that logs the session when
//! it ends ([`crate::tunnel`]).
//!
//! Per-request state lives in one [`Ctx`]. TLS ends before this module: a
//! request over TLS or HTTP/2 reaches it like any other
//! ([`crate::tls`], [`crate::http2`]).

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
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
use crate::headers::{self, requested_host, Peer, X_REQUEST_ID};
use crate::health;
use crate::limits::Held;
use crate::redirect;
use crate::request_body::{BodyFault, ClientBody};
use crate::static_files;
use crate::stats::BackendStats;
use crate::table::{normalize_host, App, BackendState, LoadGuard, Routes};
use crate::tls::OverTls;
use crate::tunnel::{Session, Tunnels};
use crate::upstream::{self, Conn, SendBody, Upstream};
use crate::websocket;

/// What every request handler shares.
pub(crate) struct Shared {
    pub routes: Routes,
    pub config: RouterConfig,
    pub client: Upstream,
    pub access_log: Option<LogShipper>,
    /// Open WebSocket sessions, given their grace when the router stops.
    pub tunnels: Tunnels,
}

/// Per-request state, filled in phase by phase.
struct Ctx {
    peer: Peer,
    /// Whether the peer is a trusted proxy, whose `X-Forwarded-*` stand.
    trusted_peer: bool,
    /// The client: the peer, or what a trusted proxy says the client is.
    client: IpAddr,
    /// Set when the client's body is cut, so the failed send is blamed on
    /// the client (`413`/`408`), not the backend.
    body_fault: Option<Arc<BodyFault>>,
    request_id: HeaderValue,
    /// The log entry, once the request is known to belong to an app.
    entry: Option<Entry>,
    /// Holds the chosen backend's load until the response body ends.
    load: Option<LoadGuard>,
    /// The answering backend's counters, for its latency.
    backend_stats: Option<Arc<BackendStats>>,
    /// The app, once routed: its counters settle when the response ends.
    app: Option<Arc<App>>,
    started: Instant,
}

/// Answers one request. Never fails: every error becomes a page.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    peer: Peer,
    req: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let trusted = &shared.config.trusted_proxies;
    let trusted_peer = !trusted.is_empty() && trusted.contains(peer.ip);
    let mut ctx = Ctx {
        client: if trusted_peer {
            trusted.client_ip(peer.ip, req.headers())
        } else {
            peer.ip
        },
        peer,
        trusted_peer,
        body_fault: None,
        request_id: headers::request_id(req.headers()),
        entry: None,
        load: None,
        backend_stats: None,
        app: None,
        started,
    };
    let result = match route(&shared.routes, &req) {
        Ok((app, host)) => {
            ctx.app = Some(Arc::clone(&app));
            if shared.access_log.is_some() {
                ctx.entry = Some(log_entry(&app, host.into_owned(), &req, &ctx, started));
            }
            match admit(&shared.config, &app, &req, &ctx) {
                Err(e) => Err(e),
                Ok(()) if redirect::wanted(&app, &req, ctx.trusted_peer) => {
                    Ok(redirect::to_https(&shared.config, &req))
                }
                Ok(()) => match serve_static(&app, &req, &mut ctx).await {
                    Some(result) => result,
                    None if websocket::requested(&req) => {
                        upgrade(&shared, &app, req, &mut ctx).await
                    }
                    None => forward(&shared, &app, req, &mut ctx).await,
                },
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
fn route<'r>(
    routes: &Routes,
    req: &'r Request<Incoming>,
) -> Result<(Arc<App>, Cow<'r, str>), ProxyError> {
    let host = requested_host(req)
        .map(normalize_host)
        .ok_or(ProxyError::BadRequest("missing or invalid Host header"))?;
    match routes.load().app(&host) {
        Some(app) => Ok((Arc::clone(app), host)),
        None => Err(ProxyError::UnknownHost(host.into_owned())),
    }
}

/// Phase 1b: whether the app takes this request now: its rate limit per
/// client address, and a body it declares (`Content-Length`) within
/// `max_body`. A body that only grows past it midway is cut in `forward`.
fn admit(
    config: &RouterConfig,
    app: &App,
    req: &Request<Incoming>,
    ctx: &Ctx,
) -> Result<(), ProxyError> {
    if !headers::framing_ok(req.headers()) {
        return Err(ProxyError::BadRequest(
            "transfer coding other than a single chunked",
        ));
    }
    if let Some(limiter) = &app.limiter {
        let now = tokio::time::Instant::now();
        if let Err(retry_after) = limiter.check(ctx.client, now) {
            return Err(ProxyError::TooManyRequests {
                limit: limiter.rate().to_string(),
                retry_after,
            });
        }
    }
    let max = app.max_body.unwrap_or(config.max_body_bytes);
    if req.body().size_hint().lower() > max {
        return Err(ProxyError::PayloadTooLarge { max });
    }
    Ok(())
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
        client: ctx.client,
        started,
        error: None,
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

/// Phases 3–6: pick a backend, rewrite, send, and once more if the first
/// attempt failed in a way that allows it ([`resend_body`]).
///
/// The second attempt goes to another backend. Only when there is none and
/// the first went out on a pooled connection that the app closed under it
/// — most likely its keep-alive timeout racing the router — does it go to
/// the same backend again, on a new connection. Two attempts at most: a
/// request that failed on two backends is unlikely to fare better on a
/// third, and each attempt costs the client time.
async fn forward(
    shared: &Shared,
    app: &App,
    req: Request<Incoming>,
    ctx: &mut Ctx,
) -> Result<Response<Body>, ProxyError> {
    let (mut parts, body) = req.into_parts();
    rewrite_request(&mut parts, ctx);
    let bodiless = body.is_end_stream();

    let first = balance::pick(app, None).ok_or_else(|| ProxyError::NoBackends(app.name.clone()))?;
    let first_body = if bodiless {
        SendBody::Empty
    } else {
        let fault = Arc::new(BodyFault::default());
        ctx.body_fault = Some(Arc::clone(&fault));
        let max = app.max_body.unwrap_or(shared.config.max_body_bytes);
        SendBody::Client(ClientBody::new(
            body,
            max,
            shared.config.body_read_timeout,
            fault,
        ))
    };
    let failed = match attempt(shared, app, first, Conn::Pooled, &parts, first_body, ctx).await {
        Ok(resp) => return Ok(resp),
        Err(failed) => failed,
    };
    if failed.error.source_kind() == ErrorSource::Client {
        return Err(failed.error);
    }
    let Some(body) = resend_body(&parts.method, bodiless, &failed.error, failed.body) else {
        return Err(failed.error);
    };
    let (second, conn) = match balance::pick(app, Some(first)) {
        Some(other) => (other, Conn::Pooled),
        None if failed.reused && failed.error.unanswered() => (first, Conn::Fresh),
        None => return Err(failed.error),
    };
    tracing::debug!(
        app = %app.name,
        "sending the request again{}: {}",
        if second == first { " on a new connection" } else { " to another backend" },
        failed.error.log_description()
    );
    attempt(shared, app, second, conn, &parts, body, ctx)
        .await
        .map_err(|f| f.error)
}

/// One try on one backend: count its load, send, record the outcome in its
/// health, rewrite the response.
async fn attempt(
    shared: &Shared,
    app: &App,
    index: usize,
    conn: Conn,
    parts: &Parts,
    body: SendBody,
    ctx: &mut Ctx,
) -> Result<Response<Body>, upstream::Failed> {
    let backend = &app.backends[index];
    if let Some(entry) = ctx.entry.as_mut() {
        entry.backend = backend.id.clone();
    }
    let load = backend.begin();
    let timeout = shared.config.upstream_timeout;
    let mut sent = upstream::send(&shared.client, conn, backend, parts, body, timeout).await;
    if let (Err(failed), Some(fault)) = (&mut sent, &ctx.body_fault) {
        // The client's body was cut under the send: the client's fault,
        // which says nothing about the backend.
        if fault.too_large() {
            let max = app.max_body.unwrap_or(shared.config.max_body_bytes);
            failed.error = ProxyError::PayloadTooLarge { max };
        } else if fault.stalled() {
            failed.error = ProxyError::BodyTimeout(shared.config.body_read_timeout);
        }
    }
    tally(app, backend, sent.as_ref().err().map(|f| &f.error));
    let mut resp = sent?;
    ctx.load = Some(load);
    ctx.backend_stats = Some(Arc::clone(&backend.stats));
    headers::strip_hop_by_hop(resp.headers_mut());
    Ok(resp.map(|b| b.map_err(BoxError::from).boxed_unsync()))
}

/// Counts one attempt on `backend` (a failure unless the client caused
/// it) and feeds its outcome to the backend's passive health.
fn tally(app: &App, backend: &BackendState, error: Option<&ProxyError>) {
    observe(app, backend, error);
    backend.stats.requests.fetch_add(1, Ordering::Relaxed);
    if error.is_some_and(|e| e.source_kind() != ErrorSource::Client) {
        backend.stats.failures.fetch_add(1, Ordering::Relaxed);
    }
}

/// Feeds the outcome of one attempt to the backend's passive health, and
/// logs the backend leaving and re-entering rotation — once per outage at
/// info, not per request.
fn observe(app: &App, backend: &BackendState, error: Option<&ProxyError>) {
    match error {
        // Any response head, whatever its status, shows the process is
        // there and serving.
        None => {
            if backend.health.record_success() {
                tracing::info!(
                    app = %app.name,
                    backend = %backend.id,
                    addr = %backend.addr,
                    "backend answers again; back in rotation"
                );
            }
        }
        Some(e) if e.marks_backend() => {
            let Some(ejection) = backend.health.record_failure(health::now_ms()) else {
                return;
            };
            let (cooldown, why) = (ejection.cooldown, e.log_description());
            if ejection.first {
                tracing::info!(
                    app = %app.name,
                    backend = %backend.id,
                    addr = %backend.addr,
                    "backend out of rotation for {cooldown:?} after {} failures in a row: {why}",
                    health::FAILURES_TO_EJECT
                );
            } else {
                // Still dead after a cooldown: re-ejected each time, which
                // is detail, not news.
                tracing::debug!(
                    app = %app.name,
                    backend = %backend.id,
                    addr = %backend.addr,
                    "backend still failing; out of rotation for {cooldown:?}: {why}"
                );
            }
        }
        // Slow or bad answers say nothing about whether the process is up.
        Some(_) => {}
    }
}

/// Phases 3–6 for a WebSocket handshake: sent on a new connection, to a
/// second backend only when the first could not be reached (nothing reached
/// it). A `101` joins client and backend in a tunnel, which takes over the
/// load and the access line; any other answer is proxied as usual.
async fn upgrade(
    shared: &Shared,
    app: &App,
    mut req: Request<Incoming>,
    ctx: &mut Ctx,
) -> Result<Response<Body>, ProxyError> {
    let client = hyper::upgrade::on(&mut req);
    let conn = req.extensions_mut().remove::<Held>();
    let (mut parts, _) = req.into_parts();
    rewrite_request(&mut parts, ctx);
    headers::set_websocket_upgrade(&mut parts.headers);
    let first = balance::pick(app, None).ok_or_else(|| ProxyError::NoBackends(app.name.clone()))?;
    let (index, mut resp) = match handshake(shared, app, first, &parts, ctx).await {
        Err(e) if e.retry_safe() => match balance::pick(app, Some(first)) {
            Some(second) => (second, handshake(shared, app, second, &parts, ctx).await?),
            None => return Err(e),
        },
        sent => (first, sent?),
    };
    let backend = &app.backends[index];
    let switched = resp.status() == http::StatusCode::SWITCHING_PROTOCOLS;
    if switched && !headers::websocket_accepted(resp.headers()) {
        return Err(websocket::wrong_upgrade(backend));
    }
    headers::strip_hop_by_hop(resp.headers_mut());
    if switched {
        headers::set_websocket_upgrade(resp.headers_mut());
        let to_backend = hyper::upgrade::on(&mut resp);
        if let Some(load) = ctx.load.take() {
            let entry = ctx.entry.take().map(|mut e| {
                e.status = resp.status();
                e
            });
            let session = Session {
                entry,
                log: shared.access_log.clone(),
                load,
                gauge: app.stats.tunnel_opened(),
                conn,
                removed: backend.removed.clone(),
                idle_timeout: shared.config.websocket_idle_timeout,
                grace: shared.config.websocket_grace,
            };
            shared.tunnels.open(client, to_backend, session);
        }
    }
    Ok(resp.map(|b| b.map_err(BoxError::from).boxed_unsync()))
}

/// One handshake attempt on the backend at `index`, counted like
/// [`attempt`] ([`tally`]); on success its load is in `ctx`.
async fn handshake(
    shared: &Shared,
    app: &App,
    index: usize,
    parts: &Parts,
    ctx: &mut Ctx,
) -> Result<Response<Incoming>, ProxyError> {
    let backend = &app.backends[index];
    if let Some(entry) = ctx.entry.as_mut() {
        entry.backend = backend.id.clone();
    }
    let load = backend.begin();
    let config = &shared.config;
    let sent = websocket::handshake(
        backend,
        parts,
        config.connect_timeout,
        config.upstream_timeout,
    )
    .await;
    tally(app, backend, sent.as_ref().err());
    if sent.is_ok() {
        ctx.load = Some(load);
    }
    sent
}

/// Phase 4: what the backend sees of the request head.
fn rewrite_request(parts: &mut Parts, ctx: &Ctx) {
    // The client's Host goes to the app unchanged (apps build URLs from it);
    // an absolute-form request without one gets the authority it named.
    let host = host_of_parts(parts);
    headers::rewrite_request(
        &mut parts.headers,
        host,
        &ctx.peer,
        ctx.trusted_peer,
        parts.extensions.get::<OverTls>().is_some(),
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

/// The body to send a failed request again with, or `None` when it must
/// not be sent again.
///
/// - A failed connect never reached the backend: idempotent methods may go
///   again, and among those a body only for methods where a body has no
///   defined meaning (a PUT body is the change itself, and the router will
///   not be the one to apply it twice). The body must have come back unread;
///   a bodiless request simply gets a new empty one.
/// - An empty response (taken, then closed without a byte) may have had
///   effects, so only an idempotent request without a body goes again, with
///   a new empty body: the original was handed to the first attempt.
/// - Nothing else: a POST, a body that was (even partly) sent, a response
///   that had begun, a timeout (a slow app must not run a request twice).
fn resend_body(
    method: &Method,
    bodiless: bool,
    error: &ProxyError,
    unread: Option<ClientBody>,
) -> Option<SendBody> {
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let idempotent = safe || matches!(*method, Method::PUT | Method::DELETE);
    if !idempotent {
        return None;
    }
    if bodiless && (error.retry_safe() || error.unanswered()) {
        return Some(SendBody::Empty);
    }
    if safe && error.retry_safe() {
        return unread.map(SendBody::Client);
    }
    None
}

/// Phase 7: stamp the request id on the response and arrange for the load
/// counter and the access log to settle when its body ends.
fn finish(mut resp: Response<Body>, ctx: Ctx, access_log: Option<LogShipper>) -> Response<Body> {
    resp.headers_mut().insert(X_REQUEST_ID, ctx.request_id);
    let Ctx {
        entry,
        load,
        backend_stats,
        app,
        started,
        ..
    } = ctx;
    let status = resp.status();
    let entry = entry.map(|mut e| {
        e.status = status;
        e
    });
    if entry.is_none() && load.is_none() && app.is_none() {
        return resp;
    }
    resp.map(|body| {
        Tracked::new(
            body,
            Box::new(move |bytes| {
                drop(load);
                let elapsed = started.elapsed();
                if let Some(app) = app {
                    app.stats.record(status, elapsed);
                }
                if let Some(backend) = backend_stats {
                    backend.latency.record(elapsed);
                }
                if let (Some(entry), Some(log)) = (entry, access_log) {
                    entry.send(&log, bytes);
                }
            }),
        )
        .boxed_unsync()
    })
}
