//! One-off processes (`berth run`): each started once when it appears in
//! the node's desired state, never restarted, stopped when it leaves it
//! (`berth ps:kill`), and its end reported.
//!
//! A detached run's output goes to the app's log (scope `run.N`). An
//! attached run waits for its caller on the control plane's relay, starts
//! on the caller's `Start` — on a pseudo-terminal of the caller's size, or
//! on pipes — and pumps input, output, window sizes and signals until the
//! process ends; a caller that goes away hangs the process up (SIGHUP).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_client::attach::{Message, Socket};
use berth_client::logs::LogShipper;
use berth_client::{retry_transient, Client};
use berth_model::run::{control_frame, frame, parse_frame, run_name, Channel, Control};
use berth_model::{RunJob, RunReport, RunState};
use futures_util::{SinkExt, StreamExt};
use nix::sys::signal::Signal;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::confine::{self, group_name, Confinement};
use crate::spawn::{self, ProcessSpec};
use crate::AgentConfig;

/// Attempts at delivering a run's state (about two minutes of backoff).
const REPORT_ATTEMPTS: u32 = 30;
/// How long a started run waits for its caller's `Start`.
const START_WAIT: Duration = Duration::from_secs(60);
/// How long output is still collected after the process ended (children it
/// left behind may hold the terminal open).
const OUTPUT_DRAIN: Duration = Duration::from_secs(1);

type Key = (String, u32);

/// The node's one-off processes.
#[derive(Clone)]
pub struct Runs {
    client: Client,
    config: Arc<AgentConfig>,
    logs: LogShipper,
    /// Every run this agent has handled: a run starts at most once.
    seen: Arc<Mutex<HashSet<Key>>>,
    /// Runs whose process is alive, with the token that stops it.
    live: Arc<Mutex<HashMap<Key, CancellationToken>>>,
    tasks: TaskTracker,
}

/// How a run ended, for its report.
struct Ended {
    exit_code: Option<i32>,
    outcome: String,
}

impl Ended {
    /// Stopped because it left the desired state.
    fn killed() -> Self {
        Self {
            exit_code: None,
            outcome: "was killed by `berth ps:kill`".into(),
        }
    }
}

impl Runs {
    pub fn new(client: Client, config: Arc<AgentConfig>, logs: LogShipper) -> Self {
        Self {
            client,
            config,
            logs,
            seen: Arc::default(),
            live: Arc::default(),
            tasks: TaskTracker::new(),
        }
    }

    /// Converges to the desired runs: starts new ones, stops the ones that
    /// left, and reports lost the ones a previous agent started.
    pub fn apply(&self, desired: &[RunJob]) {
        let wanted: HashSet<Key> = desired.iter().map(|j| (j.app.clone(), j.number)).collect();
        for (key, stop) in lock(&self.live).iter() {
            if !wanted.contains(key) {
                stop.cancel();
            }
        }
        for job in desired {
            let key = (job.app.clone(), job.number);
            if !lock(&self.seen).insert(key.clone()) {
                continue;
            }
            let me = self.clone();
            let job = job.clone();
            if job.state == RunState::Pending {
                let stop = CancellationToken::new();
                lock(&self.live).insert(key.clone(), stop.clone());
                self.tasks.spawn(async move {
                    let ended = me.run(&job, stop).await;
                    lock(&me.live).remove(&key);
                    me.report_end(&job, ended).await;
                });
            } else {
                // Desired and already started, yet unknown here: it was
                // started by this node's previous agent, which took it down.
                self.tasks.spawn(async move {
                    let ended = Ended {
                        exit_code: None,
                        outcome: "was lost: its agent restarted".into(),
                    };
                    me.report_end(&job, ended).await;
                });
            }
        }
    }

    /// Stops every run and waits for their reports.
    pub async fn stop_all(&self) {
        for stop in lock(&self.live).values() {
            stop.cancel();
        }
        self.tasks.close();
        self.tasks.wait().await;
    }

