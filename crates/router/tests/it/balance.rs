//! Load balancing and retries.

use berth_model::Balance;

use crate::util::*;

#[tokio::test]
async fn least_conn_spreads_outstanding_requests() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let router = Router::start(table(vec![app(
        "one",
        &["one.localhost"],
        &[a.addr, b.addr],
    )]))
    .await;
    let client = http_client();

    // Ten slow requests, each started only once the previous one is held by
    // a backend: least-conn must then split them exactly 5/5.
    let mut pending = Vec::new();
    for i in 1..=10 {
        let req = client
            .get(format!("http://{}/slow", router.addr))
            .header("host", "one.localhost");
        pending.push(tokio::spawn(req.send()));
        eventually("the request to arrive", || async {
            a.arrived() + b.arrived() == i
        })
        .await;
    }
    assert_eq!((a.arrived(), b.arrived()), (5, 5));

    a.gate.add_permits(10);
    b.gate.add_permits(10);
    for p in pending {
        let r = p.await.expect("task").expect("answer");
        assert_eq!(r.status(), 200);
    }
}

#[tokio::test]
async fn round_robin_alternates() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let mut route = app("one", &["one.localhost"], &[a.addr, b.addr]);
    route.settings.routing.balance = Balance::RoundRobin;
    let router = Router::start(table(vec![route])).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(router.text("one.localhost", "/").await);
    }
    assert!(
        seen == ["a", "b", "a", "b"] || seen == ["b", "a", "b", "a"],
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_get_is_retried_on_another_backend_when_connect_fails() {
    let live = Backend::start("live").await;
    let dead_port = HeldPort::bind();
    let dead = dead_port.addr;
    let router = Router::start(table(vec![app(
        "one",
        &["one.localhost"],
        &[dead, live.addr],
    )]))
    .await;

    let mut errors = 0;
    for _ in 0..50 {
        let r = router.get("one.localhost", "/").await;
        if r.status() != 200 {
            errors += 1;
        }
    }
    assert_eq!(errors, 0);
    assert_eq!(live.hits(), 50);
}

#[tokio::test]
async fn a_post_is_never_retried() {
    let live = Backend::start("live").await;
    let dead_port = HeldPort::bind();
    let dead = dead_port.addr;
    let mut route = app("one", &["one.localhost"], &[dead, live.addr]);
    route.settings.routing.balance = Balance::RoundRobin;
    let router = Router::start(table(vec![route])).await;

    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = router
            .request(reqwest::Method::POST, "one.localhost", "/echo")
            .body("order #1")
            .send()
            .await
            .expect("answer");
        statuses.push(r.status().as_u16());
    }
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [200, 200, 502, 502],
        "round robin hits the dead backend every other time"
    );
    assert_eq!(live.hits(), 2);
}

#[tokio::test]
async fn a_single_dead_backend_is_502_and_a_hung_one_504() {
    let dead_port = HeldPort::bind();
    let dead = dead_port.addr;
    let router = Router::start(table(vec![app("one", &["one.localhost"], &[dead])])).await;
    let r = router.get("one.localhost", "/").await;
    assert_eq!(r.status(), 502);
    let page = r.text().await.expect("body");
    assert!(
        !page.contains(&dead.to_string()),
        "the page names no backend: {page}"
    );

    let slow = Backend::start("slow").await;
    let config = berth_router::RouterConfig {
        upstream_timeout: std::time::Duration::from_millis(200),
        ..Default::default()
    };
    let router = Router::start_with(
        config,
        table(vec![app("one", &["one.localhost"], &[slow.addr])]),
    )
    .await;
    let r = router.get("one.localhost", "/slow").await;
    assert_eq!(r.status(), 504);
    slow.gate.add_permits(1);
}
