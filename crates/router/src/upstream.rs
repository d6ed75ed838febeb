//! The connection to backends: a pooled keep-alive HTTP/1.1 client, and one
//! attempt at sending a request through it.
//!
//! An attempt that fails says how far the request got (see
//! [`ProxyError`]): never connected, taken and closed without a response
//! byte, or anything later. The request body comes back with the failure if
//! it was never read, and [`Failed::reused`] tells whether the connection
//! came from the pool — a closed pooled connection is as likely the app's
//! keep-alive timeout racing the router as a dead app.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, Version};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::oneshot;

use crate::body::Reclaim;
use crate::config::RouterConfig;
use crate::connector::{ConnStats, Connector};
use crate::error::ProxyError;
use crate::request_body::ClientBody;
use crate::table::BackendState;

/// The body sent to a backend: the client's own, or a new empty one for
/// resending a bodiless request (whose original was handed to hyper and may
/// be gone).
type UpstreamBody = Either<Reclaim<ClientBody>, Empty<Bytes>>;

type HttpClient = Client<Connector, UpstreamBody>;

/// The clients to every backend.
#[derive(Clone)]
pub(crate) struct Upstream {
    /// Pools keep-alive connections per `host:port`; used for every first
    /// attempt and for retries on another backend.
    pooled: HttpClient,
    /// Never reuses a connection: for resending to the same backend after a
    /// pooled connection was closed under the request, where the pool could
    /// hand out another connection just as stale.
    fresh: HttpClient,
}

/// Which connection an attempt may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conn {
    /// Any: pooled if one is idle.
    Pooled,
    /// A new one.
    Fresh,
}

/// The body of one attempt.
pub(crate) enum SendBody {
    /// The client's body, handed back if the attempt fails before reading it.
    Client(ClientBody),
    /// No body (the request had none).
    Empty,
}

/// A failed attempt.
pub(crate) struct Failed {
    pub error: ProxyError,
    /// The client's body, if it was never read (so it can be sent elsewhere).
    pub body: Option<ClientBody>,
    /// The request went out on a connection that had carried an earlier one.
    pub reused: bool,
}

/// Builds the clients. Connections to backends are pooled and kept alive:
/// a new TCP handshake per request would dominate the latency of small
/// requests on a local network.
pub(crate) fn client(config: &RouterConfig) -> Upstream {
    let mut connector = HttpConnector::new();
    // Small writes (heads, short bodies) must go out now, not after Nagle's
    // delay waits for an ACK.
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(config.connect_timeout));
    connector.set_keepalive(Some(Duration::from_secs(60)));
    let connector = Connector::new(connector);
    let build = |max_idle: usize| {
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(max_idle)
            .pool_timer(TokioTimer::new())
            // The Host header is the client's, set by the rewrite phase; the
            // client must not make one up from the backend address.
            .set_host(false)
            .build(connector.clone())
    };
    Upstream {
        pooled: build(config.pool_max_idle_per_backend),
        fresh: build(0),
    }
}

/// Sends the request (head `parts`, already rewritten) to `backend`, waiting
/// at most `timeout` for the response head.
pub(crate) async fn send(
    client: &Upstream,
    conn: Conn,
    backend: &BackendState,
    parts: &Parts,
    body: SendBody,
    timeout: Duration,
) -> Result<Response<Incoming>, Failed> {
    let uri = match upstream_uri(backend, parts) {
        Ok(uri) => uri,
        Err(error) => {
            return Err(Failed {
                error,
                body: match body {
                    SendBody::Client(b) => Some(b),
                    SendBody::Empty => None,
                },
                reused: false,
            })
        }
    };
    let (body, mut reclaim) = match body {
        SendBody::Client(b) => {
            let (b, rx) = Reclaim::new(b);
            (Either::Left(b), Some(rx))
        }
        SendBody::Empty => (Either::Right(Empty::new()), None),
    };
    let mut req = Request::from_parts(parts.clone(), body);
    *req.uri_mut() = uri;
    // Backends always get HTTP/1.1, so the pooled connection stays
    // keep-alive even for an HTTP/1.0 client.
    *req.version_mut() = Version::HTTP_11;

    let client = match conn {
        Conn::Pooled => &client.pooled,
        Conn::Fresh => &client.fresh,
    };
    let result = tokio::time::timeout(timeout, client.request(req)).await;
    let mut reused = false;
    let error = match result {
        Ok(Ok(resp)) => return Ok(resp),
        Ok(Err(e)) if e.is_connect() => ProxyError::Connect {
            backend: backend.addr.clone(),
            source: e,
        },
        Ok(Err(e)) => {
            let stats = e.connect_info().and_then(ConnStats::of);
            reused = stats.as_ref().is_some_and(|s| s.reused());
            // Without the counters it is unknown whether a response began,
            // so the failure is not taken for an empty response.
            let empty = stats.is_some_and(|s| s.nothing_received()) && closed_by_peer(&e);
            let backend = backend.addr.clone();
            if empty {
                ProxyError::EmptyResponse { backend, source: e }
            } else {
                ProxyError::Upstream { backend, source: e }
            }
        }
        // The request may be running in the app right now: never resent.
        Err(_) => ProxyError::Timeout {
            backend: backend.addr.clone(),
            timeout,
        },
    };
    Err(Failed {
        error,
        body: reclaim.as_mut().and_then(take_reclaimed),
        reused,
    })
}

/// Whether a send failed because the backend closed or reset the
/// connection, as opposed to, say, a response hyper could not parse or a
/// request it refused to send.
fn closed_by_peer(e: &hyper_util::client::legacy::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            // Canceled: hyper saw the connection close before it could
            // write the request (and hyper-util could not retry it).
            if h.is_incomplete_message() || h.is_canceled() {
                return true;
            }
        }
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return matches!(
                io.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
            );
        }
        cur = err.source();
    }
    false
}

/// The body, if the client dropped it unread. The client drops the request
/// before its future resolves, so the body is already in the channel.
fn take_reclaimed(rx: &mut oneshot::Receiver<ClientBody>) -> Option<ClientBody> {
    rx.try_recv().ok()
}

fn upstream_uri(backend: &BackendState, parts: &Parts) -> Result<Uri, ProxyError> {
    let pq = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::builder()
        .scheme("http")
        .authority(backend.authority.clone())
        .path_and_query(pq)
        .build()
        .map_err(|_| ProxyError::BadRequest("request target cannot be forwarded"))
}
