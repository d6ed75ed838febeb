//! Standalone mode: routes from a TOML file instead of the control plane
//! (`berth router --config router.toml`), reloaded when the file changes
//! (`standalone::reload`: routes and certificates, all or nothing).
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! threads = 1
//! # HTTPS, optional (see `standalone::tls`): certificates by SNI,
//! # reloaded when their files change or this file lists others.
//! listen_tls = "127.0.0.1:8443"
//! certificates_dir = "certs"    # NAME/fullchain.pem + NAME/privkey.pem
//! [[certificates]]              # and/or one by one; the first is the default
//! cert = "a.pem"
//! key = "a.key"
//! http2 = true                  # offer HTTP/2 to TLS clients (ALPN)
//! # Router-wide limits, all optional (defaults: RouterConfig). Read at
//! # start; a reload applies only the apps.
//! max_connections = 8192
//! max_connections_per_ip = 512
//! header_read_timeout = "20s"   # 408 for a head not received by then
//! body_read_timeout = "30s"     # 408 for a body that stalls this long
//! max_body = "100MB"            # default for apps without their own
//! trusted_proxies = ["10.0.0.0/8"]  # whose X-Forwarded-* are believed
//! stats_listen = "127.0.0.1:8404"   # stats page and /metrics; off if absent
//! websocket_idle_timeout = "1h" # a WebSocket passing no byte is closed
//! websocket_grace = "30s"       # a WebSocket's time once its backend left
//! http2_flood_limit = 1000      # HTTP/2 frames without work before GOAWAY; 0: off
//! [[apps]]
//! name = "bench"
//! hosts = ["bench.localhost"]
//! backends = ["127.0.0.1:19001"]
//! balance = "least_conn"    # or "round_robin"; optional
//! static_dir = "/path"      # optional; relative to the file's directory
//! static_prefix = "/static/"  # optional, the default
//! max_body = "10MB"         # optional: 413 beyond
//! rate_limit = "100/s"      # optional, per client address: 429 beyond
//! redirect_https = true     # optional: plain HTTP gets 301/308 to https://
//! health_check = "/healthz" # optional: GET every 5s, 2s timeout, rise 2, fall 3
//! # or: health_check = { path = "/healthz", interval = "2s", timeout = "1s", rise = 2, fall = 3 }
//! ```
//!
//! Every problem of a file is reported at once, each with its line.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_model::{
    names, AppRoute, Backend, Balance, HealthCheck, RateLimit, RouteSettings, RouteTable,
    RoutingSettings, StaticFiles,
};
use serde::Deserialize;
use thiserror::Error;
use toml::Spanned;

use crate::config::RouterConfig;
use crate::table::Routes;
use crate::trusted::{Net, TrustedProxies};

mod reload;
mod tls;
mod units;

pub use reload::{watch_file, Live};
pub use tls::{SourceLines, TlsSettings};
use units::{parse_duration, Size};

/// A valid standalone configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct StandaloneConfig {
    /// Address to listen on (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// Worker threads for the runtime (default: one per CPU).
    pub threads: usize,
    /// Router-wide limits given in the file; the rest keep their defaults.
    pub settings: Settings,
    /// HTTPS, when the file sets `listen_tls`. On reload the certificates
    /// apply to the running listener; `listen_tls` itself needs a restart.
    pub tls: Option<TlsSettings>,
    /// The apps, in file order.
    pub apps: Vec<StandaloneApp>,
}

/// Router-wide settings of a standalone file; `None`/empty: the default of
/// [`RouterConfig`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub header_read_timeout: Option<Duration>,
    pub body_read_timeout: Option<Duration>,
    pub max_body: Option<u64>,
    pub trusted_proxies: Vec<Net>,
    pub stats_listen: Option<SocketAddr>,
    pub websocket_idle_timeout: Option<Duration>,
    pub websocket_grace: Option<Duration>,
    pub http2: Option<bool>,
    /// HTTP/2 frames that carry no request a connection may send beyond
    /// what its requests pay back (`crate::http2`); 0 turns the count off.
    pub http2_flood_limit: Option<u32>,
    /// The port clients reach HTTPS on, for redirects (a port forward from
    /// 443 to `listen_tls`'s port).
    pub https_port: Option<u16>,
}

