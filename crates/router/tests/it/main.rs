//! Integration tests of the router: real backends, a real router and real
//! HTTP clients, all in-process on 127.0.0.1:0.

mod balance;
mod failover;
mod reload;
mod routing;
mod shutdown;
mod static_files;
mod util;
