//! What starts or shapes a rollout besides a deploy: rollback, restart, and
//! the app's rollout policy and health check.

use axum::extract::{Path, State};
use axum::Json;
use berth_model::{App, AppSettings, EventKind, Release, RestartRequest, RollbackRequest};

use super::apps::to_app;
use super::require_app;
use crate::error::ApiResult;
use crate::events::emit;
use crate::{ApiErr, Ctx};

pub async fn rollback(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    Json(req): Json<RollbackRequest>,
) -> ApiResult<Json<Release>> {
    let rec = require_app(&ctx, &app).await?;
    if rec.current_release == Some(req.version) && rec.rollout.is_none() {
        return Err(ApiErr::bad_request(format!(
            "v{} is already the live release of {app}",
            req.version
        )));
    }
    let r = ctx
        .store
        .rollback(&app, req.version, "admin", berth_model::now_millis())
        .await?;
    ctx.watchers.changed().await;
    emit(
        &ctx,
        &app,
        EventKind::ReleaseCreated,
        format!(
            "Release v{} created: rollback to v{}",
            r.version, req.version
        ),
    )
    .await;
    Ok(Json(r))
}

pub async fn restart(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    Json(req): Json<RestartRequest>,
) -> ApiResult<Json<App>> {
    let rec = require_app(&ctx, &app).await?;
    for t in &req.process_types {
        if !rec.formation.contains_key(t) {
            return Err(ApiErr::bad_request(format!(
                "{app} has no process type {t:?}; it runs: {}",
                rec.formation.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let rollout = ctx
        .store
        .restart(&app, &req.process_types, berth_model::now_millis())
        .await?;
    ctx.watchers.changed().await;
    emit(
        &ctx,
        &app,
        EventKind::Restarted,
        format!(
            "Rolling {} of v{} started",
            rollout.description, rollout.release
        ),
    )
    .await;
    Ok(Json(to_app(&ctx, require_app(&ctx, &app).await?)))
}

pub async fn settings(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    Json(settings): Json<AppSettings>,
) -> ApiResult<Json<App>> {
    let rec = require_app(&ctx, &app).await?;
    settings.rollout.validate().map_err(ApiErr::bad_request)?;
    if settings.routing.max_body == Some(0) {
        return Err(ApiErr::bad_request(
            "max_body=0 would refuse every request with a body; use e.g. max_body=10MB, or none for the router's default",
        ));
    }
    for (process_type, limits) in &settings.limits {
        if process_type != berth_model::limits::RUN_TYPE
            && !rec.formation.contains_key(process_type)
        {
            return Err(ApiErr::bad_request(format!(
                "{app} has no process type {process_type:?}; limits apply to: {}, and run (one-off processes)",
                rec.formation.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        limits
            .validate()
            .map_err(|e| ApiErr::bad_request(format!("{process_type}: {e}")))?;
    }
    if let Some(h) = &settings.healthcheck {
        h.validate().map_err(ApiErr::bad_request)?;
    }
    let rec = ctx.store.set_settings(&app, &settings).await?;
    ctx.watchers.changed().await;
    Ok(Json(to_app(&ctx, rec)))
}
