//! The standalone file's certificate list reloaded under traffic:
//! `[[certificates]]` entries added and removed, `certificates_dir` moved,
//! a broken entry refusing the whole reload, `listen_tls` needing a
//! restart. Connections open across a reload keep working.

use std::net::SocketAddr;

use crate::certs::*;
use crate::util::*;

/// A router file: HTTPS at `listen_tls` with the certificates `stems`
/// (`STEM.pem` and `STEM.key` next to the file, the first the default),
/// and one app per `(host, backend)`.
fn file(listen_tls: &str, stems: &[&str], apps: &[(&str, SocketAddr)]) -> String {
    let mut text = format!("listen_tls = \"{listen_tls}\"\n");
    for stem in stems {
        text += &format!("[[certificates]]\ncert = \"{stem}.pem\"\nkey = \"{stem}.key\"\n");
    }
    for (i, (host, backend)) in apps.iter().enumerate() {
        text += &format!(
            "[[apps]]\nname = \"app{i}\"\nhosts = [\"{host}\"]\nbackends = [\"{backend}\"]\n"
        );
    }
    text
}

#[tokio::test]
async fn a_certificate_added_to_the_file_is_served_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let (_, a) = ca.write(dir.path(), "a", &["a.test"]);
    let (b_files, b) = ca.write(dir.path(), "b", &["b.test"]);
    let one = Backend::start("one").await;
    let two = Backend::start("two").await;
    let router = FileRouter::start(
        dir.path(),
        &file("127.0.0.1:0", &["a"], &[("a.test", one.addr)]),
    )
    .await;
    assert_eq!(
        served_cert(router.tls_addr, Some("b.test")).await,
        a.der,
        "not in the file yet: the default"
    );
    let (mut before, _) = handshake(router.tls_addr, Some("a.test"), &[])
        .await
        .expect("TLS handshake");
    assert!(get_over(&mut before, "a.test")
        .await
        .starts_with("HTTP/1.1 200"));

    router.write(&file(
        "127.0.0.1:0",
        &["a", "b"],
        &[("a.test", one.addr), ("b.test", two.addr)],
    ));
    eventually("b.test's certificate served", || async {
        served_cert(router.tls_addr, Some("b.test")).await == b.der
    })
    .await;
    // The site is whole: a client checking the name reaches its app.
    let resp = resolving(ca.client_builder(), &["b.test"], router.tls_addr)
        .get(format!("https://b.test:{}/", router.tls_addr.port()))
        .send()
        .await
        .expect("HTTPS to the new site");
    assert_eq!(resp.text().await.expect("body"), "two");
    assert_eq!(served_cert(router.tls_addr, Some("a.test")).await, a.der);
    assert!(
        get_over(&mut before, "a.test")
            .await
            .starts_with("HTTP/1.1 200"),
        "a connection from before the reload keeps working"
    );

    // The new certificate's files are watched as the others are.
    let renewed = ca.leaf(&["b.test"]);
    write_leaf(&b_files, &renewed);
    eventually("b.test's renewal served", || async {
        served_cert(router.tls_addr, Some("b.test")).await == renewed.der
    })
    .await;
}

#[tokio::test]
async fn a_certificate_removed_from_the_file_falls_back_to_the_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let (_, a) = ca.write(dir.path(), "a", &["a.test"]);
    let (_, b) = ca.write(dir.path(), "b", &["b.test"]);
    let router = FileRouter::start(dir.path(), &file("127.0.0.1:0", &["a", "b"], &[])).await;
    assert_eq!(served_cert(router.tls_addr, Some("b.test")).await, b.der);

    router.write(&file("127.0.0.1:0", &["a"], &[]));
    eventually("b.test on the default certificate", || async {
        served_cert(router.tls_addr, Some("b.test")).await == a.der
    })
    .await;
}

#[tokio::test]
async fn a_moved_certificates_dir_is_served_from_its_new_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    for (live, name) in [("old", "a.test"), ("new", "b.test")] {
        let sub = dir.path().join(live).join(name);
        std::fs::create_dir_all(&sub).expect("mkdir");
        write_leaf(
            &berth_router::tls::CertFiles {
                cert: sub.join("fullchain.pem"),
                key: sub.join("privkey.pem"),
            },
            &ca.leaf(&[name]),
        );
    }
    let text =
        |live: &str| format!("listen_tls = \"127.0.0.1:0\"\ncertificates_dir = \"{live}\"\n");
    let router = FileRouter::start(dir.path(), &text("old")).await;
    let a = served_cert(router.tls_addr, Some("a.test")).await;

    router.write(&text("new"));
    eventually("the new directory served", || async {
        let b = served_cert(router.tls_addr, Some("b.test")).await;
        b != a && served_cert(router.tls_addr, Some("a.test")).await == b
    })
    .await;
}

#[tokio::test]
async fn a_reload_naming_a_broken_certificate_changes_nothing() {
    let logs = Logs::capture();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let (_, a) = ca.write(dir.path(), "a", &["a.test"]);
    let (_, b) = ca.write(dir.path(), "b", &["b.test"]);
    let one = Backend::start("one").await;
    let two = Backend::start("two").await;
    let router = FileRouter::start(
        dir.path(),
        &file("127.0.0.1:0", &["a", "b"], &[("a.test", one.addr)]),
    )
    .await;

    // b dropped, c added before its files exist, and a.test moved to
    // another backend: none of it may happen.
    let broken = file("127.0.0.1:0", &["a", "c"], &[("a.test", two.addr)]);
    let missing = dir.path().join("c.pem");
    let line = 1 + broken
        .lines()
        .position(|l| l == "cert = \"c.pem\"")
        .expect("c's line");
    router.write(&broken);
    let refusal = format!("line {line}: cannot read {}", missing.display());
    eventually("the reload refused, naming the line and file", || async {
        logs.text().contains(&refusal)
    })
    .await;
    assert_eq!(router.text("a.test").await, "one", "routes kept");
    assert_eq!(served_cert(router.tls_addr, Some("b.test")).await, b.der);
    assert_eq!(served_cert(router.tls_addr, Some("a.test")).await, a.der);

    // Once the files are in place, saving the file again applies it all.
    let (_, c) = ca.write(dir.path(), "c", &["c.test"]);
    router.write(&broken);
    eventually("the reload applied", || async {
        served_cert(router.tls_addr, Some("c.test")).await == c.der
            && router.text("a.test").await == "two"
    })
    .await;
    assert_eq!(served_cert(router.tls_addr, Some("b.test")).await, a.der);
}

#[tokio::test]
async fn moving_listen_tls_needs_a_restart_and_the_rest_is_applied() {
    let logs = Logs::capture();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    ca.write(dir.path(), "a", &["a.test"]);
    let (_, b) = ca.write(dir.path(), "b", &["b.test"]);
    let router = FileRouter::start(dir.path(), &file("127.0.0.1:0", &["a"], &[])).await;

    router.write(&file("127.0.0.1:8443", &["a", "b"], &[]));
    eventually("the new certificate served where HTTPS is", || async {
        served_cert(router.tls_addr, Some("b.test")).await == b.der
    })
    .await;
    let warning = "listen_tls changed from 127.0.0.1:0 to 127.0.0.1:8443: restart the router";
    eventually("the restart asked for", || async {
        logs.text().contains(warning)
    })
    .await;
    assert!(logs.text().contains(" WARN "), "{}", logs.text());
}
