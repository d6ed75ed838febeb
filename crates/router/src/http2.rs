//! HTTP/2 from clients (over TLS, chosen by ALPN), onto the same request
//! path as HTTP/1.1: each stream becomes one request to an HTTP/1.1 backend
//! through the pool.
//!
//! The defences, and who provides them:
//! - **Rapid Reset** (CVE-2023-44487): h2 sends GOAWAY after
//!   [`MAX_PENDING_RESETS`] streams reset by the client before the router
//!   accepted them, and after [`MAX_LOCAL_RESETS`] streams the router had
//!   to reset for protocol errors (RUSTSEC-2024-0003). Set explicitly here
//!   so a change of hyper's defaults cannot loosen them.
//! - **CONTINUATION flood** (h2 ≥ 0.4.4): header blocks are cut at
//!   `max_header_list_size` ([`RouterConfig::max_header_bytes`]) and the
//!   client gets `431`, as over HTTP/1.1.
//! - **Streams**: at most [`RouterConfig::http2_max_streams`] at once.
//! - **PING, SETTINGS and empty-frame floods** (CVE-2019-9512, -9515,
//!   -9518, and WINDOW_UPDATE, PRIORITY, RST_STREAM, unknown frames): h2
//!   keeps at most one answer pending and reads the next frame only once
//!   it is written, so a flood costs the router no memory, and a client
//!   that does not read its answers stops being read. Their CPU is bounded
//!   per connection by [`flood`]: hyper exposes no frame counters, so the
//!   TLS stream is wrapped and the frames are followed by their headers;
//!   a connection that sends more than
//!   [`RouterConfig::http2_flood_limit`] such frames beyond what its
//!   requests pay back gets GOAWAY `ENHANCE_YOUR_CALM` and is closed, and
//!   `berth_router_http2_floods_total` counts it. A connection with no
//!   request for `header_read_timeout` is closed whatever frames it sends,
//!   and `max_connections_per_ip` bounds how many such a client can hold.
//! - **Content-Length against DATA**: h2 resets a stream whose DATA add up
//!   to more or less than its `content-length`; the router re-frames every
//!   body it forwards (the client's length is never passed on), so the
//!   backend sees the body cut and its connection closed, never a complete
//!   request of the wrong length.
//! - **`:authority` against `Host`**: both name the host; when a client
//!   sends both and they disagree the router answers `400` ([`check`]), as
//!   RFC 9113 §8.3.1 requires.
//! - **Per-address limit**: `max_connections_per_ip` counts connections,
//!   and each HTTP/2 connection carries up to `http2_max_streams` requests:
//!   with the defaults one address may have 512 × 100 = 51 200 requests
//!   open at once over HTTP/2, against 512 over HTTP/1.1.
//! - **Time to the first request**: a TLS client gets `header_read_timeout`
//!   for its handshake, then again for its first request (HTTP/2 counts a
//!   connection with no stream open as idle, HTTP/1.1 its first head).
//!
//! Cookies: HTTP/2 clients send each cookie as a field of its own; they are
//! joined into one `cookie` line (RFC 9113 §8.2.3) before the request goes
//! on to an HTTP/1.1 backend.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderMap, HeaderValue, Method, Request};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::body::Tracked;
use crate::config::RouterConfig;
use crate::error::ProxyError;
use crate::headers::Peer;
use crate::proxy::{self, Shared};
use crate::tls::OverTls;

mod flood;
pub(crate) mod frames;

/// Client-reset streams not yet accepted before GOAWAY (h2's default).
const MAX_PENDING_RESETS: usize = 20;

/// Streams the router reset for protocol errors before GOAWAY (hyper's
/// default).
const MAX_LOCAL_RESETS: usize = 1024;

/// How long a keep-alive PING may go unanswered before the connection is
/// considered dead.
const PING_ANSWER_WITHIN: Duration = Duration::from_secs(20);

/// Serves HTTP/2 on `io` (a TLS stream) until the client closes, the
/// connection is idle for `header_read_timeout`, or the drain signal.
pub(crate) async fn serve<S>(
    io: TokioIo<S>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut drain: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = &shared.config;
    let idle_after = config.header_read_timeout;
    let activity = Arc::new(Activity::default());
    let forwarded = Peer::new(peer.ip());
    let service = {
        let shared = Arc::clone(&shared);
        let activity = Arc::clone(&activity);
        service_fn(move |mut req: Request<Incoming>| {
            let shared = Arc::clone(&shared);
            let forwarded = forwarded.clone();
            let busy = activity.begin();
            req.extensions_mut().insert(OverTls);
            join_cookies(req.headers_mut());
            async move {
                let resp = match check(&req) {
                    Ok(()) => proxy::handle(shared, forwarded, req).await,
                    Err(e) => e.into_response(&shared.config.apps_domain),
                };
                // The stream is busy until its body ends, not its head: an
                // event stream or a long download sends nothing else, and
                // must not count as idle.
                let resp = resp
                    .map(|body| Tracked::new(body, Box::new(move |_| drop(busy))).boxed_unsync());
                Ok::<_, std::convert::Infallible>(resp)
            }
        })
    };
    let io = TokioIo::new(flood::Guarded::new(
        io.into_inner(),
        config.http2_flood_limit,
        peer,
        Arc::clone(shared.routes.router_stats()),
    ));
    let mut conn = builder(config).serve_connection(io, service);
    let mut idle_check =
        tokio::time::interval_at(tokio::time::Instant::now() + idle_after, idle_after);
    let mut seen = activity.stamp();
    let draining = loop {
        tokio::select! {
            r = &mut conn => return ended(peer, r),
            // The value only ever goes to `true`: any change means drain.
            _ = drain.changed() => break true,
            _ = idle_check.tick() => {
                let now = activity.stamp();
                if now == seen && activity.in_flight() == 0 {
                    tracing::debug!(%peer, "HTTP/2 connection idle for {idle_after:?}: closing");
                    break false;
                }
                seen = now;
            }
        }
    };
    // GOAWAY: streams under way finish, no new ones start.
    Pin::new(&mut conn).graceful_shutdown();
    if draining {
        // `run` cuts what is left at its drain timeout.
        return ended(peer, (&mut conn).await);
    }
    // An idle client that does not even take its GOAWAY is not waited for.
    if let Ok(r) = tokio::time::timeout(idle_after, &mut conn).await {
        ended(peer, r);
    }
}

