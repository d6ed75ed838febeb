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
//! The certificates are read when the router starts, and again when the
//! file is reloaded with another list ([`TlsSettings::load_certificates`],
//! `standalone::reload`); a problem with one names the line of the entry.
//!
//! `https_port` (a router-wide setting, read with the others) is the port
//! redirects to HTTPS name, for when a port forward puts 443 in front of
//! `listen_tls`.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::ConfigError;
use crate::tls::{CertFiles, CertSources, Certificates, TlsError};

/// Where to serve HTTPS, and with which certificates.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsSettings {
    pub listen: SocketAddr,
    pub certificates: CertSources,
    /// Where the certificates are named in the file.
    pub lines: SourceLines,
}

/// The lines of the file naming certificates: a certificate that cannot be
/// served is reported with the line that asked for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceLines {
    /// The `cert` and `key` lines of each `[[certificates]]` entry, in order.
    pub files: Vec<(usize, usize)>,
    /// The `certificates_dir` line.
    pub dir: Option<usize>,
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
/// read (and refused, naming the line and file) by
/// [`TlsSettings::load_certificates`] and on reload.
pub(super) fn settings(
    listen_tls: Option<&Spanned<String>>,
    certificates: &[Spanned<RawCert>],
    dir: Option<&Spanned<String>>,
    base: &Path,
    line_of: &dyn Fn(usize) -> usize,
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
    let lines = SourceLines {
        files: certificates
            .iter()
            .map(|c| {
                let c = c.get_ref();
                (line_of(c.cert.span().start), line_of(c.key.span().start))
            })
            .collect(),
        dir: dir.map(|d| line_of(d.span().start)),
    };
    Some(TlsSettings {
        listen: addr,
        certificates: CertSources {
            files,
            dir: dir_path,
        },
        lines,
    })
}

impl TlsSettings {
    /// Loads the certificates, failing on any that cannot be served; each
    /// problem names its line of `file` (the configuration's path).
    pub fn load_certificates(&self, file: &Path) -> Result<Certificates, ConfigError> {
        Certificates::load(self.certificates.clone()).map_err(|e| self.error(file, &e))
    }

    /// Serves this file's certificates on the running `certs` (see
    /// [`Certificates::replace`]); whether the list changed.
    pub(super) fn replace_in(
        &self,
        certs: &Certificates,
        file: &Path,
    ) -> Result<bool, ConfigError> {
        certs
            .replace(self.certificates.clone())
            .map_err(|e| self.error(file, &e))
    }

    /// `e` as a problem of `file`, with the lines of its certificates.
    pub(super) fn error(&self, file: &Path, e: &TlsError) -> ConfigError {
        ConfigError::Invalid {
            path: file.to_path_buf(),
            problems: self.problems(e),
        }
    }

    fn problems(&self, e: &TlsError) -> Vec<String> {
        if let TlsError::Several(all) = e {
            return all.iter().flat_map(|e| self.problems(e)).collect();
        }
        vec![match self.line(e) {
            Some(line) => format!("line {line}: {e}"),
            None => e.to_string(),
        }]
    }

    /// The line of the entry (or directory) a certificate problem comes from.
    fn line(&self, e: &TlsError) -> Option<usize> {
        let entries = || self.certificates.files.iter().zip(&self.lines.files);
        let path: &PathBuf = match e {
            TlsError::Read { path, .. }
            | TlsError::Certificate { path, .. }
            | TlsError::Key { path, .. } => path,
            // The same certificate may be listed with several keys.
            TlsError::Mismatch { cert, key } => {
                return entries()
                    .find(|(f, _)| &f.cert == cert && &f.key == key)
                    .map(|(_, &(line, _))| line)
                    .or_else(|| self.dir_line(cert));
            }
            TlsError::Dir { dir, .. } | TlsError::Empty { dir } => dir,
            TlsError::None | TlsError::Several(_) | TlsError::Setup(_) => return None,
        };
        entries()
            .find_map(|(f, &(cert, key))| {
                if &f.cert == path {
                    Some(cert)
                } else if &f.key == path {
                    Some(key)
                } else {
                    None
                }
            })
            .or_else(|| self.dir_line(path))
    }

    /// The `certificates_dir` line, for a path under that directory.
    fn dir_line(&self, path: &Path) -> Option<usize> {
        let dir = self.certificates.dir.as_ref()?;
        path.starts_with(dir).then_some(self.lines.dir).flatten()
    }
}
