//! Counters per app and per instance, and the stats listener that shows
//! them: `GET /metrics` in Prometheus' text format, `GET /` as a small HTML
//! page in the manner of HAProxy's (apps, instances, health, in flight,
//! req/s, error rates).
//!
//! The counters are atomics bumped once per request when its response ends
//! ([`AppStats::record`]); they live behind `Arc`s that each new route
//! table takes over, like the load counters, so a reload does not reset
//! them. The listener is separate from the one serving apps ([`serve`]), so
//! only who can reach the configured stats address sees it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::body::{self, Body};
use crate::table::Routes;

/// Upper bounds of the latency buckets, in seconds.
const BOUNDS: [f64; 11] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Time to the end of the response body, as a histogram.
#[derive(Debug, Default)]
pub(crate) struct Latency {
    buckets: [AtomicU64; BOUNDS.len()],
    count: AtomicU64,
    micros_sum: AtomicU64,
}

impl Latency {
    pub(crate) fn record(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BOUNDS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.micros_sum
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// The `_bucket`, `_sum` and `_count` lines of `metric` for `labels`.
    fn write(&self, out: &mut String, metric: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, bound) in BOUNDS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{metric}_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let sum = self.micros_sum.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{metric}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{metric}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{metric}_count{{{labels}}} {count}");
    }
}

/// What one app has answered.
#[derive(Debug, Default)]
pub(crate) struct AppStats {
    /// Responses by status class: 1xx … 5xx.
    by_class: [AtomicU64; 5],
    latency: Latency,
    /// WebSocket sessions open now ([`crate::tunnel`]); their `101` is
    /// counted among the responses when the handshake is answered.
    websockets: AtomicU64,
}

/// Counters of the router as a whole, not of one app: they live with the
/// routes ([`Routes::router_stats`]) so the stats listener finds them.
#[derive(Debug, Default)]
pub(crate) struct RouterStats {
    /// HTTP/2 connections closed for flooding ([`crate::http2`]).
    http2_floods: AtomicU64,
}

impl RouterStats {
    /// Counts one HTTP/2 connection closed for a flood.
    pub(crate) fn http2_flood(&self) {
        self.http2_floods.fetch_add(1, Ordering::Relaxed);
    }

    /// HTTP/2 connections closed for a flood so far.
    pub(crate) fn http2_floods(&self) -> u64 {
        self.http2_floods.load(Ordering::Relaxed)
    }
}

/// Counts one open WebSocket session of an app until dropped.
pub(crate) struct TunnelGauge(Arc<AppStats>);

/// What one instance has answered.
#[derive(Debug, Default)]
pub(crate) struct BackendStats {
    pub requests: AtomicU64,
    /// Attempts that got no usable response: connect failures, empty or
    /// broken responses, timeouts.
    pub failures: AtomicU64,
    /// Of the responses this instance began.
    pub latency: Latency,
}

impl AppStats {
    /// Counts one response with `status` that took `elapsed`.
    pub(crate) fn record(&self, status: StatusCode, elapsed: Duration) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        self.latency.record(elapsed);
    }

    /// Counts an open WebSocket session until the gauge drops.
    pub(crate) fn tunnel_opened(self: &Arc<Self>) -> TunnelGauge {
        self.websockets.fetch_add(1, Ordering::Relaxed);
        TunnelGauge(Arc::clone(self))
    }

    fn websockets(&self) -> u64 {
        self.websockets.load(Ordering::Relaxed)
    }

    fn total(&self) -> u64 {
        self.by_class
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    fn class(&self, i: usize) -> u64 {
        self.by_class[i].load(Ordering::Relaxed)
    }
}

impl Drop for TunnelGauge {
    fn drop(&mut self) {
        self.0.websockets.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves the stats on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    tracing::info!("router stats on http://{}/", listener.local_addr()?);
    let rates = Arc::new(Rates::default());
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            _ = tick.tick() => rates.sample(&routes),
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (routes, rates) = (routes.clone(), Arc::clone(&rates));
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let resp = answer(&req, &routes, &rates);
                        async move { Ok::<_, Infallible>(resp) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        }
    }
}

/// Requests per second per app over the last second, sampled by [`serve`].
#[derive(Default)]
struct Rates {
    last: Mutex<HashMap<String, (Instant, u64, f64)>>,
}

impl Rates {
    fn sample(&self, routes: &Routes) {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        for app in routes.load().apps() {
            let total = app.stats.total();
            let entry = last.entry(app.name.clone()).or_insert((now, total, 0.0));
            let dt = now.duration_since(entry.0).as_secs_f64();
            if dt > 0.0 {
                *entry = (now, total, total.saturating_sub(entry.1) as f64 / dt);
            }
        }
    }

    fn of(&self, app: &str) -> f64 {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.get(app).map_or(0.0, |e| e.2)
    }
}

