//! One instance's group: placing processes in it, its limits, reading its
//! memory and OOM-kill counts, killing everything in it, removing it.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Instant;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::unistd::Pid;

use super::layout::{Controller, Version};
use super::{
    member, read, write, CgroupError, Limits, Member, CPU_PERIOD_US, KILL_TIMEOUT, POLL,
    REMOVE_TIMEOUT,
};

/// One instance's group. Dropping it leaves the group in place: call
/// [`Cgroup::kill_all`] and [`Cgroup::remove`].
#[derive(Debug)]
pub struct Cgroup {
    pub(super) name: String,
    pub(super) members: Vec<Member>,
    pub(super) joiner: Joiner,
    /// Whether `oom_kills` counts kills (not limit hits): see there.
    pub(super) oom_exact: bool,
}

/// Moves the calling process into a group; built before the fork, used
/// inside it (see the module docs).
#[derive(Debug, Clone)]
pub struct Joiner {
    pub(super) procs: Vec<CString>,
}

impl Cgroup {
    /// The name given to [`Cgroups::create`](super::Cgroups::create).
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

    /// Moves a running process, with all its threads, into the group.
    /// Prefer [`Cgroup::joiner`] for new processes: whatever the process
    /// forked before this call stays outside.
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

    pub(super) async fn kill_all_with(&self, use_kill_file: bool) -> Result<(), CgroupError> {
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
