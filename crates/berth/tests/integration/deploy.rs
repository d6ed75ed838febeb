//! The deploy path: source folder → build → release → live behind the router.

use std::path::Path;
use std::time::Duration;

use crate::kit::*;

#[test]
fn flask_app_deploys_redeploys_and_is_destroyed() {
    let berth = Berth::up();
    let src = berth.dir.path().join("src");
    copy_dir(&example("flask-hello"), &src);
    std::fs::write(src.join(".gitignore"), "ignored.txt\n").unwrap();
    std::fs::write(src.join("ignored.txt"), "not uploaded").unwrap();
    std::fs::write(src.join(".berthignore"), "also-ignored.txt\n").unwrap();
    std::fs::write(src.join("also-ignored.txt"), "not uploaded").unwrap();

    let out = berth.create_and_deploy("hello", &src);
    assert!(
        out.contains("Installing dependencies"),
        "build output is streamed: {out}"
    );
    assert!(out.contains("flask=="), "uv's own output is shown: {out}");
    assert!(
        out.contains(&format!(
            "v1 deployed to http://hello.localhost:{}/",
            berth.router_port
        )),
        "deploy ends with the URL: {out}"
    );

    let a = berth.get("hello.localhost", "/");
    assert_eq!(a.status, 200);
    assert!(a.body.contains("release v1"), "{}", a.body);
    assert!(a.headers.contains_key("x-request-id"));
    // The port Berth assigned reached the app through $PORT.
    let port = berth.get("hello.localhost", "/env/PORT").body;
    assert!(port.trim().parse::<u16>().is_ok(), "PORT={port}");
    assert_eq!(
        berth.get("hello.localhost", "/env/DYNO").body.trim(),
        "web.1"
    );

    // .gitignore and .berthignore are honoured when packing.
    let builds = berth.data_dir().join("builds/hello");
    let build = std::fs::read_dir(&builds)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(build.join("app/app.py").exists());
    assert!(!build.join("app/ignored.txt").exists());
    assert!(!build.join("app/also-ignored.txt").exists());

    let ps = berth.instances("hello");
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0]["process_type"], "web");
    assert_eq!(ps[0]["state"], "up");
    assert_eq!(ps[0]["release"], 1);
    let table = berth.ok(&["ps", "--app", "hello"]);
    assert!(table.contains("web.1") && table.contains("up"), "{table}");

    let apps = berth.json(&["apps", "list", "--json"]);
    assert_eq!(apps[0]["name"], "hello");
    assert_eq!(apps[0]["current_release"], 1);

    // A code-only change: a new release replaces the old one.
    let app_py = std::fs::read_to_string(src.join("app.py")).unwrap();
    std::fs::write(
        src.join("app.py"),
        app_py.replace("Hello from Berth!", "Hello again!"),
    )
    .unwrap();
    let out = berth.ok(&["deploy", src.to_str().unwrap(), "--app", "hello"]);
    assert!(out.contains("v2 deployed"), "{out}");
    // The router switches one watch round-trip after the deploy returns.
    wait_for("v2 to be served", Duration::from_secs(10), || {
        let a = berth.get("hello.localhost", "/");
        a.body.contains("Hello again! (release v2)").then_some(())
    });
    let releases = berth.json(&["releases", "--app", "hello", "--json"]);
    assert_eq!(releases[0]["version"], 2);
    assert_eq!(releases[0]["status"], "live");
    assert_eq!(releases[1]["status"], "superseded");
    // The old release's process goes away once the new one is up.
    wait_for("v1 to stop", Duration::from_secs(30), || {
        let ps = berth.instances("hello");
        (ps.len() == 1 && ps[0]["release"] == 2).then_some(())
    });

    // Logs hold build output, app output and router access lines.
    let logs = berth.ok(&["logs", "--app", "hello", "-n", "1000"]);
    for needle in ["build: ", "web.1: ", "router: method=GET", "status=200"] {
        assert!(logs.contains(needle), "logs lack {needle:?}:\n{logs}");
    }
    let only_router = berth.ok(&["logs", "--app", "hello", "-n", "1000", "--source", "router"]);
    assert!(
        only_router.lines().all(|l| l.contains(" router: ")),
        "{only_router}"
    );

    // Custom domains route to the app too.
    berth.ok(&["domains", "add", "www.example.test", "--app", "hello"]);
    wait_for(
        "the custom domain to route",
        Duration::from_secs(10),
        || (berth.get("www.example.test", "/").status == 200).then_some(()),
    );

    let refused = berth.fails(&["apps", "destroy", "hello"]);
    assert!(refused.contains("--confirm hello"), "{refused}");
    berth.ok(&["apps", "destroy", "hello", "--confirm", "hello"]);
    // Routers learn of the destroy through their watch, within moments.
    wait_for(
        "the destroyed app to stop being routed",
        Duration::from_secs(10),
        || (berth.get("hello.localhost", "/").status == 404).then_some(()),
    );
    let pid = ps[0]["pid"].as_u64().unwrap();
    wait_for("the app process to stop", Duration::from_secs(30), || {
        (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    });
}

#[test]
fn django_project_runs_migrations_and_serves_static_files_from_the_router() {
    let berth = Berth::up();
    let out = berth.create_and_deploy("site", &example("django-hello"));
    assert!(out.contains("collectstatic"), "{out}");
    assert!(
        out.contains("Applying greetings.0001_initial"),
        "release phase output: {out}"
    );

    // The view writes a row: the migration of the release phase ran.
    let a = berth.get("site.localhost", "/");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("greetings=1"), "{}", a.body);

    // The router serves collected static files itself, with validators.
    let css = berth.get("site.localhost", "/static/greetings/hello.css");
    assert_eq!(css.status, 200);
    assert!(css.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    assert!(css.body.contains("body"), "{}", css.body);
    assert!(!css.headers.contains_key("server"), "not from gunicorn");
    let etag = css.headers["etag"].to_str().unwrap().to_string();
    assert!(css.headers.contains_key("last-modified"));
    let again = berth.request(
        "GET",
        "site.localhost",
        "/static/greetings/hello.css",
        &[("if-none-match", &etag)],
    );
    assert_eq!(again.status, 304);
    // Nothing of the static request reached the app.
    let logs = berth.ok(&["logs", "--app", "site", "-n", "1000", "--source", "web.1"]);
    assert!(!logs.contains("hello.css"), "{logs}");
}

#[test]
fn fastapi_project_with_uv_lock_deploys() {
    let berth = Berth::up();
    let out = berth.create_and_deploy("fast", &example("fastapi-hello"));
    assert!(out.contains("uv.lock"), "{out}");
    let a = berth.get("fast.localhost", "/");
    assert_eq!(a.status, 200);
    assert!(a.body.contains("fastapi"), "{}", a.body);
}

#[test]
fn up_help_shows_addresses_and_their_environment_variables() {
    let out = std::process::Command::new(BERTH)
        .args(["up", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--data-dir",
        "BERTH_DATA_DIR",
        "--api-listen",
        "BERTH_API_LISTEN",
        "127.0.0.1:7070",
        "--http-listen",
        "BERTH_HTTP_LISTEN",
        "127.0.0.1:8080",
    ] {
        assert!(
            help.contains(needle),
            "`berth up --help` lacks {needle}:\n{help}"
        );
    }
}
