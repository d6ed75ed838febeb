//! Strict parsing: requests whose framing or headers are ambiguous never
//! reach an app, and what does reach it carries the router's framing, not
//! the client's.

use crate::util::*;

/// A smuggled request hides behind the first one's body in each of these;
/// a backend that framed the body differently from the router would see it.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: a.localhost\r\n\r\n";

async fn router_and_recorder() -> (Router, Recorder) {
    let rec = Recorder::start().await;
    let router = Router::start(table(vec![app("a", &["a.localhost"], &[rec.addr])])).await;
    (router, rec)
}

fn assert_nothing_smuggled(rec: &Recorder) {
    let paths: Vec<String> = rec.seen().iter().map(|s| s.path.clone()).collect();
    assert!(
        !paths.iter().any(|p| p == "/smuggled"),
        "a smuggled request reached the app: {paths:?}"
    );
}

#[tokio::test]
async fn ambiguous_framing_is_refused_with_400_and_never_forwarded() {
    let (router, rec) = router_and_recorder().await;
    let cases = [
        // Two lengths that disagree.
        format!("POST / HTTP/1.1\r\nHost: a.localhost\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{SMUGGLED}", SMUGGLED.len()),
        // Lengths that are not plain decimal numbers.
        format!("POST / HTTP/1.1\r\nHost: a.localhost\r\nContent-Length: +0\r\n\r\n{SMUGGLED}"),
        format!("POST / HTTP/1.1\r\nHost: a.localhost\r\nContent-Length: 0, 44\r\n\r\n{SMUGGLED}"),
        format!("POST / HTTP/1.1\r\nHost: a.localhost\r\nContent-Length: 0x10\r\n\r\n{SMUGGLED}"),
        // A transfer coding other than a lone chunked.
        format!("POST / HTTP/1.1\r\nHost: a.localhost\r\nTransfer-Encoding: gzip\r\n\r\n{SMUGGLED}"),
        format!("POST / HTTP/1.1\r\nHost: a.localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        format!("POST / HTTP/1.1\r\nHost: a.localhost\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        // Transfer-Encoding in HTTP/1.0, which has none.
        format!("POST / HTTP/1.0\r\nHost: a.localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        // Obsolete line folding: a continuation line could carry a header
        // past a front end that unfolds differently.
        format!("GET / HTTP/1.1\r\nHost: a.localhost\r\nX-Folded: a\r\n Transfer-Encoding: chunked\r\n\r\n{SMUGGLED}"),
        // Bytes that are not allowed in a header name or value.
        format!("GET / HTTP/1.1\r\nHost: a.localhost\r\nTransfer-Encoding : chunked\r\n\r\n{SMUGGLED}"),
        format!("GET / HTTP/1.1\r\nHost: a.localhost\r\nX-Bad: a\x01b\r\n\r\n{SMUGGLED}"),
        format!("GET / HTTP/1.1\r\nHost: a.localhost\r\nX-Bad: a\rContent-Length: 5\r\n\r\n{SMUGGLED}"),
        format!("GET / HTTP/1.1\r\nHost: a.localhost\r\nBad Name: x\r\n\r\n{SMUGGLED}"),
    ];
    for case in &cases {
        let answer = raw(router.addr, case).await;
        assert_eq!(raw_status(&answer), 400, "for {case:?}: {answer}");
        // `raw` returned, so the router closed the connection after the 400.
    }
    assert_nothing_smuggled(&rec);
    assert!(
        rec.seen().is_empty(),
        "nothing reached the app: {:?}",
        rec.seen()
    );
}

#[tokio::test]
async fn length_and_chunked_together_are_refused_whatever_their_order() {
    // RFC 9112 §6.1 lets a server read such a request by its chunking; a
    // proxy must not, as nginx and HAProxy do not: the backend behind could
    // frame it by its length. The router runs hyper with a patch for this
    // (vendor/hyper/BERTH-PATCH.md).
    let (router, rec) = router_and_recorder().await;
    for head in [
        "Content-Length: 56\r\nTransfer-Encoding: chunked",
        "Transfer-Encoding: chunked\r\nContent-Length: 56",
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\nContent-Length: 5",
    ] {
        let req = format!(
            "POST /first HTTP/1.1\r\nHost: a.localhost\r\n{head}\r\n\r\n5\r\nhello\r\n0\r\n\r\n{SMUGGLED}"
        );
        let answer = raw(router.addr, &req).await;
        assert_eq!(raw_status(&answer), 400, "{head:?}: {answer}");
        assert_eq!(
            answer.matches("HTTP/1.1").count(),
            1,
            "one answer, then closed: {answer}"
        );
    }
    assert!(
        rec.seen().is_empty(),
        "nothing reached the app: {:?}",
        rec.seen()
    );
}

#[tokio::test]
async fn the_app_gets_the_routers_framing_not_the_clients() {
    let (router, rec) = router_and_recorder().await;
    // A chunked body with a chunk extension and a trailer: the app sees
    // the decoded body with a framing the router chose.
    let answer = raw(
        router.addr,
        "POST /c HTTP/1.1\r\nHost: a.localhost\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n\
         3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    // A duplicate but equal Content-Length is read as one length.
    let answer = raw(
        router.addr,
        "POST /l HTTP/1.1\r\nHost: a.localhost\r\nConnection: close\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nxyz",
    )
    .await;
    assert_eq!(raw_status(&answer), 200, "{answer}");

    let seen = rec.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("POST", "/c")
    );
    assert_eq!(seen[0].body.as_deref().ok(), Some(&b"abcde"[..]));
    assert!(
        seen[0].header("content-length").is_empty() || seen[0].header("content-length") == ["5"],
        "{:?}",
        seen[0]
    );
    assert_eq!(
        seen[1].header("content-length"),
        ["3"],
        "one length: {:?}",
        seen[1]
    );
    assert_eq!(seen[1].body.as_deref().ok(), Some(&b"xyz"[..]));
}

#[tokio::test]
async fn forwarded_headers_are_believed_only_from_trusted_proxies() {
    let rec = Recorder::start().await;
    let routes = table(vec![app("a", &["a.localhost"], &[rec.addr])]);
    let config = berth_router::RouterConfig {
        trusted_proxies: berth_router::TrustedProxies::new(vec!["127.0.0.2".parse().expect("net")]),
        ..Default::default()
    };
    let router = Router::start_with(config, routes).await;
    let claim = "GET / HTTP/1.1\r\nHost: a.localhost\r\nConnection: close\r\n\
                 X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: shop.example\r\n\r\n";
    for from in [[127, 0, 0, 1], [127, 0, 0, 2]] {
        let mut s = connect_from(from, router.addr).await.expect("connect");
        tokio::io::AsyncWriteExt::write_all(&mut s, claim.as_bytes())
            .await
            .expect("write");
        assert!(closed_by_peer(&mut s).await);
    }
    let seen = rec.seen();
    assert_eq!(seen.len(), 2);
    // An ordinary client's claims are replaced.
    assert_eq!(seen[0].header("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen[0].header("x-forwarded-proto"), ["http"]);
    assert_eq!(seen[0].header("x-forwarded-host"), ["a.localhost"]);
    // A trusted proxy's chain is extended and its other claims kept.
    assert_eq!(seen[1].header("x-forwarded-for"), ["6.6.6.6, 127.0.0.2"]);
    assert_eq!(seen[1].header("x-forwarded-proto"), ["https"]);
    assert_eq!(seen[1].header("x-forwarded-host"), ["shop.example"]);
}
