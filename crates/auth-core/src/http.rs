//! The HTTP client every OAuth request goes through: timeout, User-Agent and the optional
//! proxy (HTTP, HTTPS or SOCKS5), which applies to every request including polls.

use std::fmt;
use std::time::Duration;

use url::Url;

/// How to talk HTTP to the OAuth server.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// `http://`, `https://`, `socks5://` or `socks5h://` proxy for every request. `None` uses
    /// the usual `HTTPS_PROXY`/`ALL_PROXY`/`NO_PROXY` environment variables, if set.
    pub proxy_url: Option<String>,
    /// Limit for one whole request, from connecting to the end of the answer.
    pub timeout: Duration,
    /// The `User-Agent` header.
    pub user_agent: String,
}

impl Default for HttpSettings {
    /// No proxy, 30 s timeout, `cliproxy/<version>`.
    fn default() -> Self {
        Self {
            proxy_url: None,
            timeout: Duration::from_secs(30),
            user_agent: format!("cliproxy/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

impl fmt::Debug for HttpSettings {
    /// The proxy URL may carry a password, so only its redacted form is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSettings")
            .field("proxy_url", &self.proxy_url.as_deref().map(redact_proxy))
            .field("timeout", &self.timeout)
            .field("user_agent", &self.user_agent)
            .finish()
    }
}

/// The OAuth client could not be set up from its settings.
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    /// `proxy_url` is not a URL.
    #[error(
        "the proxy-url setting `{proxy}` is not a valid URL ({reason}). Write it like \
         http://host:port or socks5://host:port."
    )]
    InvalidProxyUrl {
        /// The setting, with any password replaced by `***`.
        proxy: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `proxy_url` uses a scheme other than http, https, socks5 or socks5h.
    #[error(
        "the proxy-url setting uses `{scheme}://`, which is not supported. Use http://, \
         https://, socks5:// or socks5h://."
    )]
    UnsupportedProxyScheme {
        /// The scheme found.
        scheme: String,
    },
    /// The provider's base URL and an endpoint path do not make a URL.
    #[error(
        "the OAuth endpoint `{url}` is not a valid URL ({reason}). Check the provider's base \
         URL setting."
    )]
    InvalidEndpoint {
        /// The URL that failed to parse.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP library could not be initialised.
    #[error(
        "could not set up the HTTP client ({reason}). This usually points at the TLS setup of \
         this system; please report it."
    )]
    Http {
        /// What failed.
        reason: String,
    },
}

/// Builds the one `reqwest::Client` an [`crate::OAuthClient`] uses for all its requests. It
/// follows no redirects: a redirect comes back as the answer it is.
pub(crate) fn build_client(settings: &HttpSettings) -> Result<reqwest::Client, ClientBuildError> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        .user_agent(settings.user_agent.clone());
    if let Some(proxy_url) = settings.proxy_url.as_deref() {
        builder = builder.proxy(parse_proxy(proxy_url)?);
    }
    builder.build().map_err(|error| ClientBuildError::Http {
        reason: error.without_url().to_string(),
    })
}

fn parse_proxy(proxy_url: &str) -> Result<reqwest::Proxy, ClientBuildError> {
    let invalid = |reason: String| ClientBuildError::InvalidProxyUrl {
        proxy: redact_proxy(proxy_url),
        reason,
    };
    let url = Url::parse(proxy_url).map_err(|error| invalid(error.to_string()))?;
    match url.scheme() {
        "http" | "https" | "socks5" | "socks5h" => {}
        other => {
            return Err(ClientBuildError::UnsupportedProxyScheme {
                scheme: other.to_owned(),
            });
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it names no host".to_owned()));
    }
    reqwest::Proxy::all(url.as_str()).map_err(|error| invalid(error.without_url().to_string()))
}

/// The proxy URL with its password, if any, replaced by `***`; input that is not a URL with a
/// host but may hold credentials (an `@`) is hidden. (`socks5:user:password@host` parses as a
/// URL without a host, whose password `Url` does not see.)
fn redact_proxy(proxy_url: &str) -> String {
    match Url::parse(proxy_url) {
        Ok(mut url) if url.has_host() => {
            if url.password().is_some() {
                // Only fails for URLs that cannot have credentials, which this one has.
                let _ = url.set_password(Some("***"));
            }
            url.to_string()
        }
        _ if proxy_url.contains('@') => "[unparsable, hidden]".to_owned(),
        _ => proxy_url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_proxy(proxy_url: &str) -> HttpSettings {
        HttpSettings {
            proxy_url: Some(proxy_url.to_owned()),
            ..HttpSettings::default()
        }
    }

    #[test]
    fn supported_proxy_schemes_build() {
        for proxy in [
            "http://127.0.0.1:3128",
            "https://proxy.example:443",
            "socks5://127.0.0.1:1080",
            "socks5h://user:pw@127.0.0.1:1080",
        ] {
            assert!(build_client(&with_proxy(proxy)).is_ok(), "{proxy}");
        }
    }

    #[test]
    fn bad_proxies_are_typed_errors() {
        assert!(matches!(
            build_client(&with_proxy("ftp://127.0.0.1:21")),
            Err(ClientBuildError::UnsupportedProxyScheme { scheme }) if scheme == "ftp"
        ));
        assert!(matches!(
            build_client(&with_proxy("not a url")),
            Err(ClientBuildError::InvalidProxyUrl { .. })
        ));
    }

    #[test]
    fn proxy_passwords_are_redacted() {
        let settings = with_proxy("http://alice:hunter2@127.0.0.1:3128");
        assert!(!format!("{settings:?}").contains("hunter2"));
        let error = parse_proxy("http://alice:hunter2@[::1").expect_err("bad host");
        assert!(!error.to_string().contains("hunter2"));
        // Without `//` the text has no host, and `Url` sees no password in it.
        let error = parse_proxy("socks5:alice:hunter2@127.0.0.1:1080").expect_err("no host");
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
}
