//! Desired and actual state exchanged between the control plane and the
//! agents and routers that converge to it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api::{Instance, StaticFiles};
use crate::Revision;
use crate::{HealthCheck, RouteSettings};

/// Everything one node should be doing, as of `revision`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct NodeDesired {
    pub revision: Revision,
    /// Instances this node must run.
    pub instances: Vec<DesiredInstance>,
    /// Builds waiting for an agent; the first agent to claim one builds it.
    pub builds: Vec<BuildJob>,
    /// Release phases this node must run (it holds their build).
    pub release_phases: Vec<ReleaseJob>,
    /// Builds garbage-collected by the control plane whose directories this
    /// node may still hold; deleting them is idempotent.
    #[serde(default)]
    pub collected_builds: Vec<CollectedBuild>,
    /// One-off processes placed on this node that have not ended and are
    /// not being killed; one that leaves this list is stopped.
    #[serde(default)]
    pub runs: Vec<crate::RunJob>,
}

/// A build whose artifact is no longer kept.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CollectedBuild {
    pub app: String,
    pub build_id: String,
}

/// One process to keep running.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DesiredInstance {
    pub app: String,
    pub release: u32,
    pub process_type: String,
    pub index: u32,
    #[serde(default)]
    pub generation: u32,
    pub command: String,
    /// Config vars of the release (Berth adds `PORT` and friends).
    pub env: BTreeMap<String, String>,
    /// The artifact directory: working directory, with `.venv` inside.
    pub dir: String,
    /// The app's HTTP health check (web processes only).
    #[serde(default)]
    pub healthcheck: Option<HealthCheck>,
    /// The Host header health checks send (the app's own host name, so that
    /// frameworks checking it, like Django's ALLOWED_HOSTS, accept them).
    #[serde(default)]
    pub host: String,
    /// Enforced with cgroups where the node has them.
    #[serde(default)]
    pub limits: crate::ResourceLimits,
}

impl DesiredInstance {
    /// Identity of the instance: the same key as [`Instance`]'s.
    pub fn key(&self) -> InstanceKey {
        InstanceKey {
            app: self.app.clone(),
            release: self.release,
            process_type: self.process_type.clone(),
            index: self.index,
            generation: self.generation,
        }
    }
}

/// What identifies an instance across desired and actual state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceKey {
    pub app: String,
    pub release: u32,
    pub process_type: String,
    pub index: u32,
    pub generation: u32,
}

impl Instance {
    /// The instance `key` as its agent first reports it: starting, no
    /// process yet.
    pub fn starting(key: InstanceKey, node: &str) -> Self {
        Self {
            app: key.app,
            release: key.release,
            process_type: key.process_type,
            index: key.index,
            generation: key.generation,
            node: node.to_string(),
            state: crate::InstanceState::Starting,
            addr: None,
            pid: None,
            started_at: None,
            restarts: 0,
            last_exit: None,
            next_restart_at: None,
            health: None,
            oom_kills: 0,
        }
    }
}

impl From<&Instance> for InstanceKey {
    fn from(i: &Instance) -> Self {
        Self {
            app: i.app.clone(),
            release: i.release,
            process_type: i.process_type.clone(),
            index: i.index,
            generation: i.generation,
        }
    }
}

/// A build to claim and run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BuildJob {
    pub build_id: String,
    pub app: String,
    /// The app's config vars, visible to the build (e.g. for collectstatic).
    pub env: BTreeMap<String, String>,
}

/// A release phase to claim and run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReleaseJob {
    pub app: String,
    pub release: u32,
    pub build_id: String,
    pub command: String,
    pub env: BTreeMap<String, String>,
    pub dir: String,
}

/// Body of `PUT /v1/nodes/{node}/instances`: the node's whole actual state.
/// Sent whole, not as deltas, so a lost message is healed by the next one.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct NodeReport {
    pub instances: Vec<Instance>,
}

/// Answer of `PUT /v1/nodes/{node}/instances`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ReportAnswer {
    /// The revision once the report is stored: routers that have applied it
    /// have seen every state change the report carried (a draining instance
    /// is out of their tables).
    pub revision: Revision,
}

/// How a router spreads requests over an app's backends.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Power of two choices on outstanding requests.
    #[default]
    LeastConn,
    RoundRobin,
}

impl Balance {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Everything a router needs, as of `revision`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct RouteTable {
    pub revision: Revision,
    pub apps: Vec<AppRoute>,
}

/// How to reach one app.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppRoute {
    pub name: String,
    /// Host names (no port) that select this app.
    pub hosts: Vec<String>,
    pub backends: Vec<Backend>,
    pub static_files: Option<StaticFiles>,
    /// Balance, limits, redirect and health check of the app's requests.
    #[serde(default, skip_serializing_if = "RouteSettings::is_default")]
    pub settings: RouteSettings,
}

/// One instance a router may send requests to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Backend {
    /// `host:port`.
    pub addr: String,
    /// Human id for logs, e.g. `v3/web.1`.
    pub id: String,
}

/// WebSocket sessions a router still carries to an instance it no longer
/// routes to: what it reports with each poll of the route table, so that a
/// drain stops the instance only once they ended (by themselves, or closed
/// by the router at the end of its grace).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DepartedSessions {
    pub app: String,
    /// The instance's [`Backend::addr`].
    pub addr: String,
    /// The instance's [`Backend::id`].
    pub id: String,
    /// Sessions open now.
    pub open: u64,
    /// How long the router lets them run once the instance left its table
    /// before it closes them (`1001`), in milliseconds.
    pub grace_ms: u64,
}
