//! Resource limits per process type, enforced with cgroups, and processes
//! killed for running out of memory reported as such.

use std::time::Duration;

use crate::kit::*;

const HOST: &str = "hello.localhost";

#[test]
fn memory_limits_are_enforced_and_out_of_memory_kills_reported() {
    let berth = Berth::up();
    if berth.log().contains("cgroups unusable") {
        // Only where the host gives none (a read-only container); this
        // machine and CI run as root with cgroups.
        assert!(
            std::env::var("BERTH_REQUIRE_CGROUPS").is_err(),
            "cgroups are required: {}",
            berth.log()
        );
        eprintln!("*** SKIPPED: no usable cgroups here:\n{}", berth.log());
        return;
    }
    berth.create_and_deploy("hello", &example("flask-hello"));

    let err = berth.fails(&["limits", "set", "web", "memory=lots", "--app", "hello"]);
    assert!(err.contains("memory=512MB"), "{err}");
    let err = berth.fails(&["limits", "set", "db", "memory=1GB", "--app", "hello"]);
    assert!(err.contains("no process type \"db\""), "{err}");

    let out = berth.ok(&[
        "limits",
        "set",
        "web",
        "memory=160MB",
        "pids=64",
        "--app",
        "hello",
    ]);
    assert!(out.contains("web: memory=160.0MB pids=64"), "{out}");
    berth.ok(&["limits", "set", "run", "memory=48MB", "--app", "hello"]);

    // A one-off process over its limit is killed, and says why.
    let out = berth.run_python("hello", "x = b'x' * (300 << 20); print('survived')");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(137), "{stderr}");
    assert!(stderr.contains("out of memory: limit 48.0 MB"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("survived"));

    // The running web instance got its limit at once: a request holding
    // more memory gets its gunicorn worker killed; the master starts a new
    // one and the instance keeps serving.
    assert_eq!(berth.get(HOST, "/alloc?mb=8").status, 200);
    let answer = berth.get(HOST, "/alloc?mb=400");
    assert_ne!(answer.status, 200, "{answer:?}");
    let web = wait_for("the OOM kill in ps", Duration::from_secs(30), || {
        let instances = berth.instances("hello");
        let web = instances
            .iter()
            .find(|i| i["process_type"] == "web")?
            .clone();
        (web["oom_kills"].as_u64()? >= 1).then_some(web)
    });
    assert_eq!(web["state"], "up", "{web}");
    let table = berth.ok(&["ps", "--app", "hello"]);
    assert!(table.contains("out-of-memory kills: 1"), "{table}");
    let events = berth.ok(&["events", "--app", "hello"]);
    assert!(
        events.contains("out_of_memory")
            && events.contains("killed: out of memory: limit 160.0 MB"),
        "{events}"
    );
    wait_for("web to serve again", Duration::from_secs(30), || {
        (berth.get(HOST, "/").status == 200).then_some(())
    });

    let out = berth.ok(&["limits", "unset", "run", "--app", "hello"]);
    assert!(!out.contains("run:"), "{out}");
    let out = berth.run_python("hello", "x = b'x' * (100 << 20)");
    assert!(out.status.success(), "no limit, no kill: {out:?}");
}
