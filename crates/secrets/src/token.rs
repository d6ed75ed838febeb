//! Sealing and opening secrets: XChaCha20-Poly1305 with a random 24-byte
//! nonce (random nonces are safe at this size for any number of secrets), as
//! the text token `v1:<fingerprint>:<base64(nonce || ciphertext || tag)>`.
//!
//! The fingerprint is outside the ciphertext so that a wrong key is reported
//! as such rather than as tampering. The caller's `aad` (where the secret
//! belongs, e.g. `app/shop/secret/STRIPE_KEY`) is authenticated, not stored.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::XNonce;

use crate::{SecretKey, SecretsError};

/// Version prefix of the token format.
const VERSION: &str = "v1";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

impl SecretKey {
    /// Encrypts `plaintext` for the place named by `aad`; the token opens only
    /// with this key and the same `aad`.
    ///
    /// Fails only if the operating system cannot supply random bytes (or on
    /// an absurdly large value).
    pub fn seal(&self, plaintext: &str, aad: &str) -> Result<String, SecretsError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(SecretsError::Random)?;
        let payload = Payload {
            msg: plaintext.as_bytes(),
            aad: aad.as_bytes(),
        };
        // Encryption fails only past 256 GiB, which no secret reaches; report
        // it rather than panic all the same.
        let ciphertext = self
            .cipher
            .encrypt(&XNonce::from(nonce), payload)
            .map_err(|_| SecretsError::TooLarge {
                len: plaintext.len(),
            })?;
        let mut body = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&ciphertext);
        Ok(format!(
            "{VERSION}:{}:{}",
            self.fingerprint,
            STANDARD.encode(body)
        ))
    }

    /// Decrypts a token made by [`SecretKey::seal`] for the same `aad`.
    ///
    /// Errors tell apart a token sealed under another key
    /// ([`SecretsError::WrongKey`]), one altered or sealed for another place
    /// ([`SecretsError::Tampered`]), and one that is not a token at all
    /// ([`SecretsError::Malformed`]).
    pub fn open(&self, sealed: &str, aad: &str) -> Result<String, SecretsError> {
        let (version, rest) = sealed
            .split_once(':')
            .ok_or(SecretsError::Malformed("no version prefix"))?;
        if version != VERSION {
            return Err(SecretsError::Malformed(
                "unknown format version (sealed by a newer Berth?)",
            ));
        }
        let (fingerprint, body) = rest
            .split_once(':')
            .ok_or(SecretsError::Malformed("no key fingerprint"))?;
        if fingerprint.len() != self.fingerprint.len()
            || !fingerprint.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(SecretsError::Malformed(
                "the key fingerprint is not 8 hex digits",
            ));
        }
        if fingerprint != self.fingerprint {
            return Err(SecretsError::WrongKey {
                sealed_with: fingerprint.to_string(),
                current: self.fingerprint.clone(),
            });
        }
        let body = STANDARD
            .decode(body)
            .map_err(|_| SecretsError::Malformed("the ciphertext is not base64"))?;
        if body.len() < NONCE_LEN + TAG_LEN {
            return Err(SecretsError::Malformed("the ciphertext is too short"));
        }
        let (nonce, ciphertext) = body.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce)
            .map_err(|_| SecretsError::Malformed("the nonce has the wrong length"))?;
        let payload = Payload {
            msg: ciphertext,
            aad: aad.as_bytes(),
        };
        let plaintext =
            self.cipher
                .decrypt(&nonce, payload)
                .map_err(|_| SecretsError::Tampered {
                    aad: aad.to_string(),
                })?;
        // Authentic yet not UTF-8 means it was not sealed by `seal`.
        String::from_utf8(plaintext)
            .map_err(|_| SecretsError::Malformed("the sealed value is not UTF-8 text"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AAD: &str = "app/shop/secret/STRIPE_KEY";

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_text(&STANDARD.encode([byte; 32])).unwrap()
    }

    #[test]
    fn round_trip() {
        let key = key(1);
        for value in ["sk_live_123", "", "ünïcödé ✓ with\nnewline and : colons"] {
            let sealed = key.seal(value, AAD).unwrap();
            assert_eq!(key.open(&sealed, AAD).unwrap(), value);
        }
    }

    #[test]
    fn token_is_versioned_names_the_key_and_hides_the_plaintext() {
        let key = key(1);
        let plaintext = "sk_live_supersecretvalue";
        let sealed = key.seal(plaintext, AAD).unwrap();
        assert!(
            sealed.starts_with(&format!("v1:{}:", key.fingerprint())),
            "{sealed}"
        );
        assert!(!sealed.contains(plaintext));
        assert!(!sealed.contains(&STANDARD.encode(plaintext)));
        assert!(!sealed.contains("supersecret"));
    }

    #[test]
    fn sealing_twice_gives_different_tokens() {
        let key = key(1);
        let a = key.seal("same", AAD).unwrap();
        let b = key.seal("same", AAD).unwrap();
        assert_ne!(a, b);
        assert_eq!(key.open(&a, AAD).unwrap(), key.open(&b, AAD).unwrap());
    }

    #[test]
    fn wrong_aad_fails_authentication() {
        let key = key(1);
        let sealed = key.seal("v", AAD).unwrap();
        for other in ["app/other/secret/STRIPE_KEY", "app/shop/secret/OTHER", ""] {
            let err = key.open(&sealed, other).unwrap_err();
            assert!(matches!(err, SecretsError::Tampered { .. }), "{err}");
            assert!(err.to_string().contains("failed authentication"));
        }
    }

    #[test]
    fn tampered_byte_fails_authentication() {
        let key = key(1);
        let sealed = key.seal("sk_live_123", AAD).unwrap();
        let (head, body) = sealed.rsplit_once(':').unwrap();
        let raw = STANDARD.decode(body).unwrap();
        // Every byte matters: nonce, ciphertext and tag.
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            let token = format!("{head}:{}", STANDARD.encode(&bad));
            let err = key.open(&token, AAD).unwrap_err();
            assert!(
                matches!(err, SecretsError::Tampered { .. }),
                "byte {i}: {err}"
            );
        }
    }

    #[test]
    fn other_key_is_reported_with_both_fingerprints() {
        let (sealer, other) = (key(1), key(2));
        let sealed = sealer.seal("v", AAD).unwrap();
        let err = other.open(&sealed, AAD).unwrap_err();
        assert!(matches!(err, SecretsError::WrongKey { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!(
                "secrets were sealed with key {}, this server has key {}: start it with \
                 the data dir's original secret.key or BERTH_SECRET_KEY",
                sealer.fingerprint(),
                other.fingerprint()
            )
        );
    }

    #[test]
    fn malformed_tokens_are_told_apart() {
        let key = key(1);
        let fp = key.fingerprint().to_string();
        let good = key.seal("v", AAD).unwrap();
        let body = good.rsplit_once(':').unwrap().1;
        for token in [
            String::new(),
            "plaintext".to_string(),
            format!("v2:{fp}:{body}"),
            format!("v1:{fp}"),
            format!("v1:nothex!!:{body}"),
            format!("v1:{fp}:not base64!"),
            format!("v1:{fp}:{}", STANDARD.encode([0u8; 39])),
        ] {
            let err = key.open(&token, AAD).unwrap_err();
            assert!(
                matches!(err, SecretsError::Malformed(_)),
                "{token:?}: {err}"
            );
        }
    }
}