impl Settings {
    /// `base` with the settings that are given; the others keep its values.
    /// The file and `berth`'s router flags both come through here.
    pub fn apply(&self, base: RouterConfig) -> RouterConfig {
        let s = self;
        RouterConfig {
            max_connections: s.max_connections.unwrap_or(base.max_connections),
            max_connections_per_ip: s
                .max_connections_per_ip
                .unwrap_or(base.max_connections_per_ip),
            header_read_timeout: s.header_read_timeout.unwrap_or(base.header_read_timeout),
            body_read_timeout: s.body_read_timeout.unwrap_or(base.body_read_timeout),
            max_body_bytes: s.max_body.unwrap_or(base.max_body_bytes),
            trusted_proxies: if s.trusted_proxies.is_empty() {
                base.trusted_proxies.clone()
            } else {
                TrustedProxies::new(s.trusted_proxies.clone())
            },
            stats_listen: s.stats_listen.or(base.stats_listen),
            websocket_idle_timeout: s
                .websocket_idle_timeout
                .unwrap_or(base.websocket_idle_timeout),
            websocket_grace: s.websocket_grace.unwrap_or(base.websocket_grace),
            http2: s.http2.unwrap_or(base.http2),
            http2_flood_limit: s.http2_flood_limit.unwrap_or(base.http2_flood_limit),
            https_port: s.https_port.or(base.https_port),
            ..base
        }
    }
}

/// One app of a standalone configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct StandaloneApp {
    pub name: String,
    /// Normalised: lowercase, no trailing dot.
    pub hosts: Vec<String>,
    pub backends: Vec<SocketAddr>,
    pub static_files: Option<StaticFiles>,
    /// Limits and health check (the model's shape, as from the control plane).
    pub settings: RouteSettings,
}

/// Why a configuration file cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read router config {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("router config {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error(
        "router config {} has {} problem(s):\n  {}",
        path.display(),
        problems.len(),
        problems.join("\n  ")
    )]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<Spanned<String>>,
    threads: Option<Spanned<usize>>,
    max_connections: Option<Spanned<usize>>,
    max_connections_per_ip: Option<Spanned<usize>>,
    header_read_timeout: Option<Spanned<String>>,
    body_read_timeout: Option<Spanned<String>>,
    max_body: Option<Spanned<Size>>,
    #[serde(default)]
    trusted_proxies: Vec<Spanned<String>>,
    stats_listen: Option<Spanned<String>>,
    websocket_idle_timeout: Option<Spanned<String>>,
    websocket_grace: Option<Spanned<String>>,
    listen_tls: Option<Spanned<String>>,
    #[serde(default)]
    certificates: Vec<Spanned<tls::RawCert>>,
    certificates_dir: Option<Spanned<String>>,
    http2: Option<bool>,
    http2_flood_limit: Option<u32>,
    https_port: Option<Spanned<u16>>,
    #[serde(default)]
    apps: Vec<Spanned<RawApp>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    name: Spanned<String>,
    #[serde(default)]
    hosts: Vec<Spanned<String>>,
    #[serde(default)]
    backends: Vec<Spanned<String>>,
    #[serde(default)]
    balance: Balance,
    static_dir: Option<Spanned<String>>,
    static_prefix: Option<Spanned<String>>,
    max_body: Option<Spanned<Size>>,
    rate_limit: Option<Spanned<String>>,
    health_check: Option<Spanned<RawCheck>>,
    #[serde(default)]
    redirect_https: bool,
}

/// `"/healthz"`, or a table with the path and any of the timings. Read as
/// a plain value first: serde's untagged enums would turn a typo inside the
/// table into "did not match any variant", naming neither key nor fix.
#[derive(Deserialize)]
#[serde(transparent)]
struct RawCheck(toml::Value);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheckTable {
    path: String,
    interval: Option<String>,
    timeout: Option<String>,
    rise: Option<u32>,
    fall: Option<u32>,
}

