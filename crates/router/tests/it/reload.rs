//! Route changes under traffic: table swaps, the TOML file and the control
//! plane.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use berth_router::standalone;
use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::util::*;

#[tokio::test]
async fn swapping_backends_under_load_loses_no_request() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let router = Router::start(table(vec![app("one", &["one.localhost"], &[a.addr])])).await;

    let done = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (done, ok) = (done.clone(), ok.clone());
        let client = http_client();
        let url = format!("http://{}/", router.addr);
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !done.load(Ordering::SeqCst) {
                match client
                    .get(&url)
                    .header("host", "one.localhost")
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(r) => failures.push(format!("status {}", r.status())),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            failures
        }));
    }

    let sets = [
        vec![a.addr],
        vec![b.addr],
        vec![a.addr, b.addr],
        vec![b.addr, a.addr],
    ];
    for i in 0..100 {
        router.routes.update(table(vec![app(
            "one",
            &["one.localhost"],
            &sets[i % sets.len()],
        )]));
        // Let some traffic through on each table before the next swap.
        let seen = ok.load(Ordering::SeqCst);
        eventually("a request on the new table", || async {
            ok.load(Ordering::SeqCst) > seen
        })
        .await;
    }
    done.store(true, Ordering::SeqCst);
    for c in clients {
        let failures = c.await.expect("client task");
        assert!(failures.is_empty(), "{failures:?}");
    }
    assert!(a.hits() > 0 && b.hits() > 0);
}

#[tokio::test]
async fn the_config_file_is_hot_reloaded_and_a_bad_one_ignored() {
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("router.toml");
    let config = |addr: std::net::SocketAddr| {
        format!(
            "[[apps]]\nname = \"site\"\nhosts = [\"site.localhost\"]\nbackends = [\"{addr}\"]\n"
        )
    };
    std::fs::write(&path, config(a.addr)).expect("write");

    let router = Router::start(table(vec![])).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watcher = tokio::spawn(standalone::watch_file(
        path.clone(),
        router.routes.clone(),
        async {
            let _ = stopped.await;
        },
    ));

    eventually("the first load", || async {
        router.text("site.localhost", "/").await == "a"
    })
    .await;

    // Another backend, and a different length so the change is seen even on
    // filesystems with coarse modification times.
    std::fs::write(&path, format!("# now b\n{}", config(b.addr))).expect("write");
    eventually("the reload", || async {
        router.text("site.localhost", "/").await == "b"
    })
    .await;
    let revision = router.routes.revision();

    std::fs::write(
        &path,
        "[[apps]]\nname = \"site\"\nhosts = [\"site.localhost\"]\nbackends = [\"nowhere\"]\n",
    )
    .expect("write");
    // The invalid file must never take effect. That is a claim about a span
    // of time, so it is checked over one: for longer than two polls of the
    // watcher (500 ms each), every request must still reach b.
    let window = tokio::time::Instant::now() + std::time::Duration::from_millis(1200);
    while tokio::time::Instant::now() < window {
        assert_eq!(router.text("site.localhost", "/").await, "b");
    }
    std::fs::write(
        &path,
        format!("# back to a, the long way\n{}", config(a.addr)),
    )
    .expect("write");
    eventually("the reload after the invalid file", || async {
        let got = router.text("site.localhost", "/").await;
        assert!(got == "a" || got == "b", "served {got:?}");
        got == "a"
    })
    .await;
    assert!(router.routes.revision() > revision);

    let _ = stop.send(());
    watcher.await.expect("watcher ends on shutdown");
}

/// A fake control plane: `/v1/routes` fails `failures` times, then answers
/// with `table`.
async fn fake_control_plane(table: berth_model::RouteTable, failures: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let json = Bytes::from(serde_json::to_vec(&table).expect("json"));
    let calls = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (json, calls) = (json.clone(), calls.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |_req| {
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    let resp = if n < failures {
                        Response::builder()
                            .status(500)
                            .body(Full::new(Bytes::from("{\"error\":\"down\"}")))
                    } else {
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(json.clone()))
                    };
                    async move { Ok::<_, Infallible>(resp.expect("response")) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn routes_follow_the_control_plane_through_its_failures() {
    let a = Backend::start("a").await;
    let router = Router::start(table(vec![])).await;
    let mut served = table(vec![app("one", &["one.localhost"], &[a.addr])]);
    served.revision = 1_000_000;
    let url = fake_control_plane(served, 2).await;
    let client = berth_client::Client::new(&url, None).expect("client");

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let follower = tokio::spawn(berth_router::follow_control_plane(
        client,
        router.routes.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    eventually("the table from the server", || async {
        router.routes.revision() == 1_000_000
    })
    .await;
    assert_eq!(router.text("one.localhost", "/").await, "a");

    let _ = stop.send(());
    tokio::time::timeout(DEADLINE, follower)
        .await
        .expect("the follower stops on shutdown, even mid-poll")
        .expect("task");
}

#[tokio::test]
async fn an_unreachable_control_plane_leaves_the_routes_alone() {
    let a = Backend::start("a").await;
    let router = Router::start(table(vec![app("one", &["one.localhost"], &[a.addr])])).await;
    let revision = router.routes.revision();
    let dead_port = HeldPort::bind();
    let dead = dead_port.addr;
    let client = berth_client::Client::new(&format!("http://{dead}"), None).expect("client");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let follower = tokio::spawn(berth_router::follow_control_plane(
        client,
        router.routes.clone(),
        async {
            let _ = stopped.await;
        },
    ));
    for _ in 0..20 {
        assert_eq!(router.get("one.localhost", "/").await.status(), 200);
    }
    assert_eq!(router.routes.revision(), revision);
    let _ = stop.send(());
    tokio::time::timeout(DEADLINE, follower)
        .await
        .expect("stops")
        .expect("task");
}
