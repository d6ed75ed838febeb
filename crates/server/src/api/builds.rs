//! Builds: source upload, claims by agents, results.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use berth_model::{human_size, Build, BuildResult, Claim};
use berth_store::sqlite::short_id;
use berth_store::NewBuild;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::require_app;
use crate::error::ApiResult;
use crate::events::log;
use crate::{ApiErr, Ctx};

fn too_big(size: u64, max: u64) -> ApiErr {
    ApiErr(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the source archive is {} but this Berth accepts at most {}: list large files (data, media, virtualenvs) in .gitignore or .berthignore, or raise the server's --max-source-size",
            human_size(size),
            human_size(max)
        ),
    )
}

fn new_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn upload(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Build>)> {
    require_app(&ctx, &app).await?;
    let max = ctx.config.max_source_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared.filter(|l| *l > max) {
        return Err(too_big(len, max));
    }
    let id = new_id();
    let final_path = source_path(&ctx.config, &id);
    let tmp_path = ctx.config.sources_dir.join(format!("{id}.upload"));
    let size = match receive(body, &tmp_path, max).await {
        Ok(size) => size,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp_path).await;
            return Err(e);
        }
    };
    if size == 0 {
        let _ = tokio::fs::remove_file(&tmp_path).await;
        return Err(ApiErr::bad_request("the source archive is empty"));
    }
    tokio::fs::rename(&tmp_path, &final_path)
        .await
        .map_err(ApiErr::internal)?;
    let rec = ctx
        .store
        .create_build(NewBuild {
            id: id.clone(),
            app: app.clone(),
            source_size: size,
            created_by: "admin".into(),
            now: berth_model::now_millis(),
        })
        .await?;
    ctx.watchers.changed().await;
    log(
        &ctx,
        &app,
        Some(&id),
        format!(
            "Source received ({}), build {} queued",
            human_size(size),
            short_id(&id)
        ),
    )
    .await;
    Ok((StatusCode::CREATED, Json(rec.build)))
}

/// Streams the request body to `path`, refusing it once it passes `max`.
async fn receive(body: Body, path: &std::path::Path, max: u64) -> ApiResult<u64> {
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(ApiErr::internal)?;
    let mut stream = body.into_data_stream();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiErr::bad_request(format!("upload interrupted: {e}")))?;
        size += chunk.len() as u64;
        if size > max {
            return Err(too_big(size, max));
        }
        file.write_all(&chunk).await.map_err(ApiErr::internal)?;
    }
    file.flush().await.map_err(ApiErr::internal)?;
    file.sync_all().await.map_err(ApiErr::internal)?;
    Ok(size)
}

pub async fn show(
    State(ctx): State<Ctx>,
    Path((app, id)): Path<(String, String)>,
) -> ApiResult<Json<Build>> {
    let rec = ctx
        .store
        .build(&id)
        .await?
        .filter(|b| b.build.app == app)
        .ok_or_else(|| ApiErr::not_found(format!("app {app:?} has no build {id:?}")))?;
    Ok(Json(rec.build))
}

/// Where the uploaded source of build `id` is kept.
pub(crate) fn source_path(config: &crate::ServerConfig, id: &str) -> std::path::PathBuf {
    config.sources_dir.join(format!("{id}.tar.gz"))
}

pub async fn source(State(ctx): State<Ctx>, Path(id): Path<String>) -> ApiResult<Response> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ApiErr::not_found(format!("no build {id:?}")));
    }
    let path = source_path(&ctx.config, &id);
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| ApiErr::not_found(format!("the source of build {id} is gone")))?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Response::builder()
        .header(header::CONTENT_TYPE, "application/gzip")
        .body(body)
        .map_err(ApiErr::internal)
}

pub async fn claim(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    Json(claim): Json<Claim>,
) -> ApiResult<Json<Build>> {
    let rec = ctx
        .store
        .claim_build(&id, &claim.node, berth_model::now_millis())
        .await?;
    ctx.watchers.changed().await;
    log(
        &ctx,
        &rec.build.app,
        Some(&id),
        format!("Build {} started on node {}", short_id(&id), claim.node),
    )
    .await;
    Ok(Json(rec.build))
}

pub async fn result(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    Json(result): Json<BuildResult>,
) -> ApiResult<Json<Build>> {
    let now = berth_model::now_millis();
    let build = match result {
        BuildResult::Succeeded { artifact } => {
            let (rec, release) = ctx.store.succeed_build(&id, &artifact, now).await?;
            let next = if release.status == berth_model::ReleaseStatus::Rolling {
                "rolling out".to_string()
            } else {
                format!(
                    "running release command: {}",
                    artifact.release_command.unwrap_or_default()
                )
            };
            log(
                &ctx,
                &rec.build.app,
                Some(&id),
                format!(
                    "Build {} succeeded; release v{} created, {next}",
                    short_id(&id),
                    release.version
                ),
            )
            .await;
            rec.build
        }
        BuildResult::Failed { error } => {
            let rec = ctx.store.fail_build(&id, &error, now).await?;
            log(
                &ctx,
                &rec.build.app,
                Some(&id),
                format!("Build {} failed: {error}", short_id(&id)),
            )
            .await;
            rec.build
        }
    };
    ctx.watchers.changed().await;
    Ok(Json(build))
}
