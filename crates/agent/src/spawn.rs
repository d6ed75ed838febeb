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
}

/// The PATH app processes get beyond their virtualenv: system directories
/// only, never the agent's own PATH.
const SYSTEM_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Starts the process in its own process group with a clean environment.
pub fn spawn(spec: &ProcessSpec<'_>) -> std::io::Result<Child> {
    std::fs::create_dir_all(&spec.home)?;
    let venv = spec.dir.join(".venv");
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(spec.command)
        .current_dir(spec.dir)
        .env_clear()
        .envs(spec.env)
        .env(
            "PATH",
            format!("{}:{SYSTEM_PATH}", venv.join("bin").display()),
        )
        .env("VIRTUAL_ENV", &venv)
        // Each app its own HOME: tools keep state there (gunicorn's control
        // socket, pip caches) and apps must not see each other's.
        .env("HOME", &spec.home)
        .env("LANG", "C.UTF-8")
        .env("PYTHONUNBUFFERED", "1")
        .env("DYNO", spec.dyno)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    if let Some(port) = spec.port {
        cmd.env("PORT", port.to_string());
    }
    cmd.spawn()
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
