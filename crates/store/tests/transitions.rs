//! The store's domain transitions, against the SQLite backend. Written
//! against `dyn Store` so the PostgreSQL backend runs the same checks.

use std::collections::BTreeMap;

use berth_model::*;
use berth_store::{NewBuild, SqliteStore, Store, StoreError};

async fn store() -> Box<dyn Store> {
    Box::new(SqliteStore::in_memory().await.unwrap())
}

fn artifact(release_command: Option<&str>) -> Artifact {
    Artifact {
        dir: "/b".into(),
        processes: BTreeMap::from([("web".into(), "gunicorn app:app".into())]),
        release_command: release_command.map(Into::into),
        static_files: None,
        stack: "python".into(),
    }
}

async fn build(s: &dyn Store, id: &str) {
    s.create_build(NewBuild {
        id: id.into(),
        app: "shop".into(),
        source_size: 10,
        created_by: "admin".into(),
        now: 1,
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn only_one_node_wins_a_build_and_success_rolls_out_a_release() {
    let s = store().await;
    s.create_app("shop", 1).await.unwrap();
    let r0 = s.revision().await.unwrap();
    build(s.as_ref(), "b1").await;
    assert!(
        s.revision().await.unwrap() > r0,
        "a queued build bumps the revision"
    );
    assert_eq!(s.queued_builds().await.unwrap().len(), 1);
    s.claim_build("b1", "n1", 2).await.unwrap();
    assert!(matches!(
        s.claim_build("b1", "n2", 2).await,
        Err(StoreError::Conflict(_))
    ));
    let (b, r) = s.succeed_build("b1", &artifact(None), 3).await.unwrap();
    assert_eq!(b.build.status, BuildStatus::Succeeded);
    assert_eq!(b.build.node.as_deref(), Some("n1"));
    assert_eq!((r.version, r.status), (1, ReleaseStatus::Rolling));
    let app = s.app("shop").await.unwrap().unwrap();
    assert_eq!(
        app.current_release, None,
        "live only once its instances are up"
    );
    assert_eq!(app.rollout.as_ref().map(|r| r.release), Some(1));
    assert_eq!(app.formation["web"], 1);
    s.complete_rollout("shop", 1).await.unwrap();
    let app = s.app("shop").await.unwrap().unwrap();
    assert_eq!((app.current_release, app.rollout), (Some(1), None));
    assert_eq!(
        s.release("shop", 1).await.unwrap().unwrap().status,
        ReleaseStatus::Live
    );
    assert!(matches!(
        s.succeed_build("b1", &artifact(None), 4).await,
        Err(StoreError::Conflict(_))
    ));
}

#[tokio::test]
async fn a_failed_release_phase_leaves_the_live_release_alone() {
    let s = store().await;
    s.create_app("shop", 1).await.unwrap();
    build(s.as_ref(), "b1").await;
    s.claim_build("b1", "n1", 2).await.unwrap();
    s.succeed_build("b1", &artifact(None), 3).await.unwrap();
    s.complete_rollout("shop", 1).await.unwrap();
    build(s.as_ref(), "b2").await;
    s.claim_build("b2", "n1", 4).await.unwrap();
    let (_, r2) = s
        .succeed_build("b2", &artifact(Some("migrate")), 5)
        .await
        .unwrap();
    assert_eq!((r2.version, r2.status), (2, ReleaseStatus::Pending));
    assert_eq!(s.pending_releases().await.unwrap().len(), 1);
    s.claim_release("shop", 2, "n1").await.unwrap();
    assert!(matches!(
        s.claim_release("shop", 2, "n2").await,
        Err(StoreError::Conflict(_))
    ));
    let r2 = s
        .finish_release_phase("shop", 2, Some("exit 3"))
        .await
        .unwrap();
    assert_eq!(r2.status, ReleaseStatus::Failed);
    assert_eq!(
        s.app("shop").await.unwrap().unwrap().current_release,
        Some(1)
    );

    build(s.as_ref(), "b3").await;
    s.claim_build("b3", "n1", 6).await.unwrap();
    s.succeed_build("b3", &artifact(Some("migrate")), 7)
        .await
        .unwrap();
    s.claim_release("shop", 3, "n1").await.unwrap();
    let r3 = s.finish_release_phase("shop", 3, None).await.unwrap();
    assert_eq!(r3.status, ReleaseStatus::Rolling);
    s.complete_rollout("shop", 3).await.unwrap();
    let statuses: Vec<_> = s
        .releases("shop")
        .await
        .unwrap()
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(
        statuses,
        [
            ReleaseStatus::Live,
            ReleaseStatus::Failed,
            ReleaseStatus::Superseded
        ]
    );
}

/// An app with v1 live from build b1.
async fn live_app(s: &dyn Store) {
    s.create_app("shop", 1).await.unwrap();
    build(s, "b1").await;
    s.claim_build("b1", "n1", 2).await.unwrap();
    s.succeed_build("b1", &artifact(None), 3).await.unwrap();
    s.complete_rollout("shop", 1).await.unwrap();
}

#[tokio::test]
async fn config_changes_make_releases_and_rollback_restores_code_and_config() {
    let s = store().await;
    live_app(s.as_ref()).await;
    let edit = berth_store::ConfigEdit {
        set: BTreeMap::from([("DEBUG".into(), "0".into())]),
        ..Default::default()
    };
    let (app, r2) = s
        .change_config("shop", &edit, "config set DEBUG", "admin", 4)
        .await
        .unwrap();
    let r2 = r2.expect("a live app gets a new release");
    assert_eq!((r2.version, r2.build_id.as_str()), (2, "b1"));
    assert_eq!(r2.config["DEBUG"], "0");
    assert_eq!(app.rollout.as_ref().map(|r| r.release), Some(2));
    // A failed rollout leaves v1 live.
    s.fail_rollout("shop", 2, "web.1 of v2 crashed 3 times")
        .await
        .unwrap();
    let app = s.app("shop").await.unwrap().unwrap();
    assert_eq!(
        (app.current_release, app.rollout.is_none()),
        (Some(1), true)
    );
    assert_eq!(
        s.release("shop", 2).await.unwrap().unwrap().status,
        ReleaseStatus::Failed
    );

    // Secrets go by reference; setting a name that is a config var is refused.
    let secret = berth_store::ConfigEdit {
        set_secrets: BTreeMap::from([("DEBUG".into(), "sealed".into())]),
        ..Default::default()
    };
    assert!(matches!(
        s.change_config("shop", &secret, "secrets set DEBUG", "admin", 5)
            .await,
        Err(StoreError::Conflict(_))
    ));
    let secret = berth_store::ConfigEdit {
        set_secrets: BTreeMap::from([("KEY".into(), "sealed-1".into())]),
        ..Default::default()
    };
    let (_, r3) = s
        .change_config("shop", &secret, "secrets set KEY", "admin", 5)
        .await
        .unwrap();
    let r3 = r3.unwrap();
    assert_eq!(r3.secrets["KEY"], 1);
    assert!(!r3.config.contains_key("KEY"));
    s.complete_rollout("shop", 3).await.unwrap();

    // Rolling back to v1: v1's build and (empty) config, no release phase.
    let r4 = s.rollback("shop", 1, "admin", 6).await.unwrap();
    assert_eq!(
        (r4.build_id.as_str(), r4.description.as_str()),
        ("b1", "rollback to v1")
    );
    assert!(r4.config.is_empty() && r4.secrets.is_empty());
    let app = s.app("shop").await.unwrap().unwrap();
    assert!(app.config.is_empty(), "rollback restores the config");

    // A restart bumps generations and needs no new release.
    s.complete_rollout("shop", 4).await.unwrap();
    let rollout = s.restart("shop", &[], 7).await.unwrap();
    assert_eq!((rollout.release, rollout.generation("web")), (4, 1));
    assert!(matches!(
        s.restart("shop", &[], 7).await,
        Err(StoreError::Conflict(_))
    ));
    s.complete_rollout("shop", 4).await.unwrap();
    let app = s.app("shop").await.unwrap().unwrap();
    assert_eq!(app.generations["web"], 1);
    assert_eq!(app.current_release, Some(4));
}

#[tokio::test]
async fn old_builds_are_collected_and_cannot_be_rolled_back_to() {
    let s = store().await;
    live_app(s.as_ref()).await;
    for (i, id) in ["b2", "b3"].iter().enumerate() {
        let now = 10 + i as i64;
        build(s.as_ref(), id).await;
        s.claim_build(id, "n1", now).await.unwrap();
        let (_, r) = s.succeed_build(id, &artifact(None), now).await.unwrap();
        s.complete_rollout("shop", r.version).await.unwrap();
    }
    // Keep 1: b3 is live; b1 and b2 go, unless an instance still runs them.
    let key = InstanceKey {
        app: "shop".into(),
        release: 2,
        process_type: "web".into(),
        index: 1,
        generation: 0,
    };
    let v2_instance = Instance {
        state: InstanceState::Draining,
        ..Instance::starting(key, "n1")
    };
    s.replace_node_instances("n1", &[v2_instance], 20)
        .await
        .unwrap();
    assert_eq!(s.collect_builds("shop", 1, 21).await.unwrap(), ["b1"]);
    s.replace_node_instances("n1", &[], 22).await.unwrap();
    assert_eq!(s.collect_builds("shop", 1, 23).await.unwrap(), ["b2"]);
    let collected = s.collected_builds(0).await.unwrap();
    assert_eq!(collected.len(), 2);
    assert_eq!(collected[0].0, "n1");
    match s.rollback("shop", 1, "admin", 24).await {
        Err(StoreError::Conflict(m)) => assert!(m.contains("garbage-collected"), "{m}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[tokio::test]
async fn names_domains_logs_and_deletion() {
    let s = store().await;
    s.create_app("shop", 1).await.unwrap();
    s.create_app("blog", 1).await.unwrap();
    assert!(matches!(
        s.create_app("shop", 1).await,
        Err(StoreError::Conflict(_))
    ));
    s.add_domain("shop", "shop.example.com").await.unwrap();
    assert!(matches!(
        s.add_domain("blog", "shop.example.com").await,
        Err(StoreError::Conflict(_))
    ));
    let line = |app: &str, n: i64| NewLogLine {
        app: app.into(),
        ts: n,
        source: "web.1".into(),
        scope: None,
        line: format!("line {n}"),
        event: None,
    };
    let last = s
        .append_logs(&[line("shop", 1), line("blog", 2), line("shop", 3)])
        .await
        .unwrap();
    let all = s.logs("shop", Some(0), 100, None).await.unwrap();
    assert_eq!(
        all.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(),
        ["line 1", "line 3"]
    );
    assert_eq!(all.last().unwrap().id, last);
    let tail = s.logs("shop", None, 1, None).await.unwrap();
    assert_eq!(tail[0].line, "line 3");
    s.delete_app("shop").await.unwrap();
    assert!(s.app("shop").await.unwrap().is_none());
    assert!(s.logs("shop", Some(0), 100, None).await.unwrap().is_empty());
    // The domain is free again.
    s.add_domain("blog", "shop.example.com").await.unwrap();
    assert!(matches!(
        s.delete_app("shop").await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn one_off_runs_are_numbered_end_once_and_leave_desired_state() {
    let s = store().await;
    s.create_app("shop", 1).await.unwrap();
    let new = NewRun {
        command: "python manage.py shell".into(),
        attach: true,
        tty: true,
    };
    let r0 = s.revision().await.unwrap();
    let first = s
        .create_run("shop", 1, "n1", &new, "admin", 5)
        .await
        .unwrap();
    let second = s
        .create_run("shop", 1, "n1", &new, "admin", 6)
        .await
        .unwrap();
    assert_eq!((first.number, second.number), (1, 2));
    assert_eq!(first.state, RunState::Pending);
    assert!(
        s.revision().await.unwrap() > r0,
        "a new run is desired state"
    );

    let running = RunReport {
        state: RunState::Running,
        pid: Some(42),
        exit_code: None,
        outcome: None,
    };
    let r = s.report_run("shop", 1, &running, 7).await.unwrap();
    assert_eq!(
        (r.state, r.pid, r.started_at),
        (RunState::Running, Some(42), Some(7))
    );

    let r1 = s.revision().await.unwrap();
    let exited = RunReport {
        state: RunState::Exited,
        pid: None,
        exit_code: Some(3),
        outcome: Some("exited with status 3".into()),
    };
    let r = s.report_run("shop", 1, &exited, 8).await.unwrap();
    assert_eq!(
        (r.exit_code, r.finished_at, r.pid),
        (Some(3), Some(8), Some(42))
    );
    assert!(
        s.revision().await.unwrap() > r1,
        "an ended run leaves desired state"
    );
    let late = s.report_run("shop", 1, &running, 9).await.unwrap();
    assert_eq!(late.state, RunState::Exited, "exited is final");
    assert!(matches!(
        s.kill_run("shop", 1).await,
        Err(StoreError::Conflict(_))
    ));

    let active: Vec<u32> = s
        .active_runs(Some("shop"))
        .await
        .unwrap()
        .iter()
        .map(|r| r.number)
        .collect();
    assert_eq!(active, vec![2]);
    assert!(s.kill_run("shop", 2).await.unwrap().kill_requested);
    assert!(matches!(
        s.kill_run("shop", 9).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(s.active_runs(Some("other")).await.unwrap().is_empty());

    s.delete_app("shop").await.unwrap();
    assert!(
        s.active_runs(None).await.unwrap().is_empty(),
        "runs go with their app"
    );
}

#[tokio::test]
async fn a_routers_poll_replaces_its_acknowledgement_and_sessions() {
    let s = store().await;
    let r0 = s.revision().await.unwrap();
    let carried = DepartedSessions {
        app: "shop".into(),
        addr: "10.0.0.1:4000".into(),
        id: "v1/web.1".into(),
        open: 3,
        grace_ms: 30_000,
    };
    s.record_router("r1", 7, std::slice::from_ref(&carried), 10)
        .await
        .unwrap();
    s.record_router("r2", 6, &[], 11).await.unwrap();
    let seen = s.routers().await.unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        (seen[0].applied, &seen[0].sessions, seen[0].last_seen),
        (7, &vec![carried], 10)
    );

    // The next poll says the sessions ended: nothing of them is left.
    s.record_router("r1", 8, &[], 12).await.unwrap();
    let seen = s.routers().await.unwrap();
    assert_eq!((seen[0].applied, seen[0].sessions.len()), (8, 0));
    assert_eq!(
        s.revision().await.unwrap(),
        r0,
        "polls change nothing agents act on"
    );
}
