//! [`run`]: the accept loop and graceful drain.
//!
//! Shutdown happens in three steps: stop accepting (the listener is dropped,
//! so new connections are refused rather than left hanging), tell every open
//! connection to finish its current request and close, then wait for them
//! up to [`RouterConfig::drain_timeout`] before cutting what is left.
//! WebSocket sessions get [`RouterConfig::websocket_grace`] meanwhile, then
//! a close frame (`crate::tunnel`).
//!
//! Connections over [`RouterConfig::max_connections`] or
//! [`RouterConfig::max_connections_per_ip`] are closed on accept. A client
//! that has not sent a whole request head within
//! [`RouterConfig::header_read_timeout`] gets `408` and is closed
//! (slowloris); hyper alone would close it without a word.
//!
//! With a [`TlsListener`], connections there are TLS (handshake also cut
//! off after `header_read_timeout`), then HTTP/2 or HTTP/1.1 as ALPN chose
//! ([`crate::http2`] for the former); the request path is the same.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_client::logs::LogShipper;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::RouterConfig;
use crate::headers::Peer;
use crate::limits::{ConnGuard, ConnLimits, Held, Refused};
use crate::proxy::{self, Shared};
use crate::table::Routes;
use crate::tls::{self, Certificates, OverTls};
use crate::upstream;

/// The listener for HTTPS and the certificates it serves.
pub struct TlsListener {
    pub listener: TcpListener,
    pub certs: Certificates,
}

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
    run_with_tls(listener, None, routes, config, access_log, shutdown).await
}

/// [`run`], and HTTPS on `tls` as well when given.
pub async fn run_with_tls(
    listener: TcpListener,
    tls: Option<TlsListener>,
    routes: Routes,
    mut config: RouterConfig,
    access_log: Option<LogShipper>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    tracing::info!("router listening on http://{}", listener.local_addr()?);
    crate::checks::start(&routes);
    let tls = match tls {
        None => None,
        Some(t) => {
            let https = t.listener.local_addr()?;
            tracing::info!("router listening on https://{https}");
            config.https_port.get_or_insert(https.port());
            let server_config = t
                .certs
                .server_config(config.http2)
                .map_err(|e| io::Error::other(e.to_string()))?;
            Some((t.listener, tokio_rustls::TlsAcceptor::from(server_config)))
        }
    };
    let (drain_tx, drain_rx) = watch::channel(false);
    if let Some(addr) = config.stats_listen {
        let stats = TcpListener::bind(addr).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen for router stats on {addr}: {e}"),
            )
        })?;
        let mut drain = drain_rx.clone();
        tokio::spawn(crate::stats::serve(stats, routes.clone(), async move {
            let _ = drain.changed().await;
        }));
    }
    let drain_timeout = config.drain_timeout;
    let limits = ConnLimits::new(
        config.max_connections,
        config.max_connections_per_ip,
        config.trusted_proxies.clone(),
    );
    let mut refusals = Refusals::default();
    let shared = Arc::new(Shared {
        routes,
        client: upstream::client(&config),
        config,
        access_log,
        tunnels: Default::default(),
    });
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        let (accepted, acceptor) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => (accepted, None),
            accepted = accept_tls(tls.as_ref()) => (accepted, tls.as_ref().map(|t| t.1.clone())),
            // Reap finished connections so the set does not grow forever.
            Some(done) = conns.join_next(), if !conns.is_empty() => {
                if let Err(e) = done {
                    tracing::error!("connection task failed: {e}");
                }
                continue;
            }
        };
        match accepted {
            Ok((stream, peer)) => match limits.admit(peer.ip()) {
                Ok(guard) => {
                    conns.spawn(serve_connection(
                        stream,
                        peer,
                        guard,
                        Arc::clone(&shared),
                        drain_rx.clone(),
                        acceptor,
                    ));
                }
                // Dropping the stream closes it.
                Err(why) => refusals.note(why, peer, &shared.config),
            },
            Err(e) => accept_error(e).await,
        }
    }

    drop(listener);
    drop(tls);
    let open = conns.len();
    if open > 0 {
        tracing::info!("router shutting down: draining {open} connections");
    }
    let _ = drain_tx.send(true);
    // WebSocket sessions left their connections at the upgrade; they get
    // their own grace meanwhile.
    let (drained, ()) = tokio::join!(
        tokio::time::timeout(drain_timeout, async {
            while conns.join_next().await.is_some() {}
        }),
        shared.tunnels.close_all(),
    );
    if drained.is_err() {
        tracing::warn!(
            "router drain timeout ({drain_timeout:?}) reached: closing {} connections with requests in flight",
            conns.len()
        );
        conns.shutdown().await;
    }
    Ok(())
}

