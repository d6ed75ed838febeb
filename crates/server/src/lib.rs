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
//!   state and to the routers' table.
//! - `api`: one module per resource.

mod api;
mod auth;
mod error;
pub mod scheduler;
mod watch;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub store: Arc<dyn Store>,
    pub config: Arc<ServerConfig>,
    pub watchers: Watchers,
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
    let ctx = Ctx {
        store,
        config: Arc::new(config),
        watchers: watchers.clone(),
    };
    let app = api::routes(ctx);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            watchers.close();
        })
        .await
}
