//! From stored state to what each node should run and what routers should
//! route: pure functions over a [`Snapshot`], so placement and rollout rules
//! are tested without a database or a process.
//!
//! Placement today: an instance runs on the node that holds its release's
//! build (artifacts are not shipped between nodes yet).
//!
//! Rollouts are planned here too, from reported state alone: per process
//! type, new instances (the rollout's release and restart generation) start
//! as far as the app's surge allows, and old instances that are up stay
//! desired while the new ones up fall short of the formation minus the
//! allowed unavailability. Each report moves the plan one step, so a new
//! release that never comes up never takes an old instance down.

use std::collections::{BTreeMap, HashMap};

use berth_model::limits::RUN_TYPE;
use berth_model::*;
use berth_store::{AppRecord, BuildRecord, SealedSecret, Store, StoreError};

/// A node that has not reported for this long is presumed gone: its
/// instances are neither routed to nor counted as up.
pub const NODE_TIMEOUT_MS: i64 = 30_000;

/// Everything placement and routing look at, read at one revision.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Read before the rest, so anything changed while reading shows up as a
    /// newer revision and watchers come back for it.
    pub revision: Revision,
    pub now: UnixMillis,
    pub apps: Vec<AppRecord>,
    /// Releases that are current, rolling out, waiting for a release phase,
    /// or that have instances running.
    pub releases: HashMap<(String, u32), Release>,
    /// Builds of those releases, and queued builds.
    pub builds: HashMap<String, BuildRecord>,
    pub queued_builds: Vec<BuildRecord>,
    /// Reported instances of nodes that report.
    pub instances: Vec<Instance>,
    /// Opened secret values by (app, name, version).
    pub secrets: HashMap<(String, String, u32), String>,
    /// Recently collected builds, by node.
    pub collected: Vec<(String, CollectedBuild)>,
    /// One-off processes that have not ended.
    pub runs: Vec<Run>,
}

/// Opens a sealed secret for the processes that need it; `None` when it
/// cannot be opened (the reason is logged by the opener).
pub type SecretOpener = dyn Fn(&SealedSecret) -> Option<String> + Send + Sync;

impl Snapshot {
    /// Reads a snapshot from the store.
    pub async fn load(store: &dyn Store, open: &SecretOpener) -> Result<Self, StoreError> {
        let revision = store.revision().await?;
        let now = now_millis();
        let apps = store.apps().await?;
        let live_nodes: Vec<String> = store
            .nodes()
            .await?
            .into_iter()
            .filter(|(_, seen)| now - seen < NODE_TIMEOUT_MS)
            .map(|(n, _)| n)
            .collect();
        let instances: Vec<Instance> = store
            .instances(None)
            .await?
            .into_iter()
            .filter(|i| live_nodes.contains(&i.node))
            .collect();
        let mut wanted: Vec<(String, u32)> = Vec::new();
        for app in &apps {
            wanted.extend(app.current_release.map(|v| (app.name.clone(), v)));
            wanted.extend(app.rollout.as_ref().map(|r| (app.name.clone(), r.release)));
        }
        wanted.extend(instances.iter().map(|i| (i.app.clone(), i.release)));
        let runs = store.active_runs(None).await?;
        wanted.extend(runs.iter().map(|r| (r.app.clone(), r.release)));
        let mut releases = HashMap::new();
        for r in store.pending_releases().await? {
            releases.insert((r.app.clone(), r.version), r);
        }
        for (app, v) in wanted {
            if releases.contains_key(&(app.clone(), v)) {
                continue;
            }
            if let Some(r) = store.release(&app, v).await? {
                releases.insert((app, v), r);
            }
        }
        let mut builds = HashMap::new();
        for r in releases.values() {
            if let Some(b) = store.build(&r.build_id).await? {
                builds.insert(b.build.id.clone(), b);
            }
        }
        let mut secrets = HashMap::new();
        for app in apps.iter().filter(|a| {
            !a.secrets.is_empty()
                || releases
                    .values()
                    .any(|r| r.app == a.name && !r.secrets.is_empty())
        }) {
            for s in store.secrets(&app.name).await? {
                if let Some(value) = open(&s) {
                    secrets.insert((s.app.clone(), s.name.clone(), s.version), value);
                }
            }
        }
        Ok(Self {
            revision,
            now,
            apps,
            releases,
            builds,
            queued_builds: store.queued_builds().await?,
            instances,
            secrets,
            collected: store.collected_builds(now - 7 * 24 * 3600 * 1000).await?,
            runs,
        })
    }

