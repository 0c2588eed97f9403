//! Why a [`Proxy`](crate::Proxy) could not be built or could not serve.

use std::io;

use crate::config::ConfigError;

/// [`Proxy::new`](crate::Proxy::new) refused the configuration.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// An empty string among the client keys would let anyone in.
    #[error("an empty string is configured as a client API key; remove it from `api-keys`")]
    EmptyApiKey,
    /// Two client keys (in `api-keys` or `[[client-keys]]`) are the same key: which name and
    /// limits apply would be a guess.
    #[error("client keys {first} and {second} are the same key; give each client a key of its own")]
    DuplicateClientKey {
        /// The name of the first (`api-keys#N` for a plain key).
        first: String,
        /// The name of the second.
        second: String,
    },
    /// A reloaded config may not serve on the address the proxy listens on.
    #[error(transparent)]
    Bind(ConfigError),
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
    /// An `allowed-origins` entry is not a web origin.
    #[error("`allowed-origins` entry {origin:?} is not usable: {reason}")]
    AllowedOrigin {
        /// The entry as configured.
        origin: String,
        /// What is wrong with it, and how to write it.
        reason: String,
    },
    /// `max_connections` is zero, so no client could ever connect.
    #[error(
        "`max-connections` is 0, so no client could connect; set it to 1 or more (default 1024)"
    )]
    NoConnections,
    /// `body_memory_budget` is too small for any request body.
    #[error(
        "`body-memory-budget` is {budget} bytes, less than the 1 MiB a request needs; raise it \
         (default 536870912, 512 MiB)"
    )]
    BodyMemoryBudget {
        /// The configured budget.
        budget: usize,
    },
    /// `body_read_timeout` is zero, so no request body could arrive in time.
    #[error(
        "`body-read-timeout` is 0, so no request body could arrive in time; set it to a few seconds or more (default 60s)"
    )]
    NoBodyTime,
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