    async fn run(&self, job: &RunJob, stop: CancellationToken) -> Ended {
        let home = self.config.data_dir.join("homes").join(&job.app);
        let dir = PathBuf::from(&job.dir);
        let dyno = run_name(job.number);
        let name = group_name(&[&job.app, &dyno]);
        let mut confinement =
            match Confinement::create(self.config.cgroups.as_ref(), &name, job.limits).await {
                Ok(c) => c,
                Err(why) => {
                    tracing::warn!(
                        "{} of {} runs without resource limits: {why}",
                        dyno,
                        job.app
                    );
                    None
                }
            };
        let spec = ProcessSpec {
            command: &job.command,
            dir: &dir,
            env: &job.env,
            dyno: &dyno,
            port: None,
            home,
            cgroup: confinement.as_ref().map(Confinement::joiner),
        };
        let ended = if job.attach {
            self.attached(job, &spec, stop, &mut confinement).await
        } else {
            self.detached(job, &spec, stop, &mut confinement).await
        };
        if let Some(c) = confinement {
            c.release().await;
        }
        ended
    }

    async fn detached(
        &self,
        job: &RunJob,
        spec: &ProcessSpec<'_>,
        stop: CancellationToken,
        confinement: &mut Option<Confinement>,
    ) -> Ended {
        let mut child = match spawn::spawn(spec) {
            Ok(c) => c,
            Err(e) => return could_not_start(e),
        };
        self.report_running(job, child.id());
        let name = run_name(job.number);
        let output = spawn::forward_output(&mut child, &job.app, &name, Some(&name), &self.logs);
        let ended = self.wait_or_stop(&mut child, &stop, confinement).await;
        let _ = tokio::time::timeout(OUTPUT_DRAIN, output).await;
        ended
    }

    /// Waits for the process to end, or stops it when `stop` fires.
    async fn wait_or_stop(
        &self,
        child: &mut Child,
        stop: &CancellationToken,
        confinement: &mut Option<Confinement>,
    ) -> Ended {
        let pid = child.id();
        tokio::select! {
            status = child.wait() => {
                if let Some(pid) = pid {
                    // What the process left behind goes with it.
                    spawn::signal_group(pid, Signal::SIGKILL);
                }
                exited(status, confinement)
            }
            () = stop.cancelled() => {
                spawn::stop_group(child, self.config.stop_grace).await;
                Ended::killed()
            }
        }
    }

    async fn attached(
        &self,
        job: &RunJob,
        spec: &ProcessSpec<'_>,
        stop: CancellationToken,
        confinement: &mut Option<Confinement>,
    ) -> Ended {
        let socket =
            retry_transient(5, || self.client.run_process_socket(&job.app, job.number)).await;
        let mut socket = match socket {
            Ok(s) => s,
            Err(e) => {
                return Ended {
                    exit_code: None,
                    outcome: format!(
                        "did not start: cannot reach its caller through the control plane: {e}"
                    ),
                }
            }
        };
        let start = tokio::select! {
            s = wait_for_start(&mut socket) => s,
            () = stop.cancelled() => None,
            () = tokio::time::sleep(START_WAIT) => None,
        };
        let Some((cols, rows, term)) = start else {
            return Ended {
                exit_code: None,
                outcome: "did not start: its caller went away first".into(),
            };
        };
        let mut env = spec.env.clone();
        if job.tty {
            // The caller's terminal type, as ssh passes it on.
            env.insert(
                "TERM".into(),
                term.unwrap_or_else(|| "xterm-256color".into()),
            );
        }
        let spec = ProcessSpec {
            env: &env,
            home: spec.home.clone(),
            cgroup: spec.cgroup.clone(),
            ..*spec
        };
        let started = if job.tty {
            spawn::spawn_in_terminal(&spec, cols, rows).map(|(child, pty)| {
                let (read, write) = pty.into_split();
                let input = Input::Terminal(write);
                (
                    child,
                    input,
                    vec![(Channel::Stdout, Box::new(read) as Reader)],
                )
            })
        } else {
            spawn::spawn_piped(&spec).map(|mut child| {
                let input = Input::Pipe(child.stdin.take());
                let mut outputs: Vec<(Channel, Reader)> = Vec::new();
                if let Some(out) = child.stdout.take() {
                    outputs.push((Channel::Stdout, Box::new(out)));
                }
                if let Some(err) = child.stderr.take() {
                    outputs.push((Channel::Stderr, Box::new(err)));
                }
                (child, input, outputs)
            })
        };
        let (mut child, input, outputs) = match started {
            Ok(s) => s,
            Err(e) => {
                let ended = could_not_start(e);
                let _ = socket
                    .send(Message::Binary(
                        control_frame(&Control::Error {
                            message: format!("{} {}", run_name(job.number), ended.outcome),
                        })
                        .into(),
                    ))
                    .await;
                let _ = socket.close(None).await;
                return ended;
            }
        };
        self.report_running(job, child.id());
        let ended = pump(
            &mut child,
            input,
            outputs,
            &mut socket,
            &stop,
            self.config.stop_grace,
            confinement,
        )
        .await;
        let exit = Control::Exit {
            code: ended.exit_code,
            outcome: ended.outcome.clone(),
        };
        let _ = socket
            .send(Message::Binary(control_frame(&exit).into()))
            .await;
        let _ = socket.close(None).await;
        ended
    }

