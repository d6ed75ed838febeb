//! Berth's router: the HTTP/1.1 reverse proxy in front of every app.
//!
//! It picks the app by Host header, serves the app's static files from disk,
//! balances the rest over the app's running instances, and writes a
//! Heroku-style access line into the app's log. Routes come from the control
//! plane ([`follow_control_plane`]) or from a TOML file ([`standalone`]), and
//! are swapped atomically under live traffic ([`Routes`]).
//!
//! ```text
//! client ──► run (accept, drain) ──► proxy::handle
//!                                      route ─► static ─► pick ─► rewrite ─► forward ─► log
//!                                        ▲                                      │
//!            control plane / TOML ──► Routes (ArcSwap)          per-thread pool (HTTP/1.1) ──► backends
//! ```
//!
//! # Layout
//! - [`server`] — [`run`], the accept loop and graceful drain; HTTPS with
//!   [`run_with_tls`].
//! - [`tls`] — [`tls::Certificates`]: chosen by SNI, reloaded on change.
//! - `http2` — HTTP/2 clients (over TLS) and their defences; `http2::flood`
//!   counts the frames that carry no request, following them by their
//!   headers (`http2::frames`).
//! - `proxy` — the request path as named phases, with per-request state in
//!   one context.
//! - `upstream` — one send attempt, and how its failure is judged.
//! - `pool` — keep-alive backend connections: a per-thread LIFO pool, each
//!   connection driven by the request using it.
//! - `connector` — TCP to backends, counting what each connection received
//!   (to tell an empty response from a broken one).
//! - [`table`] — [`Routes`], the compiled table, per-backend load and health.
//! - `departures` — instances that left the table with WebSocket sessions
//!   open, reported to the control plane until those end.
//! - `health` — passive and active health: out of rotation after repeated
//!   failures of requests or of checks.
//! - `checks` — active health checks (`GET` of the app's check path).
//! - `balance` — least-conn (power of two choices) and round robin, over the
//!   backends that are not down.
//! - `redirect` — HTTP→HTTPS per app, ACME challenges excepted.
//! - `headers` — hop-by-hop stripping, `X-Forwarded-*`, `X-Request-Id`.
//! - `websocket` — which requests are WebSocket handshakes, and sending one
//!   on a connection of its own.
//! - `tunnel` — a WebSocket session after its `101`: bytes both ways, idle
//!   timeout, grace and `1001` close frames when its instance leaves or the
//!   router stops.
//! - [`trusted`] — [`TrustedProxies`], whose `X-Forwarded-*` are believed.
//! - [`limits`] — the connection limits.
//! - [`rate_limit`] — [`RateLimit`] and its per-client limiter (GCRA).
//! - `request_body` — the client's body, cut past `max_body` or a stall.
//! - `static_files` — files from disk with ETag and conditional requests.
//! - `access_log` — the Heroku-style line.
//! - [`stats`] — per-app and per-instance counters, served as Prometheus
//!   text and an HTML page on a separate listener.
//! - [`body`] — the response body type and the tracking wrappers.
//! - [`error`] — [`ProxyError`], its source and whether retry is safe.
//! - [`config`] — [`RouterConfig`].
//! - [`control_plane`] — [`follow_control_plane`].
//! - [`standalone`] — the TOML file mode.
//! - `file_stamp` — what tells one version of a watched file from the next.

mod access_log;
mod balance;
pub mod body;
mod checks;
pub mod config;
mod connector;
pub mod control_plane;
mod departures;
pub mod error;
mod file_stamp;
mod headers;
mod health;
mod http2;
pub mod limits;
mod pool;
mod proxy;
pub mod rate_limit;
mod redirect;
mod request_body;
pub mod server;
pub mod standalone;
mod static_files;
pub mod stats;
pub mod table;
pub mod tls;
pub mod trusted;
mod tunnel;
mod upstream;
mod websocket;

/// Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`): the
/// router's own parsing and rewriting, without a server around it.
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    use std::net::Ipv4Addr;

    use http::HeaderMap;

    /// How a Host header is looked up in the route table.
    pub fn normalize_host(raw: &str) -> String {
        crate::table::normalize_host(raw).into_owned()
    }

    pub use crate::http2::frames::Frame;

    /// The HTTP/2 frames a client sends in `chunks` (the preface first), as
    /// the flood budget sees them, read in those pieces.
    pub fn http2_frames<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<Frame> {
        let mut follower = crate::http2::frames::Follower::client();
        let mut seen = Vec::new();
        for chunk in chunks {
            follower.feed(chunk, |f| seen.push(f));
        }
        seen
    }

    /// The request headers as a backend would get them, from a peer that is
    /// a trusted proxy or not.
    pub fn rewrite_request_headers(headers: &mut HeaderMap, trusted_peer: bool) {
        let host = headers.get(http::header::HOST).cloned();
        let id = crate::headers::request_id(headers);
        let _ = crate::headers::framing_ok(headers);
        crate::headers::rewrite_request(
            headers,
            host,
            &crate::headers::Peer::new(Ipv4Addr::LOCALHOST.into()),
            trusted_peer,
            false,
            &id,
        );
    }
}

pub use config::RouterConfig;
pub use control_plane::{follow_control_plane, follow_control_plane_as};
pub use error::{ErrorSource, ProxyError};
pub use rate_limit::RateLimit;
pub use server::{run, run_with_tls, TlsListener};
pub use table::Routes;
pub use trusted::TrustedProxies;
