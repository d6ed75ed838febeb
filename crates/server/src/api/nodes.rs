//! What agents and routers watch and report.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use berth_model::{NodeDesired, NodeReport, RouteTable};
use serde::Deserialize;

use crate::error::ApiResult;
use crate::scheduler::{node_desired, route_table, Snapshot};
use crate::Ctx;

#[derive(Deserialize)]
pub struct WatchQuery {
    /// Answer once the revision is past this one.
    #[serde(default)]
    after: u64,
    /// Seconds to wait for that.
    #[serde(default)]
    wait: u64,
}

async fn snapshot_after(ctx: &Ctx, q: &WatchQuery) -> ApiResult<Snapshot> {
    let wait = Duration::from_secs(q.wait).min(ctx.config.max_wait);
    ctx.watchers.revision_after(q.after, wait).await;
    Ok(Snapshot::load(ctx.store.as_ref()).await?)
}

pub async fn desired(
    State(ctx): State<Ctx>,
    Path(node): Path<String>,
    Query(q): Query<WatchQuery>,
) -> ApiResult<Json<NodeDesired>> {
    let s = snapshot_after(&ctx, &q).await?;
    Ok(Json(node_desired(&s, &node)))
}

pub async fn routes(
    State(ctx): State<Ctx>,
    Query(q): Query<WatchQuery>,
) -> ApiResult<Json<RouteTable>> {
    let s = snapshot_after(&ctx, &q).await?;
    Ok(Json(route_table(&s, &ctx.config.apps_domain)))
}

pub async fn report(
    State(ctx): State<Ctx>,
    Path(node): Path<String>,
    Json(report): Json<NodeReport>,
) -> ApiResult<StatusCode> {
    let changed = ctx
        .store
        .replace_node_instances(&node, &report.instances, berth_model::now_millis())
        .await?;
    if changed {
        ctx.watchers.changed().await;
    }
    Ok(StatusCode::NO_CONTENT)
}
