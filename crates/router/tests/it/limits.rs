//! Limits: header and body size, slow clients, connections per router and
//! per client address, request rates — each with the status a client can
//! act on.

use std::time::Duration;

use berth_router::RouterConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::*;

fn a_app(rec: &Recorder) -> berth_model::RouteTable {
    table(vec![app("a", &["a.localhost"], &[rec.addr])])
}

#[tokio::test]
async fn an_oversized_head_is_431() {
    let rec = Recorder::start().await;
    let config = RouterConfig {
        max_header_bytes: 16 * 1024,
        ..Default::default()
    };
    let router = Router::start_with(config, a_app(&rec)).await;
    let big = "x".repeat(20 * 1024);
    let answer = raw(
        router.addr,
        &format!("GET / HTTP/1.1\r\nHost: a.localhost\r\nX-Big: {big}\r\n\r\n"),
    )
    .await;
    assert_eq!(raw_status(&answer), 431, "{answer}");
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let answer = raw(
        router.addr,
        &format!("GET / HTTP/1.1\r\nHost: a.localhost\r\n{many}\r\n"),
    )
    .await;
    assert_eq!(raw_status(&answer), 431, "too many headers: {answer}");
    assert!(rec.seen().is_empty());
}

#[tokio::test]
async fn a_body_over_the_apps_limit_is_413_declared_or_streamed() {
    let rec = Recorder::start().await;
    let mut table = a_app(&rec);
    table.apps[0].settings.routing.max_body = Some(1000);
    let router = Router::start(table).await;

    // Declared up front: refused before the app hears of it.
    let resp = router
        .request(reqwest::Method::POST, "a.localhost", "/declared")
        .body(vec![b'x'; 1001])
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), 413);
    // Within the limit: passed on.
    let resp = router
        .request(reqwest::Method::POST, "a.localhost", "/fits")
        .body(vec![b'x'; 1000])
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), 200);

    // Streamed without a length: cut once it passes the limit, and the app
    // sees a body that ended badly, never a shorter "complete" one.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..8).map(|_| Ok(vec![b'y'; 400])).collect();
    let resp = router
        .request(reqwest::Method::POST, "a.localhost", "/streamed")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), 413);

    let seen = rec.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert!(!paths.contains(&"/declared"), "{paths:?}");
    assert!(seen
        .iter()
        .any(|s| s.path == "/fits" && s.body.as_ref().map(Vec::len) == Ok(1000)));
    eventually("the app to see the cut body", || {
        let seen = rec.seen();
        async move { seen.iter().any(|s| s.path == "/streamed") }
    })
    .await;
    for s in rec.seen().iter().filter(|s| s.path == "/streamed") {
        assert!(
            s.body.is_err(),
            "the cut body must not look complete: {s:?}"
        );
    }
}

fn quick_timeouts() -> RouterConfig {
    RouterConfig {
        header_read_timeout: Duration::from_millis(300),
        body_read_timeout: Duration::from_millis(300),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_head_that_trickles_in_is_408() {
    let rec = Recorder::start().await;
    let router = Router::start_with(quick_timeouts(), a_app(&rec)).await;
    let mut s = tokio::net::TcpStream::connect(router.addr)
        .await
        .expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: a.localhost\r\nX-a: 1\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    tokio::time::timeout(DEADLINE, s.read_to_string(&mut answer))
        .await
        .expect("closed within the deadline")
        .expect("read");
    assert_eq!(raw_status(&answer), 408, "{answer}");
    assert!(rec.seen().is_empty());

    // An idle keep-alive connection is closed quietly.
    let mut s = tokio::net::TcpStream::connect(router.addr)
        .await
        .expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: a.localhost\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut answer))
        .await
        .expect("closed within the deadline")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(
        answer.matches("HTTP/1.1 ").count(),
        1,
        "only the 200: {answer}"
    );
}

