//! Everything a user does to a live app — deploy, config change, rollback,
//! scale, restart — under continuous load, without one failed request.

use std::time::Duration;

use crate::kit::*;

const HOST: &str = "hello.localhost";

/// The release that answered `GET /`.
fn serving(berth: &Berth) -> String {
    berth.get(HOST, "/").body
}

fn assert_no_failures(what: &str, load: Load) {
    let report = load.stop();
    assert!(
        report.ok > 50,
        "{what}: the load barely ran ({} requests)",
        report.ok
    );
    eprintln!(
        "{what}: {} requests answered 200, {} failed",
        report.ok,
        report.failures.len()
    );
    assert!(
        report.failures.is_empty(),
        "{what}: {} of {} requests failed: {:?}",
        report.failures.len(),
        report.ok + report.failures.len() as u64,
        &report.failures[..report.failures.len().min(10)]
    );
}

#[test]
fn deploy_config_change_and_rollback_drop_no_request() {
    let berth = Berth::up();
    berth.create_and_deploy("hello", &example("flask-hello"));
    berth.ok(&["scale", "web=2", "--app", "hello"]);
    wait_for("two web instances up", Duration::from_secs(60), || {
        let ps = berth.instances("hello");
        (ps.iter().filter(|i| i["state"] == "up").count() == 2).then_some(())
    });

    let load = Load::start(&berth, HOST, "/", 4);
    let out = berth.ok(&[
        "deploy",
        example("flask-hello").to_str().unwrap(),
        "--app",
        "hello",
    ]);
    assert!(out.contains("v2 deployed"), "{out}");
    assert!(serving(&berth).contains("release v2"));
    let out = berth.ok(&["config", "set", "GREETING=hi", "DEBUG=0", "--app", "hello"]);
    assert!(out.contains("release v3"), "{out}");
    assert_eq!(berth.get(HOST, "/env/GREETING").body, "hi");
    let out = berth.ok(&["rollback", "v1", "--app", "hello"]);
    assert!(out.contains("v4"), "{out}");
    assert!(serving(&berth).contains("release v4"));
    assert_eq!(
        berth.get(HOST, "/env/GREETING").status,
        404,
        "v1's config is back"
    );
    assert_no_failures("deploy, config set, rollback", load);

    let releases = berth.json(&["releases", "--app", "hello", "--json"]);
    let rows: Vec<(u64, &str, &str)> = releases
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["version"].as_u64().unwrap(),
                r["status"].as_str().unwrap(),
                r["description"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows[0], (4, "live", "rollback to v1"));
    assert_eq!(rows[1].1, "superseded");
    assert_eq!(rows[1].2, "config set DEBUG GREETING");
    assert_eq!(rows.len(), 4);
    // Old instances drained and stopped: only v4's two remain.
    wait_for("the old instances to stop", Duration::from_secs(30), || {
        let ps = berth.instances("hello");
        (ps.len() == 2 && ps.iter().all(|i| i["release"] == 4)).then_some(())
    });
    let events = berth.ok(&["events", "--app", "hello"]);
    for kind in [
        "release_live",
        "instance_ready",
        "instance_draining",
        "instance_stopped",
    ] {
        assert!(events.contains(kind), "no {kind} event in:\n{events}");
    }
}

#[test]
fn scaling_up_and_down_and_restarting_drop_no_request() {
    let berth = Berth::up();
    berth.create_and_deploy("hello", &example("flask-hello"));
    let load = Load::start(&berth, HOST, "/", 4);
    berth.ok(&["scale", "web=4", "--app", "hello"]);
    wait_for("four web instances up", Duration::from_secs(60), || {
        let ps = berth.instances("hello");
        (ps.iter().filter(|i| i["state"] == "up").count() == 4).then_some(())
    });
    berth.ok(&["scale", "web=1", "--app", "hello"]);
    wait_for("one web instance left", Duration::from_secs(60), || {
        (berth.instances("hello").len() == 1).then_some(())
    });
    let before = berth.instances("hello")[0]["pid"].clone();
    let out = berth.ok(&["restart", "--app", "hello"]);
    assert!(out.contains("restart of v1 finished"), "{out}");
    wait_for(
        "the restarted instance alone",
        Duration::from_secs(30),
        || {
            let ps = berth.instances("hello");
            (ps.len() == 1 && ps[0]["pid"] != before && ps[0]["state"] == "up").then_some(())
        },
    );
    assert_no_failures("scale 1→4→1, restart", load);
    assert_eq!(
        berth
            .json(&["releases", "--app", "hello", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1,
        "scaling and restarting make no release"
    );
}

#[test]
fn a_slow_request_finishes_while_its_instance_drains() {
    let berth = Berth::up();
    berth.create_and_deploy("hello", &example("flask-hello"));
    let port = berth.router_port;
    let slow = std::thread::spawn(move || {
        let client = reqwest::blocking::Client::new();
        client
            .get(format!("http://127.0.0.1:{port}/slow?seconds=3"))
            .header("host", HOST)
            .timeout(Duration::from_secs(30))
            .send()
            .map(|r| (r.status().as_u16(), r.text().unwrap_or_default()))
    });
    // The slow request reaches v1 before the rollout starts replacing it.
    wait_for(
        "the slow request to reach the app",
        Duration::from_secs(30),
        || {
            let logs = berth.ok(&["logs", "--app", "hello", "--source", "web.1"]);
            logs.contains("slow request: sleeping").then_some(())
        },
    );
    berth.ok(&["config", "set", "X=1", "--app", "hello"]);
    let (status, body) = slow.join().unwrap().expect("the slow request failed");
    assert_eq!(
        (status, body.as_str()),
        (200, "done"),
        "{}",
        berth.ok(&["logs", "--app", "hello", "-n", "60"])
    );
}

#[test]
fn a_crashing_release_fails_and_the_live_one_keeps_serving() {
    let berth = Berth::up_with(&["--rollout-timeout", "60s"]);
    berth.create_and_deploy("hello", &example("flask-hello"));
    let broken = berth.dir.path().join("broken");
    copy_dir(&example("flask-hello"), &broken);
    std::fs::write(
        broken.join("Procfile"),
        "web: python -c \"import sys; print('boom: missing DATABASE_URL'); sys.exit(3)\"\n",
    )
    .unwrap();
    let load = Load::start(&berth, HOST, "/", 2);
    let out = berth.fails(&["deploy", broken.to_str().unwrap(), "--app", "hello"]);
    assert!(out.contains("release v2 failed"), "{out}");
    assert!(out.contains("crashed 3 times"), "{out}");
    assert!(
        out.contains("boom: missing DATABASE_URL"),
        "the crash output is shown: {out}"
    );
    assert!(out.contains("v1 keeps serving"), "{out}");
    assert_no_failures("a crashing deploy", load);
    assert!(serving(&berth).contains("release v1"));
    let releases = berth.json(&["releases", "--app", "hello", "--json"]);
    assert_eq!(releases[0]["status"], "failed");
    assert_eq!(releases[1]["status"], "live");
    wait_for(
        "the failed release's instances to stop",
        Duration::from_secs(30),
        || {
            berth
                .instances("hello")
                .iter()
                .all(|i| i["release"] == 1)
                .then_some(())
        },
    );
}