    fn report_running(&self, job: &RunJob, pid: Option<u32>) {
        let me = self.clone();
        let job = job.clone();
        self.tasks.spawn(async move {
            let report = RunReport {
                state: RunState::Running,
                pid,
                exit_code: None,
                outcome: None,
            };
            me.report(&job, report).await
        });
    }

    async fn report_end(&self, job: &RunJob, ended: Ended) {
        self.logs.flush().await;
        let report = RunReport {
            state: RunState::Exited,
            pid: None,
            exit_code: ended.exit_code,
            outcome: Some(ended.outcome),
        };
        self.report(job, report).await
    }

    async fn report(&self, job: &RunJob, report: RunReport) {
        let sent = retry_transient(REPORT_ATTEMPTS, || {
            self.client.report_run(&job.app, job.number, &report)
        })
        .await;
        if let Err(e) = sent {
            tracing::warn!(
                "agent: state of run.{} of {} not delivered: {e}",
                job.number,
                job.app
            );
        }
    }
}

type Reader = Box<dyn AsyncRead + Send + Unpin>;

/// Where the caller's input goes.
enum Input {
    Terminal(pty_process::OwnedWritePty),
    /// `None` once the caller said end of input.
    Pipe(Option<tokio::process::ChildStdin>),
}

/// What the input task is asked to do, in order.
enum InputOp {
    Data(Vec<u8>),
    Resize(u16, u16),
    Eof,
}

/// Carries input to the process on a task of its own, so that a process
/// that does not read its input never stalls its output.
fn input_task(mut input: Input) -> mpsc::UnboundedSender<InputOp> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(op) = rx.recv().await {
            let ok = match (&mut input, op) {
                (Input::Terminal(t), InputOp::Data(d)) => write_all(t, &d).await,
                (Input::Pipe(Some(p)), InputOp::Data(d)) => write_all(p, &d).await,
                (Input::Terminal(t), InputOp::Resize(cols, rows)) => {
                    t.resize(pty_process::Size::new(rows, cols)).is_ok()
                }
                (Input::Pipe(p), InputOp::Eof) => {
                    // Closing the pipe is how a process sees end of input.
                    p.take();
                    true
                }
                _ => true,
            };
            if !ok {
                break;
            }
        }
    });
    tx
}

async fn write_all(to: &mut (impl AsyncWrite + Unpin), data: &[u8]) -> bool {
    to.write_all(data).await.is_ok() && to.flush().await.is_ok()
}

/// Reads each output into channel-tagged chunks until it closes.
fn output_tasks(outputs: Vec<(Channel, Reader)>) -> mpsc::Receiver<(Channel, Vec<u8>)> {
    let (tx, rx) = mpsc::channel(64);
    for (channel, mut reader) in outputs {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            // A terminal whose other end closed reads as an error (EIO):
            // that, like end of file, is the end of its output.
            while let Ok(n @ 1..) = reader.read(&mut buf).await {
                if tx.send((channel, buf[..n].to_vec())).await.is_err() {
                    break;
                }
            }
        });
    }
    rx
}

