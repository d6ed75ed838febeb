//! Integration tests of the router: real backends, a real router and real
//! HTTP clients, all in-process on 127.0.0.1:0.

mod balance;
mod certs;
mod checks;
mod failover;
mod http2;
mod limits;
mod python;
mod reload;
mod routing;
mod shutdown;
mod slow_clients;
mod smuggling;
mod static_files;
mod stats;
mod streaming;
mod tls;
mod tls_reload;
mod util;
mod websocket;
