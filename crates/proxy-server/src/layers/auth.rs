//! Client authentication, failing closed: every path needs one of the configured keys except
//! the short constant [`PUBLIC_PATHS`] list. A key is read from `Authorization: Bearer`,
//! `x-api-key`, `x-goog-api-key` or the `key` query parameter, and compared in constant time
//! with every configured key (no early exit). The comparison is of SHA-256 digests, so not
//! even a key's length shows in the time it takes. Without configured keys the layer lets
//! everything through (the server then only listens on loopback). The 401 is OpenAI error
//! JSON, or Anthropic error JSON under `/v1/messages` ([`ErrorShape::for_path`]).

use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, Response, StatusCode};
use sha2::{Digest as _, Sha256};
use subtle::{Choice, ConstantTimeEq as _};
use tower::{Layer, Service};

use super::ShortCircuit;
use crate::api_error::{ApiError, ErrorShape, INVALID_REQUEST};
use crate::body::ProxyBody;
use crate::error::BuildError;

/// Paths served without a key.
pub(crate) const PUBLIC_PATHS: [&str; 3] = ["/healthz", "/", "/api/hello"];

/// The configured client keys, as SHA-256 digests.
pub(crate) struct ClientKeys {
    digests: Box<[[u8; 32]]>,
}

impl ClientKeys {
    pub(crate) fn new(keys: &[String]) -> Result<Self, BuildError> {
        if keys.iter().any(String::is_empty) {
            return Err(BuildError::EmptyApiKey);
        }
        Ok(Self {
            digests: keys.iter().map(|key| digest(key.as_bytes())).collect(),
        })
    }

    /// Whether `candidate` equals some configured key; looks at every key whatever the result.
    fn matches(&self, candidate: &[u8]) -> Choice {
        let candidate = digest(candidate);
        self.digests.iter().fold(Choice::from(0), |found, key| {
            found | key.as_slice().ct_eq(candidate.as_slice())
        })
    }

    /// Whether the request presents a configured key (in any of the accepted places).
    fn check<B>(&self, request: &Request<B>) -> Check {
        let headers = request.headers();
        let mut presented = false;
        let mut valid = Choice::from(0);
        let bearer = headers
            .get(AUTHORIZATION)
            .and_then(|value| bearer_token(value.as_bytes()));
        let header_keys = ["x-api-key", "x-goog-api-key"]
            .into_iter()
            .filter_map(|name| headers.get(name).map(HeaderValue::as_bytes));
        for candidate in bearer.into_iter().chain(header_keys) {
            presented = true;
            valid |= self.matches(candidate);
        }
        if let Some(query) = request.uri().query() {
            for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
                if name == "key" {
                    presented = true;
                    valid |= self.matches(value.as_bytes());
                }
            }
        }
        match (bool::from(valid), presented) {
            (true, _) => Check::Valid,
            (false, true) => Check::Invalid,
            (false, false) => Check::Missing,
        }
    }
}

fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

enum Check {
    Valid,
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
    keys: Arc<ClientKeys>,
}

impl ClientAuthLayer {
    pub(crate) fn new(keys: Arc<ClientKeys>) -> Self {
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
    keys: Arc<ClientKeys>,
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

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if self.keys.digests.is_empty() || PUBLIC_PATHS.contains(&request.uri().path()) {
            return ShortCircuit::inner(self.inner.call(request));
        }
        let shape = ErrorShape::for_path(request.uri().path());
        match self.keys.check(&request) {
            Check::Valid => ShortCircuit::inner(self.inner.call(request)),
            Check::Invalid => ShortCircuit::answer(unauthorized(false, shape)),
            Check::Missing => ShortCircuit::answer(unauthorized(true, shape)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ClientKeys {
        ClientKeys::new(&["alpha-key".to_owned(), "beta-key".to_owned()]).expect("valid keys")
    }

    fn request(uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("a request")
    }

    fn valid(request: &Request<()>) -> bool {
        matches!(keys().check(request), Check::Valid)
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
            ClientKeys::new(&["ok".to_owned(), String::new()]),
            Err(BuildError::EmptyApiKey)
        ));
    }
}
