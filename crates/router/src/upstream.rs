//! One attempt at sending a request to a backend, over the connection pool
//! ([`crate::pool`]).
//!
//! An attempt that fails says how far the request got (see
//! [`ProxyError`]): never connected, taken and closed without a response
//! byte, or anything later. The request body comes back with the failure if
//! it was never read, and [`Failed::reused`] tells whether the connection
//! came from the pool — a closed pooled connection is as likely the app's
//! keep-alive timeout racing the router as a dead app.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use http::request::Parts;
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, Version};
use http_body_util::{Either, Empty};
use tokio::sync::oneshot;

use crate::body::Reclaim;
use crate::config::RouterConfig;
use crate::error::ProxyError;
use crate::pool::{self, Driven, PoolConfig};
use crate::request_body::ClientBody;
use crate::table::BackendState;

/// How attempts reach backends.
#[derive(Clone)]
pub(crate) struct Upstream {
    pool: PoolConfig,
}

/// Which connection an attempt may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conn {
    /// Any: pooled if one is idle.
    Pooled,
    /// A new one: for resending to the same backend after a pooled
    /// connection was closed under the request, where the pool could hand
    /// out another connection just as stale.
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

/// Connections to backends are pooled and kept alive: a new TCP handshake
/// per request would dominate the latency of small requests on a local
/// network.
pub(crate) fn client(config: &RouterConfig) -> Upstream {
    Upstream {
        pool: PoolConfig {
            max_idle_per_backend: config.pool_max_idle_per_backend,
            idle_timeout: config.pool_idle_timeout,
            connect_timeout: config.connect_timeout,
        },
    }
}

/// Sends the request (head `parts`, already rewritten) to `backend`, waiting
/// at most `timeout` for the response head (connect included).
pub(crate) async fn send(
    client: &Upstream,
    conn: Conn,
    backend: &BackendState,
    parts: &Parts,
    body: SendBody,
    timeout: Duration,
) -> Result<Response<Driven>, Failed> {
    let (body, mut reclaim) = match body {
        SendBody::Client(b) => {
            let (b, rx) = Reclaim::new(b);
            (Either::Left(b), Some(rx))
        }
        SendBody::Empty => (Either::Right(Empty::new()), None),
    };
    let mut req = Request::from_parts(parts.clone(), body);
    *req.uri_mut() = origin_form(parts);
    // Backends always get HTTP/1.1, so the pooled connection stays
    // keep-alive even for an HTTP/1.0 client.
    *req.version_mut() = Version::HTTP_11;

    let attempt = async {
        let addr = resolve(backend).await.map_err(|e| (e, false))?;
        let c = pool::checkout(addr, conn == Conn::Fresh, &client.pool)
            .await
            .map_err(|e| (e, false))?;
        Ok::<_, (io::Error, bool)>(pool::send(c, req, client.pool.max_idle_per_backend).await)
    };
    let error = match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(Ok(resp))) => return Ok(resp),
        Ok(Err((e, _))) => ProxyError::Connect {
            backend: backend.addr.clone(),
            source: Box::new(e),
        },
        Ok(Ok(Err((e, stats)))) => {
            let reused = stats.reused();
            let empty = stats.nothing_received() && closed_by_peer(&e);
            let backend = backend.addr.clone();
            let error = if empty {
                ProxyError::EmptyResponse {
                    backend,
                    source: Box::new(e),
                }
            } else {
                ProxyError::Upstream {
                    backend,
                    source: Box::new(e),
                }
            };
            return Err(Failed {
                error,
                body: reclaim.as_mut().and_then(take_reclaimed),
                reused,
            });
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
        reused: false,
    })
}

/// The backend's socket address: parsed when the table was compiled, or
/// looked up now for a backend given by name.
pub(crate) async fn resolve(backend: &BackendState) -> io::Result<SocketAddr> {
    if let Some(addr) = backend.socket_addr {
        return Ok(addr);
    }
    tokio::net::lookup_host(backend.addr.as_str())
        .await?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address for backend"))
}

/// Whether a send failed because the backend closed or reset the
/// connection, as opposed to, say, a response hyper could not parse or a
/// request it refused to send.
fn closed_by_peer(e: &hyper::Error) -> bool {
    // Canceled: hyper saw the connection close before it could write the
    // request.
    if e.is_incomplete_message() || e.is_canceled() {
        return true;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = cur {
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

/// The body, if hyper dropped it unread. The request is dropped before the
/// send's future resolves, so the body is already in the channel.
fn take_reclaimed(rx: &mut oneshot::Receiver<ClientBody>) -> Option<ClientBody> {
    rx.try_recv().ok()
}

/// The request target as a backend expects it: path and query only, also
/// for a client that sent the absolute form (the host is in `Host`).
pub(crate) fn origin_form(parts: &Parts) -> Uri {
    let pq = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::from(pq)
}
