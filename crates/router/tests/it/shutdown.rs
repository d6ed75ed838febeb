//! Graceful drain.

use std::time::Duration;

use berth_router::RouterConfig;
use tokio::net::TcpStream;

use crate::util::*;

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish() {
    let slow = Backend::start("slow").await;
    let mut router = Router::start(table(vec![app("one", &["one.localhost"], &[slow.addr])])).await;
    let addr = router.addr;

    let in_flight = tokio::spawn(
        http_client()
            .get(format!("http://{addr}/slow"))
            .header("host", "one.localhost")
            .send(),
    );
    eventually("the request at the backend", || async {
        slow.arrived() == 1
    })
    .await;

    router.shutdown();
    eventually("new connections refused", || async {
        TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(
        !router.task.is_finished(),
        "run waits for the request in flight"
    );

    slow.gate.add_permits(1);
    let r = in_flight
        .await
        .expect("task")
        .expect("the request completes");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("body"), "slow");
    tokio::time::timeout(DEADLINE, &mut router.task)
        .await
        .expect("run returns once drained")
        .expect("task")
        .expect("run ok");
}

#[tokio::test]
async fn shutdown_gives_up_after_the_drain_timeout() {
    let slow = Backend::start("slow").await;
    let config = RouterConfig {
        drain_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let mut router = Router::start_with(
        config,
        table(vec![app("one", &["one.localhost"], &[slow.addr])]),
    )
    .await;
    let addr = router.addr;
    let stuck = tokio::spawn(
        http_client()
            .get(format!("http://{addr}/slow"))
            .header("host", "one.localhost")
            .send(),
    );
    eventually("the request at the backend", || async {
        slow.arrived() == 1
    })
    .await;

    router.shutdown();
    tokio::time::timeout(DEADLINE, &mut router.task)
        .await
        .expect("run returns despite the stuck request")
        .expect("task")
        .expect("run ok");
    assert!(
        stuck.await.expect("task").is_err(),
        "the stuck request was cut"
    );
}
