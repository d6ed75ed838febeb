//! Apps, ps, logs, releases, domains.

use std::time::Duration;

use anyhow::bail;
use berth_client::Client;
use berth_model::{Instance, InstanceState, LogLine};

use crate::output::{age, json, table, timestamp};
use crate::{AppsCommand, DomainsCommand};

pub async fn apps(client: &Client, cmd: AppsCommand) -> anyhow::Result<()> {
    match cmd {
        AppsCommand::Create { name } => {
            let app = client.create_app(&name).await?;
            println!("Created {} — deploy it with `berth deploy ./src --app {}`; it will be served at {}", app.name, app.name, app.url);
        }
        AppsCommand::List { json: as_json } => {
            let apps = client.list_apps().await?;
            if as_json {
                return json(&apps);
            }
            if apps.is_empty() {
                println!("No apps yet. Create one with `berth apps create NAME`.");
                return Ok(());
            }
            let rows = apps
                .iter()
                .map(|a| {
                    vec![
                        a.name.clone(),
                        a.current_release
                            .map(|v| format!("v{v}"))
                            .unwrap_or_else(|| "-".into()),
                        a.url.clone(),
                    ]
                })
                .collect::<Vec<_>>();
            table(&["NAME", "RELEASE", "URL"], &rows);
        }
        AppsCommand::Info {
            name,
            json: as_json,
        } => {
            let app = client.app(&name).await?;
            if as_json {
                return json(&app);
            }
            println!("name:      {}", app.name);
            println!("url:       {}", app.url);
            println!(
                "release:   {}",
                app.current_release
                    .map(|v| format!("v{v}"))
                    .unwrap_or_else(|| "none yet".into())
            );
            println!("formation: {}", berth_model::formation_text(&app.formation));
            println!("domains:   {}", app.domains.join(", "));
            println!("created:   {}", timestamp(app.created_at));
        }
        AppsCommand::Destroy { name, confirm } => {
            if confirm.as_deref() != Some(name.as_str()) {
                bail!(
                    "destroying {name} deletes its releases, processes and log; to go ahead, run `berth apps destroy {name} --confirm {name}`"
                );
            }
            client.destroy_app(&name).await?;
            println!("Destroyed {name}");
        }
    }
    Ok(())
}

/// `crashed (restarts: 7, next in 40s)`, `up`, …
fn state_text(i: &Instance) -> String {
    let state = match i.state {
        InstanceState::Crashed => {
            let next = i
                .next_restart_at
                .map(|t| {
                    format!(
                        ", next in {}s",
                        ((t - berth_model::now_millis() + 999) / 1000).max(0)
                    )
                })
                .unwrap_or_default();
            format!("crashed (restarts: {}{next})", i.restarts)
        }
        s => s.as_str().to_string(),
    };
    if i.oom_kills > 0 {
        format!("{state} (out-of-memory kills: {})", i.oom_kills)
    } else {
        state
    }
}

pub async fn ps(client: &Client, app: &str, as_json: bool) -> anyhow::Result<()> {
    let instances = client.instances(app).await?;
    let runs = client.runs(app).await?;
    if as_json {
        return json(&serde_json::json!({ "instances": instances, "runs": runs }));
    }
    if !runs.is_empty() {
        let rows = runs
            .iter()
            .map(|r| {
                vec![
                    r.name(),
                    format!("v{}", r.release),
                    if r.kill_requested {
                        "stopping".into()
                    } else {
                        r.state.as_str().to_string()
                    },
                    r.started_at.map(age).unwrap_or_else(|| "-".into()),
                    r.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                    r.node.clone(),
                    r.command.clone(),
                ]
            })
            .collect::<Vec<_>>();
        table(
            &[
                "RUN", "RELEASE", "STATE", "UPTIME", "PID", "NODE", "COMMAND",
            ],
            &rows,
        );
        if !instances.is_empty() {
            println!();
        }
    }
    if instances.is_empty() {
        let a = client.app(app).await?;
        if a.current_release.is_none() {
            println!("{app} has no release yet: deploy it with `berth deploy ./src --app {app}`");
        } else {
            println!("{app} has no running instances");
        }
        return Ok(());
    }
    let rows = instances
        .iter()
        .map(|i| {
            vec![
                i.name(),
                format!("v{}", i.release),
                state_text(i),
                i.addr
                    .as_deref()
                    .and_then(|a| a.rsplit_once(':'))
                    .map(|(_, p)| p.to_string())
                    .unwrap_or_else(|| "-".into()),
                i.started_at
                    .filter(|_| i.state != InstanceState::Crashed)
                    .map(age)
                    .unwrap_or_else(|| "-".into()),
                i.restarts.to_string(),
                i.health.clone().unwrap_or_else(|| "-".into()),
                i.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                i.node.clone(),
            ]
        })
        .collect::<Vec<_>>();
    table(
        &[
            "INSTANCE", "RELEASE", "STATE", "PORT", "UPTIME", "RESTARTS", "HEALTH", "PID", "NODE",
        ],
        &rows,
    );
    let exits: Vec<String> = instances
        .iter()
        .filter(|i| i.state == InstanceState::Crashed)
        .filter_map(|i| {
            Some(format!(
                "{} (v{}): {}",
                i.name(),
                i.release,
                i.last_exit.as_deref()?
            ))
        })
        .collect();
    if !exits.is_empty() {
        println!("\nLast exits:");
        for e in exits {
            println!("  {e}");
        }
    }
    Ok(())
}

