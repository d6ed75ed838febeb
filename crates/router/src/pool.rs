//! Keep-alive connections to backends: a per-thread LIFO pool of idle
//! connections, each driven by the task of the request that uses it.
//!
//! hyper-util's pooled client spawns a task per connection and hands every
//! request and response across a channel to it, and, when no idle
//! connection is free, starts a new one while racing a busy one coming back
//! (hyper#4134) — under load that is a stream of connections opened for
//! nothing. Here a request takes the most recently used idle connection of
//! its backend (LIFO: the warmest, and the rest age out), or opens one, and
//! polls the connection itself: while waiting for the response head in
//! [`send`], and while the response body streams ([`Driven`]). Once the body
//! has ended the connection goes back to the pool of the thread it is on.
//! No task, no channel hop, no lock. hyper still talks to its connection
//! through channels, whose wake-ups would only poll the request's own task
//! once more for nothing (some 10% of the router's CPU per request): where
//! the request polls the connection itself right after anyway, they get a
//! waker that does nothing.
//!
//! An idle connection is not polled, so a backend closing it is noticed when
//! it is next taken: [`checkout`] polls it once and skips it if it ended.
//! One that ends anyway between that check and the request is reported as
//! an empty response on a reused connection, which the proxy retries on a
//! new connection.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::task::coop::unconstrained;
use tokio::time::Instant;

use crate::body::Reclaim;
use crate::connector::{self, ConnStats, Counted};
use crate::request_body::ClientBody;

/// The body sent to a backend: the client's own, or a new empty one for
/// resending a bodiless request (whose original was handed to hyper and may
/// be gone).
pub(crate) type UpstreamBody = Either<Reclaim<ClientBody>, Empty<Bytes>>;

type Conn = http1::Connection<TokioIo<Counted>, UpstreamBody>;

/// How the pool keeps connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolConfig {
    pub max_idle_per_backend: usize,
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
}

/// One connection to a backend.
pub(crate) struct BackendConn {
    key: SocketAddr,
    sender: http1::SendRequest<UpstreamBody>,
    conn: Pin<Box<Conn>>,
    stats: Arc<ConnStats>,
    idle_since: Instant,
}

thread_local! {
    /// Idle connections by backend address, most recently used last.
    static IDLE: RefCell<Idle> = RefCell::new(Idle::default());
}

#[derive(Default)]
struct Idle {
    by_backend: HashMap<SocketAddr, Vec<BackendConn>>,
    swept: Option<Instant>,
}

/// How often a thread's whole pool is checked for connections that timed
/// out or that their backend closed (which would otherwise hold a file
/// descriptor in CLOSE_WAIT until that backend is next used).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl Idle {
    fn sweep(&mut self, now: Instant, idle_timeout: Duration) {
        if self
            .swept
            .is_some_and(|t| now.duration_since(t) < SWEEP_EVERY)
        {
            return;
        }
        self.swept = Some(now);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        self.by_backend.retain(|_, list| {
            list.retain_mut(|c| {
                now.duration_since(c.idle_since) <= idle_timeout && c.alive(&mut cx)
            });
            !list.is_empty()
        });
    }
}

/// An idle connection to `addr` that is still open, or a new one.
/// `fresh` never takes an idle one.
pub(crate) async fn checkout(
    addr: SocketAddr,
    fresh: bool,
    config: &PoolConfig,
) -> io::Result<BackendConn> {
    if !fresh {
        while let Some(mut c) = take_idle(addr, config.idle_timeout) {
            // A waker that does nothing: the connection still holds the
            // waker of the last task that used it, and the request about
            // to be handed to it would wake that task for nothing. `send`
            // polls it with the real one first thing.
            if c.alive(&mut Context::from_waker(Waker::noop())) {
                return Ok(c);
            }
        }
    }
    let io = connector::connect(addr, config.connect_timeout).await?;
    let stats = io.stats();
    let (sender, conn) = http1::Builder::new()
        // Heads are small and written with the body in one syscall either
        // way; writev keeps a body's buffers from being copied.
        .writev(true)
        .handshake(TokioIo::new(io))
        .await
        .map_err(io::Error::other)?;
    Ok(BackendConn {
        key: addr,
        sender,
        conn: Box::pin(conn),
        stats,
        idle_since: Instant::now(),
    })
}

