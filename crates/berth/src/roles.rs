//! The long-running roles: `up`, `server`, `agent`, `router`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use berth_client::logs::LogShipper;
use berth_client::Client;
use berth_store::SqliteStore;
use clap::Args;
use tokio::net::TcpListener;

use crate::shutdown::Shutdown;

/// Settings shared by `up` and `server`.
#[derive(Args, Debug, Clone)]
pub struct ControlPlaneArgs {
    /// Where Berth keeps its database, sources, builds and app homes
    /// [default: $XDG_DATA_HOME/berth or ~/.local/share/berth].
    #[arg(long, env = "BERTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the HTTP API.
    #[arg(long, env = "BERTH_API_LISTEN", default_value = "127.0.0.1:7070")]
    pub api_listen: SocketAddr,
    /// Apps are served as NAME.<apps-domain>.
    #[arg(long, env = "BERTH_APPS_DOMAIN", default_value = "localhost")]
    pub apps_domain: String,
    /// Largest source archive `berth deploy` may upload (e.g. 100MB).
    #[arg(long, env = "BERTH_MAX_SOURCE_SIZE", default_value = "100MB", value_parser = parse_size)]
    pub max_source_size: u64,
    /// Succeeded builds kept per app for rollbacks (besides those in use);
    /// older ones are deleted.
    #[arg(long, env = "BERTH_KEEP_BUILDS", default_value_t = 5)]
    pub keep_builds: usize,
    /// A rollout that brings no new instance up for this long fails and
    /// leaves the live release serving (e.g. 120s, 5m).
    #[arg(long, env = "BERTH_ROLLOUT_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub rollout_timeout: std::time::Duration,
}

/// `berth up`.
#[derive(Args, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    pub control: ControlPlaneArgs,
    /// Address the router serves apps on.
    #[arg(long, env = "BERTH_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    pub http_listen: SocketAddr,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub agent: AgentTuning,
    #[command(flatten)]
    pub router: RouterTuning,
}

/// Router limits shared by `up` and `router`; each defaults to the
/// router's own default (shown in brackets). A standalone router's file may
/// set them too; flags win.
#[derive(Args, Debug, Clone, Default)]
pub struct RouterTuning {
    /// Most client connections open at once; more are closed on accept
    /// [default: 8192].
    #[arg(long, env = "BERTH_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Most connections open at once from one client address [default: 512].
    #[arg(long, env = "BERTH_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// How long a client may take to send a request head before it gets
    /// 408, and how long an idle keep-alive connection stays [default: 20s].
    #[arg(long, env = "BERTH_HEADER_READ_TIMEOUT", value_parser = parse_duration)]
    pub header_read_timeout: Option<std::time::Duration>,
    /// Longest pause within a request body before the client gets 408
    /// [default: 30s].
    #[arg(long, env = "BERTH_BODY_READ_TIMEOUT", value_parser = parse_duration)]
    pub body_read_timeout: Option<std::time::Duration>,
    /// Largest request body of apps without a max_body of their own
    /// (`berth routing`) [default: 100MB].
    #[arg(long, env = "BERTH_MAX_BODY", value_parser = parse_size)]
    pub max_body: Option<u64>,
    /// Proxies in front of the router whose X-Forwarded-* are believed,
    /// comma-separated (e.g. 10.0.0.0/8,::1) [default: none].
    #[arg(long, env = "BERTH_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<berth_router::trusted::Net>,
    /// Serve the router's stats page and Prometheus /metrics on this
    /// address (keep it private) [default: off].
    #[arg(long, env = "BERTH_STATS_LISTEN")]
    pub stats_listen: Option<SocketAddr>,
    /// A WebSocket session passing no byte either way this long is closed
    /// [default: 1h].
    #[arg(long, env = "BERTH_WEBSOCKET_IDLE_TIMEOUT", value_parser = parse_duration)]
    pub websocket_idle_timeout: Option<std::time::Duration>,
    /// How long a WebSocket session may go on once its instance left the
    /// routes (deploy, scale down) or the router stops, before it gets a
    /// 1001 close [default: 30s].
    #[arg(long, env = "BERTH_WEBSOCKET_GRACE", value_parser = parse_duration)]
    pub websocket_grace: Option<std::time::Duration>,
}

