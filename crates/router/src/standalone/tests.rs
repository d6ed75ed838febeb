use std::io::Write;

use super::*;

fn problems(text: &str) -> Vec<String> {
    match parse(text, Path::new("/nonexistent")) {
        Ok(c) => panic!("expected problems, got {c:?}"),
        Err(Problems::Invalid(p)) => p,
        Err(Problems::Syntax(s)) => panic!("expected validation problems, got syntax error {s}"),
    }
}

#[test]
fn a_good_file() {
    let text = r#"
listen = "127.0.0.1:9090"
threads = 2

[[apps]]
name = "bench"
hosts = ["Bench.Localhost."]
backends = ["127.0.0.1:19001", "127.0.0.1:19002"]
balance = "round_robin"
"#;
    let Ok(c) = parse(text, Path::new("/")) else {
        panic!("valid file refused")
    };
    assert_eq!(c.listen, "127.0.0.1:9090".parse().expect("addr"));
    assert_eq!(c.threads, 2);
    let table = c.to_route_table(7);
    assert_eq!(table.revision, 7);
    assert_eq!(table.apps[0].hosts, ["bench.localhost"]);
    assert_eq!(table.apps[0].settings.routing.balance, Balance::RoundRobin);
    assert_eq!(table.apps[0].backends[1].addr, "127.0.0.1:19002");
}

#[test]
fn every_problem_is_listed_with_its_line() {
    let text = r#"listen = "nowhere"
threads = 0

[[apps]]
name = "Bad_Name"
hosts = []
backends = ["localhost"]

[[apps]]
name = "shop"
hosts = ["shop.localhost"]
backends = ["127.0.0.1:1"]
static_dir = "does-not-exist"

[[apps]]
name = "shop2"
hosts = ["SHOP.localhost", "bad host"]
backends = ["127.0.0.1:2", "127.0.0.1"]
static_prefix = "static"
"#;
    let p = problems(text);
    let all = p.join("\n");
    let expect = [
        ("line 1:", "listen \"nowhere\""),
        ("line 2:", "threads = 0"),
        ("line 5:", "invalid app name \"Bad_Name\""),
        ("line 4:", "app \"Bad_Name\" has no hosts"),
        ("line 7:", "backend \"localhost\" is not an address"),
        ("line 13:", "static_dir"),
        ("line 17:", "host \"shop.localhost\" of app \"shop2\" is already claimed by app \"shop\" on line 11"),
        ("line 17:", "invalid domain \"bad host\""),
        ("line 18:", "backend \"127.0.0.1\" is not an address"),
        ("line 19:", "static_prefix needs static_dir"),
    ];
    for (line, what) in expect {
        assert!(
            p.iter().any(|x| x.starts_with(line) && x.contains(what)),
            "missing {line} {what} in:\n{all}"
        );
    }
    assert_eq!(p.len(), expect.len(), "{all}");
}

#[test]
fn unknown_fields_and_syntax_errors_name_the_line() {
    for (text, line, what) in [
        (
            "listen = \"127.0.0.1:1\"\n[[apps]]\nname = \"a1\"\nhost = [\"x\"]\n",
            4,
            "unknown field `host`",
        ),
        (
            "[[apps]]\nname = \"ab\"\nbalance = \"fastest\"\n",
            3,
            "fastest",
        ),
        ("listen = \n", 1, ""),
    ] {
        match parse(text, Path::new("/")) {
            Err(Problems::Syntax(msg)) => {
                assert!(msg.contains(&format!("line {line}")), "{msg}");
                assert!(msg.contains(what), "{msg}");
            }
            _ => panic!("{text:?} should be a syntax error"),
        }
    }
}

#[test]
fn load_reports_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("router.toml");
    let mut f = std::fs::File::create(&path).expect("create");
    writeln!(f, "[[apps]]\nname = \"x\"\nhosts = [\"x.localhost\"]").expect("write");
    let err = load(&path).expect_err("bad name");
    let msg = err.to_string();
    assert!(msg.contains("router.toml"), "{msg}");
    assert!(
        msg.contains("1 problem(s)") && msg.contains("line 2:"),
        "{msg}"
    );

    let missing = load(&dir.path().join("nope.toml")).expect_err("missing");
    assert!(matches!(missing, ConfigError::Read { .. }));
}

#[test]
fn relative_static_dir_is_next_to_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("public")).expect("mkdir");
    let path = dir.path().join("router.toml");
    std::fs::write(
        &path,
        "[[apps]]\nname = \"site\"\nhosts = [\"site.localhost\"]\nstatic_dir = \"public\"\n",
    )
    .expect("write");
    let c = load(&path).expect("valid");
    let sf = c.apps[0].static_files.clone().expect("static files");
    assert_eq!(sf.url_prefix, "/static/");
    assert_eq!(Path::new(&sf.dir), dir.path().join("public"));
}

