//! The floor under the router's speed: the cheapest HTTP/1.1 proxy that can
//! be built on hyper and tokio, for `bench/router.sh` to measure next to
//! `berth router`, nginx and HAProxy in the same run.
//!
//! Each client connection gets one backend connection of its own, opened
//! when the client connects and used for all its requests: no routing, pool,
//! balancing, health, limits, timeouts, header rewriting, stats or logs.
//! Whatever a proxy on hyper does, it does at least this much, so the gap
//! between this and HAProxy is what hyper and tokio cost, and the gap between
//! this and the router is what the router's features cost.
//!
//! ```text
//! cargo run --release -p berth-router --example hyper_floor -- 127.0.0.1:8090 127.0.0.1:19001
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1 as client;
use hyper::server::conn::http1 as server;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

// The router's allocator, so that the comparison is of code, not malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type BoxBody = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, hyper::Error>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(backend)) = (args.next(), args.next()) else {
        return Err("usage: hyper_floor LISTEN_ADDR BACKEND_ADDR".into());
    };
    let listen: SocketAddr = listen.parse()?;
    let backend: SocketAddr = backend.parse()?;
    // One thread, as `berth router --threads 1`, nginx's one worker and
    // HAProxy's `nbthread 1`.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(proxy_connection(stream, backend));
        }
    })
}

/// Proxies one client connection over a backend connection of its own.
/// Clients leaving mid-request (wrk at the end of a run) are not news, so
/// only a backend that cannot be reached is reported.
async fn proxy_connection(stream: TcpStream, backend: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let upstream = match TcpStream::connect(backend).await {
        Ok(s) => s,
        Err(e) => return eprintln!("hyper_floor: cannot connect to {backend}: {e}"),
    };
    let _ = upstream.set_nodelay(true);
    let Ok((sender, conn)) = client::handshake(TokioIo::new(upstream)).await else {
        return;
    };
    tokio::spawn(conn);
    // HTTP/1.1 serves one request at a time per connection: never contended.
    let sender = Arc::new(Mutex::new(sender));
    let service = service_fn(move |req: Request<Incoming>| {
        let sender = Arc::clone(&sender);
        async move {
            let resp = sender.lock().await.send_request(req).await;
            Ok::<_, Infallible>(match resp {
                Ok(resp) => resp.map(|b| b.boxed_unsync()),
                Err(_) => Response::builder()
                    .status(502)
                    .body(BoxBody::default())
                    .unwrap_or_default(),
            })
        }
    });
    let _ = server::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}
