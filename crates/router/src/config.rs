//! [`RouterConfig`]: the knobs of one router process — timeouts and limits.
//!
//! Where apps live is not configuration but state ([`crate::Routes`]); this
//! holds only what stays fixed for the life of the process.

use std::time::Duration;

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
    /// Most headers accepted in one request.
    pub max_headers: usize,
    /// How long a client may take to send a request head. Protects against
    /// slow clients that trickle headers to tie up connections.
    pub header_read_timeout: Duration,
    /// How long to wait for a TCP connection to a backend. A backend on the
    /// same network answers in microseconds, so a short value fails over
    /// quickly when an instance has just died.
    pub connect_timeout: Duration,
    /// How long a backend has to send its response head (connect included)
    /// before the client gets `504`. Heroku's 30 s is what apps expect.
    pub upstream_timeout: Duration,
    /// How long an idle pooled connection to a backend is kept.
    pub pool_idle_timeout: Duration,
    /// Idle pooled connections kept per backend.
    pub pool_max_idle_per_backend: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            apps_domain: "localhost".to_string(),
            drain_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            header_read_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(3),
            upstream_timeout: Duration::from_secs(30),
            pool_idle_timeout: Duration::from_secs(60),
            pool_max_idle_per_backend: 64,
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
