//! The credential the server pools: where to send a request, with which bearer token, in which
//! request shape, and how to get a fresh token after a 401.
//!
//! This is the interface between the HTTP proxy (which uses credentials) and the account
//! runtime (which implements [`AccessSource`] for Qwen OAuth accounts); API keys use
//! [`StaticAccess`]. Neither side depends on the other: both depend on this.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// One credential in the pool's rotation.
#[derive(Clone)]
pub struct Credential {
    /// Shown in logs (never to clients): the account email, or `<name>#<n>` for an API key.
    /// Never a secret.
    pub label: Arc<str>,
    pub flavor: Flavor,
    pub access: Arc<dyn AccessSource>,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("label", &self.label)
            .field("flavor", &self.flavor)
            .finish_non_exhaustive()
    }
}

/// Which request shape and headers the upstream expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// A Qwen OAuth account: Qwen Code's headers and body shape.
    QwenOAuth,
    /// An API key of an OpenAI-compatible upstream: requests pass as the client sent them.
    OpenAiCompatible,
}

/// The bearer token and base URL to use now. Cheap to clone.
#[derive(Clone)]
pub struct Access {
    pub bearer: Arc<str>,
    /// Base URL ending in the API version, e.g. `https://portal.qwen.ai/v1` (no trailing slash).
    pub base_url: Arc<str>,
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Access")
            .field("bearer", &"<redacted>")
            .field("base_url", &self.base_url)
            .finish()
    }
}

/// Why a refresh did not produce a new token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RefreshFailure {
    /// The refresh token is dead: the account leaves rotation until it logs in again.
    #[error("the account needs a new login (`cliproxy login qwen`)")]
    ReloginRequired,
    /// The credential has no refresh (an API key).
    #[error("this credential cannot be refreshed")]
    NotRefreshable,
    /// Network, server or WAF trouble; a later try may work.
    #[error("token refresh failed: {0}")]
    Transient(String),
}

/// A boxed future, for the object-safe [`AccessSource`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Supplies the current token of a credential and refreshes it on demand.
pub trait AccessSource: Send + Sync + 'static {
    /// The token and base URL to use for the next request; must not block.
    fn current(&self) -> Access;

    /// Gets a new token after the upstream answered 401. Concurrent callers
    /// share one refresh (single flight). On [`RefreshFailure::ReloginRequired`]
    /// the proxy takes the credential out of rotation; the source logs it, once.
    ///
    /// The refresh must survive the caller: dropping the returned future (the client went
    /// away) must not cancel a refresh whose answer may already have rotated the token, so
    /// sources run it in a task of their own and the future only waits for its result.
    fn refresh(self: Arc<Self>) -> BoxFuture<'static, Result<Access, RefreshFailure>>;
}

/// A credential whose token never changes: an API key.
#[derive(Debug, Clone)]
pub struct StaticAccess(pub Access);

impl AccessSource for StaticAccess {
    fn current(&self) -> Access {
        self.0.clone()
    }

    fn refresh(self: Arc<Self>) -> BoxFuture<'static, Result<Access, RefreshFailure>> {
        Box::pin(std::future::ready(Err(RefreshFailure::NotRefreshable)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_bearer() {
        let access = Access {
            bearer: "sk-secret".into(),
            base_url: "https://x/v1".into(),
        };
        assert!(!format!("{access:?}").contains("sk-secret"));
    }
}
