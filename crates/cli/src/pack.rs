//! The source archive of `berth deploy`: a gzipped tar of the folder,
//! without what `.gitignore` or `.berthignore` exclude, without `.git`, and
//! without local virtualenvs and bytecode (they are rebuilt on the server and
//! would break there).

use std::path::Path;

use anyhow::{bail, Context};
use flate2::write::GzEncoder;
use flate2::Compression;
use ignore::WalkBuilder;

/// Directory names never uploaded.
const ALWAYS_SKIPPED: &[&str] = &[
    ".git",
    ".hg",
    ".venv",
    "venv",
    "__pycache__",
    "node_modules",
];

/// A packed source folder.
pub struct Packed {
    pub bytes: Vec<u8>,
    pub files: usize,
}

/// Packs `dir`; stops with an error as soon as the archive passes `max` bytes.
pub fn pack(dir: &Path, max: u64) -> anyhow::Result<Packed> {
    if !dir.is_dir() {
        bail!(
            "{} is not a folder: give the path of your app's source folder",
            dir.display()
        );
    }
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    tar.follow_symlinks(false);
    let walk = WalkBuilder::new(dir)
        .hidden(false)
        .git_ignore(true)
        .git_global(false)
        .git_exclude(true)
        .require_git(false)
        .add_custom_ignore_filename(".berthignore")
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            let skipped_dir = e.file_type().is_some_and(|t| t.is_dir())
                && ALWAYS_SKIPPED.contains(&name.as_ref());
            !skipped_dir && !name.ends_with(".pyc")
        })
        .build();
    let mut files = 0;
    for entry in walk {
        let entry = entry.context("cannot read the source folder")?;
        let path = entry.path();
        let rel = path.strip_prefix(dir).unwrap_or(path);
        if rel.as_os_str().is_empty() {
            continue;
        }
        let ft = entry.file_type();
        if ft.is_some_and(|t| t.is_file() || t.is_symlink()) {
            tar.append_path_with_name(path, rel)
                .with_context(|| format!("cannot add {} to the archive", path.display()))?;
            files += 1;
        } else if ft.is_some_and(|t| t.is_dir()) {
            tar.append_dir(rel, path)
                .with_context(|| format!("cannot add {} to the archive", path.display()))?;
        }
        if tar.get_ref().get_ref().len() as u64 > max {
            bail!(
                "the source folder is over {} compressed, the most this Berth accepts: list large files (data, media, virtualenvs) in .gitignore or .berthignore",
                crate::output::human_size(max)
            );
        }
    }
    let bytes = tar
        .into_inner()
        .and_then(|gz| gz.finish())
        .context("cannot finish the source archive")?;
    Ok(Packed { bytes, files })
}
