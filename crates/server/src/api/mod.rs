//! The `/v1` routes, one module per resource.

mod apps;
mod builds;
mod config;
mod logs;
mod nodes;
mod releases;
mod rollouts;
mod routers;
mod runs;

pub(crate) use builds::source_path;
pub(crate) use config::secret_aad;

use axum::routing::{get, patch, post, put};
use axum::{middleware, Json, Router};
use berth_model::Info;

use crate::error::ApiResult;
use crate::{auth, Ctx};

pub fn routes(ctx: Ctx) -> Router {
    let v1 = Router::new()
        .route("/info", get(info))
        .route("/apps", get(apps::list).post(apps::create))
        .route("/apps/{app}", get(apps::show).delete(apps::destroy))
        .route("/apps/{app}/domains", post(apps::add_domain))
        .route(
            "/apps/{app}/domains/{domain}",
            axum::routing::delete(apps::remove_domain),
        )
        .route("/apps/{app}/instances", get(apps::instances))
        .route("/apps/{app}/formation", post(apps::scale))
        .route("/apps/{app}/builds", post(builds::upload))
        .route("/apps/{app}/builds/{id}", get(builds::show))
        .route("/builds/{id}/source", get(builds::source))
        .route("/builds/{id}/claim", post(builds::claim))
        .route("/builds/{id}/result", post(builds::result))
        .route("/apps/{app}/releases", get(releases::list))
        .route("/apps/{app}/releases/{version}", get(releases::show))
        .route(
            "/apps/{app}/releases/{version}/claim",
            post(releases::claim),
        )
        .route(
            "/apps/{app}/releases/{version}/phase",
            post(releases::phase),
        )
        .route(
            "/apps/{app}/config",
            get(config::show).patch(config::change_config),
        )
        .route("/apps/{app}/secrets", patch(config::change_secrets))
        .route("/apps/{app}/rollback", post(rollouts::rollback))
        .route("/apps/{app}/restart", post(rollouts::restart))
        .route("/apps/{app}/settings", put(rollouts::settings))
        .route("/apps/{app}/events", get(logs::events))
        .route("/apps/{app}/runs", get(runs::list).post(runs::create))
        .route("/apps/{app}/runs/{number}", get(runs::show))
        .route("/apps/{app}/runs/{number}/kill", post(runs::kill))
        .route("/apps/{app}/runs/{number}/status", put(runs::report))
        .route("/apps/{app}/runs/{number}/attach", get(runs::attach))
        .route("/apps/{app}/runs/{number}/process", get(runs::process))
        .route("/routers/applied", get(routers::applied))
        .route("/routers/sessions", get(routers::sessions))
        .route("/apps/{app}/logs", get(logs::read))
        .route("/logs", post(logs::append))
        .route("/nodes/{node}/desired", get(nodes::desired))
        .route("/nodes/{node}/instances", put(nodes::report))
        .route("/routes", get(nodes::routes))
        .layer(middleware::from_fn_with_state(
            ctx.clone(),
            auth::require_token,
        ))
        .route("/health", get(|| async { "ok" }));
    Router::new().nest("/v1", v1).with_state(ctx)
}

async fn info(axum::extract::State(ctx): axum::extract::State<Ctx>) -> Json<Info> {
    Json(Info {
        version: env!("CARGO_PKG_VERSION").into(),
        apps_domain: ctx.config.apps_domain.clone(),
        router_url: ctx.config.router_url.clone(),
        max_source_bytes: ctx.config.max_source_bytes,
        revision: ctx.store.revision().await.unwrap_or_default(),
    })
}

/// Fails with 404 when the app does not exist.
pub(crate) async fn require_app(ctx: &Ctx, app: &str) -> ApiResult<berth_store::AppRecord> {
    ctx.store.app(app).await?.ok_or_else(|| {
        crate::ApiErr::not_found(format!(
            "no app named {app:?}; `berth apps list` shows the apps, `berth apps create {app}` makes it"
        ))
    })
}