    fn artifact_of(&self, release: &Release) -> Option<(&str, &Artifact)> {
        let b = self.builds.get(&release.build_id)?;
        Some((b.build.node.as_deref()?, b.build.artifact.as_ref()?))
    }

    pub fn release(&self, app: &str, version: u32) -> Option<&Release> {
        self.releases.get(&(app.to_string(), version))
    }

    /// The environment Berth gives every process of a release, besides
    /// `PORT` and `DYNO` which the agent sets per instance: config vars,
    /// opened secrets, and who it is.
    pub fn release_env(&self, release: &Release) -> BTreeMap<String, String> {
        let mut env = release.config.clone();
        for (name, version) in &release.secrets {
            if let Some(v) = self
                .secrets
                .get(&(release.app.clone(), name.clone(), *version))
            {
                env.insert(name.clone(), v.clone());
            }
        }
        env.insert("BERTH_APP".into(), release.app.clone());
        env.insert("BERTH_RELEASE".into(), format!("v{}", release.version));
        env
    }

    /// The app's config and opened secrets as they are now (what a build sees).
    fn app_env(&self, app: &AppRecord) -> BTreeMap<String, String> {
        let mut env = app.config.clone();
        for (name, version) in &app.secrets {
            if let Some(v) = self
                .secrets
                .get(&(app.name.clone(), name.clone(), *version))
            {
                env.insert(name.clone(), v.clone());
            }
        }
        env
    }

    fn app_instances<'a>(&'a self, app: &'a str) -> impl Iterator<Item = &'a Instance> + 'a {
        self.instances.iter().filter(move |i| i.app == app)
    }
}

/// What the app's instances should converge to: a release, and a restart
/// generation per process type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub release: u32,
    pub generations: BTreeMap<String, u32>,
}

impl Target {
    /// The rollout's target while one is on, else the live release.
    pub fn of(app: &AppRecord) -> Option<Self> {
        match (&app.rollout, app.current_release) {
            (Some(r), _) => Some(Self {
                release: r.release,
                generations: r.generations.clone(),
            }),
            (None, Some(v)) => Some(Self {
                release: v,
                generations: app.generations.clone(),
            }),
            (None, None) => None,
        }
    }

    pub fn generation(&self, process_type: &str) -> u32 {
        self.generations.get(process_type).copied().unwrap_or(0)
    }

    /// Whether `i` is one of the instances this target wants.
    pub fn owns(&self, i: &Instance) -> bool {
        i.release == self.release && i.generation == self.generation(&i.process_type)
    }
}

/// One instance to run: which release, which index, which generation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Slot {
    release: u32,
    generation: u32,
    process_type: String,
    index: u32,
}

