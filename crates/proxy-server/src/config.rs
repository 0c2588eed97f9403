//! The server's settings, their defaults, and the one rule that ties them to the listening
//! address: without client keys the proxy serves loopback only.

use std::fmt;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64};
use std::time::Duration;

use credential_pool::Scope;

use crate::quota_reset::QuotaReset;

/// A named client key (`[[client-keys]]` in the config): the credentials and models it may
/// use and its own limits. `Debug` shows its name, never its key.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientKeyConfig {
    /// What logs and usage call it.
    pub name: String,
    /// SHA-256 of the key (the config holds the key or only this digest).
    pub key_sha256: [u8; 32],
    /// Models it may ask for (exact names or `*` globs), checked against the model asked for
    /// and the model an alias resolves it to; empty: every model.
    pub models: Vec<String>,
    /// The credentials it may use.
    pub scope: Scope,
    /// Its requests over a sliding minute; past it, 429.
    pub requests_per_minute: Option<NonZeroU32>,
    /// Its tokens (prompt and completion) a day, the day ending at `quota-reset`; past it, 429.
    pub tokens_per_day: Option<NonZeroU64>,
}

impl fmt::Debug for ClientKeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKeyConfig")
            .field("name", &self.name)
            .field("models", &self.models)
            .field("scope", &self.scope)
            .field("requests_per_minute", &self.requests_per_minute)
            .field("tokens_per_day", &self.tokens_per_day)
            .finish_non_exhaustive()
    }
}

/// Settings of a [`Proxy`](crate::Proxy). `Debug` hides the client keys and the upstream
/// proxy URL (it may carry a password).
#[derive(Clone)]
pub struct ServerConfig {
    /// Keys clients must present (beside `client_keys`). Neither: no client auth, and the
    /// proxy only serves on a loopback address ([`ServerConfig::check_bind`]).
    pub api_keys: Vec<String>,
    /// Named client keys with their own scope and limits, beside `api_keys`.
    pub client_keys: Vec<ClientKeyConfig>,
    /// Largest request body accepted; bigger ones get 413.
    pub max_body_bytes: usize,
    /// Time a client has to send a request's headers; slower connections are closed.
    pub header_read_timeout: Duration,
    /// Time a client has to send a request's whole body, from when the server starts reading
    /// it; a slower body gets 408 and its connection is closed.
    pub body_read_timeout: Duration,
    /// Memory, in bytes, that request bodies being received, parsed and translated may take
    /// in all (see `request_body`); requests wait for their share.
    pub body_memory_budget: usize,
    /// Most connections open at once; past it the server accepts no more until one closes.
    pub max_connections: usize,
    /// Web origins (`scheme://host[:port]`) whose pages may call the proxy (CORS). A request
    /// with any other `Origin` header gets 403; one without an `Origin` is not affected.
    pub allowed_origins: Vec<String>,
    /// Longest wait for the upstream's answer headers or for its next body chunk; past it the
    /// attempt fails (before anything reached the client) or the stream is aborted.
    pub upstream_idle_timeout: Duration,
    /// After shutdown is asked for, how long in-flight requests and streams may still run.
    pub shutdown_grace: Duration,
    /// Upstream attempts per client request, across credentials and token refreshes.
    pub request_retry: usize,
    /// Whether requests of one conversation keep to one credential while it can serve
    /// ([`crate::conversation`] says how a conversation is recognised).
    pub session_affinity: bool,
    /// When upstream quotas of the day reset, for credentials that used theirs up and gave
    /// no `Retry-After`.
    pub quota_reset: QuotaReset,
    /// Model ids `GET /v1/models` lists besides those the credentials name.
    pub models: Vec<String>,
    /// Client model names (exact or `*` globs) and the model each stands for.
    pub model_aliases: Vec<(String, String)>,
    /// Requests asking for more output tokens than this are lowered to it; `None`: no cap.
    pub max_output_tokens: Option<u32>,
    /// Qwen Code version sent to Qwen OAuth upstreams in `User-Agent`.
    pub qwen_client_version: String,
    /// Proxy for upstream requests (`http`, `https`, `socks5` or `socks5h` URL), e.g.
    /// `http://proxy:3128`. `None`: the environment's (below).
    pub upstream_proxy_url: Option<String>,
    /// Without `upstream_proxy_url`: whether `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` and
    /// `NO_PROXY` apply (else every upstream is reached directly).
    pub upstream_proxy_from_env: bool,
    /// Longest wait for a TCP (and TLS) connection to an upstream.
    pub upstream_connect_timeout: Duration,
}

