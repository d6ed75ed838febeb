//! The flood budget of an HTTP/2 connection: frames that make the router
//! work without carrying a request — PING, SETTINGS, WINDOW_UPDATE,
//! PRIORITY, RST_STREAM, empty DATA, empty HEADERS/CONTINUATION, unknown
//! types (CVE-2019-9512, -9515, -9518 and their kin) — are counted per
//! connection, and a connection that sends too many is closed.
//!
//! hyper and h2 expose no frame counters, so [`Guarded`] sits between
//! hyper and the TLS stream and follows the frames both ways
//! ([`super::frames`]): headers only, payloads skipped, nothing buffered.
//!
//! The rule is a leaky bucket, as nghttp2's glitch limiter and HAProxy's
//! `tune.h2.fe.glitches-threshold`: each such frame adds a point; what a
//! busy client legitimately sends alongside real work is paid back — each
//! request (a complete header block) [`REQUEST_CREDIT`] points, each DATA
//! frame with data one, each DATA frame the router sends
//! [`SENT_DATA_CREDIT`] (the client's WINDOW_UPDATEs follow the router's
//! DATA) — and a tenth of the limit leaks away each second. Past the limit
//! ([`crate::RouterConfig::http2_flood_limit`]) the router sends GOAWAY
//! `ENHANCE_YOUR_CALM` when it can (it never cuts a frame of its own in
//! two), the read side fails, and hyper ends the connection. The score
//! never goes below zero: credit cannot be saved up for a later burst.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::frames::{flag, kind, Follower, Frame};
use crate::stats::RouterStats;

/// Points a request pays back: browsers send a few control frames per
/// request at most (a WINDOW_UPDATE, an RST_STREAM when a load is
/// cancelled, PRIORITY from older Firefox), and a request costs the router
/// far more than the frames it pays for.
pub(crate) const REQUEST_CREDIT: u32 = 8;

/// Points a DATA frame sent by the router pays back: a client acknowledges
/// received data with up to two WINDOW_UPDATEs (stream and connection).
pub(crate) const SENT_DATA_CREDIT: u32 = 2;

/// GOAWAY's error code for a peer that generates excessive load.
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// The frames that cost a point, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ping,
    Settings,
    EmptyData,
    EmptyHeaders,
    WindowUpdate,
    Priority,
    RstStream,
    Unknown,
}

const KINDS: usize = 8;

const NAMES: [&str; KINDS] = [
    "PING",
    "SETTINGS",
    "empty DATA",
    "empty HEADERS/CONTINUATION",
    "WINDOW_UPDATE",
    "PRIORITY",
    "RST_STREAM",
    "unknown-type",
];

/// What a frame from the client does to the budget.
#[derive(Debug, PartialEq, Eq)]
enum Cost {
    /// Work for the router, and no request.
    Point(Kind),
    /// A complete header block: a request (or its trailers).
    Request,
    /// DATA with data in it.
    Data,
    /// Neither: an answer to the router (ACKs), the end of a body, a part
    /// of a header block, or what h2 refuses on its own.
    Free,
}

/// One connection's score against its limit.
#[derive(Debug)]
pub(crate) struct Budget {
    /// 0: not counted.
    limit: u32,
    /// Points that leak away per second.
    leak: u32,
    score: u32,
    /// When the last point leaked.
    since: Instant,
    /// Point frames received, by kind.
    counts: [u32; KINDS],
    /// Complete header blocks received.
    requests: u32,
}

impl Budget {
    pub(crate) fn new(limit: u32, now: Instant) -> Self {
        Self {
            limit,
            leak: (limit / 10).max(1),
            score: 0,
            since: now,
            counts: [0; KINDS],
            requests: 0,
        }
    }

    pub(crate) fn is_off(&self) -> bool {
        self.limit == 0
    }

