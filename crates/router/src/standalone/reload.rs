//! Reloading a standalone file into the running router: its routes and,
//! when the router serves HTTPS, its list of certificates. A reload is all
//! or nothing: a file naming a certificate that cannot be served (missing,
//! not PEM, key not its own) changes neither, and the last good file keeps
//! serving.
//!
//! The file is polled (size, times and inode, every 500 ms) rather than
//! watched with inotify and friends: polling works on every filesystem
//! (network mounts, bind mounts into containers, editors that replace the
//! file by renaming), needs no watch limits, and one `stat` every half
//! second costs nothing.
//!
//! `listen_tls` cannot move under a running listener (its connections
//! would drop): a change of it is logged as needing a restart, and the rest
//! of the file, certificates included, is applied.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{load, ConfigError, StandaloneConfig};
use crate::file_stamp::FileStamp;
use crate::table::Routes;
use crate::tls::Certificates;

/// How often [`watch_file`] looks at the file.
const POLL_EVERY: Duration = Duration::from_millis(500);

/// What a reload of the file changes in the running router. Cheap to clone.
#[derive(Clone)]
pub struct Live {
    routes: Routes,
    tls: Option<LiveTls>,
}

#[derive(Clone)]
struct LiveTls {
    /// `listen_tls` as the file gave it at start, not the bound address
    /// (`:0` binds a port of its own).
    listen: SocketAddr,
    certs: Certificates,
}

impl Live {
    /// A router serving `routes` over plain HTTP only.
    pub fn new(routes: Routes) -> Self {
        Self { routes, tls: None }
    }

    /// The same router also serving HTTPS with `certs`, started from the
    /// file's `listen_tls = listen`.
    pub fn with_tls(mut self, listen: SocketAddr, certs: Certificates) -> Self {
        self.tls = Some(LiveTls { listen, certs });
        self
    }

    /// Makes the certificates of `config` serve (reading their files, so
    /// it blocks); how that went for HTTPS. An error changes nothing.
    fn apply_tls(&self, config: &StandaloneConfig, file: &Path) -> Result<TlsOutcome, ConfigError> {
        Ok(match (&self.tls, &config.tls) {
            (None, None) => TlsOutcome::default(),
            (None, Some(new)) => {
                // Checked now, so that the restart which applies them does
                // not fail on a file the user thinks was accepted.
                new.load_certificates(file)?;
                TlsOutcome {
                    replaced: false,
                    restart: Some(format!(
                        "listen_tls = \"{}\" is new: restart the router to serve HTTPS (the rest of the file is applied)",
                        new.listen
                    )),
                }
            }
            (Some(live), None) => TlsOutcome {
                replaced: false,
                restart: Some(format!(
                    "listen_tls was removed: HTTPS goes on at {} with its certificates until the router is restarted (the rest of the file is applied)",
                    live.listen
                )),
            },
            (Some(live), Some(new)) => TlsOutcome {
                replaced: new.replace_in(&live.certs, file)?,
                restart: (new.listen != live.listen).then(|| {
                    format!(
                        "listen_tls changed from {} to {}: restart the router to move HTTPS; until then it stays at {} (the certificates and the rest of the file are applied)",
                        live.listen, new.listen, live.listen
                    )
                }),
            },
        })
    }
}

impl From<Routes> for Live {
    fn from(routes: Routes) -> Self {
        Self::new(routes)
    }
}

/// What a reload did to HTTPS.
#[derive(Debug, Default)]
struct TlsOutcome {
    /// Another list of certificates serves new handshakes.
    replaced: bool,
    /// What of the file waits for a restart.
    restart: Option<String>,
}

/// Loads `path` into `live` now and again whenever it changes, until
/// `shutdown` completes. An invalid file is reported with
/// `tracing::error!` and ignored: the last good routes and certificates
/// keep serving.
pub async fn watch_file(path: PathBuf, live: impl Into<Live>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut watcher = FileWatcher::new(path, live.into());
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = tick.tick() => {
                watcher.check().await;
            }
        }
    }
}

/// What [`FileWatcher::check`] did.
#[derive(Debug)]
pub(super) enum Checked {
    Unchanged,
    Applied,
    Invalid,
}

/// Remembers what the file looked like when it was last read.
pub(super) struct FileWatcher {
    path: PathBuf,
    live: Live,
    /// `None` before the first look; `Some(None)` while the file is missing.
    seen: Option<Option<FileStamp>>,
}

impl FileWatcher {
    pub(super) fn new(path: PathBuf, live: Live) -> Self {
        Self {
            path,
            live,
            seen: None,
        }
    }

    /// Reloads the file if it changed since the last look.
    pub(super) async fn check(&mut self) -> Checked {
        let before = FileStamp::of(&self.path);
        if self.seen == Some(before) {
            return Checked::Unchanged;
        }
        let (path, live) = (self.path.clone(), self.live.clone());
        // Certificates first: they are the part that can still fail, and
        // the routes must not change if they do.
        let loaded = tokio::task::spawn_blocking(move || {
            let config = load(&path)?;
            let tls = live.apply_tls(&config, &path)?;
            Ok::<_, ConfigError>((config, tls))
        })
        .await;
        // Only trust what was read if the file did not change under the read
        // (an editor still writing it); otherwise look again next tick.
        if FileStamp::of(&self.path) == before {
            self.seen = Some(before);
        }
        match loaded {
            Ok(Ok((config, tls))) => {
                config.apply(&self.live.routes);
                if let Some(restart) = &tls.restart {
                    tracing::warn!(path = %self.path.display(), "{restart}");
                }
                if let (true, Some(live)) = (tls.replaced, &self.live.tls) {
                    tracing::info!(path = %self.path.display(), names = ?live.certs.names(), "certificates loaded from the router config");
                }
                tracing::info!(path = %self.path.display(), apps = config.apps.len(), "router config loaded");
                Checked::Applied
            }
            Ok(Err(e)) => {
                tracing::error!("{e}\nkeeping the previous routes and certificates until the file is fixed (save it again once the certificate files are in place)");
                Checked::Invalid
            }
            Err(e) => {
                tracing::error!("reading router config failed: {e}");
                Checked::Invalid
            }
        }
    }
}
