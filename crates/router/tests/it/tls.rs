//! TLS termination: certificates by SNI, reloaded from disk, handshakes
//! bounded in time, `X-Forwarded-Proto`.

use std::time::Duration;

use berth_router::tls::{CertFiles, CertSources, Certificates};
use berth_router::{RouterConfig, TrustedProxies};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::certs::*;
use crate::util::*;

fn files(list: Vec<CertFiles>) -> CertSources {
    CertSources {
        files: list,
        dir: None,
    }
}

#[tokio::test]
async fn sni_picks_each_domains_certificate_and_wildcards_match_one_label() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let (a_files, a) = ca.write(dir.path(), "a", &["a.test"]);
    let (w_files, wild) = ca.write(dir.path(), "wild", &["*.apps.test"]);
    let backend = Backend::start("b").await;
    let router = TlsRouter::start(
        files(vec![a_files, w_files]),
        table(vec![
            app("a", &["a.test"], &[backend.addr]),
            app("shop", &["shop.apps.test"], &[backend.addr]),
        ]),
    )
    .await;

    // A client that checks names gets through only with the right one.
    let client = resolving(
        ca.client_builder(),
        &["a.test", "shop.apps.test"],
        router.tls_addr,
    );
    for host in ["a.test", "shop.apps.test"] {
        let resp = client
            .get(router.url(host, "/"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("https://{host}: {e:?}"));
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.expect("body"), "b");
    }

    let served = |name| served_cert(router.tls_addr, name);
    assert_eq!(served(Some("a.test")).await, a.der);
    assert_eq!(served(Some("shop.apps.test")).await, wild.der);
    assert_eq!(served(Some("SHOP.Apps.Test")).await, wild.der);
    // Not covered: the default, which is the first certificate.
    assert_eq!(served(Some("deep.shop.apps.test")).await, a.der);
    assert_eq!(served(Some("unknown.test")).await, a.der);
    assert_eq!(served(None).await, a.der, "no SNI: the default");
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_restart_and_a_broken_one_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let (a_files, first) = ca.write(dir.path(), "a", &["a.test"]);
    let (b_files, _) = ca.write(dir.path(), "b", &["b.test"]);
    let backend = Backend::start("b").await;
    let router = TlsRouter::start(
        files(vec![a_files.clone(), b_files.clone()]),
        table(vec![app("a", &["a.test"], &[backend.addr])]),
    )
    .await;

    // A connection made before the renewal…
    let (mut open, _) = handshake(router.tls_addr, Some("a.test"), &["http/1.1"])
        .await
        .expect("handshake");
    assert!(get_over(&mut open, "a.test")
        .await
        .starts_with("HTTP/1.1 200"));

    let renewed = ca.leaf(&["a.test"]);
    write_leaf(&a_files, &renewed);
    eventually("the renewed certificate served", || async {
        served_cert(router.tls_addr, Some("a.test")).await == renewed.der
    })
    .await;
    // …is untouched by it.
    assert!(get_over(&mut open, "a.test")
        .await
        .starts_with("HTTP/1.1 200"));

    // A broken certificate, then (later) a renewal of b: once b's is served,
    // the watcher has seen the broken file too.
    std::fs::write(&a_files.cert, "-----BEGIN CERTIFICATE-----\nbroken\n").expect("write");
    let b_renewed = ca.leaf(&["b.test"]);
    write_leaf(&b_files, &b_renewed);
    eventually("b's renewal served", || async {
        served_cert(router.tls_addr, Some("b.test")).await == b_renewed.der
    })
    .await;
    assert_eq!(
        served_cert(router.tls_addr, Some("a.test")).await,
        renewed.der,
        "the last good certificate keeps serving"
    );
    // A key that belongs to another certificate is refused just the same.
    let other = ca.leaf(&["a.test"]);
    std::fs::write(&a_files.cert, &renewed.cert_pem).expect("write");
    std::fs::write(&a_files.key, &other.key_pem).expect("write");
    let b_again = ca.leaf(&["b.test"]);
    write_leaf(&b_files, &b_again);
    eventually("b's second renewal served", || async {
        served_cert(router.tls_addr, Some("b.test")).await == b_again.der
    })
    .await;
    assert_eq!(
        served_cert(router.tls_addr, Some("a.test")).await,
        renewed.der
    );
    assert_ne!(first.der, renewed.der);
}