#[tokio::test]
async fn an_invalid_file_keeps_the_last_good_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("router.toml");
    let good =
        "[[apps]]\nname = \"one\"\nhosts = [\"one.localhost\"]\nbackends = [\"127.0.0.1:1\"]\n";
    std::fs::write(&path, good).expect("write");
    let routes = Routes::new();
    let mut w = reload::FileWatcher::new(path.clone(), routes.clone().into());

    assert!(matches!(w.check().await, reload::Checked::Applied));
    assert_eq!(routes.revision(), 1);
    assert!(matches!(w.check().await, reload::Checked::Unchanged));

    std::fs::write(
        &path,
        "[[apps]]\nname = \"one\"\nhosts = [\"one.localhost\"]\nbackends = [\"nope\"]\n",
    )
    .expect("write");
    assert!(matches!(w.check().await, reload::Checked::Invalid));
    assert_eq!(routes.revision(), 1, "table untouched");
    assert!(routes.load().app("one.localhost").is_some());
    assert!(
        matches!(w.check().await, reload::Checked::Unchanged),
        "an invalid file is reported once"
    );

    std::fs::remove_file(&path).expect("rm");
    assert!(matches!(w.check().await, reload::Checked::Invalid));
    assert!(matches!(w.check().await, reload::Checked::Unchanged));
    assert!(routes.load().app("one.localhost").is_some());
}

#[test]
fn limits_are_read_per_app_and_router_wide() {
    let text = r#"
max_connections = 100
max_connections_per_ip = 10
header_read_timeout = "5s"
body_read_timeout = "500ms"
max_body = 2048
trusted_proxies = ["10.0.0.0/8", "::1"]
stats_listen = "127.0.0.1:8404"

[[apps]]
name = "shop"
hosts = ["shop.localhost"]
backends = ["127.0.0.1:1"]
max_body = "10MB"
rate_limit = "100/s"

[[apps]]
name = "blog"
hosts = ["blog.localhost"]
backends = ["127.0.0.1:2"]
"#;
    let Ok(c) = parse(text, Path::new("/")) else {
        panic!("valid file refused")
    };
    assert_eq!(c.apps[0].settings.routing.max_body, Some(10 << 20));
    assert_eq!(
        c.apps[0].settings.routing.rate_limit.map(|r| r.to_string()),
        Some("100/s".into())
    );
    assert_eq!(c.apps[1].settings, berth_model::RouteSettings::default());
    let rc = c.router_config(RouterConfig::default());
    assert_eq!(rc.max_connections, 100);
    assert_eq!(rc.max_connections_per_ip, 10);
    assert_eq!(rc.header_read_timeout, Duration::from_secs(5));
    assert_eq!(rc.body_read_timeout, Duration::from_millis(500));
    assert_eq!(rc.max_body_bytes, 2048);
    assert_eq!(
        rc.stats_listen,
        Some("127.0.0.1:8404".parse().expect("addr"))
    );
    assert!(rc.trusted_proxies.contains("10.1.2.3".parse().expect("ip")));
    assert!(!rc.trusted_proxies.contains("11.1.2.3".parse().expect("ip")));

    let routes = Routes::new();
    c.apply(&routes);
    let t = routes.load();
    let shop = t.app("shop.localhost").expect("routed");
    assert_eq!(shop.max_body, Some(10 << 20));
    assert!(shop.limiter.is_some());
    assert!(t.app("blog.localhost").expect("routed").limiter.is_none());
}

#[test]
fn bad_limits_name_their_line() {
    let text = r#"max_connections = 0
header_read_timeout = "soon"
max_body = "lots"
trusted_proxies = ["10.0.0.0/40"]

[[apps]]
name = "shop"
hosts = ["shop.localhost"]
backends = ["127.0.0.1:1"]
max_body = "10XB"
rate_limit = "100/day"
"#;
    let p = problems(text);
    assert_eq!(p.len(), 6, "{p:#?}");
    assert!(p[0].starts_with("line 1: max_connections = 0"), "{p:#?}");
    assert!(
        p[1].starts_with("line 2: header_read_timeout \"soon\""),
        "{p:#?}"
    );
    assert!(p[2].starts_with("line 3: max_body \"lots\""), "{p:#?}");
    assert!(p[3].starts_with("line 4: trusted_proxies"), "{p:#?}");
    assert!(
        p.iter()
            .any(|l| l.starts_with("line 10: app \"shop\": max_body \"10XB\"")),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|l| l.starts_with("line 11: app \"shop\": rate \"100/day\"")),
        "{p:#?}"
    );
}