fn answer(req: &Request<Incoming>, routes: &Routes, rates: &Rates) -> Response<Body> {
    let (ctype, text) = match req.uri().path() {
        "/metrics" => ("text/plain; version=0.0.4", prometheus(routes)),
        "/" => ("text/html; charset=utf-8", html(routes, rates)),
        _ => {
            let mut r = Response::new(body::full("not found\n"));
            *r.status_mut() = StatusCode::NOT_FOUND;
            return r;
        }
    };
    let mut r = Response::new(body::full(text));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Prometheus' text exposition format.
pub(crate) fn prometheus(routes: &Routes) -> String {
    let table = routes.load();
    let mut apps: Vec<_> = table.apps().collect();
    apps.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = String::new();
    out.push_str("# HELP berth_router_requests_total Responses by app and status class.\n# TYPE berth_router_requests_total counter\n");
    for app in &apps {
        for (i, class) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
            let _ = writeln!(
                out,
                "berth_router_requests_total{{app=\"{}\",class=\"{class}\"}} {}",
                app.name,
                app.stats.class(i)
            );
        }
    }
    out.push_str("# HELP berth_router_request_duration_seconds Time to the end of the response.\n# TYPE berth_router_request_duration_seconds histogram\n");
    for app in &apps {
        app.stats.latency.write(
            &mut out,
            "berth_router_request_duration_seconds",
            &format!("app=\"{}\"", app.name),
        );
    }
    out.push_str("# HELP berth_router_backend_request_duration_seconds Time to the end of the response, per instance.\n# TYPE berth_router_backend_request_duration_seconds histogram\n");
    for app in &apps {
        for b in &app.backends {
            b.stats.latency.write(
                &mut out,
                "berth_router_backend_request_duration_seconds",
                &format!(
                    "app=\"{}\",instance=\"{}\",addr=\"{}\"",
                    app.name, b.id, b.addr
                ),
            );
        }
    }
    out.push_str("# HELP berth_router_websockets_open WebSocket sessions open now.\n# TYPE berth_router_websockets_open gauge\n");
    for app in &apps {
        let _ = writeln!(
            out,
            "berth_router_websockets_open{{app=\"{}\"}} {}",
            app.name,
            app.stats.websockets()
        );
    }
    out.push_str("# HELP berth_router_backend_requests_total Attempts sent to each instance.\n# TYPE berth_router_backend_requests_total counter\n");
    out.push_str("# HELP berth_router_backend_failures_total Attempts that got no usable response.\n# TYPE berth_router_backend_failures_total counter\n");
    out.push_str("# HELP berth_router_backend_in_flight Requests outstanding per instance.\n# TYPE berth_router_backend_in_flight gauge\n");
    out.push_str("# HELP berth_router_backend_up 1 while the instance is in rotation.\n# TYPE berth_router_backend_up gauge\n");
    let now = crate::health::now_ms();
    for app in &apps {
        for b in &app.backends {
            let labels = format!(
                "app=\"{}\",instance=\"{}\",addr=\"{}\"",
                app.name, b.id, b.addr
            );
            let _ = writeln!(
                out,
                "berth_router_backend_requests_total{{{labels}}} {}",
                b.stats.requests.load(Ordering::Relaxed)
            );
            let _ = writeln!(
                out,
                "berth_router_backend_failures_total{{{labels}}} {}",
                b.stats.failures.load(Ordering::Relaxed)
            );
            let _ = writeln!(
                out,
                "berth_router_backend_in_flight{{{labels}}} {}",
                b.current_load()
            );
            let _ = writeln!(
                out,
                "berth_router_backend_up{{{labels}}} {}",
                u8::from(!b.is_down(now))
            );
        }
    }
    out.push_str("# HELP berth_router_http2_floods_total HTTP/2 connections closed for sending too many frames without requests (PING, SETTINGS, empty DATA, ...).\n# TYPE berth_router_http2_floods_total counter\n");
    let _ = writeln!(
        out,
        "berth_router_http2_floods_total {}",
        routes.router_stats().http2_floods()
    );
    out
}

fn html(routes: &Routes, rates: &Rates) -> String {
    let table = routes.load();
    let mut apps: Vec<_> = table.apps().collect();
    apps.sort_by(|a, b| a.name.cmp(&b.name));
    let now = crate::health::now_ms();
    let mut out = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Berth router</title>\
         <meta http-equiv=\"refresh\" content=\"5\"><style>body{font-family:sans-serif}\
         table{border-collapse:collapse;margin-bottom:1em}td,th{border:1px solid #999;padding:2px 8px;text-align:right}\
         th{background:#ddd}td:first-child{text-align:left}.down{background:#f99}.up{background:#9f9}</style></head><body>\
         <h1>Berth router</h1>\n",
    );
    let _ = writeln!(out, "<p>route table revision {}</p>", table.revision);
    for app in &apps {
        let s = &app.stats;
        let total = s.total();
        let errors = s.class(4);
        let rate = if total == 0 {
            0.0
        } else {
            100.0 * errors as f64 / total as f64
        };
        let _ = writeln!(
            out,
            "<h2>{}</h2><table><tr><th>req/s</th><th>requests</th><th>2xx</th><th>3xx</th><th>4xx</th><th>5xx</th><th>5xx rate</th><th>websockets</th></tr>\
             <tr><td>{:.1}</td><td>{total}</td><td>{}</td><td>{}</td><td>{}</td><td>{errors}</td><td>{rate:.2}%</td><td>{}</td></tr></table>",
            esc(&app.name), rates.of(&app.name), s.class(1), s.class(2), s.class(3), s.websockets(),
        );
        out.push_str("<table><tr><th>instance</th><th>address</th><th>health</th><th>in flight</th><th>requests</th><th>failures</th></tr>\n");
        for b in &app.backends {
            let (class, health) = if b.health.failing_checks() {
                ("down", "DOWN (check)")
            } else if b.is_down(now) {
                ("down", "DOWN")
            } else {
                ("up", "UP")
            };
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"{class}\">{health}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&b.id), esc(&b.addr), b.current_load(),
                b.stats.requests.load(Ordering::Relaxed), b.stats.failures.load(Ordering::Relaxed),
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("</body></html>\n");
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
