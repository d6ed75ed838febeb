//! Reconciles the desired instances with the running ones.
//!
//! Replacement rule, per app and process type: an instance that is no longer
//! desired keeps running while fewer desired instances of its group are up
//! than are wanted; each desired instance that comes up releases one old
//! instance, which is drained and stopped. So a new release replaces the old
//! one instance by instance, and a release whose instances never come up
//! (crash loop, wrong port) never takes the old one down.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use berth_client::logs::LogShipper;
use berth_model::{DesiredInstance, InstanceKey, InstanceState, NodeDesired};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::actual::Actual;
use crate::instance::{self, Control};
use crate::AgentConfig;

struct Handle {
    control: watch::Sender<Control>,
    task: JoinHandle<()>,
}

pub async fn run(
    config: Arc<AgentConfig>,
    actual: Actual,
    logs: LogShipper,
    mut desired: watch::Receiver<Option<NodeDesired>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut running: HashMap<InstanceKey, Handle> = HashMap::new();
    loop {
        let wanted: BTreeMap<InstanceKey, DesiredInstance> = desired
            .borrow_and_update()
            .as_ref()
            .map(|d| d.instances.iter().map(|i| (i.key(), i.clone())).collect())
            .unwrap_or_default();
        reconcile(&config, &actual, &logs, &wanted, &mut running);
        tokio::select! {
            r = desired.changed() => if r.is_err() { break },
            _ = actual.changed_for_supervisor() => {}
            _ = crate::stopped(&mut stop) => break,
        }
    }
    for h in running.values() {
        h.control.send_replace(Control::Stop);
    }
    for (_, h) in running.drain() {
        let _ = h.task.await;
    }
}

fn reconcile(
    config: &Arc<AgentConfig>,
    actual: &Actual,
    logs: &LogShipper,
    wanted: &BTreeMap<InstanceKey, DesiredInstance>,
    running: &mut HashMap<InstanceKey, Handle>,
) {
    running.retain(|_, h| !h.task.is_finished());
    for (key, spec) in wanted {
        if !running.contains_key(key) {
            let (control, rx) = watch::channel(Control::Run);
            let task = tokio::spawn(instance::run(
                spec.clone(),
                config.clone(),
                actual.clone(),
                logs.clone(),
                rx,
            ));
            running.insert(key.clone(), Handle { control, task });
        }
    }
    // Old instances that may keep running, per (app, process type).
    let mut room: HashMap<(String, String), usize> = HashMap::new();
    for key in wanted.keys() {
        let up = actual
            .get(key)
            .is_some_and(|i| i.state == InstanceState::Up);
        if !up {
            *room
                .entry((key.app.clone(), key.process_type.clone()))
                .or_default() += 1;
        }
    }
    let mut old: Vec<(&InstanceKey, &Handle)> = running
        .iter()
        .filter(|(k, h)| !wanted.contains_key(*k) && *h.control.borrow() == Control::Run)
        .collect();
    // Up instances first (they are the ones worth keeping), newest release first.
    old.sort_by_key(|(k, _)| {
        let up = actual.get(k).is_some_and(|i| i.state == InstanceState::Up);
        (!up, std::cmp::Reverse(k.release), k.index)
    });
    for (key, handle) in old {
        let up = actual
            .get(key)
            .is_some_and(|i| i.state == InstanceState::Up);
        let slot = room
            .entry((key.app.clone(), key.process_type.clone()))
            .or_default();
        if up && *slot > 0 {
            *slot -= 1;
        } else {
            handle.control.send_replace(Control::Drain);
        }
    }
}
