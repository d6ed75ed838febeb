//! WebSocket sessions after their `101`: bytes copied both ways between the
//! client and the backend, with flow control on both sides (a bounded
//! buffer per direction, read again only once written), until
//!
//! - either side closes (the close handshake passes through like any other
//!   frames; a TCP close is passed on, and the other side then has
//!   [`CLOSE_WITHIN`] to close too);
//! - no byte went either way for `websocket_idle_timeout`;
//! - the backend's instance left the route table, or the router is shutting
//!   down: the session gets `websocket_grace` to end by itself.
//!
//! In the last two cases the router ends the session itself, the way a
//! server going away should: at the next frame boundary of each direction
//! ([`frames`]) it sends a close frame `1001` to the client and a masked one
//! to the backend, waits (at most [`CLOSE_WITHIN`]) for each side's own
//! close frame, then closes both connections. Browsers see a clean close
//! with "going away" and reconnect, landing on an instance still in the
//! table.
//!
//! A session is logged when it ends ([`crate::access_log`]: status 101,
//! bytes both ways, duration, how it ended) and counted per app while open
//! ([`crate::stats`]) and per instance ([`crate::departures`]: a router
//! following a control plane reports those of instances that left, so
//! their drain waits for them), and against the connection limits
//! ([`crate::limits`]) like the connection it came from. [`Tunnels`] keeps
//! every open session of a router so its shutdown can give them their
//! grace.

mod frames;

use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use berth_client::logs::LogShipper;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access_log::Entry;
use crate::departures::Departure;
use crate::limits::Held;
use crate::stats::TunnelGauge;
use crate::table::LoadGuard;
use frames::{close_frame, Frames};

/// Bytes buffered per direction. A reader is read again only once this
/// much has been written on, so a slow side slows the other (TCP's own flow
/// control does the rest) and a tunnel holds at most twice this.
const BUF_BYTES: usize = 16 * 1024;

/// How long a side has to answer the router's close frame, or to close its
/// connection after the other side closed its own.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

/// The close code a server going away sends (RFC 6455 §7.4.1).
const GOING_AWAY: u16 = 1001;

/// A router's open tunnels, for its shutdown.
#[derive(Default)]
pub(crate) struct Tunnels {
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// What a tunnel settles when it ends, and its limits.
pub(crate) struct Session {
    /// The access line, written when the session ends.
    pub entry: Option<Entry>,
    pub log: Option<LogShipper>,
    /// Counts the session on its backend (least-conn sees open sessions).
    pub load: LoadGuard,
    /// Counts the session among its app's open ones.
    pub gauge: TunnelGauge,
    /// The client connection's place in the connection limits.
    pub conn: Option<Held>,
    /// The backend's instance: cancelled when it leaves the route table,
    /// and counting its open sessions.
    pub removed: Departure,
    pub idle_timeout: Duration,
    pub grace: Duration,
}

/// How a session ended, for its log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// A side closed (after the close handshake, or just its connection).
    Closed,
    /// Nothing went either way for the idle timeout.
    Idle,
    /// The instance left the route table and the grace ran out.
    Removed,
    /// The router shut down and the grace ran out.
    Shutdown,
    /// A side's connection failed.
    Error,
}

impl Ended {
    fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Idle => "idle",
            Self::Removed => "removed",
            Self::Shutdown => "shutdown",
            Self::Error => "error",
        }
    }

    /// The reason in the router's close frames.
    fn reason(self) -> &'static str {
        match self {
            Self::Idle => "idle timeout",
            Self::Removed => "instance going away",
            _ => "router going away",
        }
    }
}

impl Tunnels {
    /// Runs the session that joins `client` and `backend` once both are
    /// upgraded.
    pub(crate) fn open(&self, client: OnUpgrade, backend: OnUpgrade, session: Session) {
        let shutdown = self.shutdown.clone();
        let Session {
            entry,
            log,
            load,
            gauge,
            conn,
            removed,
            idle_timeout,
            grace,
        } = session;
        let counted = removed.count_session(grace);
        let ends = Ends {
            removed: removed.token().clone(),
            shutdown,
            idle_timeout,
            grace,
        };
        self.tasks.spawn(async move {
            let meter = Meter::new(Instant::now());
            let (ended, error) = match tokio::try_join!(client, backend) {
                Ok((client, backend)) => {
                    relay(TokioIo::new(client), TokioIo::new(backend), &ends, &meter).await
                }
                Err(e) => (Ended::Error, Some(format!("upgrade failed: {e}"))),
            };
            drop((load, gauge, conn, counted));
            if let (Some(mut entry), Some(log)) = (entry, log) {
                entry.error = error;
                entry.send_tunnel(
                    &log,
                    meter.down.load(Ordering::Relaxed),
                    meter.up.load(Ordering::Relaxed),
                    ended.as_str(),
                );
            }
        });
    }

