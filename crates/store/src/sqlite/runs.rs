//! One-off processes in SQLite: the `runs` table.

use berth_model::{NewRun, Run, RunReport, RunState, UnixMillis};
use sqlx::{Row, SqlitePool};

use super::Tx;
use crate::{Result, StoreError};

pub(super) async fn create(
    tx: &mut Tx<'_>,
    app: &str,
    release: u32,
    node: &str,
    run: &NewRun,
    created_by: &str,
    now: UnixMillis,
) -> Result<Run> {
    let last: Option<i64> = sqlx::query_scalar("SELECT MAX(number) FROM runs WHERE app = ?")
        .bind(app)
        .fetch_one(&mut **tx)
        .await?;
    let number = last.unwrap_or(0) + 1;
    sqlx::query(
        "INSERT INTO runs (app, number, release, command, attach, tty, node, state, created_at, created_by) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(app)
    .bind(number)
    .bind(release as i64)
    .bind(&run.command)
    .bind(run.attach as i64)
    .bind(run.tty as i64)
    .bind(node)
    .bind(RunState::Pending.as_str())
    .bind(now)
    .bind(created_by)
    .execute(&mut **tx)
    .await?;
    in_tx(tx, app, number as u32).await
}

pub(super) async fn get(pool: &SqlitePool, app: &str, number: u32) -> Result<Option<Run>> {
    let row = sqlx::query("SELECT * FROM runs WHERE app = ? AND number = ?")
        .bind(app)
        .bind(number as i64)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub(super) async fn active(pool: &SqlitePool, app: Option<&str>) -> Result<Vec<Run>> {
    let rows = sqlx::query(
        "SELECT * FROM runs WHERE state != 'exited' AND (? IS NULL OR app = ?) ORDER BY app, number",
    )
    .bind(app)
    .bind(app)
    .fetch_all(pool)
    .await?;
    rows.iter().map(from_row).collect()
}

pub(super) async fn kill(tx: &mut Tx<'_>, app: &str, number: u32) -> Result<Run> {
    let run = in_tx(tx, app, number).await?;
    if run.state == RunState::Exited {
        return Err(StoreError::Conflict(format!(
            "{} has already ended ({})",
            run.name(),
            run.outcome.as_deref().unwrap_or("exited")
        )));
    }
    sqlx::query("UPDATE runs SET kill_requested = 1 WHERE app = ? AND number = ?")
        .bind(app)
        .bind(number as i64)
        .execute(&mut **tx)
        .await?;
    in_tx(tx, app, number).await
}

/// Applies a report; returns the run and whether it has just ended.
pub(super) async fn report(
    tx: &mut Tx<'_>,
    app: &str,
    number: u32,
    report: &RunReport,
    now: UnixMillis,
) -> Result<(Run, bool)> {
    let run = in_tx(tx, app, number).await?;
    if run.state == RunState::Exited {
        return Ok((run, false));
    }
    let ended = report.state == RunState::Exited;
    sqlx::query(
        "UPDATE runs SET state = ?, pid = COALESCE(?, pid), exit_code = ?, outcome = ?, \
         started_at = COALESCE(started_at, ?), finished_at = ? WHERE app = ? AND number = ?",
    )
    .bind(report.state.as_str())
    .bind(report.pid.map(i64::from))
    .bind(report.exit_code)
    .bind(&report.outcome)
    .bind((report.state != RunState::Pending).then_some(now))
    .bind(ended.then_some(now))
    .bind(app)
    .bind(number as i64)
    .execute(&mut **tx)
    .await?;
    Ok((in_tx(tx, app, number).await?, ended))
}

async fn in_tx(tx: &mut Tx<'_>, app: &str, number: u32) -> Result<Run> {
    let row = sqlx::query("SELECT * FROM runs WHERE app = ? AND number = ?")
        .bind(app)
        .bind(number as i64)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| {
            StoreError::NotFound(format!(
                "app {app:?} has no run.{number}; `berth ps --app {app}` lists its one-off processes"
            ))
        })?;
    from_row(&row)
}

fn from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Run> {
    let state: String = row.try_get("state")?;
    Ok(Run {
        app: row.try_get("app")?,
        number: row.try_get::<i64, _>("number")? as u32,
        release: row.try_get::<i64, _>("release")? as u32,
        command: row.try_get("command")?,
        attach: row.try_get::<i64, _>("attach")? != 0,
        tty: row.try_get::<i64, _>("tty")? != 0,
        node: row.try_get("node")?,
        state: RunState::parse(&state).ok_or_else(|| StoreError::corrupt("run state", &state))?,
        pid: row.try_get::<Option<i64>, _>("pid")?.map(|p| p as u32),
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        exit_code: row
            .try_get::<Option<i64>, _>("exit_code")?
            .map(|c| c as i32),
        outcome: row.try_get("outcome")?,
        kill_requested: row.try_get::<i64, _>("kill_requested")? != 0,
    })
}