fn ended(peer: SocketAddr, result: Result<(), hyper::Error>) {
    if let Err(e) = result {
        // Floods end here too (GOAWAY sent by h2, or by `flood`); the
        // client chose it.
        tracing::debug!(%peer, "HTTP/2 connection ended with an error: {e}");
    }
}

/// The HTTP/2 settings of every client connection.
fn builder(config: &RouterConfig) -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .max_concurrent_streams(config.http2_max_streams)
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_local_error_reset_streams(MAX_LOCAL_RESETS)
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(config.header_read_timeout)
        .keep_alive_timeout(PING_ANSWER_WITHIN);
    b
}

/// What the request path cannot take from an HTTP/2 client: a `Host`
/// header that names another host than `:authority`, and `CONNECT` (a
/// tunnel, not a request an app could answer).
fn check<B>(req: &Request<B>) -> Result<(), ProxyError> {
    if req.method() == Method::CONNECT {
        return Err(ProxyError::BadRequest("CONNECT is not proxied"));
    }
    let (Some(authority), Some(host)) = (req.uri().authority(), req.headers().get(header::HOST))
    else {
        return Ok(());
    };
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let single = hosts.next().is_some() && hosts.next().is_none();
    if single
        && host
            .as_bytes()
            .eq_ignore_ascii_case(authority.as_str().as_bytes())
    {
        Ok(())
    } else {
        Err(ProxyError::BadRequest(":authority and Host disagree"))
    }
}

/// Joins the `cookie` fields of a request into one, as RFC 9113 §8.2.3
/// asks before a request goes on over HTTP/1.1: HTTP/2 clients send each
/// cookie as a field of its own (for header compression), and HTTP/1.1
/// allows one `Cookie` line, so apps would see only the first.
fn join_cookies(headers: &mut HeaderMap) {
    // Most requests carry one cookie field or none: nothing to collect.
    let mut fields = headers.get_all(header::COOKIE).iter();
    if fields.next().is_none() || fields.next().is_none() {
        return;
    }
    let values: Vec<&[u8]> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    if values.len() < 2 {
        return;
    }
    // Valid values joined by "; " are a valid value.
    if let Ok(joined) = HeaderValue::from_bytes(&values.join(&b"; "[..])) {
        headers.insert(header::COOKIE, joined);
    }
}

/// Requests of one connection: how many are open (from request head to the
/// end of the response body), and a counter bumped at each start and end,
/// so an idle check can tell "nothing happened".
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    events: AtomicU64,
}

struct Busy(Arc<Activity>);

impl Activity {
    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.events.fetch_add(1, Ordering::Relaxed);
        Busy(Arc::clone(self))
    }

    fn stamp(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.events.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, hosts: &[&str], method: Method) -> Request<()> {
        let mut b = Request::builder().method(method).uri(uri);
        for h in hosts {
            b = b.header(header::HOST, *h);
        }
        b.body(()).expect("request")
    }

    #[test]
    fn authority_and_host_must_agree() {
        assert!(check(&req("https://a.example/", &[], Method::GET)).is_ok());
        assert!(check(&req("/", &["a.example"], Method::GET)).is_ok());
        assert!(check(&req("https://a.example/", &["A.example"], Method::GET)).is_ok());
        assert!(check(&req(
            "https://a.example:8443/",
            &["a.example:8443"],
            Method::GET
        ))
        .is_ok());
        for bad in [
            req("https://a.example/", &["b.example"], Method::GET),
            req(
                "https://a.example/",
                &["a.example", "a.example"],
                Method::GET,
            ),
            req("https://a.example:8443/", &["a.example"], Method::GET),
            req("https://a.example/", &[], Method::CONNECT),
        ] {
            assert!(check(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cookie_fields_are_joined_into_one() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        h.append(header::COOKIE, HeaderValue::from_static("c=3"));
        join_cookies(&mut h);
        let all: Vec<_> = h.get_all(header::COOKIE).iter().collect();
        assert_eq!(all, ["a=1; b=2; c=3"]);

        let mut one = HeaderMap::new();
        one.append(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        join_cookies(&mut one);
        assert_eq!(one.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(one[header::COOKIE], "a=1; b=2");
    }
}