    /// Gives every open session (and any opened from now on) the grace,
    /// then closes it; returns once all have ended.
    pub(crate) async fn close_all(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// What ends a session besides its sides.
struct Ends {
    /// The instance left the route table.
    removed: CancellationToken,
    /// The router is shutting down.
    shutdown: CancellationToken,
    idle_timeout: Duration,
    grace: Duration,
}

/// Bytes and the time of the last one, both ways.
struct Meter {
    started: Instant,
    /// Milliseconds from `started` to the last byte either way.
    last: AtomicU64,
    /// Client to backend.
    up: AtomicU64,
    /// Backend to client.
    down: AtomicU64,
}

impl Meter {
    fn new(started: Instant) -> Self {
        Self {
            started,
            last: AtomicU64::new(0),
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
        }
    }

    fn moved(&self, bytes: usize, up: bool) {
        let counter = if up { &self.up } else { &self.down };
        counter.fetch_add(bytes as u64, Ordering::Relaxed);
        let ms = self.started.elapsed().as_millis() as u64;
        self.last.store(ms, Ordering::Relaxed);
    }

    fn idle_since(&self) -> Instant {
        self.started + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }
}

/// Copies both ways until the session ends (see the module docs).
async fn relay<C, B>(client: C, backend: B, ends: &Ends, meter: &Meter) -> (Ended, Option<String>)
where
    C: AsyncRead + AsyncWrite,
    B: AsyncRead + AsyncWrite,
{
    let (client_rx, client_tx) = tokio::io::split(client);
    let (backend_rx, backend_tx) = tokio::io::split(backend);
    let closing = Closing::default();
    let mut up = pin!(pump(client_rx, backend_tx, Side::Backend, meter, &closing));
    let mut down = pin!(pump(backend_rx, client_tx, Side::Client, meter, &closing));
    let (mut up_done, mut down_done) = (false, false);
    // Set once the session is to end: by then every side must be done.
    let mut deadline: Option<Instant> = None;
    let mut grace: Option<(Instant, Ended)> = None;
    let mut ended = Ended::Closed;
    let mut error = None;
    loop {
        let idle_at = meter.idle_since() + ends.idle_timeout;
        tokio::select! {
            r = &mut up, if !up_done => {
                up_done = true;
                if let Err(e) = r {
                    error = Some(format!("client connection: {e}"));
                }
            }
            r = &mut down, if !down_done => {
                down_done = true;
                if let Err(e) = r {
                    error = Some(format!("backend connection: {e}"));
                }
            }
            () = tokio::time::sleep_until(idle_at), if !closing.started() => {
                // Bytes may have moved while the timer ran: look again.
                if meter.idle_since() + ends.idle_timeout <= Instant::now() {
                    ended = Ended::Idle;
                    closing.start(Ended::Idle);
                    deadline = Some(Instant::now() + CLOSE_WITHIN);
                }
            }
            () = ends.removed.cancelled(), if grace.is_none() => {
                grace = Some((Instant::now() + ends.grace, Ended::Removed));
            }
            () = ends.shutdown.cancelled(), if grace.is_none() => {
                grace = Some((Instant::now() + ends.grace, Ended::Shutdown));
            }
            () = sleep_until_some(grace.map(|g| g.0)), if grace.is_some() && !closing.started() => {
                if let Some((_, why)) = grace {
                    ended = why;
                    closing.start(why);
                    deadline = Some(Instant::now() + CLOSE_WITHIN);
                }
            }
            () = sleep_until_some(deadline), if deadline.is_some() => break,
        }
        if up_done && down_done {
            break;
        }
        if (up_done || down_done) && deadline.is_none() {
            if error.is_some() && !closing.started() {
                // A broken connection carries nothing more: the other
                // side's goes too.
                ended = Ended::Error;
                break;
            }
            deadline = Some(Instant::now() + CLOSE_WITHIN);
        }
    }
    (ended, error)
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Which side a pump writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Backend,
}

/// Tells both pumps that the router is ending the session, and why.
#[derive(Default)]
struct Closing {
    token: CancellationToken,
    why: std::sync::OnceLock<Ended>,
}

impl Closing {
    fn start(&self, why: Ended) {
        let _ = self.why.set(why);
        self.token.cancel();
    }

    fn started(&self) -> bool {
        self.token.is_cancelled()
    }

    fn reason(&self) -> &'static str {
        self.why.get().map_or("going away", |w| w.reason())
    }

    fn wait(&self) -> impl Future<Output = ()> + '_ {
        self.token.cancelled()
    }
}

/// Copies `from` to `to` (towards `side`) until `from` ends, passing the
/// end on; or, once `closing` starts, up to the next frame boundary, then
/// sends the router's close frame to `side` and waits for `from`'s own
/// close frame.
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    side: Side,
    meter: &Meter,
    closing: &Closing,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF_BYTES];
    let mut frames = Frames::default();
    // A close frame went from `from` to `to`: the two are in their own
    // close handshake, which the router must not disturb with a second.
    let mut close_passed = false;
    let up = side == Side::Backend;
    let rest = loop {
        let n = tokio::select! {
            biased;
            () = closing.wait(), if frames.at_boundary() => break 0..0,
            r = from.read(&mut buf) => r?,
        };
        if n == 0 {
            // The side closed its connection: tell the other.
            to.shutdown().await?;
            return Ok(());
        }
        let (send, rest) = if closing.started() {
            let k = frames.step(&buf[..n]);
            close_passed |= frames.ended_close();
            (k, k..n)
        } else {
            close_passed |= frames.ends_close(&buf[..n]);
            (n, n..n)
        };
        to.write_all(&buf[..send]).await?;
        meter.moved(send, up);
        if closing.started() && frames.at_boundary() {
            break rest;
        }
    };
    if !close_passed {
        to.write_all(&close_frame(GOING_AWAY, closing.reason(), up))
            .await?;
        to.flush().await?;
        // What `from` sent past the boundary is dropped: its side hears
        // from the router now. Among it, or still to come, is its close
        // frame.
        if !frames.ends_close(&buf[rest]) {
            loop {
                let n = from.read(&mut buf).await?;
                if n == 0 || frames.ends_close(&buf[..n]) {
                    break;
                }
            }
        }
    }
    to.shutdown().await
}

#[cfg(test)]
mod tests;
