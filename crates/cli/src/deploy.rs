//! `berth deploy`: pack, upload, follow the build and the release phase live,
//! then follow the rollout until the release is live and routed (or failed,
//! with the failing instance's last output).

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use berth_client::Client;
use berth_model::{BuildStatus, LogLine, ReleaseStatus};

use crate::output::human_size;

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

    // The release phase's output comes under the build's scope.
    loop {
        let r = client.release(app, version).await?;
        cursor = follow(client, app, &build.id, cursor, Duration::ZERO).await?;
        match r.status {
            ReleaseStatus::Pending | ReleaseStatus::Releasing => {
                cursor = follow(client, app, &build.id, cursor, Duration::from_secs(1)).await?;
            }
            ReleaseStatus::Failed if !rolled(&r) => bail!(
                "release v{version} failed in its release phase: {}\n{}",
                r.error.as_deref().unwrap_or("see the output above"),
                serving(&target)
            ),
            _ => break,
        }
    }
    crate::rollout::follow_release(client, app, version, target.current_release).await?;
    let app_now = client.app(app).await?;
    println!("-----> v{version} deployed to {}", app_now.url);
    Ok(())
}

/// Whether a failed release got as far as rolling out (its error names an
/// instance) rather than failing its release phase.
fn rolled(r: &berth_model::Release) -> bool {
    r.error.as_deref().is_some_and(|e| e.contains(" of v"))
}

fn serving(app: &berth_model::App) -> String {
    match app.current_release {
        Some(v) => format!("v{v} keeps serving."),
        None => "the app has no live release yet.".into(),
    }
}
