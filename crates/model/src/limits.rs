//! Resource limits per process type (`berth limits`): memory, CPU and
//! process count, enforced by the agent with cgroups.

use serde::{Deserialize, Serialize};

/// Limits of each instance of one process type; `None` is unlimited.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct ResourceLimits {
    /// RAM, swap included; at the limit the kernel kills a process of the
    /// instance, and Berth reports it as out of memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// CPU time in thousandths of a core (1000 = one core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millis: Option<u32>,
    /// Processes and threads together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u32>,
}

/// The process type whose limits apply to one-off processes (`berth run`).
pub const RUN_TYPE: &str = "run";

impl ResourceLimits {
    pub fn is_unlimited(&self) -> bool {
        *self == Self::default()
    }

    /// Applies `memory=512MB cpu=0.5 pids=200` settings; `memory=none`
    /// (or `off`) lifts one.
    pub fn apply(&mut self, setting: &str) -> Result<(), String> {
        let (name, value) = setting.split_once('=').ok_or_else(|| {
            format!("{setting:?} is not NAME=VALUE; use e.g. memory=512MB, cpu=0.5 or pids=200")
        })?;
        let value = value.trim();
        let lifted = matches!(value, "none" | "off" | "unlimited");
        match name.trim() {
            "memory" => {
                self.memory_bytes = if lifted {
                    None
                } else {
                    Some(parse_memory(value)?)
                }
            }
            "cpu" => {
                self.cpu_millis = if lifted {
                    None
                } else {
                    Some(parse_cpu(value)?)
                }
            }
            "pids" => {
                self.pids = if lifted {
                    None
                } else {
                    Some(value.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                        format!("pids={value} is not a count of at least 1 (e.g. pids=200)")
                    })?)
                }
            }
            other => {
                return Err(format!(
                    "unknown limit {other:?}: the limits are memory, cpu and pids"
                ))
            }
        }
        Ok(())
    }

    /// Refuses values no process could run under (what [`Self::apply`]
    /// refuses, for limits that arrive as JSON).
    pub fn validate(&self) -> Result<(), String> {
        if self.memory_bytes.is_some_and(|m| m < 4 << 20) {
            return Err("a memory limit must be at least 4MB".into());
        }
        if self.cpu_millis.is_some_and(|c| c < 10) {
            return Err("a CPU limit must be at least 0.01 (10m)".into());
        }
        if self.pids == Some(0) {
            return Err("a process limit must be at least 1".into());
        }
        Ok(())
    }

    /// `memory=512 MB cpu=0.5 pids=200`, or `unlimited`.
    pub fn text(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = self.memory_bytes {
            parts.push(format!("memory={}", crate::human_size(m).replace(' ', "")));
        }
        if let Some(c) = self.cpu_millis {
            parts.push(format!("cpu={}", c as f64 / 1000.0));
        }
        if let Some(p) = self.pids {
            parts.push(format!("pids={p}"));
        }
        if parts.is_empty() {
            "unlimited".into()
        } else {
            parts.join(" ")
        }
    }
}

/// `512MB`, `1GB`, `256M`, `1.5G`: binary units (MB = MiB), at least 4 MB
/// (no Python process starts in less).
fn parse_memory(value: &str) -> Result<u64, String> {
    let bad = || format!("memory={value} is not a size; use e.g. memory=512MB or memory=1GB");
    let upper = value.to_ascii_uppercase();
    let split = upper
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(upper.len());
    let (num, unit) = upper.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let factor: u64 = match unit.trim() {
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return Err(bad()),
    };
    let bytes = (n * factor as f64) as u64;
    if bytes < 4 << 20 {
        return Err(format!("memory={value} is too small: at least 4MB"));
    }
    Ok(bytes)
}

/// `0.5`, `2` (cores) or `500m` (millicores), at least 10m.
fn parse_cpu(value: &str) -> Result<u32, String> {
    let bad = || {
        format!(
            "cpu={value} is not a CPU share; use cores (cpu=0.5, cpu=2) or millicores (cpu=500m)"
        )
    };
    let millis = match value.strip_suffix('m') {
        Some(m) => m.parse::<u32>().map_err(|_| bad())?,
        None => (value.parse::<f64>().map_err(|_| bad())? * 1000.0).round() as u32,
    };
    if millis < 10 {
        return Err(format!("cpu={value} is too small: at least 0.01 (10m)"));
    }
    Ok(millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_parsed_and_shown() {
        let mut l = ResourceLimits::default();
        assert!(l.is_unlimited());
        l.apply("memory=512MB").unwrap();
        l.apply("cpu=0.5").unwrap();
        l.apply("pids=200").unwrap();
        assert_eq!(l.memory_bytes, Some(512 << 20));
        assert_eq!(l.cpu_millis, Some(500));
        assert_eq!(l.text(), "memory=512.0MB cpu=0.5 pids=200");
        l.apply("cpu=250m").unwrap();
        assert_eq!(l.cpu_millis, Some(250));
        l.apply("memory=1.5g").unwrap();
        assert_eq!(l.memory_bytes, Some(3 << 29));
        l.apply("memory=none").unwrap();
        assert_eq!(l.memory_bytes, None);
        for bad in [
            "memory=lots",
            "memory=1MB",
            "cpu=0",
            "pids=0",
            "disk=1GB",
            "memory",
        ] {
            assert!(l.apply(bad).is_err(), "{bad} accepted");
        }
    }
}
