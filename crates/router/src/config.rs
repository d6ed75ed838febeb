//! [`RouterConfig`]: the knobs of one router process — timeouts and limits.
//!
//! Where apps live is not configuration but state ([`crate::Routes`]); this
//! holds only what stays fixed for the life of the process. Per-app limits
//! (body size, request rate) travel with the routes
//! ([`berth_model::RouteSettings`]);
//! the values here are their defaults.

use std::net::SocketAddr;
use std::time::Duration;

use crate::trusted::TrustedProxies;

/// Timeouts and limits of a router. Every field has a default that suits a
/// single-machine Berth; the `berth` binary overrides some from flags.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// The domain apps are served under (`NAME.<apps_domain>`). Only used to
    /// tell a lost visitor what addresses exist; routing itself matches the
    /// exact hosts of the route table.
    pub apps_domain: String,
    /// How long [`crate::run`] lets in-flight requests finish after shutdown
    /// is signalled before it cuts the remaining connections.
    pub drain_timeout: Duration,
    /// Largest request head (request line and headers) accepted from a
    /// client; bigger ones get `431`. Values below 8 KiB are raised to 8 KiB,
    /// hyper's floor for its read buffer.
    pub max_header_bytes: usize,
    /// Most headers accepted in one request (more get `431`).
    pub max_headers: usize,
    /// How long a client may take to send a request head, and how long an
    /// idle keep-alive connection is kept. A client that sent part of a head
    /// by then gets `408` (slowloris); an idle one is closed.
    pub header_read_timeout: Duration,
    /// Longest pause between two reads of a request body. A body that stalls
    /// longer is cut and the client gets `408` (slow POST).
    pub body_read_timeout: Duration,
    /// Largest request body of an app that sets no `max_body` of its own;
    /// a bigger one gets `413`, even when it only turns out bigger midway.
    pub max_body_bytes: u64,
    /// Most client connections open at once; connections beyond are closed
    /// as soon as they are accepted, so the router keeps serving those it
    /// has instead of running out of file descriptors.
    pub max_connections: usize,
    /// Most connections open at once from one client address (peers in
    /// [`Self::trusted_proxies`] excepted: they carry many clients).
    pub max_connections_per_ip: usize,
    /// Peers whose `X-Forwarded-For`/`-Proto`/`-Host` are believed (a load
    /// balancer or CDN in front of the router). From anyone else those
    /// headers are replaced: the router is the edge.
    pub trusted_proxies: TrustedProxies,
    /// How long to wait for a TCP connection to a backend. A backend on the
    /// same network answers in microseconds, so a short value fails over
    /// quickly when an instance has just died.
    pub connect_timeout: Duration,
    /// How long a backend has to send its response head (connect included)
    /// before the client gets `504`. Heroku's 30 s is what apps expect.
    pub upstream_timeout: Duration,
    /// How long an idle pooled connection to a backend is kept.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per backend (per worker thread). HTTP/1.1
    /// carries one request at a time, so a backend needs as many
    /// connections as it has requests in flight at peaks; fewer idle ones
    /// mean a new TCP connection for each request beyond them.
    pub pool_max_idle_per_backend: usize,
    /// Where to serve the stats page and `/metrics` ([`crate::stats`]); off
    /// when `None`. Keep it on an address only operators reach.
    pub stats_listen: Option<SocketAddr>,
    /// How long a WebSocket session may pass no byte either way before the
    /// router closes it (HAProxy's `timeout tunnel`). An hour: browsers do
    /// not ping on their own and apps that ping do so every 20–60 s, so a
    /// live session is never cut, while one whose peer vanished without a
    /// close (a laptop lid, a NAT dropping state) frees its two connections
    /// within the hour. HAProxy's own WebSocket example sets the same.
    pub websocket_idle_timeout: Duration,
    /// How long a WebSocket session may go on once its instance left the
    /// route table (deploy, scale down) or the router began to shut down,
    /// before the router closes it with `1001 going away` — long enough to
    /// finish a message or a transfer under way, short enough not to hold
    /// a deploy up. Sessions unaffected by a route change are not touched.
    pub websocket_grace: Duration,
    /// Whether TLS clients may speak HTTP/2 (offered by ALPN next to
    /// HTTP/1.1). Backends get HTTP/1.1 either way.
    pub http2: bool,
    /// Most requests one HTTP/2 connection may have open at once
    /// (`SETTINGS_MAX_CONCURRENT_STREAMS`); each is a backend request.
    pub http2_max_streams: u32,
    /// How many frames that make the router work without carrying a
    /// request (PING, SETTINGS, WINDOW_UPDATE, RST_STREAM, PRIORITY, empty
    /// DATA or HEADERS) an HTTP/2 connection may send beyond what its
    /// requests pay back before it is closed with GOAWAY
    /// `ENHANCE_YOUR_CALM` — PING, SETTINGS and empty-frame floods
    /// (CVE-2019-9512, -9515, -9518). Each request pays back 8, each DATA
    /// frame with data 1, each DATA frame the router sends 2, and a tenth
    /// of the limit leaks away every second (`crate::http2`). 1000, as
    /// nghttp2's glitch burst: browsers send a few such frames per
    /// connection, far from it. 0 turns the count off.
    pub http2_flood_limit: u32,
    /// The port clients reach HTTPS on, for redirects to HTTPS: `None`
    /// is the TLS listener's port, or 443 without one. Set it when a port
    /// forward puts 443 in front of another port.
    pub https_port: Option<u16>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            apps_domain: "localhost".to_string(),
            drain_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            header_read_timeout: Duration::from_secs(20),
            body_read_timeout: Duration::from_secs(30),
            max_body_bytes: 100 << 20,
            max_connections: 8192,
            max_connections_per_ip: 512,
            trusted_proxies: TrustedProxies::default(),
            connect_timeout: Duration::from_secs(3),
            upstream_timeout: Duration::from_secs(30),
            pool_idle_timeout: Duration::from_secs(60),
            pool_max_idle_per_backend: 1024,
            stats_listen: None,
            websocket_idle_timeout: Duration::from_secs(3600),
            websocket_grace: Duration::from_secs(30),
            http2: true,
            http2_max_streams: 100,
            http2_flood_limit: 1000,
            https_port: None,
        }
    }
}

impl RouterConfig {
    /// hyper panics on a read buffer under 8 KiB; a config value must never
    /// crash the router, so small values are raised instead.
    pub(crate) fn read_buf_bytes(&self) -> usize {
        self.max_header_bytes.max(MIN_READ_BUF)
    }
}

/// hyper's minimum HTTP/1 read buffer.
const MIN_READ_BUF: usize = 8192;
