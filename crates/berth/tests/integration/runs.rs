//! One-off processes: `berth run` attached (pipes and a real terminal) and
//! detached, listed by `berth ps`, stopped by `berth ps:kill`.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::kit::*;

#[test]
fn a_run_returns_its_output_and_exit_code_with_the_apps_config() {
    let berth = Berth::up();
    berth.create_and_deploy("hello", &example("flask-hello"));
    berth.ok(&["config", "set", "GREETING=hola", "--app", "hello"]);

    let out = berth.run_python(
        "hello",
        "import os, sys; print(os.environ['GREETING'], os.environ['BERTH_RELEASE'], os.isatty(0)); \
         sys.stderr.write('to stderr\\n'); sys.exit(7)",
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(
        out.status.code(),
        Some(7),
        "the process's status is berth's: {stdout}{stderr}"
    );
    assert!(
        stdout.contains("hola v2 False"),
        "config of the live release, no terminal: {stdout}"
    );
    assert!(stderr.contains("to stderr"), "{stderr}");
    assert!(
        !stdout.contains("to stderr"),
        "stderr stays apart: {stdout}"
    );

    // Input flows until end of file.
    let mut child = berth
        .command()
        .args([
            "run",
            "--app",
            "hello",
            "--",
            "python",
            "-c",
            "import sys; print(sys.stdin.read().upper(), end='')",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"piped text\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "PIPED TEXT\n");

    let err = berth.fails(&["run", "--app", "nope", "--", "true"]);
    assert!(err.contains("no app named \"nope\""), "{err}");
    berth.ok(&["apps", "create", "empty"]);
    let err = berth.fails(&["run", "--app", "empty", "--", "true"]);
    assert!(
        err.contains("no live release") && err.contains("berth deploy"),
        "{err}"
    );
}

#[test]
fn detached_runs_log_their_output_show_in_ps_and_stop_on_ps_kill() {
    let berth = Berth::up();
    berth.create_and_deploy("hello", &example("flask-hello"));

    let out = berth.ok(&[
        "run",
        "--detach",
        "--app",
        "hello",
        "--",
        "python",
        "-c",
        "print('detached and done')",
    ]);
    assert!(out.contains("run.1") && out.contains("detached"), "{out}");
    wait_for(
        "the detached run's output in the log",
        Duration::from_secs(30),
        || {
            let log = berth.ok(&["logs", "--app", "hello", "--source", "run.1"]);
            log.contains("detached and done").then_some(())
        },
    );
    wait_for("the run's end as an event", Duration::from_secs(30), || {
        let events = berth.ok(&["events", "--app", "hello"]);
        events.contains("run.1 exited with status 0").then_some(())
    });

    berth.ok(&["run", "--detach", "--app", "hello", "--", "sleep", "300"]);
    let table = wait_for("run.2 running in ps", Duration::from_secs(30), || {
        let table = berth.ok(&["ps", "--app", "hello"]);
        (table.contains("run.2") && table.contains("running")).then_some(table)
    });
    assert!(
        table.contains("sleep 300") && table.contains("web.1"),
        "{table}"
    );
    let ps = berth.json(&["ps", "--app", "hello", "--json"]);
    let pid = ps["runs"][0]["pid"]
        .as_u64()
        .expect("a running run has a pid") as i32;

    let err = berth.fails(&["ps:kill", "web.1", "--app", "hello"]);
    assert!(err.contains("berth restart"), "{err}");
    let out = berth.ok(&["ps:kill", "run.2", "--app", "hello"]);
    assert!(out.contains("Stopping run.2"), "{out}");
    wait_for("run.2 gone from ps", Duration::from_secs(30), || {
        let ps = berth.json(&["ps", "--app", "hello", "--json"]);
        ps["runs"]
            .as_array()
            .is_some_and(|r| r.is_empty())
            .then_some(())
    });
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the process is gone"
    );
    let events = berth.ok(&["events", "--app", "hello"]);
    assert!(
        events.contains("run.2 was killed by `berth ps:kill`"),
        "{events}"
    );
    let err = berth.fails(&["ps:kill", "run.2", "--app", "hello"]);
    assert!(err.contains("already ended"), "{err}");
}

#[test]
fn an_interactive_run_works_through_a_real_terminal() {
    let berth = Berth::up();
    berth.create_and_deploy("hello", &example("flask-hello"));

    let mut term = Terminal::run(&berth, &["run", "--app", "hello", "--", "python", "-q"]);
    term.expect(">>> ");
    term.type_in("import shutil; print(shutil.get_terminal_size())\r");
    term.expect("columns=111, lines=33");
    term.expect(">>> ");
    // Ctrl-D ends the REPL, and with it the run.
    term.type_in("\x04");
    assert_eq!(term.exit_code(), Some(0), "{}", term.screen());

    let mut term = Terminal::run(&berth, &["run", "--app", "hello", "--", "python", "-q"]);
    term.expect(">>> ");
    // The marker is printed, not echoed, once python runs the line: a
    // Ctrl-C typed earlier would discard the line, as in any terminal.
    term.type_in("import time; print('zz' + 'z'); time.sleep(600)\r");
    term.expect("zzz");
    // Ctrl-C is typed into the remote terminal, which interrupts python.
    term.type_in("\x03");
    term.expect("KeyboardInterrupt");
    term.expect(">>> ");
    term.type_in("import sys; sys.exit(3)\r");
    assert_eq!(term.exit_code(), Some(3), "{}", term.screen());
}

/// `berth` on a real pseudo-terminal of 111×33, as a user's shell runs it.
struct Terminal {
    pty: pty_process::blocking::Pty,
    child: std::process::Child,
    screen: Arc<Mutex<String>>,
    /// How far `expect` has read the screen.
    seen: usize,
}

impl Terminal {
    fn run(berth: &Berth, args: &[&str]) -> Self {
        let (pty, pts) = pty_process::blocking::open().unwrap();
        pty.resize(pty_process::Size::new(33, 111)).unwrap();
        let child = pty_process::blocking::Command::new(BERTH)
            .args(args)
            .env("HOME", berth.dir.path().join("home"))
            .env("TERM", "xterm")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("BERTH_URL")
            .env_remove("BERTH_TOKEN")
            .spawn(pts)
            .unwrap();
        let screen = Arc::new(Mutex::new(String::new()));
        let mut reader = std::fs::File::from(pty.as_fd().try_clone_to_owned().unwrap());
        let shared = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                shared.lock().unwrap().push_str(&text);
            }
        });
        Self {
            pty,
            child,
            screen,
            seen: 0,
        }
    }

    fn screen(&self) -> String {
        self.screen.lock().unwrap().clone()
    }

    /// Waits until `what` shows after what was expected before.
    fn expect(&mut self, what: &str) {
        let from = self.seen;
        self.seen = wait_for(what, Duration::from_secs(60), || {
            let s = self.screen.lock().unwrap();
            let from = from.min(s.len());
            s[from..].find(what).map(|i| from + i + what.len())
        });
    }

    fn type_in(&mut self, keys: &str) {
        self.pty.write_all(keys.as_bytes()).unwrap();
    }

    fn exit_code(&mut self) -> Option<i32> {
        let child = &mut self.child;
        wait_for("berth run to exit", Duration::from_secs(30), || {
            child.try_wait().unwrap()
        })
        .code()
    }
}
