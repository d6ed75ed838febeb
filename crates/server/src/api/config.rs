//! Config vars and secrets: each change makes a new release of the same
//! build and rolls it out.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::Json;
use berth_model::names::validate_env_name;
use berth_model::{ConfigAnswer, ConfigChange, EventKind, Release};
use berth_store::{AppRecord, ConfigEdit};
use serde::Deserialize;

use super::require_app;
use crate::error::ApiResult;
use crate::events::emit;
use crate::{ApiErr, Ctx};

/// What binds a sealed secret to its place: a value copied to another app
/// or name does not open.
pub(crate) fn secret_aad(app: &str, name: &str) -> String {
    format!("app/{app}/secret/{name}")
}

#[derive(Deserialize, Default)]
pub struct RevealQuery {
    #[serde(default)]
    reveal: bool,
}

pub async fn show(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    Query(q): Query<RevealQuery>,
) -> ApiResult<Json<ConfigAnswer>> {
    let rec = require_app(&ctx, &app).await?;
    Ok(Json(answer(&ctx, rec, None, q.reveal).await?))
}

async fn answer(
    ctx: &Ctx,
    rec: AppRecord,
    release: Option<Release>,
    reveal: bool,
) -> ApiResult<ConfigAnswer> {
    let mut secrets: BTreeMap<String, Option<String>> =
        rec.secrets.keys().map(|k| (k.clone(), None)).collect();
    if reveal && !rec.secrets.is_empty() {
        let key = require_key(ctx)?;
        for s in ctx.store.secrets(&rec.name).await? {
            if rec.secrets.get(&s.name) == Some(&s.version) {
                let value = key
                    .open(&s.sealed, &secret_aad(&rec.name, &s.name))
                    .map_err(|e| ApiErr::internal(format!("secret {}: {e}", s.name)))?;
                secrets.insert(s.name.clone(), Some(value));
            }
        }
    }
    Ok(ConfigAnswer {
        config: rec.config,
        secrets,
        release,
    })
}

fn require_key(ctx: &Ctx) -> ApiResult<&berth_secrets::SecretKey> {
    ctx.config.secret_key.as_ref().ok_or_else(|| {
        ApiErr::conflict(
            "this server has no secret key: start it with a data dir (the key file is created there) or set BERTH_SECRET_KEY",
        )
    })
}

fn validate(change: &ConfigChange) -> ApiResult<()> {
    if change.set.is_empty() && change.unset.is_empty() {
        return Err(ApiErr::bad_request(
            "nothing to change: give NAME=VALUE pairs to set or NAMEs to unset",
        ));
    }
    for name in change.set.keys().chain(&change.unset) {
        validate_env_name(name)?;
    }
    if let Some(both) = change.set.keys().find(|k| change.unset.contains(k)) {
        return Err(ApiErr::bad_request(format!(
            "{both} is both set and unset in one change; pick one"
        )));
    }
    Ok(())
}

/// Unsetting what is not set would make a release that changes nothing:
/// refused, naming the vars, so a typo does not go unnoticed.
fn require_set(
    unset: &[String],
    present: impl Fn(&str) -> bool,
    kind: &str,
    app: &str,
) -> ApiResult<()> {
    let missing: Vec<&str> = unset
        .iter()
        .map(String::as_str)
        .filter(|n| !present(n))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(ApiErr::bad_request(format!(
        "{} not set on {app}, so there is nothing to unset; `berth config --app {app}` lists its {kind}",
        missing.join(", ")
    )))
}

/// What the release list shows for a change: names only, never values.
fn describe(kind: &str, change: &ConfigChange) -> String {
    let mut parts = Vec::new();
    if !change.set.is_empty() {
        parts.push(format!(
            "{kind} set {}",
            change.set.keys().cloned().collect::<Vec<_>>().join(" ")
        ));
    }
    if !change.unset.is_empty() {
        parts.push(format!("{kind} unset {}", change.unset.join(" ")));
    }
    parts.join(", ")
}

pub async fn change_config(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    Json(change): Json<ConfigChange>,
) -> ApiResult<Json<ConfigAnswer>> {
    let rec = require_app(&ctx, &app).await?;
    validate(&change)?;
    require_set(
        &change.unset,
        |n| rec.config.contains_key(n),
        "config vars",
        &app,
    )?;
    let edit = ConfigEdit {
        set: change.set.clone(),
        unset: change.unset.clone(),
        ..Default::default()
    };
    apply(ctx, &app, edit, describe("config", &change)).await
}

pub async fn change_secrets(
    State(ctx): State<Ctx>,
    Path(app): Path<String>,
    Json(change): Json<ConfigChange>,
) -> ApiResult<Json<ConfigAnswer>> {
    let rec = require_app(&ctx, &app).await?;
    validate(&change)?;
    require_set(
        &change.unset,
        |n| rec.secrets.contains_key(n),
        "secrets",
        &app,
    )?;
    let key = require_key(&ctx)?;
    let mut sealed = BTreeMap::new();
    for (name, value) in &change.set {
        let s = key
            .seal(value, &secret_aad(&app, name))
            .map_err(|e| ApiErr::internal(format!("could not seal {name}: {e}")))?;
        sealed.insert(name.clone(), s);
    }
    let edit = ConfigEdit {
        set_secrets: sealed,
        unset_secrets: change.unset.clone(),
        ..Default::default()
    };
    apply(ctx, &app, edit, describe("secrets", &change)).await
}

async fn apply(
    ctx: Ctx,
    app: &str,
    edit: ConfigEdit,
    description: String,
) -> ApiResult<Json<ConfigAnswer>> {
    let (rec, release) = ctx
        .store
        .change_config(app, &edit, &description, "admin", berth_model::now_millis())
        .await?;
    ctx.watchers.changed().await;
    if let Some(r) = &release {
        emit(
            &ctx,
            app,
            EventKind::ReleaseCreated,
            format!("Release v{} created: {description}", r.version),
        )
        .await;
    }
    Ok(Json(answer(&ctx, rec, release, false).await?))
}