/// The instances an app should have right now, wherever they run.
fn plan_app(s: &Snapshot, app: &AppRecord) -> Vec<Slot> {
    let Some(target) = Target::of(app) else {
        return Vec::new();
    };
    let Some((_, artifact)) = s
        .release(&app.name, target.release)
        .and_then(|r| s.artifact_of(r))
    else {
        return Vec::new();
    };
    let policy = &app.settings.rollout;
    let mut slots = Vec::new();
    for process_type in artifact.processes.keys() {
        let wanted = app.formation.get(process_type).copied().unwrap_or(0);
        let generation = target.generation(process_type);
        let of_type: Vec<&Instance> = s
            .app_instances(&app.name)
            .filter(|i| &i.process_type == process_type)
            .collect();
        let new_up = of_type
            .iter()
            .filter(|i| target.owns(i) && i.state == InstanceState::Up && i.index <= wanted)
            .count() as u32;
        let (kept_old, new_count): (Vec<&Instance>, u32) = if policy.no_overlap(process_type) {
            // Nothing new starts while anything old of the type still runs.
            let old_running = of_type.iter().any(|i| !target.owns(i));
            (Vec::new(), if old_running { 0 } else { wanted })
        } else {
            let mut old_up: Vec<&Instance> = of_type
                .iter()
                .copied()
                .filter(|i| !target.owns(i) && i.state == InstanceState::Up)
                .filter(|i| {
                    s.release(&app.name, i.release)
                        .is_some_and(|r| r.status != ReleaseStatus::Failed)
                })
                .collect();
            old_up.sort_by_key(|i| (i.index, std::cmp::Reverse(i.release), i.generation));
            let need = wanted
                .saturating_sub(policy.unavailable)
                .saturating_sub(new_up) as usize;
            old_up.truncate(need);
            let new_count = wanted.min((wanted + policy.surge).saturating_sub(old_up.len() as u32));
            (old_up, new_count)
        };
        slots.extend((1..=new_count).map(|index| Slot {
            release: target.release,
            generation,
            process_type: process_type.clone(),
            index,
        }));
        slots.extend(kept_old.into_iter().map(|i| Slot {
            release: i.release,
            generation: i.generation,
            process_type: i.process_type.clone(),
            index: i.index,
        }));
    }
    slots
}

/// What `node` should be doing.
pub fn node_desired(s: &Snapshot, node: &str, apps_domain: &str) -> NodeDesired {
    let mut instances = Vec::new();
    for app in &s.apps {
        for slot in plan_app(s, app) {
            let Some(release) = s.release(&app.name, slot.release) else {
                continue;
            };
            let Some((build_node, artifact)) = s.artifact_of(release) else {
                continue;
            };
            let Some(command) = artifact.processes.get(&slot.process_type) else {
                continue;
            };
            if build_node != node {
                continue;
            }
            let web = slot.process_type == WEB;
            let limits = app
                .settings
                .limits
                .get(&slot.process_type)
                .copied()
                .unwrap_or_default();
            instances.push(DesiredInstance {
                app: app.name.clone(),
                release: slot.release,
                process_type: slot.process_type,
                index: slot.index,
                generation: slot.generation,
                command: command.clone(),
                env: s.release_env(release),
                dir: artifact.dir.clone(),
                healthcheck: app.settings.healthcheck.clone().filter(|_| web),
                host: app_host(&app.name, apps_domain),
                limits,
            });
        }
    }
    instances.sort_by_key(|i| i.key());
    let mut release_phases: Vec<ReleaseJob> = s
        .releases
        .values()
        .filter(|r| r.status == ReleaseStatus::Pending)
        .filter_map(|r| {
            let (build_node, artifact) = s.artifact_of(r)?;
            if build_node != node {
                return None;
            }
            Some(ReleaseJob {
                app: r.app.clone(),
                release: r.version,
                build_id: r.build_id.clone(),
                command: artifact.release_command.clone()?,
                env: s.release_env(r),
                dir: artifact.dir.clone(),
            })
        })
        .collect();
    release_phases.sort_by_key(|j| (j.app.clone(), j.release));
    NodeDesired {
        revision: s.revision,
        instances,
        builds: s
            .queued_builds
            .iter()
            .map(|b| BuildJob {
                build_id: b.build.id.clone(),
                app: b.build.app.clone(),
                env: s
                    .apps
                    .iter()
                    .find(|a| a.name == b.build.app)
                    .map(|a| s.app_env(a))
                    .unwrap_or_default(),
            })
            .collect(),
        release_phases,
        collected_builds: s
            .collected
            .iter()
            .filter(|(n, _)| n == node)
            .map(|(_, c)| c.clone())
            .collect(),
        runs: node_runs(s, node),
    }
}

/// The one-off processes `node` should be running: placed there, not
/// ended, not being killed.
fn node_runs(s: &Snapshot, node: &str) -> Vec<RunJob> {
    s.runs
        .iter()
        .filter(|r| r.node == node && !r.kill_requested && r.state != RunState::Exited)
        .filter_map(|r| {
            let release = s.release(&r.app, r.release)?;
            let (_, artifact) = s.artifact_of(release)?;
            let limits = s
                .apps
                .iter()
                .find(|a| a.name == r.app)
                .and_then(|a| a.settings.limits.get(RUN_TYPE).copied())
                .unwrap_or_default();
            Some(RunJob {
                limits,
                app: r.app.clone(),
                number: r.number,
                release: r.release,
                command: r.command.clone(),
                env: s.release_env(release),
                dir: artifact.dir.clone(),
                attach: r.attach,
                tty: r.tty,
                state: r.state,
            })
        })
        .collect()
}

