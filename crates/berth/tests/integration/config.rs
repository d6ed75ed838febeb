//! Config vars, secrets, health checks and the builds kept for rollbacks.

use std::time::Duration;

use crate::kit::*;

const HOST: &str = "hello.localhost";

#[test]
fn secrets_reach_the_app_but_never_the_database_or_the_screen() {
    let mut berth = Berth::up();
    berth.create_and_deploy("hello", &example("flask-hello"));
    let secret = "s3cret-value-4242";
    let out = berth.ok(&[
        "secrets",
        "set",
        &format!("API_KEY={secret}"),
        "--app",
        "hello",
    ]);
    assert!(!out.contains(secret), "{out}");
    assert_eq!(berth.get(HOST, "/env/API_KEY").body, secret);

    let shown = berth.ok(&["config", "--app", "hello"]);
    assert!(
        shown.contains("API_KEY") && !shown.contains(secret),
        "{shown}"
    );
    let revealed = berth.ok(&["config", "--app", "hello", "--reveal"]);
    assert!(revealed.contains(secret), "{revealed}");
    let releases = berth.ok(&["releases", "--app", "hello", "--json"]);
    assert!(!releases.contains(secret), "{releases}");
    assert!(releases.contains("secrets set API_KEY"), "{releases}");

    for file in ["berth.db", "berth.db-wal"] {
        let bytes = std::fs::read(berth.data_dir().join(file)).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(secret), "{file} holds the secret in clear");
    }
    let key = berth.data_dir().join("secret.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    let out = berth.fails(&["config", "set", "API_KEY=plain", "--app", "hello"]);
    assert!(out.contains("is a secret"), "{out}");
    let out = berth.fails(&["config", "set", "2BAD=x", "--app", "hello"]);
    assert!(out.contains("2BAD"), "{out}");
    let out = berth.fails(&["config", "set", "PORT=1", "--app", "hello"]);
    assert!(out.contains("PORT"), "{out}");

    // A restart of `berth up` opens the secrets again with the key file.
    berth.restart();
    let answer = wait_for(
        "the app to serve after a restart",
        Duration::from_secs(60),
        || {
            let a = berth.get(HOST, "/env/API_KEY");
            (a.status == 200).then_some(a)
        },
    );
    assert_eq!(answer.body, secret);
}

#[test]
fn health_checks_gate_rollouts_and_restart_sick_instances() {
    let berth = Berth::up_with(&["--rollout-timeout", "20s"]);
    berth.create_and_deploy("hello", &example("flask-hello"));
    berth.ok(&[
        "healthcheck",
        "set",
        "/healthz",
        "--interval",
        "500ms",
        "--timeout",
        "400ms",
        "--rise",
        "1",
        "--fall",
        "2",
        "--app",
        "hello",
    ]);
    wait_for("the health check to pass", Duration::from_secs(30), || {
        let ps = berth.instances("hello");
        (ps.len() == 1 && ps[0]["health"] == "passing").then_some(())
    });

    // A config change that breaks /healthz never goes live.
    let out = berth.fails(&["config", "set", "HEALTHZ_STATUS=500", "--app", "hello"]);
    assert!(out.contains("release v2 failed"), "{out}");
    assert!(out.contains("v1 keeps serving"), "{out}");
    assert!(berth.get(HOST, "/").body.contains("release v1"));

    // A live instance that turns sick is restarted after `fall` failures.
    let before = berth.instances("hello")[0]["pid"].clone();
    assert_eq!(berth.request("POST", HOST, "/sick", &[]).status, 200);
    let restarted = wait_for(
        "the sick instance to be restarted",
        Duration::from_secs(60),
        || {
            let ps = berth.instances("hello");
            let i = ps.into_iter().find(|i| i["release"] == 1)?;
            (i["state"] == "up" && i["pid"] != before).then_some(i)
        },
    );
    assert_eq!(restarted["restarts"], 1);
    let events = berth.ok(&["events", "--app", "hello"]);
    assert!(events.contains("health_failed"), "{events}");
    assert!(events.contains("release_failed"), "{events}");
}

#[test]
fn old_builds_are_collected_and_rolling_back_to_them_says_so() {
    let berth = Berth::up_with(&["--keep-builds", "1"]);
    berth.create_and_deploy("hello", &example("flask-hello"));
    berth.ok(&[
        "deploy",
        example("flask-hello").to_str().unwrap(),
        "--app",
        "hello",
    ]);
    berth.ok(&[
        "deploy",
        example("flask-hello").to_str().unwrap(),
        "--app",
        "hello",
    ]);
    let builds = berth.data_dir().join("builds/hello");
    wait_for(
        "v1's build directory to be deleted",
        Duration::from_secs(30),
        || {
            let left = std::fs::read_dir(&builds).ok()?.count();
            (left <= 2).then_some(())
        },
    );
    let out = berth.fails(&["rollback", "v1", "--app", "hello"]);
    assert!(out.contains("garbage-collected"), "{out}");
    assert!(out.contains("berth deploy"), "{out}");
    // The newest previous build is kept: rolling back to v2 works.
    let out = berth.ok(&["rollback", "v2", "--app", "hello"]);
    assert!(out.contains("v4"), "{out}");
}
