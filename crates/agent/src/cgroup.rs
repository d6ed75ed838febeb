//! Per-instance cgroups: memory, CPU and process-count limits for app
//! processes, telling an out-of-memory kill from any other SIGKILL, and
//! killing a whole process tree — daemonized grandchildren included, which a
//! process group misses.
//!
//! Every instance gets a leaf group `<parent>/<name>` on each hierarchy that
//! carries a controller Berth uses (memory, cpu, pids). The layout is found
//! at runtime from the mount table ([`Layout`]): pure cgroup v2, v1, or
//! hybrid (v1 controllers plus a controller-less v2 mount, used to track and
//! kill processes with `cgroup.kill`).
//!
//! cgroup v2 lets a group give controllers to its children only while no
//! process runs in it, so the parent holds no process, only leaves; the
//! agent itself stays wherever it was started (its systemd unit).
//!
//! # Placing a process
//! A process must enter its group before it runs any code of its own, or
//! whatever it forks first escapes the limits. [`Joiner::join`] does that
//! from the child between fork and exec:
//!
//! ```ignore
//! let joiner = cgroup.joiner();
//! // SAFETY: `Joiner::join` only calls open, write and close, which are
//! // async-signal-safe, on paths allocated before the fork.
//! unsafe { cmd.pre_exec(move || joiner.join()) };
//! ```
//!
//! std runs `pre_exec` hooks after `Command::uid`/`gid` took effect, and an
//! unprivileged process may not move itself between groups; with per-app
//! users, drop privileges in a `pre_exec` hook registered after this one
//! instead of with `uid`/`gid`.
//!
//! # Layout
//! - `layout`: which hierarchy carries which controller.
//! - `error`: [`CgroupError`].

mod error;
mod layout;
#[cfg(test)]
mod tests;

pub use error::CgroupError;
pub use layout::Layout;

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use layout::{Controller, Version};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::unistd::Pid;

/// The parent group Berth uses unless told otherwise.
pub const DEFAULT_PARENT: &str = "berth";

/// CFS period: 100 ms, the kernel default, so quotas read like the docs.
const CPU_PERIOD_US: u64 = 100_000;
/// How long SIGKILLed processes get to leave their group. Only processes
/// stuck in uninterruptible I/O take this long.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an empty group may stay busy (the kernel finishing exits).
const REMOVE_TIMEOUT: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(10);

/// Resource limits of one group; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// RAM, swap included: at the limit the kernel's OOM killer SIGKILLs a
    /// process of the group.
    pub memory_bytes: Option<u64>,
    /// CPU time in thousandths of a core: 1000 is one full core, 500 half.
    pub cpu_millis: Option<u32>,
    /// Processes and threads together; `fork` fails with EAGAIN beyond it.
    pub pids_max: Option<u32>,
}

/// The parent group of every instance group, on each hierarchy used.
#[derive(Debug, Clone)]
pub struct Cgroups {
    layout: Layout,
    parents: Vec<Member>,
    oom_exact: bool,
}

/// One instance's group. Dropping it leaves the group in place: call
/// [`Cgroup::kill_all`] and [`Cgroup::remove`].
#[derive(Debug)]
pub struct Cgroup {
    name: String,
    members: Vec<Member>,
    joiner: Joiner,
    oom_exact: bool,
}

/// Moves the calling process into a group; built before the fork, used
/// inside it (see the module docs).
#[derive(Debug, Clone)]
pub struct Joiner {
    procs: Vec<CString>,
}

/// A group's directory on one hierarchy.
#[derive(Debug, Clone)]
struct Member {
    dir: PathBuf,
    version: Version,
    controllers: Vec<Controller>,
}

