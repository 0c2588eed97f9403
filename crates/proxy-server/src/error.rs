//! Why a [`Proxy`](crate::Proxy) could not be built or could not serve.

use std::io;

use crate::config::ConfigError;

/// [`Proxy::new`](crate::Proxy::new) refused the configuration.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// An empty string among the client keys would let anyone in.
    #[error("an empty string is configured as a client API key; remove it from `api-keys`")]
    EmptyApiKey,
    /// `request_retry` is zero, so no request could ever be sent.
    #[error("`request-retry` is 0, so no request could be sent upstream; set it to 1 or more")]
    NoAttempts,
    /// The Qwen Code version cannot be put in a `User-Agent` header.
    #[error(
        "the Qwen client version {version:?} cannot go in a User-Agent header; use a plain \
         version such as 0.14.2"
    )]
    ClientVersion {
        /// The configured version.
        version: String,
    },
    /// The upstream proxy URL was refused (the URL itself is left out: it may hold a password).
    #[error(
        "the upstream proxy URL is not usable ({reason}); set it to a URL such as \
         http://proxy.example:3128"
    )]
    UpstreamProxy {
        /// What was wrong with it.
        reason: String,
    },
    /// TLS for upstream requests could not be set up from the platform's trust store.
    #[error(
        "cannot set up TLS for upstream requests ({0}); check that the system's CA \
         certificates are installed (e.g. the ca-certificates package)"
    )]
    Tls(#[source] rustls::Error),
}

/// [`Proxy::serve`](crate::Proxy::serve) could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listener's address is not allowed by the configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listener could not tell its own address.
    #[error("cannot read the listening socket's address: {0}")]
    LocalAddr(#[source] io::Error),
}
