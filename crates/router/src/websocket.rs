//! The WebSocket handshake with a backend: which requests are WebSocket
//! handshakes, and sending one on a connection of its own.
//!
//! A handshake never uses a pooled connection, and its connection never
//! goes back to the pool: after a `101` the socket belongs to the session
//! ([`crate::tunnel`]), and a connection that a backend refused to upgrade
//! may be in a state no other request should inherit. The connection is
//! driven by a task of its own, which hands the socket over once the `101`
//! is read (`with_upgrades`), or else carries the answer's body.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Request, Response, Version};
use http_body::Body as _;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use crate::connector;
use crate::error::ProxyError;
use crate::headers;
use crate::table::BackendState;
use crate::upstream::{origin_form, resolve};

/// Whether `req` is a WebSocket handshake the router passes on: HTTP/1.1,
/// `GET`, no body, asking for the `websocket` upgrade (RFC 6455 §4.1).
/// Anything else that asks for an upgrade is proxied as a plain request
/// with its upgrade headers stripped.
pub(crate) fn requested(req: &Request<Incoming>) -> bool {
    req.version() == Version::HTTP_11
        && req.method() == Method::GET
        && req.body().is_end_stream()
        && headers::websocket_requested(req.headers())
}

/// Sends the handshake (head `parts`, already rewritten) to `backend` on a
/// new connection, waiting at most `timeout` for the answer head (connect
/// included, itself at most `connect_timeout`).
pub(crate) async fn handshake(
    backend: &BackendState,
    parts: &Parts,
    connect_timeout: Duration,
    timeout: Duration,
) -> Result<Response<Incoming>, ProxyError> {
    let connect_failed = |e: io::Error| ProxyError::Connect {
        backend: backend.addr.clone(),
        source: Box::new(e),
    };
    let attempt = async {
        let addr = resolve(backend).await.map_err(connect_failed)?;
        let io = connector::connect(addr, connect_timeout)
            .await
            .map_err(connect_failed)?;
        let stats = io.stats();
        let (mut sender, conn) = http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| connect_failed(io::Error::other(e)))?;
        let backend_addr = backend.addr.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(backend = %backend_addr, "websocket handshake connection: {e}");
            }
        });
        let mut req = Request::from_parts(parts.clone(), Empty::<Bytes>::new());
        *req.uri_mut() = origin_form(parts);
        *req.version_mut() = Version::HTTP_11;
        sender.send_request(req).await.map_err(|e| {
            let (backend, source) = (backend.addr.clone(), Box::new(e));
            if stats.nothing_received() {
                ProxyError::EmptyResponse { backend, source }
            } else {
                ProxyError::Upstream { backend, source }
            }
        })
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(ProxyError::Timeout {
                backend: backend.addr.clone(),
                timeout,
            })
        })
}

/// A `101` that is not a WebSocket: the router could not tell where the
/// new protocol's messages end, so the client gets a `502` instead.
pub(crate) fn wrong_upgrade(backend: &BackendState) -> ProxyError {
    ProxyError::Upstream {
        backend: backend.addr.clone(),
        source: "answered a WebSocket handshake with 101 for another protocol".into(),
    }
}
