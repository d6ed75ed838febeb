//! The agent keeps app processes running.

use std::time::Duration;

use crate::kit::*;

#[test]
fn a_killed_instance_is_restarted_while_the_other_keeps_serving() {
    let berth = Berth::up();
    berth.create_and_deploy("hello", &example("flask-hello"));
    berth.ok(&["scale", "web=2", "--app", "hello"]);
    let ps = wait_for("two web instances up", Duration::from_secs(60), || {
        let ps = berth.instances("hello");
        (ps.len() == 2 && ps.iter().all(|i| i["state"] == "up")).then_some(ps)
    });
    let victim = ps[0]["pid"].as_u64().unwrap();
    let victim_name = format!("web.{}", ps[0]["index"]);
    // Kill the whole process group, as an OOM kill or a crash would end it.
    let killed = std::process::Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{victim}")])
        .status()
        .unwrap();
    assert!(killed.success());

    // Requests keep succeeding while the instance is down and restarting.
    let mut failures = 0;
    let restarted = wait_for(
        "the killed instance to be restarted",
        Duration::from_secs(60),
        || {
            if berth.get("hello.localhost", "/").status != 200 {
                failures += 1;
            }
            let ps = berth.instances("hello");
            ps.into_iter().find(|i| {
                format!("web.{}", i["index"]) == victim_name
                    && i["state"] == "up"
                    && i["pid"].as_u64() != Some(victim)
            })
        },
    );
    assert_eq!(restarted["restarts"], 1);
    assert_eq!(failures, 0, "requests failed while an instance was down");
    let logs = berth.ok(&["logs", "--app", "hello", "-n", "1000", "--source", "berth"]);
    assert!(logs.contains("killed by SIGKILL"), "{logs}");
}
