//! Active health checks: a `GET` of the app's check path on each backend,
//! every `interval`, on a connection of its own (as HAProxy's `option
//! httpchk` does, so a check never waits behind, or spoils, a pooled
//! request). 2xx and 3xx pass; anything else, a refused connect or no
//! answer within `timeout`, fails. The verdicts go to [`crate::health`].
//!
//! One checker task per [`Routes`], started by the first [`crate::run`] on
//! it. It holds the routes weakly and ends when the last handle is gone.
//! Every router checks for itself: what matters is whether *this* router
//! can reach the instance.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use berth_model::HealthCheck;
use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;

use crate::connector;
use crate::health::{self, CheckTransition};
use crate::table::{App, BackendState, Routes};
use crate::upstream;

/// How often the checker looks for checks that are due; the finest
/// interval a check can have (the model refuses less than 100 ms).
const TICK: Duration = Duration::from_millis(100);

/// Starts the checker of `routes` unless it runs already.
pub(crate) fn start(routes: &Routes) {
    if !routes.claim_checker() {
        return;
    }
    let weak = routes.downgrade();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(routes) = Routes::upgrade(&weak) else {
                return;
            };
            let table = routes.load();
            drop(routes);
            let now = health::now_ms();
            for app in table.apps() {
                let Some(check) = &app.health_check else {
                    continue;
                };
                for (index, backend) in app.backends.iter().enumerate() {
                    if due(backend, check, now) {
                        tokio::spawn(run_check(Arc::clone(app), index));
                    }
                }
            }
        }
    });
}

/// Whether `backend` should be checked now; if so, books the check.
fn due(backend: &BackendState, check: &HealthCheck, now: u64) -> bool {
    let health = &backend.health;
    if health.next_check.load(Ordering::Relaxed) > now
        || health.checking.swap(true, Ordering::Relaxed)
    {
        return false;
    }
    health
        .next_check
        .store(now.saturating_add(check.interval_ms), Ordering::Relaxed);
    true
}

async fn run_check(app: Arc<App>, index: usize) {
    let (Some(check), Some(backend)) = (&app.health_check, app.backends.get(index)) else {
        return;
    };
    let host = app.hosts.first().map_or("localhost", String::as_str);
    let timeout = Duration::from_millis(check.timeout_ms);
    let outcome = tokio::time::timeout(timeout, probe(backend, host, &check.path, timeout))
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")));
    let passed = outcome.is_ok();
    let transition = backend.health.record_check(passed, check.rise, check.fall);
    backend.health.checking.store(false, Ordering::Relaxed);
    match (transition, outcome) {
        (Some(CheckTransition::Down), Err(why)) => tracing::warn!(
            app = %app.name,
            backend = %backend.id,
            addr = %backend.addr,
            "backend failed {} health checks in a row (GET {}: {why}); out of rotation until {} pass",
            check.fall,
            check.path,
            check.rise
        ),
        (Some(CheckTransition::Up), _) => tracing::info!(
            app = %app.name,
            backend = %backend.id,
            addr = %backend.addr,
            "backend passed {} health checks in a row; back in rotation",
            check.rise
        ),
        _ => {}
    }
}

/// One check: `Ok` for a 2xx/3xx answer, else what went wrong. Reaches
/// the backend as requests do ([`upstream::resolve`], [`connector`]).
async fn probe(
    backend: &BackendState,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<(), String> {
    let addr = upstream::resolve(backend)
        .await
        .map_err(|e| format!("cannot resolve: {e}"))?;
    let stream = connector::connect(addr, timeout)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("cannot talk HTTP: {e}"))?;
    let driver = tokio::spawn(conn);
    let req = Request::get(path)
        .header(header::HOST, host)
        .header(header::USER_AGENT, "berth-router-check")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("invalid check request: {e}"))?;
    let result = sender.send_request(req).await;
    driver.abort();
    let status = result.map_err(|e| format!("no answer: {e}"))?.status();
    if status.is_success() || status.is_redirection() {
        Ok(())
    } else {
        Err(status_text(status))
    }
}

fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}
