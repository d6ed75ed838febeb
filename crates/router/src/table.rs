//! [`Routes`]: the live route table, swapped atomically on every update, and
//! the per-backend state that must outlive a swap.
//!
//! A [`RouteTable`] from the control plane is compiled into a `Table`: a
//! host → app map with backends pre-parsed, so the request path does one hash
//! lookup and no parsing. Readers never lock: they load an `Arc<Table>` from
//! an `ArcSwap` and keep it for the whole request, so a swap in the middle of
//! a request changes nothing for that request.
//!
//! Per-backend state lives behind `Arc`s that each new table takes over from
//! the previous one: the load counter for the same address, the passive
//! health (`health`) for the same address *and* instance id, and so does
//! the instance's [`Departure`] (its WebSocket sessions, and whether it
//! left: [`crate::departures`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use arc_swap::ArcSwap;
use berth_model::{Balance, HealthCheck, RouteTable, StaticFiles};
use http::uri::Authority;

use crate::departures::{Departure, Departures};
use crate::health::Health;
use crate::rate_limit::Limiter;
use crate::stats::{AppStats, BackendStats, RouterStats};

/// Shared handle on the router's live routes; clones see the same table.
#[derive(Clone, Default)]
pub struct Routes {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    table: ArcSwap<Table>,
    /// Serialises updates, so that carrying load counters and health over
    /// from the previous table never races with another update.
    update: Mutex<()>,
    /// Whether the active checker ([`crate::checks`]) runs for these routes.
    checker: AtomicBool,
    /// Counters of the router as a whole.
    router_stats: Arc<RouterStats>,
    /// Instances that left with WebSocket sessions still open.
    departures: Departures,
}

/// A handle on routes that does not keep them alive.
pub(crate) struct WeakRoutes(Weak<Inner>);

/// A compiled route table.
#[derive(Default)]
pub(crate) struct Table {
    pub revision: u64,
    hosts: HashMap<String, Arc<App>>,
    /// Every app once, in table order.
    apps: Vec<Arc<App>>,
}

/// One app as the request path needs it.
pub(crate) struct App {
    pub name: String,
    /// The app's hosts, normalised, in table order (checks use the first).
    pub hosts: Vec<String>,
    /// The router's own check of each backend, when the app has one.
    pub health_check: Option<HealthCheck>,
    pub balance: Balance,
    pub backends: Vec<BackendState>,
    pub static_files: Option<StaticFiles>,
    /// Round-robin position, shared across table versions of the app.
    pub next: Arc<AtomicUsize>,
    /// Largest request body, when the app sets its own.
    pub max_body: Option<u64>,
    /// The app's rate limit, shared across table versions while the rate
    /// stays the same (a reload must not hand every client a fresh burst).
    pub limiter: Option<Arc<Limiter>>,
    /// What the app answered, kept across table versions of the app.
    pub stats: Arc<AppStats>,
    /// Plain-HTTP requests get a redirect to HTTPS ([`crate::redirect`]).
    pub redirect_https: bool,
}

/// One backend, its live load and its passive health.
#[derive(Clone)]
pub(crate) struct BackendState {
    /// `host:port` as given, for logs.
    pub addr: String,
    /// Human id for logs (`v3/web.1`).
    pub id: String,
    /// The address to connect to, when `addr` is one (not a host name).
    pub socket_addr: Option<std::net::SocketAddr>,
    /// Requests sent to this address and not yet finished. Keyed by address
    /// and carried into new tables: a deploy that keeps an instance must not
    /// make its load look like zero, or least-conn would pile onto it.
    pub load: Arc<AtomicUsize>,
    /// Recent connect failures and empty responses, and whether that put
    /// the backend out of rotation. Carried into new tables while address
    /// and instance id stay the same: an update must not forgive a dead
    /// instance, but a new instance that got a dead one's port starts clean.
    pub health: Arc<Health>,
    /// Attempts and failures, kept like `health`.
    pub stats: Arc<BackendStats>,
    /// Cancelled when the instance leaves the table (its WebSocket sessions
    /// then get their grace), and its sessions' count; kept like `health`,
    /// so a table that keeps the instance leaves its sessions alone.
    pub removed: Departure,
}

