//! Running build tools: their command lines, environment and output.
//!
//! A step's stdout and stderr are read together, line by line, and each line
//! goes to the log as soon as it is complete; the last [`TAIL_LINES`] are
//! kept so a failure can say what the tool said.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

use crate::env::{tool_env, NodeEnv};
use crate::{BuildError, BuildOptions, LogSink};

/// Lines of a failed tool's output quoted in its [`BuildError::StepFailed`].
pub(crate) const TAIL_LINES: usize = 20;

/// A step as the user sees it when it fails.
pub(crate) struct Step {
    /// What was being done, e.g. "installing dependencies from requirements.txt".
    pub what: String,
    /// What to check when it fails.
    pub hint: String,
}

/// The output of a tool run to completion without streaming.
pub(crate) struct Captured {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Everything build steps share: the app directory, the options, the log.
pub(crate) struct Tools<'a, L> {
    /// Absolute, canonical app directory; the tools' working directory.
    pub app: PathBuf,
    pub opts: &'a BuildOptions,
    /// The tools' `HOME`, outside the app: also the working directory of
    /// commands that must not see the app's files.
    pub home: PathBuf,
    node: NodeEnv,
    log: &'a L,
}

impl<'a, L: LogSink> Tools<'a, L> {
    pub fn new(
        opts: &'a BuildOptions,
        app: PathBuf,
        home: PathBuf,
        node: NodeEnv,
        log: &'a L,
    ) -> Self {
        Self {
            app,
            opts,
            home,
            node,
            log,
        }
    }

    /// The app's virtualenv.
    pub fn venv(&self) -> PathBuf {
        self.app.join(".venv")
    }

    /// The virtualenv's interpreter.
    pub fn venv_python(&self) -> PathBuf {
        self.venv().join("bin").join("python")
    }

    /// A Heroku-style step header: `-----> text`.
    pub fn header(&self, text: &str) {
        self.log.line(&format!("-----> {text}"));
    }

    /// A warning the user should read: ` !     text`.
    pub fn notice(&self, text: &str) {
        self.log.line(&format!(" !     {text}"));
    }

    /// `uv` with the build environment, in the app directory.
    pub fn uv(&self) -> Command {
        self.command(&self.opts.uv, false)
    }

    /// The virtualenv's `python`, with the virtualenv activated.
    pub fn python(&self) -> Command {
        self.command(&self.venv_python(), true)
    }

    /// `program` with the build environment, in the app directory;
    /// `venv_bin_first` puts the virtualenv's `bin` in front of `PATH`.
    pub fn command(&self, program: &Path, venv_bin_first: bool) -> Command {
        let env = tool_env(
            &self.node,
            &self.opts.env,
            self.opts.python_search_path.as_ref(),
            &self.home,
            &self.opts.cache_dir,
            &self.venv(),
            venv_bin_first,
        );
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .envs(env)
            .current_dir(&self.app)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `cmd`, sending each line of its output to the log; fails with
    /// the step's hint and the output's last lines unless it exits with 0.
    pub async fn stream(&self, mut cmd: Command, step: &Step) -> Result<(), BuildError> {
        let program = program_name(&cmd);
        tracing::debug!(command = ?cmd.as_std(), "build step");
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|source| BuildError::Spawn { program, source })?;
        let mut tail = VecDeque::with_capacity(TAIL_LINES);
        let mut out = child.stdout.take().map(BufReader::new);
        let mut err = child.stderr.take().map(BufReader::new);
        let (mut out_buf, mut err_buf) = (Vec::new(), Vec::new());
        while out.is_some() || err.is_some() {
            // `read_until` keeps partial input in its buffer when the other
            // branch wins, so nothing is lost between iterations.
            tokio::select! {
                read = next_line(&mut out, &mut out_buf), if out.is_some() => {
                    self.take_line(read, &mut out, &mut out_buf, &mut tail);
                }
                read = next_line(&mut err, &mut err_buf), if err.is_some() => {
                    self.take_line(read, &mut err, &mut err_buf, &mut tail);
                }
            }
        }
        let status = child
            .wait()
            .await
            .map_err(|e| BuildError::io(format!("waiting for {}", step.what), e))?;
        if status.success() {
            return Ok(());
        }
        Err(BuildError::StepFailed {
            step: step.what.clone(),
            status: describe(status),
            hint: step.hint.clone(),
            output: render_tail(&tail),
        })
    }

