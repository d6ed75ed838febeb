//! Releases and their release phase.

use axum::extract::{Path, State};
use axum::Json;
use berth_model::{Claim, Release, ReleasePhaseResult};

use super::require_app;
use crate::error::ApiResult;
use crate::events::log;
use crate::{ApiErr, Ctx};

pub async fn list(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<Release>>> {
    require_app(&ctx, &app).await?;
    Ok(Json(ctx.store.releases(&app).await?))
}

/// Accepts `3` and `v3`.
fn parse_version(v: &str) -> ApiResult<u32> {
    v.trim_start_matches('v')
        .parse()
        .map_err(|_| ApiErr::bad_request(format!("{v:?} is not a release version; use e.g. v3")))
}

pub async fn show(
    State(ctx): State<Ctx>,
    Path((app, version)): Path<(String, String)>,
) -> ApiResult<Json<Release>> {
    require_app(&ctx, &app).await?;
    let v = parse_version(&version)?;
    ctx.store.release(&app, v).await?.map(Json).ok_or_else(|| {
        ApiErr::not_found(format!(
            "app {app:?} has no release v{v}; `berth releases --app {app}` lists them"
        ))
    })
}

pub async fn claim(
    State(ctx): State<Ctx>,
    Path((app, version)): Path<(String, String)>,
    Json(claim): Json<Claim>,
) -> ApiResult<Json<Release>> {
    let v = parse_version(&version)?;
    let r = ctx.store.claim_release(&app, v, &claim.node).await?;
    ctx.watchers.changed().await;
    Ok(Json(r))
}

pub async fn phase(
    State(ctx): State<Ctx>,
    Path((app, version)): Path<(String, String)>,
    Json(result): Json<ReleasePhaseResult>,
) -> ApiResult<Json<Release>> {
    let v = parse_version(&version)?;
    let error = match (result.ok, result.error) {
        (true, _) => None,
        (false, e) => Some(e.unwrap_or_else(|| "the release command failed".into())),
    };
    let r = ctx
        .store
        .finish_release_phase(&app, v, error.as_deref())
        .await?;
    ctx.watchers.changed().await;
    let msg = match &error {
        None => format!("Release v{v}: release phase succeeded, rolling out"),
        Some(e) => format!(
            "Release v{v} failed in its release phase, the previous release keeps serving: {e}"
        ),
    };
    log(&ctx, &app, Some(&r.build_id), msg).await;
    Ok(Json(r))
}
