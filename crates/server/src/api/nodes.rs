//! What agents and routers watch and report.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::Json;
use berth_model::{NodeDesired, NodeReport, ReportAnswer, RouteTable, RoutersApplied};
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
    /// The polling router's name: its poll says it has applied `after`.
    router: Option<String>,
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
        // A router asks for what comes after the revision it has applied.
        ctx.store
            .record_router(router, q.after, berth_model::now_millis())
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

#[derive(Deserialize)]
pub struct AppliedQuery {
    revision: u64,
    /// Seconds to wait for every live router to apply `revision`.
    #[serde(default)]
    wait: u64,
}

/// `GET /v1/routers/applied?revision=R&wait=S`: whether every live router
/// routes by revision R or later — what a drain waits for before it stops
/// an instance, and what `berth deploy` waits for before it says "live".
/// Routers that have not polled within the router timeout are gone and not
/// waited for.
pub async fn routers_applied(
    State(ctx): State<Ctx>,
    Query(q): Query<AppliedQuery>,
) -> ApiResult<Json<RoutersApplied>> {
    let wait = Duration::from_secs(q.wait).min(ctx.config.max_wait);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let now = berth_model::now_millis();
        let timeout = ctx.config.router_timeout.as_millis() as i64;
        let routers: std::collections::BTreeMap<String, u64> = ctx
            .store
            .routers()
            .await?
            .into_iter()
            .filter(|r| now - r.last_seen < timeout)
            .map(|r| (r.name, r.applied))
            .collect();
        let applied = routers.values().all(|a| *a >= q.revision);
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if applied || left.is_zero() {
            return Ok(Json(RoutersApplied { applied, routers }));
        }
        ctx.watchers.next_router_poll(left).await;
    }
}
