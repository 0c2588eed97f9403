//! Where a provider's OAuth server lives and which public client identity to present to it.

use url::Url;

const QWEN_BASE_URL: &str = "https://chat.qwen.ai";

/// A provider's OAuth endpoints and public client. Values are public, none is a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderProfile {
    /// Short lower-case name, such as `qwen`.
    pub name: String,
    /// Scheme, host and optional path prefix of the OAuth server.
    pub base_url: Url,
    /// Device authorization endpoint, appended to `base_url`.
    pub device_path: String,
    /// Token endpoint (device-code polls and refreshes), appended to `base_url`.
    pub token_path: String,
    /// The public client id; there is no client secret.
    pub client_id: String,
    /// Space-separated scopes asked for in the device request.
    pub scope: String,
}

impl ProviderProfile {
    /// Qwen's OAuth server at `https://chat.qwen.ai`, as Qwen Code uses it.
    pub fn qwen() -> Self {
        Self {
            name: "qwen".to_owned(),
            base_url: Url::parse(QWEN_BASE_URL).expect("the built-in Qwen base URL is valid"),
            device_path: "/api/v1/oauth2/device/code".to_owned(),
            token_path: "/api/v1/oauth2/token".to_owned(),
            client_id: "f0304373b74a44d2b584a3fb70ca9e56".to_owned(),
            scope: "openid profile email model.completion".to_owned(),
        }
    }

    /// The same provider served from elsewhere (a test fake, a mirror).
    #[must_use]
    pub fn with_base_url(mut self, base_url: Url) -> Self {
        self.base_url = base_url;
        self
    }

    /// `base_url` followed by `path`, keeping any path prefix of `base_url`.
    pub(crate) fn endpoint(&self, path: &str) -> Result<Url, url::ParseError> {
        let base = self.base_url.as_str().trim_end_matches('/');
        let path = path.trim_start_matches('/');
        Url::parse(&format!("{base}/{path}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qwen_endpoints() {
        let qwen = ProviderProfile::qwen();
        assert_eq!(
            qwen.endpoint(&qwen.device_path).map(String::from),
            Ok("https://chat.qwen.ai/api/v1/oauth2/device/code".to_owned())
        );
        assert_eq!(
            qwen.endpoint(&qwen.token_path).map(String::from),
            Ok("https://chat.qwen.ai/api/v1/oauth2/token".to_owned())
        );
    }

    #[test]
    fn base_url_prefix_is_kept() {
        let base = Url::parse("http://127.0.0.1:9/mirror/").expect("valid");
        let profile = ProviderProfile::qwen().with_base_url(base);
        assert_eq!(
            profile.endpoint(&profile.token_path).map(String::from),
            Ok("http://127.0.0.1:9/mirror/api/v1/oauth2/token".to_owned())
        );
    }
}