#[test]
fn health_checks_take_a_path_or_a_table_and_bad_ones_name_their_line() {
    let text = r#"
[[apps]]
name = "shop"
hosts = ["shop.localhost"]
health_check = "/healthz"

[[apps]]
name = "blog"
hosts = ["blog.localhost"]
health_check = { path = "/up", interval = "2s", timeout = "500ms", rise = 1, fall = 5 }
"#;
    let Ok(c) = parse(text, Path::new("/")) else {
        panic!("valid file refused")
    };
    assert_eq!(
        c.apps[0].settings.health_check,
        Some(berth_model::HealthCheck::new("/healthz"))
    );
    let blog = c.apps[1].settings.health_check.clone().expect("check");
    assert_eq!(
        (
            blog.path.as_str(),
            blog.interval_ms,
            blog.timeout_ms,
            blog.rise,
            blog.fall
        ),
        ("/up", 2000, 500, 1, 5)
    );

    let bad = r#"[[apps]]
name = "shop"
hosts = ["shop.localhost"]
health_check = "healthz"

[[apps]]
name = "blog"
hosts = ["blog.localhost"]
health_check = { path = "/up", interval = "1s", timeout = "3s" }
"#;
    let p = problems(bad);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(
        p[0].starts_with(
            "line 4: app \"shop\": health_check: health check path \"healthz\" must start with /"
        ),
        "{p:#?}"
    );
    assert!(
        p[1].starts_with("line 9: app \"blog\": health_check: the health check timeout (3000ms)"),
        "{p:#?}"
    );
}

#[test]
fn websocket_timeouts_are_read_and_checked() {
    let text = "websocket_idle_timeout = \"2h\"\nwebsocket_grace = \"5s\"\n";
    let Ok(c) = parse(text, Path::new("/")) else {
        panic!("valid file refused")
    };
    let rc = c.router_config(RouterConfig::default());
    assert_eq!(rc.websocket_idle_timeout, Duration::from_secs(7200));
    assert_eq!(rc.websocket_grace, Duration::from_secs(5));
    let defaults = parse("", Path::new("/"))
        .map(|c| c.router_config(RouterConfig::default()))
        .map_err(|_| "empty file refused");
    assert_eq!(
        defaults.map(|rc| (rc.websocket_idle_timeout, rc.websocket_grace)),
        Ok((Duration::from_secs(3600), Duration::from_secs(30)))
    );

    let Err(Problems::Invalid(problems)) =
        parse("\nwebsocket_grace = \"a while\"\n", Path::new("/"))
    else {
        panic!("bad grace accepted")
    };
    assert_eq!(
        problems,
        ["line 2: websocket_grace \"a while\" is not a duration like \"20s\" or \"500ms\""]
    );
}

#[test]
fn tls_settings_with_paths_next_to_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("live")).expect("mkdir");
    let text = r#"
listen_tls = "127.0.0.1:8443"
certificates_dir = "live"
http2 = false
[[certificates]]
cert = "a.pem"
key = "/etc/keys/a.key"
[[apps]]
name = "shop"
hosts = ["shop.example"]
redirect_https = true
"#;
    let c = match parse(text, dir.path()) {
        Ok(c) => c,
        Err(Problems::Invalid(p)) => panic!("{p:?}"),
        Err(Problems::Syntax(s)) => panic!("{s}"),
    };
    let tls = c.tls.clone().expect("tls");
    assert_eq!(tls.listen, "127.0.0.1:8443".parse().expect("addr"));
    assert_eq!(tls.certificates.dir, Some(dir.path().join("live")));
    assert_eq!(tls.certificates.files[0].cert, dir.path().join("a.pem"));
    assert_eq!(tls.certificates.files[0].key, Path::new("/etc/keys/a.key"));
    assert!(!c.router_config(RouterConfig::default()).http2);
    assert!(c.to_route_table(1).apps[0].settings.routing.redirect_https);
    let plain = parse("", dir.path()).ok().expect("empty file is valid");
    assert!(plain.tls.is_none());
}

#[test]
fn https_port_is_where_redirects_point() {
    let c = parse("https_port = 443\n", Path::new("/"))
        .ok()
        .expect("valid file");
    assert_eq!(
        c.router_config(RouterConfig::default()).https_port,
        Some(443)
    );
    let p = problems("\nhttps_port = 0\n");
    assert!(p[0].starts_with("line 2: https_port = 0"), "{p:?}");
    let p = match parse("https_port = 70000\n", Path::new("/")) {
        Err(Problems::Syntax(s)) => s,
        Err(Problems::Invalid(p)) => panic!("{p:?}"),
        Ok(_) => panic!("a port out of range is refused"),
    };
    assert!(p.contains("https_port"), "{p}");
}