/// The next connection on the TLS listener; never, without one.
async fn accept_tls(
    tls: Option<&(TcpListener, tokio_rustls::TlsAcceptor)>,
) -> io::Result<(TcpStream, SocketAddr)> {
    match tls {
        Some((listener, _)) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Serves one client connection until it closes, or until the drain signal,
/// after which the request under way (if any) is finished and the
/// connection closed. With an `acceptor`, TLS first.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    guard: ConnGuard,
    shared: Arc<Shared>,
    drain: watch::Receiver<bool>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
) {
    // Shared with a WebSocket session, which keeps the connection's place
    // in the limits once it leaves hyper.
    let guard = Arc::new(guard);
    // Responses are written in a few large writes; Nagle would only delay
    // the last segment of each.
    let _ = stream.set_nodelay(true);
    match acceptor {
        None => serve_http1(stream, peer, guard, shared, drain, false).await,
        // Boxed: every connection's future is as big as its biggest branch
        // and is moved whole when spawned, and the TLS branch (rustls state,
        // HTTP/2) made a plain connection's future 7.5 KB.
        Some(acceptor) => Box::pin(serve_tls(stream, acceptor, peer, guard, shared, drain)).await,
    }
}

/// TLS, then HTTP/2 or HTTP/1.1 as ALPN chose.
async fn serve_tls(
    stream: TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    peer: SocketAddr,
    guard: Arc<ConnGuard>,
    shared: Arc<Shared>,
    drain: watch::Receiver<bool>,
) {
    let stream = match tls::accept(&acceptor, stream, shared.config.header_read_timeout).await {
        Ok(s) => s,
        // Scanners and clients that distrust the certificate fail here all
        // the time: detail, not news.
        Err(e) => return tracing::debug!(%peer, "TLS handshake failed: {e}"),
    };
    if tls::is_h2(&stream) {
        crate::http2::serve(TokioIo::new(stream), peer, shared, drain).await
    } else {
        serve_http1(stream, peer, guard, shared, drain, true).await
    }
}

/// Serves HTTP/1.1 on `stream`; `secure` when it came over TLS.
async fn serve_http1<S>(
    stream: S,
    peer: SocketAddr,
    guard: Arc<ConnGuard>,
    shared: Arc<Shared>,
    mut drain: watch::Receiver<bool>,
    secure: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = &shared.config;
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.read_buf_bytes())
        .max_header_size(config.max_header_bytes)
        .max_headers(config.max_headers);
    let peer_header = Peer::new(peer.ip());
    let service = {
        let shared = Arc::clone(&shared);
        let guard = Arc::clone(&guard);
        service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            if req.headers().contains_key(http::header::UPGRADE) {
                req.extensions_mut().insert(Held::new(&guard));
            }
            let shared = Arc::clone(&shared);
            if secure {
                req.extensions_mut().insert(OverTls);
            }
            let peer = peer_header.clone();
            async move { Ok::<_, std::convert::Infallible>(proxy::handle(shared, peer, req).await) }
        })
    };
    // Upgrades: a WebSocket handshake answered `101` hands the socket to
    // its tunnel (`crate::tunnel`).
    let mut conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();

    let result = tokio::select! {
        r = &mut conn => r,
        // The value only ever goes to `true`, so any change (or the sender
        // going away with `run`) means drain.
        _ = drain.changed() => {
            Pin::new(&mut conn).graceful_shutdown();
            (&mut conn).await
        }
    };
    match result {
        Ok(()) => {}
        Err(e) if e.is_timeout() => {
            // Only a client that began a head hears about it: an idle
            // keep-alive connection is simply closed, as browsers expect.
            let Some(parts) = conn.into_parts() else {
                return;
            };
            if !parts.read_buf.is_empty() {
                tracing::debug!(%peer, "request head not received in time: 408");
                let mut stream = parts.io.into_inner();
                let _ = tokio::time::timeout(TIMEOUT_ANSWER_WITHIN, async {
                    let _ = stream.write_all(REQUEST_TIMEOUT).await;
                    let _ = stream.shutdown().await;
                })
                .await;
            }
        }
        // Clients vanish mid-request all the time; that is not the router's
        // problem, so it stays at debug.
        Err(e) => tracing::debug!(%peer, "connection ended with an error: {e}"),
    }
}

/// The answer to a client too slow to send its request head.
const REQUEST_TIMEOUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// A client that does not even read the `408` is not waited for.
const TIMEOUT_ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// Logs refused connections: every one at debug, and a summary at warn at
/// most every [`REFUSAL_WARN_EVERY`], so a flood cannot flood the log.
#[derive(Default)]
struct Refusals {
    since_warn: u64,
    last_warn: Option<Instant>,
}

const REFUSAL_WARN_EVERY: Duration = Duration::from_secs(10);

impl Refusals {
    fn note(&mut self, why: Refused, peer: SocketAddr, config: &RouterConfig) {
        tracing::debug!(%peer, ?why, "connection refused");
        self.since_warn += 1;
        if self
            .last_warn
            .is_some_and(|t| t.elapsed() < REFUSAL_WARN_EVERY)
        {
            return;
        }
        let what = match why {
            Refused::Full => format!(
                "{} connections are open (max_connections)",
                config.max_connections
            ),
            Refused::PerIp => format!(
                "{} has {} connections open (max_connections_per_ip)",
                peer.ip(),
                config.max_connections_per_ip
            ),
        };
        tracing::warn!(
            "closing new connections: {what}; {} refused since the last warning",
            self.since_warn
        );
        self.since_warn = 0;
        self.last_warn = Some(Instant::now());
    }
}

/// Accept fails for a single connection (reset before accept) or for the
/// process (out of file descriptors). Either way the router must keep
/// serving; a short pause keeps a persistent error from spinning the CPU.
async fn accept_error(e: io::Error) {
    tracing::warn!("accepting a connection failed: {e}");
    tokio::time::sleep(Duration::from_millis(50)).await;
}
