//! How an app's instances are replaced and checked: the rollout policy, the
//! HTTP health check, and the record of a rollout in progress.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::UnixMillis;

/// Process types that must never run twice at once by default: two celery
/// beats (or two clocks) would each fire every scheduled job.
pub const SINGLETON_TYPES: &[&str] = &["clock", "beat"];

/// Whether `process_type` is a singleton: at most one instance, never
/// overlapping with its predecessor.
pub fn is_singleton(process_type: &str) -> bool {
    SINGLETON_TYPES.contains(&process_type)
}

/// How a new release (or a restart) replaces running instances, per process
/// type: like a Kubernetes rolling update, counted in instances.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RolloutPolicy {
    /// How many instances above the formation may run during a rollout.
    pub surge: u32,
    /// How many instances below the formation may be up during a rollout.
    pub unavailable: u32,
    /// Types whose old instances all stop before any new one starts.
    /// Singleton types (`clock`, `beat`) are always replaced this way.
    #[serde(default)]
    pub no_overlap: Vec<String>,
}

impl Default for RolloutPolicy {
    fn default() -> Self {
        Self {
            surge: 1,
            unavailable: 0,
            no_overlap: Vec::new(),
        }
    }
}

impl RolloutPolicy {
    /// Whether old instances of `process_type` must be gone before new ones start.
    pub fn no_overlap(&self, process_type: &str) -> bool {
        is_singleton(process_type) || self.no_overlap.iter().any(|t| t == process_type)
    }

    /// A policy that can never make progress is refused with what to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.surge == 0 && self.unavailable == 0 {
            return Err("surge and unavailable cannot both be 0: a rollout could neither start a new instance nor stop an old one; use --surge 1 (the default) or --unavailable 1".into());
        }
        for t in &self.no_overlap {
            crate::names::validate_process_type(t).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// An HTTP check of each web instance, like HAProxy's `option httpchk` with
/// `inter`/`rise`/`fall`: it gates rollouts (an instance is up only after
/// `rise` passes in a row) and restarts an instance that fails `fall` in a row.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HealthCheck {
    /// Path requested with GET, e.g. `/healthz`; 2xx and 3xx pass.
    pub path: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub rise: u32,
    pub fall: u32,
}

impl HealthCheck {
    /// The defaults for `path`: every 5 s, 2 s timeout, rise 2, fall 3.
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            interval_ms: 5_000,
            timeout_ms: 2_000,
            rise: 2,
            fall: 3,
        }
    }

    /// Refuses settings that cannot work, saying what to use instead.
    pub fn validate(&self) -> Result<(), String> {
        if !self.path.starts_with('/')
            || self
                .path
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "health check path {:?} must start with / and contain no spaces, e.g. /healthz",
                self.path
            ));
        }
        if self.interval_ms < 100 {
            return Err("the health check interval must be at least 100ms".into());
        }
        if self.timeout_ms == 0 || self.timeout_ms > self.interval_ms {
            return Err(format!(
                "the health check timeout ({}ms) must be above 0 and at most the interval ({}ms)",
                self.timeout_ms, self.interval_ms
            ));
        }
        if self.rise == 0 || self.fall == 0 {
            return Err("rise and fall must be at least 1".into());
        }
        Ok(())
    }
}

/// Per-app settings that shape how instances run and are replaced.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct AppSettings {
    #[serde(default)]
    pub rollout: RolloutPolicy,
    #[serde(default)]
    pub healthcheck: Option<HealthCheck>,
    /// Resource limits per process type (`run` for one-off processes).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, crate::ResourceLimits>,
    /// How routers treat the app's requests (`berth routing`).
    #[serde(default, skip_serializing_if = "crate::RoutingSettings::is_default")]
    pub routing: crate::RoutingSettings,
}

/// A rollout in progress: instances of `release` (with the given restart
/// generation per process type) are replacing the live ones.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rollout {
    pub release: u32,
    /// Restart generation per process type; a restart bumps it so that new
    /// instances of the same release replace the running ones.
    #[serde(default)]
    pub generations: BTreeMap<String, u32>,
    pub started_at: UnixMillis,
    /// When the number of new instances up last grew: the rollout fails when
    /// it makes no progress for too long.
    pub progress_at: UnixMillis,
    /// New instances up at `progress_at`.
    #[serde(default)]
    pub up: u32,
    /// What started it (`deploy`, `config set X`, `restart`, …).
    pub description: String,
}

impl Rollout {
    /// The generation wanted for `process_type`.
    pub fn generation(&self, process_type: &str) -> u32 {
        self.generations.get(process_type).copied().unwrap_or(0)
    }
}

/// Parses `5s`, `500ms`, `2m` or a bare number of seconds into milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; use e.g. 5s, 500ms or 1m"))?;
    let factor = match unit {
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        _ => {
            return Err(format!(
                "{s:?} has an unknown unit; use ms, s or m (e.g. 5s)"
            ))
        }
    };
    Ok((n * factor).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("5s"), Ok(5000));
        assert_eq!(parse_duration_ms("250ms"), Ok(250));
        assert_eq!(parse_duration_ms("2m"), Ok(120_000));
        assert_eq!(parse_duration_ms("3"), Ok(3000));
        assert!(parse_duration_ms("5h")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_duration_ms("fast").is_err());
    }

    #[test]
    fn policies_and_checks_that_cannot_work_are_refused() {
        let stuck = RolloutPolicy {
            surge: 0,
            unavailable: 0,
            no_overlap: vec![],
        };
        assert!(stuck.validate().unwrap_err().contains("--surge 1"));
        assert!(RolloutPolicy::default().validate().is_ok());
        assert!(RolloutPolicy::default().no_overlap("beat"));
        assert!(!RolloutPolicy::default().no_overlap("worker"));
        assert!(HealthCheck::new("/healthz").validate().is_ok());
        assert!(HealthCheck::new("healthz").validate().is_err());
        let mut slow = HealthCheck::new("/h");
        slow.timeout_ms = 10_000;
        assert!(slow
            .validate()
            .unwrap_err()
            .contains("at most the interval"));
    }
}
