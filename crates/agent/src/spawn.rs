//! How an app process is started: environment, working directory, process
//! group, output pipes.
//!
//! Every app process (instances, release phases) is started here and only
//! here, so per-app Unix users, cgroups and namespaces have one place to go.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use berth_client::logs::LogShipper;
use berth_model::NewLogLine;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// What to run, for whom.
pub struct ProcessSpec<'a> {
    /// Shell command line, as written in the Procfile.
    pub command: &'a str,
    /// The artifact directory; `.venv` inside it.
    pub dir: &'a Path,
    /// The release's config plus Berth's variables.
    pub env: &'a BTreeMap<String, String>,
    /// `web.1`, `release`, …: `DYNO`, and the log source.
    pub dyno: &'a str,
    pub port: Option<u16>,
    /// The app's home directory on this node.
    pub home: PathBuf,
    /// The cgroup the process enters before it runs (see [`crate::cgroup`]).
    pub cgroup: Option<crate::cgroup::Joiner>,
}

/// The PATH app processes get beyond their virtualenv: system directories
/// only, never the agent's own PATH.
const SYSTEM_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Starts the process in its own process group with a clean environment,
/// no input, and its output piped (instances, release phases, detached runs).
pub fn spawn(spec: &ProcessSpec<'_>) -> std::io::Result<Child> {
    spawn_with_stdin(spec, Stdio::null())
}

/// Like [`spawn`], with its input piped too (attached runs without a
/// terminal).
pub fn spawn_piped(spec: &ProcessSpec<'_>) -> std::io::Result<Child> {
    spawn_with_stdin(spec, Stdio::piped())
}

fn spawn_with_stdin(spec: &ProcessSpec<'_>, stdin: Stdio) -> std::io::Result<Child> {
    std::fs::create_dir_all(&spec.home)?;
    let mut cmd = Command::new(shell());
    cmd.arg("-c")
        .arg(spec.command)
        .current_dir(spec.dir)
        .env_clear()
        .envs(environment(spec))
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    if let Some(joiner) = spec.cgroup.clone() {
        // SAFETY: `Joiner::join` only calls open, write and close, which are
        // async-signal-safe, on paths allocated before the fork.
        unsafe {
            cmd.pre_exec(move || joiner.join());
        }
    }
    cmd.spawn()
}

/// Starts the process on a new pseudo-terminal of `cols` × `rows`, as the
/// leader of a new session whose controlling terminal it is — so Ctrl-C
/// typed by the caller interrupts it, as in a local shell. Returns the
/// terminal's controlling end.
pub fn spawn_in_terminal(
    spec: &ProcessSpec<'_>,
    cols: u16,
    rows: u16,
) -> std::io::Result<(Child, pty_process::Pty)> {
    std::fs::create_dir_all(&spec.home)?;
    let (pty, pts) = pty_process::open().map_err(std::io::Error::other)?;
    pty.resize(pty_process::Size::new(rows, cols))
        .map_err(std::io::Error::other)?;
    let mut cmd = pty_process::Command::new(shell())
        .arg("-c")
        .arg(spec.command)
        .current_dir(spec.dir)
        .env_clear()
        .envs(environment(spec))
        .kill_on_drop(false);
    if let Some(joiner) = spec.cgroup.clone() {
        // SAFETY: as in `spawn_with_stdin`. pty-process runs this hook after
        // its own (session and controlling terminal).
        cmd = unsafe { cmd.pre_exec(move || joiner.join()) };
    }
    let child = cmd.spawn(pts).map_err(std::io::Error::other)?;
    Ok((child, pty))
}

/// The shell that runs Procfile and `berth run` command lines. bash, when
/// there is one, because it execs a lone command in place of itself: the
/// process Berth started is then the app's own (gunicorn's master gets the
/// SIGTERM of a stop; python's REPL gets the terminal's Ctrl-C and the shell
/// does not die of it). dash keeps itself as the parent and dies of the
/// first signal.
fn shell() -> &'static str {
    static SHELL: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    SHELL.get_or_init(|| {
        if Path::new("/bin/bash").exists() {
            "/bin/bash"
        } else {
            "/bin/sh"
        }
    })
}