    /// Lets the points of the time since the last call leak away.
    pub(crate) fn leak(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.since);
        let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let leaked = ms.saturating_mul(u64::from(self.leak)) / 1000;
        if leaked == 0 {
            // Fractions of a point wait for the next call.
            return;
        }
        self.score = u32::try_from(u64::from(self.score).saturating_sub(leaked)).unwrap_or(0);
        // Only the time that made whole points is used up.
        let used = Duration::from_millis(leaked.saturating_mul(1000) / u64::from(self.leak));
        self.since = (self.since + used).min(now);
    }

    /// Counts a frame from the client; true once the limit is passed.
    pub(crate) fn received(&mut self, frame: &Frame) -> bool {
        match cost(frame) {
            Cost::Point(kind) => {
                self.counts[kind as usize] = self.counts[kind as usize].saturating_add(1);
                self.score = self.score.saturating_add(1);
            }
            Cost::Request => {
                self.requests = self.requests.saturating_add(1);
                self.score = self.score.saturating_sub(REQUEST_CREDIT);
            }
            Cost::Data => self.score = self.score.saturating_sub(1),
            Cost::Free => {}
        }
        !self.is_off() && self.score > self.limit
    }

    /// Counts a frame the router sent.
    pub(crate) fn sent(&mut self, frame: &Frame) {
        if frame.kind == kind::DATA && frame.len > 0 {
            self.score = self.score.saturating_sub(SENT_DATA_CREDIT);
        }
    }

    /// What was sent, for the log: "1001 PING, 3 SETTINGS".
    fn tally(&self) -> String {
        let parts: Vec<String> = self
            .counts
            .iter()
            .zip(NAMES)
            .filter(|(n, _)| **n > 0)
            .map(|(n, name)| format!("{n} {name}"))
            .collect();
        parts.join(", ")
    }
}

/// What a frame from the client costs.
fn cost(f: &Frame) -> Cost {
    let has = |bit: u8| f.flags & bit != 0;
    match f.kind {
        kind::DATA if f.content > 0 => Cost::Data,
        kind::DATA if has(flag::END_STREAM) => Cost::Free,
        kind::DATA => Cost::Point(Kind::EmptyData),
        kind::HEADERS if f.content == 0 => Cost::Point(Kind::EmptyHeaders),
        kind::HEADERS | kind::CONTINUATION if has(flag::END_HEADERS) => Cost::Request,
        kind::HEADERS => Cost::Free,
        kind::CONTINUATION if f.content == 0 => Cost::Point(Kind::EmptyHeaders),
        kind::CONTINUATION => Cost::Free,
        kind::PRIORITY => Cost::Point(Kind::Priority),
        kind::RST_STREAM => Cost::Point(Kind::RstStream),
        kind::SETTINGS | kind::PING if has(flag::ACK) => Cost::Free,
        kind::SETTINGS => Cost::Point(Kind::Settings),
        kind::PING => Cost::Point(Kind::Ping),
        kind::WINDOW_UPDATE => Cost::Point(Kind::WindowUpdate),
        // h2 ends the connection for a pushed stream or on GOAWAY.
        kind::PUSH_PROMISE | kind::GOAWAY => Cost::Free,
        _ => Cost::Point(Kind::Unknown),
    }
}

/// The client's TLS stream as hyper sees it, with the frames both ways
/// counted against the connection's [`Budget`].
pub(crate) struct Guarded<S> {
    io: S,
    inbound: Follower,
    outbound: Follower,
    budget: Budget,
    /// Highest stream a request came on, for GOAWAY.
    last_stream: u32,
    flooded: bool,
    peer: SocketAddr,
    stats: Arc<RouterStats>,
}

impl<S> Guarded<S> {
    pub(crate) fn new(io: S, limit: u32, peer: SocketAddr, stats: Arc<RouterStats>) -> Self {
        Self {
            io,
            inbound: Follower::client(),
            outbound: Follower::server(),
            budget: Budget::new(limit, Instant::now()),
            last_stream: 0,
            flooded: false,
            peer,
            stats,
        }
    }
}

impl<S: AsyncWrite + Unpin> Guarded<S> {
    /// The limit was passed: GOAWAY if the router is between two frames of
    /// its own (best effort — a client that does not read will not get it),
    /// then the read side fails from now on.
    fn flood(&mut self, cx: &mut Context<'_>) -> io::Error {
        self.flooded = true;
        self.stats.http2_flood();
        tracing::debug!(
            peer = %self.peer,
            "HTTP/2 flood: {} frames without a request after {} requests ({}), closing",
            self.budget.counts.iter().sum::<u32>(),
            self.budget.requests,
            self.budget.tally(),
        );
        if self.outbound.at_boundary() {
            let goaway = goaway(self.last_stream, ENHANCE_YOUR_CALM);
            if let Poll::Ready(Ok(n)) = Pin::new(&mut self.io).poll_write(cx, &goaway) {
                self.outbound.feed(&goaway[..n], |_| {});
                let _ = Pin::new(&mut self.io).poll_flush(cx);
            }
        }
        flood_error()
    }

    /// Follows bytes the router wrote.
    fn wrote(&mut self, written: &[u8]) {
        if self.budget.is_off() {
            return;
        }
        let budget = &mut self.budget;
        self.outbound.feed(written, |f| budget.sent(&f));
    }
}

fn flood_error() -> io::Error {
    io::Error::other("HTTP/2 flood: too many frames without a request")
}

