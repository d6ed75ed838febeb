//! Resources of the `/v1` HTTP API: apps, builds, releases, instances, logs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::UnixMillis;

/// An application: a name, its routing, the live release and how many
/// instances of each process type should run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct App {
    pub name: String,
    pub created_at: UnixMillis,
    /// The release that serves traffic, if any has gone live yet.
    pub current_release: Option<u32>,
    /// Desired instance count per process type.
    pub formation: BTreeMap<String, u32>,
    /// Custom domains routed to this app, besides `NAME.<apps domain>`.
    pub domains: Vec<String>,
    /// The URL the router serves this app on.
    pub url: String,
    /// The release rolling out, while a rollout is in progress.
    #[serde(default)]
    pub rolling_release: Option<u32>,
    /// Rollout policy and health check.
    #[serde(default)]
    pub settings: crate::AppSettings,
}

/// Body of `POST /v1/apps`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateApp {
    pub name: String,
}

/// Body of `POST /v1/apps/{app}/domains`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddDomain {
    pub domain: String,
}

/// Lifecycle of a build; `Succeeded` and `Failed` are final.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BuildStatus {
    Queued,
    Building,
    Succeeded,
    Failed,
}

impl BuildStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Building => "building",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => Self::Queued,
            "building" => Self::Building,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            _ => return None,
        })
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// One build of an uploaded source archive into a runnable artifact.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Build {
    pub id: String,
    pub app: String,
    pub status: BuildStatus,
    pub created_at: UnixMillis,
    pub finished_at: Option<UnixMillis>,
    /// The agent that claimed the build, and so holds the artifact.
    pub node: Option<String>,
    /// Why the build failed, in words meant for the user.
    pub error: Option<String>,
    pub artifact: Option<Artifact>,
    /// The release this build produced, once it succeeded.
    pub release: Option<u32>,
    /// Size of the uploaded source archive in bytes.
    pub source_size: u64,
}

/// What a successful build leaves on its node: an app directory with its
/// virtualenv, and what to run from it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Artifact {
    /// Absolute path of the built app directory (the working directory of
    /// every process); the virtualenv is `.venv` inside it.
    pub dir: String,
    /// Process types and their commands (from the Procfile or detected).
    pub processes: BTreeMap<String, String>,
    /// The release-phase command, run once before a release goes live.
    pub release_command: Option<String>,
    /// Static files the router serves without touching the app.
    pub static_files: Option<StaticFiles>,
    /// A human summary: interpreter and dependency source.
    pub stack: String,
}

/// A directory of static files served by the router under a URL prefix.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StaticFiles {
    /// URL path prefix, with leading and trailing slash (e.g. `/static/`).
    pub url_prefix: String,
    /// Absolute directory on the node.
    pub dir: String,
}

/// Body of `POST /v1/builds/{id}/result`, sent by the agent that built.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum BuildResult {
    Succeeded { artifact: Artifact },
    Failed { error: String },
}

/// Lifecycle of a release.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    /// Waiting for its release phase to run.
    Pending,
    /// Its release phase is running on an agent.
    Releasing,
    /// Its instances are replacing the live release's.
    Rolling,
    /// The app's current release.
    Live,
    /// Was live, replaced by a newer one.
    Superseded,
    /// Its release phase failed, or its instances crashed or failed their
    /// health checks while rolling out; it never went live.
    Failed,
}

impl ReleaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Releasing => "releasing",
            Self::Rolling => "rolling",
            Self::Live => "live",
            Self::Superseded => "superseded",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "releasing" => Self::Releasing,
            "rolling" => Self::Rolling,
            "live" => Self::Live,
            "superseded" => Self::Superseded,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// An immutable pairing of a build with a config snapshot, numbered v1, v2, ….
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Release {
    pub app: String,
    pub version: u32,
    pub build_id: String,
    pub config: BTreeMap<String, String>,
    /// Secrets by reference: name → version of the sealed value.
    #[serde(default)]
    pub secrets: BTreeMap<String, u32>,
    /// What made this release (`deploy`, `config set X`, …).
    pub description: String,
    pub created_by: String,
    pub created_at: UnixMillis,
    pub status: ReleaseStatus,
    pub error: Option<String>,
}

