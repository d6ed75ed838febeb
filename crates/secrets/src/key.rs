//! The secret key: where it comes from, how it is created, how it is named.
//!
//! The text form (in the key file and in `BERTH_SECRET_KEY`) is 32 bytes in
//! standard base64, surrounding whitespace ignored; the file holds exactly
//! that plus a newline, so `head -c 32 /dev/urandom | base64` makes one.

use std::fmt;
use std::fs::{File, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::SecretsError;

/// Environment variable holding the key in text form; it wins over the file.
pub const KEY_ENV: &str = "BERTH_SECRET_KEY";

/// Name of the key file in the data dir.
pub const KEY_FILE_NAME: &str = "secret.key";

/// Key length in bytes (XChaCha20-Poly1305 takes 256-bit keys).
const KEY_LEN: usize = 32;

/// A key file is a line of base64; anything much larger is not one.
const MAX_KEY_FILE_LEN: u64 = 1024;

/// Domain separation for the fingerprint, so it is never the hash of the bare
/// key that some other tool might also publish.
const FINGERPRINT_DOMAIN: &[u8] = b"berth-secrets/v1/key-fingerprint\0";

const GENERATE_HINT: &str = "generate one with `head -c 32 /dev/urandom | base64`";
const FILE_HINT: &str = "restore the original key file (a new key cannot open secrets sealed \
                         with the old one), or remove it to have a new key created";

/// The key that seals and opens secrets.
///
/// Its `Debug` shows only the fingerprint, and the key bytes are zeroed when
/// it is dropped. Share one across tasks with `Arc` or clone it.
#[derive(Clone)]
pub struct SecretKey {
    /// Holds the only long-lived copy of the key; zeroizes it on drop.
    pub(crate) cipher: XChaCha20Poly1305,
    pub(crate) fingerprint: String,
}

impl SecretKey {
    /// The key from `BERTH_SECRET_KEY` when set (`env_value`), else from the
    /// key file at `path`, created on first use.
    ///
    /// The caller reads the environment (one seam, so tests never mutate the
    /// process environment). A set but empty variable is an error, not a
    /// fallback: a server silently starting with a fresh key would not open
    /// any existing secret.
    pub fn resolve(env_value: Option<&str>, path: &Path) -> Result<SecretKey, SecretsError> {
        match env_value {
            Some(text) => Self::parse(text, KEY_ENV.to_string(), GENERATE_HINT),
            None => Self::load_or_create(path),
        }
    }

    /// Reads the key file at `path`, or creates it with a new random key if
    /// it does not exist.
    ///
    /// An existing file must be a regular file with no group or other
    /// permissions. A new one is written to a temporary file (mode 0600) in
    /// the same directory, synced, and moved into place without replacing
    /// anything, so it is never visible half-written or world-readable, and
    /// two servers starting at once end up with the same key.
    pub fn load_or_create(path: &Path) -> Result<SecretKey, SecretsError> {
        if let Some(key) = Self::load(path)? {
            return Ok(key);
        }
        Self::create(path)
    }

    /// Parses the text form: 32 bytes of standard base64 (what
    /// `BERTH_SECRET_KEY` holds), surrounding whitespace ignored.
    pub fn from_text(text: &str) -> Result<SecretKey, SecretsError> {
        Self::parse(text, "key text".to_string(), GENERATE_HINT)
    }

    /// A short non-secret name of the key (8 hex digits), recorded in every
    /// sealed token so a wrong key is reported as such.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn from_bytes(bytes: &[u8; KEY_LEN]) -> SecretKey {
        let mut key = Key::from(*bytes);
        let cipher = XChaCha20Poly1305::new(&key);
        key.as_mut_slice().zeroize();

        let digest = Sha256::new()
            .chain_update(FINGERPRINT_DOMAIN)
            .chain_update(bytes)
            .finalize();
        let fingerprint = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        SecretKey {
            cipher,
            fingerprint,
        }
    }

    fn parse(text: &str, origin: String, hint: &'static str) -> Result<SecretKey, SecretsError> {
        let invalid = |reason: String| SecretsError::InvalidKey {
            origin: origin.clone(),
            reason,
            hint,
        };
        let text = text.trim();
        if text.is_empty() {
            return Err(invalid("it is empty".to_string()));
        }
        // Never echo the text back: it may be a real key with a typo.
        let decoded = Zeroizing::new(
            STANDARD
                .decode(text)
                .map_err(|_| invalid("it is not standard base64".to_string()))?,
        );
        let bytes: Zeroizing<[u8; KEY_LEN]> =
            Zeroizing::new(decoded.as_slice().try_into().map_err(|_| {
                invalid(format!(
                    "it decodes to {} bytes, a key is {KEY_LEN}",
                    decoded.len()
                ))
            })?);
        Ok(Self::from_bytes(&bytes))
    }

    /// `Ok(None)` when there is no key file yet.
    fn load(path: &Path) -> Result<Option<SecretKey>, SecretsError> {
        let io_err = |action, source| SecretsError::KeyFileIo {
            action,
            path: path.to_path_buf(),
            source,
        };
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("open", e)),
        };
        // Checked on the open file, so it is the file we read that passed.
        let meta = file.metadata().map_err(|e| io_err("inspect", e))?;
        if !meta.is_file() {
            return Err(io_err(
                "read",
                io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
            ));
        }
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SecretsError::KeyFilePermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let mut raw = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE_LEN as usize + 1));
        file.take(MAX_KEY_FILE_LEN + 1)
            .read_to_end(&mut raw)
            .map_err(|e| io_err("read", e))?;
        let origin = format!("key file {}", path.display());
        let text = std::str::from_utf8(&raw).map_err(|_| SecretsError::InvalidKey {
            origin: origin.clone(),
            reason: "it is not text".to_string(),
            hint: FILE_HINT,
        })?;
        Self::parse(text, origin, FILE_HINT).map(Some)
    }

    fn create(path: &Path) -> Result<SecretKey, SecretsError> {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let create_err = |source| SecretsError::KeyFileIo {
            action: "create",
            path: path.to_path_buf(),
            source,
        };

        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(bytes.as_mut_slice()).map_err(SecretsError::Random)?;
        let text = Zeroizing::new(format!("{}\n", STANDARD.encode(bytes.as_slice())));

        // Created 0600 from the start (the umask can only remove bits).
        let mut tmp = tempfile::Builder::new()
            .prefix(".secret.key.")
            .suffix(".tmp")
            .permissions(Permissions::from_mode(0o600))
            .tempfile_in(dir)
            .map_err(create_err)?;
        tmp.write_all(text.as_bytes()).map_err(create_err)?;
        tmp.as_file().sync_all().map_err(create_err)?;
        // No-clobber rather than rename: if another process created the key
        // meanwhile, it may already have sealed with it, so use that one.
        match tmp.persist_noclobber(path) {
            Ok(_) => {}
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
                return Self::load(path)?.ok_or_else(|| {
                    create_err(io::Error::other(
                        "it appeared and vanished while creating it",
                    ))
                });
            }
            Err(e) => return Err(create_err(e.error)),
        }
        // Make the new name durable: losing the key after secrets were sealed
        // with it would lose them.
        sync_dir(dir).map_err(|source| SecretsError::KeyFileIo {
            action: "sync the directory of",
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self::from_bytes(&bytes))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn key_file_path(dir: &Path) -> std::path::PathBuf {
        dir.join(KEY_FILE_NAME)
    }

    fn text_of(bytes: [u8; KEY_LEN]) -> String {
        STANDARD.encode(bytes)
    }

    #[test]
    fn key_file_is_created_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_file_path(dir.path());

        let first = SecretKey::load_or_create(&path).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        let contents = fs::read_to_string(&path).unwrap();
        assert!(contents.ends_with('\n'));
        assert_eq!(
            SecretKey::from_text(&contents).unwrap().fingerprint(),
            first.fingerprint()
        );

        let second = SecretKey::load_or_create(&path).unwrap();
        assert_eq!(first.fingerprint(), second.fingerprint());
        // Only the key file is left behind, no temporary file.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn group_or_world_readable_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_file_path(dir.path());
        SecretKey::load_or_create(&path).unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();

        let err = SecretKey::load_or_create(&path).unwrap_err();
        assert!(matches!(
            err,
            SecretsError::KeyFilePermissions { mode: 0o644, .. }
        ));
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("chmod 600 {}", path.display())),
            "{msg}"
        );

        fs::set_permissions(&path, Permissions::from_mode(0o640)).unwrap();
        assert!(SecretKey::load_or_create(&path).is_err());
    }

    #[test]
    fn corrupt_key_file_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_file_path(dir.path());
        fs::write(&path, "not a key\n").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o600)).unwrap();

        let err = SecretKey::load_or_create(&path).unwrap_err();
        assert!(matches!(err, SecretsError::InvalidKey { .. }), "{err}");
        assert!(err.to_string().contains("restore the original key file"));
        assert_eq!(fs::read_to_string(&path).unwrap(), "not a key\n");
    }

    #[test]
    fn env_value_wins_over_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_file_path(dir.path());
        let from_file = SecretKey::load_or_create(&path).unwrap();
        let env = text_of([7; KEY_LEN]);

        let key = SecretKey::resolve(Some(&env), &path).unwrap();
        assert_eq!(
            key.fingerprint(),
            SecretKey::from_text(&env).unwrap().fingerprint()
        );
        assert_ne!(key.fingerprint(), from_file.fingerprint());
        assert_eq!(
            SecretKey::resolve(None, &path).unwrap().fingerprint(),
            from_file.fingerprint()
        );
    }

    #[test]
    fn env_value_never_creates_a_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_file_path(dir.path());
        SecretKey::resolve(Some(&text_of([1; KEY_LEN])), &path).unwrap();
        assert!(!path.exists());

        // Set but empty is an error, not a silent fallback to a new key file.
        let err = SecretKey::resolve(Some(""), &path).unwrap_err();
        assert!(err.to_string().contains(KEY_ENV), "{err}");
        assert!(!path.exists());
    }

    #[test]
    fn text_form_errors_say_how_to_generate_a_key() {
        let short = STANDARD.encode([1u8; 16]);
        for (text, reason) in [
            ("", "empty"),
            ("   \n", "empty"),
            ("not base64!", "not standard base64"),
            (short.as_str(), "decodes to 16 bytes, a key is 32"),
        ] {
            let err = SecretKey::from_text(text).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(reason), "{text:?}: {msg}");
            assert!(msg.contains("head -c 32 /dev/urandom | base64"), "{msg}");
        }
    }

    #[test]
    fn text_form_ignores_surrounding_whitespace() {
        let text = text_of([9; KEY_LEN]);
        let a = SecretKey::from_text(&text).unwrap();
        let b = SecretKey::from_text(&format!("  {text}\n")).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().len(), 8);
        assert_ne!(
            a.fingerprint(),
            SecretKey::from_text(&text_of([8; KEY_LEN]))
                .unwrap()
                .fingerprint()
        );
    }

    #[test]
    fn debug_shows_only_the_fingerprint() {
        let text = text_of([5; KEY_LEN]);
        let key = SecretKey::from_text(&text).unwrap();
        let debug = format!("{key:?}");
        assert!(debug.contains(key.fingerprint()), "{debug}");
        assert!(!debug.contains(&text), "{debug}");
        assert!(!debug.contains("5, 5"), "{debug}");
    }
}