/// The environment of an app process: the release's config, then Berth's
/// own variables, which the config cannot override.
fn environment(spec: &ProcessSpec<'_>) -> Vec<(String, String)> {
    let venv = spec.dir.join(".venv");
    let mut env: Vec<(String, String)> = spec
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.extend([
        (
            "PATH".to_string(),
            format!("{}:{SYSTEM_PATH}", venv.join("bin").display()),
        ),
        ("VIRTUAL_ENV".into(), venv.display().to_string()),
        // Each app its own HOME: tools keep state there (gunicorn's control
        // socket, pip caches) and apps must not see each other's.
        ("HOME".into(), spec.home.display().to_string()),
        ("LANG".into(), "C.UTF-8".into()),
        ("PYTHONUNBUFFERED".into(), "1".into()),
        ("DYNO".into(), spec.dyno.to_string()),
    ]);
    if let Some(port) = spec.port {
        env.push(("PORT".into(), port.to_string()));
    }
    env
}

/// Sends `signal` to the whole process group led by `pid` (workers included).
pub fn signal_group(pid: u32, signal: Signal) {
    // ESRCH (group already gone) is the normal end of a stop.
    let _ = killpg(Pid::from_raw(pid as i32), signal);
}

/// Signals the group's leader only.
pub fn signal_leader(pid: u32, signal: Signal) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), signal);
}

/// Stops a whole process group: SIGTERM to every process, then SIGKILL to
/// what is left after `grace`. For one-off processes, whose every process
/// is the user's (no pre-fork master to let finish first).
pub async fn stop_group(child: &mut Child, grace: std::time::Duration) {
    let Some(pid) = child.id() else {
        return;
    };
    signal_group(pid, Signal::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        signal_group(pid, Signal::SIGKILL);
        let _ = child.wait().await;
    }
    signal_group(pid, Signal::SIGKILL);
}

/// Whether any process of the group led by `pid` is still alive.
pub fn group_alive(pid: u32) -> bool {
    killpg(Pid::from_raw(pid as i32), None).is_ok()
}

/// Forwards the child's stdout and stderr, line by line, to the app's log.
/// Returns a task that ends when both streams close; it also keeps the last
/// lines for error messages.
pub fn forward_output(
    child: &mut Child,
    app: &str,
    source: &str,
    scope: Option<&str>,
    logs: &LogShipper,
) -> tokio::task::JoinHandle<Vec<String>> {
    let out = child.stdout.take();
    let err = child.stderr.take();
    let (app, source, scope) = (app.to_string(), source.to_string(), scope.map(String::from));
    let line = move |line: String| NewLogLine {
        app: app.clone(),
        ts: berth_model::now_millis(),
        source: source.clone(),
        scope: scope.clone(),
        line,
        event: None,
    };
    let (a, b) = (
        pipe(out, line.clone(), logs.clone()),
        pipe(err, line, logs.clone()),
    );
    tokio::spawn(async move {
        let (mut a, b) = (a.await.unwrap_or_default(), b.await.unwrap_or_default());
        a.extend(b);
        let skip = a.len().saturating_sub(TAIL);
        a.split_off(skip)
    })
}

/// Lines of output kept for error messages.
const TAIL: usize = 20;

fn pipe<R: AsyncRead + Unpin + Send + 'static>(
    stream: Option<R>,
    make: impl Fn(String) -> NewLogLine + Send + 'static,
    logs: LogShipper,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut tail = std::collections::VecDeque::with_capacity(TAIL);
        let Some(stream) = stream else {
            return Vec::new();
        };
        let mut lines = BufReader::new(stream).lines();
        loop {
            match lines.next_line().await {
                Ok(Some(l)) => {
                    if tail.len() == TAIL {
                        tail.pop_front();
                    }
                    tail.push_back(l.clone());
                    logs.send(make(l));
                }
                Ok(None) => break,
                // Invalid UTF-8 or a read error: keep reading what follows.
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => continue,
                Err(_) => break,
            }
        }
        tail.into_iter().collect()
    })
}

/// "exited with status 1" / "killed by SIGKILL".
pub fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => match Signal::try_from(sig) {
            Ok(s) => format!("killed by {}", s.as_str()),
            Err(_) => format!("killed by signal {sig}"),
        },
        _ => "exited".into(),
    }
}

/// Picks a free TCP port for an app process by letting the kernel choose.
pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}
