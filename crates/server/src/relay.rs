//! Pairs the two WebSockets of an attached one-off process — the caller's
//! and the agent's — and relays messages between them unchanged.
//!
//! Both sides dial the control plane (an agent may sit behind NAT, a caller
//! anywhere), in either order. The first waits, up to a deadline, for the
//! second; the second hands its socket over and the first relays until
//! either side closes, then closes the other: a caller that goes away hangs
//! the process up, a process that ends ends the caller's session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::oneshot;

/// Which end of a run's session a socket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `berth run`, attached to a terminal or pipes.
    Caller,
    /// The agent, attached to the process.
    Process,
}

type Key = (String, u32);

struct Waiting {
    side: Side,
    hand_over: oneshot::Sender<WebSocket>,
}

/// The sockets waiting for their other side, by run.
#[derive(Clone, Default)]
pub struct Relays {
    waiting: Arc<Mutex<HashMap<Key, Waiting>>>,
}

impl Relays {
    /// Joins `socket` to the session of run `number` of `app`: hands it to
    /// the other side if it waits, else waits up to `wait` for it and then
    /// relays until the session ends.
    pub async fn join(
        &self,
        app: &str,
        number: u32,
        side: Side,
        mut socket: WebSocket,
        wait: Duration,
    ) {
        let key = (app.to_string(), number);
        loop {
            let peer = {
                let mut waiting = self.lock();
                match waiting.remove(&key) {
                    Some(w) if w.side != side => Some(w.hand_over),
                    // The same side again (a reconnect): it replaces the
                    // stale socket, whose wait ends as its sender drops.
                    _ => None,
                }
            };
            let Some(hand_over) = peer else { break };
            match hand_over.send(socket) {
                Ok(()) => return,
                // The peer gave up between the lookup and now: wait instead.
                Err(back) => socket = back,
            }
        }
        let (hand_over, handed) = oneshot::channel();
        self.lock().insert(key.clone(), Waiting { side, hand_over });
        match tokio::time::timeout(wait, handed).await {
            Ok(Ok(peer)) => relay(socket, peer).await,
            _ => {
                self.forget(&key, side);
                let reason = match side {
                    Side::Caller => "the run's node did not start it in time",
                    Side::Process => "nobody attached to the run in time",
                };
                close(socket, reason).await;
            }
        }
    }

    fn forget(&self, key: &Key, side: Side) {
        let mut waiting = self.lock();
        if waiting.get(key).is_some_and(|w| w.side == side) {
            waiting.remove(key);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Waiting>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Relays data messages both ways until one side closes or fails, then
/// closes the other. A direction ends only when its *source* ends: a send
/// to a side that is closing is dropped, not taken for the end, or the
/// process's last messages (its exit status) racing the caller's last input
/// would be lost.
async fn relay(a: WebSocket, b: WebSocket) {
    let (mut a_tx, mut a_rx) = a.split();
    let (mut b_tx, mut b_rx) = b.split();
    let a_to_b = async {
        while let Some(Ok(m)) = a_rx.next().await {
            if forward(&mut b_tx, m).await.is_break() {
                break;
            }
        }
    };
    let b_to_a = async {
        while let Some(Ok(m)) = b_rx.next().await {
            if forward(&mut a_tx, m).await.is_break() {
                break;
            }
        }
    };
    tokio::select! {
        () = a_to_b => {}
        () = b_to_a => {}
    }
    // Each direction held one sink mutably; both are free again here.
    let _ = a_tx.send(Message::Close(None)).await;
    let _ = b_tx.send(Message::Close(None)).await;
}

/// Sends a data message on (a failed send is dropped: the other side is
/// going away, and its own end of stream ends the relay); control frames
/// (ping, pong) are the transport's own business; a close ends the relay.
async fn forward(
    to: &mut (impl SinkExt<Message, Error = axum::Error> + Unpin),
    m: Message,
) -> std::ops::ControlFlow<()> {
    match m {
        Message::Binary(_) | Message::Text(_) => {
            let _ = to.send(m).await;
            std::ops::ControlFlow::Continue(())
        }
        Message::Ping(_) | Message::Pong(_) => std::ops::ControlFlow::Continue(()),
        Message::Close(_) => std::ops::ControlFlow::Break(()),
    }
}

async fn close(mut socket: WebSocket, reason: &str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: axum::extract::ws::close_code::AWAY,
            reason: reason.into(),
        })))
        .await;
}