/// A GOAWAY frame (RFC 9113 §6.8) without debug data.
fn goaway(last_stream: u32, code: u32) -> [u8; 17] {
    let mut f = [0u8; 17];
    f[2] = 8;
    f[3] = kind::GOAWAY;
    f[9..13].copy_from_slice(&last_stream.to_be_bytes());
    f[13..17].copy_from_slice(&code.to_be_bytes());
    f
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.flooded {
            return Poll::Ready(Err(flood_error()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        if this.budget.is_off() {
            return Poll::Ready(Ok(()));
        }
        this.budget.leak(Instant::now());
        let (budget, last_stream) = (&mut this.budget, &mut this.last_stream);
        let mut over = false;
        this.inbound.feed(&buf.filled()[before..], |f| {
            if f.kind == kind::HEADERS {
                *last_stream = (*last_stream).max(f.stream);
            }
            over |= budget.received(&f);
        });
        if over {
            return Poll::Ready(Err(this.flood(cx)));
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.io).poll_write(cx, buf))?;
        self.wrote(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, bufs))?;
        let mut left = n;
        for b in bufs {
            if left == 0 {
                break;
            }
            let take = left.min(b.len());
            self.wrote(&b[..take]);
            left -= take;
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(kind: u8, flags: u8, len: u32) -> Frame {
        Frame {
            kind,
            flags,
            stream: 1,
            len,
            content: len,
        }
    }

    fn ping() -> Frame {
        f(kind::PING, 0, 8)
    }

    fn request() -> Frame {
        f(kind::HEADERS, flag::END_HEADERS | flag::END_STREAM, 40)
    }

    #[test]
    fn what_costs_a_point() {
        for frame in [
            ping(),
            f(kind::SETTINGS, 0, 6),
            f(kind::SETTINGS, 0, 0),
            f(kind::DATA, 0, 0),
            f(kind::HEADERS, 0, 0),
            f(kind::HEADERS, flag::END_HEADERS, 0),
            f(kind::CONTINUATION, 0, 0),
            f(kind::WINDOW_UPDATE, 0, 4),
            f(kind::PRIORITY, 0, 5),
            f(kind::RST_STREAM, 0, 4),
            f(0x42, 0, 0),
        ] {
            assert!(matches!(cost(&frame), Cost::Point(_)), "{frame:?}");
        }
        for frame in [
            f(kind::PING, flag::ACK, 8),
            f(kind::SETTINGS, flag::ACK, 0),
            f(kind::DATA, flag::END_STREAM, 0),
            f(kind::HEADERS, 0, 100),
            f(kind::CONTINUATION, 0, 100),
            f(kind::GOAWAY, 0, 8),
        ] {
            assert_eq!(cost(&frame), Cost::Free, "{frame:?}");
        }
        assert_eq!(cost(&request()), Cost::Request);
        assert_eq!(
            cost(&f(kind::CONTINUATION, flag::END_HEADERS, 0)),
            Cost::Request
        );
        assert_eq!(cost(&f(kind::DATA, 0, 1)), Cost::Data);
        // Padding alone is not data.
        let padded = Frame {
            content: 0,
            ..f(kind::DATA, flag::PADDED, 200)
        };
        assert_eq!(cost(&padded), Cost::Point(Kind::EmptyData));
    }

    #[test]
    fn a_ping_flood_passes_the_limit() {
        let now = Instant::now();
        let mut b = Budget::new(1000, now);
        for i in 0..1000 {
            assert!(!b.received(&ping()), "cut at {i}");
        }
        assert!(b.received(&ping()));
        assert_eq!(b.tally(), "1001 PING");
    }

    #[test]
    fn requests_pay_for_the_control_frames_around_them() {
        // Many requests, each with a WINDOW_UPDATE, an RST_STREAM, a PING
        // and a SETTINGS: never cut, however many.
        let mut b = Budget::new(100, Instant::now());
        for _ in 0..100_000 {
            assert!(!b.received(&request()));
            for frame in [
                f(kind::WINDOW_UPDATE, 0, 4),
                f(kind::RST_STREAM, 0, 4),
                ping(),
                f(kind::SETTINGS, 0, 6),
            ] {
                assert!(!b.received(&frame));
            }
        }
        assert_eq!(b.requests, 100_000);
    }

    #[test]
    fn credit_is_not_saved_up() {
        let mut b = Budget::new(10, Instant::now());
        for _ in 0..1000 {
            b.received(&request());
        }
        for _ in 0..10 {
            assert!(!b.received(&ping()));
        }
        assert!(b.received(&ping()));
    }

    #[test]
    fn data_the_router_sends_pays_for_window_updates() {
        let mut b = Budget::new(10, Instant::now());
        let update = f(kind::WINDOW_UPDATE, 0, 4);
        for _ in 0..10_000 {
            b.sent(&f(kind::DATA, 0, 16_384));
            assert!(!b.received(&update));
            assert!(!b.received(&update));
        }
        b.sent(&f(kind::DATA, 0, 100));
        // PONGs and empty DATA pay nothing back.
        for _ in 0..1000 {
            b.sent(&f(kind::PING, flag::ACK, 8));
            b.sent(&f(kind::DATA, flag::END_STREAM, 0));
        }
        for _ in 0..10 {
            assert!(!b.received(&update));
        }
        assert!(b.received(&update));
    }

    #[test]
    fn a_tenth_of_the_limit_leaks_away_each_second() {
        let start = Instant::now();
        let mut b = Budget::new(1000, start);
        for _ in 0..1000 {
            b.received(&ping());
        }
        // 100 points a second: 10 ms a point, and fractions are kept.
        for ms in 1..=1000 {
            b.leak(start + Duration::from_millis(ms));
        }
        assert_eq!(b.score, 900);
        b.leak(start + Duration::from_secs(20));
        assert_eq!(b.score, 0);
        // A steady 100 PINGs a second forever is not a flood.
        let mut now = start + Duration::from_secs(20);
        for _ in 0..100_000 {
            now += Duration::from_millis(10);
            b.leak(now);
            assert!(!b.received(&ping()));
        }
    }

    #[test]
    fn a_limit_of_zero_counts_nothing() {
        let mut b = Budget::new(0, Instant::now());
        for _ in 0..100_000 {
            assert!(!b.received(&ping()));
        }
    }

    /// `frames` from a client through [`Guarded`]: what the router's side
    /// read before it failed, and what the client got back.
    async fn through_guard(frames: &[Vec<u8>], limit: u32) -> (io::Result<usize>, Vec<u8>, u64) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let (mut client, server) = tokio::io::duplex(1 << 20);
        let stats = Arc::new(RouterStats::default());
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        let mut guarded = Guarded::new(server, limit, peer, Arc::clone(&stats));
        client
            .write_all(super::super::frames::PREFACE)
            .await
            .expect("write");
        for f in frames {
            client.write_all(f).await.expect("write");
        }
        drop(client.shutdown().await);
        let mut read = 0;
        let mut buf = [0u8; 4096];
        let result = loop {
            match guarded.read(&mut buf).await {
                Ok(0) => break Ok(read),
                Ok(n) => read += n,
                Err(e) => break Err(e),
            }
        };
        drop(guarded);
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.expect("read back");
        (result, back, stats.http2_floods())
    }

    fn wire(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).expect("small");
        let mut out = len.to_be_bytes()[1..].to_vec();
        out.extend([kind, flags]);
        out.extend(stream.to_be_bytes());
        out.extend(payload);
        out
    }

    #[tokio::test]
    async fn a_flooding_client_gets_goaway_and_its_reads_fail() {
        let mut frames = vec![wire(kind::HEADERS, flag::END_HEADERS, 3, b"req")];
        frames.extend((0..20).map(|_| wire(kind::PING, 0, 0, &[0; 8])));
        let (result, back, floods) = through_guard(&frames, 10).await;
        assert_eq!(floods, 1);
        let err = result.expect_err("the read side fails");
        assert!(err.to_string().contains("flood"), "{err}");
        // GOAWAY, ENHANCE_YOUR_CALM, naming the last request's stream.
        assert_eq!(back, goaway(3, ENHANCE_YOUR_CALM));
    }

    #[tokio::test]
    async fn a_client_under_the_limit_is_read_whole() {
        let frames: Vec<_> = (0..10).map(|_| wire(kind::PING, 0, 0, &[0; 8])).collect();
        let (result, back, floods) = through_guard(&frames, 10).await;
        assert_eq!(result.expect("read to the end"), 24 + 10 * 17);
        assert!(back.is_empty());
        assert_eq!(floods, 0);
        // Off: anything goes.
        let frames: Vec<_> = (0..1000).map(|_| wire(kind::PING, 0, 0, &[0; 8])).collect();
        assert!(through_guard(&frames, 0).await.0.is_ok());
    }

    #[test]
    fn goaway_is_well_formed() {
        let g = goaway(7, ENHANCE_YOUR_CALM);
        let mut seen = Vec::new();
        Follower::server().feed(&g, |fr| seen.push(fr));
        assert_eq!(seen.len(), 1);
        assert_eq!(
            (seen[0].kind, seen[0].stream, seen[0].len),
            (kind::GOAWAY, 0, 8)
        );
        assert_eq!(&g[9..], &[0, 0, 0, 7, 0, 0, 0, 0xb]);
    }
}