impl RouterTuning {
    /// `base` with the flags that were given, applied as a standalone
    /// file's settings are (flags given after a file's win).
    pub fn apply(&self, base: berth_router::RouterConfig) -> berth_router::RouterConfig {
        berth_router::standalone::Settings {
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            header_read_timeout: self.header_read_timeout,
            body_read_timeout: self.body_read_timeout,
            max_body: self.max_body,
            trusted_proxies: self.trusted_proxies.clone(),
            stats_listen: self.stats_listen,
            websocket_idle_timeout: self.websocket_idle_timeout,
            websocket_grace: self.websocket_grace,
            ..Default::default()
        }
        .apply(base)
    }
}

/// HTTPS for the router (`up`, and `router` following a server).
#[derive(Args, Debug, Clone)]
pub struct TlsArgs {
    /// Also serve apps over HTTPS on this address (needs --certs).
    #[arg(long, env = "BERTH_LISTEN_TLS", requires = "certs")]
    pub listen_tls: Option<SocketAddr>,
    /// Certificates for HTTPS, laid out as certbot's live directory:
    /// NAME/fullchain.pem and NAME/privkey.pem per certificate (e.g.
    /// /etc/letsencrypt/live). Picked by SNI; the first (by name) is the
    /// default; reloaded when the files change.
    /// A directory with no certificate yet is fine: HTTPS handshakes fail
    /// until certbot (answered over HTTP) puts the first one there.
    #[arg(long, env = "BERTH_CERTS", requires = "listen_tls")]
    pub certs: Option<PathBuf>,
    /// The port clients reach HTTPS on, for redirects to HTTPS, when a port
    /// forward puts it in front of --listen-tls (e.g. 443 → 8443)
    /// [default: the --listen-tls port].
    #[arg(long, env = "BERTH_HTTPS_PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub https_port: Option<u16>,
}

impl TlsArgs {
    /// `base` with the HTTPS port of the flags, if given.
    fn apply(&self, base: berth_router::RouterConfig) -> berth_router::RouterConfig {
        berth_router::RouterConfig {
            https_port: self.https_port.or(base.https_port),
            ..base
        }
    }
}

/// Agent settings shared by `up` and `agent`.
#[derive(Args, Debug, Clone)]
pub struct AgentTuning {
    /// The uv binary used for builds.
    #[arg(long, env = "BERTH_UV", default_value = "uv")]
    pub uv: PathBuf,
    /// One uv cache shared by every app's builds [default: one per app].
    #[arg(long, env = "BERTH_UV_CACHE_DIR")]
    pub uv_cache_dir: Option<PathBuf>,
    /// Seconds between SIGTERM and SIGKILL when stopping an app process.
    #[arg(long, env = "BERTH_STOP_GRACE", default_value_t = 10)]
    pub stop_grace: u64,
    /// The longest a draining instance waits for every router to confirm it
    /// no longer sends it requests (e.g. 10s).
    #[arg(long, env = "BERTH_DRAIN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: std::time::Duration,
    /// The cgroup under which each app process gets its own (memory, CPU
    /// and process limits, OOM reports) [default: berth/NODE-HASH of the
    /// data dir]; `none` runs app processes without cgroups.
    #[arg(long, env = "BERTH_CGROUP_PARENT")]
    pub cgroup_parent: Option<String>,
}

/// `berth server`.
#[derive(Args, Debug)]
pub struct ServerArgs {
    #[command(flatten)]
    pub control: ControlPlaneArgs,
    /// How users reach the router, for the URLs Berth prints
    /// (e.g. http://localhost:8080).
    #[arg(long, env = "BERTH_ROUTER_URL")]
    pub router_url: Option<String>,
}

/// `berth agent`.
#[derive(Args, Debug)]
pub struct AgentArgs {
    /// This node's name [default: the host name].
    #[arg(long, env = "BERTH_NODE")]
    pub node: Option<String>,
    /// Where the agent keeps builds and app homes.
    #[arg(long, env = "BERTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub tuning: AgentTuning,
}

/// `berth router`.
#[derive(Args, Debug)]
pub struct RouterArgs {
    /// Run standalone from this TOML file of routes (hot-reloaded) instead of
    /// following a Berth server. HTTPS is set in the file (`listen_tls`,
    /// `certificates_dir`, `https_port`), not by flags.
    #[arg(long, conflicts_with_all = ["listen_tls", "certs", "https_port"])]
    pub config: Option<PathBuf>,
    /// Worker threads (overrides the file's `threads`).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Address to serve on when following a server.
    #[arg(long, env = "BERTH_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Check the config file and its certificates, then exit (0 if good).
    #[arg(long, requires = "config")]
    pub check: bool,
    /// This router's name, unique among routers: drains wait for each named
    /// router to confirm [default: router@HOSTNAME].
    #[arg(long, env = "BERTH_ROUTER_NAME")]
    pub name: Option<String>,
    #[command(flatten)]
    pub tuning: RouterTuning,
}

