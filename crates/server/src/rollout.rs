//! The rollout controller: decides when a rollout is done and when it has
//! failed, from reported instance state ("always have a state to check").
//!
//! [`evaluate`] is pure and judges one app's rollout in a [`Snapshot`];
//! [`run`] applies its verdicts to the store whenever the revision moves (an
//! instance came up, crashed, …) and once a second for deadlines. It also
//! garbage-collects old builds once nothing runs them any more.

use std::time::Duration;

use berth_model::{EventKind, InstanceState, Revision, UnixMillis};
use berth_store::AppRecord;
use tokio::sync::watch;

use crate::scheduler::{Snapshot, Target};
use crate::Ctx;

/// A new instance that has crashed this many times fails its rollout: a
/// crash loop is not going to fix itself, and the old release keeps serving.
pub const CRASH_LIMIT: u32 = 3;

/// What a rollout should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Still going, no news.
    Wait,
    /// More new instances are up than last noted (resets the deadline).
    Progress(u32),
    /// Every process type has its formation of new instances up.
    Complete,
    /// It cannot succeed; the reason is meant for the user.
    Fail(String),
}

/// Judges the rollout of `app` (which must have one).
pub fn evaluate(s: &Snapshot, app: &AppRecord, timeout_ms: i64) -> Verdict {
    let (Some(rollout), Some(target)) = (&app.rollout, Target::of(app)) else {
        return Verdict::Wait;
    };
    let Some(artifact) = s
        .release(&app.name, rollout.release)
        .and_then(|r| s.builds.get(&r.build_id))
        .and_then(|b| b.build.artifact.as_ref())
    else {
        return Verdict::Fail(format!(
            "the build of v{} is not available any more",
            rollout.release
        ));
    };
    let mut up = 0;
    let mut complete = true;
    let mut laggard = None;
    for process_type in artifact.processes.keys() {
        let wanted = app.formation.get(process_type).copied().unwrap_or(0);
        let new: Vec<_> = s
            .instances
            .iter()
            .filter(|i| i.app == app.name && &i.process_type == process_type && target.owns(i))
            .collect();
        if let Some(crashed) = new.iter().find(|i| i.restarts >= CRASH_LIMIT) {
            return Verdict::Fail(format!(
                "{} of v{} crashed {} times (last: {})",
                crashed.name(),
                crashed.release,
                crashed.restarts,
                crashed.last_exit.as_deref().unwrap_or("unknown")
            ));
        }
        let type_up = new
            .iter()
            .filter(|i| i.state == InstanceState::Up && i.index <= wanted)
            .count() as u32;
        up += type_up;
        if type_up < wanted {
            complete = false;
            if laggard.is_none() {
                laggard = Some(
                    match new
                        .iter()
                        .find(|i| i.state != InstanceState::Up && i.index <= wanted)
                    {
                        Some(i) => format!(
                            "{} of v{} did not come up ({}{})",
                            i.name(),
                            i.release,
                            i.state.as_str(),
                            i.health
                                .as_deref()
                                .map(|h| format!(", health check {h}"))
                                .unwrap_or_default()
                        ),
                        None => format!(
                            "new {process_type} instances did not start (old ones still stopping?)"
                        ),
                    },
                );
            }
        }
    }
    if complete {
        return Verdict::Complete;
    }
    if up > rollout.up {
        return Verdict::Progress(up);
    }
    if s.now - rollout.progress_at > timeout_ms {
        return Verdict::Fail(format!(
            "{} within {}s",
            laggard.unwrap_or_else(|| "no progress".into()),
            timeout_ms / 1000
        ));
    }
    Verdict::Wait
}

/// Applies verdicts until `stop` turns true.
pub(crate) async fn run(ctx: Ctx, mut stop: watch::Receiver<bool>) {
    let mut revision = ctx.watchers.subscribe();
    let mut collected_at = 0;
    loop {
        if let Err(e) = pass(&ctx, &mut collected_at).await {
            tracing::warn!("rollout controller: {e}; retrying");
        }
        tokio::select! {
            _ = revision.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// One look at every app. Builds are collected when the state has moved
/// since the last collection (an old release's last instance stopping is
/// what frees its build), not every second.
async fn pass(ctx: &Ctx, collected_at: &mut Revision) -> Result<(), berth_store::StoreError> {
    let s = Snapshot::load(ctx.store.as_ref(), &*ctx.opener).await?;
    if s.revision != *collected_at {
        *collected_at = s.revision;
        for app in s.apps.iter().filter(|a| a.rollout.is_none()) {
            collect(ctx, &app.name, s.now).await;
        }
    }
    let timeout = ctx.config.rollout_timeout.as_millis() as i64;
    let mut changed = false;
    for app in &s.apps {
        let Some(rollout) = &app.rollout else {
            continue;
        };
        let v = rollout.release;
        match evaluate(&s, app, timeout) {
            Verdict::Wait => {}
            Verdict::Progress(up) => {
                ctx.store
                    .note_rollout_progress(&app.name, v, up, s.now)
                    .await?;
            }
            Verdict::Complete => {
                ctx.store.complete_rollout(&app.name, v).await?;
                changed = true;
                let what = if app.current_release == Some(v) {
                    format!("{} of v{v} finished", rollout.description)
                } else {
                    format!("Release v{v} is live ({})", rollout.description)
                };
                crate::events::emit(ctx, &app.name, EventKind::ReleaseLive, what).await;
            }
            Verdict::Fail(reason) => {
                ctx.store.fail_rollout(&app.name, v, &reason).await?;
                changed = true;
                let what = if app.current_release == Some(v) {
                    format!(
                        "{} of v{v} failed, the running instances keep serving: {reason}",
                        rollout.description
                    )
                } else {
                    format!(
                        "Release v{v} failed, {}: {reason}",
                        match app.current_release {
                            Some(live) => format!("v{live} keeps serving"),
                            None => "nothing is serving".into(),
                        }
                    )
                };
                crate::events::emit(ctx, &app.name, EventKind::ReleaseFailed, what).await;
            }
        }
    }
    if changed {
        ctx.watchers.changed().await;
    }
    Ok(())
}

/// Marks old builds collected and deletes their source archives; agents
/// delete the artifacts when they see the collection in their desired state.
async fn collect(ctx: &Ctx, app: &str, now: UnixMillis) {
    match ctx
        .store
        .collect_builds(app, ctx.config.keep_builds, now)
        .await
    {
        Ok(ids) => {
            for id in ids {
                let _ = std::fs::remove_file(crate::api::source_path(&ctx.config, &id));
                tracing::info!(app, build = %id, "build garbage-collected");
            }
        }
        Err(e) => tracing::warn!("could not collect old builds of {app}: {e}"),
    }
}
