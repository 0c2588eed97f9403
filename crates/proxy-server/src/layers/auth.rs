//! Client authentication, failing closed: every path needs one of the configured keys except
//! the short constant [`PUBLIC_PATHS`] list. A key is read from `Authorization: Bearer`,
//! `x-api-key`, `x-goog-api-key` or the `key` query parameter, and compared in constant time
//! with every configured key (no early exit; the matching key's index is selected without a
//! branch). The comparison is of SHA-256 digests, so not even a key's length shows in the time
//! it takes, and a `[[client-keys]]` entry may hold only the digest. The request goes on with
//! its [`Client`] (the key's name, scope and limits) in its extensions. Without configured keys
//! the layer lets everything through as the anonymous client (the server then only listens on
//! loopback). The 401 is OpenAI error JSON, or Anthropic error JSON under `/v1/messages`
//! ([`ErrorShape::for_path`]).

use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use sha2::{Digest as _, Sha256};
use subtle::{Choice, ConditionallySelectable as _, ConstantTimeEq as _};
use tower::{Layer, Service};

use super::ShortCircuit;
use crate::api_error::{ApiError, ErrorShape, INVALID_REQUEST};
use crate::body::ProxyBody;
use crate::client::Client;
use crate::config::ClientKeyConfig;
use crate::error::BuildError;
use crate::live::Live;
use credential_pool::QuotaReset;

/// The headers besides `Authorization` that may carry a client key (Anthropic's, Gemini's).
static KEY_HEADERS: [HeaderName; 2] = [
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("x-goog-api-key"),
];

/// Paths served without a key.
pub(crate) const PUBLIC_PATHS: [&str; 3] = ["/healthz", "/", "/api/hello"];

/// The configured client keys, as SHA-256 digests, each with its client.
pub(crate) struct ClientKeys {
    digests: Box<[[u8; 32]]>,
    /// The `[[client-keys]]` entry of each named key (`None` for a plain one).
    configs: Box<[Option<ClientKeyConfig>]>,
    clients: Box<[Arc<Client>]>,
}

impl ClientKeys {
    /// The plain `api_keys` (named `api-keys#N`) and the named `client_keys`, whose days end
    /// at `reset`. A named key configured exactly as in `previous` (a reload) keeps its client,
    /// with the requests and tokens it has counted.
    pub(crate) fn new(
        api_keys: &[String],
        client_keys: &[ClientKeyConfig],
        reset: QuotaReset,
        previous: Option<&ClientKeys>,
    ) -> Result<Self, BuildError> {
        if api_keys.iter().any(String::is_empty) {
            return Err(BuildError::EmptyApiKey);
        }
        let plain = api_keys
            .iter()
            .enumerate()
            .map(|(index, key)| (digest(key.as_bytes()), None, Arc::new(Client::plain(index))));
        let named = client_keys.iter().map(|config| {
            let kept = previous.and_then(|previous| previous.client_configured_as(config));
            (
                config.key_sha256,
                Some(config.clone()),
                kept.unwrap_or_else(|| Arc::new(Client::named(config, reset))),
            )
        });
        let mut digests = Vec::new();
        let mut configs = Vec::new();
        let mut clients: Vec<Arc<Client>> = Vec::new();
        for (digest, config, client) in plain.chain(named) {
            if let Some(at) = digests.iter().position(|known| *known == digest) {
                return Err(BuildError::DuplicateClientKey {
                    first: clients[at].name.to_string(),
                    second: client.name.to_string(),
                });
            }
            digests.push(digest);
            configs.push(config);
            clients.push(client);
        }
        Ok(Self {
            digests: digests.into(),
            configs: configs.into(),
            clients: clients.into(),
        })
    }

    /// The client of the named key configured exactly as `config`, if there is one.
    fn client_configured_as(&self, config: &ClientKeyConfig) -> Option<Arc<Client>> {
        self.configs
            .iter()
            .position(|known| known.as_ref() == Some(config))
            .map(|at| Arc::clone(&self.clients[at]))
    }

