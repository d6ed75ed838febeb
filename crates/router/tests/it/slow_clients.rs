//! slowhttptest (Debian package `slowhttptest`) attacking the router in
//! slowloris and slow-POST modes while a normal client keeps asking: the
//! normal client must be served throughout.

use std::process::Stdio;
use std::time::Duration;

use berth_router::RouterConfig;
use tokio::process::Command;

use crate::util::*;

/// How long each attack runs.
const ATTACK_SECS: u64 = 4;

fn slowhttptest() -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("slowhttptest"))
            .find(|p| p.is_file())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_slow_post_leave_normal_clients_served() {
    let Some(bin) = slowhttptest() else {
        eprintln!(
            "SKIPPED slowloris_and_slow_post_leave_normal_clients_served: \
             slowhttptest is not installed (apt-get install slowhttptest)"
        );
        return;
    };
    let backend = Backend::start("app").await;
    // slowhttptest sends `Host: 127.0.0.1:PORT`; the app answers there too,
    // so slow bodies reach the body phase instead of a 404.
    let routes = table(vec![app(
        "a",
        &["a.localhost", "127.0.0.1"],
        &[backend.addr],
    )]);
    let config = RouterConfig {
        header_read_timeout: Duration::from_secs(2),
        body_read_timeout: Duration::from_secs(2),
        // Below the attack's connection count, so the per-address limit is
        // part of what is tested.
        max_connections_per_ip: 400,
        ..Default::default()
    };
    let router = Router::start_with(config, routes).await;
    // The normal client comes from another address, as a real visitor does.
    let client = reqwest::Client::builder()
        .no_proxy()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .timeout(DEADLINE)
        .build()
        .expect("client");
    let url = format!("http://{}/", router.addr);

    for (mode, verb) in [("-H", "GET"), ("-B", "POST")] {
        let attack = Command::new(&bin)
            .args([
                mode, "-c", "600", "-r", "300", "-i", "1", "-x", "10", "-s", "8192",
            ])
            .args(["-l", &ATTACK_SECS.to_string(), "-p", "2", "-t", verb])
            .args(["-u", &url])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start slowhttptest");
        let started = tokio::time::Instant::now();
        let mut served = 0;
        // Ask throughout the attack (and a little past its ramp-up).
        while started.elapsed() < Duration::from_secs(ATTACK_SECS) {
            let resp = client
                .get(&url)
                .header("host", "a.localhost")
                .send()
                .await
                .unwrap_or_else(|e| panic!("normal client refused during {mode} attack: {e}"));
            assert_eq!(resp.status(), 200, "during {mode} attack");
            served += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let out = tokio::time::timeout(
            Duration::from_secs(ATTACK_SECS + 20),
            attack.wait_with_output(),
        )
        .await
        .expect("slowhttptest ends")
        .expect("slowhttptest output");
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(served > 10, "{mode}: only {served} normal requests");
        // Its own probe, a fresh connection per check, also got through.
        assert!(
            !report.contains("service available:   NO"),
            "{mode}: slowhttptest saw the service down:\n{report}"
        );
    }
}
