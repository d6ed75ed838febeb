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
//! - `group`: [`Cgroup`], one instance's group, and [`Joiner`].
//! - `error`: [`CgroupError`].

mod error;
mod group;
mod layout;
#[cfg(test)]
mod tests;

pub use error::CgroupError;
pub use group::{Cgroup, Joiner};
pub use layout::Layout;

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use layout::{Controller, Version};
use nix::errno::Errno;

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

    /// The group `name` as it is (its processes, its limits), to clear a
    /// stale one.
    pub fn open_existing(&self, name: &str) -> Result<Cgroup, CgroupError> {
        validate_name(name)?;
        self.open(name)
    }

    /// Removes the (empty) parent groups, when the agent stops for good.
    /// Best effort: a group still in use stays.
    pub fn remove_parent(&self) {
        for p in &self.parents {
            let _ = fs::remove_dir(&p.dir);
        }
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
