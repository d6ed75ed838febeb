//! Unpacking an uploaded source archive without letting it write, or point,
//! anywhere outside its destination.
//!
//! Three layers: every entry name must be a plain relative path; only files,
//! directories and links are accepted; and once everything is on disk, every
//! symlink in the tree is resolved step by step inside the destination. The
//! last check runs after the whole archive because a link that looks safe
//! when written can change meaning once a later entry turns one of its path
//! components into a link (or hard-links a symlink elsewhere). Writes through
//! links during unpacking are already kept inside by `tar`'s `unpack_in`,
//! which canonicalises each entry's parent directory.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use tar::EntryType;

use crate::BuildError;

/// How many symlinks one path may traverse before it is called a loop (as
/// Linux's `MAXSYMLINKS`).
const MAX_LINK_HOPS: usize = 40;

/// Unpacks the gzipped tar at `archive` into `dest` (created if missing),
/// refusing absolute or `..` entry names, device files and pipes, and
/// symlinks that resolve outside `dest`.
pub fn unpack(archive: &Path, dest: &Path) -> Result<(), BuildError> {
    let file = File::open(archive)
        .map_err(|e| BuildError::io(format!("opening {}", archive.display()), e))?;
    fs::create_dir_all(dest)
        .map_err(|e| BuildError::io(format!("creating {}", dest.display()), e))?;
    let root = dest
        .canonicalize()
        .map_err(|e| BuildError::io(format!("resolving {}", dest.display()), e))?;
    unpack_from(GzDecoder::new(BufReader::new(file)), &root)?;
    check_links(&root, &root)
}

fn unpack_from(reader: impl Read, root: &Path) -> Result<(), BuildError> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(archive_error)?;
    for entry in entries {
        let mut entry = entry.map_err(archive_error)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let refuse = |reason: String| BuildError::UnsafeEntry {
            entry: name.clone(),
            reason,
        };
        let path = entry.path().map_err(|e| refuse(e.to_string()))?;
        let rel = relative_path(&path).map_err(|r| refuse(r.into()))?;
        let kind = entry.header().entry_type();
        match kind {
            EntryType::Regular
            | EntryType::Continuous
            | EntryType::GNUSparse
            | EntryType::Directory => {}
            EntryType::Symlink => {
                let target = link_target(&entry).map_err(&refuse)?;
                check_symlink_target(&rel, &target).map_err(|r| refuse(r.into()))?;
            }
            EntryType::Link => {
                let target = link_target(&entry).map_err(&refuse)?;
                relative_path(&target).map_err(|r| refuse(format!("hard link target {}", r)))?;
            }
            // Extension headers; `tar` already folded them into the entries.
            EntryType::XGlobalHeader | EntryType::XHeader => continue,
            EntryType::Char | EntryType::Block => {
                return Err(refuse("device files are not allowed in an app".into()))
            }
            EntryType::Fifo => return Err(refuse("named pipes are not allowed in an app".into())),
            other => return Err(refuse(format!("unsupported entry type {other:?}"))),
        }
        if rel.as_os_str().is_empty() {
            continue; // "./" itself
        }
        match entry.unpack_in(root) {
            Ok(true) => {}
            Ok(false) => return Err(refuse("it would be written outside the app".into())),
            Err(e) => return Err(refuse(e.to_string())),
        }
        if kind == EntryType::Directory {
            // A directory archived read-only would refuse the entries that
            // follow it, and the build's own files (.venv, staticfiles).
            let dir = root.join(&rel);
            let writable = fs::metadata(&dir).and_then(|m| {
                let mut perms = m.permissions();
                perms.set_mode(perms.mode() | 0o700);
                fs::set_permissions(&dir, perms)
            });
            writable.map_err(|e| refuse(e.to_string()))?;
        }
    }
    Ok(())
}

fn archive_error(e: std::io::Error) -> BuildError {
    BuildError::Archive {
        reason: e.to_string(),
    }
}

fn link_target<R: Read>(entry: &tar::Entry<'_, R>) -> Result<PathBuf, String> {
    match entry.link_name() {
        Ok(Some(target)) => Ok(target.into_owned()),
        Ok(None) => Err("link without a target".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The entry name as a relative path of plain components (`.` dropped).
fn relative_path(path: &Path) -> Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err("paths with '..' are not allowed"),
            Component::RootDir | Component::Prefix(_) => {
                return Err("absolute paths are not allowed")
            }
        }
    }
    Ok(out)
}

/// A first, purely lexical check of a symlink as it is read, so the common
/// cases get an error naming the entry before anything is written.
fn check_symlink_target(link: &Path, target: &Path) -> Result<(), &'static str> {
    if target.is_absolute() {
        return Err("symlinks to absolute paths point outside the app");
    }
    let mut depth = link.components().count().saturating_sub(1);
    for part in target.components() {
        match part {
            Component::Normal(_) => depth += 1,
            Component::ParentDir if depth == 0 => return Err("symlink points outside the app"),
            Component::ParentDir => depth -= 1,
            _ => {}
        }
    }
    Ok(())
}

/// Walks the tree under `dir` (not following links) and resolves every
/// symlink found inside `root`.
fn check_links(root: &Path, dir: &Path) -> Result<(), BuildError> {
    let entries =
        fs::read_dir(dir).map_err(|e| BuildError::io(format!("reading {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| BuildError::io(format!("reading {}", dir.display()), e))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|e| BuildError::io(format!("inspecting {}", path.display()), e))?;
        if kind.is_symlink() {
            let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            resolve_inside(root, &rel).map_err(|reason| BuildError::UnsafeEntry {
                entry: rel.display().to_string(),
                reason: reason.into(),
            })?;
        } else if kind.is_dir() {
            check_links(root, &path)?;
        }
    }
    Ok(())
}

/// Resolves `rel` against `root` the way the kernel would, but one component
/// at a time, failing as soon as the walk would leave `root`.
fn resolve_inside(root: &Path, rel: &Path) -> Result<(), &'static str> {
    let mut at: Vec<OsString> = Vec::new();
    let mut todo: VecDeque<Part> = parts(rel)?;
    let mut hops = 0;
    while let Some(part) = todo.pop_front() {
        match part {
            Part::Name(name) => {
                at.push(name);
                let here: PathBuf = root.join(at.iter().collect::<PathBuf>());
                if let Ok(target) = fs::read_link(&here) {
                    hops += 1;
                    if hops > MAX_LINK_HOPS {
                        return Err("too many levels of symlinks");
                    }
                    at.pop();
                    // The link's target replaces it at the front of the walk.
                    for p in parts(&target)?.into_iter().rev() {
                        todo.push_front(p);
                    }
                }
            }
            Part::Up => {
                if at.pop().is_none() {
                    return Err("symlink points outside the app");
                }
            }
        }
    }
    Ok(())
}

/// One step of a path walk.
enum Part {
    Name(OsString),
    Up,
}

fn parts(path: &Path) -> Result<VecDeque<Part>, &'static str> {
    let mut out = VecDeque::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push_back(Part::Name(n.to_os_string())),
            Component::ParentDir => out.push_back(Part::Up),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err("symlink to an absolute path points outside the app")
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
