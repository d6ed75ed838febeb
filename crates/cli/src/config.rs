//! Config vars, secrets, rollback, restart, health check and rollout policy:
//! everything that changes how the current code runs.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use berth_client::Client;
use berth_model::{ConfigAnswer, ConfigChange, HealthCheck, RolloutPolicy};

use crate::output::{json, table};
use crate::rollout::{follow_release, follow_restart};
use crate::{LimitsCommand, VarsCommand};

/// Parses `NAME=VALUE` pairs (the value may contain `=`).
fn parse_pairs(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for pair in pairs {
        let Some((name, value)) = pair.split_once('=') else {
            bail!("{pair:?} is not NAME=VALUE; use e.g. DEBUG=0");
        };
        berth_model::names::validate_env_name(name)?;
        out.insert(name.to_string(), value.to_string());
    }
    Ok(out)
}

/// `berth config [--reveal] [--json]`.
pub async fn show(client: &Client, app: &str, reveal: bool, as_json: bool) -> anyhow::Result<()> {
    let c = client.config(app, reveal).await?;
    if as_json {
        return json(&c);
    }
    if c.config.is_empty() && c.secrets.is_empty() {
        println!(
            "{app} has no config vars; set some with `berth config set NAME=VALUE --app {app}`"
        );
        return Ok(());
    }
    let mut rows: Vec<Vec<String>> = c
        .config
        .iter()
        .map(|(k, v)| vec![k.clone(), v.clone()])
        .collect();
    rows.extend(c.secrets.iter().map(|(k, v)| {
        vec![
            k.clone(),
            v.clone()
                .unwrap_or_else(|| "(secret: --reveal shows it)".into()),
        ]
    }));
    rows.sort();
    table(&["NAME", "VALUE"], &rows);
    Ok(())
}

/// `berth config set|unset` and `berth secrets set|unset`.
pub async fn change(client: &Client, command: VarsCommand, secrets: bool) -> anyhow::Result<()> {
    let (app, change) = match command {
        VarsCommand::Set { pairs, app } => (
            app.app,
            ConfigChange {
                set: parse_pairs(&pairs)?,
                unset: Vec::new(),
            },
        ),
        VarsCommand::Unset { names, app } => (
            app.app,
            ConfigChange {
                set: BTreeMap::new(),
                unset: names,
            },
        ),
    };
    let app = app.as_str();
    for name in &change.unset {
        berth_model::names::validate_env_name(name)?;
    }
    let previous = client.app(app).await?.current_release;
    let answer: ConfigAnswer = client.change_config(app, &change, secrets).await?;
    let what = if secrets { "Secrets" } else { "Config" };
    match answer.release {
        Some(r) => {
            println!(
                "-----> {what} changed: release v{} ({})",
                r.version, r.description
            );
            follow_release(client, app, r.version, previous).await?;
            println!("-----> v{} is live", r.version);
        }
        None => println!("{what} changed; {app} has no release yet, the next deploy uses it"),
    }
    Ok(())
}

/// `berth rollback vN`.
pub async fn rollback(client: &Client, app: &str, version: &str) -> anyhow::Result<()> {
    let v: u32 = version
        .trim_start_matches('v')
        .parse()
        .with_context(|| format!("{version:?} is not a release; use e.g. v2"))?;
    let previous = client.app(app).await?.current_release;
    let r = client.rollback(app, v).await?;
    println!("-----> Rolling back to v{v}: release v{}", r.version);
    follow_release(client, app, r.version, previous).await?;
    println!(
        "-----> v{} (the code and config of v{v}) is live",
        r.version
    );
    Ok(())
}

/// `berth restart [TYPE...]`.
pub async fn restart(client: &Client, app: &str, types: Vec<String>) -> anyhow::Result<()> {
    // Events are log lines: the newest line's id is where to follow from.
    let cursor = client
        .logs(app, None, Some(1), std::time::Duration::ZERO, None)
        .await?
        .cursor;
    let what = if types.is_empty() {
        "all processes".to_string()
    } else {
        types.join(" ")
    };
    client.restart(app, types).await?;
    println!("-----> Rolling restart of {what}");
    follow_restart(client, app, cursor).await
}

