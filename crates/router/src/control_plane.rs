//! [`follow_control_plane`]: keeps [`Routes`] in step with the server's
//! route table by long-polling it.
//!
//! The router must keep serving while the server is away (restarting,
//! upgrading, crashed): on any error the last table stays in place and the
//! poll is retried with a capped backoff.
//!
//! A named router's poll is also its report: the revision it routes by
//! (`after`), and the WebSocket sessions it still carries to instances that
//! left its table ([`crate::departures`]). When those change, the poll
//! under way is dropped and a new one sent with the new counts, so a drain
//! waiting for them learns within [`REPORT_SETTLE`] that they ended.

use std::future::Future;
use std::time::Duration;

use berth_client::Client;

use crate::table::Routes;

/// How long the server may hold a poll open when nothing changes.
const WAIT: Duration = Duration::from_secs(30);
/// First pause after a failed poll.
const BACKOFF_START: Duration = Duration::from_millis(200);
/// Longest pause between polls while the server is away: short enough that
/// routes converge within seconds of its return.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long a change to the departed sessions may gather more before it is
/// reported: sessions closed together at the end of a grace cost one poll.
const REPORT_SETTLE: Duration = Duration::from_millis(50);

/// Follows the server's route table until `shutdown` completes, without
/// acknowledging what it applied (drains then wait out their timeout).
pub async fn follow_control_plane(
    client: Client,
    routes: Routes,
    shutdown: impl Future<Output = ()>,
) {
    follow(None, client, routes, shutdown).await
}

/// Follows the server's route table as router `name`: each poll tells the
/// server which revision this router routes by, so a draining instance is
/// stopped only once every router has stopped sending it requests.
pub async fn follow_control_plane_as(
    name: String,
    client: Client,
    routes: Routes,
    shutdown: impl Future<Output = ()>,
) {
    follow(Some(&name), client, routes, shutdown).await
}

async fn follow(
    name: Option<&str>,
    client: Client,
    routes: Routes,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut backoff = Backoff::new();
    let mut departures = routes.departures().watch();
    loop {
        departures.borrow_and_update();
        let departed = match name {
            Some(_) => routes.departures().report(),
            None => Vec::new(),
        };
        let poll = client.routes(routes.revision(), WAIT, name.map(|n| (n, &departed[..])));
        let result = tokio::select! {
            () = &mut shutdown => return,
            r = poll => r,
            Ok(()) = departures.changed(), if name.is_some() => {
                tokio::select! {
                    () = &mut shutdown => return,
                    () = tokio::time::sleep(REPORT_SETTLE) => continue,
                }
            }
        };
        match result {
            Ok(table) => {
                if backoff.failures > 0 {
                    tracing::info!("route table: reached {} again", client.base_url());
                }
                backoff.reset();
                // Any different revision is news, lower ones included: a
                // server restored from an older backup counts from there.
                if table.revision != routes.revision() {
                    tracing::debug!(
                        revision = table.revision,
                        apps = table.apps.len(),
                        "route table updated"
                    );
                    routes.update(table);
                }
            }
            Err(e) => {
                let pause = backoff.next();
                // Log the 1st, 2nd, 4th, 8th… failure: loud at first, then
                // rarer, so a long outage does not flood the log.
                if backoff.failures.is_power_of_two() {
                    let revision = routes.revision();
                    if e.is_transient() {
                        tracing::warn!("route table: {e}; serving the last known routes (revision {revision}), retrying in {pause:?}");
                    } else {
                        // Not a blip (bad token, incompatible server): retrying
                        // will not fix it, but giving up would stop routing
                        // updates for good, so keep trying and say so loudly.
                        tracing::error!("route table: {e}; serving the last known routes (revision {revision}), retrying in {pause:?}");
                    }
                }
                tokio::select! {
                    () = &mut shutdown => return,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}

/// Doubling pauses from [`BACKOFF_START`] up to [`BACKOFF_MAX`].
struct Backoff {
    failures: u32,
    current: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self {
            failures: 0,
            current: BACKOFF_START,
        }
    }

    fn reset(&mut self) {
        *self = Self::new();
    }

    /// Counts a failure and returns the pause before the next try.
    fn next(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let pause = self.current;
        self.current = (self.current * 2).min(BACKOFF_MAX);
        pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new();
        let pauses: Vec<_> = (0..8).map(|_| b.next().as_millis()).collect();
        assert_eq!(pauses, [200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next(), BACKOFF_START);
    }
}