/// The process type that receives HTTP traffic.
pub const WEB: &str = "web";

/// What routers should route: every web instance of an app that is up
/// (ready, and passing its health check's `rise`), whatever its release —
/// during a rollout old and new serve side by side, and an instance leaves
/// the table when its agent starts draining it.
pub fn route_table(s: &Snapshot, apps_domain: &str) -> RouteTable {
    let apps = s
        .apps
        .iter()
        .map(|app| {
            let backends = s
                .app_instances(&app.name)
                .filter(|i| i.process_type == WEB && i.state == InstanceState::Up)
                .filter_map(|i| {
                    Some(Backend {
                        addr: i.addr.clone()?,
                        id: i.backend_id(),
                    })
                })
                .collect();
            let static_files = app
                .current_release
                .or(app.rollout.as_ref().map(|r| r.release))
                .and_then(|v| s.release(&app.name, v))
                .and_then(|r| s.artifact_of(r))
                .and_then(|(_, a)| a.static_files.clone());
            let mut hosts = vec![app_host(&app.name, apps_domain)];
            hosts.extend(app.domains.iter().cloned());
            AppRoute {
                name: app.name.clone(),
                hosts,
                backends,
                static_files,
                // Routers check instances themselves too: the agent's checks
                // restart an instance, the router's take it out of rotation
                // the moment *this* router cannot reach it.
                settings: RouteSettings {
                    routing: app.settings.routing,
                    health_check: app.settings.healthcheck.clone(),
                },
            }
        })
        .collect();
    RouteTable {
        revision: s.revision,
        apps,
    }
}

