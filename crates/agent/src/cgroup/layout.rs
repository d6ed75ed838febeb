//! Where the cgroup controllers live on this host: reads the mount table and
//! decides, for each controller Berth limits, which hierarchy carries it.
//!
//! Pure functions over the mount table's text, so every layout (pure v2, v1,
//! hybrid, co-mounted `cpu,cpuacct`, read-only) is tested without the host
//! having it.

use std::path::{Path, PathBuf};

/// The controllers Berth sets limits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    Memory,
    Cpu,
    Pids,
}

impl Controller {
    pub const ALL: [Controller; 3] = [Controller::Memory, Controller::Cpu, Controller::Pids];

    /// The kernel's name, as in `cgroup.controllers` and v1 mount options.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Pids => "pids",
        }
    }
}

/// cgroup v1 (one hierarchy per controller set) or v2 (unified).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// How the host's cgroups are arranged, for logs and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Everything on the unified hierarchy (most current distributions).
    V2,
    /// Controllers on v1 hierarchies, no v2 mount.
    V1,
    /// Controllers on v1 hierarchies plus a controller-less v2 mount (e.g.
    /// `/sys/fs/cgroup/unified`), used only to track and kill processes.
    Hybrid,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layout::V2 => "cgroup v2",
            Layout::V1 => "cgroup v1",
            Layout::Hybrid => "cgroup v1 controllers with a v2 hierarchy (hybrid)",
        })
    }
}

/// One cgroup filesystem mount, from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub point: PathBuf,
    pub version: Version,
    /// v1: the controllers bound to it (its super options); v2: empty, the
    /// available controllers are in its `cgroup.controllers` file.
    pub options: Vec<String>,
    pub read_only: bool,
}

/// A hierarchy Berth will create groups in, and the controllers it uses
/// there (none: a v2 hierarchy used only to track and kill processes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub mount: PathBuf,
    pub version: Version,
    pub controllers: Vec<Controller>,
}

/// The hierarchies to use and the layout they form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub layout: Layout,
    pub hierarchies: Vec<Hierarchy>,
}

/// Reads the cgroup mounts out of a `mountinfo` text. Lines that are not
/// cgroup mounts, or that do not parse, are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

