//! Bad input gets a clear error and changes nothing.

use crate::kit::*;

/// A Berth with `hello` v1 (flask-hello) serving, and a copy of its source.
fn serving_hello() -> (Berth, std::path::PathBuf) {
    let berth = Berth::up_with(&["--max-source-size", "64KB"]);
    let src = berth.dir.path().join("src");
    copy_dir(&example("flask-hello"), &src);
    berth.create_and_deploy("hello", &src);
    (berth, src)
}

fn assert_v1_serves(berth: &Berth) {
    let a = berth.get("hello.localhost", "/");
    assert_eq!(a.status, 200);
    assert!(a.body.contains("release v1"), "{}", a.body);
    let apps = berth.json(&["apps", "list", "--json"]);
    assert_eq!(apps[0]["current_release"], 1);
}

#[test]
fn failed_builds_and_release_phases_leave_the_serving_release_alone() {
    let (berth, src) = serving_hello();
    let deploy =
        |dir: &std::path::Path| berth.fails(&["deploy", dir.to_str().unwrap(), "--app", "hello"]);

    // A requirement that does not exist: uv's own words reach the user.
    let broken = berth.dir.path().join("broken-reqs");
    copy_dir(&src, &broken);
    std::fs::write(
        broken.join("requirements.txt"),
        "flask\nflaskk-does-not-exist==99.0\n",
    )
    .unwrap();
    let out = deploy(&broken);
    assert!(out.contains("flaskk-does-not-exist"), "{out}");
    assert!(out.contains("build failed"), "{out}");
    assert!(out.contains("v1 keeps serving"), "{out}");
    assert_v1_serves(&berth);

    // No Procfile and not Django: the error shows a Procfile example.
    let no_procfile = berth.dir.path().join("no-procfile");
    copy_dir(&src, &no_procfile);
    std::fs::remove_file(no_procfile.join("Procfile")).unwrap();
    let out = deploy(&no_procfile);
    assert!(out.contains("Procfile"), "{out}");
    assert!(out.contains("web: gunicorn"), "{out}");
    assert_v1_serves(&berth);

    // A release command that fails aborts the release.
    let bad_release = berth.dir.path().join("bad-release");
    copy_dir(&src, &bad_release);
    let procfile = std::fs::read_to_string(src.join("Procfile")).unwrap();
    std::fs::write(
        bad_release.join("Procfile"),
        format!("{procfile}\nrelease: python -c \"print('migrating...'); raise SystemExit(3)\"\n"),
    )
    .unwrap();
    let out = deploy(&bad_release);
    assert!(
        out.contains("migrating..."),
        "release output is shown: {out}"
    );
    assert!(out.contains("exited with status 3"), "{out}");
    assert_v1_serves(&berth);
    let releases = berth.json(&["releases", "--app", "hello", "--json"]);
    assert_eq!(releases[0]["status"], "failed");
    assert_eq!(releases[1]["status"], "live");

    // An archive over the server's limit is refused before anything is built.
    let big = berth.dir.path().join("big");
    copy_dir(&src, &big);
    // Random bytes: they do not compress below the limit.
    let mut noise = vec![0u8; 200_000];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").unwrap(),
        &mut noise,
    )
    .unwrap();
    std::fs::write(big.join("data.bin"), noise).unwrap();
    let out = deploy(&big);
    assert!(
        out.contains(".gitignore"),
        "the error says how to fix it: {out}"
    );
    assert_v1_serves(&berth);
}

#[test]
fn unknown_apps_bad_names_and_bad_scales_are_refused() {
    let (berth, src) = serving_hello();
    let out = berth.fails(&["deploy", src.to_str().unwrap(), "--app", "nope"]);
    assert!(out.contains("no app named \"nope\""), "{out}");
    let out = berth.fails(&["ps", "--app", "nope"]);
    assert!(out.contains("berth apps create nope"), "{out}");
    let out = berth.fails(&["apps", "create", "Bad_Name"]);
    assert!(out.contains("invalid app name"), "{out}");
    let out = berth.fails(&["apps", "create", "hello"]);
    assert!(out.contains("already exists"), "{out}");
    let out = berth.fails(&["scale", "wrker=1", "--app", "hello"]);
    assert!(out.contains("no process type \"wrker\""), "{out}");
    let out = berth.fails(&["scale", "web=-1", "--app", "hello"]);
    assert!(out.contains("whole number"), "{out}");
    let out = berth.fails(&["deploy", "/does/not/exist", "--app", "hello"]);
    assert!(out.contains("not a folder"), "{out}");
    assert_v1_serves(&berth);
}

#[test]
fn bad_rollbacks_and_config_names_are_refused_and_change_nothing() {
    let (berth, _src) = serving_hello();
    let releases = || berth.json(&["releases", "--app", "hello", "--json"]);
    let before = releases();
    let out = berth.fails(&["rollback", "v99", "--app", "hello"]);
    assert!(out.contains("v99"), "{out}");
    let out = berth.fails(&["rollback", "latest", "--app", "hello"]);
    assert!(out.contains("v2"), "says what a version looks like: {out}");
    let out = berth.fails(&["config", "set", "1BAD=x", "--app", "hello"]);
    assert!(out.contains("1BAD"), "{out}");
    let out = berth.fails(&["config", "set", "NO_VALUE", "--app", "hello"]);
    assert!(out.contains("NAME=VALUE"), "{out}");
    let out = berth.fails(&["secrets", "set", "bad-name=x", "--app", "hello"]);
    assert!(out.contains("bad-name"), "{out}");
    let out = berth.fails(&["config", "unset", "NEVER_SET", "--app", "hello"]);
    assert!(out.contains("NEVER_SET"), "{out}");
    assert_eq!(releases(), before, "no release was made");
    let config = berth.ok(&["config", "--app", "hello", "--json"]);
    assert!(
        !config.contains("1BAD") && !config.contains("bad-name"),
        "{config}"
    );
    assert_v1_serves(&berth);
}

#[test]
fn the_api_refuses_requests_without_a_valid_token() {
    let berth = Berth::up();
    let config =
        std::fs::read_to_string(berth.dir.path().join("home/.config/berth/config.toml")).unwrap();
    let url = config
        .lines()
        .find_map(|l| l.strip_prefix("url = "))
        .unwrap()
        .trim_matches('"')
        .to_string();
    let out = berth
        .command()
        .args(["apps", "list"])
        .env("BERTH_TOKEN", "wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid API token"));

    // No config file and no token: the server says what is missing.
    let empty_home = berth.dir.path().join("empty-home");
    let out = berth
        .command()
        .args(["apps", "list"])
        .env("HOME", &empty_home)
        .env("BERTH_URL", &url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing API token"));

    // And nothing listens where no Berth runs: a clear hint, not a stack trace.
    let out = berth
        .command()
        .args(["apps", "list"])
        .env("HOME", &empty_home)
        .env("BERTH_URL", "http://127.0.0.1:9")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the Berth server") && err.contains("berth up"),
        "{err}"
    );
}