/// The most recently used idle connection to `addr`, dropping the ones
/// that waited longer than `idle_timeout` (the oldest, at the bottom).
fn take_idle(addr: SocketAddr, idle_timeout: Duration) -> Option<BackendConn> {
    IDLE.try_with(|idle| {
        let mut idle = idle.borrow_mut();
        let now = Instant::now();
        idle.sweep(now, idle_timeout);
        let list = idle.by_backend.get_mut(&addr)?;
        let stale = list
            .iter()
            .take_while(|c| now.duration_since(c.idle_since) > idle_timeout)
            .count();
        list.drain(..stale);
        list.pop()
    })
    .ok()
    .flatten()
}

impl BackendConn {
    /// Whether the connection can take a request: polls it once (reading
    /// a close the backend sent while it was idle) and asks it.
    fn alive(&mut self, cx: &mut Context<'_>) -> bool {
        if self.conn.as_mut().poll(cx).is_ready() {
            return false;
        }
        matches!(self.sender.poll_ready(cx), Poll::Ready(Ok(())))
    }

    /// Back to this thread's pool, if it has room.
    fn put_back(mut self, max_idle: usize) {
        if self.sender.is_closed() {
            return;
        }
        self.idle_since = Instant::now();
        // `try_with`: a body dropped while its thread shuts down finds the
        // pool gone, and the connection simply closes.
        let _ = IDLE.try_with(|idle| {
            let mut idle = idle.borrow_mut();
            let list = idle.by_backend.entry(self.key).or_default();
            if list.len() < max_idle {
                list.push(self);
            }
        });
    }
}

/// Sends `req` on `c`, driving the connection until the response head is
/// in. On success the response body keeps the connection ([`Driven`]) and
/// returns it to the pool when it ends.
pub(crate) async fn send(
    mut c: BackendConn,
    req: Request<UpstreamBody>,
    max_idle: usize,
) -> Result<Response<Driven>, (hyper::Error, Arc<ConnStats>)> {
    // The response can only come from polling the connection, which is
    // done right before the response in every poll below: its own waker
    // would only wake this task once more for nothing (hyper answers
    // through a channel). Unconstrained, so the runtime's budget never
    // leaves it pending with a wake-up sent nowhere.
    let mut response = std::pin::pin!(unconstrained(c.sender.send_request(req)));
    let mut conn_done: Option<hyper::Error> = None;
    let mut conn_ended = false;
    let result = poll_fn(|cx| {
        if !conn_ended {
            match c.conn.as_mut().poll(cx) {
                Poll::Pending => {}
                Poll::Ready(Ok(())) => conn_ended = true,
                Poll::Ready(Err(e)) => {
                    conn_ended = true;
                    conn_done = Some(e);
                }
            }
        }
        // Once the connection has ended only the response's own waker is
        // left to wake this task.
        let noop = &mut Context::from_waker(Waker::noop());
        match response.as_mut().poll(if conn_ended { cx } else { noop }) {
            Poll::Ready(r) => Poll::Ready(r),
            // The connection is gone and took the request with it; hyper
            // answers the request's future with its error, but in case it
            // has not yet, report the connection's.
            Poll::Pending if conn_ended => match conn_done.take() {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            },
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    match result {
        Ok(resp) => {
            let reusable = !conn_ended;
            Ok(resp.map(|body| Driven {
                body,
                conn: reusable.then_some(c),
                max_idle,
            }))
        }
        Err(e) => Err((e, Arc::clone(&c.stats))),
    }
}

/// A response body that drives its connection while it is read, and puts
/// the connection back in the pool when it ends. A body dropped before its
/// end closes the connection: what is left of the response would have to be
/// read first.
pub(crate) struct Driven {
    body: Incoming,
    conn: Option<BackendConn>,
    max_idle: usize,
}

impl Driven {
    /// The body has ended: the connection goes back to the pool, after one
    /// poll that lets it see the end of the message (so it is ready for the
    /// next request when taken).
    fn finish(&mut self, cx: &mut Context<'_>) {
        if let Some(mut c) = self.conn.take() {
            if c.conn.as_mut().poll(cx).is_pending() {
                c.put_back(self.max_idle);
            }
        }
    }
}

impl Drop for Driven {
    fn drop(&mut self) {
        // hyper does not read a body that says it is empty (a 204, a
        // response to HEAD, `Content-Length: 0`): it is over all the same.
        if self.conn.is_some() && self.body.is_end_stream() {
            self.finish(&mut Context::from_waker(std::task::Waker::noop()));
        }
    }
}

impl HttpBody for Driven {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Some(c) = this.conn.as_mut() {
            if c.conn.as_mut().poll(cx).is_ready() {
                // Closed or failed: the body reports what it lost.
                this.conn = None;
            }
        }
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            this.finish(cx);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