#[tokio::test]
async fn a_body_that_stalls_is_408_and_cut() {
    let rec = Recorder::start().await;
    let router = Router::start_with(quick_timeouts(), a_app(&rec)).await;
    let mut s = tokio::net::TcpStream::connect(router.addr)
        .await
        .expect("connect");
    s.write_all(
        b"POST /slow HTTP/1.1\r\nHost: a.localhost\r\nContent-Length: 100\r\n\r\nonly ten..",
    )
    .await
    .expect("write");
    let mut answer = String::new();
    tokio::time::timeout(DEADLINE, s.read_to_string(&mut answer))
        .await
        .expect("closed within the deadline")
        .expect("read");
    assert_eq!(raw_status(&answer), 408, "{answer}");
    eventually("the app to see the cut body", || {
        let seen = rec.seen();
        async move { !seen.is_empty() }
    })
    .await;
    assert!(rec.seen()[0].body.is_err(), "{:?}", rec.seen());
}

#[tokio::test]
async fn connections_beyond_the_per_address_limit_are_closed() {
    let rec = Recorder::start().await;
    let config = RouterConfig {
        max_connections_per_ip: 2,
        ..Default::default()
    };
    let router = Router::start_with(config, a_app(&rec)).await;
    let addr = router.addr;
    let get = b"GET / HTTP/1.1\r\nHost: a.localhost\r\n\r\n";

    // Two keep-alive connections, each proven admitted by an answer.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = connect_from([127, 0, 0, 1], addr).await.expect("connect");
        s.write_all(get).await.expect("write");
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.expect("answer");
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    // A third from the same address is closed unanswered.
    let mut third = connect_from([127, 0, 0, 1], addr).await.expect("connect");
    let _ = third.write_all(get).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, third.read_to_end(&mut buf)).await;
    assert!(
        buf.is_empty(),
        "no answer: {}",
        String::from_utf8_lossy(&buf)
    );
    // Another address is served.
    let mut other = connect_from([127, 0, 0, 2], addr).await.expect("connect");
    other
        .write_all(b"GET / HTTP/1.1\r\nHost: a.localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    other.read_to_string(&mut answer).await.expect("read");
    assert_eq!(raw_status(&answer), 200, "{answer}");
    // A closed connection gives its place back.
    drop(held.pop());
    eventually("a place to come back", || async move {
        let Ok(mut s) = connect_from([127, 0, 0, 1], addr).await else {
            return false;
        };
        if s.write_all(b"GET / HTTP/1.1\r\nHost: a.localhost\r\nConnection: close\r\n\r\n")
            .await
            .is_err()
        {
            return false;
        }
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer).await;
        raw_status(&answer) == 200
    })
    .await;
}

#[tokio::test]
async fn connections_beyond_the_routers_limit_are_closed() {
    let rec = Recorder::start().await;
    let config = RouterConfig {
        max_connections: 1,
        ..Default::default()
    };
    let router = Router::start_with(config, a_app(&rec)).await;
    let mut first = connect_from([127, 0, 0, 1], router.addr)
        .await
        .expect("connect");
    first
        .write_all(b"GET / HTTP/1.1\r\nHost: a.localhost\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 512];
    assert!(first.read(&mut buf).await.expect("answer") > 0);
    let mut second = connect_from([127, 0, 0, 3], router.addr)
        .await
        .expect("connect");
    let _ = second
        .write_all(b"GET / HTTP/1.1\r\nHost: a.localhost\r\n\r\n")
        .await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, second.read_to_end(&mut out)).await;
    assert!(out.is_empty(), "refused: {}", String::from_utf8_lossy(&out));
}

#[tokio::test]
async fn requests_over_the_apps_rate_are_429_with_retry_after() {
    let rec = Recorder::start().await;
    let mut table = a_app(&rec);
    table.apps[0].settings.routing.rate_limit = Some("3/m".parse().expect("rate"));
    let router = Router::start(table).await;
    for i in 0..3 {
        assert_eq!(
            router.get("a.localhost", "/").await.status(),
            200,
            "request {i}"
        );
    }
    let refused = router.get("a.localhost", "/").await;
    assert_eq!(refused.status(), 429);
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=20).contains(&wait), "one request per 20 s: {wait}");
    assert_eq!(
        rec.seen().len(),
        3,
        "the refused request never reached the app"
    );

    // The limit is per client address.
    let mut other = connect_from([127, 0, 0, 2], router.addr)
        .await
        .expect("connect");
    other
        .write_all(b"GET / HTTP/1.1\r\nHost: a.localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    other.read_to_string(&mut answer).await.expect("read");
    assert_eq!(raw_status(&answer), 200, "{answer}");
}
