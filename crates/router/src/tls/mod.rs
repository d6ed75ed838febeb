//! TLS termination: the certificates the router serves, chosen per
//! handshake by SNI, loaded from PEM files and reloaded when they change.
//!
//! Certificates come from files named one by one ([`CertFiles`]) and/or a
//! directory laid out as certbot's `live/` (`DIR/<name>/fullchain.pem` and
//! `DIR/<name>/privkey.pem`, one subdirectory per certificate, in name
//! order). The names a certificate serves are its SANs; the first
//! certificate is the default for clients that send no SNI or an unknown
//! name. TLS 1.2 and 1.3 only; ALPN offers `h2` and `http/1.1`.
//!
//! # Layout
//! - `load` — one certificate from its two files, checked.
//! - `resolve` — the certificate for a handshake's SNI.
//! - `watch` — [`Certificates::watch`]: reload on change, keeping the last
//!   good certificate when a new file is broken; [`Certificates::replace`]:
//!   another list of certificates (a standalone file reloaded).

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::ServerConfig;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

mod load;
mod resolve;
mod watch;

pub use load::CertFiles;

use resolve::{CertSet, Resolver};
use watch::Tracker;

/// Where the certificates are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertSources {
    /// Certificates named one by one, in order; the first one loaded is the
    /// default.
    pub files: Vec<CertFiles>,
    /// A certbot-style directory: each subdirectory holding `fullchain.pem`
    /// and `privkey.pem` is one certificate. Subdirectories added or
    /// removed later are picked up by [`Certificates::watch`].
    pub dir: Option<PathBuf>,
}

/// Why certificates cannot be used. Every message names the file.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("certificate {}: {reason}", path.display())]
    Certificate { path: PathBuf, reason: String },
    #[error("private key {}: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
    #[error(
        "private key {} does not belong to certificate {}: check that both come from the same issuance",
        key.display(),
        cert.display()
    )]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot list certificate directory {}: {source}", dir.display())]
    Dir {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no certificates: give certificate files, or a directory with NAME/fullchain.pem and NAME/privkey.pem")]
    None,
    #[error("certificate directory {} has no certificate yet: HTTPS would have none to serve, so the certificates serving now are kept", dir.display())]
    Empty { dir: PathBuf },
    #[error("{} certificate problem(s):\n  {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Several(Vec<TlsError>),
    #[error("TLS setup: {0}")]
    Setup(#[from] rustls::Error),
}

/// The router's certificates, shared by every TLS handshake and swapped
/// whole on reload. Cheap to clone.
#[derive(Clone)]
pub struct Certificates {
    inner: Arc<Inner>,
}

struct Inner {
    resolver: Arc<Resolver>,
    provider: Arc<CryptoProvider>,
    /// Only the watcher (or a test) takes it.
    tracker: Mutex<Tracker>,
}

impl Certificates {
    /// Loads every certificate of `sources`. Fails, listing every problem,
    /// if any one cannot be served: at start a broken file is a mistake to
    /// fix, not something to run without. A directory with no certificate
    /// in it yet is not an error (a warning): handshakes fail until
    /// [`Certificates::watch`] finds the first one, which is how a fresh
    /// host gets its first certificate through the router's port 80.
    pub fn load(sources: CertSources) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (tracker, set) = Tracker::load(sources, &provider)?;
        Ok(Self {
            inner: Arc::new(Inner {
                resolver: Arc::new(Resolver {
                    current: ArcSwap::from_pointee(set),
                }),
                provider,
                tracker: Mutex::new(tracker),
            }),
        })
    }

    /// The names served, exact and wildcard, for the start-up message.
    pub fn names(&self) -> Vec<String> {
        self.tracker().names()
    }

    /// The tracker, even after a reload panicked while holding it: what it
    /// knows is still the last state read, and refusing it would stop every
    /// later reload without a word.
    fn tracker(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.inner.tracker.lock().unwrap_or_else(|poisoned| {
            tracing::warn!("a certificate reload panicked before; reloading goes on");
            poisoned.into_inner()
        })
    }

    /// A rustls server configuration over these certificates (reloads
    /// included), offering HTTP/2 by ALPN when `http2`.
    pub fn server_config(&self, http2: bool) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&self.inner.provider))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&self.inner.resolver) as _);
        config.alpn_protocols = if http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        // Session tickets let a returning client skip the full handshake;
        // the ticket keys rotate (every 6 hours) and live only in memory.
        config.ticketer = rustls::crypto::ring::Ticketer::new()?;
        Ok(Arc::new(config))
    }

    fn swap(&self, set: CertSet) {
        self.inner.resolver.current.store(Arc::new(set));
    }
}