#[tokio::test]
async fn a_certbot_directory_is_served_and_new_certificates_in_it_picked_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let live = dir.path().join("live");
    let put = |name: &str| {
        let sub = live.join(name);
        std::fs::create_dir_all(&sub).expect("mkdir");
        let leaf = ca.leaf(&[name]);
        write_leaf(
            &CertFiles {
                cert: sub.join("fullchain.pem"),
                key: sub.join("privkey.pem"),
            },
            &leaf,
        );
        leaf
    };
    let a = put("a.test");
    let b = put("b.test");
    // certbot keeps a README next to the certificates.
    std::fs::write(live.join("README"), "certbot").expect("write");
    let backend = Backend::start("b").await;
    let router = TlsRouter::start(
        CertSources {
            files: vec![],
            dir: Some(live.clone()),
        },
        table(vec![app("a", &["a.test"], &[backend.addr])]),
    )
    .await;
    assert_eq!(served_cert(router.tls_addr, Some("b.test")).await, b.der);
    assert_eq!(
        served_cert(router.tls_addr, None).await,
        a.der,
        "first by name"
    );

    let c = put("c.test");
    eventually("a new directory's certificate served", || async {
        served_cert(router.tls_addr, Some("c.test")).await == c.der
    })
    .await;
    assert!(router.certs.names().contains(&"c.test".to_string()));
}

#[tokio::test]
async fn https_starts_with_an_empty_certificate_directory_and_serves_the_first_certificate() {
    // A fresh host: certbot gets the first certificate through the router.
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("live");
    std::fs::create_dir(&live).expect("mkdir");
    let backend = Backend::start("b").await;
    let router = TlsRouter::start(
        CertSources {
            files: vec![],
            dir: Some(live.clone()),
        },
        table(vec![app("a", &["a.test"], &[backend.addr])]),
    )
    .await;
    assert!(
        handshake(router.tls_addr, Some("a.test"), &[])
            .await
            .is_err(),
        "no certificate yet: the handshake fails"
    );
    // Plain HTTP serves meanwhile (the ACME challenge goes there).
    assert_eq!(
        http_client()
            .get(format!("http://{}/", router.addr))
            .header("host", "a.test")
            .send()
            .await
            .expect("answered")
            .status(),
        200
    );

    let ca = TestCa::new();
    let sub = live.join("a.test");
    std::fs::create_dir(&sub).expect("mkdir");
    let leaf = ca.leaf(&["a.test"]);
    write_leaf(
        &CertFiles {
            cert: sub.join("fullchain.pem"),
            key: sub.join("privkey.pem"),
        },
        &leaf,
    );
    eventually("the first certificate served", || async {
        handshake(router.tls_addr, Some("a.test"), &[])
            .await
            .is_ok()
    })
    .await;
    assert_eq!(served_cert(router.tls_addr, Some("a.test")).await, leaf.der);
    assert_eq!(router.https_status(&ca, "a.test", "/").await, 200);
}

