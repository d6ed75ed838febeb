//! The client side of the `berth` command: every subcommand that talks to a
//! Berth server over its HTTP API.
//!
//! # Layout
//! - [`Command`]: the subcommands and their flags (clap).
//! - [`settings`]: which server and token to use (flags, environment,
//!   `~/.config/berth/config.toml`).
//! - `pack`: the source archive of `berth deploy`, honouring `.gitignore`.
//! - `deploy`: upload, follow the build and release, wait for instances.
//! - `commands`: apps, ps, logs, events, releases, domains, scale.
//! - `config`: config vars, secrets, rollback, restart, health check and
//!   rollout policy.
//! - `rollout`: following a rollout until it is live and routed, or failed.
//! - `run`: one-off processes, attached to the caller's terminal or not.
//! - `output`: tables and times for people, JSON for scripts.

mod commands;
mod config;
mod deploy;
mod output;
mod pack;
mod rollout;
mod run;
pub mod settings;

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// Which app a command acts on.
#[derive(Args, Debug, Clone)]
pub struct AppArg {
    /// The app's name.
    #[arg(short, long, env = "BERTH_APP_NAME")]
    pub app: String,
}

/// Client subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create, list and destroy apps.
    #[command(subcommand)]
    Apps(AppsCommand),
    /// Build a source folder and release it.
    Deploy {
        /// The app's source folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
        #[command(flatten)]
        app: AppArg,
    },
    /// Show the app's instances and their state.
    Ps {
        #[command(flatten)]
        app: AppArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show the app's log: build output, app output, router access lines.
    Logs {
        #[command(flatten)]
        app: AppArg,
        /// Keep printing new lines as they come.
        #[arg(short, long)]
        follow: bool,
        /// How many past lines to show.
        #[arg(short = 'n', long, default_value_t = 100)]
        num: u32,
        /// Only lines from this source (e.g. `web.1`, `router`, `build`).
        #[arg(short, long)]
        source: Option<String>,
    },
    /// List the app's releases, newest first.
    Releases {
        #[command(flatten)]
        app: AppArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Set how many instances of each process type run (e.g. web=2 worker=1).
    Scale {
        /// TYPE=COUNT pairs.
        #[arg(required = true)]
        counts: Vec<String>,
        #[command(flatten)]
        app: AppArg,
    },
    /// Manage custom domains routed to an app.
    #[command(subcommand)]
    Domains(DomainsCommand),
    /// Show config vars (secrets by name only, unless --reveal), or change
    /// them: each change makes a new release and rolls it out.
    #[command(subcommand_negates_reqs = true)]
    Config {
        #[command(subcommand)]
        change: Option<VarsCommand>,
        /// The app's name.
        #[arg(short, long, env = "BERTH_APP_NAME", required = true)]
        app: Option<String>,
        /// Show secret values too.
        #[arg(long)]
        reveal: bool,
        #[arg(long)]
        json: bool,
    },
    /// Set or unset secrets: like config vars, but encrypted at rest and
    /// never printed back (except by `berth config --reveal`).
    #[command(subcommand)]
    Secrets(VarsCommand),
    /// Make a new release with an earlier release's build and config, and
    /// roll it out (no rebuild, no release phase).
    Rollback {
        /// The release to go back to, e.g. v2.
        #[arg(value_name = "VERSION")]
        release: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// Replace the app's instances with fresh ones, one by one.
    Restart {
        /// Process types to restart [default: all].
        process_types: Vec<String>,
        #[command(flatten)]
        app: AppArg,
    },
    /// Show or set the HTTP health check of web instances.
    #[command(subcommand_negates_reqs = true)]
    Healthcheck {
        #[command(subcommand)]
        change: Option<HealthcheckCommand>,
        /// The app's name.
        #[arg(short, long, env = "BERTH_APP_NAME", required = true)]
        app: Option<String>,
    },
    /// Show or set how rollouts replace instances.
    Rollout {
        #[command(flatten)]
        app: AppArg,
        /// Instances above the formation a rollout may start.
        #[arg(long)]
        surge: Option<u32>,
        /// Instances below the formation a rollout may leave down.
        #[arg(long)]
        unavailable: Option<u32>,
        /// Process types whose old instances stop before new ones start
        /// (e.g. a scheduler that must never run twice).
        #[arg(long, value_delimiter = ',')]
        no_overlap: Vec<String>,
        /// Undo --no-overlap for these types.
        #[arg(long, value_delimiter = ',')]
        overlap: Vec<String>,
    },
    /// Show or set memory, CPU and process limits per process type (`run`
    /// for one-off processes), enforced with cgroups.
    #[command(subcommand_negates_reqs = true)]
    Limits {
        #[command(subcommand)]
        change: Option<LimitsCommand>,
        /// The app's name.
        #[arg(short, long, env = "BERTH_APP_NAME", required = true)]
        app: Option<String>,
    },
    /// Show or set how the router treats the app's requests: max_body
    /// (413 beyond), rate_limit per client address (429 beyond),
    /// redirect_https, balance (least_conn or round_robin).
    #[command(subcommand_negates_reqs = true)]
    Routing {
        #[command(subcommand)]
        change: Option<RoutingCommand>,
        /// The app's name.
        #[arg(short, long, env = "BERTH_APP_NAME", required = true)]
        app: Option<String>,
    },
    /// Run a one-off process of the live release, with the app's config:
    /// attached to this terminal (a PTY when it is one), or detached with
    /// its output in the app's log. Exits with the process's status.
    Run {
        #[command(flatten)]
        app: AppArg,
        /// Run in the background; output goes to `berth logs`.
        #[arg(short, long)]
        detach: bool,
        /// No pseudo-terminal even when attached to one (separate stdout
        /// and stderr, input until end of file).
        #[arg(long)]
        no_tty: bool,
        /// The command and its arguments (one argument is a shell command
        /// line).
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Stop a one-off process (run.N).
    #[command(name = "ps:kill")]
    PsKill {
        /// e.g. run.3
        name: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// Show the app's events: releases, instances started, ready, drained,
    /// crashed, health checks failed.
    Events {
        #[command(flatten)]
        app: AppArg,
        /// Keep printing new events as they come.
        #[arg(short, long)]
        follow: bool,
        #[arg(long)]
        json: bool,
    },
}

/// A change of config vars (`berth config …`) or secrets (`berth secrets …`).
#[derive(Subcommand, Debug)]
pub enum VarsCommand {
    /// Set NAME=VALUE pairs.
    Set {
        #[arg(required = true)]
        pairs: Vec<String>,
        #[command(flatten)]
        app: AppArg,
    },
    /// Remove by name.
    Unset {
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        app: AppArg,
    },
}

#[derive(Subcommand, Debug)]
pub enum LimitsCommand {
    /// Set limits of a process type: memory=512MB, cpu=0.5 (cores) or
    /// cpu=500m, pids=200; `memory=none` lifts one.
    Set {
        /// web, worker, …, or run (one-off processes).
        process_type: String,
        #[arg(required = true, value_name = "LIMIT=VALUE")]
        settings: Vec<String>,
        #[command(flatten)]
        app: AppArg,
    },
    /// Remove every limit of a process type.
    Unset {
        process_type: String,
        #[command(flatten)]
        app: AppArg,
    },
}

#[derive(Subcommand, Debug)]
pub enum RoutingCommand {
    /// Set max_body=10MB, rate_limit=100/s (or /m, /h), redirect_https=on,
    /// balance=round_robin; `none` resets one to the default.
    Set {
        #[arg(required = true, value_name = "NAME=VALUE")]
        settings: Vec<String>,
        #[command(flatten)]
        app: AppArg,
    },
    /// Reset settings to their defaults.
    Unset {
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        #[command(flatten)]
        app: AppArg,
    },
}

#[derive(Subcommand, Debug)]
pub enum HealthcheckCommand {
    /// Check PATH with GET; 2xx and 3xx pass.
    Set {
        /// e.g. /healthz
        path: String,
        /// Time between checks (e.g. 5s, 500ms).
        #[arg(long, default_value = "5s", value_parser = parse_ms)]
        interval: u64,
        /// Longest a check may take.
        #[arg(long, default_value = "2s", value_parser = parse_ms)]
        timeout: u64,
        /// Passes in a row before a new instance is up.
        #[arg(long, default_value_t = 2)]
        rise: u32,
        /// Failures in a row before an instance is restarted.
        #[arg(long, default_value_t = 3)]
        fall: u32,
        #[command(flatten)]
        app: AppArg,
    },
    /// Remove the health check.
    Off {
        #[command(flatten)]
        app: AppArg,
    },
}

fn parse_ms(s: &str) -> Result<u64, String> {
    berth_model::parse_duration_ms(s)
}

#[derive(Subcommand, Debug)]
pub enum AppsCommand {
    /// Create an app.
    Create {
        /// 2–40 lowercase letters, digits and dashes.
        name: String,
    },
    /// List apps.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one app.
    Info {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Destroy an app, its releases, its processes and its log.
    Destroy {
        name: String,
        /// The app's name again, to confirm.
        #[arg(long)]
        confirm: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum DomainsCommand {
    /// Route a domain to the app.
    Add {
        domain: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// Stop routing a domain to the app.
    Remove {
        domain: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// List the app's domains.
    List {
        #[command(flatten)]
        app: AppArg,
    },
}

/// Runs a client command against the server `settings` point to.
pub async fn run(command: Command, settings: settings::Settings) -> anyhow::Result<()> {
    let client = settings.client()?;
    match command {
        Command::Apps(c) => commands::apps(&client, c).await,
        Command::Deploy { dir, app } => deploy::deploy(&client, &app.app, &dir).await,
        Command::Ps { app, json } => commands::ps(&client, &app.app, json).await,
        Command::Logs {
            app,
            follow,
            num,
            source,
        } => commands::logs(&client, &app.app, follow, num, source.as_deref()).await,
        Command::Releases { app, json } => commands::releases(&client, &app.app, json).await,
        Command::Domains(c) => commands::domains(&client, c).await,
        Command::Scale { counts, app } => commands::scale(&client, &app.app, &counts).await,
        Command::Config {
            change: None,
            app,
            reveal,
            json,
        } => config::show(&client, &app.unwrap_or_default(), reveal, json).await,
        Command::Config {
            change: Some(change),
            ..
        } => config::change(&client, change, false).await,
        Command::Secrets(change) => config::change(&client, change, true).await,
        Command::Rollback { release, app } => config::rollback(&client, &app.app, &release).await,
        Command::Restart { process_types, app } => {
            config::restart(&client, &app.app, process_types).await
        }
        Command::Healthcheck { change, app } => match change {
            None => config::healthcheck(&client, &app.unwrap_or_default(), None, false).await,
            Some(HealthcheckCommand::Off { app }) => {
                config::healthcheck(&client, &app.app, None, true).await
            }
            Some(HealthcheckCommand::Set {
                path,
                interval,
                timeout,
                rise,
                fall,
                app,
            }) => {
                let hc = berth_model::HealthCheck {
                    path,
                    interval_ms: interval,
                    timeout_ms: timeout,
                    rise,
                    fall,
                };
                config::healthcheck(&client, &app.app, Some(hc), false).await
            }
        },
        Command::Rollout {
            app,
            surge,
            unavailable,
            no_overlap,
            overlap,
        } => config::policy(&client, &app.app, surge, unavailable, no_overlap, overlap).await,
        Command::Events { app, follow, json } => {
            commands::events(&client, &app.app, follow, json).await
        }
        Command::Limits { change, app } => {
            let app = match &change {
                Some(LimitsCommand::Set { app, .. } | LimitsCommand::Unset { app, .. }) => {
                    app.app.clone()
                }
                None => app.unwrap_or_default(),
            };
            config::limits(&client, &app, change).await
        }
        Command::Routing { change, app } => {
            let (app, pairs) = match change {
                Some(RoutingCommand::Set { app, settings }) => (app.app, Some(settings)),
                Some(RoutingCommand::Unset { app, names }) => (
                    app.app,
                    Some(names.iter().map(|n| format!("{n}=none")).collect()),
                ),
                None => (app.unwrap_or_default(), None),
            };
            config::routing(&client, &app, pairs).await
        }
        Command::Run {
            app,
            detach,
            no_tty,
            command,
        } => run::run(&client, &app.app, &command, detach, no_tty).await,
        Command::PsKill { name, app } => run::kill(&client, &app.app, &name).await,
    }
}

/// A command that ran and wants `berth` to exit with this status, saying
/// nothing more (`berth run` passing on its process's status).
#[derive(Debug)]
pub struct ExitWith(pub u8);

impl std::fmt::Display for ExitWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for ExitWith {}
