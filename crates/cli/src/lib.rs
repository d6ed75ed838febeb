//! The client side of the `berth` command: every subcommand that talks to a
//! Berth server over its HTTP API.
//!
//! # Layout
//! - [`Command`]: the subcommands and their flags (clap).
//! - [`settings`]: which server and token to use (flags, environment,
//!   `~/.config/berth/config.toml`).
//! - `pack`: the source archive of `berth deploy`, honouring `.gitignore`.
//! - `deploy`: upload, follow the build and release, wait for instances.
//! - `commands`: apps, ps, logs, releases, domains.
//! - `output`: tables and times for people, JSON for scripts.

mod commands;
mod deploy;
mod output;
mod pack;
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
    }
}