/// Parses `10s`, `500ms`, `2m`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    berth_model::parse_duration_ms(s).map(std::time::Duration::from_millis)
}

/// Parses `100MB`, `512KB`, `1GB`, or plain bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_uppercase();
    let digits = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &t[digits.len()..];
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size; use e.g. 100MB"))?;
    let mult = match unit {
        "" | "B" => 1,
        "K" | "KB" => 1 << 10,
        "M" | "MB" => 1 << 20,
        "G" | "GB" => 1 << 30,
        _ => return Err(format!("unknown unit in {s:?}; use B, KB, MB or GB")),
    };
    Ok(n * mult)
}

fn default_data_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(d).join("berth"));
    }
    let home =
        std::env::var_os("HOME").context("neither --data-dir, BERTH_DATA_DIR nor HOME is set")?;
    Ok(PathBuf::from(home).join(".local/share/berth"))
}

fn data_dir(arg: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let dir = match arg {
        Some(d) => d,
        None => default_data_dir()?,
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the data dir {}", dir.display()))?;
    dir.canonicalize()
        .with_context(|| format!("cannot resolve the data dir {}", dir.display()))
}

/// Reads the admin token from the data dir, creating it on first start.
fn admin_token(data_dir: &Path) -> anyhow::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join("admin-token");
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let bytes: [u8; 32] = rand::random();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(token.as_bytes())?;
    Ok(token)
}

async fn bind(addr: SocketAddr, what: &str, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} for the {what}: is another Berth running? Pick another address with {flag}")
    })
}