/// Holds one unit of a backend's load until dropped.
pub(crate) struct LoadGuard(Arc<AtomicUsize>);

impl Routes {
    /// An empty table: every host is unknown until the first update.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the table. Requests already under way finish on the table
    /// they started with. Apps get the router's default limits.
    pub fn update(&self, table: RouteTable) {
        let _serial = self
            .inner
            .update
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let old = self.inner.table.load();
        let compiled = Table::compile(table, &old, &self.inner.departures);
        self.inner.table.store(Arc::new(compiled));
        let new = self.inner.table.load();
        for (app, b) in old.removed_in(&new) {
            self.inner
                .departures
                .depart(&app.name, &b.addr, &b.id, &b.removed);
        }
    }

    /// Instances that left the table, and the sessions they still carry.
    pub(crate) fn departures(&self) -> &Departures {
        &self.inner.departures
    }

    /// Revision of the table in use (0 before the first update).
    pub fn revision(&self) -> u64 {
        self.inner.table.load().revision
    }

    pub(crate) fn load(&self) -> Arc<Table> {
        self.inner.table.load_full()
    }

    /// True for the first caller only: it runs the checker.
    pub(crate) fn claim_checker(&self) -> bool {
        !self.inner.checker.swap(true, Ordering::Relaxed)
    }

    /// Counters of the router as a whole (not of one app).
    pub(crate) fn router_stats(&self) -> &Arc<RouterStats> {
        &self.inner.router_stats
    }

    pub(crate) fn downgrade(&self) -> WeakRoutes {
        WeakRoutes(Arc::downgrade(&self.inner))
    }

    pub(crate) fn upgrade(weak: &WeakRoutes) -> Option<Self> {
        weak.0.upgrade().map(|inner| Self { inner })
    }
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.inner.table.load();
        f.debug_struct("Routes")
            .field("revision", &t.revision)
            .field("hosts", &t.hosts.len())
            .finish()
    }
}

