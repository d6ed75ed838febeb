//! Apps and their domains and instances.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use berth_model::names::{normalize_domain, validate_app_name};
use berth_model::{AddDomain, App, CreateApp, EventKind, Instance};
use berth_store::AppRecord;

use super::require_app;
use crate::error::ApiResult;
use crate::events::{emit, log};
use crate::scheduler::app_host;
use crate::{ApiErr, Ctx};

/// The URL an app is served on: the router's URL with the app's host.
fn app_url(ctx: &Ctx, name: &str) -> String {
    let host = app_host(name, &ctx.config.apps_domain);
    let Some(router) = &ctx.config.router_url else {
        return format!("http://{host}/");
    };
    let (scheme, authority) = router.split_once("://").unwrap_or(("http", router));
    let authority = authority.trim_end_matches('/');
    match authority.rsplit_once(':') {
        Some((_, port)) if port.chars().all(|c| c.is_ascii_digit()) => {
            format!("{scheme}://{host}:{port}/")
        }
        _ => format!("{scheme}://{host}/"),
    }
}

pub(crate) fn to_app(ctx: &Ctx, r: AppRecord) -> App {
    App {
        url: app_url(ctx, &r.name),
        name: r.name,
        created_at: r.created_at,
        current_release: r.current_release,
        formation: r.formation,
        domains: r.domains,
        rolling_release: r.rollout.map(|r| r.release),
        settings: r.settings,
    }
}

pub async fn list(State(ctx): State<Ctx>) -> ApiResult<Json<Vec<App>>> {
    let apps = ctx.store.apps().await?;
    Ok(Json(apps.into_iter().map(|a| to_app(&ctx, a)).collect()))
}

pub async fn create(
    State(ctx): State<Ctx>,
    Json(body): Json<CreateApp>,
) -> ApiResult<(StatusCode, Json<App>)> {
    validate_app_name(&body.name)?;
    let app = ctx
        .store
        .create_app(&body.name, berth_model::now_millis())
        .await?;
    ctx.watchers.changed().await;
    log(&ctx, &body.name, None, format!("App {} created", body.name)).await;
    Ok((StatusCode::CREATED, Json(to_app(&ctx, app))))
}

pub async fn show(State(ctx): State<Ctx>, Path(app): Path<String>) -> ApiResult<Json<App>> {
    Ok(Json(to_app(&ctx, require_app(&ctx, &app).await?)))
}

pub async fn destroy(State(ctx): State<Ctx>, Path(app): Path<String>) -> ApiResult<StatusCode> {
    require_app(&ctx, &app).await?;
    ctx.store.delete_app(&app).await?;
    ctx.watchers.changed().await;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn add_domain(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    Json(body): Json<AddDomain>,
) -> ApiResult<Json<App>> {
    require_app(&ctx, &app).await?;
    let domain = normalize_domain(&body.domain)?;
    ctx.store.add_domain(&app, &domain).await?;
    ctx.watchers.changed().await;
    log(&ctx, &app, None, format!("Domain {domain} added")).await;
    show(State(ctx), Path(app)).await
}

pub async fn remove_domain(
    State(ctx): State<Ctx>,
    Path((app, domain)): Path<(String, String)>,
) -> ApiResult<Json<App>> {
    require_app(&ctx, &app).await?;
    let domain = normalize_domain(&domain)?;
    ctx.store.remove_domain(&app, &domain).await?;
    ctx.watchers.changed().await;
    log(&ctx, &app, None, format!("Domain {domain} removed")).await;
    show(State(ctx), Path(app)).await
}

pub async fn instances(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
) -> ApiResult<Json<Vec<Instance>>> {
    require_app(&ctx, &app).await?;
    Ok(Json(ctx.store.instances(Some(&app)).await?))
}

/// Highest instance count per process type on one request; a typo such as
/// `web=1000` should not fork-bomb the node.
const MAX_INSTANCES: u32 = 100;

pub async fn scale(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    Json(counts): Json<std::collections::BTreeMap<String, u32>>,
) -> ApiResult<Json<App>> {
    let rec = require_app(&ctx, &app).await?;
    if counts.is_empty() {
        return Err(ApiErr::bad_request(
            "say what to scale, e.g. `berth scale web=2`",
        ));
    }
    let version = rec.current_release.ok_or_else(|| {
        ApiErr::bad_request(format!(
            "{app} has no release yet: deploy it before scaling"
        ))
    })?;
    let release = ctx.store.release(&app, version).await?;
    let build = match release {
        Some(r) => ctx.store.build(&r.build_id).await?,
        None => None,
    };
    let types: Vec<String> = build
        .and_then(|b| b.build.artifact)
        .map(|a| a.processes.into_keys().collect())
        .unwrap_or_default();
    for (process_type, count) in &counts {
        if !types.contains(process_type) {
            return Err(ApiErr::bad_request(format!(
                "{app} has no process type {process_type:?}; v{version}'s Procfile defines: {}",
                types.join(", ")
            )));
        }
        if berth_model::is_singleton(process_type) && *count > 1 {
            return Err(ApiErr::bad_request(format!(
                "{process_type} is a singleton type: two would run every scheduled job twice; scale it to 0 or 1"
            )));
        }
        if *count > MAX_INSTANCES {
            return Err(ApiErr::bad_request(format!(
                "{process_type}={count} is more than {MAX_INSTANCES} instances"
            )));
        }
    }
    let rec = ctx.store.set_formation(&app, &counts).await?;
    ctx.watchers.changed().await;
    let summary = berth_model::formation_text(&counts);
    emit(
        &ctx,
        &app,
        EventKind::Scaled,
        format!("Scaled to {summary}"),
    )
    .await;
    Ok(Json(to_app(&ctx, rec)))
}
