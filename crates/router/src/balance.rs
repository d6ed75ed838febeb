//! Picking a backend of an app: least-conn by power of two choices, or
//! round robin.
//!
//! Power of two choices (compare two random backends, take the less loaded)
//! gets nearly the spread of a full least-conn scan without one: it never
//! herds every new request onto the same "least loaded" backend when loads
//! are stale, and it costs two reads whatever the number of backends.

use std::sync::atomic::Ordering;

use berth_model::Balance;
use rand::Rng;

use crate::table::App;

/// Index into `app.backends` of the backend for the next request, skipping
/// `exclude` (a backend that just failed). `None` when nothing is left.
pub(crate) fn pick(app: &App, exclude: Option<usize>) -> Option<usize> {
    let all = app.backends.len();
    let excluded = exclude.filter(|x| *x < all);
    let n = all - usize::from(excluded.is_some());
    // The i-th candidate, stepping over the excluded backend; no allocation
    // on the request path.
    let nth = |i: usize| match excluded {
        Some(x) if i >= x => i + 1,
        _ => i,
    };
    match n {
        0 => None,
        1 => Some(nth(0)),
        n => Some(match app.balance {
            Balance::RoundRobin => nth(app.next.fetch_add(1, Ordering::Relaxed) % n),
            Balance::LeastConn => {
                let mut rng = rand::rng();
                let a = rng.random_range(0..n);
                // A second, different index: draw from n-1 and step over `a`.
                let mut b = rng.random_range(0..n - 1);
                if b >= a {
                    b += 1;
                }
                let (a, b) = (nth(a), nth(b));
                if app.backends[b].current_load() < app.backends[a].current_load() {
                    b
                } else {
                    a
                }
            }
        }),
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
                balance,
                static_files: None,
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
}
