//! PKCE (RFC 7636) with the S256 method: a random verifier kept by the client and its SHA-256
//! challenge sent with the device request.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRngCore as _;
use rand::rngs::OsRng;
use sha2::{Digest as _, Sha256};

/// The operating system could not supply random bytes for the PKCE verifier.
#[derive(Debug, thiserror::Error)]
#[error(
    "the operating system's random number generator failed ({reason}). Check that the system's \
     entropy source (/dev/urandom on Linux) is available, then try again."
)]
pub struct RandomnessError {
    reason: String,
}

/// A PKCE verifier and its S256 challenge.
///
/// Invariant: `challenge == BASE64URL-NOPAD(SHA256(verifier))`. The verifier is a secret until
/// the token is issued, so `Debug` shows only the challenge.
#[derive(Clone, PartialEq, Eq)]
pub struct Pkce {
    verifier: String,
    challenge: String,
}

impl Pkce {
    /// The only `code_challenge_method` this crate uses.
    pub const METHOD: &'static str = "S256";

    /// A fresh verifier from 32 bytes of the OS random number generator (43 base64url
    /// characters), and its challenge.
    pub fn generate() -> Result<Self, RandomnessError> {
        let mut bytes = [0_u8; 32];
        OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(|error| RandomnessError {
                reason: error.to_string(),
            })?;
        Ok(Self::from_verifier(URL_SAFE_NO_PAD.encode(bytes)))
    }

    fn from_verifier(verifier: String) -> Self {
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Self {
            verifier,
            challenge,
        }
    }

    /// The secret `code_verifier`, sent only with device-code polls.
    pub fn verifier(&self) -> &str {
        &self.verifier
    }

    /// The public `code_challenge`, sent with the device request.
    pub fn challenge(&self) -> &str {
        &self.challenge
    }
}

impl fmt::Debug for Pkce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkce")
            .field("verifier", &"[redacted]")
            .field("challenge", &self.challenge)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_vector() {
        let pkce = Pkce::from_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".to_owned());
        assert_eq!(
            pkce.challenge(),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn generated_verifiers_are_43_url_safe_chars_and_differ() {
        let first = Pkce::generate().expect("OS randomness");
        let second = Pkce::generate().expect("OS randomness");
        assert_eq!(first.verifier().len(), 43);
        assert!(
            first
                .verifier()
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        );
        assert_ne!(first.verifier(), second.verifier());
        assert_eq!(
            first.challenge(),
            Pkce::from_verifier(first.verifier().to_owned()).challenge()
        );
    }

    #[test]
    fn debug_hides_the_verifier() {
        let pkce = Pkce::generate().expect("OS randomness");
        let shown = format!("{pkce:?}");
        assert!(!shown.contains(pkce.verifier()));
        assert!(shown.contains(pkce.challenge()));
    }
}
