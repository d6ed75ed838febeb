//! The agent: makes one node do what the control plane wants.
//!
//! It watches its node's desired state (long-poll), runs builds and release
//! phases it claims, keeps the desired app processes running, and reports
//! the node's whole actual state back. When the control plane is away it
//! keeps running what it last knew.
//!
//! # Layout
//! - [`run`] and [`AgentConfig`]: the entry point and its settings.
//! - `supervisor`: reconciles desired instances against running ones,
//!   replacing old releases only once new instances are up.
//! - `instance`: one instance's life: spawn, readiness and health checks,
//!   restart with backoff, drain confirmed by the routers (then waiting
//!   out the WebSocket sessions they still carry to it), stop.
//! - `health`: the HTTP health check.
//! - `spawn`: how an app process is started — the one place where per-app
//!   users and cgroups are applied.
//! - [`cgroup`]: per-instance cgroups (v1, v2, hybrid): limits, OOM
//!   detection, killing a whole tree.
//! - `confine`: one process start's group, its limits and OOM kills.
//! - `sockets`: connections open to an instance's port, which a drain
//!   waits out.
//! - `jobs`: builds and release phases.
//! - `runs`: one-off processes, detached or attached through the control
//!   plane to their caller.
//! - `actual`: the node's actual state and the task reporting it.

mod actual;
pub mod cgroup;
mod confine;
mod health;
mod instance;
mod jobs;
mod runs;
mod sockets;
mod spawn;
mod supervisor;

use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_client::logs::LogShipper;
use berth_client::Client;
use berth_model::NodeDesired;
use tokio::sync::watch;

/// Settings of one agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This node's name, unique in the cluster.
    pub node: String,
    /// Builds, app homes and caches live here.
    pub data_dir: PathBuf,
    /// The `uv` binary.
    pub uv: PathBuf,
    /// One uv cache for every app (tests, CI); `None` gives each app its own
    /// under the data dir, so that apps share nothing.
    pub uv_cache_dir: Option<PathBuf>,
    /// Address routers use to reach this node's app processes.
    pub advertise_ip: IpAddr,
    /// Between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    /// The longest a draining instance waits for every router to confirm it
    /// is out of their tables before it is stopped anyway.
    pub drain_timeout: Duration,
    /// A web process must listen on `PORT` within this time.
    pub ready_timeout: Duration,
    /// First restart delay after a crash; doubles per crash in a row.
    pub restart_backoff: Duration,
    /// The longest restart delay.
    pub restart_backoff_max: Duration,
    /// Longest a release phase may run.
    pub release_timeout: Duration,
    /// The cgroup (relative to each hierarchy's root) under which app
    /// processes get their groups; `None` runs them without limits.
    pub cgroup_parent: Option<String>,
    /// What the agent found at start under `cgroup_parent`.
    pub(crate) cgroups: Option<cgroup::Cgroups>,
}

impl AgentConfig {
    /// Defaults for a node named `node` keeping its files in `data_dir`.
    pub fn new(node: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            node: node.into(),
            data_dir: data_dir.into(),
            uv: PathBuf::from("uv"),
            uv_cache_dir: None,
            advertise_ip: IpAddr::from([127, 0, 0, 1]),
            stop_grace: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
            ready_timeout: Duration::from_secs(60),
            restart_backoff: Duration::from_millis(500),
            restart_backoff_max: Duration::from_secs(60),
            release_timeout: Duration::from_secs(30 * 60),
            cgroup_parent: None,
            cgroups: None,
        }
    }
}

/// The cgroup parent of the agent of `node` keeping its files in
/// `data_dir`: `berth/NODE-HASH`, so that agents sharing a host (tests,
/// several Berths) never touch each other's groups, and an agent restarted
/// on the same data dir finds what its previous run left.
pub fn default_cgroup_parent(node: &str, data_dir: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    // FNV-1a: std's hasher may change between Rust releases, and the name
    // must stay the same across upgrades of berth.
    let hash = dir
        .as_os_str()
        .as_bytes()
        .iter()
        .fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
        });
    format!(
        "{}/{}-{hash:08x}",
        cgroup::DEFAULT_PARENT,
        confine::group_name(&[node]),
    )
}

