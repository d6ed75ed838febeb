//! Berth's state: one narrow async trait, [`Store`], with a backend per
//! database.
//!
//! Every method is one domain transition ("a build succeeded", "a release
//! phase finished") carried out atomically, so the control plane never leaves
//! half a deploy behind when it dies between two writes. Every transition
//! that agents or routers must act on bumps the global [`Revision`] in the
//! same transaction; watchers compare revisions instead of trusting messages.
//!
//! # Layout
//! - [`Store`]: the trait, and the records it returns.
//! - [`sqlite`]: the embedded backend (the default of `berth up`).
//! - [`StoreError`]: what can go wrong, with "not found" and "conflict" apart
//!   so the API can answer 404 and 409.

pub mod sqlite;

use std::collections::BTreeMap;

use async_trait::async_trait;
use berth_model::*;
use thiserror::Error;

pub use sqlite::SqliteStore;

/// What a store operation can fail with.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("corrupt {what} in the database: {reason}")]
    Corrupt { what: String, reason: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
}

impl StoreError {
    fn corrupt(what: &str, reason: impl std::fmt::Display) -> Self {
        Self::Corrupt {
            what: what.to_string(),
            reason: reason.to_string(),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An app as stored: what [`App`] shows, plus its config vars.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppRecord {
    pub name: String,
    pub created_at: UnixMillis,
    pub current_release: Option<u32>,
    pub formation: BTreeMap<String, u32>,
    pub config: BTreeMap<String, String>,
    /// Secret names and the version of each that new releases carry.
    pub secrets: BTreeMap<String, u32>,
    pub domains: Vec<String>,
    pub settings: AppSettings,
    /// The rollout in progress, if any.
    pub rollout: Option<Rollout>,
    /// Restart generation of the live instances, per process type.
    pub generations: BTreeMap<String, u32>,
}

/// A change of config vars and secrets; secrets arrive sealed.
#[derive(Debug, Clone, Default)]
pub struct ConfigEdit {
    pub set: BTreeMap<String, String>,
    pub unset: Vec<String>,
    pub set_secrets: BTreeMap<String, String>,
    pub unset_secrets: Vec<String>,
}

/// A sealed secret value, one version of one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSecret {
    pub app: String,
    pub name: String,
    pub version: u32,
    pub sealed: String,
}

/// A router's last poll: the revision it had applied, the WebSocket
/// sessions it still carried to instances it no longer routes to, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterSeen {
    pub name: String,
    pub applied: Revision,
    pub sessions: Vec<DepartedSessions>,
    pub last_seen: UnixMillis,
}

/// A build to record when its source is uploaded.
#[derive(Debug, Clone)]
pub struct NewBuild {
    pub id: String,
    pub app: String,
    pub source_size: u64,
    pub created_by: String,
    pub now: UnixMillis,
}

/// A build as stored, with the config snapshot its release will carry.
#[derive(Debug, Clone)]
pub struct BuildRecord {
    pub build: Build,
    /// The app's config when the source was uploaded: the build sees it, and
    /// the release made from the build carries it.
    pub config: BTreeMap<String, String>,
    pub created_by: String,
}

/// The log lines an app keeps; older ones are pruned.
pub const LOG_LINES_KEPT: i64 = 20_000;

/// The state of Berth, whatever database holds it.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The current revision.
    async fn revision(&self) -> Result<Revision>;

    /// Creates an app; `Conflict` if the name is taken.
    async fn create_app(&self, name: &str, now: UnixMillis) -> Result<AppRecord>;
    async fn app(&self, name: &str) -> Result<Option<AppRecord>>;
    async fn apps(&self) -> Result<Vec<AppRecord>>;
    /// Deletes an app and everything it owns; `NotFound` if absent.
    async fn delete_app(&self, name: &str) -> Result<()>;

    /// Sets instance counts for the given process types (others unchanged).
    async fn set_formation(&self, app: &str, counts: &BTreeMap<String, u32>) -> Result<AppRecord>;

    /// Routes `domain` to `app`; `Conflict` if any app has it already.
    async fn add_domain(&self, app: &str, domain: &str) -> Result<()>;
    /// `NotFound` if `app` does not have `domain`.
    async fn remove_domain(&self, app: &str, domain: &str) -> Result<()>;

    /// Records an uploaded source, snapshotting the app's config.
    async fn create_build(&self, build: NewBuild) -> Result<BuildRecord>;
    async fn build(&self, id: &str) -> Result<Option<BuildRecord>>;
    async fn queued_builds(&self) -> Result<Vec<BuildRecord>>;
    /// Moves a queued build to `Building` on `node`; `Conflict` if it is not
    /// queued any more (another node won).
    async fn claim_build(&self, id: &str, node: &str, now: UnixMillis) -> Result<BuildRecord>;
    async fn fail_build(&self, id: &str, error: &str, now: UnixMillis) -> Result<BuildRecord>;
    /// Marks a build succeeded and creates its release in one step, with the
    /// app's config and secrets as they are now. The release is `Pending`
    /// when the artifact has a release command, else it starts rolling out.
    /// New process types join the formation with one instance each
    /// (singleton types too; others of a Procfile-less app as well).
    async fn succeed_build(
        &self,
        id: &str,
        artifact: &Artifact,
        now: UnixMillis,
    ) -> Result<(BuildRecord, Release)>;

