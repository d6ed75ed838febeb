//! One-off processes: `berth run`, `berth ps:kill`, the agent's reports, and
//! the two WebSocket ends of an attached run.

use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::Json;
use berth_model::{EventKind, NewRun, Run, RunReport, RunState};

use super::require_app;
use crate::error::ApiResult;
use crate::events::{emit, log};
use crate::relay::Side;
use crate::scheduler::NODE_TIMEOUT_MS;
use crate::{ApiErr, Ctx};

/// How long one end of an attached run waits for the other: the agent has
/// to see the run in its desired state and dial back.
const ATTACH_WAIT: Duration = Duration::from_secs(60);

/// `POST /v1/apps/{app}/runs`: a one-off process of the live release, on
/// the node that holds its build.
pub async fn create(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    Json(new): Json<NewRun>,
) -> ApiResult<Json<Run>> {
    let rec = require_app(&ctx, &app).await?;
    if new.command.trim().is_empty() {
        return Err(ApiErr::bad_request(
            "no command to run: `berth run --app APP -- COMMAND [ARGS…]`",
        ));
    }
    let Some(version) = rec.current_release else {
        return Err(ApiErr::conflict(format!(
            "{app} has no live release to run a command of: `berth deploy --app {app}` first"
        )));
    };
    let release =
        ctx.store.release(&app, version).await?.ok_or_else(|| {
            ApiErr::internal(format!("live release v{version} of {app} is missing"))
        })?;
    let node = ctx
        .store
        .build(&release.build_id)
        .await?
        .and_then(|b| b.build.node)
        .ok_or_else(|| ApiErr::internal(format!("the build of v{version} has no node")))?;
    let now = berth_model::now_millis();
    let node_up = ctx
        .store
        .nodes()
        .await?
        .iter()
        .any(|(n, seen)| *n == node && now - seen < NODE_TIMEOUT_MS);
    if !node_up {
        return Err(ApiErr(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("node {node}, which holds the build of v{version}, is not reporting: start its agent (`berth agent`) and try again"),
        ));
    }
    let run = ctx
        .store
        .create_run(&app, version, &node, &new, "admin", now)
        .await?;
    ctx.watchers.changed().await;
    let how = if new.attach { "attached" } else { "detached" };
    log(
        &ctx,
        &app,
        Some(&run.name()),
        format!(
            "Starting {} ({how}) of v{version}: {}",
            run.name(),
            new.command
        ),
    )
    .await;
    Ok(Json(run))
}

/// `GET /v1/apps/{app}/runs`: the runs that have not ended.
pub async fn list(State(ctx): State<Ctx>, Path(app): Path<String>) -> ApiResult<Json<Vec<Run>>> {
    require_app(&ctx, &app).await?;
    Ok(Json(ctx.store.active_runs(Some(&app)).await?))
}

/// `GET /v1/apps/{app}/runs/{n}`.
pub async fn show(
    State(ctx): State<Ctx>,
    Path((app, number)): Path<(String, u32)>,
) -> ApiResult<Json<Run>> {
    require_app(&ctx, &app).await?;
    Ok(Json(find(&ctx, &app, number).await?))
}

async fn find(ctx: &Ctx, app: &str, number: u32) -> ApiResult<Run> {
    ctx.store.run(app, number).await?.ok_or_else(|| {
        ApiErr::not_found(format!(
            "{app} has no run.{number}; `berth ps --app {app}` lists its one-off processes"
        ))
    })
}

/// `POST /v1/apps/{app}/runs/{n}/kill`: the run leaves its node's desired
/// state, and its agent stops it.
pub async fn kill(
    State(ctx): State<Ctx>,
    Path((app, number)): Path<(String, u32)>,
) -> ApiResult<Json<Run>> {
    require_app(&ctx, &app).await?;
    let run = ctx.store.kill_run(&app, number).await?;
    ctx.watchers.changed().await;
    log(
        &ctx,
        &app,
        Some(&run.name()),
        format!("Stopping {}: killed by `berth ps:kill`", run.name()),
    )
    .await;
    Ok(Json(run))
}

/// `PUT /v1/apps/{app}/runs/{n}/status`: what the run's agent saw.
pub async fn report(
    State(ctx): State<Ctx>,
    Path((app, number)): Path<(String, u32)>,
    Json(report): Json<RunReport>,
) -> ApiResult<Json<Run>> {
    let before = find(&ctx, &app, number).await?;
    let run = ctx
        .store
        .report_run(&app, number, &report, berth_model::now_millis())
        .await?;
    if run.state == before.state {
        return Ok(Json(run));
    }
    match run.state {
        RunState::Running => {
            emit(
                &ctx,
                &app,
                EventKind::RunStarted,
                format!(
                    "{} started (pid {}): {}",
                    run.name(),
                    run.pid.unwrap_or(0),
                    run.command
                ),
            )
            .await
        }
        RunState::Exited => {
            ctx.watchers.changed().await;
            emit(
                &ctx,
                &app,
                EventKind::RunExited,
                format!(
                    "{} {}",
                    run.name(),
                    run.outcome.as_deref().unwrap_or("exited")
                ),
            )
            .await
        }
        RunState::Pending => {}
    }
    Ok(Json(run))
}

/// `GET /v1/apps/{app}/runs/{n}/attach`: the caller's end.
pub async fn attach(
    State(ctx): State<Ctx>,
    Path((app, number)): Path<(String, u32)>,
    upgrade: WebSocketUpgrade,
) -> ApiResult<Response> {
    join(ctx, app, number, Side::Caller, upgrade).await
}

/// `GET /v1/apps/{app}/runs/{n}/process`: the agent's end.
pub async fn process(
    State(ctx): State<Ctx>,
    Path((app, number)): Path<(String, u32)>,
    upgrade: WebSocketUpgrade,
) -> ApiResult<Response> {
    join(ctx, app, number, Side::Process, upgrade).await
}

async fn join(
    ctx: Ctx,
    app: String,
    number: u32,
    side: Side,
    upgrade: WebSocketUpgrade,
) -> ApiResult<Response> {
    let run = find(&ctx, &app, number).await?;
    if !run.attach {
        return Err(ApiErr::bad_request(format!(
            "{} runs detached: its output is in `berth logs --app {app}`",
            run.name()
        )));
    }
    if run.state == RunState::Exited {
        return Err(ApiErr::conflict(format!(
            "{} has ended ({})",
            run.name(),
            run.outcome.as_deref().unwrap_or("exited")
        )));
    }
    let relays = ctx.relays.clone();
    Ok(upgrade.on_upgrade(move |socket| async move {
        relays.join(&app, number, side, socket, ATTACH_WAIT).await
    }))
}
