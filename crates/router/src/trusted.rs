//! [`TrustedProxies`]: the peers whose `X-Forwarded-*` headers the router
//! believes, and the client address that follows from them.
//!
//! The router is normally the edge, so a client's `X-Forwarded-For` is a
//! claim nobody checked and is replaced. Behind a load balancer or CDN,
//! though, every peer is that proxy; listing it here keeps the chain it
//! sends and makes the client address (for rate limits and logs) the
//! right-most address of the chain that is not itself a trusted proxy.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use http::HeaderMap;
use thiserror::Error;

/// A set of networks (`10.0.0.0/8`, `::1`); empty by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<Net>,
}

/// One network: an address and how many leading bits must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

/// Why a network cannot be parsed.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0:?} is not an address or network like \"10.0.0.0/8\" or \"::1\"")]
pub struct NetError(String);

impl FromStr for Net {
    type Err = NetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || NetError(s.to_string());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(bad)?,
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Net {
    fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(u32::from(net).into(), u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, prefix: u8, bits: u32) -> bool {
    let shift = bits - u32::from(prefix);
    // A /0 matches everything; shifting by the full width would overflow.
    shift >= bits || (a >> shift) == (b >> shift)
}

/// IPv4 peers of a dual-stack socket arrive as `::ffff:a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl TrustedProxies {
    /// The given networks.
    pub fn new(nets: Vec<Net>) -> Self {
        Self { nets }
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }

    /// Whether the list is empty (nobody's headers are believed).
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// The client's address: `peer` itself unless `peer` is trusted; then
    /// the right-most `X-Forwarded-For` entry that is not trusted (entries
    /// left of it were written by whoever the client was, so are not
    /// believed either).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if self.nets.is_empty() || !self.contains(peer) {
            return peer;
        }
        let mut client = peer;
        let chain: Vec<&str> = headers
            .get_all(crate::headers::X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        for hop in chain.iter().rev() {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !self.contains(ip) {
                        break;
                    }
                }
                // Garbage in the chain: stop believing it there.
                Err(_) => break,
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn proxies(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().expect("net")).collect())
    }

    #[test]
    fn networks() {
        let t = proxies(&["10.0.0.0/8", "::1", "192.168.1.7"]);
        assert!(t.contains("10.200.3.4".parse().expect("ip")));
        assert!(!t.contains("11.0.0.1".parse().expect("ip")));
        assert!(t.contains("::1".parse().expect("ip")));
        assert!(t.contains("::ffff:10.1.1.1".parse().expect("ip")));
        assert!(t.contains("192.168.1.7".parse().expect("ip")));
        assert!(!t.contains("192.168.1.8".parse().expect("ip")));
        assert!(proxies(&["0.0.0.0/0"]).contains("8.8.8.8".parse().expect("ip")));
        for bad in ["10.0.0.0/33", "nope", "1.2.3.4/x", ""] {
            assert!(bad.parse::<Net>().is_err(), "{bad}");
        }
    }

    #[test]
    fn client_ip_walks_the_chain_from_the_right() {
        let t = proxies(&["10.0.0.0/8"]);
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 1.2.3.4, 10.0.0.9"),
        );
        let lb: IpAddr = "10.0.0.1".parse().expect("ip");
        assert_eq!(
            t.client_ip(lb, &h),
            "1.2.3.4".parse::<IpAddr>().expect("ip")
        );
        let stranger: IpAddr = "5.5.5.5".parse().expect("ip");
        assert_eq!(t.client_ip(stranger, &h), stranger, "untrusted peer");
        assert_eq!(t.client_ip(lb, &HeaderMap::new()), lb, "no header");
    }
}
