//! Reloading certificates when their files change, and taking another list
//! of them ([`Certificates::replace`]) without dropping what is loaded.
//!
//! Files are polled (size, modification and change time, device and inode
//! of each, every 500 ms) as
//! the standalone TOML file is, for the same reasons: it works on every
//! filesystem and costs a few `stat`s. `stat` follows symlinks, so
//! certbot's renewal (new files under `archive/`, the `live/` links moved)
//! is seen as a change. A file that cannot be loaded is reported once per
//! change with its path, and the certificate loaded from it before keeps
//! serving; handshakes already done are never touched.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;

use super::load::{self, CertFiles, Loaded};
use super::resolve::CertSet;
use super::{CertSources, Certificates, TlsError};
use crate::file_stamp::FileStamp;

/// How often [`Certificates::watch`] looks at the files.
const POLL_EVERY: Duration = Duration::from_millis(500);

/// What tells the versions of both files of a certificate apart.
type Stamp = [Option<FileStamp>; 2];

/// What is known of the certificate files.
pub(super) struct Tracker {
    sources: CertSources,
    entries: Vec<Entry>,
}

#[derive(Clone)]
struct Entry {
    files: CertFiles,
    /// The files as last read, good or bad: a broken file is reported once,
    /// not at every poll.
    seen: Stamp,
    /// The last good certificate from these files.
    loaded: Option<Loaded>,
}

impl Tracker {
    /// Loads every certificate of `sources`, failing on any problem.
    pub fn load(
        sources: CertSources,
        provider: &CryptoProvider,
    ) -> Result<(Self, CertSet), TlsError> {
        let tracker = Self::build(sources, provider, &[])?;
        let set = CertSet::new(tracker.loaded());
        if set.is_empty() {
            // A certificate directory may start empty: on a fresh host the
            // first certificate is fetched through this very router (ACME
            // http-01 on port 80), so HTTPS must be able to wait for it.
            // Files named one by one are a promise that they exist.
            let Some(dir) = &tracker.sources.dir else {
                return Err(TlsError::None);
            };
            warn_empty(dir);
        }
        Ok((tracker, set))
    }

    /// A tracker of `sources` in place of this one: the certificates both
    /// list are taken over as they are (the file watcher's business), the
    /// others loaded, failing on any problem. A new list that would leave
    /// nothing to serve where something is served now is refused too: a
    /// reload must not take HTTPS down.
    fn replaced(
        &self,
        sources: CertSources,
        provider: &CryptoProvider,
    ) -> Result<(Self, CertSet), TlsError> {
        let tracker = Self::build(sources, provider, &self.entries)?;
        let set = CertSet::new(tracker.loaded());
        if set.is_empty() {
            let Some(dir) = &tracker.sources.dir else {
                return Err(TlsError::None);
            };
            if self.loaded().next().is_some() {
                return Err(TlsError::Empty { dir: dir.clone() });
            }
            warn_empty(dir);
        }
        Ok((tracker, set))
    }

    /// The entries of `sources`: those `known` as they are, the others
    /// loaded now; every problem of those is listed.
    fn build(
        sources: CertSources,
        provider: &CryptoProvider,
        known: &[Entry],
    ) -> Result<Self, TlsError> {
        // By path, not a scan per certificate: paths compare component by
        // component, and a certbot directory may hold hundreds.
        let known: HashMap<&CertFiles, &Entry> = known.iter().map(|e| (&e.files, e)).collect();
        let mut problems = Vec::new();
        let mut entries = Vec::new();
        for files in list(&sources)? {
            if let Some(&entry) = known.get(&files) {
                entries.push(entry.clone());
                continue;
            }
            let seen = stamp(&files);
            match load::load(&files, provider) {
                Ok(loaded) => {
                    warn_expired(&files, &loaded);
                    entries.push(Entry {
                        files,
                        seen,
                        loaded: Some(loaded),
                    })
                }
                Err(e) => problems.push(e),
            }
        }
        match problems.len() {
            0 => Ok(Self { sources, entries }),
            1 => Err(problems.remove(0)),
            _ => Err(TlsError::Several(problems)),
        }
    }

