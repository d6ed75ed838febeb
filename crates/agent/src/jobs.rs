//! Builds and release phases: claimed from the desired state, run once, and
//! their outcome reported with their output shipped first.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use berth_build::BuildOptions;
use berth_client::logs::LogShipper;
use berth_client::{retry_transient, Client};
use berth_model::{BuildJob, BuildResult, NewLogLine, NodeDesired, ReleaseJob, ReleasePhaseResult};

use crate::spawn::{self, ProcessSpec};
use crate::AgentConfig;

/// Attempts at delivering a job's outcome (about two minutes of backoff).
const RESULT_ATTEMPTS: u32 = 30;

/// Starts each job at most once per agent run; the server's claim decides
/// between agents.
#[derive(Clone)]
pub struct Jobs {
    client: Client,
    config: Arc<AgentConfig>,
    logs: LogShipper,
    started: Arc<Mutex<HashSet<String>>>,
}

impl Jobs {
    pub fn new(client: Client, config: Arc<AgentConfig>, logs: LogShipper) -> Self {
        Self {
            client,
            config,
            logs,
            started: Arc::default(),
        }
    }

    fn first_time(&self, id: String) -> bool {
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id)
    }

    pub fn start(&self, desired: &NodeDesired) {
        for job in &desired.builds {
            if self.first_time(format!("build {}", job.build_id)) {
                let me = self.clone();
                let job = job.clone();
                tokio::spawn(async move { me.build(job).await });
            }
        }
        for gone in &desired.collected_builds {
            if self.first_time(format!("collect {}", gone.build_id)) {
                let dir = self.build_dir(&gone.app, &gone.build_id);
                tokio::spawn(async move {
                    match tokio::fs::remove_dir_all(&dir).await {
                        Ok(()) => tracing::info!("removed collected build {}", dir.display()),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            tracing::warn!("cannot remove collected build {}: {e}", dir.display())
                        }
                    }
                });
            }
        }
        for job in &desired.release_phases {
            if self.first_time(format!("release {} {}", job.app, job.release)) {
                let me = self.clone();
                let job = job.clone();
                tokio::spawn(async move { me.release_phase(job).await });
            }
        }
    }

    fn log(&self, app: &str, source: &str, scope: &str, line: impl Into<String>) {
        self.logs.send(NewLogLine {
            app: app.into(),
            ts: berth_model::now_millis(),
            source: source.into(),
            scope: Some(scope.into()),
            line: line.into(),
            event: None,
        });
    }

    async fn build(&self, job: BuildJob) {
        match self
            .client
            .claim_build(&job.build_id, &self.config.node)
            .await
        {
            Ok(true) => {}
            Ok(false) => return, // another node took it
            Err(e) => {
                tracing::warn!("agent: cannot claim build {}: {e}", job.build_id);
                return;
            }
        }
        let result = match self.run_build(&job).await {
            Ok(artifact) => BuildResult::Succeeded { artifact },
            Err(error) => {
                self.log(&job.app, "build", &job.build_id, format!(" !     {error}"));
                BuildResult::Failed { error }
            }
        };
        self.logs.flush().await;
        // The result must arrive: retry while the server is away.
        let sent = retry_transient(RESULT_ATTEMPTS, || {
            self.client.build_result(&job.build_id, &result)
        })
        .await;
        if let Err(e) = sent {
            tracing::warn!("agent: build {} result not delivered: {e}", job.build_id);
        }
    }

    /// Where build `id` of `app` is built and its artifact kept.
    fn build_dir(&self, app: &str, id: &str) -> PathBuf {
        self.config.data_dir.join("builds").join(app).join(id)
    }

    async fn run_build(&self, job: &BuildJob) -> Result<berth_model::Artifact, String> {
        let dest = self.build_dir(&job.app, &job.build_id);
        let _ = tokio::fs::remove_dir_all(&dest).await;
        tokio::fs::create_dir_all(&dest)
            .await
            .map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
        let source = self
            .client
            .build_source(&job.build_id)
            .await
            .map_err(|e| format!("cannot download the source: {e}"))?;
        let archive = dest.join("source.tar.gz");
        tokio::fs::write(&archive, &source)
            .await
            .map_err(|e| format!("cannot write {}: {e}", archive.display()))?;
        let cache = self
            .config
            .uv_cache_dir
            .clone()
            .unwrap_or_else(|| self.config.data_dir.join("cache").join(&job.app).join("uv"));
        let mut opts = BuildOptions::new(self.config.uv.clone(), cache);
        opts.env = job.env.clone();
        let sink = |line: &str| self.log(&job.app, "build", &job.build_id, line);
        let artifact = berth_build::build(&archive, &dest, &opts, &sink)
            .await
            .map_err(|e| e.to_string())?;
        let _ = tokio::fs::remove_file(&archive).await;
        Ok(artifact)
    }

    async fn release_phase(&self, job: ReleaseJob) {
        match self
            .client
            .claim_release(&job.app, job.release, &self.config.node)
            .await
        {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(
                    "agent: cannot claim release v{} of {}: {e}",
                    job.release,
                    job.app
                );
                return;
            }
        }
        self.log(
            &job.app,
            "release",
            &job.build_id,
            format!("-----> Running release command: {}", job.command),
        );
        let error = self.run_release_phase(&job).await.err();
        if let Some(e) = &error {
            self.log(&job.app, "release", &job.build_id, format!(" !     {e}"));
        }
        self.logs.flush().await;
        let result = ReleasePhaseResult {
            ok: error.is_none(),
            error,
        };
        let sent = retry_transient(RESULT_ATTEMPTS, || {
            self.client
                .release_phase_result(&job.app, job.release, &result)
        })
        .await;
        if let Err(e) = sent {
            tracing::warn!("agent: release phase result not delivered: {e}");
        }
    }

    async fn run_release_phase(&self, job: &ReleaseJob) -> Result<(), String> {
        let dir = PathBuf::from(&job.dir);
        let mut child = spawn::spawn(&ProcessSpec {
            command: &job.command,
            dir: &dir,
            env: &job.env,
            dyno: "release",
            port: None,
            home: self.config.data_dir.join("homes").join(&job.app),
            cgroup: None,
        })
        .map_err(|e| format!("could not start the release command: {e}"))?;
        let output = spawn::forward_output(
            &mut child,
            &job.app,
            "release",
            Some(&job.build_id),
            &self.logs,
        );
        let pid = child.id();
        let status = match tokio::time::timeout(self.config.release_timeout, child.wait()).await {
            Ok(s) => s.map_err(|e| e.to_string())?,
            Err(_) => {
                if let Some(pid) = pid {
                    spawn::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
                }
                let _ = child.wait().await;
                return Err(format!(
                    "release command `{}` did not finish within {}s and was killed",
                    job.command,
                    self.config.release_timeout.as_secs()
                ));
            }
        };
        if let Some(pid) = pid {
            spawn::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
        }
        let tail = output.await.unwrap_or_default();
        if status.success() {
            return Ok(());
        }
        let mut msg = format!(
            "release command `{}` {}; release v{} was not deployed",
            job.command,
            spawn::describe_exit(status),
            job.release
        );
        if !tail.is_empty() {
            msg.push_str(". Last output:\n");
            msg.push_str(&tail.join("\n"));
        }
        Err(msg)
    }
}
