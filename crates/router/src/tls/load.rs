//! One certificate from disk: a PEM chain and its private key, checked
//! against each other, with the names (SANs) it may be served for.
//!
//! Everything a user can get wrong is an error naming the file: unreadable,
//! no certificate in it, no key, a key rustls cannot use, a key that is not
//! the certificate's.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

/// The two files of one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertFiles {
    /// PEM: the leaf first, then the intermediates (certbot's
    /// `fullchain.pem`).
    pub cert: PathBuf,
    /// PEM: its private key, PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key: PathBuf,
}

/// A certificate ready to serve.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub key: Arc<CertifiedKey>,
    /// Lowercase DNS names of its SANs; `*.example.com` for wildcards.
    pub names: Vec<String>,
    pub not_after: Option<SystemTime>,
}

/// Reads, parses and checks `files`.
pub(crate) fn load(files: &CertFiles, provider: &CryptoProvider) -> Result<Loaded, TlsError> {
    let cert_pem = read(&files.cert)?;
    let key_pem = read(&files.key)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate {
            path: files.cert.clone(),
            reason: format!("not valid PEM: {e}"),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::Certificate {
            path: files.cert.clone(),
            reason: "no CERTIFICATE block in it".into(),
        });
    };
    let (names, not_after) = describe(leaf).map_err(|reason| TlsError::Certificate {
        path: files.cert.clone(),
        reason,
    })?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Key {
        path: files.key.clone(),
        reason: match e {
            rustls_pki_types::pem::Error::NoItemsFound => "no PRIVATE KEY block in it".into(),
            e => format!("not valid PEM: {e}"),
        },
    })?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Key {
            path: files.key.clone(),
            reason: format!("unusable key: {e}"),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    if certified.keys_match().is_err() {
        return Err(TlsError::Mismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
        });
    }
    Ok(Loaded {
        key: Arc::new(certified),
        names,
        not_after,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The DNS names and expiry of a leaf certificate. Names come from the
/// SANs only: browsers have ignored the subject's CN for years.
fn describe(leaf: &CertificateDer<'_>) -> Result<(Vec<String>, Option<SystemTime>), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let mut names = Vec::new();
    if let Some(san) = cert
        .subject_alternative_name()
        .map_err(|e| format!("bad subjectAltName: {e}"))?
    {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                let dns = dns.trim_end_matches('.').to_ascii_lowercase();
                if !dns.is_empty() && !names.contains(&dns) {
                    names.push(dns);
                }
            }
        }
    }
    let not_after = u64::try_from(cert.validity().not_after.timestamp())
        .ok()
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s));
    Ok((names, not_after))
}