/// `36 25 0:32 / /sys/fs/cgroup/memory rw,relatime shared:8 - cgroup cgroup rw,memory`
fn parse_line(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    let before: Vec<&str> = before.split(' ').collect();
    let mut after = after.split(' ');
    let (fstype, _source, super_opts) = (after.next()?, after.next()?, after.next()?);
    let version = match fstype {
        "cgroup" => Version::V1,
        "cgroup2" => Version::V2,
        _ => return None,
    };
    let point = unescape(before.get(4)?);
    let mount_opts = before.get(5)?;
    let read_only = mount_opts.split(',').any(|o| o == "ro");
    let options = match version {
        Version::V1 => super_opts.split(',').map(String::from).collect(),
        Version::V2 => Vec::new(),
    };
    Some(Mount {
        point: PathBuf::from(point),
        version,
        options,
        read_only,
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let s = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(s, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decides which hierarchy carries each controller. A v1 mount wins over
/// v2 for a controller (a controller bound to v1 is absent from v2 anyway).
/// `v2_controllers` reads a v2 mount's `cgroup.controllers`.
///
/// Err is the reason cgroups are unusable here, for a log line.
pub fn plan(
    mounts: &[Mount],
    v2_controllers: impl Fn(&Path) -> Option<String>,
) -> Result<Plan, String> {
    let v2 = mounts.iter().find(|m| m.version == Version::V2);
    let v2_available = v2
        .and_then(|m| v2_controllers(&m.point))
        .unwrap_or_default();
    let mut hierarchies: Vec<Hierarchy> = Vec::new();
    for c in Controller::ALL {
        let v1 = mounts
            .iter()
            .find(|m| m.version == Version::V1 && m.options.iter().any(|o| o == c.name()));
        let mount = match (v1, v2) {
            (Some(m), _) => m,
            (None, Some(m)) if v2_available.split_whitespace().any(|n| n == c.name()) => m,
            _ => {
                return Err(format!(
                    "the {} controller is not mounted (no cgroup v1 hierarchy has it and the \
                     v2 hierarchy does not offer it)",
                    c.name()
                ))
            }
        };
        if mount.read_only {
            return Err(format!(
                "{} is mounted read-only (typical inside a container without a delegated cgroup)",
                mount.point.display()
            ));
        }
        match hierarchies.iter_mut().find(|h| h.mount == mount.point) {
            Some(h) => h.controllers.push(c),
            None => hierarchies.push(Hierarchy {
                mount: mount.point.clone(),
                version: mount.version,
                controllers: vec![c],
            }),
        }
    }
    let all_v2 = hierarchies.iter().all(|h| h.version == Version::V2);
    let layout = match (all_v2, v2) {
        (true, _) => Layout::V2,
        (false, None) => Layout::V1,
        (false, Some(_)) => Layout::Hybrid,
    };
    // In a hybrid layout the v2 hierarchy still tracks every process of a
    // group (forks included) and offers `cgroup.kill`, the one race-free
    // way to kill a group; use it when it is writable.
    if let (Layout::Hybrid, Some(m)) = (layout, v2) {
        if !m.read_only {
            hierarchies.push(Hierarchy {
                mount: m.point.clone(),
                version: Version::V2,
                controllers: Vec::new(),
            });
        }
    }
    Ok(Plan {
        layout,
        hierarchies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    // Debian 12 / Ubuntu 22.04 and later: systemd's unified mount.
    const PURE_V2: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    // Older systemd: cpu co-mounted with cpuacct, no unified mount.
    const V1_COMOUNTED: &str = "\
25 24 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755
27 25 0:24 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:8 - cgroup cgroup rw,cpu,cpuacct
28 25 0:25 / /sys/fs/cgroup/memory rw,nosuid shared:9 - cgroup cgroup rw,memory
29 25 0:26 / /sys/fs/cgroup/pids rw,nosuid shared:10 - cgroup cgroup rw,pids
";

    fn all_controllers(_: &Path) -> Option<String> {
        Some("cpuset cpu io memory hugetlb pids rdma misc".into())
    }

    #[test]
    fn hybrid_uses_v1_controllers_and_v2_for_tracking() {
        let plan = plan(&parse_mountinfo(HYBRID), |_| Some("hugetlb".into())).unwrap();
        assert_eq!(plan.layout, Layout::Hybrid);
        let mounts: Vec<_> = plan.hierarchies.iter().map(|h| h.mount.clone()).collect();
        assert_eq!(
            mounts,
            ["memory", "cpu", "pids", "unified"].map(|m| PathBuf::from("/sys/fs/cgroup").join(m))
        );
        assert_eq!(plan.hierarchies[3].version, Version::V2);
        assert!(plan.hierarchies[3].controllers.is_empty());
    }

    #[test]
    fn pure_v2_puts_every_controller_on_one_hierarchy() {
        let plan = plan(&parse_mountinfo(PURE_V2), all_controllers).unwrap();
        assert_eq!(plan.layout, Layout::V2);
        assert_eq!(
            plan.hierarchies,
            [Hierarchy {
                mount: "/sys/fs/cgroup".into(),
                version: Version::V2,
                controllers: Controller::ALL.to_vec(),
            }]
        );
    }

    #[test]
    fn comounted_cpu_is_found_by_its_options_not_its_path() {
        let plan = plan(&parse_mountinfo(V1_COMOUNTED), |_| None).unwrap();
        assert_eq!(plan.layout, Layout::V1);
        assert_eq!(
            plan.hierarchies[1].mount,
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
        );
    }

    #[test]
    fn missing_controller_or_read_only_mount_says_why() {
        let why = plan(&parse_mountinfo(PURE_V2), |_| Some("cpu memory".into())).unwrap_err();
        assert!(why.contains("pids controller is not mounted"), "{why}");
        let ro = PURE_V2.replace("/sys/fs/cgroup rw,nosuid", "/sys/fs/cgroup ro,nosuid");
        let why = plan(&parse_mountinfo(&ro), all_controllers).unwrap_err();
        assert!(why.contains("read-only"), "{why}");
        let why = plan(&[], all_controllers).unwrap_err();
        assert!(why.contains("memory controller is not mounted"), "{why}");
    }

    #[test]
    fn escaped_mount_points_are_decoded() {
        let m = parse_mountinfo("1 2 0:3 / /mnt/my\\040cgroups rw - cgroup2 cgroup2 rw\n");
        assert_eq!(m[0].point, PathBuf::from("/mnt/my cgroups"));
    }
}