/// Body of `POST /v1/apps/{app}/releases/{v}/phase`, sent by the agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleasePhaseResult {
    pub ok: bool,
    pub error: Option<String>,
}

/// Body of `POST .../claim`: which node takes the job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claim {
    pub node: String,
}

/// State of one running (or trying to run) app process, as its agent sees it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Spawned, not yet listening on its port.
    Starting,
    /// Listening; routable if it is a web process.
    Up,
    /// Being taken out of rotation before it is stopped.
    Draining,
    /// Exited; waiting for its restart backoff.
    Crashed,
    /// Sent SIGTERM, waiting for it to exit.
    Stopping,
}

impl InstanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Up => "up",
            Self::Draining => "draining",
            Self::Crashed => "crashed",
            Self::Stopping => "stopping",
        }
    }
}

/// One instance of a process type of a release, reported by its agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Instance {
    pub app: String,
    pub release: u32,
    pub process_type: String,
    /// 1-based, as in `web.1`.
    pub index: u32,
    /// Restart generation: a rolling restart replaces instances with ones of
    /// the next generation.
    #[serde(default)]
    pub generation: u32,
    pub node: String,
    pub state: InstanceState,
    /// `host:port` where the router reaches it (web processes).
    pub addr: Option<String>,
    pub pid: Option<u32>,
    /// When the current process started.
    pub started_at: Option<UnixMillis>,
    pub restarts: u32,
    /// How the last process ended (`exited with status 1`, `killed by SIGKILL`).
    pub last_exit: Option<String>,
    /// When a crashed instance will be started again.
    pub next_restart_at: Option<UnixMillis>,
    /// The health check's verdict, when the app has one (`passing`,
    /// `failing (2 of 3)`).
    #[serde(default)]
    pub health: Option<String>,
    /// Processes of the instance killed for running out of memory since it
    /// started (a pre-fork server's master survives its workers' deaths).
    #[serde(default)]
    pub oom_kills: u32,
}

impl Instance {
    /// `web.1`, the name users see.
    pub fn name(&self) -> String {
        format!("{}.{}", self.process_type, self.index)
    }

    /// `v3/web.1`: the instance's id in route tables ([`crate::Backend::id`]).
    pub fn backend_id(&self) -> String {
        format!("v{}/{}", self.release, self.name())
    }
}

/// A line of an app's log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogLine {
    /// Position in the log: strictly increasing, the cursor for `follow`.
    pub id: i64,
    pub app: String,
    pub ts: UnixMillis,
    /// Where it came from: `build`, `release`, `web.1`, `router`, `berth`.
    pub source: String,
    /// A build id for build and release-phase output, so `berth deploy` can
    /// follow its own build; `vN` for the output of release N's processes,
    /// so a failed rollout can show what its instances printed.
    pub scope: Option<String>,
    pub line: String,
    /// Set when the line records a state change (see [`EventKind`]); such
    /// lines are also listed by `GET /v1/apps/{app}/events`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<EventKind>,
}

/// A line to append to an app's log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NewLogLine {
    pub app: String,
    pub ts: UnixMillis,
    pub source: String,
    pub scope: Option<String>,
    pub line: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<EventKind>,
}

