//! The TLS keys of a standalone file: `listen_tls`, `[[certificates]]`,
//! `certificates_dir`. Paths are relative to the file's directory.
//!
//! ```toml
//! listen_tls = "127.0.0.1:8443"
//! certificates_dir = "/etc/letsencrypt/live"   # NAME/fullchain.pem + NAME/privkey.pem
//! [[certificates]]                             # and/or one by one; the first is the default
//! cert = "certs/shop.pem"
//! key = "certs/shop.key"
//! ```
//!
//! `https_port` (a router-wide setting, read with the others) is the port
//! redirects to HTTPS name, for when a port forward puts 443 in front of
//! `listen_tls`.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::tls::{CertFiles, CertSources};

/// Where to serve HTTPS, and with which certificates.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsSettings {
    pub listen: SocketAddr,
    pub certificates: CertSources,
}

/// One `[[certificates]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCert {
    cert: Spanned<String>,
    key: Spanned<String>,
}

/// The TLS settings of a file, if it has any; every problem goes to
/// `problem` with its span. Certificates are only named here: they are
/// read (and refused, naming the file) when the router starts.
pub(super) fn settings(
    listen_tls: Option<&Spanned<String>>,
    certificates: &[Spanned<RawCert>],
    dir: Option<&Spanned<String>>,
    base: &Path,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> Option<TlsSettings> {
    let files: Vec<CertFiles> = certificates
        .iter()
        .map(|c| CertFiles {
            cert: base.join(c.get_ref().cert.get_ref()),
            key: base.join(c.get_ref().key.get_ref()),
        })
        .collect();
    let dir_path = dir.map(|d| base.join(d.get_ref()));
    if let (Some(d), Some(path)) = (dir, &dir_path) {
        if !path.is_dir() {
            problem(
                d.span(),
                format!("certificates_dir {} is not a directory", path.display()),
            );
        }
    }
    let Some(listen) = listen_tls else {
        if let Some(c) = certificates.first() {
            problem(
                c.span(),
                "certificates without listen_tls: add e.g. listen_tls = \"0.0.0.0:443\"".into(),
            );
        } else if let Some(d) = dir {
            problem(
                d.span(),
                "certificates_dir without listen_tls: add e.g. listen_tls = \"0.0.0.0:443\"".into(),
            );
        }
        return None;
    };
    let addr = match listen.get_ref().parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            problem(
                listen.span(),
                format!(
                    "listen_tls {:?} is not an address like \"127.0.0.1:8443\"",
                    listen.get_ref()
                ),
            );
            return None;
        }
    };
    if files.is_empty() && dir_path.is_none() {
        problem(
            listen.span(),
            "listen_tls needs certificates: add [[certificates]] (cert, key) or certificates_dir"
                .into(),
        );
        return None;
    }
    Some(TlsSettings {
        listen: addr,
        certificates: CertSources {
            files,
            dir: dir_path,
        },
    })
}