impl Default for ServerConfig {
    /// No keys, 32 MiB bodies, 30 s header timeout, 60 s body timeout, 512 MiB for bodies in
    /// flight, 1024 connections, no allowed web origins, 5 min upstream idle timeout, 30 s
    /// shutdown grace, 3 attempts, no extra models or aliases, output capped at 65,536 tokens,
    /// Qwen Code 0.14.2, the environment's upstream proxy, 30 s connect timeout.
    fn default() -> Self {
        Self {
            api_keys: Vec::new(),
            client_keys: Vec::new(),
            max_body_bytes: 32 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            body_memory_budget: 512 * 1024 * 1024,
            max_connections: 1024,
            allowed_origins: Vec::new(),
            upstream_idle_timeout: Duration::from_secs(5 * 60),
            shutdown_grace: Duration::from_secs(30),
            request_retry: 3,
            session_affinity: true,
            quota_reset: QuotaReset::default(),
            models: Vec::new(),
            model_aliases: Vec::new(),
            max_output_tokens: Some(65_536),
            qwen_client_version: "0.14.2".to_owned(),
            upstream_proxy_url: None,
            upstream_proxy_from_env: true,
            upstream_connect_timeout: Duration::from_secs(30),
        }
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field(
                "api_keys",
                &format_args!("<{} redacted>", self.api_keys.len()),
            )
            .field("client_keys", &self.client_keys)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("body_memory_budget", &self.body_memory_budget)
            .field("max_connections", &self.max_connections)
            .field("allowed_origins", &self.allowed_origins)
            .field("upstream_idle_timeout", &self.upstream_idle_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("request_retry", &self.request_retry)
            .field("session_affinity", &self.session_affinity)
            .field("quota_reset", &self.quota_reset)
            .field("models", &self.models)
            .field("model_aliases", &self.model_aliases)
            .field("max_output_tokens", &self.max_output_tokens)
            .field("qwen_client_version", &self.qwen_client_version)
            .field(
                "upstream_proxy_url",
                &self.upstream_proxy_url.as_ref().map(|_| "<redacted>"),
            )
            .field("upstream_proxy_from_env", &self.upstream_proxy_from_env)
            .field("upstream_connect_timeout", &self.upstream_connect_timeout)
            .finish()
    }
}

/// A configuration that must not be served as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No client keys, yet the address is reachable from other machines.
    #[error(
        "refusing to listen on {addr} without client API keys: anyone who can reach it could \
         use your accounts; add `api-keys = [\"<a long random string>\"]` to the config file, \
         or listen on 127.0.0.1"
    )]
    OpenWithoutKeys {
        /// The address that was refused.
        addr: SocketAddr,
    },
}

impl ServerConfig {
    /// Checks that the proxy may listen on `addr`: without client keys only a loopback
    /// address (127.0.0.0/8, `::1`) is allowed.
    ///
    /// # Errors
    ///
    /// [`ConfigError::OpenWithoutKeys`] for a non-loopback address without keys.
    pub fn check_bind(&self, addr: &SocketAddr) -> Result<(), ConfigError> {
        if self.api_keys.is_empty()
            && self.client_keys.is_empty()
            && !addr.ip().to_canonical().is_loopback()
        {
            return Err(ConfigError::OpenWithoutKeys { addr: *addr });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("a socket address")
    }

    #[test]
    fn without_keys_only_loopback_is_allowed() {
        let config = ServerConfig::default();
        assert!(config.check_bind(&addr("127.0.0.1:8080")).is_ok());
        assert!(config.check_bind(&addr("[::1]:8080")).is_ok());
        assert!(config.check_bind(&addr("[::ffff:127.0.0.1]:8080")).is_ok());
        let refused = config
            .check_bind(&addr("0.0.0.0:8080"))
            .expect_err("0.0.0.0 without keys");
        assert!(refused.to_string().contains("api-keys = ["));
        assert!(config.check_bind(&addr("[::]:8080")).is_err());
        assert!(config.check_bind(&addr("192.168.1.2:8080")).is_err());
    }

    #[test]
    fn with_keys_any_address_is_allowed() {
        let config = ServerConfig {
            api_keys: vec!["k".into()],
            ..ServerConfig::default()
        };
        assert!(config.check_bind(&addr("0.0.0.0:8080")).is_ok());
    }

    #[test]
    fn debug_hides_keys_and_proxy() {
        let config = ServerConfig {
            api_keys: vec!["client-secret".into()],
            upstream_proxy_url: Some("http://user:pass@proxy:3128".into()),
            ..ServerConfig::default()
        };
        let debug = format!("{config:?}");
        assert!(!debug.contains("client-secret"));
        assert!(!debug.contains("pass@"));
    }
}