/// Relays between the caller and the process until the process ends (or is
/// stopped); returns how it ended.
async fn pump(
    child: &mut Child,
    input: Input,
    outputs: Vec<(Channel, Reader)>,
    socket: &mut Socket,
    stop: &CancellationToken,
    grace: Duration,
    confinement: &mut Option<Confinement>,
) -> Ended {
    let pid = child.id();
    let input = input_task(input);
    let mut output = output_tasks(outputs);
    let mut caller_gone = false;
    let ended = loop {
        tokio::select! {
            status = child.wait() => break exited(status, confinement),
            Some((channel, data)) = output.recv() => {
                if !caller_gone && socket.send(Message::Binary(frame(channel, &data).into())).await.is_err() {
                    caller_gone = true;
                }
            }
            message = socket.next(), if !caller_gone => match message {
                Some(Ok(Message::Binary(bytes))) => match parse_frame(&bytes) {
                    Some(berth_model::run::Message::Data(Channel::Stdin, data)) => {
                        let _ = input.send(InputOp::Data(data));
                    }
                    Some(berth_model::run::Message::Control(control)) => {
                        handle_control(control, &input, pid);
                    }
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    // Like closing a terminal window: the process is hung
                    // up, and stopped if it does not take the hint.
                    caller_gone = true;
                    if let Some(pid) = pid {
                        spawn::signal_group(pid, Signal::SIGHUP);
                    }
                    let ended = match tokio::time::timeout(grace, child.wait()).await {
                        Ok(status) => exited(status, confinement),
                        Err(_) => {
                            spawn::stop_group(child, grace).await;
                            Ended { exit_code: None, outcome: "was stopped: its caller went away".into() }
                        }
                    };
                    break ended;
                }
                Some(Ok(_)) => {}
            },
            () = stop.cancelled() => {
                spawn::stop_group(child, grace).await;
                break Ended::killed();
            }
        }
    };
    if let Some(pid) = pid {
        spawn::signal_group(pid, Signal::SIGKILL);
    }
    // The output written just before the end is still on its way.
    let deadline = tokio::time::Instant::now() + OUTPUT_DRAIN;
    if !caller_gone {
        while let Ok(Some((channel, data))) = tokio::time::timeout_at(deadline, output.recv()).await
        {
            if socket
                .send(Message::Binary(frame(channel, &data).into()))
                .await
                .is_err()
            {
                break;
            }
        }
    }
    ended
}

fn handle_control(control: Control, input: &mpsc::UnboundedSender<InputOp>, pid: Option<u32>) {
    match control {
        Control::Resize { cols, rows } => {
            let _ = input.send(InputOp::Resize(cols, rows));
        }
        Control::Eof => {
            let _ = input.send(InputOp::Eof);
        }
        Control::Signal { name } => {
            let signal = format!("SIG{}", name.trim_start_matches("SIG")).parse::<Signal>();
            match (signal, pid) {
                (Ok(signal), Some(pid)) => spawn::signal_group(pid, signal),
                (Err(_), _) => tracing::debug!("run: ignoring unknown signal {name:?}"),
                _ => {}
            }
        }
        _ => {}
    }
}

/// Waits for the caller's `Start`: the window size and terminal type.
async fn wait_for_start(socket: &mut Socket) -> Option<(u16, u16, Option<String>)> {
    while let Some(Ok(message)) = socket.next().await {
        if let Message::Binary(bytes) = message {
            if let Some(berth_model::run::Message::Control(Control::Start { cols, rows, term })) =
                parse_frame(&bytes)
            {
                return Some((cols, rows, term));
            }
        }
    }
    None
}

fn exited(
    status: std::io::Result<std::process::ExitStatus>,
    confinement: &mut Option<Confinement>,
) -> Ended {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => Ended {
            exit_code: s.code().or_else(|| s.signal().map(|sig| 128 + sig)),
            outcome: confine::describe_exit(confinement.as_mut(), s),
        },
        Err(e) => Ended {
            exit_code: None,
            outcome: format!("ended, but its status is unknown: {e}"),
        },
    }
}

fn could_not_start(e: std::io::Error) -> Ended {
    Ended {
        exit_code: None,
        outcome: format!("could not start: {e}"),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
