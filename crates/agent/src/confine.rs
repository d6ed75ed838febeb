//! Confining one process start to its own cgroup: the app's limits for its
//! process type, counting out-of-memory kills, and clearing the whole tree
//! when it ends. Without cgroups on the node, processes run unconfined and
//! nothing here fails.

use berth_model::{human_size, ResourceLimits};

use crate::cgroup::{Cgroup, Cgroups, Joiner, Limits};

/// A process start's group, and the OOM kills already accounted for.
pub struct Confinement {
    group: Cgroup,
    limits: ResourceLimits,
    oom_seen: u64,
    /// When the last OOM kill was counted: a process SIGKILLed shortly
    /// after is taken for its victim even if a poll counted the kill first.
    last_oom: Option<std::time::Instant>,
}

impl Confinement {
    /// A fresh group `name` with `limits`. `Err` says why the process will
    /// run unconfined (worth telling the user in the app's log).
    pub async fn create(
        cgroups: Option<&Cgroups>,
        name: &str,
        limits: ResourceLimits,
    ) -> Result<Option<Self>, String> {
        let Some(cgroups) = cgroups else {
            return Ok(None);
        };
        let group = match cgroups.create(name, &to_cgroup(limits)) {
            Ok(g) => g,
            Err(crate::cgroup::CgroupError::Busy { .. }) => {
                // A process of an earlier start outlived it: clear it first.
                let stale = cgroups.open_existing(name).map_err(|e| e.to_string())?;
                let _ = stale.kill_all().await;
                cgroups
                    .create(name, &to_cgroup(limits))
                    .map_err(|e| e.to_string())?
            }
            Err(e) => return Err(e.to_string()),
        };
        let oom_seen = group.oom_kills().unwrap_or(0);
        Ok(Some(Self {
            group,
            limits,
            oom_seen,
            last_oom: None,
        }))
    }

    pub fn joiner(&self) -> Joiner {
        self.group.joiner()
    }

    /// Applies changed limits to the running group.
    pub fn update(&mut self, limits: ResourceLimits) -> Result<(), String> {
        if limits == self.limits {
            return Ok(());
        }
        self.group
            .set_limits(&to_cgroup(limits))
            .map_err(|e| e.to_string())?;
        self.limits = limits;
        Ok(())
    }

    /// Processes killed for lack of memory since the last call.
    pub fn new_oom_kills(&mut self) -> u64 {
        let now = self.group.oom_kills().unwrap_or(self.oom_seen);
        let new = now.saturating_sub(self.oom_seen);
        self.oom_seen = now;
        if new > 0 {
            self.last_oom = Some(std::time::Instant::now());
        }
        new
    }

    /// `(out of memory: limit 64.0 MB)`, the note an OOM-killed process's
    /// exit gets.
    pub fn oom_note(&self) -> String {
        match self.limits.memory_bytes {
            Some(m) => format!("out of memory: limit {}", human_size(m)),
            None => "out of memory".into(),
        }
    }

    /// Kills whatever is left in the group and removes it.
    pub async fn release(self) {
        if let Err(e) = self.group.kill_all().await {
            tracing::warn!("cgroup {}: {e}", self.group.name());
        }
        if let Err(e) = self.group.remove().await {
            tracing::warn!("cgroup {}: {e}", self.group.name());
        }
    }
}

/// How long after a counted OOM kill a SIGKILL is still put down to it.
const RECENT_OOM: std::time::Duration = std::time::Duration::from_secs(3);

/// How a process ended — saying so when its group ran out of memory.
pub fn describe_exit(
    confinement: Option<&mut Confinement>,
    status: std::process::ExitStatus,
) -> String {
    use std::os::unix::process::ExitStatusExt;
    let how = crate::spawn::describe_exit(status);
    let Some(c) = confinement else {
        return how;
    };
    let recent = |at: std::time::Instant| at.elapsed() < RECENT_OOM;
    if status.signal() == Some(nix::sys::signal::Signal::SIGKILL as i32)
        && (c.new_oom_kills() > 0 || c.last_oom.is_some_and(recent))
    {
        format!("{how} ({})", c.oom_note())
    } else {
        how
    }
}

fn to_cgroup(l: ResourceLimits) -> Limits {
    Limits {
        memory_bytes: l.memory_bytes,
        cpu_millis: l.cpu_millis,
        pids_max: l.pids,
    }
}

/// A cgroup name for `parts` (app, type, index, …): only the characters
/// cgroup names allow.
pub fn group_name(parts: &[&str]) -> String {
    parts
        .join(".")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
