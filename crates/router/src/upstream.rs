//! The connection to backends: a pooled keep-alive HTTP/1.1 client, and one
//! attempt at sending a request through it.

use std::time::Duration;

use http::request::Parts;
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::oneshot;

use crate::body::Reclaim;
use crate::config::RouterConfig;
use crate::error::ProxyError;
use crate::table::BackendState;

/// The shared client to every backend; pools connections per `host:port`.
pub(crate) type Upstream = Client<HttpConnector, Reclaim<Incoming>>;

/// A failed attempt, with the request body if it was never read (so it can
/// be sent elsewhere).
pub(crate) struct Failed {
    pub error: ProxyError,
    pub body: Option<Incoming>,
}

/// Builds the client. Connections to backends are pooled and kept alive:
/// a new TCP handshake per request would dominate the latency of small
/// requests on a local network.
pub(crate) fn client(config: &RouterConfig) -> Upstream {
    let mut connector = HttpConnector::new();
    // Small writes (heads, short bodies) must go out now, not after Nagle's
    // delay waits for an ACK.
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(config.connect_timeout));
    connector.set_keepalive(Some(Duration::from_secs(60)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(config.pool_idle_timeout)
        .pool_max_idle_per_host(config.pool_max_idle_per_backend)
        .pool_timer(TokioTimer::new())
        // The Host header is the client's, set by the rewrite phase; the
        // client must not make one up from the backend address.
        .set_host(false)
        .build(connector)
}

/// Sends the request (head `parts`, already rewritten) to `backend`, waiting
/// at most `timeout` for the response head.
pub(crate) async fn send(
    client: &Upstream,
    backend: &BackendState,
    parts: &Parts,
    body: Incoming,
    timeout: Duration,
) -> Result<Response<Incoming>, Failed> {
    let uri = match upstream_uri(backend, parts) {
        Ok(uri) => uri,
        Err(error) => {
            return Err(Failed {
                error,
                body: Some(body),
            })
        }
    };
    let (body, mut reclaim) = Reclaim::new(body);
    let mut req = Request::from_parts(parts.clone(), body);
    *req.uri_mut() = uri;
    // Backends always get HTTP/1.1, so the pooled connection stays
    // keep-alive even for an HTTP/1.0 client.
    *req.version_mut() = Version::HTTP_11;

    let result = tokio::time::timeout(timeout, client.request(req)).await;
    let error = match result {
        Ok(Ok(resp)) => return Ok(resp),
        Ok(Err(e)) if e.is_connect() => ProxyError::Connect {
            backend: backend.addr.clone(),
            source: e,
        },
        Ok(Err(e)) => ProxyError::Upstream {
            backend: backend.addr.clone(),
            source: e,
        },
        Err(_) => ProxyError::Timeout {
            backend: backend.addr.clone(),
            timeout,
        },
    };
    Err(Failed {
        error,
        body: take_reclaimed(&mut reclaim),
    })
}

/// The body, if the client dropped it unread. The client drops the request
/// before its future resolves, so the body is already in the channel.
fn take_reclaimed(rx: &mut oneshot::Receiver<Incoming>) -> Option<Incoming> {
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
