//! Log shipping: agents and routers hand lines to a [`LogShipper`], which
//! batches them to the control plane without ever blocking the caller.

use std::time::Duration;

use berth_model::NewLogLine;
use tokio::sync::{mpsc, oneshot};

use crate::Client;

/// Lines buffered before new ones are dropped; a slow or absent server must
/// not grow memory without bound or stall request handling.
const BUFFER: usize = 50_000;
/// Lines sent in one request.
const BATCH: usize = 500;

enum Msg {
    Line(NewLogLine),
    /// Answered once every line queued before it has been shipped.
    Flush(oneshot::Sender<()>),
}

/// The sending half: cheap to clone, never blocks.
#[derive(Clone, Debug)]
pub struct LogShipper {
    tx: mpsc::Sender<Msg>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("log message")
    }
}

impl LogShipper {
    /// Starts the background task that ships to `client`; it ends when every
    /// shipper is dropped and the buffer is flushed.
    pub fn spawn(client: Client) -> Self {
        let (tx, rx) = mpsc::channel(BUFFER);
        tokio::spawn(ship(client, rx));
        Self { tx }
    }

    /// A shipper whose lines come out of the returned receiver instead of
    /// going to a server (tests, and roles that forward lines elsewhere).
    /// Must be called inside a Tokio runtime.
    pub fn channel() -> (Self, mpsc::Receiver<NewLogLine>) {
        let (tx, mut rx) = mpsc::channel(BUFFER);
        let (out_tx, out_rx) = mpsc::channel(BUFFER);
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                match m {
                    Msg::Line(l) => {
                        if out_tx.send(l).await.is_err() {
                            return;
                        }
                    }
                    Msg::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        (Self { tx }, out_rx)
    }

    /// Queues a line; drops it when the buffer is full.
    pub fn send(&self, line: NewLogLine) {
        let _ = self.tx.try_send(Msg::Line(line));
    }

    /// Waits until every line queued so far has reached the server (or was
    /// given up on), so that a result sent next is not seen before its output.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(30), rx).await;
        }
    }
}

async fn ship(client: Client, mut rx: mpsc::Receiver<Msg>) {
    let mut msgs = Vec::with_capacity(BATCH);
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut msgs, BATCH).await > 0 {
        let mut flushes = Vec::new();
        for m in msgs.drain(..) {
            match m {
                Msg::Line(l) => batch.push(l),
                Msg::Flush(done) => flushes.push(done),
            }
        }
        if !batch.is_empty() {
            send_batch(&client, &batch).await;
            batch.clear();
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Retries with backoff while the server is away: lines wait (in the batch
/// and the channel) rather than being lost on a blip; gives up after about a
/// minute so a long outage cannot wedge the shipper.
async fn send_batch(client: &Client, batch: &[NewLogLine]) {
    let mut delay = Duration::from_millis(100);
    for _ in 0..20 {
        match client.append_logs(batch).await {
            Ok(()) => return,
            Err(e) if e.is_transient() => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::warn!("dropping {} log lines: {e}", batch.len());
                return;
            }
        }
    }
    tracing::warn!(
        "dropping {} log lines: the server is unreachable",
        batch.len()
    );
}