    /// Sends a line to the log and the tail; closes the stream at its end
    /// (or on a read error, which a pipe does not really have).
    fn take_line<R>(
        &self,
        read: io::Result<usize>,
        stream: &mut Option<R>,
        buf: &mut Vec<u8>,
        tail: &mut VecDeque<String>,
    ) {
        // A cancelled `read_until` may have left an unterminated last line in
        // `buf` already, so the call that sees the end can return 0 with
        // something still to log.
        let at_end = matches!(read, Ok(0) | Err(_));
        if let Err(e) = &read {
            tracing::warn!(error = %e, "reading build tool output");
        }
        if !buf.is_empty() {
            let text = String::from_utf8_lossy(buf);
            let line = text.trim_end_matches(['\n', '\r']);
            self.log.line(line);
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line.to_owned());
            buf.clear();
        }
        if at_end {
            *stream = None;
        }
    }

    /// Runs `cmd` to completion and returns its output, logging nothing.
    pub async fn capture(&self, mut cmd: Command) -> Result<Captured, BuildError> {
        let program = program_name(&cmd);
        tracing::debug!(command = ?cmd.as_std(), "build query");
        let out = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(|source| BuildError::Spawn { program, source })?;
        Ok(Captured {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

impl Captured {
    /// A failure of this run as a [`BuildError::StepFailed`].
    pub fn failure(&self, step: &Step) -> BuildError {
        let mut tail: VecDeque<String> = VecDeque::new();
        for line in self.stdout.lines().chain(self.stderr.lines()) {
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line.to_owned());
        }
        BuildError::StepFailed {
            step: step.what.clone(),
            status: describe(self.status),
            hint: step.hint.clone(),
            output: render_tail(&tail),
        }
    }
}

async fn next_line<R: AsyncRead + Unpin>(
    reader: &mut Option<BufReader<R>>,
    buf: &mut Vec<u8>,
) -> io::Result<usize> {
    match reader {
        Some(r) => r.read_until(b'\n', buf).await,
        None => Ok(0),
    }
}

fn program_name(cmd: &Command) -> String {
    let program = Path::new(cmd.as_std().get_program());
    program
        .file_name()
        .unwrap_or(OsStr::new("build tool"))
        .to_string_lossy()
        .into_owned()
}

/// "exit status 1" or "killed by signal 9".
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

fn render_tail(tail: &VecDeque<String>) -> String {
    if tail.is_empty() {
        return "(the tool printed nothing)".into();
    }
    let mut out = String::from("last lines of output:");
    for line in tail {
        out.push_str("\n  ");
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Instant;

    use super::*;

    /// Runs `script` with sh as a build step, returning what was logged
    /// (with arrival times) and the result.
    async fn run(script: &str) -> (Vec<(Instant, String)>, Result<(), BuildError>) {
        let dir = tempfile::tempdir().unwrap();
        let opts = BuildOptions::new("uv", dir.path().join("cache"));
        let lines = Mutex::new(Vec::new());
        let sink = |line: &str| {
            lines
                .lock()
                .unwrap()
                .push((Instant::now(), line.to_owned()))
        };
        let tools = Tools::new(
            &opts,
            dir.path().to_path_buf(),
            dir.path().to_path_buf(),
            NodeEnv::default(),
            &sink,
        );
        let mut cmd = tools.command(Path::new("/bin/sh"), false);
        cmd.args(["-c", script]);
        let step = Step {
            what: "running the script".into(),
            hint: "fix the script".into(),
        };
        let result = tools.stream(cmd, &step).await;
        (lines.into_inner().unwrap(), result)
    }

    #[tokio::test]
    async fn streams_both_outputs_as_lines_arrive() {
        // Lines of two pipes keep their order only when time separates them.
        let (lines, result) =
            run("echo one; sleep 0.3; echo two >&2; sleep 0.3; printf three").await;
        result.unwrap();
        let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(text, ["one", "two", "three"]);
        let gap = lines[1].0 - lines[0].0;
        assert!(
            gap.as_millis() >= 200,
            "'one' was logged before the tool ended"
        );
    }

    #[tokio::test]
    async fn failure_quotes_the_last_lines_and_the_hint() {
        let (lines, result) = run("for i in $(seq 1 30); do echo line $i; done; exit 3").await;
        assert_eq!(lines.len(), 30);
        let err = result.unwrap_err().to_string();
        let (head, output) = err.split_once('\n').unwrap();
        assert_eq!(
            head,
            "running the script failed (exit status 3): fix the script"
        );
        let quoted: Vec<&str> = output.lines().skip(1).map(str::trim).collect();
        let want: Vec<String> = (11..=30).map(|i| format!("line {i}")).collect();
        assert_eq!(quoted, want);
    }

    #[tokio::test]
    async fn tools_start_with_a_cleared_environment() {
        let (lines, result) = run("echo \"cargo=${CARGO_MANIFEST_DIR:-unset} home=$HOME\"").await;
        result.unwrap();
        assert!(
            lines[0].1.starts_with("cargo=unset home=/"),
            "{}",
            lines[0].1
        );
    }
}
