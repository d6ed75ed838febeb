//! One instance's life: start, wait until it is ready (listens on `PORT`,
//! answers HTTP, and passes its health check `rise` times), restart it when it dies or
//! fails its check `fall` times in a row (with exponential backoff), and on
//! request drain it — out of every router, confirmed; its WebSocket
//! sessions ended or closed by the routers after their grace — and stop it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_client::logs::LogShipper;
use berth_client::Client;
use berth_model::{DesiredInstance, EventKind, HealthCheck, Instance, InstanceState, NewLogLine};
use nix::sys::signal::Signal;
use tokio::process::Child;
use tokio::sync::watch;

use crate::actual::Actual;
use crate::confine::{self, group_name, Confinement};
use crate::health::Checker;
use crate::sockets;
use crate::spawn::{self, ProcessSpec};
use crate::AgentConfig;

/// What the supervisor wants of a running instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Run,
    /// Take out of rotation (every router confirms), then stop.
    Drain,
    /// Stop now (agent shutdown).
    Stop,
}

/// A crash after running at least this long does not count toward backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// The process type that must listen on `PORT` before it is up.
const WEB: &str = "web";
/// The longest one readiness probe waits for an answer (workers may still
/// be loading the app).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a running instance's cgroup is asked whether the kernel
/// killed one of its processes for lack of memory.
const OOM_POLL: Duration = Duration::from_secs(1);
/// While an instance starts, checks run at least this often, so a rollout
/// does not wait a whole interval per `rise` (HAProxy's `fastinter`).
const STARTING_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// How much longer than the routers' grace a drain waits for WebSocket
/// sessions to end: the close handshake the router starts at the end of
/// its grace (at most 5 s), then its report of it. A router that went
/// away or stalled holds the instance no longer than this.
const SESSIONS_MARGIN: Duration = Duration::from_secs(10);
/// The longest one ask for sessions waits at the server.
const SESSIONS_POLL: Duration = Duration::from_secs(5);

/// One instance, from first start to final stop.
pub struct Life {
    spec: watch::Receiver<DesiredInstance>,
    config: Arc<AgentConfig>,
    client: Client,
    actual: Actual,
    logs: LogShipper,
    control: watch::Receiver<Control>,
    state: Instance,
    checker: Checker,
    /// The cgroup of the current process start, if the node has cgroups.
    confinement: Option<Confinement>,
}

/// Runs until told to stop; removes the instance from the actual state when
/// its process is gone.
pub async fn run(mut life: Life) {
    life.run().await;
    life.actual.remove(&life.spec().key());
}

impl Life {
    pub fn new(
        spec: watch::Receiver<DesiredInstance>,
        config: Arc<AgentConfig>,
        client: Client,
        actual: Actual,
        logs: LogShipper,
        control: watch::Receiver<Control>,
    ) -> Self {
        let s = spec.borrow().clone();
        let state = Instance::starting(s.key(), &config.node);
        Self {
            spec,
            config,
            client,
            actual,
            logs,
            control,
            state,
            checker: Checker::new(),
            confinement: None,
        }
    }

    fn spec(&self) -> DesiredInstance {
        self.spec.borrow().clone()
    }

    fn healthcheck(&self) -> Option<HealthCheck> {
        self.spec.borrow().healthcheck.clone()
    }

    fn dyno(&self) -> String {
        format!("{}.{}", self.state.process_type, self.state.index)
    }

    fn event(&self, kind: EventKind, line: String) {
        self.send_line(line, Some(kind));
    }

    /// A line about this instance in the app's log that records no state
    /// change.
    fn log(&self, line: String) {
        self.send_line(line, None);
    }

    /// `line` in the app's log as Berth's, prefixed with this instance.
    fn send_line(&self, line: String, event: Option<EventKind>) {
        self.logs.send(NewLogLine {
            app: self.state.app.clone(),
            ts: berth_model::now_millis(),
            source: "berth".into(),
            scope: None,
            line: format!("{} (v{}): {line}", self.dyno(), self.state.release),
            event,
        });
    }

    fn publish(&self) -> u64 {
        self.actual.set(self.state.clone())
    }

    /// A process that ended on its own: clears what its group left behind
    /// (the workers of a dead master may linger and hold resources) and
    /// says how it ended — out of memory, when the kernel killed it for that.
    fn died(
        &mut self,
        pid: Option<u32>,
        status: std::io::Result<std::process::ExitStatus>,
    ) -> String {
        if let Some(pid) = pid {
            spawn::signal_group(pid, Signal::SIGKILL);
        }
        match status {
            Ok(s) => confine::describe_exit(self.confinement.as_mut(), s),
            Err(e) => e.to_string(),
        }
    }

