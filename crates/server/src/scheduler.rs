//! From stored state to what each node should run and what routers should
//! route: pure functions over a [`Snapshot`], so placement rules are tested
//! without a database or a process.
//!
//! Placement today: an instance runs on the node that holds its release's
//! build (artifacts are not shipped between nodes yet).

use std::collections::{BTreeMap, HashMap};

use berth_model::*;
use berth_store::{AppRecord, BuildRecord, Store, StoreError};

/// Everything placement and routing look at, read at one revision.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Read before the rest, so anything changed while reading shows up as a
    /// newer revision and watchers come back for it.
    pub revision: Revision,
    pub apps: Vec<AppRecord>,
    /// Releases that are current or waiting for a release phase.
    pub releases: HashMap<(String, u32), Release>,
    /// Builds of those releases, and queued builds.
    pub builds: HashMap<String, BuildRecord>,
    pub queued_builds: Vec<BuildRecord>,
    pub instances: Vec<Instance>,
}

impl Snapshot {
    /// Reads a snapshot from the store.
    pub async fn load(store: &dyn Store) -> Result<Self, StoreError> {
        let revision = store.revision().await?;
        let apps = store.apps().await?;
        let mut releases = HashMap::new();
        for app in &apps {
            if let Some(v) = app.current_release {
                if let Some(r) = store.release(&app.name, v).await? {
                    releases.insert((app.name.clone(), v), r);
                }
            }
        }
        for r in store.pending_releases().await? {
            releases.insert((r.app.clone(), r.version), r);
        }
        let mut builds = HashMap::new();
        for r in releases.values() {
            if let Some(b) = store.build(&r.build_id).await? {
                builds.insert(b.build.id.clone(), b);
            }
        }
        Ok(Self {
            revision,
            apps,
            releases,
            builds,
            queued_builds: store.queued_builds().await?,
            instances: store.instances(None).await?,
        })
    }

    fn artifact_of(&self, release: &Release) -> Option<(&str, &Artifact)> {
        let b = self.builds.get(&release.build_id)?;
        Some((b.build.node.as_deref()?, b.build.artifact.as_ref()?))
    }

    fn current_release(&self, app: &AppRecord) -> Option<&Release> {
        let v = app.current_release?;
        self.releases.get(&(app.name.clone(), v))
    }
}

/// The environment Berth gives every process of a release, besides `PORT`
/// and `DYNO` which the agent sets per instance.
pub fn release_env(release: &Release) -> BTreeMap<String, String> {
    let mut env = release.config.clone();
    env.insert("BERTH_APP".into(), release.app.clone());
    env.insert("BERTH_RELEASE".into(), format!("v{}", release.version));
    env
}

/// What `node` should be doing.
pub fn node_desired(s: &Snapshot, node: &str) -> NodeDesired {
    let mut instances = Vec::new();
    for app in &s.apps {
        let Some(release) = s.current_release(app) else {
            continue;
        };
        let Some((build_node, artifact)) = s.artifact_of(release) else {
            continue;
        };
        if build_node != node {
            continue;
        }
        let env = release_env(release);
        for (process_type, command) in &artifact.processes {
            let count = app.formation.get(process_type).copied().unwrap_or(0);
            for index in 1..=count {
                instances.push(DesiredInstance {
                    app: app.name.clone(),
                    release: release.version,
                    process_type: process_type.clone(),
                    index,
                    command: command.clone(),
                    env: env.clone(),
                    dir: artifact.dir.clone(),
                });
            }
        }
    }
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
                env: release_env(r),
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
                env: b.config.clone(),
            })
            .collect(),
        release_phases,
    }
}

/// The process type that receives HTTP traffic.
pub const WEB: &str = "web";

