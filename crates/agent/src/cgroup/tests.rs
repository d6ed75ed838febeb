//! Against the host's real cgroup filesystem, with real processes. Each test
//! owns a uniquely named parent group, removed (processes killed) even when
//! the test fails. Where cgroups are not writable the tests say why and
//! skip; set BERTH_REQUIRE_CGROUPS=1 to make that a failure instead.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use super::*;

/// A parent group for one test; dropping it kills and removes everything
/// under it.
struct TestParent {
    cgroups: Cgroups,
}

fn test_parent() -> Option<TestParent> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "berth-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    match Cgroups::try_detect(&name) {
        Ok(Ok(cgroups)) => Some(TestParent { cgroups }),
        Ok(Err(why)) => {
            if std::env::var_os("BERTH_REQUIRE_CGROUPS").is_some() {
                panic!("cgroups unusable and BERTH_REQUIRE_CGROUPS is set: {why}");
            }
            eprintln!("\n*** SKIPPED: cgroups are not usable here: {why} ***\n");
            None
        }
        Err(e) => panic!("cgroups are set up in a way Berth cannot use: {e}"),
    }
}

impl Drop for TestParent {
    fn drop(&mut self) {
        for parent in &self.cgroups.parents {
            let children = fs::read_dir(&parent.dir).into_iter().flatten().flatten();
            for child in children.filter(|c| c.path().is_dir()) {
                kill_blocking(&child.path());
                let _ = fs::remove_dir(child.path());
            }
            let _ = fs::remove_dir(&parent.dir);
        }
    }
}

/// SIGKILLs what is in `dir` until it is empty (or 5 s passed).
fn kill_blocking(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        if procs.trim().is_empty() {
            return;
        }
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(POLL);
    }
}

/// Starts `program` inside `group`, the way the agent does.
fn spawn_in(group: &Cgroup, program: &str, args: &[&str]) -> Child {
    let joiner = group.joiner();
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: Joiner::join only calls open/write/close on prebuilt paths.
    unsafe { cmd.pre_exec(move || joiner.join()) };
    cmd.spawn().expect("spawn a test process")
}

async fn stdout_of(child: &mut Child) -> String {
    let mut out = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out).await;
    }
    out
}

/// Polls `cond` until it holds; panics with `what` after 10 s.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// The interpreter itself: `python3` may be a shim (pyenv) that forks
/// first, which would count against a group's process limit.
fn python() -> &'static str {
    static PYTHON: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 runs");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    })
}

/// Touches every page of 300 MiB, then says it survived.
const ALLOCATE_300_MIB: &str = "x = 'x' * (300 << 20); print('survived', flush=True)";

#[tokio::test]
async fn a_process_over_its_memory_limit_is_oom_killed_and_counted() {
    let Some(t) = test_parent() else { return };
    let limits = Limits {
        memory_bytes: Some(64 << 20),
        ..Limits::default()
    };
    let group = t.cgroups.create("oom", &limits).unwrap();
    let before = group.oom_kills().unwrap();

    let mut child = spawn_in(&group, python(), &["-c", ALLOCATE_300_MIB]);
    let out = stdout_of(&mut child).await;
    let status = child.wait().await.unwrap();

    assert_eq!(status.signal(), Some(Signal::SIGKILL as i32), "{status:?}");
    assert!(!out.contains("survived"), "{out}");
    assert!(group.oom_kills().unwrap() > before);
    assert!(group.was_oom_killed(before, status).unwrap());
}

#[tokio::test]
async fn without_a_memory_limit_the_same_process_lives_and_no_oom_is_reported() {
    let Some(t) = test_parent() else { return };
    let group = t.cgroups.create("free", &Limits::default()).unwrap();
    let before = group.oom_kills().unwrap();

    let mut child = spawn_in(&group, python(), &["-c", ALLOCATE_300_MIB]);
    let out = stdout_of(&mut child).await;
    let status = child.wait().await.unwrap();

    assert!(
        status.success() && out.contains("survived"),
        "{status:?} {out}"
    );
    assert!(!group.was_oom_killed(before, status).unwrap());
}