impl Limits {
    fn validate(&self) -> Result<(), CgroupError> {
        if self.memory_bytes.is_some_and(|b| b < 1 << 20) {
            return Err(CgroupError::InvalidLimit(
                "memory must be at least 1 MiB: no process starts in less".into(),
            ));
        }
        if self.cpu_millis.is_some_and(|m| m < 10) {
            return Err(CgroupError::InvalidLimit(
                "CPU must be at least 10 millicores: the kernel's smallest quota is 1 ms per \
                 100 ms"
                    .into(),
            ));
        }
        if self.pids_max == Some(0) {
            return Err(CgroupError::InvalidLimit(
                "the process limit must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

impl Cgroups {
    /// Finds the host's cgroup layout and prepares `parent` (a path relative
    /// to each hierarchy's root, e.g. [`DEFAULT_PARENT`]) to hold instance
    /// groups, enabling the controllers on the way down on cgroup v2.
    ///
    /// `Ok(None)` when cgroups cannot be used here (controller missing,
    /// read-only mount, not root); the reason is logged once, here, and the
    /// agent should run its processes without limits. `Err` when cgroups are
    /// there but set up in a way Berth cannot use: fix the host.
    pub fn detect(parent: &str) -> Result<Option<Self>, CgroupError> {
        match Self::try_detect(parent)? {
            Ok(cgroups) => {
                tracing::info!(
                    "cgroups: {}, instance groups under {}",
                    cgroups.layout,
                    cgroups.describe()
                );
                Ok(Some(cgroups))
            }
            Err(why) => {
                tracing::warn!(
                    "cgroups unusable, app processes run without memory, CPU or process \
                     limits: {why}"
                );
                Ok(None)
            }
        }
    }

    /// `Ok(Err(why))`: unusable here, for the reason given.
    fn try_detect(parent: &str) -> Result<Result<Self, String>, CgroupError> {
        validate_parent(parent)?;
        let mountinfo = match fs::read_to_string("/proc/self/mountinfo") {
            Ok(text) => text,
            Err(e) => return Ok(Err(format!("cannot read /proc/self/mountinfo: {e}"))),
        };
        let plan = match layout::plan(&layout::parse_mountinfo(&mountinfo), |mount| {
            fs::read_to_string(mount.join("cgroup.controllers")).ok()
        }) {
            Ok(plan) => plan,
            Err(why) => return Ok(Err(why)),
        };
        let mut parents = Vec::new();
        for h in plan.hierarchies {
            let dir = h.mount.join(parent);
            if let Err(e) = fs::create_dir_all(&dir) {
                if h.controllers.is_empty() {
                    // Only there to track processes: the v1 hierarchies do
                    // that too, just less atomically.
                    tracing::debug!("cgroups: not using {}: {e}", dir.display());
                    continue;
                }
                if matches!(
                    e.raw_os_error().map(Errno::from_raw),
                    Some(Errno::EACCES | Errno::EPERM | Errno::EROFS)
                ) {
                    return Ok(Err(format!(
                        "cannot create {}: {e} — run the agent as root, or give it a \
                         delegated cgroup",
                        dir.display()
                    )));
                }
                return Err(CgroupError::io("create", dir, e));
            }
            if h.version == Version::V2 && !h.controllers.is_empty() {
                enable_controllers(&h.mount, parent, &h.controllers)?;
            }
            parents.push(Member {
                dir,
                version: h.version,
                controllers: h.controllers,
            });
        }
        let mut cgroups = Self {
            layout: plan.layout,
            parents,
            oom_exact: true,
        };
        let memory = cgroups.member(Controller::Memory);
        if memory.version == Version::V1 {
            let control = memory.dir.join("memory.oom_control");
            cgroups.oom_exact = read(&control)?.lines().any(|l| l.starts_with("oom_kill "));
            if !cgroups.oom_exact {
                tracing::warn!(
                    "cgroups: {} has no oom_kill count (kernel before 4.13): out-of-memory \
                     kills are guessed from memory.failcnt",
                    control.display()
                );
            }
        }
        Ok(Ok(cgroups))
    }

    /// How the host's cgroups are arranged.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Creates (or reuses, if empty) the group `name` under the parent and
    /// sets its limits. A group still holding processes is an error:
    /// [`CgroupError::Busy`].
    pub fn create(&self, name: &str, limits: &Limits) -> Result<Cgroup, CgroupError> {
        validate_name(name)?;
        limits.validate()?;
        let group = self.open(name)?;
        for (i, m) in group.members.iter().enumerate() {
            match fs::create_dir(&m.dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && m.dir.is_dir() => {}
                Err(e) => {
                    group.members[..i].iter().for_each(Member::discard);
                    return Err(CgroupError::io("create", &m.dir, e));
                }
            }
        }
        let count = group.procs()?.len();
        if count > 0 {
            return Err(CgroupError::Busy {
                path: group.path().to_path_buf(),
                count,
            });
        }
        if let Err(e) = group.set_limits(limits) {
            group.members.iter().for_each(Member::discard);
            return Err(e);
        }
        Ok(group)
    }

    /// Kills and removes every group under the parent: what a previous run
    /// of the agent left behind. Their processes are outside the agent's
    /// own (systemd) cgroup, so nothing else stops them. Returns how many
    /// groups there were.
    pub async fn remove_leftovers(&self) -> Result<usize, CgroupError> {
        let mut names = Vec::new();
        for p in &self.parents {
            let entries = fs::read_dir(&p.dir).map_err(|e| CgroupError::io("list", &p.dir, e))?;
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if entry.path().is_dir() && !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        for name in &names {
            let group = self.open(name)?;
            group.kill_all().await?;
            group.remove().await?;
        }
        Ok(names.len())
    }

    /// The group `name` without touching the filesystem.
    fn open(&self, name: &str) -> Result<Cgroup, CgroupError> {
        let members: Vec<Member> = self
            .parents
            .iter()
            .map(|p| Member {
                dir: p.dir.join(name),
                version: p.version,
                controllers: p.controllers.clone(),
            })
            .collect();
        let procs = members
            .iter()
            .map(|m| {
                CString::new(m.dir.join("cgroup.procs").as_os_str().as_bytes()).map_err(|_| {
                    CgroupError::InvalidName {
                        name: name.into(),
                        why: "contains a NUL byte",
                    }
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Cgroup {
            name: name.into(),
            members,
            joiner: Joiner { procs },
            oom_exact: self.oom_exact,
        })
    }

    fn member(&self, c: Controller) -> &Member {
        member(&self.parents, c)
    }

    fn describe(&self) -> String {
        let dirs: Vec<_> = self
            .parents
            .iter()
            .map(|p| p.dir.display().to_string())
            .collect();
        dirs.join(", ")
    }
}

impl Cgroup {
    /// The name given to [`Cgroups::create`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The group's directory on the memory hierarchy, for messages.
    pub fn path(&self) -> &Path {
        &member(&self.members, Controller::Memory).dir
    }

    /// What moves a child into this group between fork and exec.
    pub fn joiner(&self) -> Joiner {
        self.joiner.clone()
    }

    /// Moves a running process (not its threads' future children only: the
    /// whole process) into the group. Prefer [`Cgroup::joiner`] for new
    /// processes: anything forked before this call stays outside.
    pub fn add_process(&self, pid: u32) -> Result<(), CgroupError> {
        for m in &self.members {
            write(&m.dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Sets (or resets to unlimited) every limit of the group; it may run.
    pub fn set_limits(&self, limits: &Limits) -> Result<(), CgroupError> {
        limits.validate()?;
        let mem = member(&self.members, Controller::Memory);
        let bytes = limits.memory_bytes.map(|b| b.to_string());
        match mem.version {
            Version::V2 => {
                write(
                    &mem.dir.join("memory.max"),
                    bytes.as_deref().unwrap_or("max"),
                )?;
                // Without this a limited app swaps instead of being stopped,
                // and the limit is not what the user asked for.
                let swap = mem.dir.join("memory.swap.max");
                if swap.exists() {
                    write(&swap, if bytes.is_some() { "0" } else { "max" })?;
                }
            }
            Version::V1 => {
                // memsw (RAM + swap) must stay >= the RAM limit at every
                // step: lift it, set RAM, then lower it to match.
                let memsw = mem.dir.join("memory.memsw.limit_in_bytes");
                let has_memsw = memsw.exists();
                if has_memsw {
                    write(&memsw, "-1")?;
                }
                write(
                    &mem.dir.join("memory.limit_in_bytes"),
                    bytes.as_deref().unwrap_or("-1"),
                )?;
                if let (true, Some(b)) = (has_memsw, &bytes) {
                    write(&memsw, b)?;
                }
            }
        }
        let cpu = member(&self.members, Controller::Cpu);
        let quota = limits
            .cpu_millis
            .map(|m| (u64::from(m) * CPU_PERIOD_US / 1000).to_string());
        match cpu.version {
            Version::V2 => write(
                &cpu.dir.join("cpu.max"),
                &format!("{} {CPU_PERIOD_US}", quota.as_deref().unwrap_or("max")),
            )?,
            Version::V1 => {
                write(
                    &cpu.dir.join("cpu.cfs_period_us"),
                    &CPU_PERIOD_US.to_string(),
                )?;
                write(
                    &cpu.dir.join("cpu.cfs_quota_us"),
                    quota.as_deref().unwrap_or("-1"),
                )?;
            }
        }
        let pids = member(&self.members, Controller::Pids);
        let max = limits.pids_max.map(|n| n.to_string());
        write(&pids.dir.join("pids.max"), max.as_deref().unwrap_or("max"))
    }

    /// The pids of every process in the group.
    pub fn procs(&self) -> Result<Vec<u32>, CgroupError> {
        let mut pids = Vec::new();
        for m in &self.members {
            let path = m.dir.join("cgroup.procs");
            let text = match fs::read_to_string(&path) {
                Ok(text) => text,
                // Removed: no process can be in it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(CgroupError::io("read", path, e)),
            };
            for line in text.lines() {
                let pid = line.trim().parse().map_err(|_| CgroupError::Parse {
                    path: path.clone(),
                    content: line.into(),
                })?;
                pids.push(pid);
            }
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// How many processes of the group the kernel's OOM killer has killed
    /// since the group was created: exact on cgroup v2 (`memory.events`)
    /// and on v1 since Linux 4.13 (`memory.oom_control`). On older v1
    /// kernels it is the number of times the memory limit was hit
    /// (`memory.failcnt`): a rise together with a SIGKILL is then only a
    /// likely OOM kill.
    pub fn oom_kills(&self) -> Result<u64, CgroupError> {
        let mem = member(&self.members, Controller::Memory);
        let (file, key) = match (mem.version, self.oom_exact) {
            (Version::V2, _) => ("memory.events", Some("oom_kill")),
            (Version::V1, true) => ("memory.oom_control", Some("oom_kill")),
            (Version::V1, false) => ("memory.failcnt", None),
        };
        let path = mem.dir.join(file);
        let text = read(&path)?;
        let value = match key {
            Some(key) => text.lines().find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == key).then_some(v)
            }),
            None => Some(text.as_str()),
        };
        value
            .and_then(|v| v.trim().parse().ok())
            .ok_or(CgroupError::Parse {
                path,
                content: text,
            })
    }

    /// Whether a process of this group that ended with `status` was killed
    /// for running out of memory, given [`Cgroup::oom_kills`] read before it
    /// started (or at the previous check).
    pub fn was_oom_killed(&self, before: u64, status: ExitStatus) -> Result<bool, CgroupError> {
        if status.signal() != Some(Signal::SIGKILL as i32) {
            return Ok(false);
        }
        Ok(self.oom_kills()? > before)
    }

    /// Memory charged to the group now, page cache included, in bytes.
    pub fn memory_current(&self) -> Result<u64, CgroupError> {
        let mem = member(&self.members, Controller::Memory);
        let file = match mem.version {
            Version::V2 => "memory.current",
            Version::V1 => "memory.usage_in_bytes",
        };
        let path = mem.dir.join(file);
        let text = read(&path)?;
        text.trim().parse().map_err(|_| CgroupError::Parse {
            path,
            content: text,
        })
    }

    /// SIGKILLs every process in the group and waits until it is empty.
    /// Uses `cgroup.kill` (Linux 5.14+, v2) when there is one: it cannot
    /// miss a process forked meanwhile. Otherwise signals each listed pid
    /// until none is left.
    pub async fn kill_all(&self) -> Result<(), CgroupError> {
        self.kill_all_with(true).await
    }

    async fn kill_all_with(&self, use_kill_file: bool) -> Result<(), CgroupError> {
        let kill_file = self
            .members
            .iter()
            .filter(|m| m.version == Version::V2)
            .map(|m| m.dir.join("cgroup.kill"))
            .find(|f| use_kill_file && f.exists());
        let start = Instant::now();
        loop {
            let pids = self.procs()?;
            if pids.is_empty() {
                return Ok(());
            }
            if start.elapsed() > KILL_TIMEOUT {
                return Err(CgroupError::KillTimeout {
                    path: self.path().to_path_buf(),
                    count: pids.len(),
                    waited: KILL_TIMEOUT,
                });
            }
            match &kill_file {
                Some(f) => write(f, "1")?,
                // A pid read here could in principle be reused by the time
                // it is signalled; that needs the pid space to wrap within
                // microseconds, and only kernels without cgroup.kill take
                // this path.
                None => {
                    for pid in pids {
                        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                    }
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Removes the group's directories. The group must be empty
    /// ([`Cgroup::kill_all`]); a group that stays busy is an error.
    pub async fn remove(&self) -> Result<(), CgroupError> {
        let start = Instant::now();
        for m in &self.members {
            loop {
                match fs::remove_dir(&m.dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    // Exiting processes leave the group a moment after
                    // they stop being listed.
                    Err(e) if e.raw_os_error() == Some(Errno::EBUSY as i32) => {
                        if start.elapsed() > REMOVE_TIMEOUT {
                            return Err(CgroupError::Busy {
                                path: m.dir.clone(),
                                count: self.procs()?.len(),
                            });
                        }
                        tokio::time::sleep(POLL).await;
                    }
                    Err(e) => return Err(CgroupError::io("remove", &m.dir, e)),
                }
            }
        }
        Ok(())
    }
}

impl Joiner {
    /// Moves the calling process into the group by writing `0` (the writer
    /// itself) to each hierarchy's `cgroup.procs`.
    ///
    /// Async-signal-safe, so it may run in a `pre_exec` hook of a
    /// multithreaded parent: it allocates nothing and only calls open,
    /// write and close on C strings built before the fork.
    pub fn join(&self) -> io::Result<()> {
        for procs in &self.procs {
            let fd = nix::fcntl::open(
                procs.as_c_str(),
                OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            nix::unistd::write(&fd, b"0")?;
        }
        Ok(())
    }
}

impl Member {
    /// Best-effort rmdir on an error path; the error already reported
    /// matters more.
    fn discard(&self) {
        let _ = fs::remove_dir(&self.dir);
    }
}

/// The member carrying `c`; `detect` placed every controller.
fn member(members: &[Member], c: Controller) -> &Member {
    members
        .iter()
        .find(|m| m.controllers.contains(&c))
        .expect("Cgroups::detect assigns every controller a hierarchy")
}

/// On v2, hands `controllers` down from the hierarchy's root to `parent`
/// (inclusive), so that instance groups under `parent` get them.
fn enable_controllers(
    mount: &Path,
    parent: &str,
    controllers: &[Controller],
) -> Result<(), CgroupError> {
    let own = own_v2_cgroup();
    let mut dir = mount.to_path_buf();
    let mut dirs = vec![dir.clone()];
    for part in parent.split('/') {
        dir.push(part);
        dirs.push(dir.clone());
    }
    for dir in dirs {
        let file = dir.join("cgroup.subtree_control");
        let enabled = read(&file)?;
        let missing: Vec<String> = controllers
            .iter()
            .filter(|c| !enabled.split_whitespace().any(|e| e == c.name()))
            .map(|c| format!("+{}", c.name()))
            .collect();
        if missing.is_empty() {
            continue;
        }
        if let Err(e) = fs::write(&file, missing.join(" ")) {
            if e.raw_os_error() == Some(Errno::EBUSY as i32) {
                let agent_inside = own.as_deref().is_some_and(|own| mount.join(own) == dir);
                return Err(CgroupError::InternalProcesses {
                    path: dir,
                    agent_inside,
                });
            }
            return Err(CgroupError::io("write", file, e));
        }
    }
    Ok(())
}

/// The agent's own v2 cgroup, relative to the hierarchy root.
fn own_v2_cgroup() -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(PathBuf::from(path.trim_start_matches('/')))
}

fn validate_name(name: &str) -> Result<(), CgroupError> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 200 {
        Some("it is longer than 200 bytes")
    } else if name.starts_with('.') {
        Some("it starts with a dot")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        Some("use only letters, digits, '-', '_' and '.'")
    } else {
        None
    };
    match why {
        Some(why) => Err(CgroupError::InvalidName {
            name: name.into(),
            why,
        }),
        None => Ok(()),
    }
}

/// A parent is one or more names joined by `/`, relative to the root.
fn validate_parent(parent: &str) -> Result<(), CgroupError> {
    parent.split('/').try_for_each(validate_name)
}

fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|e| CgroupError::io("read", path, e))
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|e| CgroupError::io("write", path, e))
}