    async fn release(&self, app: &str, version: u32) -> Result<Option<Release>>;
    /// Newest first.
    async fn releases(&self, app: &str) -> Result<Vec<Release>>;
    /// Releases waiting for their release phase, across apps.
    async fn pending_releases(&self) -> Result<Vec<Release>>;
    /// `Pending` → `Releasing`; `Conflict` if it was not pending.
    async fn claim_release(&self, app: &str, version: u32, node: &str) -> Result<Release>;
    /// Ends a release phase: success starts the release's rollout; failure
    /// marks it failed and changes nothing else.
    async fn finish_release_phase(
        &self,
        app: &str,
        version: u32,
        error: Option<&str>,
    ) -> Result<Release>;

    /// Changes config vars and secrets. When the app has a release (live or
    /// rolling out), a new release of the same build with the new config is
    /// made and starts rolling out (after its release phase, if any); it is
    /// returned. `description` is what the release list shows.
    async fn change_config(
        &self,
        app: &str,
        edit: &ConfigEdit,
        description: &str,
        created_by: &str,
        now: UnixMillis,
    ) -> Result<(AppRecord, Option<Release>)>;
    /// Sealed values of an app's secrets, every version.
    async fn secrets(&self, app: &str) -> Result<Vec<SealedSecret>>;
    /// A new release with `version`'s build and config, rolling out at once
    /// (no release phase). `Conflict` when that build was garbage-collected.
    async fn rollback(
        &self,
        app: &str,
        version: u32,
        created_by: &str,
        now: UnixMillis,
    ) -> Result<Release>;
    /// Starts a rolling restart of the live release: new instances of the
    /// given process types (all when empty) replace the running ones.
    async fn restart(
        &self,
        app: &str,
        process_types: &[String],
        now: UnixMillis,
    ) -> Result<Rollout>;
    /// The rollout of `version` finished: it becomes the live release.
    async fn complete_rollout(&self, app: &str, version: u32) -> Result<()>;
    /// The rollout of `version` failed: it stops, the live release stays.
    async fn fail_rollout(&self, app: &str, version: u32, error: &str) -> Result<()>;
    /// Records that `up` new instances of the rollout of `version` are up.
    async fn note_rollout_progress(
        &self,
        app: &str,
        version: u32,
        up: u32,
        now: UnixMillis,
    ) -> Result<()>;
    async fn set_settings(&self, app: &str, settings: &AppSettings) -> Result<AppRecord>;

    /// Marks all but the newest `keep` succeeded builds of `app` collected,
    /// sparing any build a live or rolling release or a running instance
    /// uses; returns the ids collected.
    async fn collect_builds(&self, app: &str, keep: usize, now: UnixMillis) -> Result<Vec<String>>;
    /// Builds collected since `since`.
    async fn collected_builds(&self, since: UnixMillis) -> Result<Vec<(String, CollectedBuild)>>;

    /// Replaces everything `node` reported before with `instances`; returns
    /// whether anything a router or user sees changed.
    async fn replace_node_instances(
        &self,
        node: &str,
        instances: &[Instance],
        now: UnixMillis,
    ) -> Result<bool>;
    /// Instances of one app, or of all apps.
    async fn instances(&self, app: Option<&str>) -> Result<Vec<Instance>>;
    /// Nodes and when each last reported.
    async fn nodes(&self) -> Result<Vec<(String, UnixMillis)>>;
    /// Records a router's poll, replacing what it reported before (no
    /// revision bump: nothing to act on).
    async fn record_router(
        &self,
        name: &str,
        applied: Revision,
        sessions: &[DepartedSessions],
        now: UnixMillis,
    ) -> Result<()>;
    async fn routers(&self) -> Result<Vec<RouterSeen>>;

    /// Records a one-off process of `release` placed on `node`, numbered
    /// after the app's last run; it is `Pending` until its node starts it.
    async fn create_run(
        &self,
        app: &str,
        release: u32,
        node: &str,
        run: &NewRun,
        created_by: &str,
        now: UnixMillis,
    ) -> Result<Run>;
    async fn run(&self, app: &str, number: u32) -> Result<Option<Run>>;
    /// Runs that have not exited, of one app or of all; newest last.
    async fn active_runs(&self, app: Option<&str>) -> Result<Vec<Run>>;
    /// Asks for a run to be stopped (it leaves its node's desired state).
    /// `NotFound` if there is no such run; `Conflict` if it has exited.
    async fn kill_run(&self, app: &str, number: u32) -> Result<Run>;
    /// Records what the run's node saw. `Exited` is final: later reports
    /// are ignored, and the run is returned as it was.
    async fn report_run(
        &self,
        app: &str,
        number: u32,
        report: &RunReport,
        now: UnixMillis,
    ) -> Result<Run>;

    /// Appends log lines; returns the id of the last one.
    async fn append_logs(&self, lines: &[NewLogLine]) -> Result<i64>;
    /// Lines of `app` with id > `after` (oldest first, at most `limit`); with
    /// `after` = None, the last `limit` lines.
    async fn logs(
        &self,
        app: &str,
        after: Option<i64>,
        limit: u32,
        scope: Option<&str>,
    ) -> Result<Vec<LogLine>>;
    /// The event lines of `app` with id > `after`, oldest first.
    async fn events(&self, app: &str, after: i64, limit: u32) -> Result<Vec<LogLine>>;
    /// The id of the newest line of any app (0 when there is none).
    async fn last_log_id(&self) -> Result<i64>;
}