    /// The index of the key equal to `candidate`, if any; looks at every key whatever the
    /// result, and selects the index without branching on the comparisons.
    fn find(&self, candidate: &[u8]) -> (Choice, u32) {
        let candidate = digest(candidate);
        let mut found = Choice::from(0);
        let mut index = 0_u32;
        for (at, key) in (0_u32..).zip(self.digests.iter()) {
            let equal = key.as_slice().ct_eq(candidate.as_slice());
            index.conditional_assign(&at, equal);
            found |= equal;
        }
        (found, index)
    }

    /// Which configured key the request presents (in any of the accepted places).
    fn check<B>(&self, request: &Request<B>) -> Check {
        let headers = request.headers();
        let mut presented = false;
        let mut valid = Choice::from(0);
        let mut index = 0_u32;
        let mut consider = |candidate: &[u8]| {
            presented = true;
            let (found, at) = self.find(candidate);
            // The first valid key presented wins.
            index.conditional_assign(&at, found & !valid);
            valid |= found;
        };
        let bearer = headers
            .get(AUTHORIZATION)
            .and_then(|value| bearer_token(value.as_bytes()));
        let header_keys = KEY_HEADERS
            .iter()
            .filter_map(|name| headers.get(name).map(HeaderValue::as_bytes));
        for candidate in bearer.into_iter().chain(header_keys) {
            consider(candidate);
        }
        if let Some(query) = request.uri().query() {
            for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
                if name == "key" {
                    consider(value.as_bytes());
                }
            }
        }
        match (bool::from(valid), presented) {
            (true, _) => Check::Valid(index as usize),
            (false, true) => Check::Invalid,
            (false, false) => Check::Missing,
        }
    }
}

fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

enum Check {
    /// The index of the key presented.
    Valid(usize),
    Invalid,
    Missing,
}

/// The token of `Bearer <token>` (scheme case-insensitive).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| token.trim_ascii())
}

/// 401 in `shape`; `missing` tells no key from a wrong key.
fn unauthorized(missing: bool, shape: ErrorShape) -> Response<ProxyBody> {
    let message = if missing {
        "no API key was sent; send one of the proxy's client keys (`api-keys` in its config) \
         as `Authorization: Bearer <key>` or `x-api-key: <key>`"
    } else {
        "the API key is not one of the proxy's client keys; use a key from `api-keys` in its \
         config"
    };
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        INVALID_REQUEST,
        "invalid_api_key",
        message,
    )
    .with_header(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
    .into_response_as(shape)
}

/// Adds [`ClientAuth`].
#[derive(Clone)]
pub(crate) struct ClientAuthLayer {
    keys: Arc<Live<ClientKeys>>,
}

impl ClientAuthLayer {
    pub(crate) fn new(keys: Arc<Live<ClientKeys>>) -> Self {
        Self { keys }
    }
}

impl<S> Layer<S> for ClientAuthLayer {
    type Service = ClientAuth<S>;

    fn layer(&self, inner: S) -> ClientAuth<S> {
        ClientAuth {
            inner,
            keys: Arc::clone(&self.keys),
        }
    }
}

/// Answers 401 unless the request presents a client key or its path is public.
#[derive(Clone)]
pub(crate) struct ClientAuth<S> {
    inner: S,
    keys: Arc<Live<ClientKeys>>,
}