/// Binds `addr` for HTTPS with `certs`, and keeps their files watched
/// until `shutdown`.
async fn tls_listener(
    addr: SocketAddr,
    certs: berth_router::tls::Certificates,
    flag: &str,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<berth_router::TlsListener> {
    let listener = bind(addr, "router's HTTPS", flag).await?;
    tokio::spawn(certs.clone().watch(shutdown));
    Ok(berth_router::TlsListener { listener, certs })
}

/// The certificates a standalone file names, each problem with its line.
fn file_certificates(
    tls: &berth_router::standalone::TlsSettings,
    path: &Path,
) -> anyhow::Result<berth_router::tls::Certificates> {
    tls.load_certificates(path)
        .context("cannot serve HTTPS: fix the certificate files, or the lines naming them")
}

/// The HTTPS listener the flags ask for, if any.
async fn tls_from_flags(
    tls: &TlsArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Option<berth_router::TlsListener>> {
    let (Some(addr), Some(dir)) = (tls.listen_tls, &tls.certs) else {
        return Ok(None);
    };
    let sources = berth_router::tls::CertSources {
        files: Vec::new(),
        dir: Some(dir.clone()),
    };
    let certs = berth_router::tls::Certificates::load(sources)
        .context("cannot serve HTTPS: fix or replace the certificate files")?;
    Ok(Some(
        tls_listener(addr, certs, "--listen-tls", shutdown).await?,
    ))
}

/// `http://localhost:PORT` for loopback addresses (so `APP.localhost` URLs
/// work in browsers), else `http://IP:PORT`.
fn router_url(addr: SocketAddr) -> String {
    if addr.ip().is_loopback() || addr.ip().is_unspecified() {
        format!("http://localhost:{}", addr.port())
    } else {
        format!("http://{addr}")
    }
}

/// The key sealing app secrets: `BERTH_SECRET_KEY`, else the key file in
/// the data dir (created on first start, mode 0600).
fn secret_key(data_dir: &Path) -> anyhow::Result<berth_secrets::SecretKey> {
    let env = match std::env::var(berth_secrets::KEY_ENV) {
        Ok(v) => Some(v),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => bail!(
            "{} is not valid text; it must hold a base64 key (head -c 32 /dev/urandom | base64)",
            berth_secrets::KEY_ENV
        ),
    };
    let path = data_dir.join(berth_secrets::KEY_FILE_NAME);
    Ok(berth_secrets::SecretKey::resolve(env.as_deref(), &path)?)
}

fn server_config(
    args: &ControlPlaneArgs,
    data_dir: &Path,
    token: String,
    router_url: Option<String>,
) -> anyhow::Result<berth_server::ServerConfig> {
    Ok(berth_server::ServerConfig {
        apps_domain: args.apps_domain.clone(),
        router_url,
        max_source_bytes: args.max_source_size,
        sources_dir: data_dir.join("sources"),
        admin_token: token,
        keep_builds: args.keep_builds,
        rollout_timeout: args.rollout_timeout,
        secret_key: Some(secret_key(data_dir)?),
        ..Default::default()
    })
}

fn agent_config(node: String, data_dir: &Path, t: &AgentTuning) -> berth_agent::AgentConfig {
    let mut c = berth_agent::AgentConfig::new(node, data_dir);
    c.uv = t.uv.clone();
    c.uv_cache_dir = t.uv_cache_dir.clone();
    c.stop_grace = std::time::Duration::from_secs(t.stop_grace);
    c.drain_timeout = t.drain_timeout;
    c.cgroup_parent = match t.cgroup_parent.as_deref() {
        Some("none") => None,
        Some(parent) => Some(parent.to_string()),
        None => Some(berth_agent::default_cgroup_parent(&c.node, data_dir)),
    };
    c
}

fn hostname() -> String {
    nix_hostname().unwrap_or_else(|| "local".into())
}

fn nix_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let data_dir = data_dir(args.control.data_dir.clone())?;
    let store = SqliteStore::open(&data_dir.join("berth.db"))
        .await
        .with_context(|| format!("cannot open the database in {}", data_dir.display()))?;
    let token = admin_token(&data_dir)?;
    let api = bind(args.control.api_listen, "API", "--api-listen").await?;
    let http = bind(args.http_listen, "router", "--http-listen").await?;
    let api_url = format!("http://{}", api.local_addr()?);
    let router_url = router_url(http.local_addr()?);

    let config_path = berth_cli::settings::config_path();
    if let Some(path) = &config_path {
        berth_cli::settings::write_config(
            path,
            &berth_cli::settings::ConfigFile {
                url: Some(api_url.clone()),
                token: Some(token.clone()),
            },
        )?;
    }

    let config = server_config(
        &args.control,
        &data_dir,
        token.clone(),
        Some(router_url.clone()),
    )?;
    let shutdown = Shutdown::new();
    shutdown.on_signals()?;
    let server_stop = Shutdown::new();
    let server = tokio::spawn(berth_server::run(
        api,
        Arc::new(store),
        config,
        server_stop.wait(),
    ));

    let client = Client::new(&api_url, Some(token))?;
    let logs = LogShipper::spawn(client.clone());
    let node = hostname();
    let agent = tokio::spawn(berth_agent::run(
        client.clone(),
        agent_config(node.clone(), &data_dir, &args.agent),
        logs.clone(),
        shutdown.wait(),
    ));
    let routes = berth_router::Routes::new();
    tokio::spawn(berth_router::follow_control_plane_as(
        format!("router@{node}"),
        client,
        routes.clone(),
        shutdown.wait(),
    ));
    let router_config = args
        .tls
        .apply(args.router.apply(berth_router::RouterConfig {
            apps_domain: args.control.apps_domain.clone(),
            ..Default::default()
        }));
    let tls = tls_from_flags(&args.tls, shutdown.wait()).await?;
    let https = tls.as_ref().map(|t| t.listener.local_addr()).transpose()?;
    let router = tokio::spawn(berth_router::run_with_tls(
        http,
        tls,
        routes,
        router_config,
        Some(logs),
        shutdown.wait(),
    ));

    println!("Berth is up.");
    println!("  data:   {}", data_dir.display());
    println!("  API:    {api_url}");
    println!(
        "  apps:   {router_url} (as http://APP.{}:PORT/)",
        args.control.apps_domain
    );
    if let Some(addr) = https {
        println!("  HTTPS:  https://{addr} (certificates from --certs, by SNI)");
    }
    if let Some(p) = &config_path {
        println!("  CLI config (URL and admin token): {}", p.display());
    }
    println!("Next: berth apps create hello && berth deploy ./examples/flask-hello --app hello");

    let router_result = router.await;
    let agent_result = agent.await;
    server_stop.trigger();
    let server_result = server.await;
    router_result.context("the router crashed")??;
    agent_result.context("the agent crashed")??;
    server_result.context("the server crashed")??;
    Ok(())
}

pub async fn server(args: ServerArgs) -> anyhow::Result<()> {
    let data_dir = data_dir(args.control.data_dir.clone())?;
    let store = SqliteStore::open(&data_dir.join("berth.db"))
        .await
        .with_context(|| format!("cannot open the database in {}", data_dir.display()))?;
    let token = admin_token(&data_dir)?;
    let config = server_config(&args.control, &data_dir, token, args.router_url)?;
    let api = bind(args.control.api_listen, "API", "--api-listen").await?;
    println!("Berth server listening on http://{}", api.local_addr()?);
    println!("Admin token: in {}", data_dir.join("admin-token").display());
    let shutdown = Shutdown::new();
    shutdown.on_signals()?;
    berth_server::run(api, Arc::new(store), config, shutdown.wait()).await?;
    Ok(())
}

fn remote_client(url: Option<String>, token: Option<String>) -> anyhow::Result<Client> {
    let settings = berth_cli::settings::Settings::resolve(url, token)?;
    if settings.token.is_none() {
        bail!("no API token: set BERTH_TOKEN (the server keeps it in <data dir>/admin-token)");
    }
    settings.client()
}

pub async fn agent(
    args: AgentArgs,
    url: Option<String>,
    token: Option<String>,
) -> anyhow::Result<()> {
    let client = remote_client(url, token)?;
    let data_dir = data_dir(args.data_dir)?;
    let shutdown = Shutdown::new();
    shutdown.on_signals()?;
    let node = args.node.unwrap_or_else(hostname);
    println!("Berth agent {node} following {}", client.base_url());
    let logs = LogShipper::spawn(client.clone());
    berth_agent::run(
        client,
        agent_config(node, &data_dir, &args.tuning),
        logs,
        shutdown.wait(),
    )
    .await?;
    Ok(())
}

/// The router's worker threads, when it runs standalone.
pub fn router_threads(args: &RouterArgs) -> Option<usize> {
    if args.threads.is_some() {
        return args.threads;
    }
    let path = args.config.as_ref()?;
    berth_router::standalone::load(path).ok().map(|c| c.threads)
}

pub async fn router(
    args: RouterArgs,
    url: Option<String>,
    token: Option<String>,
) -> anyhow::Result<()> {
    let shutdown = Shutdown::new();
    shutdown.on_signals()?;
    let routes = berth_router::Routes::new();
    let mut router_config = berth_router::RouterConfig::default();
    let (listener, tls, logs) = match &args.config {
        Some(path) => {
            let config = berth_router::standalone::load(path)
                .with_context(|| format!("invalid router config {}", path.display()))?;
            if args.check {
                if let Some(tls) = &config.tls {
                    let certs = file_certificates(tls, path)?;
                    println!("certificates: {}", certs.names().join(", "));
                }
                println!("{}: OK ({} apps)", path.display(), config.apps.len());
                return Ok(());
            }
            config.apply(&routes);
            router_config = config.router_config(router_config);
            // A reload of the file applies its routes and its certificates
            // to the listeners bound here.
            let mut live = berth_router::standalone::Live::new(routes.clone());
            let tls = match &config.tls {
                Some(tls) => {
                    let certs = file_certificates(tls, path)?;
                    live = live.with_tls(tls.listen, certs.clone());
                    Some(
                        tls_listener(
                            tls.listen,
                            certs,
                            "`listen_tls` in the config file",
                            shutdown.wait(),
                        )
                        .await?,
                    )
                }
                None => None,
            };
            tokio::spawn(berth_router::standalone::watch_file(
                path.clone(),
                live,
                shutdown.wait(),
            ));
            (
                bind(config.listen, "router", "`listen` in the config file").await?,
                tls,
                None,
            )
        }
        None => {
            let client = remote_client(url, token)?;
            let name = args
                .name
                .clone()
                .unwrap_or_else(|| format!("router@{}", hostname()));
            tokio::spawn(berth_router::follow_control_plane_as(
                name,
                client.clone(),
                routes.clone(),
                shutdown.wait(),
            ));
            (
                bind(args.listen, "router", "--listen").await?,
                tls_from_flags(&args.tls, shutdown.wait()).await?,
                Some(LogShipper::spawn(client)),
            )
        }
    };
    router_config = args.tls.apply(args.tuning.apply(router_config));
    println!(
        "Berth router listening on http://{}",
        listener.local_addr()?
    );
    if let Some(tls) = &tls {
        let names = tls.certs.names();
        println!(
            "Berth router listening on https://{} for {}",
            tls.listener.local_addr()?,
            if names.is_empty() {
                "no certificate yet (handshakes fail until one is added)".to_string()
            } else {
                names.join(", ")
            }
        );
    }
    berth_router::run_with_tls(listener, tls, routes, router_config, logs, shutdown.wait()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100MB"), Ok(100 << 20));
        assert_eq!(parse_size("512kb"), Ok(512 << 10));
        assert_eq!(parse_size("42"), Ok(42));
        assert!(parse_size("12XB").is_err());
        assert!(parse_size("MB").is_err());
    }
}