impl RawCheck {
    fn to_check(&self) -> Result<HealthCheck, String> {
        let t: RawCheckTable = match &self.0 {
            toml::Value::String(path) => return checked(HealthCheck::new(path.clone())),
            toml::Value::Table(_) => self
                .0
                .clone()
                .try_into()
                .map_err(|e| e.to_string().trim_end().to_string())?,
            _ => return Err(
                "use a path (\"/healthz\") or a table ({ path = \"/healthz\", interval = \"2s\" })"
                    .into(),
            ),
        };
        let mut check = HealthCheck::new(t.path.clone());
        let ms = |v: &Option<String>, key: &str, default: u64| match v {
            None => Ok(default),
            Some(text) => parse_duration(text)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .ok_or_else(|| {
                    format!("{key} {text:?} is not a duration like \"2s\" or \"500ms\"")
                }),
        };
        check.interval_ms = ms(&t.interval, "interval", check.interval_ms)?;
        check.timeout_ms = ms(
            &t.timeout,
            "timeout",
            check.timeout_ms.min(check.interval_ms),
        )?;
        check.rise = t.rise.unwrap_or(check.rise);
        check.fall = t.fall.unwrap_or(check.fall);
        checked(check)
    }
}

fn checked(check: HealthCheck) -> Result<HealthCheck, String> {
    check.validate().map(|()| check)
}

/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> Result<StandaloneConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base).map_err(|e| e.for_file(path))
}

/// Parses and validates `text` as a configuration file; relative
/// `static_dir`s are taken from `base`. Errors name the file as `<text>`.
pub fn parse_str(text: &str, base: &Path) -> Result<StandaloneConfig, ConfigError> {
    parse(text, base).map_err(|e| e.for_file(Path::new("<text>")))
}

enum Problems {
    Syntax(String),
    Invalid(Vec<String>),
}

impl Problems {
    fn for_file(self, path: &Path) -> ConfigError {
        let path = path.to_path_buf();
        match self {
            Self::Syntax(message) => ConfigError::Parse { path, message },
            Self::Invalid(problems) => ConfigError::Invalid { path, problems },
        }
    }
}

