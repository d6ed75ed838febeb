//! Picking a backend of an app: least-conn by power of two choices, or
//! round robin, among the backends that are not down.
//!
//! Power of two choices (compare two random backends, take the less loaded)
//! gets nearly the spread of a full least-conn scan without one: it never
//! herds every new request onto the same "least loaded" backend when loads
//! are stale, and it costs two reads whatever the number of backends.
//!
//! Backends that passive health took out of rotation ([`crate::health`])
//! are skipped — unless all of them are, and then all are tried as if none
//! were: the marks may be stale, and trying a possibly-working app beats
//! answering `503` for sure. Finding them costs one atomic load per backend
//! of the app, without a lock or an allocation.

use std::sync::atomic::Ordering;

use berth_model::Balance;
use rand::Rng;

use crate::health;
use crate::table::App;

/// Index into `app.backends` of the backend for the next request, skipping
/// `exclude` (a backend that just failed) and, while others are left,
/// backends that are down. `None` when nothing is left.
pub(crate) fn pick(app: &App, exclude: Option<usize>) -> Option<usize> {
    let all = app.backends.len();
    let now = health::now_ms();
    let allowed = |i: usize| Some(i) != exclude;
    let up = |i: usize| allowed(i) && !app.backends[i].is_down(now);
    let n_up = (0..all).filter(|&i| up(i)).count();
    let skip_down = n_up > 0;
    let candidate = |i: usize| if skip_down { up(i) } else { allowed(i) };
    let n = if skip_down {
        n_up
    } else {
        (0..all).filter(|&i| allowed(i)).count()
    };
    // The i-th candidate; no allocation on the request path. A backend can
    // go down between the count and this scan, leaving fewer candidates
    // than counted; any allowed backend will do then.
    let nth = |i: usize| {
        (0..all)
            .filter(|&j| candidate(j))
            .nth(i)
            .or_else(|| (0..all).find(|&j| allowed(j)))
    };
    match n {
        0 => None,
        1 => nth(0),
        n => match app.balance {
            Balance::RoundRobin => nth(app.next.fetch_add(1, Ordering::Relaxed) % n),
            Balance::LeastConn => {
                let mut rng = rand::rng();
                let a = rng.random_range(0..n);
                // A second, different index: draw from n-1 and step over `a`.
                let mut b = rng.random_range(0..n - 1);
                if b >= a {
                    b += 1;
                }
                let (a, b) = (nth(a)?, nth(b)?);
                if app.backends[b].current_load() < app.backends[a].current_load() {
                    Some(b)
                } else {
                    Some(a)
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use berth_model::{AppRoute, Backend, RouteTable};

    use super::*;
    use crate::table::Routes;

    fn app(balance: Balance, n: usize) -> Arc<App> {
        let routes = Routes::new();
        routes.update(RouteTable {
            revision: 1,
            apps: vec![AppRoute {
                name: "a".into(),
                hosts: vec!["a".into()],
                backends: (0..n)
                    .map(|i| Backend {
                        addr: format!("127.0.0.1:{}", 1000 + i),
                        id: format!("web.{i}"),
                    })
                    .collect(),
                static_files: None,
                settings: berth_model::RouteSettings {
                    routing: berth_model::RoutingSettings {
                        balance,
                        ..Default::default()
                    },
                    health_check: None,
                },
            }],
        });
        let table = routes.load();
        Arc::clone(table.app("a").expect("app"))
    }

    #[test]
    fn round_robin_cycles() {
        let app = app(Balance::RoundRobin, 3);
        let picks: Vec<_> = (0..6).filter_map(|_| pick(&app, None)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn least_conn_prefers_the_idle_backend() {
        let app = app(Balance::LeastConn, 2);
        let _busy = app.backends[0].begin();
        for _ in 0..50 {
            assert_eq!(pick(&app, None), Some(1));
        }
    }

    #[test]
    fn exclusion_and_empty() {
        let app1 = app(Balance::LeastConn, 2);
        for _ in 0..20 {
            assert_eq!(pick(&app1, Some(0)), Some(1));
        }
        let single = app(Balance::RoundRobin, 1);
        assert_eq!(pick(&single, Some(0)), None);
        let none = app(Balance::LeastConn, 0);
        assert_eq!(pick(&none, None), None);
    }

    fn eject(app: &App, i: usize) {
        for _ in 0..crate::health::FAILURES_TO_EJECT {
            app.backends[i].health.record_failure(health::now_ms());
        }
        assert!(app.backends[i].is_down(health::now_ms()));
    }

    #[test]
    fn down_backends_are_skipped() {
        for balance in [Balance::LeastConn, Balance::RoundRobin] {
            let app = app(balance, 3);
            eject(&app, 1);
            for _ in 0..50 {
                assert_ne!(pick(&app, None), Some(1), "{balance:?}");
                assert_eq!(pick(&app, Some(0)), Some(2), "{balance:?}");
            }
        }
    }

    #[test]
    fn when_everything_is_down_everything_is_tried() {
        let dead = app(Balance::RoundRobin, 2);
        eject(&dead, 0);
        eject(&dead, 1);
        let picks: Vec<_> = (0..4).filter_map(|_| pick(&dead, None)).collect();
        assert_eq!(picks, [0, 1, 0, 1]);
        assert_eq!(pick(&dead, Some(0)), Some(1), "the retry too");

        // The retry's only choice is down: a down backend beats none.
        let partly = app(Balance::LeastConn, 2);
        eject(&partly, 1);
        assert_eq!(pick(&partly, Some(0)), Some(1));
    }
}
