//! The node's actual state, and the task that reports it whole.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_client::Client;
use berth_model::{Instance, InstanceKey, NodeReport, Revision};
use tokio::sync::{watch, Notify};

/// Instances as this agent sees them; every change wakes the reporter and
/// the supervisor.
#[derive(Clone, Default)]
pub struct Actual {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    instances: Mutex<State>,
    changed: Notify,
    /// A second wake-up for the supervisor, which waits apart from the reporter.
    supervisor: Notify,
    /// The last report the server took: (state version it carried, the
    /// revision the server answered).
    reported: watch::Sender<(u64, Revision)>,
}

#[derive(Default)]
struct State {
    instances: BTreeMap<InstanceKey, Instance>,
    /// Bumped on every change, so a caller can wait for the report that
    /// carries its change.
    version: u64,
}

impl Actual {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind; go on.
        self.inner
            .instances
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Sets an instance's state; returns the state version that holds it.
    pub fn set(&self, instance: Instance) -> u64 {
        let version = {
            let mut state = self.lock();
            state
                .instances
                .insert(InstanceKey::from(&instance), instance);
            state.version += 1;
            state.version
        };
        self.notify();
        version
    }

    pub fn remove(&self, key: &InstanceKey) {
        {
            let mut state = self.lock();
            state.instances.remove(key);
            state.version += 1;
        }
        self.notify();
    }

    /// Waits until the server has taken a report carrying state `version`;
    /// returns the revision it answered.
    pub async fn reported(&self, version: u64) -> Revision {
        let mut rx = self.inner.reported.subscribe();
        let r = rx.wait_for(|(v, _)| *v >= version).await.map(|r| r.1);
        // The sender lives as long as `self`, so this cannot be closed.
        r.unwrap_or_default()
    }

    fn notify(&self) {
        self.inner.changed.notify_one();
        self.inner.supervisor.notify_one();
    }

    pub fn report(&self) -> NodeReport {
        self.snapshot().1
    }

    fn snapshot(&self) -> (u64, NodeReport) {
        let state = self.lock();
        let report = NodeReport {
            instances: state.instances.values().cloned().collect(),
        };
        (state.version, report)
    }

    /// Resolves at the next change (or one that happened since the last call).
    pub async fn changed_for_supervisor(&self) {
        self.inner.supervisor.notified().await
    }
}

/// Sends the whole actual state on every change (coalesced) and every 5 s,
/// so a lost report is healed by the next and the server sees we are alive.
pub async fn report(client: Client, node: String, actual: Actual, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = actual.inner.changed.notified() => {
                // Coalesce bursts (a deploy changes many instances at once).
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = crate::stopped(&mut stop) => return,
        }
        let (version, report) = actual.snapshot();
        match client.report(&node, &report).await {
            Ok(answer) => {
                actual
                    .inner
                    .reported
                    .send_modify(|r| *r = (version, answer.revision));
                continue;
            }
            Err(e) => tracing::warn!("agent: cannot report state (will retry): {e}"),
        }
        // Make sure we retry soon even without another change.
        actual.inner.changed.notify_one();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = crate::stopped(&mut stop) => return,
        }
    }
}
