//! Optional encryption of token columns at rest (`store.encryption-key`): AES-256-GCM with a
//! random 96-bit nonce per value, bound to its account and column (the additional data), so a
//! sealed token copied into another row or column does not open.
//!
//! A sealed value is `cliproxy-aes256gcm:v1:` followed by base64 of nonce, ciphertext and tag.
//! Values without that prefix are plain, and are read as they are, so a store can be switched
//! to encryption without a migration: each account is sealed at its next write (or at once by
//! `cliproxy store migrate`).

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::error::StoreError;

/// The prefix of a sealed value, with its format version.
const SEALED_PREFIX: &str = "cliproxy-aes256gcm:v1:";

/// The key that seals token columns. `Debug` never shows it.
pub struct EncryptionKey {
    key: LessSafeKey,
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey(<redacted>)")
    }
}

impl EncryptionKey {
    /// Reads a key written as base64 (standard alphabet) or as 64 hex digits: 32 bytes.
    pub fn parse(text: &str) -> Result<EncryptionKey, StoreError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| StoreError::BadEncryptionKey { detail: "not hex" })?
        } else {
            STANDARD
                .decode(text)
                .map_err(|_| StoreError::BadEncryptionKey {
                    detail: "neither base64 nor 64 hex digits",
                })?
        };
        if bytes.len() != 32 {
            return Err(StoreError::BadEncryptionKey {
                detail: "it is not 32 bytes long",
            });
        }
        let key =
            UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| StoreError::BadEncryptionKey {
                detail: "the key was refused",
            })?;
        Ok(EncryptionKey {
            key: LessSafeKey::new(key),
        })
    }

    /// Seals `plain` as the `column` of account `account`.
    pub(crate) fn seal(
        &self,
        account: &str,
        column: &str,
        plain: &str,
    ) -> Result<String, StoreError> {
        let mut nonce = [0_u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce)
            .map_err(|_| StoreError::Seal("no random numbers for a nonce".to_owned()))?;
        let mut sealed = plain.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(additional_data(account, column)),
                &mut sealed,
            )
            .map_err(|_| StoreError::Seal("a token could not be encrypted".to_owned()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(out)))
    }
}

/// Whether a stored value is sealed.
pub(crate) fn is_sealed(value: &str) -> bool {
    value.starts_with(SEALED_PREFIX)
}

/// The plain value of the `column` of `account`: `stored` as it is when it is not sealed, else
/// opened with `key`. The error says why it cannot be read (no key, or another key).
pub(crate) fn open(
    key: Option<&EncryptionKey>,
    account: &str,
    column: &str,
    stored: String,
) -> Result<String, String> {
    let Some(encoded) = stored.strip_prefix(SEALED_PREFIX) else {
        return Ok(stored);
    };
    let Some(key) = key else {
        return Err(format!(
            "its {column} is encrypted, and store.encryption-key (CLIPROXY_STORE_ENCRYPTION_KEY) is not set: set the key the other servers use"
        ));
    };
    let wrong = || {
        format!(
            "its {column} does not open with this store.encryption-key: set the key the other servers use, or log the account in again"
        )
    };
    let bytes = STANDARD.decode(encoded).map_err(|_| wrong())?;
    if bytes.len() < NONCE_LEN {
        return Err(wrong());
    }
    let (nonce, sealed) = bytes.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong())?;
    let mut sealed = sealed.to_vec();
    let plain = key
        .key
        .open_in_place(
            nonce,
            Aad::from(additional_data(account, column)),
            &mut sealed,
        )
        .map_err(|_| wrong())?;
    String::from_utf8(plain.to_vec()).map_err(|_| wrong())
}

/// What binds a sealed value to its place: the account key and the column name.
fn additional_data(account: &str, column: &str) -> Vec<u8> {
    let mut data = Vec::with_capacity(account.len() + column.len() + 1);
    data.extend_from_slice(account.as_bytes());
    data.push(0);
    data.extend_from_slice(column.as_bytes());
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    #[test]
    fn sealed_values_open_only_in_their_place_with_their_key() {
        let key = EncryptionKey::parse(KEY).unwrap();
        let sealed = key
            .seal("qwen-a@b.com", "refresh_token", "secret-r")
            .unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("secret"), "{sealed}");
        assert_ne!(
            sealed,
            key.seal("qwen-a@b.com", "refresh_token", "secret-r")
                .unwrap(),
            "a fresh nonce each time"
        );
        let opened = open(Some(&key), "qwen-a@b.com", "refresh_token", sealed.clone());
        assert_eq!(opened.as_deref(), Ok("secret-r"));
        assert!(open(Some(&key), "qwen-x@b.com", "refresh_token", sealed.clone()).is_err());
        assert!(open(Some(&key), "qwen-a@b.com", "access_token", sealed.clone()).is_err());
        let other = EncryptionKey::parse(&"ab".repeat(32)).unwrap();
        let wrong = open(
            Some(&other),
            "qwen-a@b.com",
            "refresh_token",
            sealed.clone(),
        );
        assert!(wrong.unwrap_err().contains("does not open"));
        let keyless = open(None, "qwen-a@b.com", "refresh_token", sealed);
        assert!(keyless.unwrap_err().contains("is not set"));
        assert_eq!(
            open(None, "k", "access_token", "plain".to_owned()).as_deref(),
            Ok("plain")
        );
    }

    #[test]
    fn keys_are_32_bytes_of_base64_or_hex_and_never_shown() {
        assert!(EncryptionKey::parse(&"0f".repeat(32)).is_ok());
        for bad in ["", "short", &"0f".repeat(31), "MDEy"] {
            let error = EncryptionKey::parse(bad).unwrap_err().to_string();
            assert!(error.contains("openssl rand -base64 32"), "{error}");
        }
        let shown = format!("{:?}", EncryptionKey::parse(KEY).unwrap());
        assert!(!shown.contains(KEY), "{shown}");
    }
}
