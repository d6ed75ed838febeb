//! `berth deploy`: pack, upload, follow the build and the release phase live,
//! then wait until the new release's web instances are up.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use berth_client::Client;
use berth_model::{BuildStatus, InstanceState, LogLine, ReleaseStatus};

use crate::output::human_size;

/// How long the new release's instances get to come up.
const START_DEADLINE: Duration = Duration::from_secs(120);
/// Crashes of a new instance before `deploy` calls it a crash loop.
const CRASH_LOOP: u32 = 3;

/// Prints the build's log lines after `cursor`, returns the new cursor.
async fn follow(
    client: &Client,
    app: &str,
    scope: &str,
    cursor: i64,
    wait: Duration,
) -> anyhow::Result<i64> {
    let page = client
        .logs(app, Some(cursor), Some(1000), wait, Some(scope))
        .await?;
    for l in &page.lines {
        print_line(l);
    }
    Ok(page.cursor.max(cursor))
}

fn print_line(l: &LogLine) {
    if l.source == "berth" {
        println!("-----> {}", l.line);
    } else {
        println!("{}", l.line);
    }
}

pub async fn deploy(client: &Client, app: &str, dir: &Path) -> anyhow::Result<()> {
    let info = client.info().await?;
    let target = client.app(app).await?;
    let max = info.max_source_bytes;
    let dir_owned = dir.to_path_buf();
    let packed = tokio::task::spawn_blocking(move || crate::pack::pack(&dir_owned, max))
        .await
        .context("packing the source failed")??;
    println!(
        "-----> Uploading {} ({} files, {})",
        dir.display(),
        packed.files,
        human_size(packed.bytes.len() as u64)
    );
    let build = client.upload_source(app, packed.bytes).await?;

    let mut cursor = 0;
    let build = loop {
        cursor = follow(client, app, &build.id, cursor, Duration::from_secs(1)).await?;
        let b = client.build(app, &build.id).await?;
        if b.status.is_final() {
            cursor = follow(client, app, &build.id, cursor, Duration::ZERO).await?;
            break b;
        }
    };
    if build.status == BuildStatus::Failed {
        bail!(
            "build failed: {}\nNothing was released; {}",
            build.error.as_deref().unwrap_or("see the output above"),
            serving(&target)
        );
    }
    let version = build
        .release
        .context("the server reported a successful build without a release")?;

    loop {
        let r = client.release(app, version).await?;
        cursor = follow(client, app, &build.id, cursor, Duration::ZERO).await?;
        match r.status {
            ReleaseStatus::Live => break,
            ReleaseStatus::Failed => bail!(
                "release v{version} failed in its release phase: {}\n{}",
                r.error.as_deref().unwrap_or("see the output above"),
                serving(&target)
            ),
            ReleaseStatus::Superseded => {
                println!("-----> v{version} was superseded by a newer release while it deployed");
                return Ok(());
            }
            ReleaseStatus::Pending | ReleaseStatus::Releasing => {
                cursor = follow(client, app, &build.id, cursor, Duration::from_secs(1)).await?;
            }
        }
    }

    let app_now = client.app(app).await?;
    let web = app_now.formation.get("web").copied().unwrap_or(0);
    if web > 0 {
        println!("-----> Starting v{version}: waiting for {web} web instance(s)");
        wait_for_web(client, app, version, web).await?;
    }
    println!("-----> v{version} deployed to {}", app_now.url);
    Ok(())
}

fn serving(app: &berth_model::App) -> String {
    match app.current_release {
        Some(v) => format!("v{v} keeps serving."),
        None => "the app has no live release yet.".into(),
    }
}

async fn wait_for_web(client: &Client, app: &str, version: u32, want: u32) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        let instances: Vec<_> = client
            .instances(app)
            .await?
            .into_iter()
            .filter(|i| i.release == version && i.process_type == "web")
            .collect();
        let up = instances
            .iter()
            .filter(|i| i.state == InstanceState::Up)
            .count() as u32;
        if up >= want {
            return Ok(());
        }
        if let Some(bad) = instances.iter().find(|i| i.restarts >= CRASH_LOOP) {
            let source = bad.name();
            let tail = client
                .logs(app, None, Some(200), Duration::ZERO, None)
                .await?
                .lines
                .into_iter()
                .filter(|l| l.source == source)
                .map(|l| format!("    {}", l.line))
                .collect::<Vec<_>>();
            let tail = &tail[tail.len().saturating_sub(20)..];
            bail!(
                "v{version}'s {source} keeps crashing ({}); the previous release keeps serving while it does.\nLast output of {source}:\n{}",
                bad.last_exit.as_deref().unwrap_or("exited"),
                tail.join("\n")
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "v{version}'s web instances did not come up within {}s ({up} of {want} up); see `berth logs --app {app}`",
                START_DEADLINE.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