impl Table {
    fn compile(table: RouteTable, old: &Table, departures: &Departures) -> Self {
        let mut loads: HashMap<&str, &Arc<AtomicUsize>> = HashMap::new();
        let mut healths: HashMap<(&str, &str), &Arc<Health>> = HashMap::new();
        let mut nexts: HashMap<&str, &Arc<AtomicUsize>> = HashMap::new();
        let mut limiters: HashMap<&str, &Arc<Limiter>> = HashMap::new();
        let mut app_stats: HashMap<&str, &Arc<AppStats>> = HashMap::new();
        let mut backend_stats: HashMap<(&str, &str), &Arc<BackendStats>> = HashMap::new();
        let mut removed: HashMap<(&str, &str), &Departure> = HashMap::new();
        for app in &old.apps {
            nexts.insert(&app.name, &app.next);
            app_stats.insert(&app.name, &app.stats);
            if let Some(l) = &app.limiter {
                limiters.insert(&app.name, l);
            }
            for b in &app.backends {
                loads.insert(&b.addr, &b.load);
                healths.insert((&b.addr, &b.id), &b.health);
                backend_stats.insert((&b.addr, &b.id), &b.stats);
                removed.insert((&b.addr, &b.id), &b.removed);
            }
        }
        let mut hosts = HashMap::new();
        let mut apps = Vec::new();
        for route in table.apps {
            let backends = route
                .backends
                .into_iter()
                .filter_map(|b| match b.addr.parse::<Authority>() {
                    Ok(_) => Some(BackendState {
                        load: loads.get(b.addr.as_str()).map_or_else(Default::default, |l| {
                            Arc::clone(l)
                        }),
                        health: healths
                            .get(&(b.addr.as_str(), b.id.as_str()))
                            .map_or_else(Default::default, |h| Arc::clone(h)),
                        stats: backend_stats
                            .get(&(b.addr.as_str(), b.id.as_str()))
                            .map_or_else(Default::default, |s| Arc::clone(s)),
                        removed: removed
                            .get(&(b.addr.as_str(), b.id.as_str()))
                            .map_or_else(|| departures.arrival(), |d| (*d).clone()),
                        socket_addr: b.addr.parse().ok(),
                        addr: b.addr,
                        id: b.id,
                    }),
                    Err(e) => {
                        tracing::warn!(app = %route.name, addr = %b.addr, "skipping backend with invalid address: {e}");
                        None
                    }
                })
                .collect::<Vec<BackendState>>();
            if route.settings.health_check.is_none() {
                // Nothing would ever clear a verdict of a check that was
                // removed: the backends would stay out of rotation for good.
                for b in &backends {
                    b.health.forget_checks();
                }
            }
            let limiter = route.settings.routing.rate_limit.map(|rate| {
                match limiters.get(route.name.as_str()) {
                    Some(l) if l.rate() == rate => Arc::clone(l),
                    _ => Arc::new(Limiter::new(rate)),
                }
            });
            let app = Arc::new(App {
                stats: app_stats
                    .get(route.name.as_str())
                    .map_or_else(Default::default, |s| Arc::clone(s)),
                max_body: route.settings.routing.max_body,
                limiter,
                next: nexts
                    .get(route.name.as_str())
                    .map_or_else(Default::default, |n| Arc::clone(n)),
                hosts: route
                    .hosts
                    .iter()
                    .map(|h| normalize_host(h).into_owned())
                    .collect(),
                health_check: route.settings.health_check.clone(),
                redirect_https: route.settings.routing.redirect_https,
                name: route.name,
                balance: route.settings.routing.balance,
                backends,
                static_files: route.static_files,
            });
            apps.push(Arc::clone(&app));
            for host in route.hosts {
                let host = normalize_host(&host).into_owned();
                if let Some(prev) = hosts.insert(host.clone(), Arc::clone(&app)) {
                    tracing::warn!(%host, "host claimed by both {} and {}; {} wins", prev.name, app.name, app.name);
                }
            }
        }
        Self {
            revision: table.revision,
            hosts,
            apps,
        }
    }

    /// This table's instances that `next` does not have (same address and
    /// instance id), with their app.
    fn removed_in<'a>(&'a self, next: &Table) -> Vec<(&'a App, &'a BackendState)> {
        let kept: std::collections::HashSet<(&str, &str)> = next
            .apps
            .iter()
            .flat_map(|a| &a.backends)
            .map(|b| (b.addr.as_str(), b.id.as_str()))
            .collect();
        self.apps
            .iter()
            .flat_map(|a| a.backends.iter().map(move |b| (&**a, b)))
            .filter(|(_, b)| !kept.contains(&(b.addr.as_str(), b.id.as_str())))
            .collect()
    }

    /// Every app, once each.
    pub fn apps(&self) -> impl Iterator<Item = &Arc<App>> {
        self.apps.iter()
    }

    /// The app serving `host` (already normalised).
    pub fn app(&self, host: &str) -> Option<&Arc<App>> {
        self.hosts.get(host)
    }
}

impl BackendState {
    /// Outstanding requests right now.
    pub fn current_load(&self) -> usize {
        self.load.load(Ordering::Relaxed)
    }

    /// Whether the balancer should pass over this backend at `now`
    /// ([`crate::health::now_ms`]).
    pub fn is_down(&self, now: u64) -> bool {
        self.health.is_down(now)
    }

