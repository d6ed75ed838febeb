//! Body types: the one response body type the router answers with, and two
//! wrappers that let bodies stream through untouched while the router keeps
//! track of them.
//!
//! - `Tracked` counts the bytes of a response and runs a callback when it
//!   ends (or the client goes away): the access log and the per-backend load
//!   counters are settled there, not when the head is sent.
//! - `Reclaim` hands a request body back if the upstream client dropped it
//!   without reading a byte, so a request whose connect failed can be sent to
//!   another backend without buffering its body up front.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use tokio::sync::oneshot;

/// Any error of a body stream.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What every response of the router carries: proxied, file or page.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A complete body from bytes.
pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|e| match e {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|e| match e {}).boxed_unsync()
}

/// A callback run once with the number of body bytes passed through.
pub(crate) type OnDone = Box<dyn FnOnce(u64) + Send>;

/// A body that counts its bytes and reports them once it is finished or
/// dropped, whichever comes first.
pub(crate) struct Tracked<B> {
    inner: B,
    bytes: u64,
    on_done: Option<OnDone>,
}

impl<B> Tracked<B> {
    /// Wraps `inner`; `on_done` runs exactly once.
    pub(crate) fn new(inner: B, on_done: OnDone) -> Self {
        Self {
            inner,
            bytes: 0,
            on_done: Some(on_done),
        }
    }

    fn finish(&mut self) {
        if let Some(f) = self.on_done.take() {
            f(self.bytes);
        }
    }
}

impl<B> HttpBody for Tracked<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A request body that returns itself through a channel if it is dropped
/// before it was ever polled — that is, before any of it can have been sent.
pub(crate) struct Reclaim<B> {
    inner: Option<B>,
    polled: bool,
    back: Option<oneshot::Sender<B>>,
}

impl<B> Reclaim<B> {
    /// Wraps `inner`; the receiver gets it back if it goes unread.
    pub(crate) fn new(inner: B) -> (Self, oneshot::Receiver<B>) {
        let (tx, rx) = oneshot::channel();
        let body = Self {
            inner: Some(inner),
            polled: false,
            back: Some(tx),
        };
        (body, rx)
    }
}

impl<B> HttpBody for Reclaim<B>
where
    B: HttpBody + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.polled = true;
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

impl<B> Drop for Reclaim<B> {
    fn drop(&mut self) {
        if self.polled {
            return;
        }
        if let (Some(inner), Some(back)) = (self.inner.take(), self.back.take()) {
            // The receiver is gone when no retry is wanted; nothing to do then.
            let _ = back.send(inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn tracked_counts_bytes_once() {
        let seen = Arc::new(AtomicU64::new(u64::MAX));
        let s = seen.clone();
        let body = Tracked::new(
            full("hello"),
            Box::new(move |n| s.store(n, Ordering::SeqCst)),
        );
        let collected = body.collect().await.map(|c| c.to_bytes());
        assert_eq!(collected.ok().as_deref(), Some(&b"hello"[..]));
        assert_eq!(seen.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn reclaim_returns_an_unread_body_only() {
        let (body, rx) = Reclaim::new(full("data"));
        drop(body);
        assert!(rx.await.is_ok(), "an unread body comes back");

        let (mut body, rx) = Reclaim::new(full("data"));
        let _ = body.frame().await;
        drop(body);
        assert!(rx.await.is_err(), "a body that was read must not be resent");
    }
}
