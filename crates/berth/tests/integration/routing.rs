//! `berth routing`: per-app body and rate limits, set through the CLI and
//! enforced by the router of `berth up`, over the router-wide defaults
//! given as flags.

use std::time::Duration;

use crate::kit::*;

const HOST: &str = "hello.localhost";

fn post(berth: &Berth, bytes: usize) -> Answer {
    let body = "x".repeat(bytes);
    let client = http_client();
    let resp = client
        .post(format!("http://127.0.0.1:{}/echo", berth.router_port))
        .header("host", HOST)
        .body(body)
        .send()
        .expect("POST through the router");
    Answer {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.text().unwrap_or_default(),
    }
}

#[test]
fn body_and_rate_limits_per_app_over_the_routers_default() {
    let berth = Berth::up_with(&["--max-body", "8KB"]);
    berth.create_and_deploy("hello", &example("flask-hello"));

    // The router-wide default from the flag.
    assert_eq!(post(&berth, 4096).status, 200);
    assert_eq!(post(&berth, 9000).status, 413);

    let out = berth.ok(&["routing", "--app", "hello"]);
    assert!(out.contains("router's defaults"), "{out}");
    let out = berth.fails(&["routing", "set", "max_body=lots", "--app", "hello"]);
    assert!(out.contains("max_body=lots is not a size"), "{out}");
    let out = berth.fails(&["routing", "set", "speed=fast", "--app", "hello"]);
    assert!(out.contains("unknown routing setting"), "{out}");

    berth.ok(&[
        "routing",
        "set",
        "max_body=1KB",
        "rate_limit=20/m",
        "--app",
        "hello",
    ]);
    let shown = berth.ok(&["routing", "--app", "hello"]);
    assert!(
        shown.contains("max_body=1KB") && shown.contains("rate_limit=20/m"),
        "{shown}"
    );
    let refused = wait_for("the app's own max_body", Duration::from_secs(10), || {
        let a = post(&berth, 2000);
        (a.status == 413).then_some(a)
    });
    assert!(
        refused.body.contains("at most 1024 bytes"),
        "{}",
        refused.body
    );
    assert_eq!(
        post(&berth, 500).body,
        "x".repeat(500),
        "within the limit: passed on"
    );

    // The rate: 20 a minute per client address, then 429 with the wait.
    let limited = wait_for("the rate limit", Duration::from_secs(10), || {
        let a = berth.get(HOST, "/");
        (a.status == 429).then_some(a)
    });
    let wait: u64 = limited
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&wait), "retry after {wait}s");

    berth.ok(&[
        "routing",
        "unset",
        "rate_limit",
        "max_body",
        "--app",
        "hello",
    ]);
    wait_for("limits lifted", Duration::from_secs(10), || {
        (berth.get(HOST, "/").status == 200).then_some(())
    });
    assert_eq!(post(&berth, 4096).status, 200);
}
