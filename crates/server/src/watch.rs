//! Cursors that long-polls wait on: the state revision and the last log id.
//!
//! Handlers that change state call [`Watchers::changed`]; besides, a poller
//! re-reads the store every second, so a change made by another process
//! sharing the database (several servers on PostgreSQL) is seen too.

use std::sync::Arc;
use std::time::Duration;

use berth_model::Revision;
use berth_store::Store;
use tokio::sync::watch;

#[derive(Clone)]
pub struct Watchers {
    store: Arc<dyn Store>,
    revision: watch::Sender<Revision>,
    logs: watch::Sender<i64>,
    /// Bumped on every router poll, so drains waiting for acknowledgements
    /// re-check at once instead of polling the store.
    routers: watch::Sender<u64>,
    closed: watch::Sender<bool>,
}

impl Watchers {
    pub async fn start(store: Arc<dyn Store>) -> std::io::Result<Self> {
        let rev = store.revision().await.map_err(std::io::Error::other)?;
        let last_log = store.last_log_id().await.map_err(std::io::Error::other)?;
        let w = Self {
            store,
            revision: watch::channel(rev).0,
            logs: watch::channel(last_log).0,
            routers: watch::channel(0).0,
            closed: watch::channel(false).0,
        };
        let poller = w.clone();
        tokio::spawn(async move {
            let mut closed = poller.closed.subscribe();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => poller.changed().await,
                    _ = closed.changed() => return,
                }
            }
        });
        Ok(w)
    }

    /// Re-reads the revision and wakes the watchers if it moved.
    pub async fn changed(&self) {
        if let Ok(rev) = self.store.revision().await {
            self.revision.send_if_modified(|cur| {
                let moved = rev > *cur;
                if moved {
                    *cur = rev;
                }
                moved
            });
        }
    }

    pub fn logs_appended(&self, last_id: i64) {
        self.logs.send_if_modified(|cur| {
            let moved = last_id > *cur;
            if moved {
                *cur = last_id;
            }
            moved
        });
    }

    /// A receiver that sees every revision move.
    pub fn subscribe(&self) -> watch::Receiver<Revision> {
        self.revision.subscribe()
    }

    /// Wakes whoever waits for router acknowledgements.
    pub fn router_polled(&self) {
        self.routers.send_modify(|n| *n += 1);
    }

    /// Waits until a router polls again, `wait` passes, or shutdown.
    pub async fn next_router_poll(&self, wait: Duration) {
        let mut rx = self.routers.subscribe();
        rx.borrow_and_update();
        let mut closed = self.closed.subscribe();
        let _ = tokio::time::timeout(wait, async {
            tokio::select! {
                _ = rx.changed() => {}
                _ = closed.wait_for(|c| *c) => {}
            }
        })
        .await;
    }

    /// Answers every long-poll now: the server is shutting down.
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Waits until the revision is past `after`, `wait` passes, or shutdown.
    pub async fn revision_after(&self, after: Revision, wait: Duration) -> Revision {
        wait_past(&self.revision, &self.closed, after, wait).await
    }

    /// Waits until a log line with id past `after` exists, or `wait` passes.
    pub async fn logs_after(&self, after: i64, wait: Duration) -> i64 {
        wait_past(&self.logs, &self.closed, after, wait).await
    }
}

async fn wait_past<T: Copy + PartialOrd>(
    tx: &watch::Sender<T>,
    closed: &watch::Sender<bool>,
    after: T,
    wait: Duration,
) -> T {
    let mut rx = tx.subscribe();
    let mut closed = closed.subscribe();
    if *closed.borrow() {
        return *rx.borrow();
    }
    let _ = tokio::time::timeout(wait, async {
        tokio::select! {
            r = rx.wait_for(|v| *v > after) => drop(r),
            _ = closed.wait_for(|c| *c) => {}
        }
    })
    .await;
    let v = *rx.borrow();
    v
}

impl Watchers {
    /// The newest log id this server knows of.
    pub fn last_log_id(&self) -> i64 {
        *self.logs.borrow()
    }
}
