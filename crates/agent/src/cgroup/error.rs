//! What can go wrong with cgroups, each error naming the file and what to do.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// A cgroup operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A cgroup file or directory could not be read, written, created or
    /// removed.
    #[error("cannot {action} {}: {source} — {hint}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
        hint: &'static str,
    },
    #[error("invalid cgroup name {name:?}: {why}")]
    InvalidName { name: String, why: &'static str },
    #[error("invalid limit: {0}")]
    InvalidLimit(String),
    /// cgroup v2 lets a group hand controllers to its children only while it
    /// holds no process itself.
    #[error(
        "cannot enable controllers in {}: processes run directly in it{}, and cgroup v2 \
         allows controllers only above groups without processes — choose a parent group \
         outside the agent's own cgroup, or run the agent in a delegated cgroup \
         (systemd Delegate=yes) and keep it out of the parent group",
        path.display(),
        if *agent_inside { " (the agent itself among them)" } else { "" }
    )]
    InternalProcesses { path: PathBuf, agent_inside: bool },
    #[error(
        "{} still holds {count} process(es) — stop them first (Cgroup::kill_all) or use another name",
        path.display()
    )]
    Busy { path: PathBuf, count: usize },
    #[error(
        "{count} process(es) in {} survived SIGKILL for {waited:?} — they are likely stuck in \
         uninterruptible I/O (state D in /proc/<pid>/stat); look at the disk or NFS they use",
        path.display()
    )]
    KillTimeout {
        path: PathBuf,
        count: usize,
        waited: Duration,
    },
    #[error("unexpected content in {}: {content:?} — is a cgroup filesystem mounted there?", path.display())]
    Parse { path: PathBuf, content: String },
}

impl CgroupError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let hint = hint(&source);
        CgroupError::Io {
            action,
            path: path.into(),
            source,
            hint,
        }
    }
}

/// What an operator can do about an errno from the cgroup filesystem.
fn hint(e: &io::Error) -> &'static str {
    use nix::errno::Errno;
    match e.raw_os_error().map(Errno::from_raw) {
        Some(Errno::EACCES | Errno::EPERM) => {
            "run the agent as root, or give it a delegated cgroup (systemd Delegate=yes)"
        }
        Some(Errno::EROFS) => {
            "the cgroup filesystem is read-only here (a container?): mount it read-write or \
             delegate a cgroup to the agent"
        }
        Some(Errno::ENOENT) => "the controller's file is missing: is the controller enabled?",
        Some(Errno::EINVAL) => "the kernel rejected the value: check the limit",
        Some(Errno::ENOSPC) => {
            "the group cannot take controllers or processes here (cgroup v2 rules): use a \
             leaf group under a parent without processes"
        }
        _ => "check the cgroup filesystem under /sys/fs/cgroup",
    }
}
