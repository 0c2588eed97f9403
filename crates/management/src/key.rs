//! The management key: the key itself, or its Argon2 hash (`$argon2id$...`), as the config
//! holds it; a presented key is compared in constant time.
//!
//! A plain key is kept only as its SHA-256 digest, and a presented key is digested and
//! compared with `subtle`, so the time taken says nothing about how much of it matched. An
//! Argon2 hash is verified on a blocking thread (it costs tens of milliseconds on purpose);
//! the digest of the last key that verified is kept in memory, so the dashboard's requests do
//! not each pay for a hash.

use std::fmt;
use std::sync::{Arc, Mutex};

use argon2::password_hash::PasswordHash;
use argon2::{Argon2, PasswordVerifier as _};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// Why a configured management key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the management key is empty; set management-key (or CLIPROXY_MANAGEMENT_KEY) to a long random string, or leave it unset to turn the management API off"
    )]
    Empty,
    #[error(
        "the management key looks like an Argon2 hash but is not one ({0}); give the key itself, or a hash from `argon2` such as $argon2id$v=19$m=19456,t=2,p=1$SALT$HASH"
    )]
    BadHash(String),
}

/// The configured management key.
#[derive(Clone)]
pub struct ManagementKey {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    /// SHA-256 of the key.
    Plain([u8; 32]),
    /// An Argon2 PHC string, and the digest of the last key that matched it.
    Hash {
        phc: Arc<str>,
        verified: Arc<Mutex<Option<[u8; 32]>>>,
    },
}

impl fmt::Debug for ManagementKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            Kind::Plain(_) => "ManagementKey(<redacted>)",
            Kind::Hash { .. } => "ManagementKey(argon2 hash)",
        })
    }
}

/// The same configured key: the same key's digest, or the same hash (for a config reload).
impl PartialEq for ManagementKey {
    fn eq(&self, other: &Self) -> bool {
        match (&self.kind, &other.kind) {
            (Kind::Plain(a), Kind::Plain(b)) => bool::from(a.ct_eq(b)),
            (Kind::Hash { phc: a, .. }, Kind::Hash { phc: b, .. }) => a == b,
            _ => false,
        }
    }
}

impl Eq for ManagementKey {}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl ManagementKey {
    /// Reads the configured value: an Argon2 PHC string (`$argon2...`) or the key itself.
    ///
    /// # Errors
    ///
    /// An empty key, or a `$argon2` string that is not a valid hash.
    pub fn parse(configured: &str) -> Result<Self, KeyError> {
        if configured.is_empty() {
            return Err(KeyError::Empty);
        }
        if configured.starts_with("$argon2") {
            let hash = PasswordHash::new(configured)
                .map_err(|error| KeyError::BadHash(error.to_string()))?;
            if hash.salt.is_none() || hash.hash.is_none() {
                return Err(KeyError::BadHash("it has no salt or no hash".to_owned()));
            }
            argon2::Params::try_from(&hash)
                .map_err(|error| KeyError::BadHash(error.to_string()))?;
            return Ok(Self {
                kind: Kind::Hash {
                    phc: configured.into(),
                    verified: Arc::new(Mutex::new(None)),
                },
            });
        }
        Ok(Self {
            kind: Kind::Plain(digest(configured)),
        })
    }

    /// Whether the config holds a hash rather than the key.
    pub fn is_hash(&self) -> bool {
        matches!(self.kind, Kind::Hash { .. })
    }

    /// Whether `presented` is the key. Compares in constant time; an Argon2 hash is verified
    /// on a blocking thread.
    pub async fn matches(&self, presented: &str) -> bool {
        let presented_digest = digest(presented);
        match &self.kind {
            Kind::Plain(expected) => bool::from(expected.ct_eq(&presented_digest)),
            Kind::Hash { phc, verified } => {
                let known = *verified.lock().unwrap_or_else(|p| p.into_inner());
                if known.is_some_and(|known| bool::from(known.ct_eq(&presented_digest))) {
                    return true;
                }
                let phc = Arc::clone(phc);
                let presented = presented.to_owned();
                let matched = tokio::task::spawn_blocking(move || {
                    PasswordHash::new(&phc).is_ok_and(|hash| {
                        Argon2::default()
                            .verify_password(presented.as_bytes(), &hash)
                            .is_ok()
                    })
                })
                .await
                .unwrap_or(false);
                if matched {
                    *verified.lock().unwrap_or_else(|p| p.into_inner()) = Some(presented_digest);
                }
                matched
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordHasher as _;
    use argon2::password_hash::SaltString;

    #[tokio::test]
    async fn a_plain_key_matches_itself_only() {
        let key = ManagementKey::parse("s3cret-key").unwrap();
        assert!(key.matches("s3cret-key").await);
        assert!(!key.matches("s3cret-kez").await);
        assert!(!key.matches("s3cret-key ").await);
        assert!(!key.matches("").await);
        assert!(!format!("{key:?}").contains("s3cret"));
    }

    #[tokio::test]
    async fn an_argon2_hash_matches_its_key_and_nothing_else() {
        let salt = SaltString::from_b64("c29tZXNhbHRzb21lc2FsdA").unwrap();
        let phc = Argon2::default()
            .hash_password(b"hashed-key", &salt)
            .unwrap()
            .to_string();
        let key = ManagementKey::parse(&phc).unwrap();
        assert!(key.is_hash());
        assert!(!key.matches("wrong").await);
        assert!(key.matches("hashed-key").await);
        assert!(key.matches("hashed-key").await, "the remembered digest");
        assert!(!key.matches("wrong").await);
    }

    #[test]
    fn empty_keys_and_broken_hashes_are_refused() {
        assert_eq!(ManagementKey::parse("").unwrap_err(), KeyError::Empty);
        assert!(matches!(
            ManagementKey::parse("$argon2id$garbage"),
            Err(KeyError::BadHash(_))
        ));
    }
}
