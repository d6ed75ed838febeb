//! `berth`: one binary for every role.
//!
//! This file only parses arguments, sets up logging and picks a role; each
//! role lives in its own crate (see ARCHITECTURE.md).

mod roles;
mod shutdown;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: the router allocates a few small objects per request, and
/// glibc's malloc and free were ~7% of its CPU under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Berth: a self-hosted platform for Python web apps.
#[derive(Parser, Debug)]
#[command(name = "berth", version, about, propagate_version = true)]
struct Cli {
    /// The Berth server's API URL (default: the config file `berth up`
    /// writes, then http://127.0.0.1:7070).
    #[arg(long, global = true, env = "BERTH_URL")]
    url: Option<String>,
    /// The API token (default: the config file `berth up` writes).
    #[arg(long, global = true, env = "BERTH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run server, agent and router in one process, with embedded storage.
    Up(roles::UpArgs),
    /// Run the control plane (HTTP API, scheduler, store).
    Server(roles::ServerArgs),
    /// Run a node agent: builds, runs and supervises app processes.
    Agent(roles::AgentArgs),
    /// Run an HTTP router, following a server or a TOML file of routes.
    Router(roles::RouterArgs),
    #[command(flatten)]
    Client(berth_cli::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let threads = match &cli.command {
        Command::Router(args) => roles::router_threads(args),
        _ => None,
    };
    // One router thread gets a current-thread runtime: everything (accept,
    // connections, timers) runs on the main thread, with no work-stealing
    // queues, cross-thread wake-ups or parked idle workers to pay for. It
    // took the router's CPU per proxied request down by ~15% (bench/router.sh).
    let mut builder = match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    if let Some(n) = threads.filter(|&n| n > 1) {
        builder.worker_threads(n);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => roles::up(args).await,
            Command::Server(args) => roles::server(args).await,
            Command::Agent(args) => roles::agent(args, cli.url, cli.token).await,
            Command::Router(args) => roles::router(args, cli.url, cli.token).await,
            Command::Client(cmd) => {
                let settings = berth_cli::settings::Settings::resolve(cli.url, cli.token)?;
                berth_cli::run(cmd, settings).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<berth_cli::ExitWith>() {
            Some(status) => ExitCode::from(status.0),
            None => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