/// `berth events [-f]`.
pub async fn events(client: &Client, app: &str, follow: bool, as_json: bool) -> anyhow::Result<()> {
    let mut cursor = 0;
    loop {
        let wait = if follow {
            Duration::from_secs(25)
        } else {
            Duration::ZERO
        };
        let page = match client.events(app, cursor, wait).await {
            Ok(p) => p,
            Err(e) if follow && e.is_transient() => {
                eprintln!("(lost the server: {e}; retrying)");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        for e in &page.lines {
            if as_json {
                println!("{}", serde_json::to_string(e)?);
            } else {
                let kind = e.event.map(|k| k.as_str()).unwrap_or("-");
                println!("{} {kind}: {}", timestamp(e.ts), e.line);
            }
        }
        cursor = page.cursor;
        if !follow && page.lines.is_empty() {
            return Ok(());
        }
    }
}

pub fn print_log_line(l: &LogLine) {
    println!("{} {}: {}", timestamp(l.ts), l.source, l.line);
}

pub async fn logs(
    client: &Client,
    app: &str,
    follow: bool,
    num: u32,
    source: Option<&str>,
) -> anyhow::Result<()> {
    let keep = |l: &LogLine| source.is_none_or(|s| l.source == s);
    let page = client
        .logs(app, None, Some(num), Duration::ZERO, None)
        .await?;
    page.lines
        .iter()
        .filter(|l| keep(l))
        .for_each(print_log_line);
    if !follow {
        return Ok(());
    }
    let mut cursor = page.cursor;
    loop {
        match client
            .logs(app, Some(cursor), Some(1000), Duration::from_secs(25), None)
            .await
        {
            Ok(page) => {
                page.lines
                    .iter()
                    .filter(|l| keep(l))
                    .for_each(print_log_line);
                cursor = page.cursor;
            }
            Err(e) if e.is_transient() => {
                eprintln!("(lost the server: {e}; retrying)");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

pub async fn releases(client: &Client, app: &str, as_json: bool) -> anyhow::Result<()> {
    let releases = client.releases(app).await?;
    if as_json {
        return json(&releases);
    }
    if releases.is_empty() {
        println!("{app} has no releases yet: deploy it with `berth deploy ./src --app {app}`");
        return Ok(());
    }
    let rows = releases
        .iter()
        .map(|r| {
            vec![
                format!("v{}", r.version),
                r.status.as_str().to_string(),
                r.description.clone(),
                r.created_by.clone(),
                timestamp(r.created_at),
            ]
        })
        .collect::<Vec<_>>();
    table(
        &["RELEASE", "STATUS", "DESCRIPTION", "BY", "CREATED"],
        &rows,
    );
    Ok(())
}

pub async fn domains(client: &Client, cmd: DomainsCommand) -> anyhow::Result<()> {
    match cmd {
        DomainsCommand::Add { domain, app } => {
            let a = client.add_domain(&app.app, &domain).await?;
            println!("{} now serves {}", a.name, a.domains.join(", "));
        }
        DomainsCommand::Remove { domain, app } => {
            client.remove_domain(&app.app, &domain).await?;
            println!("Removed {domain} from {}", app.app);
        }
        DomainsCommand::List { app } => {
            let a = client.app(&app.app).await?;
            for d in &a.domains {
                println!("{d}");
            }
        }
    }
    Ok(())
}

/// Parses `web=2`-style pairs, refusing anything but whole numbers ≥ 0.
pub fn parse_counts(pairs: &[String]) -> anyhow::Result<std::collections::BTreeMap<String, u32>> {
    let mut out = std::collections::BTreeMap::new();
    for pair in pairs {
        let Some((name, count)) = pair.split_once('=') else {
            bail!("{pair:?} is not TYPE=COUNT; use e.g. web=2");
        };
        berth_model::names::validate_process_type(name)?;
        let count: u32 = count.parse().map_err(|_| {
            anyhow::anyhow!("{pair:?}: the count must be a whole number of 0 or more")
        })?;
        out.insert(name.to_string(), count);
    }
    Ok(out)
}

pub async fn scale(client: &Client, app: &str, pairs: &[String]) -> anyhow::Result<()> {
    let counts = parse_counts(pairs)?;
    let a = client.scale(app, &counts).await?;
    println!(
        "Scaled {app}: {}",
        berth_model::formation_text(&a.formation)
    );
    Ok(())
}
