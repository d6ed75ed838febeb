//! HTTPS in the `berth` binary: `berth up --listen-tls --certs DIR` (a
//! certbot-style directory, which may start empty) and `berth router
//! --config FILE` (`--check`; TLS flags refused: HTTPS is set in the file).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::kit::*;

/// A CA and, under `live/NAME/`, a certificate for each name it signs.
struct Certs {
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Certs {
    fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        Self {
            ca: rcgen::CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    /// `live/NAME/fullchain.pem` and `privkey.pem` for `name`.
    fn put(&self, live: &Path, name: &str) {
        let dir = live.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, &self.ca)
            .unwrap();
        std::fs::write(dir.join("fullchain.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("privkey.pem"), key.serialize_pem()).unwrap();
    }

    fn client(&self, name: &str, port: u16) -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .no_proxy()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_der(self.ca.der()).unwrap())
            .resolve(name, ([127, 0, 0, 1], port).into())
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    }
}

/// The port of the HTTPS listener `berth up` printed.
fn https_port(berth: &Berth) -> u16 {
    wait_for("the HTTPS address", Duration::from_secs(10), || {
        let log = berth.log();
        let line = log.lines().find(|l| l.trim_start().starts_with("HTTPS:"))?;
        line.split("127.0.0.1:")
            .nth(1)?
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    })
}

#[test]
fn berth_up_serves_https_with_certificates_from_a_directory() {
    let certs_dir = tempfile::tempdir().unwrap();
    let live = certs_dir.path().join("live");
    let certs = Certs::new();
    certs.put(&live, "shop.example");
    let berth = Berth::up_with(&[
        "--listen-tls",
        "127.0.0.1:0",
        "--certs",
        live.to_str().unwrap(),
    ]);
    let port = https_port(&berth);
    // A verified handshake for the name, and the router's own answer for
    // a host no app has.
    let resp = certs
        .client("shop.example", port)
        .get(format!("https://shop.example:{port}/"))
        .send()
        .unwrap_or_else(|e| panic!("HTTPS: {e:?}\n{}", berth.log()));
    assert_eq!(resp.status(), 404);
}

#[test]
fn router_check_names_a_certificate_that_does_not_fit_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::new();
    certs.put(dir.path(), "a.example");
    certs.put(dir.path(), "b.example");
    let config = dir.path().join("router.toml");
    let write = |key: &str| {
        std::fs::write(
            &config,
            format!(
                "listen_tls = \"127.0.0.1:0\"\n[[certificates]]\ncert = \"a.example/fullchain.pem\"\nkey = \"{key}\"\n"
            ),
        )
        .unwrap()
    };
    write("a.example/privkey.pem");
    let ok = Command::new(BERTH)
        .args(["router", "--check", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains("a.example"));

    write("b.example/privkey.pem");
    let bad = Command::new(BERTH)
        .args(["router", "--check", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("b.example/privkey.pem does not belong to certificate"),
        "{err}"
    );
}

#[test]
fn berth_up_starts_https_before_the_first_certificate() {
    // A fresh host: certbot's directory is there but empty until the first
    // certificate is fetched through the router's plain HTTP.
    let certs_dir = tempfile::tempdir().unwrap();
    let live = certs_dir.path().join("live");
    std::fs::create_dir(&live).unwrap();
    let berth = Berth::up_with(&[
        "--listen-tls",
        "127.0.0.1:0",
        "--certs",
        live.to_str().unwrap(),
        "--https-port",
        "443",
    ]);
    let port = https_port(&berth);
    let certs = Certs::new();
    let client = certs.client("shop.example", port);
    let url = format!("https://shop.example:{port}/");
    assert!(client.get(&url).send().is_err(), "no certificate yet");
    certs.put(&live, "shop.example");
    let status = wait_for(
        "the first certificate served",
        Duration::from_secs(10),
        || client.get(&url).send().ok().map(|r| r.status()),
    );
    assert_eq!(status, 404, "the router's own answer, over HTTPS");
}

#[test]
fn router_with_a_config_file_refuses_tls_flags() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("router.toml");
    std::fs::write(&config, "").unwrap();
    for flags in [
        &[
            "--listen-tls",
            "127.0.0.1:0",
            "--certs",
            "/etc/letsencrypt/live",
        ][..],
        &["--https-port", "443"][..],
    ] {
        let out = Command::new(BERTH)
            // --check: without the refusal it would say OK and exit.
            .args(["router", "--check", "--config", config.to_str().unwrap()])
            .args(flags)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flags:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("cannot be used with") && err.contains(flags[0]),
            "{err}"
        );
    }
}

#[test]
fn router_file_reloads_its_certificate_list_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::new();
    certs.put(dir.path(), "a.example");
    certs.put(dir.path(), "b.example");
    let config = |names: &[&str]| {
        let mut text = String::from("listen = \"127.0.0.1:0\"\nlisten_tls = \"127.0.0.1:0\"\n");
        for name in names {
            let sub = dir.path().join(name);
            text += &format!(
                "[[certificates]]\ncert = \"{}\"\nkey = \"{}\"\n",
                sub.join("fullchain.pem").display(),
                sub.join("privkey.pem").display()
            );
        }
        text
    };
    let router = StandaloneRouter::start(&config(&["a.example"]));
    let port: u16 = wait_for("the HTTPS address", Duration::from_secs(10), || {
        router
            .log()
            .split("listening on https://127.0.0.1:")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    });
    let client = certs.client("b.example", port);
    let url = format!("https://b.example:{port}/");
    assert!(
        client.get(&url).send().is_err(),
        "b.example is served a.example's certificate until the file names its own"
    );
    router.write_config(&config(&["a.example", "b.example"]));
    let status = wait_for(
        "b.example's certificate served",
        Duration::from_secs(10),
        || client.get(&url).send().ok().map(|r| r.status()),
    );
    assert_eq!(status, 404, "the router's own answer, over HTTPS");
}