/// `NAME.<apps_domain>`.
pub fn app_host(app: &str, apps_domain: &str) -> String {
    format!("{app}.{apps_domain}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{evaluate, Verdict, CRASH_LIMIT};

    fn release(version: u32, build: &str, status: ReleaseStatus) -> Release {
        Release {
            app: "shop".into(),
            version,
            build_id: build.into(),
            config: BTreeMap::from([("K".into(), "v".into())]),
            secrets: BTreeMap::from([("S".into(), 1)]),
            description: "deploy".into(),
            created_by: "admin".into(),
            created_at: 0,
            status,
            error: None,
        }
    }

    fn build(id: &str, release_command: Option<&str>) -> BuildRecord {
        BuildRecord {
            build: Build {
                id: id.into(),
                app: "shop".into(),
                status: BuildStatus::Succeeded,
                created_at: 0,
                finished_at: None,
                node: Some("n1".into()),
                error: None,
                artifact: Some(Artifact {
                    dir: format!("/b/{id}"),
                    processes: BTreeMap::from([
                        ("web".into(), "gunicorn app:app".into()),
                        ("beat".into(), "celery beat".into()),
                    ]),
                    release_command: release_command.map(Into::into),
                    static_files: None,
                    stack: String::new(),
                }),
                release: None,
                source_size: 0,
            },
            config: BTreeMap::new(),
            created_by: "admin".into(),
        }
    }

    fn instance(process_type: &str, release: u32, index: u32, state: InstanceState) -> Instance {
        let key = InstanceKey {
            app: "shop".into(),
            release,
            process_type: process_type.into(),
            index,
            generation: 0,
        };
        Instance {
            state,
            addr: Some(format!("127.0.0.1:{}", 5000 + release * 10 + index)),
            ..Instance::starting(key, "n1")
        }
    }

    fn web(release: u32, index: u32, state: InstanceState) -> Instance {
        instance("web", release, index, state)
    }

    /// v1 live with web=2 beat=1; v2 rolling out unless `rolling` is false.
    fn snapshot(rolling: bool) -> Snapshot {
        let app = AppRecord {
            name: "shop".into(),
            current_release: Some(1),
            formation: BTreeMap::from([("web".into(), 2), ("beat".into(), 1)]),
            domains: vec!["shop.example.com".into()],
            rollout: rolling.then(|| Rollout {
                release: 2,
                generations: BTreeMap::new(),
                started_at: 0,
                progress_at: 0,
                up: 0,
                description: "deploy".into(),
            }),
            ..Default::default()
        };
        Snapshot {
            revision: 7,
            now: 1000,
            apps: vec![app],
            releases: HashMap::from([
                (("shop".into(), 1), release(1, "b1", ReleaseStatus::Live)),
                (("shop".into(), 2), release(2, "b2", ReleaseStatus::Rolling)),
                (("shop".into(), 3), release(3, "b3", ReleaseStatus::Pending)),
            ]),
            builds: HashMap::from([
                ("b1".into(), build("b1", None)),
                ("b2".into(), build("b2", None)),
                ("b3".into(), build("b3", Some("migrate"))),
            ]),
            secrets: HashMap::from([(("shop".into(), "S".into(), 1), "sesame".into())]),
            ..Default::default()
        }
    }

    /// The desired instances, sorted.
    fn desired(s: &Snapshot) -> Vec<String> {
        let mut d: Vec<String> = node_desired(s, "n1", "localhost")
            .instances
            .iter()
            .map(|i| format!("v{} {}.{}", i.release, i.process_type, i.index))
            .collect();
        d.sort();
        d
    }

    #[test]
    fn steady_state_runs_the_formation_of_the_live_release_with_its_env() {
        let s = snapshot(false);
        assert_eq!(desired(&s), ["v1 beat.1", "v1 web.1", "v1 web.2"]);
        let d = node_desired(&s, "n1", "localhost");
        let web = &d.instances[1];
        assert_eq!(web.env["BERTH_RELEASE"], "v1");
        assert_eq!(web.env["K"], "v");
        assert_eq!(web.env["S"], "sesame", "secrets are opened for the process");
        assert_eq!(web.host, "shop.localhost");
        assert_eq!(d.release_phases.len(), 1);
        assert_eq!(d.release_phases[0].command, "migrate");
        assert!(node_desired(&s, "n2", "localhost").instances.is_empty());
    }

    #[test]
    fn a_rollout_surges_one_new_instance_and_releases_one_old_per_new_one_up() {
        let mut s = snapshot(true);
        s.instances = vec![
            web(1, 1, InstanceState::Up),
            web(1, 2, InstanceState::Up),
            instance("beat", 1, 1, InstanceState::Up),
        ];
        // Surge 1: one new web; both old stay. The singleton beat stops
        // first, and its successor waits for it to be gone.
        assert_eq!(desired(&s), ["v1 web.1", "v1 web.2", "v2 web.1"]);
        s.instances[2].state = InstanceState::Stopping;
        assert_eq!(desired(&s), ["v1 web.1", "v1 web.2", "v2 web.1"]);
        s.instances.remove(2);
        assert_eq!(
            desired(&s),
            ["v1 web.1", "v1 web.2", "v2 beat.1", "v2 web.1"]
        );

        // v2 web.1 starting: routes still go to the old ones only.
        s.instances.push(web(2, 1, InstanceState::Starting));
        let ids = |s: &Snapshot| -> Vec<String> {
            route_table(s, "localhost").apps[0]
                .backends
                .iter()
                .map(|b| b.id.clone())
                .collect()
        };
        assert_eq!(ids(&s), ["v1/web.1", "v1/web.2"]);
        // Up: one old instance goes, the second new one starts.
        s.instances[2].state = InstanceState::Up;
        assert_eq!(
            desired(&s),
            ["v1 web.1", "v2 beat.1", "v2 web.1", "v2 web.2"]
        );
        assert_eq!(ids(&s), ["v1/web.1", "v1/web.2", "v2/web.1"]);
        // The old one drains: out of the routes at once.
        s.instances[1].state = InstanceState::Draining;
        assert_eq!(ids(&s), ["v1/web.1", "v2/web.1"]);
    }

    #[test]
    fn a_new_release_that_never_comes_up_never_takes_an_old_instance_down() {
        let mut s = snapshot(true);
        let mut crashing = web(2, 1, InstanceState::Crashed);
        crashing.restarts = 2;
        s.instances = vec![
            web(1, 1, InstanceState::Up),
            web(1, 2, InstanceState::Up),
            crashing,
        ];
        assert_eq!(
            desired(&s),
            ["v1 web.1", "v1 web.2", "v2 beat.1", "v2 web.1"]
        );
        assert_eq!(evaluate(&s, &s.apps[0], 60_000), Verdict::Wait);
        s.instances[2].restarts = CRASH_LIMIT;
        s.instances[2].last_exit = Some("exited with status 1".into());
        match evaluate(&s, &s.apps[0], 60_000) {
            Verdict::Fail(why) => assert!(
                why.contains("web.1 of v2 crashed 3 times (last: exited with status 1)"),
                "{why}"
            ),
            v => panic!("expected a failure, got {v:?}"),
        }
    }

    #[test]
    fn unavailable_lets_a_rollout_stop_old_instances_first() {
        let mut s = snapshot(true);
        s.apps[0].settings.rollout = RolloutPolicy {
            surge: 0,
            unavailable: 1,
            no_overlap: vec![],
        };
        s.apps[0].formation.insert("beat".into(), 0);
        s.instances = vec![web(1, 1, InstanceState::Up), web(1, 2, InstanceState::Up)];
        // Never more than the formation: one old goes before one new starts.
        assert_eq!(desired(&s), ["v1 web.1", "v2 web.1"]);
    }

    #[test]
    fn a_rollout_completes_when_the_formation_is_up_and_fails_without_progress() {
        let mut s = snapshot(true);
        s.instances = vec![
            web(2, 1, InstanceState::Up),
            web(2, 2, InstanceState::Starting),
            instance("beat", 2, 1, InstanceState::Up),
        ];
        assert_eq!(evaluate(&s, &s.apps[0], 60_000), Verdict::Progress(2));
        s.apps[0].rollout.as_mut().unwrap().up = 2;
        assert_eq!(evaluate(&s, &s.apps[0], 60_000), Verdict::Wait);
        s.now = 120_000;
        match evaluate(&s, &s.apps[0], 60_000) {
            Verdict::Fail(why) => {
                assert!(
                    why.contains("web.2 of v2 did not come up (starting) within 60s"),
                    "{why}"
                )
            }
            v => panic!("expected a failure, got {v:?}"),
        }
        s.instances[1].state = InstanceState::Up;
        assert_eq!(evaluate(&s, &s.apps[0], 60_000), Verdict::Complete);
    }

    #[test]
    fn a_restart_replaces_instances_of_the_same_release_by_generation() {
        let mut s = snapshot(false);
        s.apps[0].rollout = Some(Rollout {
            release: 1,
            generations: BTreeMap::from([("web".into(), 1)]),
            started_at: 0,
            progress_at: 0,
            up: 0,
            description: "restart web".into(),
        });
        s.instances = vec![
            web(1, 1, InstanceState::Up),
            web(1, 2, InstanceState::Up),
            instance("beat", 1, 1, InstanceState::Up),
        ];
        let d = node_desired(&s, "n1", "localhost");
        let keys: Vec<String> = d
            .instances
            .iter()
            .map(|i| format!("{}.{} g{}", i.process_type, i.index, i.generation))
            .collect();
        // beat keeps generation 0 (not restarted); web surges one of gen 1.
        assert_eq!(keys, ["beat.1 g0", "web.1 g0", "web.1 g1", "web.2 g0"]);
    }

    #[test]
    fn scale_down_drops_the_highest_indices_and_instances_of_gone_nodes_are_not_routed() {
        let mut s = snapshot(false);
        s.apps[0].formation.insert("web".into(), 1);
        s.instances = vec![web(1, 1, InstanceState::Up), web(1, 2, InstanceState::Up)];
        assert_eq!(desired(&s), ["v1 beat.1", "v1 web.1"]);
        let t = route_table(&s, "localhost");
        assert_eq!(t.apps[0].hosts, ["shop.localhost", "shop.example.com"]);
        assert_eq!(t.apps[0].backends.len(), 2, "web.2 serves until it drains");
    }
}