/// Runs the agent until `shutdown` resolves, then stops every app process
/// it started (SIGTERM, grace, SIGKILL) and returns.
pub async fn run(
    client: Client,
    config: AgentConfig,
    logs: LogShipper,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    std::fs::create_dir_all(config.data_dir.join("builds"))?;
    std::fs::create_dir_all(config.data_dir.join("homes"))?;
    let mut config = config;
    config.cgroups = detect_cgroups(config.cgroup_parent.as_deref()).await;
    let config = Arc::new(config);
    let actual = actual::Actual::default();
    let (desired_tx, desired_rx) = watch::channel(None::<NodeDesired>);
    let (stop_tx, stop_rx) = watch::channel(false);

    let reporter = tokio::spawn(actual::report(
        client.clone(),
        config.node.clone(),
        actual.clone(),
        stop_rx.clone(),
    ));
    let jobs = jobs::Jobs::new(client.clone(), config.clone(), logs.clone());
    let runs = runs::Runs::new(client.clone(), config.clone(), logs.clone());
    let watcher = tokio::spawn(watch_desired(
        client.clone(),
        config.node.clone(),
        desired_tx,
        (jobs, runs.clone()),
        stop_rx.clone(),
    ));
    let supervisor = tokio::spawn(supervisor::run(
        config.clone(),
        client.clone(),
        actual.clone(),
        logs.clone(),
        desired_rx,
        stop_rx,
    ));

    shutdown.await;
    stop_tx.send_replace(true);
    let _ = watcher.await;
    let _ = supervisor.await;
    runs.stop_all().await;
    let _ = reporter.await;
    // Say goodbye with the (now empty) actual state so routers drop us at once.
    let _ = client.report(&config.node, &actual.report()).await;
    logs.flush().await;
    if let Some(cgroups) = &config.cgroups {
        cgroups.remove_parent();
    }
    Ok(())
}

/// The node's cgroups under `parent`, cleared of what a previous run of
/// this agent left; `None` (logged) when there are none to use.
async fn detect_cgroups(parent: Option<&str>) -> Option<cgroup::Cgroups> {
    let cgroups = match cgroup::Cgroups::detect(parent?) {
        Ok(c) => c?,
        Err(e) => {
            tracing::warn!("app processes run without limits: {e}");
            return None;
        }
    };
    match cgroups.remove_leftovers().await {
        Ok(0) => {}
        Ok(n) => {
            tracing::warn!("stopped {n} app process groups left by a previous run of this agent")
        }
        Err(e) => tracing::warn!("cannot clear app process groups of a previous run: {e}"),
    }
    Some(cgroups)
}

/// Follows the node's desired state; hands it to the supervisor and starts
/// the jobs it lists. On errors it keeps the last state and retries.
async fn watch_desired(
    client: Client,
    node: String,
    desired: watch::Sender<Option<NodeDesired>>,
    (jobs, runs): (jobs::Jobs, runs::Runs),
    mut stop: watch::Receiver<bool>,
) {
    let mut revision = 0;
    let mut backoff = Duration::from_millis(200);
    loop {
        let poll = client.node_desired(&node, revision, Duration::from_secs(25));
        let result = tokio::select! {
            r = poll => r,
            _ = crate::stopped(&mut stop) => return,
        };
        match result {
            Ok(d) => {
                backoff = Duration::from_millis(200);
                if d.revision == revision {
                    continue;
                }
                revision = d.revision;
                jobs.start(&d);
                runs.apply(&d.runs);
                desired.send_replace(Some(d));
            }
            Err(e) => {
                tracing::warn!("agent: cannot get desired state, keeping the last one: {e}");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = crate::stopped(&mut stop) => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Resolves once the agent is told to stop (or its stop channel is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    // Drop the borrow guard before returning: it must not live across awaits.
    let _ = stop.wait_for(|s| *s).await.map(drop);
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cgroup_parent_of_a_data_dir_never_changes() {
        // An agent finds what its previous run left by this name, across
        // upgrades of berth and of Rust.
        assert_eq!(
            super::default_cgroup_parent("node 1", std::path::Path::new("/nonexistent/berth-data")),
            "berth/node_1-17e250d6"
        );
    }
}