/// Parses and validates `text`; relative static dirs are taken from `base`.
fn parse(text: &str, base: &Path) -> Result<StandaloneConfig, Problems> {
    // toml's message names the line and shows it; it is kept whole.
    let raw: RawConfig =
        toml::from_str(text).map_err(|e| Problems::Syntax(e.to_string().trim_end().to_string()))?;
    let mut problems = Vec::new();
    let mut problem = |span: Range<usize>, msg: String| {
        problems.push(format!("line {}: {msg}", line_of(text, span.start)));
    };

    let listen = match &raw.listen {
        None => SocketAddr::from(([127, 0, 0, 1], 8080)),
        Some(l) => l.get_ref().parse().unwrap_or_else(|_| {
            problem(
                l.span(),
                format!(
                    "listen {:?} is not an address like \"127.0.0.1:8080\"",
                    l.get_ref()
                ),
            );
            SocketAddr::from(([127, 0, 0, 1], 8080))
        }),
    };
    let threads = match &raw.threads {
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        Some(t) => {
            let n = *t.get_ref();
            if !(1..=1024).contains(&n) {
                problem(t.span(), format!("threads = {n}: use 1 to 1024"));
            }
            n
        }
    };

    let mut count = |v: &Option<Spanned<usize>>, key: &str| {
        let v = v.as_ref()?;
        let n = *v.get_ref();
        if n == 0 {
            problem(
                v.span(),
                format!("{key} = 0 would refuse every connection: use 1 or more"),
            );
        }
        Some(n)
    };
    let max_connections = count(&raw.max_connections, "max_connections");
    let max_connections_per_ip = count(&raw.max_connections_per_ip, "max_connections_per_ip");
    let mut duration = |v: &Option<Spanned<String>>, key: &str| {
        let v = v.as_ref()?;
        match parse_duration(v.get_ref()) {
            Some(d) if !d.is_zero() => Some(d),
            _ => {
                problem(
                    v.span(),
                    format!(
                        "{key} {:?} is not a duration like \"20s\" or \"500ms\"",
                        v.get_ref()
                    ),
                );
                None
            }
        }
    };
    let header_read_timeout = duration(&raw.header_read_timeout, "header_read_timeout");
    let body_read_timeout = duration(&raw.body_read_timeout, "body_read_timeout");
    let websocket_idle_timeout = duration(&raw.websocket_idle_timeout, "websocket_idle_timeout");
    let websocket_grace = duration(&raw.websocket_grace, "websocket_grace");
    let max_body = size(&raw.max_body, "").unwrap_or_else(|(span, msg)| {
        problem(span, msg);
        None
    });
    let mut trusted_proxies = Vec::new();
    for net in &raw.trusted_proxies {
        match net.get_ref().parse::<Net>() {
            Ok(n) => trusted_proxies.push(n),
            Err(e) => problem(net.span(), format!("trusted_proxies: {e}")),
        }
    }
    let stats_listen = raw.stats_listen.as_ref().and_then(|l| {
        l.get_ref()
            .parse::<SocketAddr>()
            .map_err(|_| {
                problem(
                    l.span(),
                    format!(
                        "stats_listen {:?} is not an address like \"127.0.0.1:8404\"",
                        l.get_ref()
                    ),
                )
            })
            .ok()
    });
    let https_port = raw.https_port.as_ref().and_then(|p| {
        let port = *p.get_ref();
        if port == 0 {
            problem(
                p.span(),
                "https_port = 0 is no port: give the port clients reach HTTPS on, e.g. 443".into(),
            );
        }
        (port != 0).then_some(port)
    });
    let settings = Settings {
        https_port,
        stats_listen,
        max_connections,
        max_connections_per_ip,
        header_read_timeout,
        body_read_timeout,
        max_body,
        trusted_proxies,
        websocket_idle_timeout,
        websocket_grace,
        http2: raw.http2,
        http2_flood_limit: raw.http2_flood_limit,
    };
    let tls = tls::settings(
        raw.listen_tls.as_ref(),
        &raw.certificates,
        raw.certificates_dir.as_ref(),
        base,
        &|at| line_of(text, at),
        &mut problem,
    );

    let mut apps = Vec::new();
    let mut app_lines: HashMap<String, usize> = HashMap::new();
    let mut host_owners: HashMap<String, (String, usize)> = HashMap::new();
    for app in &raw.apps {
        let app_span = app.span();
        let app = app.get_ref();
        let name = app.name.get_ref().clone();
        let line = line_of(text, app.name.span().start);
        if let Err(e) = names::validate_app_name(&name) {
            problem(app.name.span(), e.to_string());
        }
        if let Some(first) = app_lines.insert(name.clone(), line) {
            problem(
                app.name.span(),
                format!("app {name:?} is already defined on line {first}"),
            );
        }
        if app.hosts.is_empty() {
            problem(
                app_span.clone(),
                format!("app {name:?} has no hosts: add e.g. hosts = [\"{name}.localhost\"]"),
            );
        }
        let mut hosts = Vec::new();
        for h in &app.hosts {
            match names::normalize_domain(h.get_ref()) {
                Ok(host) => {
                    let here = line_of(text, h.span().start);
                    if let Some((owner, on)) = host_owners.get(&host) {
                        problem(h.span(), format!("host {host:?} of app {name:?} is already claimed by app {owner:?} on line {on}"));
                    } else {
                        host_owners.insert(host.clone(), (name.clone(), here));
                    }
                    hosts.push(host);
                }
                Err(e) => problem(h.span(), format!("app {name:?}: {e}")),
            }
        }
        let mut backends = Vec::new();
        for b in &app.backends {
            match b.get_ref().parse::<SocketAddr>() {
                Ok(addr) => backends.push(addr),
                Err(_) => problem(
                    b.span(),
                    format!(
                        "app {name:?}: backend {:?} is not an address like \"127.0.0.1:9000\"",
                        b.get_ref()
                    ),
                ),
            }
        }
        let static_files = match (&app.static_dir, &app.static_prefix) {
            (None, None) => None,
            (None, Some(p)) => {
                problem(
                    p.span(),
                    format!("app {name:?}: static_prefix needs static_dir"),
                );
                None
            }
            (Some(dir), prefix) => {
                let url_prefix = prefix.as_ref().map_or("/static/", |p| p.get_ref().as_str());
                if !(url_prefix.starts_with('/') && url_prefix.ends_with('/')) {
                    let span = prefix.as_ref().map_or(dir.span(), |p| p.span());
                    problem(span, format!("app {name:?}: static_prefix {url_prefix:?} must start and end with '/' (e.g. \"/static/\")"));
                }
                let dir_path = base.join(dir.get_ref());
                if !dir_path.is_dir() {
                    problem(
                        dir.span(),
                        format!(
                            "app {name:?}: static_dir {} is not a directory",
                            dir_path.display()
                        ),
                    );
                }
                Some(StaticFiles {
                    url_prefix: url_prefix.to_string(),
                    dir: dir_path.to_string_lossy().into_owned(),
                })
            }
        };
        let max_body =
            size(&app.max_body, &format!("app {name:?}: ")).unwrap_or_else(|(span, msg)| {
                problem(span, msg);
                None
            });
        let rate_limit = app.rate_limit.as_ref().and_then(|r| {
            r.get_ref()
                .parse::<RateLimit>()
                .map_err(|e| problem(r.span(), format!("app {name:?}: {e}")))
                .ok()
        });
        let health_check = app.health_check.as_ref().and_then(|c| {
            c.get_ref()
                .to_check()
                .map_err(|e| problem(c.span(), format!("app {name:?}: health_check: {e}")))
                .ok()
        });
        apps.push(StandaloneApp {
            name,
            hosts,
            backends,
            static_files,
            settings: RouteSettings {
                routing: RoutingSettings {
                    max_body,
                    rate_limit,
                    redirect_https: app.redirect_https,
                    balance: app.balance,
                },
                health_check,
            },
        });
    }
    if !problems.is_empty() {
        return Err(Problems::Invalid(problems));
    }
    Ok(StandaloneConfig {
        listen,
        threads,
        settings,
        tls,
        apps,
    })
}

