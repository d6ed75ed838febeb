//! HTTP/2 from clients over TLS, to HTTP/1.1 backends: normal traffic
//! from real clients, and the attacks HTTP/2 invites, from hand-made frames
//! (python `h2`, see `h2peer.py`).

use std::path::PathBuf;
use std::process::Command;

use berth_router::tls::CertSources;
use berth_router::RouterConfig;
use serde_json::Value;

use crate::certs::*;
use crate::python::python_with;
use crate::util::*;

/// A router over TLS for `a.test`, routed to `backend`.
async fn router_for(
    backend: std::net::SocketAddr,
    config: RouterConfig,
) -> (TlsRouter, TestCa, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let (files, _) = ca.write(dir.path(), "a", &["a.test"]);
    let router = TlsRouter::start_with(
        config,
        CertSources {
            files: vec![files],
            dir: None,
        },
        table(vec![app("a", &["a.test"], &[backend])]),
    )
    .await;
    (router, ca, dir)
}

/// Runs `h2peer.py MODE` against the router; its JSON report.
async fn peer(mode: &str, router: &TlsRouter) -> Value {
    let python = python_with(&["h2==4.2.0"]);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/h2peer.py");
    let addr = router.tls_addr.to_string();
    let arg = mode.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .args([arg.as_str(), addr.as_str(), "a.test"])
            .output()
            .expect("run h2peer.py")
    })
    .await
    .expect("h2peer task");
    assert!(
        out.status.success(),
        "h2peer.py failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("h2peer.py {mode}: {}", String::from_utf8_lossy(&out.stdout));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "h2peer.py output {:?}: {e}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[tokio::test]
async fn many_requests_share_one_http2_connection_to_http1_backends() {
    let backend = Backend::start("b").await;
    let (router, ca, _dir) = router_for(backend.addr, RouterConfig::default()).await;
    let client = router.client(&ca, "a.test");
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (client, url) = (client.clone(), router.url("a.test", &format!("/echo?{i}")));
        tasks.push(tokio::spawn(async move {
            let body = format!("request {i}");
            let resp = client
                .post(url)
                .body(body.clone())
                .send()
                .await
                .expect("answered");
            assert_eq!(resp.version(), reqwest::Version::HTTP_2);
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.text().await.expect("body"), body);
        }));
    }
    for t in tasks {
        t.await.expect("request task");
    }
    assert_eq!(backend.hits(), 200);

    // Another HTTP/2 implementation: python h2, Host equal to :authority.
    let report = peer("request", &router).await;
    assert_eq!(report["status"], 200, "{report}");
    let seen = report["body"].as_str().expect("body");
    assert!(seen.contains("host: a.test\n"), "{seen}");
    assert!(seen.contains("x-forwarded-proto: https\n"), "{seen}");
}

#[tokio::test]
async fn authority_and_host_that_disagree_get_400() {
    let recorder = Recorder::start().await;
    let (router, _ca, _dir) = router_for(recorder.addr, RouterConfig::default()).await;
    let report = peer("host-mismatch", &router).await;
    assert_eq!(report["status"], 400, "{report}");
    assert!(recorder.seen().is_empty(), "{:?}", recorder.seen());
}

#[tokio::test]
async fn a_content_length_that_disagrees_with_data_never_reaches_the_backend_whole() {
    let recorder = Recorder::start().await;
    let (router, ca, _dir) = router_for(recorder.addr, RouterConfig::default()).await;
    let report = peer("content-length", &router).await;
    assert_ne!(report["status"], 200, "{report}");
    // Usually h2 resets the stream before it is forwarded at all; when the
    // head went out first, the backend sees a body cut short. A request
    // sent afterwards shows the recorder has caught up.
    let client = router.client(&ca, "a.test");
    let after = client
        .post(router.url("a.test", "/after"))
        .body("whole")
        .send()
        .await
        .expect("answered");
    assert_eq!(after.status(), 200);
    eventually("the backend to see the request after", || async {
        recorder.seen().iter().any(|s| s.path == "/after")
    })
    .await;
    let complete: Vec<_> = recorder
        .seen()
        .into_iter()
        .filter(|s| s.path == "/" && s.body.is_ok())
        .collect();
    assert!(complete.is_empty(), "{complete:?}");
}