impl<S, B> Service<Request<B>> for ClientAuth<S>
where
    S: Service<Request<B>, Response = Response<ProxyBody>, Error = std::convert::Infallible>,
{
    type Response = Response<ProxyBody>;
    type Error = std::convert::Infallible;
    type Future = ShortCircuit<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let keys = self.keys.load();
        if keys.digests.is_empty() || PUBLIC_PATHS.contains(&request.uri().path()) {
            return ShortCircuit::inner(self.inner.call(request));
        }
        let shape = ErrorShape::for_path(request.uri().path());
        match keys.check(&request) {
            Check::Valid(index) => {
                request
                    .extensions_mut()
                    .insert(Arc::clone(&keys.clients[index]));
                ShortCircuit::inner(self.inner.call(request))
            }
            Check::Invalid => ShortCircuit::answer(unauthorized(false, shape)),
            Check::Missing => ShortCircuit::answer(unauthorized(true, shape)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ClientKeys {
        ClientKeys::new(
            &["alpha-key".to_owned(), "beta-key".to_owned()],
            &[named("team", "gamma-key")],
            QuotaReset::default(),
            None,
        )
        .expect("valid keys")
    }

    fn named(name: &str, key: &str) -> ClientKeyConfig {
        ClientKeyConfig {
            name: name.to_owned(),
            key_sha256: digest(key.as_bytes()),
            models: Vec::new(),
            scope: credential_pool::Scope::all(),
            requests_per_minute: None,
            tokens_per_day: None,
        }
    }

    /// The name of the client whose key `request` presents.
    fn client_of(request: &Request<()>) -> Option<String> {
        let keys = keys();
        match keys.check(request) {
            Check::Valid(index) => Some(keys.clients[index].name.to_string()),
            _ => None,
        }
    }

    fn request(uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("a request")
    }

    fn valid(request: &Request<()>) -> bool {
        matches!(keys().check(request), Check::Valid(_))
    }

    #[test]
    fn every_place_and_every_key_is_accepted() {
        assert!(valid(&request(
            "/v1/models",
            &[("authorization", "Bearer alpha-key")]
        )));
        assert!(valid(&request(
            "/v1/models",
            &[("authorization", "bearer  beta-key ")]
        )));
        assert!(valid(&request("/v1/models", &[("x-api-key", "beta-key")])));
        assert!(valid(&request(
            "/v1/models",
            &[("x-goog-api-key", "alpha-key")]
        )));
        assert!(valid(&request("/v1/models?alt=sse&key=alpha%2Dkey", &[])));
    }

    #[test]
    fn wrong_and_missing_keys_are_told_apart() {
        assert!(matches!(
            keys().check(&request("/v1/models", &[("authorization", "Bearer nope")])),
            Check::Invalid
        ));
        assert!(matches!(
            keys().check(&request(
                "/v1/models",
                &[("authorization", "Basic alpha-key")]
            )),
            Check::Missing
        ));
        assert!(matches!(
            keys().check(&request("/v1/models?key=", &[])),
            Check::Invalid
        ));
        assert!(matches!(
            keys().check(&request("/v1/models", &[])),
            Check::Missing
        ));
    }

    #[test]
    fn one_right_key_among_wrong_ones_is_enough() {
        assert!(valid(&request(
            "/v1/models",
            &[
                ("authorization", "Bearer wrong"),
                ("x-api-key", "alpha-key")
            ]
        )));
    }

    #[test]
    fn only_the_exact_key_matches_not_its_prefixes_or_extensions() {
        for near in ["alpha-ke", "alpha-key2", "ALPHA-KEY", " alpha-key"] {
            let bearer = format!("Bearer {near}");
            assert!(
                !valid(&request("/v1/models", &[("x-api-key", near)])),
                "{near}"
            );
            if near.trim() != "alpha-key" {
                assert!(
                    !valid(&request("/v1/models", &[("authorization", &bearer)])),
                    "{near}"
                );
            }
        }
    }

    #[test]
    fn an_empty_key_is_refused_at_build_time() {
        assert!(matches!(
            ClientKeys::new(
                &["ok".to_owned(), String::new()],
                &[],
                QuotaReset::default(),
                None
            ),
            Err(BuildError::EmptyApiKey)
        ));
    }

    #[test]
    fn each_key_brings_its_own_client() {
        let bearer =
            |key: &str| request("/v1/models", &[("authorization", &format!("Bearer {key}"))]);
        assert_eq!(
            client_of(&bearer("alpha-key")).as_deref(),
            Some("api-keys#1")
        );
        assert_eq!(
            client_of(&bearer("beta-key")).as_deref(),
            Some("api-keys#2")
        );
        assert_eq!(client_of(&bearer("gamma-key")).as_deref(), Some("team"));
        // The first valid key presented decides.
        let both = request(
            "/v1/models",
            &[
                ("authorization", "Bearer gamma-key"),
                ("x-api-key", "alpha-key"),
            ],
        );
        assert_eq!(client_of(&both).as_deref(), Some("team"));
    }

    #[test]
    fn a_key_given_twice_is_refused_naming_both() {
        let twice = ClientKeys::new(
            &["same".to_owned()],
            &[named("team", "same")],
            QuotaReset::default(),
            None,
        );
        let Err(BuildError::DuplicateClientKey { first, second }) = twice else {
            panic!("a duplicate key is refused");
        };
        assert_eq!((first.as_str(), second.as_str()), ("api-keys#1", "team"));
    }
}
