//! What drains ask about routers: whether every live router has applied a
//! revision, and which WebSocket sessions they still carry to an instance
//! they no longer route to. Both come from the routers' polls
//! ([`super::nodes::routes`]), kept in the store per router; a router that
//! has not polled within the router timeout is gone and counts for neither.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::Json;
use berth_model::{RouterSessions, RoutersApplied};
use berth_store::RouterSeen;
use serde::Deserialize;

use crate::error::ApiResult;
use crate::Ctx;

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
pub async fn applied(
    State(ctx): State<Ctx>,
    Query(q): Query<AppliedQuery>,
) -> ApiResult<Json<RoutersApplied>> {
    let deadline = deadline(&ctx, q.wait);
    loop {
        let routers: BTreeMap<String, u64> = live(&ctx)
            .await?
            .into_iter()
            .map(|r| (r.name, r.applied))
            .collect();
        let applied = routers.values().all(|a| *a >= q.revision);
        if applied || !next_poll(&ctx, deadline).await {
            return Ok(Json(RoutersApplied { applied, routers }));
        }
    }
}

#[derive(Deserialize)]
pub struct SessionsQuery {
    app: String,
    /// The instance's address and route-table id.
    addr: String,
    id: String,
    /// Seconds to wait for every one of its sessions to end.
    #[serde(default)]
    wait: u64,
}

/// `GET /v1/routers/sessions?app=A&addr=ADDR&id=ID&wait=S`: the WebSocket
/// sessions live routers still carry to the instance at ADDR, answered once
/// there are none or S seconds passed — what a drain waits for, after every
/// router confirmed it left their tables, before it stops the instance.
pub async fn sessions(
    State(ctx): State<Ctx>,
    Query(q): Query<SessionsQuery>,
) -> ApiResult<Json<RouterSessions>> {
    let deadline = deadline(&ctx, q.wait);
    loop {
        let routers: BTreeMap<_, _> = live(&ctx)
            .await?
            .into_iter()
            .filter_map(|r| {
                let carried = r
                    .sessions
                    .into_iter()
                    .find(|s| s.app == q.app && s.addr == q.addr && s.id == q.id)
                    .filter(|s| s.open > 0)?;
                Some((r.name, carried))
            })
            .collect();
        if routers.is_empty() || !next_poll(&ctx, deadline).await {
            return Ok(Json(RouterSessions { routers }));
        }
    }
}

fn deadline(ctx: &Ctx, wait_secs: u64) -> tokio::time::Instant {
    let wait = Duration::from_secs(wait_secs).min(ctx.config.max_wait);
    tokio::time::Instant::now() + wait
}

/// Routers that polled within the router timeout.
async fn live(ctx: &Ctx) -> ApiResult<Vec<RouterSeen>> {
    let now = berth_model::now_millis();
    let timeout = ctx.config.router_timeout.as_millis() as i64;
    let mut routers = ctx.store.routers().await?;
    routers.retain(|r| now - r.last_seen < timeout);
    Ok(routers)
}

/// Waits for the next router poll; false once `deadline` has passed.
async fn next_poll(ctx: &Ctx, deadline: tokio::time::Instant) -> bool {
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    if left.is_zero() {
        return false;
    }
    ctx.watchers.next_router_poll(left).await;
    true
}
