//! [`ClientBody`]: a client's request body on its way to a backend, cut
//! when it grows past the app's `max_body` or stalls past the body read
//! timeout.
//!
//! The body streams through untouched until then; when it is cut, the
//! upstream connection is aborted (the backend sees an incomplete body, never
//! a shorter "complete" one) and [`BodyFault`] tells the proxy to answer
//! `413` or `408` rather than blaming the backend.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use thiserror::Error;
use tokio::time::{Instant, Sleep};

use crate::body::BoxError;

/// Why a client body was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub(crate) enum Cut {
    #[error("request body larger than {0} bytes")]
    TooLarge(u64),
    #[error("request body stalled for {0:?}")]
    Stalled(Duration),
}

/// Shared between a [`ClientBody`] and the request handler: whether, and
/// why, the body was cut.
#[derive(Debug, Default)]
pub(crate) struct BodyFault(AtomicU8);

const TOO_LARGE: u8 = 1;
const STALLED: u8 = 2;

impl BodyFault {
    /// The body grew past its limit.
    pub(crate) fn too_large(&self) -> bool {
        self.0.load(Ordering::Acquire) == TOO_LARGE
    }

    /// The body stalled past the read timeout.
    pub(crate) fn stalled(&self) -> bool {
        self.0.load(Ordering::Acquire) == STALLED
    }

    fn set(&self, cut: Cut) {
        let v = match cut {
            Cut::TooLarge(_) => TOO_LARGE,
            Cut::Stalled(_) => STALLED,
        };
        self.0.store(v, Ordering::Release);
    }
}

/// The client's body, capped at `max` bytes, with at most `idle` between
/// two frames.
pub(crate) struct ClientBody {
    inner: Incoming,
    seen: u64,
    max: u64,
    idle: Duration,
    /// Created the first time the body is pending, so a body that arrives
    /// at once (the common case) never touches the timer; re-armed after
    /// each frame.
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
    fault: Arc<BodyFault>,
}

impl ClientBody {
    pub(crate) fn new(inner: Incoming, max: u64, idle: Duration, fault: Arc<BodyFault>) -> Self {
        Self {
            inner,
            seen: 0,
            max,
            idle,
            timer: None,
            armed: false,
            fault,
        }
    }

    fn cut(&mut self, cut: Cut) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.fault.set(cut);
        Poll::Ready(Some(Err(Box::new(cut))))
    }
}

impl HttpBody for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                self.armed = false;
                if let Some(data) = frame.data_ref() {
                    self.seen += data.len() as u64;
                    if self.seen > self.max {
                        let max = self.max;
                        return self.cut(Cut::TooLarge(max));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = Instant::now() + self.idle;
                let armed = std::mem::replace(&mut self.armed, true);
                let timer = match &mut self.timer {
                    Some(t) => {
                        if !armed {
                            t.as_mut().reset(deadline);
                        }
                        t
                    }
                    None => self
                        .timer
                        .insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        let idle = self.idle;
                        self.cut(Cut::Stalled(idle))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
