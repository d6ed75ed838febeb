//! One instance's life: start, wait until it listens, restart when it dies
//! (with exponential backoff), and on request drain and stop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_client::logs::LogShipper;
use berth_model::{DesiredInstance, Instance, InstanceState, NewLogLine};
use nix::sys::signal::Signal;
use tokio::process::Child;
use tokio::sync::watch;

use crate::actual::Actual;
use crate::spawn::{self, ProcessSpec};
use crate::AgentConfig;

/// What the supervisor wants of a running instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Run,
    /// Take out of rotation, wait, then stop.
    Drain,
    /// Stop now (agent shutdown).
    Stop,
}

/// A crash after running at least this long does not count toward backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// The process type that must listen on `PORT` before it is up.
const WEB: &str = "web";

struct Life {
    spec: DesiredInstance,
    config: Arc<AgentConfig>,
    actual: Actual,
    logs: LogShipper,
    control: watch::Receiver<Control>,
    state: Instance,
}

/// Runs until told to stop; removes the instance from the actual state when
/// its process is gone.
pub async fn run(
    spec: DesiredInstance,
    config: Arc<AgentConfig>,
    actual: Actual,
    logs: LogShipper,
    control: watch::Receiver<Control>,
) {
    let state = Instance {
        app: spec.app.clone(),
        release: spec.release,
        process_type: spec.process_type.clone(),
        index: spec.index,
        node: config.node.clone(),
        state: InstanceState::Starting,
        addr: None,
        pid: None,
        started_at: None,
        restarts: 0,
        last_exit: None,
        next_restart_at: None,
    };
    let mut life = Life {
        spec,
        config,
        actual,
        logs,
        control,
        state,
    };
    life.run().await;
    life.actual.remove(&life.spec.key());
}

impl Life {
    fn dyno(&self) -> String {
        format!("{}.{}", self.spec.process_type, self.spec.index)
    }

    fn event(&self, line: String) {
        self.logs.send(NewLogLine {
            app: self.spec.app.clone(),
            ts: berth_model::now_millis(),
            source: "berth".into(),
            scope: None,
            line: format!("{} (v{}): {line}", self.dyno(), self.spec.release),
        });
    }

    fn publish(&self) {
        self.actual.set(self.state.clone());
    }

    fn control(&self) -> Control {
        *self.control.borrow()
    }

