//! Connection limits that protect the router from one greedy client
//! ([`ConnLimits`]: per router and per client address). Per-app limits
//! (body size, request rate) come with the routes
//! ([`berth_model::RouteSettings`]).
//!
//! Connections beyond a limit are closed as soon as they are accepted: an
//! answer would need the request read first, which is exactly the work a
//! flood should not get, and a client over its share gets nothing useful
//! from waiting in the kernel's backlog either.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::trusted::TrustedProxies;

/// Counts open client connections, in total and per address.
pub(crate) struct ConnLimits {
    max: usize,
    per_ip: usize,
    trusted: TrustedProxies,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The router has `max_connections` open.
    Full,
    /// This address has `max_connections_per_ip` open.
    PerIp,
}

/// One admitted connection; gives its place back when dropped.
pub(crate) struct ConnGuard {
    limits: Arc<ConnLimits>,
    /// `None` for a trusted proxy, which is not counted per address.
    ip: Option<IpAddr>,
}

/// A connection's place, shared by whoever holds the socket: its HTTP
/// connection, then the WebSocket session it became.
#[derive(Clone)]
pub(crate) struct Held {
    _guard: Arc<ConnGuard>,
}

impl Held {
    pub(crate) fn new(guard: &Arc<ConnGuard>) -> Self {
        Self {
            _guard: Arc::clone(guard),
        }
    }
}

impl ConnLimits {
    pub(crate) fn new(max: usize, per_ip: usize, trusted: TrustedProxies) -> Arc<Self> {
        Arc::new(Self {
            max,
            per_ip,
            trusted,
            open: Mutex::new(Open::default()),
        })
    }

    /// Admits a connection from `ip`, or says which limit it is over.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnGuard, Refused> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.total >= self.max {
            return Err(Refused::Full);
        }
        let counted = !self.trusted.contains(ip);
        if counted {
            let n = open.by_ip.entry(ip).or_insert(0);
            if *n >= self.per_ip {
                return Err(Refused::PerIp);
            }
            *n += 1;
        }
        open.total += 1;
        Ok(ConnGuard {
            limits: Arc::clone(self),
            ip: counted.then_some(ip),
        })
    }

    /// Connections open right now.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total -= 1;
        if let Some(ip) = self.ip {
            if let Some(n) = open.by_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    open.by_ip.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_and_total() {
        let trusted = TrustedProxies::new(vec!["10.0.0.1".parse().expect("net")]);
        let limits = ConnLimits::new(3, 1, trusted);
        let a: IpAddr = "1.1.1.1".parse().expect("ip");
        let lb: IpAddr = "10.0.0.1".parse().expect("ip");
        let first = limits.admit(a).expect("first");
        assert_eq!(limits.admit(a).err(), Some(Refused::PerIp));
        let _p1 = limits
            .admit(lb)
            .expect("a trusted proxy is not counted per address");
        let _p2 = limits.admit(lb).expect("nor twice");
        assert_eq!(limits.admit(lb).err(), Some(Refused::Full));
        drop(first);
        assert_eq!(limits.open(), 2);
        let _again = limits.admit(a).expect("the place came back");
    }
}