/// What routers should route. An app's requests go to its web instances of
/// the current release that are up; while none is up yet (a deploy starting)
/// they go to the newest older release that still has instances up, so a
/// deploy never leaves the app without backends.
pub fn route_table(s: &Snapshot, apps_domain: &str) -> RouteTable {
    let apps = s
        .apps
        .iter()
        .map(|app| {
            let mut by_release: BTreeMap<u32, Vec<&Instance>> = BTreeMap::new();
            for i in s.instances.iter().filter(|i| {
                i.app == app.name
                    && i.process_type == WEB
                    && i.state == InstanceState::Up
                    && i.addr.is_some()
            }) {
                by_release.entry(i.release).or_default().push(i);
            }
            let serving = app
                .current_release
                .filter(|v| by_release.contains_key(v))
                .or_else(|| by_release.keys().next_back().copied());
            let backends = serving
                .and_then(|v| by_release.get(&v))
                .map(|is| {
                    is.iter()
                        .filter_map(|i| {
                            Some(Backend {
                                addr: i.addr.clone()?,
                                id: format!("v{}/{}", i.release, i.name()),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            let static_files = serving
                .and_then(|v| s.releases.get(&(app.name.clone(), v)))
                .or_else(|| s.current_release(app))
                .and_then(|r| s.artifact_of(r))
                .and_then(|(_, a)| a.static_files.clone());
            let mut hosts = vec![app_host(&app.name, apps_domain)];
            hosts.extend(app.domains.iter().cloned());
            AppRoute {
                name: app.name.clone(),
                hosts,
                backends,
                balance: Balance::default(),
                static_files,
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

    fn release(app: &str, version: u32, build: &str, status: ReleaseStatus) -> Release {
        Release {
            app: app.into(),
            version,
            build_id: build.into(),
            config: BTreeMap::from([("K".into(), "v".into())]),
            description: "deploy".into(),
            created_by: "admin".into(),
            created_at: 0,
            status,
            error: None,
        }
    }

    fn build(id: &str, node: &str, release_command: Option<&str>) -> BuildRecord {
        BuildRecord {
            build: Build {
                id: id.into(),
                app: "shop".into(),
                status: BuildStatus::Succeeded,
                created_at: 0,
                finished_at: None,
                node: Some(node.into()),
                error: None,
                artifact: Some(Artifact {
                    dir: format!("/b/{id}"),
                    processes: BTreeMap::from([
                        ("web".into(), "gunicorn app:app".into()),
                        ("worker".into(), "python w.py".into()),
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

    fn instance(release: u32, index: u32, state: InstanceState) -> Instance {
        Instance {
            app: "shop".into(),
            release,
            process_type: "web".into(),
            index,
            node: "n1".into(),
            state,
            addr: Some(format!("127.0.0.1:{}", 5000 + release * 10 + index)),
            pid: None,
            started_at: None,
            restarts: 0,
            last_exit: None,
            next_restart_at: None,
        }
    }

    fn snapshot() -> Snapshot {
        let app = AppRecord {
            name: "shop".into(),
            created_at: 0,
            current_release: Some(2),
            formation: BTreeMap::from([("web".into(), 2), ("worker".into(), 1)]),
            config: BTreeMap::new(),
            domains: vec!["shop.example.com".into()],
        };
        Snapshot {
            revision: 7,
            apps: vec![app],
            releases: HashMap::from([
                (
                    ("shop".into(), 2),
                    release("shop", 2, "b2", ReleaseStatus::Live),
                ),
                (
                    ("shop".into(), 3),
                    release("shop", 3, "b3", ReleaseStatus::Pending),
                ),
            ]),
            builds: HashMap::from([
                ("b2".into(), build("b2", "n1", None)),
                ("b3".into(), build("b3", "n1", Some("migrate"))),
            ]),
            queued_builds: vec![],
            instances: vec![],
        }
    }

    #[test]
    fn places_the_formation_of_the_current_release_on_the_build_node() {
        let s = snapshot();
        let d = node_desired(&s, "n1");
        let names: Vec<String> = d
            .instances
            .iter()
            .map(|i| format!("v{} {}.{}", i.release, i.process_type, i.index))
            .collect();
        assert_eq!(names, ["v2 web.1", "v2 web.2", "v2 worker.1"]);
        assert_eq!(d.instances[0].env["BERTH_RELEASE"], "v2");
        assert_eq!(d.instances[0].env["K"], "v");
        assert_eq!(d.release_phases.len(), 1);
        assert_eq!(d.release_phases[0].release, 3);
        assert_eq!(d.release_phases[0].command, "migrate");
        assert!(node_desired(&s, "n2").instances.is_empty());
    }

    #[test]
    fn routes_to_up_web_instances_of_the_current_release() {
        let mut s = snapshot();
        s.instances = vec![
            instance(1, 1, InstanceState::Up),
            instance(2, 1, InstanceState::Up),
            instance(2, 2, InstanceState::Starting),
        ];
        let t = route_table(&s, "localhost");
        assert_eq!(t.apps[0].hosts, ["shop.localhost", "shop.example.com"]);
        let ids: Vec<&str> = t.apps[0].backends.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["v2/web.1"]);
    }

    #[test]
    fn keeps_routing_to_the_old_release_until_the_new_one_is_up() {
        let mut s = snapshot();
        s.instances = vec![
            instance(1, 1, InstanceState::Up),
            instance(2, 1, InstanceState::Starting),
        ];
        let t = route_table(&s, "localhost");
        let ids: Vec<&str> = t.apps[0].backends.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["v1/web.1"]);
        s.instances = vec![instance(1, 1, InstanceState::Draining)];
        assert!(route_table(&s, "localhost").apps[0].backends.is_empty());
    }
}
