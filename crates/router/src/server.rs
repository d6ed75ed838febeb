//! [`run`]: the accept loop and graceful drain.
//!
//! Shutdown happens in three steps: stop accepting (the listener is dropped,
//! so new connections are refused rather than left hanging), tell every open
//! connection to finish its current request and close, then wait for them
//! up to [`RouterConfig::drain_timeout`] before cutting what is left.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use berth_client::logs::LogShipper;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::RouterConfig;
use crate::proxy::{self, Shared};
use crate::table::Routes;
use crate::upstream;

/// Serves HTTP/1.1 on `listener` with the live `routes` until `shutdown`
/// completes, then drains (see the module docs) and returns. Access lines go
/// to `access_log` when given. Fails only if the listener is unusable;
/// errors of single connections are logged and never end the loop.
pub async fn run(
    listener: TcpListener,
    routes: Routes,
    config: RouterConfig,
    access_log: Option<LogShipper>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    tracing::info!("router listening on http://{}", listener.local_addr()?);
    let drain_timeout = config.drain_timeout;
    let shared = Arc::new(Shared {
        routes,
        client: upstream::client(&config),
        config,
        access_log,
    });
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    conns.spawn(serve_connection(stream, Arc::clone(&shared), drain_rx.clone()));
                }
                Err(e) => accept_error(e).await,
            },
            // Reap finished connections so the set does not grow forever.
            Some(done) = conns.join_next(), if !conns.is_empty() => {
                if let Err(e) = done {
                    tracing::error!("connection task failed: {e}");
                }
            }
        }
    }

    drop(listener);
    let open = conns.len();
    if open > 0 {
        tracing::info!("router shutting down: draining {open} connections");
    }
    let _ = drain_tx.send(true);
    let drained = tokio::time::timeout(drain_timeout, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "router drain timeout ({drain_timeout:?}) reached: closing {} connections with requests in flight",
            conns.len()
        );
        conns.shutdown().await;
    }
    Ok(())
}

/// Serves one client connection until it closes, or until the drain signal,
/// after which the request under way (if any) is finished and the
/// connection closed.
async fn serve_connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    mut drain: watch::Receiver<bool>,
) {
    let Ok(peer) = stream.peer_addr() else { return };
    // Responses are written in a few large writes; Nagle would only delay
    // the last segment of each.
    let _ = stream.set_nodelay(true);
    let config = &shared.config;
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.read_buf_bytes())
        .max_header_size(config.max_header_bytes)
        .max_headers(config.max_headers);
    let service = {
        let shared = Arc::clone(&shared);
        service_fn(move |req| {
            let shared = Arc::clone(&shared);
            async move { Ok::<_, std::convert::Infallible>(proxy::handle(shared, peer, req).await) }
        })
    };
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);

    let result = tokio::select! {
        r = conn.as_mut() => r,
        // The value only ever goes to `true`, so any change (or the sender
        // going away with `run`) means drain.
        _ = drain.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Clients vanish mid-request all the time; that is not the router's
        // problem, so it stays at debug.
        tracing::debug!(%peer, "connection ended with an error: {e}");
    }
}

/// Accept fails for a single connection (reset before accept) or for the
/// process (out of file descriptors). Either way the router must keep
/// serving; a short pause keeps a persistent error from spinning the CPU.
async fn accept_error(e: io::Error) {
    tracing::warn!("accepting a connection failed: {e}");
    tokio::time::sleep(Duration::from_millis(50)).await;
}