/// `berth healthcheck set PATH [...]` / `off` / show.
pub async fn healthcheck(
    client: &Client,
    app: &str,
    set: Option<HealthCheck>,
    off: bool,
) -> anyhow::Result<()> {
    let mut settings = client.app(app).await?.settings;
    if off {
        settings.healthcheck = None;
        client.set_settings(app, &settings).await?;
        println!("Health check of {app} removed; instances are up once they listen on PORT");
        return Ok(());
    }
    if let Some(hc) = set {
        hc.validate().map_err(anyhow::Error::msg)?;
        settings.healthcheck = Some(hc);
        client.set_settings(app, &settings).await?;
    }
    match &settings.healthcheck {
        Some(h) => println!(
            "GET {} every {}ms (timeout {}ms): up after {} passes, restarted after {} failures in a row",
            h.path, h.interval_ms, h.timeout_ms, h.rise, h.fall
        ),
        None => println!("{app} has no health check; set one with `berth healthcheck set /healthz --app {app}`"),
    }
    Ok(())
}

/// `berth rollout [--surge N] [--unavailable N] [--no-overlap T] [--overlap T]`.
pub async fn policy(
    client: &Client,
    app: &str,
    surge: Option<u32>,
    unavailable: Option<u32>,
    no_overlap: Vec<String>,
    overlap: Vec<String>,
) -> anyhow::Result<()> {
    let mut settings = client.app(app).await?.settings;
    let changed =
        surge.is_some() || unavailable.is_some() || !no_overlap.is_empty() || !overlap.is_empty();
    let p: &mut RolloutPolicy = &mut settings.rollout;
    if let Some(s) = surge {
        p.surge = s;
    }
    if let Some(u) = unavailable {
        p.unavailable = u;
    }
    for t in no_overlap {
        if !p.no_overlap.contains(&t) {
            p.no_overlap.push(t);
        }
    }
    p.no_overlap.retain(|t| !overlap.contains(t));
    if changed {
        p.validate().map_err(anyhow::Error::msg)?;
        client.set_settings(app, &settings).await?;
    }
    let p = &settings.rollout;
    println!(
        "surge {}, unavailable {}; replaced without overlap: {}",
        p.surge,
        p.unavailable,
        if p.no_overlap.is_empty() {
            "clock and beat (always)".to_string()
        } else {
            format!("{} (and clock, beat)", p.no_overlap.join(", "))
        }
    );
    Ok(())
}

/// `berth routing [set NAME=VALUE… | unset NAME…]`: applies the changes,
/// if any, then shows the settings.
pub async fn routing(
    client: &Client,
    app: &str,
    changes: Option<Vec<String>>,
) -> anyhow::Result<()> {
    let mut settings = client.app(app).await?.settings;
    if let Some(changes) = changes {
        for change in &changes {
            settings.routing.apply(change).map_err(anyhow::Error::msg)?;
        }
        client.set_settings(app, &settings).await?;
        println!("Routing of {app} set; routers follow within a second");
    }
    let text = settings.routing.text();
    if text.is_empty() {
        println!(
            "{app} has the router's defaults (its --max-body, no rate limit, least_conn); \
             change them with e.g. `berth routing set max_body=10MB rate_limit=100/s --app {app}`"
        );
    } else {
        println!("{}", text.join("\n"));
    }
    Ok(())
}

/// `berth limits [set TYPE memory=… cpu=… pids=… | unset TYPE]`.
pub async fn limits(
    client: &Client,
    app: &str,
    change: Option<LimitsCommand>,
) -> anyhow::Result<()> {
    let mut settings = client.app(app).await?.settings;
    match change {
        None => {}
        Some(LimitsCommand::Set {
            process_type,
            settings: pairs,
            ..
        }) => {
            let limits = settings.limits.entry(process_type.clone()).or_default();
            for pair in &pairs {
                limits.apply(pair).map_err(anyhow::Error::msg)?;
            }
            if limits.is_unlimited() {
                settings.limits.remove(&process_type);
            }
            client.set_settings(app, &settings).await?;
            println!("Limits of {process_type} set; running instances follow at once");
        }
        Some(LimitsCommand::Unset { process_type, .. }) => {
            if settings.limits.remove(&process_type).is_none() {
                anyhow::bail!("{process_type} of {app} has no limits to remove");
            }
            client.set_settings(app, &settings).await?;
            println!("Limits of {process_type} removed");
        }
    }
    if settings.limits.is_empty() {
        println!(
            "{app} runs without resource limits; set some with `berth limits set web memory=512MB --app {app}`"
        );
    }
    for (process_type, l) in &settings.limits {
        println!("{process_type}: {}", l.text());
    }
    Ok(())
}