#[test]
fn tls_mistakes_name_their_line() {
    let p = problems("listen_tls = \"127.0.0.1:8443\"\n");
    assert!(
        p[0].starts_with("line 1: listen_tls needs certificates"),
        "{p:?}"
    );
    let p = problems("listen_tls = \"nowhere\"\n[[certificates]]\ncert = \"a\"\nkey = \"b\"\n");
    assert!(p[0].starts_with("line 1: listen_tls \"nowhere\""), "{p:?}");
    let p = problems("\n[[certificates]]\ncert = \"a\"\nkey = \"b\"\n");
    assert!(p[0].contains("without listen_tls"), "{p:?}");
    let p = problems("listen_tls = \"127.0.0.1:1\"\ncertificates_dir = \"nope\"\n");
    assert!(p[0].starts_with("line 2: certificates_dir"), "{p:?}");
}

#[test]
fn a_typo_in_a_health_check_table_is_named() {
    let p = problems(
        "[[apps]]\nname = \"shop\"\nhosts = [\"shop.localhost\"]\nhealth_check = { path = \"/up\", intervall = \"2s\" }\n",
    );
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0].starts_with("line 4: app \"shop\": health_check:"),
        "{p:#?}"
    );
    assert!(p[0].contains("intervall"), "names the key: {p:#?}");
    let p = problems("[[apps]]\nname = \"shop\"\nhosts = [\"shop.localhost\"]\nhealth_check = 5\n");
    assert!(p[0].contains("use a path"), "{p:#?}");
}

#[test]
fn certificates_that_cannot_be_served_name_their_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str| {
        let cert = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("cert");
        std::fs::write(dir.path().join(format!("{name}.pem")), cert.cert.pem()).expect("write");
        std::fs::write(
            dir.path().join(format!("{name}.key")),
            cert.signing_key.serialize_pem(),
        )
        .expect("write");
    };
    write("a.test");
    write("b.test");
    let live = dir.path().join("live");
    std::fs::create_dir_all(live.join("c.test")).expect("mkdir");
    std::fs::write(live.join("c.test/fullchain.pem"), "not PEM").expect("write");
    let path = dir.path().join("router.toml");
    std::fs::write(
        &path,
        r#"listen_tls = "127.0.0.1:8443"
certificates_dir = "live"
[[certificates]]
cert = "a.test.pem"
key = "a.test.key"
[[certificates]]
cert = "a.test.pem"
key = "b.test.key"
"#,
    )
    .expect("write");
    let config = load(&path).expect("the file itself is valid");
    let tls = config.tls.expect("tls");
    let err = match tls.load_certificates(&path) {
        Ok(_) => panic!("broken certificates loaded"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(
        err.contains("line 7: private key") && err.contains("b.test.key does not belong"),
        "the entry's line: {err}"
    );
    assert!(
        err.contains("line 2: ") && err.contains("c.test/privkey.pem"),
        "the directory's line: {err}"
    );
}

#[tokio::test]
async fn https_added_to_the_file_waits_for_a_restart_but_its_certificates_are_checked_now() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("router.toml");
    let app =
        "[[apps]]\nname = \"one\"\nhosts = [\"one.localhost\"]\nbackends = [\"127.0.0.1:1\"]\n";
    std::fs::write(&path, app).expect("write");
    let routes = Routes::new();
    let mut w = reload::FileWatcher::new(path.clone(), routes.clone().into());
    assert!(matches!(w.check().await, reload::Checked::Applied));

    let with_tls = format!(
        "listen_tls = \"127.0.0.1:8443\"\n[[certificates]]\ncert = \"a.pem\"\nkey = \"a.key\"\n{}",
        app.replace("one.localhost", "two.localhost")
    );
    std::fs::write(&path, &with_tls).expect("write");
    assert!(
        matches!(w.check().await, reload::Checked::Invalid),
        "a.pem is missing: the restart would fail on it"
    );
    assert!(routes.load().app("one.localhost").is_some(), "routes kept");

    let cert = rcgen::generate_simple_self_signed(vec!["a.test".to_string()]).expect("cert");
    std::fs::write(dir.path().join("a.pem"), cert.cert.pem()).expect("write");
    std::fs::write(dir.path().join("a.key"), cert.signing_key.serialize_pem()).expect("write");
    std::fs::write(&path, format!("# certificates in place\n{with_tls}")).expect("write");
    assert!(matches!(w.check().await, reload::Checked::Applied));
    assert!(routes.load().app("two.localhost").is_some());
}

#[test]
fn http2_flood_limit_is_set_or_turned_off() {
    let limit = |text: &str| {
        parse(text, Path::new("/"))
            .ok()
            .map(|c| c.router_config(RouterConfig::default()).http2_flood_limit)
    };
    assert_eq!(limit(""), Some(RouterConfig::default().http2_flood_limit));
    assert_eq!(limit("http2_flood_limit = 5000\n"), Some(5000));
    assert_eq!(limit("http2_flood_limit = 0\n"), Some(0));
    assert_eq!(limit("http2_flood_limit = -1\n"), None);
}
