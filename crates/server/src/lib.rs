//! The control plane: Berth's HTTP API over the [`Store`].
//!
//! Users (through the CLI), agents and routers all speak to it. It holds
//! desired state under a revision and answers watchers (`?after=REV&wait=S`)
//! as soon as the revision moves past what they have; it never pushes.
//!
//! # Layout
//! - [`run`]: serve the API on a bound listener until shutdown.
//! - [`ServerConfig`]: the settings of one control plane.
//! - `auth`: bearer-token check in front of every `/v1` route.
//! - `watch`: revision and log cursors that long-polls wait on.
//! - [`scheduler`]: pure functions from stored state to each node's desired
//!   state (rollouts included) and to the routers' table.
//! - [`rollout`]: the controller that completes or fails rollouts.
//! - `events`: the control plane's lines and events in app logs.
//! - `relay`: pairs the caller's and the agent's WebSockets of an attached
//!   one-off process.
//! - `api`: one module per resource.

mod api;
mod auth;
mod error;
mod events;
mod relay;
pub mod rollout;
pub mod scheduler;
mod watch;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_secrets::SecretKey;
use berth_store::Store;
use tokio::net::TcpListener;

pub use error::ApiErr;
use watch::Watchers;

/// Settings of one control plane.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Apps are served as `NAME.<apps_domain>`.
    pub apps_domain: String,
    /// How users reach the router (`http://localhost:8080`), for printed URLs.
    pub router_url: Option<String>,
    /// Largest accepted source archive in bytes.
    pub max_source_bytes: u64,
    /// Where uploaded source archives are kept.
    pub sources_dir: PathBuf,
    /// The admin API token.
    pub admin_token: String,
    /// The longest a watcher may wait for a change.
    pub max_wait: Duration,
    /// A rollout that brings no new instance up for this long fails.
    pub rollout_timeout: Duration,
    /// Succeeded builds kept per app (besides those in use); older ones are
    /// garbage-collected.
    pub keep_builds: usize,
    /// Seals and opens app secrets; `None` refuses secrets with a message
    /// saying how to configure a key.
    pub secret_key: Option<SecretKey>,
    /// A router that has not polled for this long is not waited for.
    pub router_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            apps_domain: "localhost".into(),
            router_url: None,
            max_source_bytes: 100 * 1024 * 1024,
            sources_dir: PathBuf::from("sources"),
            admin_token: String::new(),
            max_wait: Duration::from_secs(30),
            rollout_timeout: Duration::from_secs(120),
            keep_builds: 5,
            secret_key: None,
            router_timeout: Duration::from_secs(45),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub store: Arc<dyn Store>,
    pub config: Arc<ServerConfig>,
    pub watchers: Watchers,
    pub opener: Arc<scheduler::SecretOpener>,
    /// Attached one-off processes waiting for, or relaying to, their caller.
    pub relays: relay::Relays,
}

/// Serves the API on `listener` until `shutdown` resolves, then finishes the
/// requests in flight (long-polls are answered at once).
pub async fn run(
    listener: TcpListener,
    store: Arc<dyn Store>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    std::fs::create_dir_all(&config.sources_dir)?;
    let watchers = Watchers::start(store.clone()).await?;
    let key = config.secret_key.clone();
    let opener: Arc<scheduler::SecretOpener> = Arc::new(move |s: &berth_store::SealedSecret| {
        let key = key.as_ref()?;
        match key.open(&s.sealed, &api::secret_aad(&s.app, &s.name)) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::error!("secret {} of {}: {e}", s.name, s.app);
                None
            }
        }
    });
    let ctx = Ctx {
        store,
        config: Arc::new(config),
        watchers: watchers.clone(),
        opener,
        relays: relay::Relays::default(),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let controller = tokio::spawn(rollout::run(ctx.clone(), stop_rx));
    let app = api::routes(ctx);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            watchers.close();
        })
        .await;
    stop_tx.send_replace(true);
    let _ = controller.await;
    served
}