    async fn run(&mut self) {
        let mut crashes_in_a_row = 0u32;
        while self.control() == Control::Run {
            let started = Instant::now();
            let exit = match self.start() {
                Ok(child) => self.supervise(child).await,
                Err(e) => Some(format!("could not start: {e}")),
            };
            let Some(exit) = exit else {
                return; // stopped on request
            };
            crashes_in_a_row = if started.elapsed() >= STABLE_AFTER {
                1
            } else {
                crashes_in_a_row + 1
            };
            let delay = backoff(&self.config, crashes_in_a_row);
            self.state.state = InstanceState::Crashed;
            self.state.pid = None;
            self.state.addr = None;
            self.state.restarts += 1;
            self.state.last_exit = Some(exit.clone());
            self.state.next_restart_at = Some(berth_model::now_millis() + delay.as_millis() as i64);
            self.publish();
            self.event(format!(
                "process {exit}; restarting in {:.1}s (restart {})",
                delay.as_secs_f64(),
                self.state.restarts
            ));
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = until_not_run(&mut self.control) => return,
            }
        }
    }

    fn start(&mut self) -> std::io::Result<Child> {
        let port = if self.spec.process_type == WEB {
            Some(spawn::free_port()?)
        } else {
            None
        };
        let dir = std::path::PathBuf::from(&self.spec.dir);
        let dyno = self.dyno();
        let home = self.config.data_dir.join("homes").join(&self.spec.app);
        let mut child = spawn::spawn(&ProcessSpec {
            command: &self.spec.command,
            dir: &dir,
            env: &self.spec.env,
            dyno: &dyno,
            port,
            home,
        })?;
        spawn::forward_output(&mut child, &self.spec.app, &dyno, None, &self.logs);
        self.state.state = InstanceState::Starting;
        self.state.pid = child.id();
        self.state.started_at = Some(berth_model::now_millis());
        self.state.next_restart_at = None;
        self.state.addr = port.map(|p| format!("{}:{p}", self.config.advertise_ip));
        self.publish();
        self.event(format!("starting `{}`", self.spec.command));
        Ok(child)
    }

    /// Watches a started process. Returns how it ended when it died on its
    /// own, or `None` when it was stopped on request.
    async fn supervise(&mut self, child: Child) -> Option<String> {
        let pid = child.id();
        let mut child = match self.wait_ready(child).await {
            Ready::Up(child) => child,
            Ready::Ended(exit) => return exit,
        };
        self.state.state = InstanceState::Up;
        self.publish();
        self.event("up".into());
        let exited = tokio::select! {
            status = child.wait() => Some(status),
            _ = until_not_run(&mut self.control) => None,
        };
        match exited {
            Some(status) => Some(died(pid, status)),
            None => {
                self.stop(child).await;
                None
            }
        }
    }

    /// Waits until a web process accepts connections on its port (other
    /// types are ready once started).
    async fn wait_ready(&mut self, mut child: Child) -> Ready {
        let Some(addr) = self.state.addr.clone() else {
            return Ready::Up(child);
        };
        let deadline = Instant::now() + self.config.ready_timeout;
        let pid = child.id();
        loop {
            if tokio::net::TcpStream::connect(&addr).await.is_ok() {
                return Ready::Up(child);
            }
            if Instant::now() >= deadline {
                self.event(format!(
                    "did not listen on PORT ({addr}) within {}s — does the web command bind to $PORT (e.g. gunicorn --bind 0.0.0.0:$PORT)?",
                    self.config.ready_timeout.as_secs()
                ));
                if let Some(pid) = pid {
                    spawn::signal_group(pid, Signal::SIGKILL);
                }
                let _ = child.wait().await;
                return Ready::Ended(Some("did not listen on PORT in time".into()));
            }
            let event = tokio::select! {
                status = child.wait() => Some(Some(status)),
                _ = tokio::time::sleep(Duration::from_millis(50)) => None,
                _ = until_not_run(&mut self.control) => Some(None),
            };
            match event {
                None => {}
                Some(Some(status)) => return Ready::Ended(Some(died(pid, status))),
                Some(None) => {
                    self.stop(child).await;
                    return Ready::Ended(None);
                }
            }
        }
    }

    /// Drain (when asked), then SIGTERM the group, wait the grace period,
    /// then SIGKILL.
    async fn stop(&mut self, mut child: Child) {
        if self.control() == Control::Drain {
            self.state.state = InstanceState::Draining;
            self.publish();
            tokio::select! {
                _ = tokio::time::sleep(self.config.drain_delay) => {}
                _ = until(&mut self.control, Control::Stop) => {}
            }
        }
        self.state.state = InstanceState::Stopping;
        self.publish();
        let Some(pid) = child.id() else {
            return;
        };
        spawn::signal_group(pid, Signal::SIGTERM);
        let status = match tokio::time::timeout(self.config.stop_grace, child.wait()).await {
            Ok(status) => status
                .map(spawn::describe_exit)
                .unwrap_or_else(|e| e.to_string()),
            Err(_) => {
                spawn::signal_group(pid, Signal::SIGKILL);
                let _ = child.wait().await;
                format!(
                    "did not exit within {}s of SIGTERM; killed with SIGKILL",
                    self.config.stop_grace.as_secs()
                )
            }
        };
        // Whatever the leader left behind goes too.
        spawn::signal_group(pid, Signal::SIGKILL);
        self.event(format!("stopped ({status})"));
    }
}

/// Resolves once the supervisor wants anything but `Run` (or is gone).
async fn until_not_run(control: &mut watch::Receiver<Control>) {
    // The borrow guard is dropped here, so callers' futures stay `Send`.
    let _ = control.wait_for(|c| *c != Control::Run).await.map(drop);
}

async fn until(control: &mut watch::Receiver<Control>, want: Control) {
    let _ = control.wait_for(|c| *c == want).await.map(drop);
}

/// A process that ended on its own: clears what its group left behind (the
/// workers of a dead master may linger and hold resources) and says how it
/// ended.
fn died(pid: Option<u32>, status: std::io::Result<std::process::ExitStatus>) -> String {
    if let Some(pid) = pid {
        spawn::signal_group(pid, Signal::SIGKILL);
    }
    status
        .map(spawn::describe_exit)
        .unwrap_or_else(|e| e.to_string())
}

/// How waiting for readiness ended.
enum Ready {
    Up(Child),
    /// `Some(how)` when the process died, `None` when stopped on request.
    Ended(Option<String>),
}

fn backoff(config: &AgentConfig, crashes_in_a_row: u32) -> Duration {
    let exp = crashes_in_a_row.saturating_sub(1).min(16);
    (config.restart_backoff * 2u32.pow(exp)).min(config.restart_backoff_max)
}
