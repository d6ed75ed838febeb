//! What agents and routers watch and report.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::Json;
use berth_model::{DepartedSessions, NodeDesired, NodeReport, ReportAnswer, RouteTable};
use serde::Deserialize;

use crate::error::{ApiErr, ApiResult};
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
    /// The polling router's name: its poll says it has applied `after`.
    router: Option<String>,
    /// The polling router's WebSocket sessions to instances it no longer
    /// routes to: a JSON list of [`DepartedSessions`] (none when absent).
    sessions: Option<String>,
}

async fn snapshot_after(ctx: &Ctx, q: &WatchQuery) -> ApiResult<Snapshot> {
    let wait = Duration::from_secs(q.wait).min(ctx.config.max_wait);
    ctx.watchers.revision_after(q.after, wait).await;
    Ok(Snapshot::load(ctx.store.as_ref(), &*ctx.opener).await?)
}

pub async fn desired(
    State(ctx): State<Ctx>,
    Path(node): Path<String>,
    Query(q): Query<WatchQuery>,
) -> ApiResult<Json<NodeDesired>> {
    let s = snapshot_after(&ctx, &q).await?;
    Ok(Json(node_desired(&s, &node, &ctx.config.apps_domain)))
}

pub async fn routes(
    State(ctx): State<Ctx>,
    Query(q): Query<WatchQuery>,
) -> ApiResult<Json<RouteTable>> {
    if let Some(router) = &q.router {
        let sessions: Vec<DepartedSessions> = match &q.sessions {
            Some(json) => serde_json::from_str(json).map_err(|e| {
                ApiErr::bad_request(format!(
                    "sessions: not a JSON list of WebSocket sessions by instance ({e}); is this router older or newer than the server?"
                ))
            })?,
            None => Vec::new(),
        };
        // A router asks for what comes after the revision it has applied.
        ctx.store
            .record_router(router, q.after, &sessions, berth_model::now_millis())
            .await?;
        ctx.watchers.router_polled();
    }
    let s = snapshot_after(&ctx, &q).await?;
    Ok(Json(route_table(&s, &ctx.config.apps_domain)))
}

pub async fn report(
    State(ctx): State<Ctx>,
    Path(node): Path<String>,
    Json(report): Json<NodeReport>,
) -> ApiResult<Json<ReportAnswer>> {
    let changed = ctx
        .store
        .replace_node_instances(&node, &report.instances, berth_model::now_millis())
        .await?;
    if changed {
        ctx.watchers.changed().await;
    }
    Ok(Json(ReportAnswer {
        revision: ctx.store.revision().await?,
    }))
}
