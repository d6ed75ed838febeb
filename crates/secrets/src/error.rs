//! The one error type of the crate: each message says what failed and what to
//! do about it, and none ever contains key material or a plaintext.

use std::io;
use std::path::PathBuf;

/// Why a key could not be loaded or a secret could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretsError {
    /// The key text (from `BERTH_SECRET_KEY` or the key file) is not 32 bytes
    /// of base64.
    #[error("invalid secret key in {origin}: {reason}; {hint}")]
    InvalidKey {
        /// Where the text came from: `BERTH_SECRET_KEY`, a file path, ….
        origin: String,
        /// What is wrong with it.
        reason: String,
        /// What to do about it.
        hint: &'static str,
    },

    /// The key file can be read or written by someone other than its owner.
    #[error(
        "key file {path} is accessible by group or others (mode {mode:03o}); \
         restrict it with `chmod 600 {path}`"
    )]
    KeyFilePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// Reading or creating the key file failed.
    #[error("cannot {action} key file {path}: {source}")]
    KeyFileIo {
        /// What was being done, e.g. "read", "create".
        action: &'static str,
        /// The key file (or the temporary file next to it).
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },

    /// The operating system's random number generator failed.
    #[error("cannot get random bytes from the operating system: {0}")]
    Random(getrandom::Error),

    /// The token was sealed under another key than this server's.
    #[error(
        "secrets were sealed with key {sealed_with}, this server has key {current}: \
         start it with the data dir's original secret.key or BERTH_SECRET_KEY"
    )]
    WrongKey {
        /// Fingerprint recorded in the token.
        sealed_with: String,
        /// Fingerprint of this server's key.
        current: String,
    },

    /// The key matches but the token does not authenticate: it was altered,
    /// or it was sealed for another place (another app or secret name).
    #[error(
        "sealed secret for {aad} failed authentication: it was altered or copied \
         from another app or name; set the secret again"
    )]
    Tampered {
        /// The place the caller tried to open it for.
        aad: String,
    },

    /// The value is beyond what the cipher can seal (256 GiB).
    #[error("secret value is too large to seal ({len} bytes)")]
    TooLarge {
        /// Length of the value in bytes.
        len: usize,
    },

    /// The token is not in the `v1:<fingerprint>:<base64>` form.
    #[error(
        "malformed sealed secret: {0}; expected `v1:FINGERPRINT:BASE64` (set the secret again)"
    )]
    Malformed(&'static str),
}
