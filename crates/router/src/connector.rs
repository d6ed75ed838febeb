//! The TCP connector to backends, and what it learns about each connection.
//!
//! hyper reports a backend that took a request and then closed or reset the
//! connection as "connection closed before message completed" or an I/O
//! error — the same errors it reports when the connection dies halfway
//! through a response head. Only the first is a response that never started,
//! which a bodiless idempotent request may be sent again for (HAProxy's
//! `retry-on empty-response`). So every connection is wrapped in
//! [`Counted`], which counts the bytes read since the current request began
//! to be written and how many requests the connection has carried. hyper-util
//! hands the connection's [`Connected`] back with an error
//! ([`Error::connect_info`](hyper_util::client::legacy::Error::connect_info)),
//! and [`ConnStats::of`] reads the counters from it.
//!
//! The counters are exact because an HTTP/1.1 client connection alternates:
//! hyper writes a request, reads its whole response, and only then (back
//! from the pool) writes the next. The first write after a read therefore
//! starts a new request. Pipelining, which would break this, is not used.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Extensions, Uri};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tower_service::Service;

use crate::body::BoxError;

/// [`HttpConnector`], with every connection wrapped in [`Counted`].
#[derive(Clone)]
pub(crate) struct Connector {
    inner: HttpConnector,
}

impl Connector {
    pub(crate) fn new(inner: HttpConnector) -> Self {
        Self { inner }
    }
}

impl Service<Uri> for Connector {
    type Response = TokioIo<Counted>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            let io = connecting.await?;
            Ok(TokioIo::new(Counted::new(io.into_inner())))
        })
    }
}

/// What one connection has seen, shared between the connection (which
/// counts) and whoever looks at a failed request (which reads).
///
/// Relaxed ordering is enough: the counts are written by the connection's
/// task before it reports an error, and read by the request's task after
/// it received that error through hyper's channel, which orders the two.
#[derive(Debug, Default)]
pub(crate) struct ConnStats {
    /// Bytes read since the current request began to be written.
    response_bytes: AtomicU64,
    /// Requests begun on this connection.
    requests: AtomicU32,
}

/// The handle stored in [`Connected`]'s extras (which must be `Clone`).
#[derive(Clone)]
struct StatsHandle(Arc<ConnStats>);

impl ConnStats {
    /// The counters of the connection `connected` describes, if it is one of
    /// [`Connector`]'s.
    pub(crate) fn of(connected: &Connected) -> Option<Arc<ConnStats>> {
        let mut extensions = Extensions::new();
        connected.get_extras(&mut extensions);
        extensions.get::<StatsHandle>().map(|h| Arc::clone(&h.0))
    }

    /// True when not one byte of a response to the current request arrived.
    pub(crate) fn nothing_received(&self) -> bool {
        self.response_bytes.load(Ordering::Relaxed) == 0
    }

    /// True when the connection carried an earlier request: it came from the
    /// pool rather than being opened for this request.
    pub(crate) fn reused(&self) -> bool {
        self.requests.load(Ordering::Relaxed) > 1
    }
}

/// A backend connection that keeps [`ConnStats`] up to date.
pub(crate) struct Counted {
    stream: TcpStream,
    stats: Arc<ConnStats>,
    /// The last thing done was reading (or nothing yet): the next write
    /// starts a new request.
    between_requests: bool,
}

impl Counted {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            stats: Arc::default(),
            between_requests: true,
        }
    }

    fn wrote(&mut self, n: usize) {
        if n > 0 && self.between_requests {
            self.between_requests = false;
            self.stats.response_bytes.store(0, Ordering::Relaxed);
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Connection for Counted {
    fn connected(&self) -> Connected {
        self.stream
            .connected()
            .extra(StatsHandle(Arc::clone(&self.stats)))
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        if n > 0 {
            this.between_requests = true;
            this.stats
                .response_bytes
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            this.wrote(n);
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            this.wrote(n);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    #[tokio::test]
    async fn counts_response_bytes_per_request() -> io::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut conn = Counted::new(TcpStream::connect(addr).await?);
        let (mut server, _) = listener.accept().await?;
        let stats = ConnStats::of(&conn.connected()).expect("stats in extras");
        let mut buf = [0u8; 16];

        conn.write_all(b"first").await?;
        assert!(stats.nothing_received() && !stats.reused());
        server.write_all(b"answer").await?;
        let n = conn.read(&mut buf).await?;
        assert!(n > 0 && !stats.nothing_received());

        conn.write_all(b"second").await?;
        assert!(stats.nothing_received(), "a new request starts from zero");
        assert!(stats.reused());
        Ok(())
    }
}