    /// Reports processes of the instance the kernel killed for lack of
    /// memory while the instance kept running (a pre-fork server's
    /// workers: the master starts new ones).
    fn note_oom_kills(&mut self) {
        let Some(c) = self.confinement.as_mut() else {
            return;
        };
        let killed = c.new_oom_kills();
        if killed == 0 {
            return;
        }
        let note = c.oom_note();
        self.state.oom_kills += killed as u32;
        self.publish();
        self.event(
            EventKind::OutOfMemory,
            format!("{killed} process(es) killed: {note}"),
        );
    }

    /// Applies the limits of a changed spec to the running process.
    fn apply_limits(&mut self) {
        let limits = self.spec().limits;
        if let Some(c) = self.confinement.as_mut() {
            if let Err(e) = c.update(limits) {
                self.log(format!("cannot apply the new resource limits: {e}"));
            }
        }
    }

    fn control(&self) -> Control {
        *self.control.borrow()
    }

    async fn run(&mut self) {
        let mut crashes_in_a_row = 0u32;
        while self.control() == Control::Run {
            let started = Instant::now();
            let exit = match self.start().await {
                Ok(child) => self.supervise(child).await,
                Err(e) => Some(format!("could not start: {e}")),
            };
            if let Some(confinement) = self.confinement.take() {
                confinement.release().await;
            }
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
            self.event(
                EventKind::InstanceCrashed,
                format!(
                    "process {exit}; restarting in {:.1}s (restart {})",
                    delay.as_secs_f64(),
                    self.state.restarts
                ),
            );
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = until_not_run(&mut self.control) => return,
            }
        }
    }

    async fn start(&mut self) -> std::io::Result<Child> {
        let spec = self.spec();
        let port = if spec.process_type == WEB {
            Some(spawn::free_port()?)
        } else {
            None
        };
        let dir = std::path::PathBuf::from(&spec.dir);
        let dyno = self.dyno();
        let home = self.config.data_dir.join("homes").join(&spec.app);
        let name = group_name(&[
            &spec.app,
            &dyno,
            &format!("v{}", spec.release),
            &format!("g{}", spec.generation),
        ]);
        self.confinement =
            match Confinement::create(self.config.cgroups.as_ref(), &name, spec.limits).await {
                Ok(c) => c,
                Err(why) => {
                    // Running unconfined beats not running at all.
                    self.log(format!("running without resource limits: {why}"));
                    None
                }
            };
        let mut child = spawn::spawn(&ProcessSpec {
            command: &spec.command,
            dir: &dir,
            env: &spec.env,
            dyno: &dyno,
            port,
            home,
            cgroup: self.confinement.as_ref().map(Confinement::joiner),
        })?;
        let scope = format!("v{}", spec.release);
        spawn::forward_output(&mut child, &spec.app, &dyno, Some(&scope), &self.logs);
        self.state.state = InstanceState::Starting;
        self.state.pid = child.id();
        self.state.started_at = Some(berth_model::now_millis());
        self.state.next_restart_at = None;
        self.state.health = None;
        self.state.addr = port.map(|p| format!("{}:{p}", self.config.advertise_ip));
        self.publish();
        self.event(
            EventKind::InstanceStarting,
            format!("starting `{}`", spec.command),
        );
        Ok(child)
    }

    /// Watches a started process. Returns how it ended when it died on its
    /// own (or was restarted for failing its health check), or `None` when
    /// it was stopped on request.
    async fn supervise(&mut self, child: Child) -> Option<String> {
        let pid = child.id();
        let mut child = match self.wait_ready(child).await {
            Ready::Up(child) => child,
            Ready::Ended(exit) => return exit,
        };
        self.state.state = InstanceState::Up;
        self.state.health = self.healthcheck().map(|_| "passing".to_string());
        self.publish();
        self.event(EventKind::InstanceReady, "up".into());
        let mut failures = 0u32;
        let mut oom_poll = tokio::time::interval(OOM_POLL);
        oom_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let interval_of = |hc: &Option<HealthCheck>| {
            hc.as_ref()
                .map(|h| Duration::from_millis(h.interval_ms))
                .unwrap_or(Duration::from_secs(3600))
        };
        let mut next_check = tokio::time::Instant::now() + interval_of(&self.healthcheck());
        loop {
            let hc = self.healthcheck();
            if hc.is_none() && self.state.health.is_some() {
                // The check was removed while running.
                self.state.health = None;
                self.publish();
            }
            let event = tokio::select! {
                status = child.wait() => Watch::Died(status),
                _ = until_not_run(&mut self.control) => Watch::Stop,
                _ = tokio::time::sleep_until(next_check), if hc.is_some() => Watch::Check,
                // A health check set or changed while running applies now.
                r = self.spec.changed() => if r.is_ok() { Watch::SpecChanged } else { Watch::Stop },
                _ = oom_poll.tick(), if self.confinement.is_some() => Watch::OomCheck,
            };
            match event {
                Watch::Died(status) => return Some(self.died(pid, status)),
                Watch::Stop => {
                    self.stop(child).await;
                    return None;
                }
                Watch::Check => next_check = tokio::time::Instant::now() + interval_of(&hc),
                Watch::SpecChanged => {
                    failures = 0;
                    next_check = tokio::time::Instant::now() + interval_of(&self.healthcheck());
                    self.apply_limits();
                    continue;
                }
                Watch::OomCheck => {
                    self.note_oom_kills();
                    continue;
                }
            }
            let Some(hc) = hc else { continue };
            let addr = self.state.addr.clone().unwrap_or_default();
            match self.checker.check(&addr, &self.spec().host, &hc).await {
                Ok(()) if failures == 0 && self.state.health.as_deref() == Some("passing") => {}
                Ok(()) => {
                    failures = 0;
                    self.state.health = Some("passing".into());
                    self.publish();
                }
                Err(why) => {
                    failures += 1;
                    self.state.health = Some(format!("failing ({failures} of {}): {why}", hc.fall));
                    self.publish();
                    if failures >= hc.fall {
                        self.event(
                            EventKind::HealthFailed,
                            format!("failed {failures} health checks in a row ({why}); restarting"),
                        );
                        // Unhealthy: out of the routes at once, then stopped.
                        self.state.state = InstanceState::Stopping;
                        self.publish();
                        self.terminate(child).await;
                        return Some(format!("failed {failures} health checks in a row ({why})"));
                    }
                }
            }
        }
    }

    /// Waits until a web process accepts connections on its port and passes
    /// its health check `rise` times in a row (other types are ready once
    /// started).
    async fn wait_ready(&mut self, mut child: Child) -> Ready {
        let Some(addr) = self.state.addr.clone() else {
            return Ready::Up(child);
        };
        let deadline = Instant::now() + self.config.ready_timeout;
        let pid = child.id();
        let mut listening = false;
        let mut passes = 0u32;
        let mut last_failure = String::new();
        loop {
            let hc = self.healthcheck();
            if !listening {
                listening = tokio::net::TcpStream::connect(&addr).await.is_ok();
            }
            if listening {
                match &hc {
                    None => {
                        let host = self.spec().host;
                        let probe = self.checker.answers(&addr, &host, PROBE_TIMEOUT);
                        let answered = tokio::select! {
                            r = probe => r,
                            status = child.wait() => return Ready::Ended(Some(self.died(pid, status))),
                        };
                        match answered {
                            Ok(()) => return Ready::Up(child),
                            Err(why) => last_failure = why,
                        }
                    }
                    Some(hc) => match self.checker.check(&addr, &self.spec().host, hc).await {
                        Ok(()) => {
                            passes += 1;
                            if passes >= hc.rise {
                                return Ready::Up(child);
                            }
                            self.state.health =
                                Some(format!("checking ({passes} of {} passed)", hc.rise));
                            self.publish();
                        }
                        Err(why) => {
                            passes = 0;
                            if why != last_failure {
                                self.state.health = Some(format!("checking: {why}"));
                                self.publish();
                            }
                            last_failure = why;
                        }
                    },
                }
            }
            if Instant::now() >= deadline {
                let (why, exit) = if let (true, Some(hc)) = (listening, &hc) {
                    (
                        format!(
                            "did not pass its health check GET {} within {}s (last: {last_failure})",
                            hc.path,
                            self.config.ready_timeout.as_secs()
                        ),
                        "did not pass its health check in time".to_string(),
                    )
                } else if listening {
                    (
                        format!(
                            "listened on PORT but did not answer HTTP within {}s ({last_failure})",
                            self.config.ready_timeout.as_secs()
                        ),
                        "did not answer HTTP in time".to_string(),
                    )
                } else {
                    (
                        format!(
                            "did not listen on PORT ({addr}) within {}s — does the web command bind to $PORT (e.g. gunicorn --bind 0.0.0.0:$PORT)?",
                            self.config.ready_timeout.as_secs()
                        ),
                        "did not listen on PORT in time".to_string(),
                    )
                };
                self.event(EventKind::InstanceCrashed, why);
                if let Some(pid) = pid {
                    spawn::signal_group(pid, Signal::SIGKILL);
                }
                let _ = child.wait().await;
                return Ready::Ended(Some(exit));
            }
            let pause = if listening {
                hc.map(|h| Duration::from_millis(h.interval_ms))
                    .unwrap_or(STARTING_CHECK_INTERVAL)
                    .min(STARTING_CHECK_INTERVAL)
            } else {
                Duration::from_millis(50)
            };
            let event = tokio::select! {
                status = child.wait() => Some(Some(status)),
                _ = tokio::time::sleep(pause) => None,
                _ = until_not_run(&mut self.control) => Some(None),
            };
            match event {
                None => {}
                Some(Some(status)) => return Ready::Ended(Some(self.died(pid, status))),
                Some(None) => {
                    self.stop(child).await;
                    return Ready::Ended(None);
                }
            }
        }
    }

    /// Drain (when asked), then SIGTERM the group, wait the grace period,
    /// then SIGKILL.
    async fn stop(&mut self, child: Child) {
        if self.control() == Control::Drain && self.state.state == InstanceState::Up {
            self.drain().await;
        }
        self.state.state = InstanceState::Stopping;
        self.publish();
        self.terminate(child).await;
    }

    /// Takes the instance out of rotation and waits until every router has
    /// confirmed it routes by a table without it — so no new request can
    /// reach it — or the drain timeout passes. Requests already in flight
    /// finish during the graceful stop that follows (gunicorn, uvicorn and
    /// granian all finish them on SIGTERM).
    async fn drain(&mut self) {
        self.state.state = InstanceState::Draining;
        let version = self.publish();
        self.event(EventKind::InstanceDraining, "draining".into());
        let timeout = self.config.drain_timeout;
        let started = tokio::time::Instant::now();
        let confirmed = tokio::select! {
            r = tokio::time::timeout(timeout, routers_confirm(&self.actual, &self.client, version)) => r.is_ok(),
            _ = until(&mut self.control, Control::Stop) => true,
        };
        // No new request comes now, but those sent before may not have
        // reached a worker yet: wait until every one has been read.
        let port = self
            .state
            .addr
            .as_deref()
            .and_then(|a| a.rsplit_once(':'))
            .and_then(|(_, p)| p.parse::<u16>().ok());
        if let (true, Some(port)) = (confirmed, port) {
            let left = timeout.saturating_sub(started.elapsed());
            let open = tokio::select! {
                open = sockets::wait_unread(port, left) => open,
                _ = until(&mut self.control, Control::Stop) => 0,
            };
            if open > 0 {
                self.event(
                    EventKind::InstanceDraining,
                    format!(
                        "{open} request(s) still unread after {}s; stopping anyway",
                        timeout.as_secs()
                    ),
                );
            }
        }
        if confirmed {
            self.wait_sessions().await;
        } else {
            self.event(
                EventKind::InstanceDraining,
                format!(
                    "not every router confirmed within {}s that it stopped sending requests; stopping anyway",
                    timeout.as_secs()
                ),
            );
        }
    }

    /// Once no router sends the instance requests: waits until none still
    /// carries a WebSocket session to it — the sessions end by themselves,
    /// or each router closes its own with `1001` at the end of its grace —
    /// so the app's shutdown does not cut them first. No wait when there
    /// are none; at most the longest grace reported plus
    /// [`SESSIONS_MARGIN`] when there are.
    async fn wait_sessions(&mut self) {
        let Some(addr) = self.state.addr.clone() else {
            return;
        };
        let (app, id) = (self.state.app.clone(), self.state.backend_id());
        let client = self.client.clone();
        let ask = |wait| client.router_sessions(&app, &addr, &id, wait);
        // The first answer says whether there is anything to wait for; a
        // server away meanwhile gets the drain timeout to answer. A server
        // that does not know the question (older than this agent) has no
        // sessions to tell of.
        let asked = tokio::time::timeout(self.config.drain_timeout, async {
            loop {
                match ask(Duration::ZERO).await {
                    Ok(open) => return Ok(open),
                    Err(e) if !e.is_transient() => return Err(e.to_string()),
                    Err(e) => {
                        tracing::debug!("asking for a draining instance's WebSocket sessions: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        let asked = tokio::select! {
            r = asked => r.unwrap_or_else(|_| Err(format!(
                "no answer within {}s", self.config.drain_timeout.as_secs()
            ))),
            _ = until(&mut self.control, Control::Stop) => return,
        };
        let mut open = match asked {
            Ok(open) => open,
            Err(why) => {
                self.log(format!(
                    "could not learn whether routers carry WebSocket sessions to this instance ({why}); stopping it"
                ));
                return;
            }
        };
        if open.open() == 0 {
            return;
        }
        let grace = open.grace();
        self.event(
            EventKind::InstanceDraining,
            format!(
                "waiting for {} WebSocket session(s) to close (grace {})",
                open.open(),
                seconds(grace)
            ),
        );
        let started = tokio::time::Instant::now();
        let deadline = started + grace + SESSIONS_MARGIN;
        while open.open() > 0 {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                self.event(
                    EventKind::InstanceDraining,
                    format!(
                        "{} WebSocket session(s) still open {} after the routers' grace; stopping anyway",
                        open.open(),
                        seconds(SESSIONS_MARGIN)
                    ),
                );
                return;
            }
            // Whole seconds at the server: at least one, so no busy loop.
            let wait = left.min(SESSIONS_POLL).max(Duration::from_secs(1));
            let asked = tokio::select! {
                r = ask(wait) => r,
                _ = until(&mut self.control, Control::Stop) => return,
            };
            match asked {
                Ok(now) => open = now,
                Err(e) => {
                    tracing::debug!("asking for a draining instance's WebSocket sessions: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        self.log(format!(
            "WebSocket sessions closed after {}",
            seconds(started.elapsed())
        ));
    }

    /// Stops the process like systemd's `KillMode=mixed`: SIGTERM to the
    /// process Berth started, which for pre-fork servers (gunicorn, uvicorn
    /// with workers) is the master that finishes in-flight requests before
    /// it stops its workers — signalling the workers directly would cut
    /// those requests off. Whatever outlives the leader (children of a shell
    /// wrapper) gets SIGTERM then, and the rest of the grace period; then
    /// SIGKILL for the whole group.
    async fn terminate(&mut self, mut child: Child) {
        let Some(pid) = child.id() else {
            return;
        };
        let grace = self.config.stop_grace;
        let deadline = tokio::time::Instant::now() + grace;
        spawn::signal_leader(pid, Signal::SIGTERM);
        let status = match tokio::time::timeout_at(deadline, child.wait()).await {
            Ok(status) => {
                let how = status
                    .map(spawn::describe_exit)
                    .unwrap_or_else(|e| e.to_string());
                if spawn::group_alive(pid) {
                    spawn::signal_group(pid, Signal::SIGTERM);
                    while spawn::group_alive(pid) && tokio::time::Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                how
            }
            Err(_) => {
                spawn::signal_group(pid, Signal::SIGKILL);
                let _ = child.wait().await;
                format!(
                    "did not exit within {}s of SIGTERM; killed with SIGKILL",
                    grace.as_secs()
                )
            }
        };
        // Whatever is left goes now.
        spawn::signal_group(pid, Signal::SIGKILL);
        self.event(EventKind::InstanceStopped, format!("stopped ({status})"));
    }
}

/// Resolves once the server has taken the report carrying state `version`
/// and every live router has applied the revision it answered.
async fn routers_confirm(actual: &Actual, client: &Client, version: u64) {
    let revision = actual.reported(version).await;
    loop {
        match client
            .routers_applied(revision, Duration::from_secs(5))
            .await
        {
            Ok(a) if a.applied => return,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!("waiting for routers to confirm a drain: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// What interrupted the watch over an up instance.
enum Watch {
    Died(std::io::Result<std::process::ExitStatus>),
    Stop,
    Check,
    SpecChanged,
    OomCheck,
}

/// Resolves once the supervisor wants anything but `Run` (or is gone).
async fn until_not_run(control: &mut watch::Receiver<Control>) {
    // The borrow guard is dropped here, so callers' futures stay `Send`.
    let _ = control.wait_for(|c| *c != Control::Run).await.map(drop);
}

async fn until(control: &mut watch::Receiver<Control>, want: Control) {
    let _ = control.wait_for(|c| *c == want).await.map(drop);
}

/// How waiting for readiness ended.
enum Ready {
    Up(Child),
    /// `Some(how)` when the process died, `None` when stopped on request.
    Ended(Option<String>),
}

/// `3s`, `1.5s`: a duration as events show it.
fn seconds(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

fn backoff(config: &AgentConfig, crashes_in_a_row: u32) -> Duration {
    let exp = crashes_in_a_row.saturating_sub(1).min(16);
    (config.restart_backoff * 2u32.pow(exp)).min(config.restart_backoff_max)
}
