//! Instances dying under traffic: requests a dying backend took and closed
//! without answering, and passive health taking dead backends out of
//! rotation.

use std::time::{Duration, Instant};

use berth_model::Balance;
use berth_router::RouterConfig;

use crate::util::*;

fn round_robin(backends: &[std::net::SocketAddr]) -> berth_model::AppRoute {
    let mut route = app("one", &["one.localhost"], backends);
    route.settings.routing.balance = Balance::RoundRobin;
    route
}

#[tokio::test]
async fn gets_survive_a_backend_that_closes_without_answering() {
    let dying = DyingBackend::start(Dying::CloseAfterHead).await;
    let good = Backend::start("good").await;
    let router = Router::start(table(vec![round_robin(&[dying.addr, good.addr])])).await;

    for i in 0..10 {
        let r = router.get("one.localhost", "/").await;
        assert_eq!(r.status(), 200, "request {i}");
        assert_eq!(r.text().await.expect("body"), "good");
    }
    assert!(
        dying.unanswered() >= 1,
        "the dying backend took requests and dropped them"
    );
    assert_eq!(good.hits(), 10, "each was answered once, by the good one");
}

#[tokio::test]
async fn a_post_is_not_resent_after_a_backend_closes_without_answering() {
    let dying = DyingBackend::start(Dying::CloseAfterHead).await;
    let good = Backend::start("good").await;
    // Round robin starts at the first backend: the dying one.
    let router = Router::start(table(vec![round_robin(&[dying.addr, good.addr])])).await;

    let order = || {
        router
            .request(reqwest::Method::POST, "one.localhost", "/echo")
            .body("order #1")
            .send()
    };
    let r = order().await.expect("answer");
    assert_eq!(r.status(), 502, "the app may have taken the order");
    assert_eq!(
        dying.requests(),
        ["POST /echo HTTP/1.1"],
        "sent exactly once"
    );
    assert_eq!(good.hits(), 0, "and never to a second backend");

    let r = order().await.expect("answer");
    assert_eq!(r.status(), 200, "the next order goes to the good backend");
    assert_eq!(dying.requests().len(), 1);
}

#[tokio::test]
async fn a_request_is_not_resent_once_the_answer_has_begun() {
    let dying = DyingBackend::start(Dying::CloseMidAnswer).await;
    let good = Backend::start("good").await;
    let router = Router::start(table(vec![round_robin(&[dying.addr, good.addr])])).await;

    // Once the app began to answer, it ran the request: whether to run it
    // again is the client's call, not the router's.
    let r = router.get("one.localhost", "/").await;
    assert_eq!(r.status(), 502);
    assert_eq!(dying.requests().len(), 1);
    assert_eq!(good.hits(), 0);
}

#[tokio::test]
async fn a_lone_backend_that_resets_every_request_is_502_not_a_retry_loop() {
    let dying = DyingBackend::start(Dying::ResetAfterHead).await;
    let router = Router::start(table(vec![app("one", &["one.localhost"], &[dying.addr])])).await;

    for i in 1..=5 {
        let before = dying.requests().len();
        let r = router.get("one.localhost", "/").await;
        // Past three failures the backend is marked down; being the only
        // one, it is still tried: a 503 would hide that it may be back.
        assert_eq!(r.status(), 502, "request {i}");
        let tries = dying.requests().len() - before;
        assert!(
            (1..=2).contains(&tries),
            "request {i} reached the backend {tries} times"
        );
    }
}

#[tokio::test]
async fn a_keep_alive_connection_closed_by_the_app_is_retried_on_a_new_one() {
    let app_server = DyingBackend::start(Dying::AnswerOnceThenClose).await;
    let router = Router::start(table(vec![app(
        "one",
        &["one.localhost"],
        &[app_server.addr],
    )]))
    .await;

    // Every pooled connection the router reuses is closed under it; the one
    // backend must still answer every request.
    let start = Instant::now();
    let mut sent = 0;
    while app_server.unanswered() < 3 {
        assert!(
            start.elapsed() < DEADLINE,
            "no pooled connection was reused"
        );
        let r = router.get("one.localhost", "/").await;
        assert_eq!(r.status(), 200, "request {sent}");
        sent += 1;
    }
    assert!(app_server.conns() > 1, "each retry used a new connection");
}

#[tokio::test]
async fn a_dead_backend_is_skipped_until_its_cooldown_ends() {
    let dead_port = HeldPort::bind();
    let dead = dead_port.addr;
    let good = Backend::start("good").await;
    let router = Router::start(table(vec![round_robin(&[dead, good.addr])])).await;

    // Round robin sends requests 1, 3 and 5 to the dead backend first; each
    // fails to connect and is retried on the good one.
    for i in 1..=5 {
        let r = router.get("one.localhost", "/").await;
        assert_eq!(r.status(), 200, "request {i}");
    }
    let ejected_by = Instant::now();

    // Something listens on the dead port again, counting connections. The
    // router, having seen three failures in a row, must leave it alone for
    // its cooldown (1 s).
    let revived = Backend::start_at("revived", dead).await;
    let mut skipped = 0;
    while skipped < 10 && ejected_by.elapsed() < Duration::from_millis(500) {
        let r = router.get("one.localhost", "/").await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.expect("body"), "good");
        skipped += 1;
    }
    assert!(skipped > 0);
    assert_eq!(revived.conns(), 0, "the ejected backend got no traffic");

    // After the cooldown it is tried again, and answers.
    let (router, revived) = (&router, &revived);
    eventually("the revived backend to get traffic", || async move {
        let r = router.get("one.localhost", "/").await;
        assert_eq!(r.status(), 200);
        revived.hits() > 0
    })
    .await;
    assert!(
        ejected_by.elapsed() >= Duration::from_millis(800),
        "back after {:?}, before its cooldown",
        ejected_by.elapsed()
    );
}

#[tokio::test]
async fn a_request_that_timed_out_is_not_sent_again() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let config = RouterConfig {
        upstream_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let router = Router::start_with(
        config,
        table(vec![app("one", &["one.localhost"], &[a.addr, b.addr])]),
    )
    .await;

    let r = router.get("one.localhost", "/slow").await;
    assert_eq!(r.status(), 504);
    eventually("the request to reach a backend", || async {
        a.arrived() + b.arrived() > 0
    })
    .await;
    // A slow app may still be working on it: running it twice could charge
    // a card twice.
    assert_eq!(a.arrived() + b.arrived(), 1, "one attempt in all");
    a.gate.add_permits(1);
    b.gate.add_permits(1);
    let r = router.get("one.localhost", "/").await;
    assert_eq!(r.status(), 200);
}
