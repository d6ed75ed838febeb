//! slowhttptest (Debian package `slowhttptest`) attacking the router in
//! slowloris and slow-POST modes while a normal client keeps asking: the
//! normal client must be served throughout.

use std::process::Stdio;
use std::time::Duration;

use berth_router::RouterConfig;
use tokio::process::Command;

use crate::util::*;

/// How long each attack runs: longer than the router's timeouts below, so
/// the attack's connections are seen being closed.
const ATTACK_SECS: u64 = 5;

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
    // An app that reads whole bodies before it answers, as form handlers do.
    let backend = Recorder::start().await;
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

    let reports = tempfile::tempdir().expect("tempdir");
    // Slowloris adds a header line every second: the head deadline cuts it.
    // Slow POST adds to the body every 3 s: the body's stall timeout cuts it.
    for (mode, verb, every) in [("-H", "GET", "1"), ("-B", "POST", "3")] {
        let report = reports.path().join(mode.trim_start_matches('-'));
        let attack = Command::new(&bin)
            .args([
                mode, "-c", "600", "-r", "300", "-i", every, "-x", "10", "-s", "8192",
            ])
            .args(["-l", &ATTACK_SECS.to_string(), "-p", "2", "-t", verb])
            .args(["-u", &url, "-g", "-o"])
            .arg(&report)
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
        assert!(
            out.status.success(),
            "{mode}: slowhttptest failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(served > 10, "{mode}: only {served} normal requests");
        // The attack did hold connections open, and the router closed them.
        let csv =
            std::fs::read_to_string(report.with_extension("csv")).expect("slowhttptest report");
        let (closed, connected) = attack_counts(&csv);
        assert!(
            connected >= 100,
            "{mode}: the attack never got going:\n{csv}"
        );
        assert!(
            closed > 0,
            "{mode}: the router closed none of the slow connections:\n{csv}"
        );
    }
}

/// The most connections the attack had closed and had open at once, from
/// slowhttptest's CSV (`Seconds,Closed,Pending,Connected,...`).
fn attack_counts(csv: &str) -> (u64, u64) {
    csv.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<u64> = line
                .split(',')
                .filter_map(|c| c.trim().parse().ok())
                .collect();
            Some((*cols.get(1)?, *cols.get(3)?))
        })
        .fold((0, 0), |(c, o), (closed, open)| {
            (c.max(closed), o.max(open))
        })
}
