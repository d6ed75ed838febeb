//! Following a rollout to its end: a release going live (or failing), a
//! restart finishing, and the routers confirming they route the result.

use std::time::Duration;

use anyhow::bail;
use berth_client::Client;
use berth_model::{EventKind, LogLine, ReleaseStatus};

/// Lines of a failing instance's output `deploy` shows.
const TAIL_LINES: usize = 20;

/// Follows release `version` until it is live and every router routes it.
/// A failed release is an error that carries the last output of the
/// instance that failed it; `previous` is the release that keeps serving.
pub async fn follow_release(
    client: &Client,
    app: &str,
    version: u32,
    previous: Option<u32>,
) -> anyhow::Result<()> {
    let mut said_rolling = false;
    let mut last_progress = String::new();
    loop {
        let r = client.release(app, version).await?;
        match r.status {
            ReleaseStatus::Live => break,
            ReleaseStatus::Failed => {
                let error = r.error.as_deref().unwrap_or("see `berth logs`");
                let serving = match previous {
                    Some(v) => format!("v{v} keeps serving."),
                    None => "the app has no live release yet.".into(),
                };
                let tail = failing_output(client, app, version, error).await;
                bail!("release v{version} failed: {error}\n{serving}{tail}");
            }
            ReleaseStatus::Superseded => {
                println!("-----> v{version} was superseded by a newer release before it went live");
                return Ok(());
            }
            ReleaseStatus::Rolling => {
                if !said_rolling {
                    println!("-----> Rolling out v{version}");
                    said_rolling = true;
                }
                let progress = progress(client, app, version).await?;
                if progress != last_progress {
                    println!("       {progress}");
                    last_progress = progress;
                }
            }
            ReleaseStatus::Pending | ReleaseStatus::Releasing => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    old_instances_out_of_rotation(client, app, version).await?;
    routers_caught_up(client).await
}

/// Waits (a bounded while) until no web instance of another release is up:
/// they leave the routes as they start draining, so once this holds every
/// new request reaches `version`.
async fn old_instances_out_of_rotation(
    client: &Client,
    app: &str,
    version: u32,
) -> anyhow::Result<()> {
    for _ in 0..300 {
        let old_up = client.instances(app).await?.into_iter().any(|i| {
            i.release != version
                && i.process_type == "web"
                && i.state == berth_model::InstanceState::Up
        });
        if !old_up {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// `web: 1 of 2 up` for the instances of `version`.
async fn progress(client: &Client, app: &str, version: u32) -> anyhow::Result<String> {
    let a = client.app(app).await?;
    let instances = client.instances(app).await?;
    let mut parts = Vec::new();
    for (process_type, wanted) in a.formation.iter().filter(|(_, n)| **n > 0) {
        let up = instances
            .iter()
            .filter(|i| {
                i.release == version
                    && &i.process_type == process_type
                    && i.state == berth_model::InstanceState::Up
            })
            .count();
        parts.push(format!("{process_type}: {up} of {wanted} up"));
    }
    Ok(parts.join(", "))
}

/// The last lines of the instance a failure names (`web.1 of v3 …`).
async fn failing_output(client: &Client, app: &str, version: u32, error: &str) -> String {
    let Some(source) = error.split(" of v").next().filter(|s| s.contains('.')) else {
        return String::new();
    };
    // Release N's process output is scoped `vN`: another release's web.1
    // (the one still serving) does not mix in.
    let scope = format!("v{version}");
    let Ok(page) = client
        .logs(app, None, Some(1000), Duration::ZERO, Some(&scope))
        .await
    else {
        return String::new();
    };
    let lines: Vec<&LogLine> = page.lines.iter().filter(|l| l.source == source).collect();
    if lines.is_empty() {
        return String::new();
    }
    let tail = &lines[lines.len().saturating_sub(TAIL_LINES)..];
    let text: Vec<String> = tail.iter().map(|l| format!("    {}", l.line)).collect();
    format!("\nLast output of {source}:\n{}", text.join("\n"))
}

/// Waits until every router routes by the current revision, so that "live"
/// printed after it is true for the next request a user sends.
pub async fn routers_caught_up(client: &Client) -> anyhow::Result<()> {
    let revision = client.info().await?.revision;
    for _ in 0..6 {
        if client
            .routers_applied(revision, Duration::from_secs(5))
            .await?
            .applied
        {
            return Ok(());
        }
    }
    eprintln!("warning: not every router confirmed the new routes within 30s; `berth ps` shows the instances");
    Ok(())
}

/// Follows a restart (or any rollout without a new release) through the
/// app's events from `cursor` on, until it finishes or fails.
pub async fn follow_restart(client: &Client, app: &str, mut cursor: i64) -> anyhow::Result<()> {
    loop {
        let page = client.events(app, cursor, Duration::from_secs(10)).await?;
        for e in &page.lines {
            match e.event {
                Some(EventKind::ReleaseLive) => {
                    println!("-----> {}", e.line);
                    return routers_caught_up(client).await;
                }
                Some(EventKind::ReleaseFailed) => bail!("{}", e.line),
                Some(EventKind::InstanceReady | EventKind::InstanceStopped) => {
                    println!("       {}", e.line)
                }
                _ => {}
            }
        }
        cursor = page.cursor;
    }
}
