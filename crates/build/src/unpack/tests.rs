use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use std::os::unix::fs::PermissionsExt;
use tar::{EntryType, Header};

use super::*;

/// One archive entry, written with a raw name so that unsafe names (which
/// `tar`'s builder refuses) can be tested.
struct E<'a> {
    name: &'a str,
    kind: EntryType,
    link: Option<&'a str>,
    data: &'a [u8],
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> E<'a> {
    E {
        name,
        kind: EntryType::Regular,
        link: None,
        data,
    }
}

fn dir(name: &str) -> E<'_> {
    E {
        name,
        kind: EntryType::Directory,
        link: None,
        data: b"",
    }
}

fn link<'a>(kind: EntryType, name: &'a str, target: &'a str) -> E<'a> {
    E {
        name,
        kind,
        link: Some(target),
        data: b"",
    }
}

/// Writes a gzipped tar of `entries` (directories read-only, as some tools
/// archive them) and unpacks it into `<tmp>/dest`.
fn unpack_entries(entries: &[E<'_>]) -> (tempfile::TempDir, Result<(), BuildError>) {
    let tmp = tempfile::tempdir().unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = Header::new_gnu();
        h.as_old_mut().name[..e.name.len()].copy_from_slice(e.name.as_bytes());
        h.set_entry_type(e.kind);
        h.set_mode(if e.kind == EntryType::Directory {
            0o555
        } else {
            0o644
        });
        h.set_size(e.data.len() as u64);
        if let Some(target) = e.link {
            h.set_link_name(target).unwrap();
        }
        h.set_cksum();
        builder.append(&h, e.data).unwrap();
    }
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(&builder.into_inner().unwrap()).unwrap();
    let archive = tmp.path().join("src.tar.gz");
    fs::write(&archive, gz.finish().unwrap()).unwrap();
    let result = unpack(&archive, &tmp.path().join("dest"));
    (tmp, result)
}

fn refused(entries: &[E<'_>], entry: &str, reason: &str) {
    let (tmp, result) = unpack_entries(entries);
    match result {
        Err(BuildError::UnsafeEntry {
            entry: e,
            reason: r,
        }) => {
            assert_eq!(e, entry);
            assert!(r.contains(reason), "{r}");
        }
        other => panic!("expected {entry:?} to be refused, got {other:?}"),
    }
    assert!(!tmp.path().join("evil").exists());
}

#[test]
fn unpacks_files_directories_and_inside_links() {
    let (tmp, result) = unpack_entries(&[
        dir("./"),
        file("./app.py", b"print(1)\n"),
        dir("pkg/"),
        file("pkg/mod.py", b"x = 1\n"),
        link(EntryType::Symlink, "lib", "pkg"),
        file("lib/other.py", b"y = 2\n"),
        link(EntryType::Symlink, "pkg/up", "../app.py"),
        link(EntryType::Link, "hard.py", "app.py"),
    ]);
    result.unwrap();
    let dest = tmp.path().join("dest");
    assert_eq!(
        fs::read_to_string(dest.join("app.py")).unwrap(),
        "print(1)\n"
    );
    assert_eq!(
        fs::read_to_string(dest.join("pkg/other.py")).unwrap(),
        "y = 2\n"
    );
    assert_eq!(
        fs::read_to_string(dest.join("pkg/up")).unwrap(),
        "print(1)\n"
    );
    assert_eq!(
        fs::read_to_string(dest.join("hard.py")).unwrap(),
        "print(1)\n"
    );
    let mode = fs::metadata(dest.join("pkg")).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o700,
        0o700,
        "directories stay writable for the build"
    );
}

#[test]
fn refuses_names_that_leave_the_app() {
    refused(&[file("../evil", b"x")], "../evil", "'..'");
    refused(&[file("a/../../evil", b"x")], "a/../../evil", "'..'");
    refused(&[file("/tmp/evil", b"x")], "/tmp/evil", "absolute");
}

#[test]
fn refuses_links_that_point_outside() {
    refused(
        &[link(EntryType::Symlink, "passwd", "/etc/passwd")],
        "passwd",
        "absolute",
    );
    refused(
        &[link(EntryType::Symlink, "a/up", "../../evil")],
        "a/up",
        "outside",
    );
    refused(&[link(EntryType::Link, "hard", "../evil")], "hard", "'..'");
    // Each link looks fine on its own; `y` escapes once `x` exists.
    refused(
        &[
            link(EntryType::Symlink, "d1/d2/y", "x/../.."),
            link(EntryType::Symlink, "d1/d2/x", "../.."),
        ],
        "d1/d2/y",
        "outside",
    );
    // A hard link to a symlink copies its target text to a new place.
    refused(
        &[
            link(EntryType::Symlink, "d/l", ".."),
            link(EntryType::Link, "x", "d/l"),
        ],
        "x",
        "outside",
    );
}

#[test]
fn refuses_devices_and_pipes() {
    refused(
        &[E {
            name: "null",
            kind: EntryType::Char,
            link: None,
            data: b"",
        }],
        "null",
        "device",
    );
    refused(
        &[E {
            name: "fifo",
            kind: EntryType::Fifo,
            link: None,
            data: b"",
        }],
        "fifo",
        "pipes",
    );
}

#[test]
fn refuses_what_is_not_a_gzipped_tar() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("src.tar.gz");
    fs::write(&archive, b"just text").unwrap();
    let err = unpack(&archive, &tmp.path().join("dest")).unwrap_err();
    assert!(matches!(err, BuildError::Archive { .. }), "{err}");
    assert!(err.to_string().contains("gzipped tar"), "{err}");
}
