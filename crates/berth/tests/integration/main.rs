//! Integration tests: the real `berth` binary, real uv builds, real
//! gunicorn, real HTTP through the router. One test binary, so the suite
//! links once; each test gets its own `berth up` in a temp dir.

mod kit;

mod config;
mod deploy;
mod errors;
mod limits;
mod router;
mod router_streaming;
mod routing;
mod runs;
mod supervision;
mod tls;
mod websocket_drain;
mod zero_downtime;