/// The state changes recorded as events.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    ReleaseCreated,
    ReleaseRolling,
    ReleaseLive,
    ReleaseFailed,
    InstanceStarting,
    InstanceReady,
    InstanceDraining,
    InstanceStopped,
    InstanceCrashed,
    HealthFailed,
    Scaled,
    Restarted,
    RunStarted,
    RunExited,
    OutOfMemory,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReleaseCreated => "release_created",
            Self::ReleaseRolling => "release_rolling",
            Self::ReleaseLive => "release_live",
            Self::ReleaseFailed => "release_failed",
            Self::InstanceStarting => "instance_starting",
            Self::InstanceReady => "instance_ready",
            Self::InstanceDraining => "instance_draining",
            Self::InstanceStopped => "instance_stopped",
            Self::InstanceCrashed => "instance_crashed",
            Self::HealthFailed => "health_failed",
            Self::Scaled => "scaled",
            Self::Restarted => "restarted",
            Self::RunStarted => "run_started",
            Self::RunExited => "run_exited",
            Self::OutOfMemory => "out_of_memory",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "release_created" => Self::ReleaseCreated,
            "release_rolling" => Self::ReleaseRolling,
            "release_live" => Self::ReleaseLive,
            "release_failed" => Self::ReleaseFailed,
            "instance_starting" => Self::InstanceStarting,
            "instance_ready" => Self::InstanceReady,
            "instance_draining" => Self::InstanceDraining,
            "instance_stopped" => Self::InstanceStopped,
            "instance_crashed" => Self::InstanceCrashed,
            "health_failed" => Self::HealthFailed,
            "scaled" => Self::Scaled,
            "restarted" => Self::Restarted,
            "run_started" => Self::RunStarted,
            "run_exited" => Self::RunExited,
            "out_of_memory" => Self::OutOfMemory,
            _ => return None,
        })
    }
}

/// Answer of `GET /v1/apps/{app}/logs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogPage {
    pub lines: Vec<LogLine>,
    /// Pass as `after` to get what comes next.
    pub cursor: i64,
}

/// Answer of `GET /v1/info`: what clients need to know about this Berth.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Info {
    pub version: String,
    /// Apps are served as `NAME.<apps_domain>`.
    pub apps_domain: String,
    /// Base URL of the router as users reach it, e.g. `http://localhost:8080`.
    pub router_url: Option<String>,
    /// Largest accepted source archive, in bytes.
    pub max_source_bytes: u64,
    /// The state revision when this answer was made: wait for routers to
    /// apply it (`GET /v1/routers/applied`) to know they route what you saw.
    #[serde(default)]
    pub revision: crate::Revision,
}

/// Body of `PATCH /v1/apps/{app}/config`: vars to set and to remove.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ConfigChange {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub unset: Vec<String>,
}

/// Answer of the config and secrets endpoints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigAnswer {
    pub config: BTreeMap<String, String>,
    /// Secret names; values only when revealed (`?reveal=true`).
    pub secrets: BTreeMap<String, Option<String>>,
    /// The release the change made, if the app had one to remake.
    pub release: Option<Release>,
}

/// Body of `POST /v1/apps/{app}/rollback`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RollbackRequest {
    pub version: u32,
}

/// Body of `POST /v1/apps/{app}/restart`: the process types to restart
/// (all when empty).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct RestartRequest {
    #[serde(default)]
    pub process_types: Vec<String>,
}

/// Answer of `GET /v1/routers/applied`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoutersApplied {
    /// Whether every live router has applied the revision asked about.
    pub applied: bool,
    /// Live routers and the revision each has applied.
    pub routers: BTreeMap<String, crate::Revision>,
}

/// Answer of `GET /v1/routers/sessions`: the WebSocket sessions live
/// routers still carry to one instance they no longer route to, by router
/// (routers with none are left out).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RouterSessions {
    pub routers: BTreeMap<String, crate::DepartedSessions>,
}

impl RouterSessions {
    /// Sessions open on every router together.
    pub fn open(&self) -> u64 {
        self.routers.values().map(|s| s.open).sum()
    }

    /// The longest grace any of those routers gives them.
    pub fn grace(&self) -> std::time::Duration {
        let ms = self.routers.values().map(|s| s.grace_ms).max();
        std::time::Duration::from_millis(ms.unwrap_or(0))
    }
}

/// Body of every error answer of the API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}
