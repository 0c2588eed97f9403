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
    /// A Qwen OAuth account: Qwen Code's headers and body shape; asked to reason Qwen's way.
    QwenOAuth,
    /// An API key of an OpenAI-compatible upstream: requests pass as the client sent them,
    /// and translated ones ask for reasoning in this style.
    OpenAiCompatible(ReasoningStyle),
}

impl Flavor {
    /// How the upstream is asked to reason: [`ReasoningStyle::Qwen`] for Qwen OAuth accounts.
    pub fn reasoning(self) -> ReasoningStyle {
        match self {
            Self::QwenOAuth => ReasoningStyle::Qwen,
            Self::OpenAiCompatible(style) => style,
        }
    }
}

/// How an upstream is asked for the reasoning a client wants (an `[[openai-compat]]` entry's
/// `reasoning` setting): which fields of a translated request carry it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReasoningStyle {
    /// OpenAI's `reasoning_effort`, which OpenAI and most OpenAI-compatible servers take (and
    /// others ignore).
    #[default]
    Effort,
    /// Qwen's `enable_thinking` and `thinking_budget` (DashScope).
    Qwen,
    /// No reasoning field.
    Off,
}

impl ReasoningStyle {
    /// The names the config file uses, in the order of the variants.
    pub const NAMES: [&'static str; 3] = ["effort", "qwen", "off"];

    /// The name the config file uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Effort => Self::NAMES[0],
            Self::Qwen => Self::NAMES[1],
            Self::Off => Self::NAMES[2],
        }
    }
}

impl std::str::FromStr for ReasoningStyle {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "effort" => Ok(Self::Effort),
            "qwen" => Ok(Self::Qwen),
            "off" => Ok(Self::Off),
            _ => Err(format!(
                "unknown reasoning style {name:?}; write \"effort\" (OpenAI's reasoning_effort), \
                 \"qwen\" (Qwen's enable_thinking) or \"off\""
            )),
        }
    }
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
    fn reasoning_styles_read_their_names_and_qwen_accounts_think_qwens_way() {
        for name in ReasoningStyle::NAMES {
            let style: ReasoningStyle = name.parse().expect("a known name");
            assert_eq!(style.name(), name);
        }
        let refused = "Effort"
            .parse::<ReasoningStyle>()
            .expect_err("names are lower case");
        assert!(refused.contains("\"effort\""), "{refused}");
        assert_eq!(Flavor::QwenOAuth.reasoning(), ReasoningStyle::Qwen);
        assert_eq!(
            Flavor::OpenAiCompatible(ReasoningStyle::Off).reasoning(),
            ReasoningStyle::Off
        );
        assert_eq!(ReasoningStyle::default(), ReasoningStyle::Effort);
    }

    #[test]
    fn debug_hides_the_bearer() {
        let access = Access {
            bearer: "sk-secret".into(),
            base_url: "https://x/v1".into(),
        };
        assert!(!format!("{access:?}").contains("sk-secret"));
    }
}