#[tokio::test]
async fn a_sigkill_from_elsewhere_is_not_an_oom_kill() {
    let Some(t) = test_parent() else { return };
    let limits = Limits {
        memory_bytes: Some(64 << 20),
        ..Limits::default()
    };
    let group = t.cgroups.create("killed", &limits).unwrap();
    let before = group.oom_kills().unwrap();
    let mut child = spawn_in(&group, "sleep", &["300"]);
    child.start_kill().unwrap();
    let status = child.wait().await.unwrap();
    assert_eq!(status.signal(), Some(Signal::SIGKILL as i32));
    assert!(!group.was_oom_killed(before, status).unwrap());
}

#[tokio::test]
async fn memory_current_counts_what_the_groups_processes_use() {
    let Some(t) = test_parent() else { return };
    let group = t.cgroups.create("usage", &Limits::default()).unwrap();
    let script =
        "import sys, time; x = 'x' * (40 << 20); print('ready', flush=True); time.sleep(300)";
    let mut child = spawn_in(&group, python(), &["-c", script]);
    let mut ready = [0u8; 6];
    let stdout = child.stdout.as_mut().unwrap();
    stdout.read_exact(&mut ready).await.unwrap();

    let used = group.memory_current().unwrap();
    assert!(used >= 40 << 20, "memory_current {used} < 40 MiB");
    group.kill_all().await.unwrap();
}

#[tokio::test]
async fn a_process_in_a_group_of_five_pids_cannot_fork_a_fifth_child() {
    let Some(t) = test_parent() else { return };
    let limits = Limits {
        pids_max: Some(5),
        ..Limits::default()
    };
    let group = t.cgroups.create("forks", &limits).unwrap();
    let script = "\
import errno, os, time
n = 0
try:
    for _ in range(10):
        if os.fork() == 0:
            os.close(1)  # the test reads stdout to its end
            time.sleep(300)
            os._exit(0)
        n += 1
except OSError as e:
    print(f'forked {n}, then {errno.errorcode[e.errno]}', flush=True)
else:
    print(f'forked {n}', flush=True)
";
    let mut child = spawn_in(&group, python(), &["-c", script]);
    let out = stdout_of(&mut child).await;
    child.wait().await.unwrap();

    // Python itself plus four children make five.
    assert_eq!(out.trim(), "forked 4, then EAGAIN");
    assert_eq!(group.procs().unwrap().len(), 4, "the children still run");
    group.kill_all().await.unwrap();
    assert!(group.procs().unwrap().is_empty());
}

#[tokio::test]
async fn kill_all_empties_a_tree_that_left_its_process_group() {
    kill_all_empties_a_tree(true).await;
}

/// Kernels without `cgroup.kill` (v1 only, or before 5.14) signal each pid.
#[tokio::test]
async fn kill_all_without_cgroup_kill_empties_a_tree_too() {
    kill_all_empties_a_tree(false).await;
}

async fn kill_all_empties_a_tree(use_kill_file: bool) {
    let Some(t) = test_parent() else { return };
    let group = t.cgroups.create("tree", &Limits::default()).unwrap();
    let tree = "sleep 300 & setsid sleep 300 & sh -c 'sleep 300 & sleep 300 & wait' & wait";
    let mut child = spawn_in(&group, "sh", &["-c", tree]);
    // Six processes, one of which left the session (and so the process
    // group): killing the process group would miss it.
    until(
        "the whole tree runs, one process in a session of its own",
        || {
            let sessions: Vec<_> = group
                .procs()
                .unwrap_or_default()
                .into_iter()
                .map(session)
                .collect();
            sessions.len() >= 6 && sessions.iter().any(|s| *s != sessions[0])
        },
    )
    .await;

    group.kill_all_with(use_kill_file).await.unwrap();

    assert!(group.procs().unwrap().is_empty());
    let status = child.wait().await.unwrap();
    assert_eq!(status.signal(), Some(Signal::SIGKILL as i32));
}

