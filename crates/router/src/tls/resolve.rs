//! Picking the certificate for a handshake by SNI: an exact name, then a
//! `*.` wildcard one label deep, then the default (the first certificate),
//! as HAProxy and nginx do for clients that send no name or an unknown one.
//! An empty set (a certificate directory with nothing in it yet) fails
//! every handshake until a certificate appears.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::load::Loaded;

/// The certificates serving at one moment, indexed by name.
pub(crate) struct CertSet {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by what follows `*.`: `example.com` for `*.example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// `None` only in an empty set.
    default: Option<Arc<CertifiedKey>>,
}

impl CertSet {
    /// The set of `certs` in order; the first is the default, and the first
    /// to claim a name keeps it.
    pub fn new<'a>(certs: impl IntoIterator<Item = &'a Loaded>) -> Self {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut default = None;
        for cert in certs {
            default.get_or_insert_with(|| Arc::clone(&cert.key));
            for name in &cert.names {
                let (map, key) = match name.strip_prefix("*.") {
                    Some(rest) => (&mut wildcard, rest),
                    None => (&mut exact, name.as_str()),
                };
                map.entry(key.to_string())
                    .or_insert_with(|| Arc::clone(&cert.key));
            }
        }
        Self {
            exact,
            wildcard,
            default,
        }
    }

    /// Whether no certificate is in the set.
    pub fn is_empty(&self) -> bool {
        self.default.is_none()
    }

    /// The certificate for SNI `name` (any case, maybe with a trailing
    /// dot); `None` only from an empty set.
    pub fn pick(&self, name: Option<&str>) -> Option<&Arc<CertifiedKey>> {
        let Some(name) = name else {
            return self.default.as_ref();
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(key) = self.exact.get(&name) {
            return Some(key);
        }
        // A wildcard covers exactly one label (RFC 6125 §6.4.3).
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .or(self.default.as_ref())
    }
}

/// What rustls asks for a certificate; the set behind it is swapped
/// whole when files change, so a handshake sees one set or the next.
pub(crate) struct Resolver {
    pub current: ArcSwap<CertSet>,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = self.current.load();
        f.debug_struct("Resolver")
            .field("names", &set.exact.len())
            .field("wildcards", &set.wildcard.len())
            .finish()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // `None` makes rustls refuse the handshake with an alert.
        self.current.load().pick(hello.server_name()).cloned()
    }
}

#[cfg(test)]
mod tests {
    use rustls::crypto::ring::default_provider;

    use super::*;

    fn cert(names: &[&str]) -> Loaded {
        let key = rcgen::KeyPair::generate().expect("key");
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        let der = params.self_signed(&key).expect("cert").der().clone();
        let signing = default_provider()
            .key_provider
            .load_private_key(key.serialize_der().try_into().expect("der key"))
            .expect("signing key");
        Loaded {
            key: Arc::new(CertifiedKey::new(vec![der], signing)),
            names: names.iter().map(|n| n.to_string()).collect(),
            not_after: None,
        }
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let a = cert(&["a.example"]);
        let wild = cert(&["*.apps.example", "apps.example"]);
        let set = CertSet::new([&a, &wild]);
        let is = |name: Option<&str>, c: &Loaded| {
            Arc::ptr_eq(set.pick(name).expect("a certificate"), &c.key)
        };
        assert!(is(Some("a.example"), &a));
        assert!(is(Some("A.Example."), &a), "case and trailing dot");
        assert!(is(Some("shop.apps.example"), &wild));
        assert!(is(Some("apps.example"), &wild));
        assert!(
            is(Some("x.shop.apps.example"), &a),
            "a wildcard is one label deep: the default instead"
        );
        assert!(is(Some("unknown.test"), &a));
        assert!(is(None, &a), "no SNI: the default (first) certificate");
    }

    #[test]
    fn the_first_to_claim_a_name_keeps_it() {
        let first = cert(&["same.example"]);
        let second = cert(&["same.example", "other.example"]);
        let set = CertSet::new([&first, &second]);
        let pick = |name| set.pick(Some(name)).expect("a certificate");
        assert!(Arc::ptr_eq(pick("same.example"), &first.key));
        assert!(Arc::ptr_eq(pick("other.example"), &second.key));
        let empty = CertSet::new([]);
        assert!(empty.is_empty());
        assert!(empty.pick(Some("same.example")).is_none());
        assert!(empty.pick(None).is_none());
    }
}