    /// Counts one more request until the guard drops.
    pub fn begin(&self) -> LoadGuard {
        self.load.fetch_add(1, Ordering::Relaxed);
        LoadGuard(Arc::clone(&self.load))
    }
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The form a host is looked up in: no port, lowercase, no trailing dot.
/// Borrowed when `raw` already is in that form but for a port or dot, as
/// on nearly every request: the request path allocates nothing for it.
pub(crate) fn normalize_host(raw: &str) -> Cow<'_, str> {
    let raw = raw.trim();
    let no_port = if let Some(rest) = raw.strip_prefix('[') {
        // IPv6 literal: `[::1]:8080` → `[::1]`.
        match rest.find(']') {
            Some(end) => &raw[..end + 2],
            None => raw,
        }
    } else {
        match raw.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => raw,
        }
    };
    let host = no_port.trim_end_matches('.');
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

#[cfg(test)]
mod tests {
    use berth_model::{AppRoute, Backend};

    use super::*;

    fn table(rev: u64, addrs: &[&str]) -> RouteTable {
        RouteTable {
            revision: rev,
            apps: vec![AppRoute {
                name: "hello".into(),
                hosts: vec!["Hello.Localhost.".into()],
                backends: addrs
                    .iter()
                    .enumerate()
                    .map(|(i, a)| Backend {
                        addr: a.to_string(),
                        id: format!("v1/web.{}", i + 1),
                    })
                    .collect(),
                static_files: None,
                settings: Default::default(),
            }],
        }
    }

    #[test]
    fn hosts_are_normalised() {
        assert_eq!(normalize_host("Hello.LOCALHOST.:8080"), "hello.localhost");
        assert_eq!(normalize_host("hello.localhost"), "hello.localhost");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        assert_eq!(normalize_host("example.com."), "example.com");
        assert!(
            matches!(normalize_host("hello.localhost:8080"), Cow::Borrowed(_)),
            "no allocation for a host already in lookup form"
        );
    }

    #[test]
    fn load_survives_updates_for_unchanged_addresses() {
        let routes = Routes::new();
        routes.update(table(1, &["127.0.0.1:1", "127.0.0.1:2"]));
        let t = routes.load();
        let app = t.app("hello.localhost").expect("app routed");
        let _busy = app.backends[0].begin();
        let _busy2 = app.backends[0].begin();

        routes.update(table(2, &["127.0.0.1:1", "127.0.0.1:3"]));
        assert_eq!(routes.revision(), 2);
        let t2 = routes.load();
        let app2 = t2.app("hello.localhost").expect("app routed");
        assert_eq!(
            app2.backends[0].current_load(),
            2,
            "same addr keeps its load"
        );
        assert_eq!(app2.backends[1].current_load(), 0);
        drop(_busy);
        assert_eq!(
            app2.backends[0].current_load(),
            1,
            "old guards settle the new counter"
        );
    }

    #[test]
    fn health_survives_updates_for_the_same_instance_only() {
        let routes = Routes::new();
        routes.update(table(1, &["127.0.0.1:1", "127.0.0.1:2"]));
        let t = routes.load();
        let app = t.app("hello.localhost").expect("app routed");
        for b in &app.backends {
            for _ in 0..crate::health::FAILURES_TO_EJECT {
                b.health.record_failure(0);
            }
        }

        // Same addresses; the second now belongs to another instance.
        let mut next = table(2, &["127.0.0.1:1", "127.0.0.1:2"]);
        next.apps[0].backends[1].id = "v2/web.1".into();
        routes.update(next);
        let t2 = routes.load();
        let app2 = t2.app("hello.localhost").expect("app routed");
        assert!(app2.backends[0].is_down(1), "same instance stays down");
        assert!(!app2.backends[1].is_down(1), "a new instance starts clean");
    }

    #[test]
    fn invalid_backend_addresses_are_skipped() {
        let routes = Routes::new();
        routes.update(table(1, &["not an addr", "127.0.0.1:2"]));
        let t = routes.load();
        assert_eq!(t.app("hello.localhost").map(|a| a.backends.len()), Some(1));
    }
}