/// The session id of `pid`, from /proc/<pid>/stat (0 if it is gone).
fn session(pid: u32) -> u32 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    // state ppid pgrp session
    after_comm
        .split_whitespace()
        .nth(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn add_process_moves_a_running_process_in() {
    let Some(t) = test_parent() else { return };
    let group = t.cgroups.create("moved", &Limits::default()).unwrap();
    let mut child = Command::new("sleep")
        .arg("300")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();

    group.add_process(pid).unwrap();

    assert_eq!(group.procs().unwrap(), [pid]);
    group.kill_all().await.unwrap();
    assert_eq!(
        child.wait().await.unwrap().signal(),
        Some(Signal::SIGKILL as i32)
    );
}

#[tokio::test]
async fn a_cpu_limited_busy_loop_is_throttled() {
    let Some(t) = test_parent() else { return };
    let limits = Limits {
        cpu_millis: Some(50),
        ..Limits::default()
    };
    let group = t.cgroups.create("busy", &limits).unwrap();
    let _child = spawn_in(&group, python(), &["-c", "while True: pass"]);
    let cpu = member(&group.members, Controller::Cpu);
    let stat = cpu.dir.join("cpu.stat");
    until("the kernel throttles the group", || {
        fs::read_to_string(&stat).is_ok_and(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("nr_throttled "))
                .is_some_and(|n| n.trim() != "0")
        })
    })
    .await;
    group.kill_all().await.unwrap();
}

#[tokio::test]
async fn remove_refuses_a_running_group_and_cleans_up_an_empty_one() {
    let Some(t) = test_parent() else { return };
    let group = t.cgroups.create("gone", &Limits::default()).unwrap();
    let _child = spawn_in(&group, "sleep", &["300"]);

    let err = group.remove().await.unwrap_err();
    assert!(matches!(err, CgroupError::Busy { count: 1, .. }), "{err}");
    assert!(group.path().is_dir());

    group.kill_all().await.unwrap();
    group.remove().await.unwrap();
    for m in &group.members {
        assert!(!m.dir.exists(), "{} is left", m.dir.display());
    }
}

#[tokio::test]
async fn create_refuses_a_group_that_still_runs_and_reuses_an_empty_one() {
    let Some(t) = test_parent() else { return };
    let group = t.cgroups.create("web.1", &Limits::default()).unwrap();
    let _child = spawn_in(&group, "sleep", &["300"]);

    let err = t.cgroups.create("web.1", &Limits::default()).unwrap_err();
    assert!(matches!(err, CgroupError::Busy { count: 1, .. }), "{err}");

    group.kill_all().await.unwrap();
    let limits = Limits {
        pids_max: Some(7),
        ..Limits::default()
    };
    let again = t.cgroups.create("web.1", &limits).unwrap();
    let pids = member(&again.members, Controller::Pids);
    assert_eq!(read(&pids.dir.join("pids.max")).unwrap().trim(), "7");
}

#[tokio::test]
async fn remove_leftovers_stops_what_a_previous_agent_left_running() {
    let Some(t) = test_parent() else { return };
    let mut children = Vec::new();
    for name in ["web.1", "worker.1"] {
        let group = t.cgroups.create(name, &Limits::default()).unwrap();
        children.push(spawn_in(&group, "sleep", &["300"]));
    }

    assert_eq!(t.cgroups.remove_leftovers().await.unwrap(), 2);

    for p in &t.cgroups.parents {
        let left: Vec<_> = fs::read_dir(&p.dir)
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_dir())
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
    for mut child in children {
        assert_eq!(
            child.wait().await.unwrap().signal(),
            Some(Signal::SIGKILL as i32)
        );
    }
}

#[test]
fn names_and_limits_are_checked_before_touching_the_filesystem() {
    for bad in [
        "",
        ".hidden",
        "a/b",
        "../up",
        "sp ace",
        "x".repeat(201).as_str(),
    ] {
        assert!(
            matches!(validate_name(bad), Err(CgroupError::InvalidName { .. })),
            "{bad:?} accepted"
        );
    }
    validate_name("hello-v3-web.1").unwrap();
    validate_parent("berth/tests").unwrap();
    assert!(validate_parent("berth/../etc").is_err());
    let too_small = [
        Limits {
            memory_bytes: Some(4096),
            ..Limits::default()
        },
        Limits {
            cpu_millis: Some(5),
            ..Limits::default()
        },
        Limits {
            pids_max: Some(0),
            ..Limits::default()
        },
    ];
    for limits in too_small {
        let err = limits.validate().unwrap_err();
        assert!(err.to_string().contains("at least"), "{err}");
    }
}