#[test]
fn unusable_files_are_refused_at_load_each_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let (good, _) = ca.write(dir.path(), "good", &["good.test"]);
    let (mismatched, _) = ca.write(dir.path(), "mismatched", &["m.test"]);
    std::fs::write(&mismatched.key, ca.leaf(&["m.test"]).key_pem).expect("write");
    let (garbage, _) = ca.write(dir.path(), "garbage", &["g.test"]);
    std::fs::write(&garbage.cert, "not a certificate").expect("write");
    let missing = CertFiles {
        cert: dir.path().join("missing.pem"),
        key: good.key.clone(),
    };
    let (no_key, _) = ca.write(dir.path(), "nokey", &["k.test"]);
    std::fs::write(&no_key.key, "").expect("write");

    let err = Certificates::load(files(vec![
        good.clone(),
        mismatched.clone(),
        garbage.clone(),
        missing.clone(),
        no_key.clone(),
    ]))
    .err()
    .expect("refused")
    .to_string();
    assert!(err.contains("4 certificate problem(s)"), "{err}");
    for (path, says) in [
        (&mismatched.key, "does not belong to certificate"),
        (&garbage.cert, "no CERTIFICATE block"),
        (&missing.cert, "cannot read"),
        (&no_key.key, "no PRIVATE KEY block"),
    ] {
        let line = err
            .lines()
            .find(|l| l.contains(&*path.to_string_lossy()))
            .unwrap_or_else(|| panic!("{} named in:\n{err}", path.display()));
        assert!(line.contains(says), "{line:?} should say {says:?}");
    }
    assert!(Certificates::load(files(vec![good])).is_ok());
    let none = Certificates::load(CertSources {
        files: vec![],
        dir: Some(dir.path().join("empty")),
    });
    assert!(none.err().expect("no dir").to_string().contains("empty"));
    // Only a directory may wait for its first certificate.
    let nothing = Certificates::load(files(vec![]));
    assert!(nothing.is_err(), "no certificate named: refused");
}

#[tokio::test]
async fn a_client_stalling_in_the_handshake_is_cut_off_and_others_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let (a_files, _) = ca.write(dir.path(), "a", &["a.test"]);
    let backend = Backend::start("b").await;
    let config = RouterConfig {
        header_read_timeout: Duration::from_millis(300),
        ..RouterConfig::default()
    };
    let router = TlsRouter::start_with(
        config,
        files(vec![a_files]),
        table(vec![app("a", &["a.test"], &[backend.addr])]),
    )
    .await;
    // Half a ClientHello, then nothing.
    let mut stalled = TcpStream::connect(router.tls_addr).await.expect("connect");
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
        .await
        .expect("write");
    let mut silent = TcpStream::connect(router.tls_addr).await.expect("connect");
    assert_eq!(router.https_status(&ca, "a.test", "/").await, 200);
    assert!(closed_by_peer(&mut stalled).await, "stalled handshake cut");
    assert!(closed_by_peer(&mut silent).await, "silent client cut");
}

#[tokio::test]
async fn the_backend_learns_the_request_came_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let (a_files, _) = ca.write(dir.path(), "a", &["a.test"]);
    let backend = Backend::start("b").await;
    let router = TlsRouter::start(
        files(vec![a_files]),
        table(vec![app("a", &["a.test"], &[backend.addr])]),
    )
    .await;
    let client = router.client(&ca, "a.test");
    for version in [reqwest::Version::HTTP_11, reqwest::Version::HTTP_2] {
        let builder = client.get(router.url("a.test", "/headers"));
        let builder = if version == reqwest::Version::HTTP_11 {
            // reqwest speaks HTTP/2 whenever ALPN allows; this one cannot.
            resolving(
                ca.client_builder().http1_only(),
                &["a.test"],
                router.tls_addr,
            )
            .get(router.url("a.test", "/headers"))
        } else {
            builder
        };
        let resp = builder
            .header("x-forwarded-proto", "http")
            .send()
            .await
            .expect("served");
        assert_eq!(resp.version(), version);
        let seen = resp.text().await.expect("body");
        assert!(
            seen.contains("x-forwarded-proto: https\n"),
            "{version:?}:\n{seen}"
        );
    }
    let plain = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let seen = plain
        .get(format!("http://{}/headers", router.addr))
        .header("host", "a.test")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .expect("served")
        .text()
        .await
        .expect("body");
    assert!(seen.contains("x-forwarded-proto: http\n"), "{seen}");
}

