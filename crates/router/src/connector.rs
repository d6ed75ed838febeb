//! Backend connections: TCP connect, and what each connection learns about
//! the requests it carries.
//!
//! hyper reports a backend that took a request and then closed or reset the
//! connection as "connection closed before message completed" or an I/O
//! error — the same errors it reports when the connection dies halfway
//! through a response head. Only the first is a response that never started,
//! which a bodiless idempotent request may be sent again for (HAProxy's
//! `retry-on empty-response`). So every connection is wrapped in
//! [`Counted`], which counts the bytes read since the current request began
//! to be written and how many requests the connection has carried; the
//! request path reads them ([`ConnStats`]) when a send fails.
//!
//! The counters are exact because an HTTP/1.1 client connection alternates:
//! hyper writes a request, reads its whole response, and only then (back
//! from the pool) writes the next. The first write after a read therefore
//! starts a new request. Pipelining, which would break this, is not used.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};

/// Opens a TCP connection to `addr` within `timeout`: no Nagle delay (heads
/// and short bodies must go out at once), keep-alive probes so a backend
/// host that vanished is noticed on idle pooled connections.
pub(crate) async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Counted> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_keepalive(true)?;
    let stream = tokio::time::timeout(timeout, socket.connect(addr))
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {timeout:?}"),
            )
        })??;
    stream.set_nodelay(true)?;
    Ok(Counted::new(stream))
}

/// What one connection has seen, shared between the connection (which
/// counts) and whoever looks at a failed request (which reads).
///
/// Relaxed ordering is enough: the connection is driven by the request's own
/// task, which reads the counts after the send failed.
#[derive(Debug, Default)]
pub(crate) struct ConnStats {
    /// Bytes read since the current request began to be written.
    response_bytes: AtomicU64,
    /// Requests begun on this connection.
    requests: AtomicU32,
}

impl ConnStats {
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
    pub(crate) fn new(stream: TcpStream) -> Self {
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

impl Counted {
    /// The counters, for reading after a failed send.
    pub(crate) fn stats(&self) -> Arc<ConnStats> {
        Arc::clone(&self.stats)
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
        let stats = conn.stats();
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