/// A `max_body` in bytes; the error names `what` (an app, or nothing).
fn size(v: &Option<Spanned<Size>>, what: &str) -> Result<Option<u64>, (Range<usize>, String)> {
    let Some(v) = v else { return Ok(None) };
    match v.get_ref().bytes() {
        Some(b) => Ok(Some(b)),
        None => Err((
            v.span(),
            format!(
                "{what}max_body {} is not a size like \"10MB\"",
                v.get_ref().describe()
            ),
        )),
    }
}

/// 1-based line of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

impl StandaloneConfig {
    /// `base` with the router-wide settings of the file applied.
    pub fn router_config(&self, base: RouterConfig) -> RouterConfig {
        self.settings.apply(base)
    }

    /// Puts this configuration's apps into `routes` as the next revision.
    pub fn apply(&self, routes: &Routes) {
        routes.update(self.to_route_table(routes.revision() + 1));
    }

    /// The route table this configuration describes, as `revision`.
    /// Backends are named by their address in access logs.
    pub fn to_route_table(&self, revision: u64) -> RouteTable {
        RouteTable {
            revision,
            apps: self
                .apps
                .iter()
                .map(|a| AppRoute {
                    name: a.name.clone(),
                    hosts: a.hosts.clone(),
                    backends: a
                        .backends
                        .iter()
                        .map(|b| Backend {
                            addr: b.to_string(),
                            id: b.to_string(),
                        })
                        .collect(),
                    static_files: a.static_files.clone(),
                    settings: a.settings.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests;
