//! Active health checks: an instance that fails its app's check path goes
//! out of rotation while it still accepts connections, and comes back once
//! it passes again.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use berth_model::{HealthCheck, RouteSettings};
use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::util::*;

/// An app server whose `/healthz` passes or fails on demand; anything else
/// answers its name.
struct Checked {
    addr: SocketAddr,
    sick: Arc<AtomicBool>,
    /// `/healthz` requests, and the Host and User-Agent of the last one.
    checks: Arc<AtomicUsize>,
    last_check: Arc<Mutex<(String, String)>>,
}

impl Checked {
    async fn start(name: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let sick = Arc::new(AtomicBool::new(false));
        let checks = Arc::new(AtomicUsize::new(0));
        let last_check = Arc::new(Mutex::new(Default::default()));
        let state = (sick.clone(), checks.clone(), last_check.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (sick, checks, last) = state.clone();
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (sick, checks, last) = (sick.clone(), checks.clone(), last.clone());
                    async move {
                        if req.uri().path() != "/healthz" {
                            return Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(
                                name,
                            ))));
                        }
                        checks.fetch_add(1, Ordering::SeqCst);
                        let header = |n: &str| {
                            req.headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_string()
                        };
                        *last.lock().expect("lock") = (header("host"), header("user-agent"));
                        let status = if sick.load(Ordering::SeqCst) {
                            503
                        } else {
                            200
                        };
                        let mut resp = Response::new(Full::new(Bytes::new()));
                        *resp.status_mut() = http::StatusCode::from_u16(status).expect("status");
                        Ok(resp)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc),
                );
            }
        });
        Self {
            addr,
            sick,
            checks,
            last_check,
        }
    }
}

/// Which backends answer `n` requests in a row.
async fn answers(router: &Router, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..n {
        seen.push(router.text("c.localhost", "/").await);
    }
    seen
}

#[tokio::test]
async fn an_instance_failing_its_check_leaves_rotation_and_returns_when_it_passes() {
    let (a, b) = (Checked::start("a").await, Checked::start("b").await);
    let mut route = app("c", &["c.localhost"], &[a.addr, b.addr]);
    route.settings = RouteSettings {
        // A generous timeout: on a loaded machine a slow but healthy check
        // must not take `a` out too.
        health_check: Some(HealthCheck {
            path: "/healthz".into(),
            interval_ms: 1000,
            timeout_ms: 1000,
            rise: 2,
            fall: 2,
        }),
        ..Default::default()
    };
    let router = Router::start(table(vec![route])).await;

    eventually("both instances checked", || async {
        a.checks.load(Ordering::SeqCst) >= 1 && b.checks.load(Ordering::SeqCst) >= 1
    })
    .await;
    let (host, agent) = a.last_check.lock().expect("lock").clone();
    assert_eq!(host, "c.localhost", "checks carry the app's host");
    assert_eq!(agent, "berth-router-check");
    let both = answers(&router, 10).await;
    assert!(
        both.iter().any(|n| n == "a") && both.iter().any(|n| n == "b"),
        "{both:?}"
    );

    // b still accepts connections and answers `/`: only the check says it
    // is unwell, as an app whose database is gone would.
    b.sick.store(true, Ordering::SeqCst);
    eventually("b out of rotation", || async {
        answers(&router, 20).await.iter().all(|n| n == "a")
    })
    .await;
    let checks = b.checks.load(Ordering::SeqCst);
    eventually("b still checked while out", || async {
        b.checks.load(Ordering::SeqCst) >= checks + 2
    })
    .await;
    assert!(
        answers(&router, 20).await.iter().all(|n| n == "a"),
        "stays out while failing"
    );

    b.sick.store(false, Ordering::SeqCst);
    eventually("b back in rotation", || async {
        answers(&router, 10).await.iter().any(|n| n == "b")
    })
    .await;
}

#[tokio::test]
async fn removing_the_check_puts_an_instance_it_took_out_back() {
    let (a, b) = (Checked::start("a").await, Checked::start("b").await);
    b.sick.store(true, Ordering::SeqCst);
    let mut route = app("c", &["c.localhost"], &[a.addr, b.addr]);
    route.settings.health_check = Some(HealthCheck {
        path: "/healthz".into(),
        interval_ms: 1000,
        timeout_ms: 1000,
        rise: 1,
        fall: 1,
    });
    let router = Router::start(table(vec![route.clone()])).await;
    eventually("b out of rotation", || async {
        answers(&router, 20).await.iter().all(|n| n == "a")
    })
    .await;
    // Without a check nothing would ever pass again: the verdict must go.
    route.settings.health_check = None;
    router.routes.update(table(vec![route]));
    eventually("b back in rotation", || async {
        answers(&router, 10).await.iter().any(|n| n == "b")
    })
    .await;
}

#[tokio::test]
async fn an_instance_that_does_not_answer_its_check_in_time_is_out() {
    let a = Checked::start("a").await;
    // Accepts and never answers: a process wedged in a deadlock.
    let wedged = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let wedged_addr = wedged.local_addr().expect("addr");
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = wedged.accept().await {
            keep.lock().expect("lock").push(s);
        }
    });
    let mut route = app("c", &["c.localhost"], &[a.addr, wedged_addr]);
    // Long enough that a's checks pass on a loaded machine; the wedged one
    // fails at the timeout whatever it is.
    route.settings.health_check = Some(HealthCheck {
        path: "/healthz".into(),
        interval_ms: 500,
        timeout_ms: 500,
        rise: 1,
        fall: 1,
    });
    let router = Router::start(table(vec![route])).await;
    eventually("the wedged instance checked and failed", || async {
        held.lock().expect("lock").len() >= 2
    })
    .await;
    // Every request goes to a; none waits on the wedged one.
    assert!(answers(&router, 20).await.iter().all(|n| n == "a"));
}