    /// Reads what changed since the last look; the new set when anything
    /// did (and at least one certificate is left to serve).
    fn reload(&mut self, provider: &CryptoProvider) -> Option<CertSet> {
        let files = match list(&self.sources) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!("{e}; keeping the certificates loaded before");
                return None;
            }
        };
        let mut changed = files.len() != self.entries.len();
        let mut old: HashMap<CertFiles, Entry> = std::mem::take(&mut self.entries)
            .into_iter()
            .map(|e| (e.files.clone(), e))
            .collect();
        for files in files {
            let mut entry = match old.remove(&files) {
                Some(entry) => entry,
                None => {
                    changed = true;
                    Entry {
                        files,
                        seen: [None, None],
                        loaded: None,
                    }
                }
            };
            let before = stamp(&entry.files);
            if before != entry.seen {
                match load::load(&entry.files, provider) {
                    Ok(loaded) => {
                        tracing::info!(cert = %entry.files.cert.display(), names = ?loaded.names, "certificate loaded");
                        warn_expired(&entry.files, &loaded);
                        entry.loaded = Some(loaded);
                        changed = true;
                    }
                    Err(e) if entry.loaded.is_some() => {
                        tracing::error!("{e}; still serving the certificate loaded before")
                    }
                    Err(e) => tracing::error!("{e}; not served until fixed"),
                }
                // Files still being written (the key after the
                // certificate) are read again at the next look.
                if stamp(&entry.files) == before {
                    entry.seen = before;
                }
            }
            self.entries.push(entry);
        }
        if !changed {
            return None;
        }
        let set = self.set();
        if set.is_none() {
            tracing::error!("no certificate left to serve; keeping the certificates loaded before");
        }
        set
    }

    /// The set to serve; `None` when it would be empty.
    fn set(&self) -> Option<CertSet> {
        Some(CertSet::new(self.loaded())).filter(|s| !s.is_empty())
    }

    fn loaded(&self) -> impl Iterator<Item = &Loaded> {
        self.entries.iter().filter_map(|e| e.loaded.as_ref())
    }

    pub fn names(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter_map(|e| e.loaded.as_ref())
            .flat_map(|l| l.names.iter().cloned())
            .collect()
    }
}

impl Certificates {
    /// Reloads certificates whose files changed, until `shutdown`. New
    /// handshakes get the new certificate; a broken file is logged and the
    /// last good certificate keeps serving.
    pub async fn watch(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(POLL_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = tick.tick() => {}
            }
            let certs = self.clone();
            // Reading and parsing files blocks; keep it off the workers.
            if let Err(e) = tokio::task::spawn_blocking(move || certs.reload()).await {
                tracing::error!("reloading certificates failed: {e}");
            }
        }
    }

    /// Reads the files once, and serves the new set if anything changed.
    pub(super) fn reload(&self) {
        // The swap is made under the tracker's lock: a set computed from
        // the files must not land after a `replace` that came later.
        let mut tracker = self.tracker();
        if let Some(set) = tracker.reload(&self.inner.provider) {
            self.swap(set);
        }
    }

    /// Serves the certificates of `sources` from now on: new handshakes get
    /// them, connections already set up keep theirs. Those listed before
    /// are kept as loaded (and still watched); the others are read now and
    /// must all load, else nothing changes and the error lists every
    /// problem. Whether the list differed. Blocks: it reads files.
    pub fn replace(&self, sources: CertSources) -> Result<bool, TlsError> {
        let mut tracker = self.tracker();
        if tracker.sources == sources {
            return Ok(false);
        }
        let (next, set) = tracker.replaced(sources, &self.inner.provider)?;
        *tracker = next;
        self.swap(set);
        Ok(true)
    }
}

/// The certificates of `sources`: the files named, then the directory's.
fn list(sources: &CertSources) -> Result<Vec<CertFiles>, TlsError> {
    let mut all = sources.files.clone();
    if let Some(dir) = &sources.dir {
        all.extend(scan(dir)?);
    }
    Ok(all)
}

/// The certbot-style certificates in `dir`, in name order. Subdirectories
/// with neither file (certbot keeps a README next to them) are not
/// certificates; one with only one of them is, and fails to load with a
/// message naming the missing file.
fn scan(dir: &Path) -> Result<Vec<CertFiles>, TlsError> {
    let read_dir = std::fs::read_dir(dir).map_err(|source| TlsError::Dir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let mut subdirs: Vec<PathBuf> = read_dir
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    subdirs.sort();
    Ok(subdirs
        .into_iter()
        .map(|d| CertFiles {
            cert: d.join("fullchain.pem"),
            key: d.join("privkey.pem"),
        })
        .filter(|f| f.cert.exists() || f.key.exists())
        .collect())
}

fn stamp(files: &CertFiles) -> Stamp {
    [FileStamp::of(&files.cert), FileStamp::of(&files.key)]
}

fn warn_empty(dir: &Path) {
    tracing::warn!(
        dir = %dir.display(),
        "no certificate yet: HTTPS handshakes fail until one appears as NAME/fullchain.pem and NAME/privkey.pem"
    );
}

fn warn_expired(files: &CertFiles, loaded: &Loaded) {
    if loaded.not_after.is_some_and(|t| t < SystemTime::now()) {
        tracing::warn!(
            cert = %files.cert.display(),
            "certificate has expired: clients will refuse it until it is renewed"
        );
    }
}
