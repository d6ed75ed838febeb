//! Berth's shared vocabulary: the types every role agrees on.
//!
//! The control plane, the agents, the routers and the CLI talk JSON over HTTP;
//! this crate owns the shapes of those messages and the rules for names that
//! users type, so that a name refused by the CLI is refused by the server for
//! the same reason and with the same words.
//!
//! # Layout
//! - [`names`]: validation of app names, process types, env var names, domains.
//! - [`procfile`]: parsing `Procfile`s, with errors that name the line.
//! - [`api`]: apps, builds, releases, instances, logs — the resources of `/v1`.
//! - [`limits`]: memory, CPU and process limits per process type.
//! - [`rollout`]: rollout policy, health checks, a rollout in progress.
//! - [`route`]: how routers treat an app's requests (limits, redirect).
//! - [`run`]: one-off processes and the protocol of attaching to them.
//! - [`state`]: what the control plane wants (desired state for a node, the
//!   route table for routers) and what agents report back.

pub mod api;
pub mod limits;
pub mod names;
pub mod procfile;
pub mod rollout;
pub mod route;
pub mod run;
pub mod state;

pub use api::*;
pub use limits::ResourceLimits;
pub use rollout::*;
pub use route::{RateLimit, RouteSettings, RoutingSettings};
pub use run::{NewRun, Run, RunJob, RunReport, RunState};
pub use state::*;

/// A monotonically increasing counter of the control plane's state. Every
/// change that an agent or a router must act on bumps it; watchers ask for
/// "anything after revision N".
pub type Revision = u64;

/// Milliseconds since the Unix epoch, the one time format on the wire.
pub type UnixMillis = i64;

/// The current time in [`UnixMillis`].
pub fn now_millis() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `1.5 MB`-style sizes, for messages.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KB", "MB", "GB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// `web=2 worker=1`: a formation as users write it for `berth scale`.
pub fn formation_text(formation: &std::collections::BTreeMap<String, u32>) -> String {
    formation
        .iter()
        .map(|(process_type, count)| format!("{process_type}={count}"))
        .collect::<Vec<_>>()
        .join(" ")
}
