//! Instances that left the route table while WebSocket sessions to them
//! were still open: what the router still carries to each, so the control
//! plane can stop a drained instance only once those sessions ended.
//!
//! Every backend has a [`Departure`], taken over by each table version that
//! keeps the instance. Its sessions count themselves on it
//! ([`Departure::count_session`]). When an update drops the instance,
//! [`Departures::depart`] cancels it — its sessions start their grace
//! ([`crate::tunnel`]) — and keeps it in a list until it carries nothing.
//! [`Departures::report`] is that list as the router tells the server with
//! each poll ([`crate::control_plane`]); any change to it after the
//! departure wakes the receivers of [`Departures::watch`], so the router
//! re-polls at once with the new counts. Polls carry the whole list, never a delta: a lost
//! one is healed by the next.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_model::DepartedSessions;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a departed instance with no session stays listed: a
/// WebSocket handshake sent before the departure may still complete after
/// it, and its session must be reported too.
const KEEP_EMPTY: Duration = Duration::from_secs(60);

/// One instance's departure from the route table, and its open sessions.
#[derive(Clone, Default)]
pub(crate) struct Departure(Arc<State>);

#[derive(Default)]
struct State {
    /// Cancelled when the instance leaves the table.
    left: CancellationToken,
    /// Open WebSocket sessions to the instance.
    sessions: AtomicU64,
    /// The longest grace any of them gets, in milliseconds.
    grace_ms: AtomicU64,
    /// Told of every change once the instance left (none before: a live
    /// instance's sessions are nobody's business but the balancer's).
    changed: Option<Arc<watch::Sender<()>>>,
}

/// Counts one session on its instance until dropped.
pub(crate) struct SessionCount(Departure);

/// The departed instances of one router.
pub(crate) struct Departures {
    changed: Arc<watch::Sender<()>>,
    departed: Mutex<Vec<Departed>>,
}

/// An instance that left the table, as the server knows it.
struct Departed {
    app: String,
    addr: String,
    id: String,
    at: Instant,
    departure: Departure,
}

impl Departure {
    /// Cancelled once the instance left the route table.
    pub(crate) fn token(&self) -> &CancellationToken {
        &self.0.left
    }

    /// Counts a session that gets `grace` once the instance left.
    pub(crate) fn count_session(&self, grace: Duration) -> SessionCount {
        self.0.sessions.fetch_add(1, Ordering::Relaxed);
        let ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        self.0.grace_ms.fetch_max(ms, Ordering::Relaxed);
        self.note_change();
        SessionCount(self.clone())
    }

    fn sessions(&self) -> u64 {
        self.0.sessions.load(Ordering::Relaxed)
    }

    fn note_change(&self) {
        if let (true, Some(changed)) = (self.0.left.is_cancelled(), &self.0.changed) {
            changed.send_replace(());
        }
    }
}

impl Drop for SessionCount {
    fn drop(&mut self) {
        self.0 .0.sessions.fetch_sub(1, Ordering::Relaxed);
        self.0.note_change();
    }
}

impl Default for Departures {
    fn default() -> Self {
        Self {
            changed: Arc::new(watch::channel(()).0),
            departed: Mutex::default(),
        }
    }
}

impl Departures {
    /// A departure for a new instance of the table.
    pub(crate) fn arrival(&self) -> Departure {
        Departure(Arc::new(State {
            changed: Some(Arc::clone(&self.changed)),
            ..Default::default()
        }))
    }

    /// The instance `id` of `app` at `addr` left the table: its sessions
    /// start their grace, and it is listed until it carries none.
    pub(crate) fn depart(&self, app: &str, addr: &str, id: &str, departure: &Departure) {
        departure.0.left.cancel();
        let mut departed = self.lock();
        prune(&mut departed);
        departed.push(Departed {
            app: app.to_string(),
            addr: addr.to_string(),
            id: id.to_string(),
            at: Instant::now(),
            departure: departure.clone(),
        });
        drop(departed);
        self.changed.send_replace(());
    }

    /// The sessions still open to instances that left, for the server.
    pub(crate) fn report(&self) -> Vec<DepartedSessions> {
        let mut departed = self.lock();
        prune(&mut departed);
        departed
            .iter()
            .filter(|d| d.departure.sessions() > 0)
            .map(|d| DepartedSessions {
                app: d.app.clone(),
                addr: d.addr.clone(),
                id: d.id.clone(),
                open: d.departure.sessions(),
                grace_ms: d.departure.0.grace_ms.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Sees every change to [`Departures::report`] (mark it seen before
    /// reading the report).
    pub(crate) fn watch(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Departed>> {
        self.departed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Forgets departed instances that carry nothing any more.
fn prune(departed: &mut Vec<Departed>) {
    departed.retain(|d| d.departure.sessions() > 0 || d.at.elapsed() < KEEP_EMPTY);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sessions_are_reported_from_departure_until_they_end() {
        let departures = Departures::default();
        let mut changed = departures.watch();
        let departure = departures.arrival();
        let first = departure.count_session(Duration::from_secs(30));
        let second = departure.count_session(Duration::from_secs(30));
        assert!(
            departures.report().is_empty(),
            "a live instance is not reported"
        );
        assert!(
            !changed.has_changed().unwrap_or(true),
            "nor are its sessions news"
        );

        departures.depart("chat", "127.0.0.1:4000", "v1/web.1", &departure);
        assert!(
            departure.token().is_cancelled(),
            "its sessions start their grace"
        );
        changed.changed().await.expect("departures alive");
        let report = departures.report();
        assert_eq!(report.len(), 1);
        assert_eq!(
            (
                report[0].app.as_str(),
                report[0].id.as_str(),
                report[0].open,
                report[0].grace_ms
            ),
            ("chat", "v1/web.1", 2, 30_000)
        );

        drop(first);
        changed.changed().await.expect("departures alive");
        assert_eq!(departures.report()[0].open, 1);
        drop(second);
        changed.changed().await.expect("departures alive");
        assert!(departures.report().is_empty(), "nothing left to wait for");
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_completing_after_the_departure_is_reported() {
        let departures = Departures::default();
        let departure = departures.arrival();
        departures.depart("chat", "127.0.0.1:4000", "v1/web.1", &departure);
        assert!(departures.report().is_empty());
        tokio::time::advance(Duration::from_secs(5)).await;
        let late = departure.count_session(Duration::from_secs(3));
        assert_eq!(departures.report()[0].open, 1);
        drop(late);
        assert!(departures.report().is_empty());

        tokio::time::advance(KEEP_EMPTY).await;
        let _ = departures.report();
        assert!(departures.lock().is_empty(), "forgotten once empty and old");
    }
}