/// Marks a request that came over TLS (in its extensions): it gets
/// `X-Forwarded-Proto: https`, and no redirect to HTTPS.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OverTls;

/// Whether a connection negotiated HTTP/2.
pub(crate) fn is_h2(stream: &TlsStream<TcpStream>) -> bool {
    stream.get_ref().1.alpn_protocol() == Some(b"h2")
}

/// The server side of a handshake, cut off after `within`: a client that
/// opens a connection and stalls must not hold a connection slot forever.
pub(crate) async fn accept(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    within: Duration,
) -> io::Result<TlsStream<TcpStream>> {
    match tokio::time::timeout(within, acceptor.accept(stream)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("TLS handshake not done within {within:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// A self-signed certificate for `name` as certbot lays it out.
    fn write_cert(dir: &Path, name: &str) {
        let cert = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("cert");
        let sub = dir.join(name);
        std::fs::create_dir(&sub).expect("mkdir");
        std::fs::write(sub.join("fullchain.pem"), cert.cert.pem()).expect("write cert");
        std::fs::write(sub.join("privkey.pem"), cert.signing_key.serialize_pem())
            .expect("write key");
    }

    #[test]
    fn reloads_go_on_after_a_reload_panicked() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_cert(dir.path(), "a.test");
        let certs = Certificates::load(CertSources {
            files: Vec::new(),
            dir: Some(dir.path().to_path_buf()),
        })
        .expect("load");
        let holder = certs.clone();
        let panicked = std::thread::spawn(move || {
            let _held = holder.inner.tracker.lock();
            panic!("a reload that panics while holding the tracker");
        })
        .join();
        assert!(panicked.is_err() && certs.inner.tracker.is_poisoned());

        write_cert(dir.path(), "b.test");
        certs.reload();
        assert_eq!(certs.names(), ["a.test", "b.test"]);
        let served = certs.inner.resolver.current.load();
        assert!(served.pick(Some("b.test")).is_some_and(|b| served
            .pick(Some("a.test"))
            .is_some_and(|a| !Arc::ptr_eq(a, b))));
    }

    #[test]
    fn a_new_list_keeps_what_it_shares_and_never_leaves_nothing_to_serve() {
        let dir = tempfile::tempdir().expect("tempdir");
        let live = dir.path().join("live");
        std::fs::create_dir(&live).expect("mkdir");
        write_cert(&live, "a.test");
        let certs = Certificates::load(CertSources {
            files: Vec::new(),
            dir: Some(live.clone()),
        })
        .expect("load");
        let a = Arc::clone(certs.inner.resolver.current.load().pick(None).expect("a"));

        write_cert(dir.path(), "b.test");
        let b_files = CertFiles {
            cert: dir.path().join("b.test/fullchain.pem"),
            key: dir.path().join("b.test/privkey.pem"),
        };
        let both = CertSources {
            files: vec![b_files.clone()],
            dir: Some(live.clone()),
        };
        assert!(certs.replace(both.clone()).expect("replace"));
        assert!(!certs.replace(both).expect("same list"), "nothing to do");
        let served = certs.inner.resolver.current.load();
        assert_eq!(certs.names(), ["b.test", "a.test"]);
        assert!(
            served
                .pick(Some("a.test"))
                .is_some_and(|k| Arc::ptr_eq(k, &a)),
            "a.test's certificate taken over, not read again"
        );

        let broken = CertFiles {
            key: dir.path().join("nowhere.pem"),
            ..b_files
        };
        let err = certs.replace(CertSources {
            files: vec![broken],
            dir: None,
        });
        assert!(
            matches!(&err, Err(TlsError::Read { path, .. }) if path.ends_with("nowhere.pem")),
            "{:?}",
            err.err()
        );
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).expect("mkdir");
        let err = certs.replace(CertSources {
            files: Vec::new(),
            dir: Some(empty),
        });
        assert!(
            matches!(err, Err(TlsError::Empty { .. })),
            "{:?}",
            err.err()
        );
        assert_eq!(
            certs.names(),
            ["b.test", "a.test"],
            "refusals change nothing"
        );
    }
}