#[tokio::test]
async fn plain_http_is_redirected_to_https_per_app_except_acme_challenges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let (a_files, _) = ca.write(dir.path(), "a", &["a.test", "b.test"]);
    let backend = Backend::start("b").await;
    let mut secure = app("a", &["a.test"], &[backend.addr]);
    secure.settings.routing.redirect_https = true;
    let config = RouterConfig {
        trusted_proxies: TrustedProxies::new(vec!["127.0.0.2/32".parse().expect("net")]),
        ..RouterConfig::default()
    };
    let router = TlsRouter::start_with(
        config,
        files(vec![a_files]),
        table(vec![secure, app("b", &["b.test"], &[backend.addr])]),
    )
    .await;
    let port = router.tls_addr.port();

    let get = raw(
        router.addr,
        "GET /cart?id=1 HTTP/1.1\r\nhost: A.test:8080\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&get), 301, "{get}");
    assert!(
        get.contains(&format!("location: https://a.test:{port}/cart?id=1\r\n")),
        "{get}"
    );
    for (request, status, why) in [
        (
            "POST /cart HTTP/1.1\r\nhost: a.test\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi",
            308,
            "method and body kept",
        ),
        (
            "GET /.well-known/acme-challenge/token HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n",
            200,
            "ACME http-01 served over plain HTTP",
        ),
        (
            "GET / HTTP/1.1\r\nhost: b.test\r\nconnection: close\r\n\r\n",
            200,
            "apps without the setting",
        ),
        // A client's claim to have used HTTPS changes nothing…
        (
            "GET / HTTP/1.1\r\nhost: a.test\r\nx-forwarded-proto: https\r\nconnection: close\r\n\r\n",
            301,
            "a client's X-Forwarded-Proto",
        ),
    ] {
        let answer = raw(router.addr, request).await;
        assert_eq!(raw_status(&answer), status, "{why}: {answer}");
    }
    // …a trusted proxy's does: it terminated TLS in front.
    let mut proxy = connect_from([127, 0, 0, 2], router.addr)
        .await
        .expect("connect");
    proxy
        .write_all(b"GET / HTTP/1.1\r\nhost: a.test\r\nx-forwarded-proto: https\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    proxy.read_to_string(&mut answer).await.expect("read");
    assert_eq!(raw_status(&answer), 200, "{answer}");

    assert_eq!(
        router.https_status(&ca, "a.test", "/").await,
        200,
        "over TLS: served"
    );
    // A client following the redirect ends up served over HTTPS.
    let follows = router.client(&ca, "a.test");
    let resp = follows
        .get(format!("http://a.test:{}/", router.addr.port()))
        .send()
        .await
        .expect("served");
    assert_eq!(resp.url().scheme(), "https");
    assert_eq!(resp.status(), 200);
}

// The handshake callback's `Result` is tungstenite's, large error and all.
#[allow(clippy::result_large_err)]
#[tokio::test]
async fn websockets_pass_over_tls() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
    use tokio_tungstenite::tungstenite::Message;

    // An echo backend that reports the X-Forwarded-Proto it was opened with.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let echo = listener.local_addr().expect("addr");
    let (proto_tx, proto_rx) = tokio::sync::oneshot::channel::<String>();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let mut proto_tx = Some(proto_tx);
        let mut ws =
            tokio_tungstenite::accept_hdr_async(stream, |req: &Request, resp: Response| {
                let proto = req
                    .headers()
                    .get("x-forwarded-proto")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_string();
                if let Some(tx) = proto_tx.take() {
                    let _ = tx.send(proto);
                }
                Ok(resp)
            })
            .await
            .expect("backend handshake");
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_text() && ws.send(msg).await.is_err() {
                return;
            }
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let (a_files, _) = ca.write(dir.path(), "a", &["a.test"]);
    let router = TlsRouter::start(
        files(vec![a_files]),
        table(vec![app("a", &["a.test"], &[echo])]),
    )
    .await;
    let (tls, _) = handshake(router.tls_addr, Some("a.test"), &["http/1.1"])
        .await
        .expect("handshake");
    let req = "wss://a.test/chat".into_client_request().expect("request");
    let (mut ws, resp) = tokio_tungstenite::client_async(req, tls)
        .await
        .expect("WebSocket handshake over TLS");
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("hello")).await.expect("send");
    let back = tokio::time::timeout(DEADLINE, ws.next())
        .await
        .expect("echo in time")
        .expect("a message")
        .expect("no error");
    assert_eq!(back, Message::text("hello"));
    assert_eq!(proto_rx.await.expect("opened"), "https");
}
