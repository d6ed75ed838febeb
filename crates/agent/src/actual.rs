//! The node's actual state, and the task that reports it whole.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_client::Client;
use berth_model::{Instance, InstanceKey, NodeReport};
use tokio::sync::{watch, Notify};

/// Instances as this agent sees them; every change wakes the reporter and
/// the supervisor.
#[derive(Clone, Default)]
pub struct Actual {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    instances: Mutex<BTreeMap<InstanceKey, Instance>>,
    changed: Notify,
    /// A second wake-up for the supervisor, which waits apart from the reporter.
    supervisor: Notify,
}

impl Actual {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<InstanceKey, Instance>> {
        // A panic while holding this lock leaves plain data behind; go on.
        self.inner
            .instances
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Sets an instance's state.
    pub fn set(&self, instance: Instance) {
        self.lock().insert(InstanceKey::from(&instance), instance);
        self.notify();
    }

    pub fn remove(&self, key: &InstanceKey) {
        self.lock().remove(key);
        self.notify();
    }

    pub fn get(&self, key: &InstanceKey) -> Option<Instance> {
        self.lock().get(key).cloned()
    }

    fn notify(&self) {
        self.inner.changed.notify_one();
        self.inner.supervisor.notify_one();
    }

    pub fn report(&self) -> NodeReport {
        NodeReport {
            instances: self.lock().values().cloned().collect(),
        }
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
        if let Err(e) = client.report(&node, &actual.report()).await {
            tracing::warn!("agent: cannot report state (will retry): {e}");
            // Make sure we retry soon even without another change.
            actual.inner.changed.notify_one();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = crate::stopped(&mut stop) => return,
            }
        }
    }
}
