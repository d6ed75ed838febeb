//! Reconciles the desired instances with the running ones.
//!
//! The control plane plans rollouts (which old instances stay while new ones
//! come up), so the rule here is plain: start what is desired and not
//! running, drain what is running and not desired. Changes to a running
//! instance's settings that need no restart (its health check) are passed on.
//! An instance wanted again while it drains is started anew once stopped.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use berth_client::logs::LogShipper;
use berth_client::Client;
use berth_model::{DesiredInstance, InstanceKey, NodeDesired};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::actual::Actual;
use crate::instance::{self, Control, Life};
use crate::AgentConfig;

struct Handle {
    control: watch::Sender<Control>,
    spec: watch::Sender<DesiredInstance>,
    task: JoinHandle<()>,
}

pub async fn run(
    config: Arc<AgentConfig>,
    client: Client,
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
        running.retain(|_, h| !h.task.is_finished());
        for (key, spec) in &wanted {
            match running.get(key) {
                Some(h) => {
                    h.spec.send_if_modified(|s| {
                        let changed = s != spec;
                        *s = spec.clone();
                        changed
                    });
                }
                None => {
                    let (control, control_rx) = watch::channel(Control::Run);
                    let (spec_tx, spec_rx) = watch::channel(spec.clone());
                    let life = Life::new(
                        spec_rx,
                        config.clone(),
                        client.clone(),
                        actual.clone(),
                        logs.clone(),
                        control_rx,
                    );
                    let task = tokio::spawn(instance::run(life));
                    running.insert(
                        key.clone(),
                        Handle {
                            control,
                            spec: spec_tx,
                            task,
                        },
                    );
                }
            }
        }
        for (key, h) in &running {
            if !wanted.contains_key(key) && *h.control.borrow() == Control::Run {
                h.control.send_replace(Control::Drain);
            }
        }
        tokio::select! {
            r = desired.changed() => if r.is_err() { break },
            // An instance that finished stopping may be wanted again (scaled
            // back up while it drained): start it anew.
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
