//! [`FileStamp`]: what tells one version of a file from the next, for the
//! watchers that poll files (the standalone TOML, certificates).

use std::path::Path;
use std::time::SystemTime;

/// One version of a file. Size and modification time alone miss a rewrite
/// of the same size within the filesystem's timestamp granularity; the
/// inode tells a file replaced by rename (certbot, editors, `cp` to a
/// temporary name then `mv`) from the one before, and the change time also
/// moves when a tool puts the old modification time back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    node: (u64, u64, i64, i64),
}

impl FileStamp {
    /// The stamp of the file at `path`; `None` when it cannot be read.
    pub(crate) fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Self {
            modified: meta.modified().ok(),
            len: meta.len(),
            #[cfg(unix)]
            node: {
                use std::os::unix::fs::MetadataExt;
                (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec())
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_replaced_with_the_same_size_and_time_is_a_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fullchain.pem");
        std::fs::write(&path, "first").expect("write");
        let before = FileStamp::of(&path).expect("stamp");
        // certbot's and editors' way: a new file, moved over the old one; even with the
        // same size and modification time it is another file.
        let next = dir.path().join("next.pem");
        std::fs::write(&next, "other").expect("write");
        let modified = before.modified.expect("mtime");
        std::fs::File::options()
            .write(true)
            .open(&next)
            .and_then(|f| f.set_modified(modified))
            .expect("set mtime");
        std::fs::rename(&next, &path).expect("rename");
        let after = FileStamp::of(&path).expect("stamp");
        assert_eq!((after.modified, after.len), (before.modified, before.len));
        assert_ne!(after, before);
    }
}