#[tokio::test]
async fn rapid_reset_is_cut_off_and_other_clients_are_served() {
    let backend = Backend::start("b").await;
    let (router, ca, _dir) = router_for(backend.addr, RouterConfig::default()).await;
    let report = peer("rapid-reset", &router).await;
    assert!(
        report["goaway"].is_number() || report["closed"] == true,
        "the router ends the connection: {report}"
    );
    // 1000 streams were opened and reset; only a few may have reached the
    // backend before h2 said enough.
    let reached = backend.arrived();
    assert!(
        reached < 100,
        "{reached} of 1000 reset streams reached the backend"
    );
    backend.gate.add_permits(1000);

    assert_eq!(router.https_status(&ca, "a.test", "/").await, 200);
}

#[tokio::test]
async fn a_continuation_flood_is_cut_off() {
    let backend = Backend::start("b").await;
    let (router, ca, _dir) = router_for(backend.addr, RouterConfig::default()).await;
    let report = peer("continuation", &router).await;
    // The router closed the connection long before 64 MiB of header block:
    // it never held more than the header limit of it.
    assert_eq!(report["closed"], true, "{report}");
    assert_eq!(backend.hits(), 0);
    assert_eq!(router.https_status(&ca, "a.test", "/").await, 200);
}

#[tokio::test]
async fn a_header_list_over_the_limit_gets_431() {
    let backend = Backend::start("b").await;
    let config = RouterConfig {
        max_header_bytes: 8192,
        ..RouterConfig::default()
    };
    let (router, ca, _dir) = router_for(backend.addr, config).await;
    let client = router.client(&ca, "a.test");
    let resp = client
        .get(router.url("a.test", "/"))
        .header("x-big", "a".repeat(10_000))
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 431);
    assert_eq!(backend.hits(), 0);
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed() {
    use tokio::io::AsyncReadExt;

    let backend = Backend::start("b").await;
    let config = RouterConfig {
        header_read_timeout: std::time::Duration::from_millis(300),
        ..RouterConfig::default()
    };
    let (router, _ca, _dir) = router_for(backend.addr, config).await;
    // TLS done, HTTP/2 chosen, then not a single frame (nor a request).
    let (mut stream, alpn) = handshake(router.tls_addr, Some("a.test"), &["h2"])
        .await
        .expect("handshake");
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(DEADLINE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "idle HTTP/2 connection still open");
}

/// A backend whose every answer is an event stream of `events` events,
/// one every `every`: a response that is all body, long after its head.
async fn event_stream_backend(events: usize, every: std::time::Duration) -> std::net::SocketAddr {
    use bytes::Bytes;
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = hyper::service::service_fn(move |_req| async move {
                let mut tick = tokio::time::interval(every);
                let mut n = 0;
                let stream = futures_util::stream::poll_fn(move |cx| {
                    if n == events {
                        return std::task::Poll::Ready(None);
                    }
                    std::task::ready!(tick.poll_tick(cx));
                    n += 1;
                    let event = Frame::data(Bytes::from(format!("data: {n}\n\n")));
                    std::task::Poll::Ready(Some(Ok::<_, std::convert::Infallible>(event)))
                });
                let resp = http::Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(StreamBody::new(stream).boxed())
                    .expect("response");
                Ok::<_, std::convert::Infallible>(resp)
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc),
            );
        }
    });
    addr
}

#[tokio::test]
async fn a_long_response_body_keeps_its_http2_connection_open() {
    // 2 s of events, one every 200 ms, over a connection whose idle limit
    // is 300 ms: the stream is busy the whole time, never idle.
    let backend = event_stream_backend(10, std::time::Duration::from_millis(200)).await;
    let config = RouterConfig {
        header_read_timeout: std::time::Duration::from_millis(300),
        ..RouterConfig::default()
    };
    let (router, ca, _dir) = router_for(backend, config).await;
    let client = router.client(&ca, "a.test");
    let resp = client
        .get(router.url("a.test", "/events"))
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.expect("the whole event stream");
    let expected: String = (1..=10).map(|n| format!("data: {n}\n\n")).collect();
    assert_eq!(body, expected);
}

#[tokio::test]
async fn cookie_fields_from_http2_reach_the_backend_as_one_line() {
    let backend = Backend::start("b").await;
    let (router, ca, _dir) = router_for(backend.addr, RouterConfig::default()).await;
    let client = router.client(&ca, "a.test");
    // Two fields, as browsers send cookies over HTTP/2.
    let resp = client
        .get(router.url("a.test", "/headers"))
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let seen = resp.text().await.expect("body");
    let cookies: Vec<_> = seen.lines().filter(|l| l.starts_with("cookie:")).collect();
    assert_eq!(cookies, ["cookie: a=1; b=2"], "{seen}");
}

