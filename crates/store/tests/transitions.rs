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
async fn only_one_node_wins_a_build_and_success_makes_a_live_release() {
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
    assert_eq!((r.version, r.status), (1, ReleaseStatus::Live));
    let app = s.app("shop").await.unwrap().unwrap();
    assert_eq!(app.current_release, Some(1));
    assert_eq!(app.formation["web"], 1);
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
    s.finish_release_phase("shop", 3, None).await.unwrap();
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
