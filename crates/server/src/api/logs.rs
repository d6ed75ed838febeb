//! App logs: reading (with follow) and appending.

use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use berth_model::{LogPage, NewLogLine};
use serde::Deserialize;

use super::require_app;
use crate::error::ApiResult;
use crate::{ApiErr, Ctx};

#[derive(Deserialize)]
pub struct LogQuery {
    /// Lines after this id; without it, the last `tail` lines.
    after: Option<i64>,
    /// How many lines at most (default 100, at most 1000).
    tail: Option<u32>,
    /// Seconds to wait for new lines when there are none yet.
    wait: Option<u64>,
    /// Only lines of this build.
    scope: Option<String>,
}

const MAX_LINES: u32 = 1000;
const MAX_LINE_BYTES: usize = 16 * 1024;
const MAX_BATCH: usize = 5000;

pub async fn read(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Json<LogPage>> {
    require_app(&ctx, &app).await?;
    let limit = q.tail.unwrap_or(100).clamp(1, MAX_LINES);
    let wait = Duration::from_secs(q.wait.unwrap_or(0)).min(ctx.config.max_wait);
    let deadline = Instant::now() + wait;
    loop {
        let seen = ctx.watchers.last_log_id();
        let lines = ctx
            .store
            .logs(&app, q.after, limit, q.scope.as_deref())
            .await?;
        if let Some(last) = lines.last() {
            let cursor = last.id;
            return Ok(Json(LogPage { lines, cursor }));
        }
        let now = Instant::now();
        if now >= deadline {
            let cursor = q.after.unwrap_or(0).max(seen);
            return Ok(Json(LogPage { lines, cursor }));
        }
        ctx.watchers.logs_after(seen, deadline - now).await;
    }
}

#[derive(Deserialize)]
pub struct EventQuery {
    #[serde(default)]
    after: i64,
    wait: Option<u64>,
    limit: Option<u32>,
}

/// `GET /v1/apps/{app}/events`: the app's state changes, oldest first,
/// long-polling like the log when `wait` is given.
pub async fn events(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    Query(q): Query<EventQuery>,
) -> ApiResult<Json<LogPage>> {
    require_app(&ctx, &app).await?;
    let limit = q.limit.unwrap_or(MAX_LINES).clamp(1, MAX_LINES);
    let wait = Duration::from_secs(q.wait.unwrap_or(0)).min(ctx.config.max_wait);
    let deadline = Instant::now() + wait;
    loop {
        let seen = ctx.watchers.last_log_id();
        let lines = ctx.store.events(&app, q.after, limit).await?;
        let now = Instant::now();
        if !lines.is_empty() || now >= deadline {
            let cursor = lines.last().map(|l| l.id).unwrap_or(q.after);
            return Ok(Json(LogPage { lines, cursor }));
        }
        ctx.watchers.logs_after(seen, deadline - now).await;
    }
}

pub async fn append(
    State(ctx): State<Ctx>,
    Json(mut lines): Json<Vec<NewLogLine>>,
) -> ApiResult<StatusCode> {
    if lines.len() > MAX_BATCH {
        return Err(ApiErr::bad_request(format!(
            "too many log lines in one request ({}, at most {MAX_BATCH})",
            lines.len()
        )));
    }
    for l in &mut lines {
        if l.line.len() > MAX_LINE_BYTES {
            let mut cut = MAX_LINE_BYTES;
            while !l.line.is_char_boundary(cut) {
                cut -= 1;
            }
            l.line.truncate(cut);
            l.line.push_str(" [truncated]");
        }
    }
    if !lines.is_empty() {
        let last = ctx.store.append_logs(&lines).await?;
        ctx.watchers.logs_appended(last);
    }
    Ok(StatusCode::NO_CONTENT)
}
