//! App secrets (e.g. `STRIPE_KEY`), sealed at rest under a key kept outside
//! the database.
//!
//! This crate owns the secret key (where it lives, how it is created and
//! checked) and the sealed-value format. It does no I/O on the database: the
//! store keeps the sealed tokens as opaque text, and the control plane opens
//! them only to hand the values to app processes.
//!
//! # Threat model
//!
//! - **Protects** secrets in a dump or backup of the database (SQLite file,
//!   `pg_dump`), and in anything that copies rows around: a token only opens
//!   with this server's key, and only at the place it was sealed for (the
//!   `aad`, e.g. `app/shop/secret/STRIPE_KEY`), so a ciphertext copied to
//!   another app or name, or altered, fails authentication.
//! - **Does not protect** against anyone who can read the key as well: root
//!   or the Berth user on the control-plane host (key file, process memory,
//!   `/proc/PID/environ` when it comes from `BERTH_SECRET_KEY`), nor the app
//!   processes, which receive the plaintext in their environment. Back the key
//!   up apart from the database: losing it loses every secret.
//!
//! # Layout
//!
//! - [`key`] — [`SecretKey`]: the key file (`secret.key`, mode 0600) or
//!   `BERTH_SECRET_KEY`, and its non-secret fingerprint.
//! - [`token`] — [`SecretKey::seal`] / [`SecretKey::open`]: XChaCha20-Poly1305
//!   with a random nonce, as `v1:<fingerprint>:<base64(nonce || ciphertext)>`.
//! - [`error`] — [`SecretsError`].

pub mod error;
pub mod key;
pub mod token;

pub use error::SecretsError;
pub use key::{SecretKey, KEY_ENV, KEY_FILE_NAME};