/// The router's `/metrics` on its stats address.
async fn metrics(stats: std::net::SocketAddr) -> String {
    let resp = http_client()
        .get(format!("http://{stats}/metrics"))
        .send()
        .await
        .expect("metrics answered");
    resp.text().await.expect("metrics text")
}

/// A router for `backend` with its stats on an address of their own.
async fn router_with_stats(
    backend: std::net::SocketAddr,
) -> (TlsRouter, TestCa, tempfile::TempDir, HeldPort) {
    let stats = HeldPort::bind();
    let config = RouterConfig {
        stats_listen: Some(stats.addr),
        ..RouterConfig::default()
    };
    let (router, ca, dir) = router_for(backend, config).await;
    (router, ca, dir, stats)
}

/// The router ended a flooding connection: closed it, or sent GOAWAY
/// `ENHANCE_YOUR_CALM` (which a client may not get to read before the
/// close).
fn assert_cut(report: &Value) {
    assert!(
        report["goaway"] == 11 || (report["closed"] == true && report["goaway"].is_null()),
        "the router ends the flooding connection: {report}"
    );
}

#[tokio::test]
async fn a_ping_flood_is_cut_off_while_other_clients_are_served() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let backend = Backend::start("b").await;
    let (router, ca, _dir, stats) = router_with_stats(backend.addr).await;
    let client = router.client(&ca, "a.test");
    let flooded = AtomicBool::new(false);
    let (report, served) = tokio::join!(
        async {
            let report = peer("ping-flood", &router).await;
            flooded.store(true, Ordering::Relaxed);
            report
        },
        async {
            // Another client, on a connection of its own, meanwhile.
            let mut served = 0;
            while !flooded.load(Ordering::Relaxed) {
                let resp = client
                    .get(router.url("a.test", "/"))
                    .send()
                    .await
                    .expect("answered during the flood");
                assert_eq!(resp.version(), reqwest::Version::HTTP_2);
                assert_eq!(resp.status(), 200);
                served += 1;
            }
            served
        }
    );
    assert_cut(&report);
    // 10 000 PINGs were on their way; the router answered the first
    // thousand or so (its limit, plus what leaked away meanwhile).
    let acked = report["acked"].as_u64().expect("acked");
    assert!(
        (1000..5000).contains(&acked),
        "{acked} PINGs answered: {report}"
    );
    assert!(served > 0);
    eventually("the flood to be counted", || async {
        metrics(stats.addr)
            .await
            .contains("berth_router_http2_floods_total 1\n")
    })
    .await;
    assert_eq!(router.https_status(&ca, "a.test", "/").await, 200);
}

#[tokio::test]
async fn a_settings_flood_is_cut_off() {
    let backend = Backend::start("b").await;
    let (router, ca, _dir) = router_for(backend.addr, RouterConfig::default()).await;
    let report = peer("settings-flood", &router).await;
    assert_cut(&report);
    let acked = report["acked"].as_u64().expect("acked");
    assert!(acked < 5000, "{acked} SETTINGS answered: {report}");
    assert_eq!(router.https_status(&ca, "a.test", "/").await, 200);
}

#[tokio::test]
async fn a_window_update_flood_is_cut_off() {
    let backend = Backend::start("b").await;
    let (router, ca, _dir) = router_for(backend.addr, RouterConfig::default()).await;
    let report = peer("window-update-flood", &router).await;
    assert_cut(&report);
    assert_eq!(router.https_status(&ca, "a.test", "/").await, 200);
}

/// h2 itself ends a connection after 100 empty DATA frames (≥ 0.4.16);
/// the flood budget counts them too, should that change.
#[tokio::test]
async fn an_empty_data_flood_is_cut_off() {
    let backend = Backend::start("b").await;
    let (router, ca, _dir) = router_for(backend.addr, RouterConfig::default()).await;
    let report = peer("empty-data-flood", &router).await;
    assert_cut(&report);
    assert_eq!(router.https_status(&ca, "a.test", "/").await, 200);
}

#[tokio::test]
async fn a_busy_client_with_a_browsers_control_frames_is_never_cut() {
    let backend = Backend::start("b").await;
    let (router, _ca, _dir, stats) = router_with_stats(backend.addr).await;
    let report = peer("browser", &router).await;
    assert_eq!(report["ok"], 2000, "{report}");
    assert_eq!(report["closed"], false, "{report}");
    assert!(report["goaway"].is_null(), "{report}");
    assert!(
        metrics(stats.addr)
            .await
            .contains("berth_router_http2_floods_total 0\n"),
        "no flood counted"
    );
}
