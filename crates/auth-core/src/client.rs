//! The OAuth client: one provider profile and one HTTP client shared by the device login and
//! refreshes. The flows themselves live in `device`, `poll` and `refresh`.

use url::Url;

use crate::http::{ClientBuildError, HttpSettings, build_client};
use crate::profile::ProviderProfile;

/// Talks OAuth to one provider. Cheap to clone; every request uses the same proxy, timeout and
/// User-Agent.
#[derive(Debug, Clone)]
pub struct OAuthClient {
    pub(crate) profile: ProviderProfile,
    pub(crate) http: reqwest::Client,
    pub(crate) device_url: Url,
    pub(crate) token_url: Url,
    /// Whether `proxy_url` was set, so transport errors can say so.
    pub(crate) via_proxy: bool,
    /// The whole-request timeout of [`HttpSettings`], which polls may shorten.
    pub(crate) timeout: std::time::Duration,
}

impl OAuthClient {
    /// A client for `profile` with `http` settings; fails on a bad proxy URL or endpoint.
    pub fn new(profile: ProviderProfile, http: &HttpSettings) -> Result<Self, ClientBuildError> {
        let endpoint = |path: &str| {
            profile
                .endpoint(path)
                .map_err(|error| ClientBuildError::InvalidEndpoint {
                    url: format!("{}{path}", profile.base_url),
                    reason: error.to_string(),
                })
        };
        let device_url = endpoint(&profile.device_path)?;
        let token_url = endpoint(&profile.token_path)?;
        Ok(Self {
            http: build_client(http)?,
            profile,
            device_url,
            token_url,
            via_proxy: http.proxy_url.is_some(),
            timeout: http.timeout,
        })
    }

    /// The provider this client talks to.
    pub fn profile(&self) -> &ProviderProfile {
        &self.profile
    }
}
