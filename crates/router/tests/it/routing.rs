//! Host routing, error pages, header rewriting and the access log.

use crate::util::*;

#[tokio::test]
async fn routes_by_host_and_refuses_unknown_hosts() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let router = Router::start(table(vec![
        app("one", &["one.localhost"], &[a.addr]),
        app("two", &["two.localhost", "www.example.com"], &[b.addr]),
    ]))
    .await;

    let r = router.get("one.localhost", "/").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("body"), "a");
    // Port, case and a trailing dot do not matter.
    let r = router.get("TWO.Localhost.:8080", "/").await;
    assert_eq!(r.text().await.expect("body"), "b");
    let r = router.get("www.example.com", "/").await;
    assert_eq!(r.text().await.expect("body"), "b");

    let r = router.get("nope.localhost", "/").await;
    assert_eq!(r.status(), 404);
    assert!(
        r.headers().get("server").is_none(),
        "no server header leaks"
    );
    let page = r.text().await.expect("body");
    assert!(page.contains("No app is served at this address"), "{page}");
    assert!(!page.contains("hyper") && !page.contains("berth"), "{page}");
    assert_eq!(
        a.hits() + b.hits(),
        3,
        "the unknown host reached no backend"
    );
}

#[tokio::test]
async fn an_app_without_backends_is_503_with_retry_after() {
    let router = Router::start(table(vec![app("idle", &["idle.localhost"], &[])])).await;
    let r = router.get("idle.localhost", "/").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    assert!(r.text().await.expect("body").contains("not running"));
}

fn header_lines(body: &str, name: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn forwarded_headers_are_set_and_client_claims_replaced() {
    let a = Backend::start("a").await;
    let router = Router::start(table(vec![app("one", &["one.localhost"], &[a.addr])])).await;
    let r = router
        .request(reqwest::Method::GET, "One.localhost:1234", "/headers")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .expect("answer");
    let seen = r.text().await.expect("body");
    assert_eq!(
        header_lines(&seen, "x-forwarded-for"),
        ["127.0.0.1"],
        "{seen}"
    );
    assert_eq!(header_lines(&seen, "x-forwarded-proto"), ["http"]);
    assert_eq!(
        header_lines(&seen, "x-forwarded-host"),
        ["One.localhost:1234"]
    );
    assert_eq!(
        header_lines(&seen, "host"),
        ["One.localhost:1234"],
        "Host preserved"
    );
}

#[tokio::test]
async fn request_id_is_set_passed_on_and_echoed() {
    let a = Backend::start("a").await;
    let router = Router::start(table(vec![app("one", &["one.localhost"], &[a.addr])])).await;

    let r = router.get("one.localhost", "/headers").await;
    let id = r.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    let seen = r.text().await.expect("body");
    assert_eq!(header_lines(&seen, "x-request-id"), [id.as_str()]);

    let r = router
        .request(reqwest::Method::GET, "one.localhost", "/headers")
        .header("x-request-id", "trace-42.a_b")
        .send()
        .await
        .expect("answer");
    assert_eq!(r.headers()["x-request-id"], "trace-42.a_b");
    let seen = r.text().await.expect("body");
    assert_eq!(header_lines(&seen, "x-request-id"), ["trace-42.a_b"]);

    let r = router
        .request(reqwest::Method::GET, "one.localhost", "/")
        .header("x-request-id", "no spaces allowed")
        .send()
        .await
        .expect("answer");
    let replaced = r.headers()["x-request-id"].to_str().expect("ascii");
    assert_eq!(replaced.len(), 32, "an invalid id is replaced: {replaced}");

    // Error pages carry one too, so a user can quote it.
    let r = router.get("unknown.localhost", "/").await;
    assert_eq!(r.headers()["x-request-id"].len(), 32);
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_both_ways() {
    let a = Backend::start("a").await;
    let router = Router::start(table(vec![app("one", &["one.localhost"], &[a.addr])])).await;

    let answer = raw(
        router.addr,
        "GET /headers HTTP/1.1\r\nHost: one.localhost\r\nConnection: close, X-Secret\r\n\
         X-Secret: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic eA==\r\n\
         TE: trailers\r\nX-Kept: yes\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    let lower = answer.to_ascii_lowercase();
    let (_, body) = lower.split_once("\r\n\r\n").expect("head and body");
    for gone in [
        "x-secret",
        "keep-alive",
        "proxy-authorization",
        "te:",
        "connection",
    ] {
        assert!(!body.contains(gone), "backend saw {gone}:\n{body}");
    }
    assert!(body.contains("x-kept: yes"), "{body}");

    let r = router.get("one.localhost", "/hop").await;
    let h = r.headers();
    for gone in ["x-internal", "keep-alive", "proxy-authenticate", "trailer"] {
        assert!(h.get(gone).is_none(), "client got {gone}: {h:?}");
    }
    assert!(h
        .get("connection")
        .is_none_or(|v| !v.to_str().unwrap_or("").contains("internal")));
    assert_eq!(h["x-kept"], "yes");
}

#[tokio::test]
async fn bodies_stream_through_and_each_request_is_logged() {
    let a = Backend::start("a").await;
    let mut router = Router::start(table(vec![app("one", &["one.localhost"], &[a.addr])])).await;

    let big = "x".repeat(1 << 20);
    let r = router
        .request(reqwest::Method::POST, "one.localhost", "/echo")
        .body(big.clone())
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("body").len(), big.len());

    let line = router.logs.recv().await.expect("a log line");
    assert_eq!(line.app, "one");
    assert_eq!(line.source, "router");
    assert!(
        line.line
            .starts_with("method=POST path=\"/echo\" host=one.localhost request_id="),
        "{}",
        line.line
    );
    for part in [
        "backend=v1/web.1",
        "status=200",
        &format!("bytes={}", big.len()),
        "client=127.0.0.1",
    ] {
        assert!(line.line.contains(part), "{part} missing: {}", line.line);
    }

    // Errors of a known app are logged too; unknown hosts belong to no app.
    let _ = router.get("nobody.localhost", "/").await;
    router
        .routes
        .update(table(vec![app("one", &["one.localhost"], &[])]));
    let _ = router.get("one.localhost", "/").await;
    let line = router.logs.recv().await.expect("a log line");
    assert!(line.line.contains("status=503"), "{}", line.line);
    assert!(line.line.contains("backend=-"), "{}", line.line);
}

#[tokio::test]
async fn backend_connections_are_kept_alive_and_reused() {
    let a = Backend::start("a").await;
    let router = Router::start(table(vec![app("one", &["one.localhost"], &[a.addr])])).await;
    for _ in 0..50 {
        assert_eq!(router.text("one.localhost", "/").await, "a");
    }
    let conns = a.conns.load(std::sync::atomic::Ordering::SeqCst);
    // A connection goes back to the pool a moment after its response ends,
    // so a back-to-back request may open a second one; never one each.
    assert!(conns <= 3, "50 requests opened {conns} backend connections");
}
