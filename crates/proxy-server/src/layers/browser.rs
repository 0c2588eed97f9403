//! What a web page in the user's browser may do with the proxy: nothing, unless its origin is
//! listed in `allowed-origins`.
//!
//! A page can make the browser send requests to any address, the proxy's loopback port
//! included. Without client keys the proxy would serve them, spending the user's quota, and
//! with DNS rebinding (a page's own host name switched to 127.0.0.1) the page can even read
//! the answers. So, in this order:
//!
//! 1. A request with an `Origin` header that is not an allowed origin gets 403
//!    `origin_not_allowed`, keys or not. Browsers send `Origin` with every cross-origin request
//!    and every `POST`; SDKs, agents and curl send none and are not affected. A CORS preflight
//!    (`OPTIONS` with `Access-Control-Request-Method`) from an allowed origin is answered here
//!    (204), and every answer to an allowed origin carries `Access-Control-Allow-Origin`.
//! 2. Without client keys only: a `Host` that is not a loopback name or address (`localhost`,
//!    `*.localhost`, 127.0.0.0/8, `[::1]`, with or without a port) gets 403
//!    `host_not_allowed`: a rebound page addresses its own host name. A request without a
//!    host (HTTP/1.0) is not from a browser and passes.
//! 3. Without client keys only: a body a page can send without a preflight (`text/plain`,
//!    `application/x-www-form-urlencoded`, `multipart/form-data`) gets 415
//!    `unsupported_content_type`, naming `Content-Type: application/json`.
//!
//! With keys, 2 and 3 are off: a browser cannot attach a key without a preflight, which
//! step 1 refuses for foreign origins, and a keyed server may be reached under any name.

use std::convert::Infallible;
use std::future::{Future, Ready};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use api_translate::quote::client_text;
use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, CONTENT_TYPE, HOST, ORIGIN, VARY,
};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::api_error::{ApiError, ErrorShape, INVALID_REQUEST};
use crate::body::ProxyBody;
use crate::error::BuildError;
use crate::live::Live;

/// Content types a page can send without a preflight (the CORS-safelisted ones).
const SIMPLE_CONTENT_TYPES: [&str; 3] = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
];
/// Chrome's Private Network Access preflight request header and its answer.
const REQUEST_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-request-private-network");
const ALLOW_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-allow-private-network");
/// How long a browser may cache a preflight's answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

/// The allowed origins, and whether the server runs without client keys.
#[derive(Debug)]
pub(crate) struct BrowserPolicy {
    /// Serialized origins (`scheme://host[:port]`, lower case, default port left out).
    origins: Box<[String]>,
    keyless: bool,
}

impl BrowserPolicy {
    /// Checks and normalizes `allowed_origins`.
    ///
    /// # Errors
    ///
    /// [`BuildError::AllowedOrigin`] for an entry that is not `scheme://host[:port]`.
    pub(crate) fn new(allowed_origins: &[String], keyless: bool) -> Result<Self, BuildError> {
        let origins = allowed_origins
            .iter()
            .map(|entry| {
                normalize_origin(entry).map_err(|reason| BuildError::AllowedOrigin {
                    origin: entry.clone(),
                    reason,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { origins, keyless })
    }

    /// Whether `origin` (an `Origin` header as sent) is allowed.
    fn allows(&self, origin: &HeaderValue) -> bool {
        self.origins
            .iter()
            .any(|allowed| allowed.as_bytes().eq_ignore_ascii_case(origin.as_bytes()))
    }

    /// What to do with `request`.
    fn judge<B>(&self, request: &Request<B>) -> Verdict {
        let headers = request.headers();
        let shape = ErrorShape::for_path(request.uri().path());
        let origin = match headers.get(ORIGIN) {
            Some(origin) if self.allows(origin) => Some(origin.clone()),
            Some(origin) => return Verdict::Refuse(foreign_origin(origin).into_response_as(shape)),
            None => None,
        };
        if let Some(origin) = &origin
            && request.method() == Method::OPTIONS
            && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
        {
            return Verdict::Refuse(preflight(origin, headers));
        }
        if self.keyless {
            let host = headers
                .get(HOST)
                .map(|host| host.to_str().unwrap_or("\u{fffd}"))
                .or_else(|| request.uri().authority().map(http::uri::Authority::as_str));
            if let Some(host) = host
                && !is_loopback_host(host)
            {
                return Verdict::Refuse(foreign_host(host).into_response_as(shape));
            }
            if let Some(content_type) = headers.get(CONTENT_TYPE)
                && let Some(simple) = simple_content_type(content_type)
            {
                return Verdict::Refuse(simple_body(simple).into_response_as(shape));
            }
        }
        Verdict::Pass(origin)
    }
}

enum Verdict {
    /// Answered here: a refusal or a preflight.
    Refuse(Response<ProxyBody>),
    /// On to the inner service; with the allowed origin the request came from, if any.
    Pass(Option<HeaderValue>),
}

/// `entry` as browsers send it in `Origin`: `scheme://host[:port]`, lower case, without a
/// trailing slash or the scheme's default port.
fn normalize_origin(entry: &str) -> Result<String, String> {
    let trimmed = entry.trim().trim_end_matches('/');
    if trimmed == "*" {
        return Err(
            "`*` would let every web page use the proxy; list each origin instead".to_owned(),
        );
    }
    let form = || "write it as scheme://host[:port], e.g. http://localhost:3000".to_owned();
    let (scheme, rest) = trimmed.split_once("://").ok_or_else(form)?;
    if scheme.is_empty()
        || rest.is_empty()
        || rest.contains(|c: char| matches!(c, '/' | '?' | '#' | '@') || c.is_whitespace())
    {
        return Err(form());
    }
    if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") {
        let url = url::Url::parse(trimmed).map_err(|error| format!("{error}; {}", form()))?;
        return Ok(url.origin().ascii_serialization());
    }
    Ok(trimmed.to_ascii_lowercase())
}

/// Whether `host` (a `Host` header: name or address, optional port) names this machine's
/// loopback interface.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    let port_ok = |port: &str| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = host.strip_prefix('[') {
        let Some((address, after)) = rest.split_once(']') else {
            return false;
        };
        let port_fine = after.is_empty() || after.strip_prefix(':').is_some_and(port_ok);
        return port_fine
            && address
                .parse::<Ipv6Addr>()
                .is_ok_and(|ip| ip.to_canonical().is_loopback());
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port_ok(port) => name,
        Some(_) => return false,
        None => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost"
        || (name.ends_with(".localhost") && name.len() > ".localhost".len())
        || name.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// The safelisted type `content_type` is, if it is one (parameters and case ignored).
fn simple_content_type(content_type: &HeaderValue) -> Option<&'static str> {
    let essence = content_type.as_bytes().split(|&b| b == b';').next()?;
    let essence = essence.trim_ascii();
    SIMPLE_CONTENT_TYPES
        .into_iter()
        .find(|simple| simple.as_bytes().eq_ignore_ascii_case(essence))
}

fn foreign_origin(origin: &HeaderValue) -> ApiError {
    let origin = client_text(&String::from_utf8_lossy(origin.as_bytes()));
    ApiError::new(
        StatusCode::FORBIDDEN,
        INVALID_REQUEST,
        "origin_not_allowed",
        format!(
            "requests from web pages are refused, and this one came from {origin}, which is \
             not in the proxy's `allowed-origins`; if a web app of yours should use the proxy, \
             add its origin to `allowed-origins` in the proxy's config"
        ),
    )
}

fn foreign_host(host: &str) -> ApiError {
    let host = client_text(host);
    ApiError::new(
        StatusCode::FORBIDDEN,
        INVALID_REQUEST,
        "host_not_allowed",
        format!(
            "this proxy has no `api-keys`, so it only answers requests addressed to localhost, \
             127.0.0.1 or [::1], and this one was addressed to `{host}` (a web page may be \
             trying DNS rebinding); connect to http://127.0.0.1:<port>, or configure \
             `api-keys` to serve other names"
        ),
    )
}

fn simple_body(content_type: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        INVALID_REQUEST,
        "unsupported_content_type",
        format!(
            "this proxy has no `api-keys`, so it refuses `Content-Type: {content_type}` bodies, \
             which any web page can make a browser send; send the JSON body with \
             `Content-Type: application/json`"
        ),
    )
}

/// The 204 answer to an allowed origin's preflight: the methods the proxy serves, the headers
/// the page asked to send, and, when a page on a public address asks to reach this private
/// one (Chrome's Private Network Access), the permission for that.
fn preflight(origin: &HeaderValue, asked: &http::HeaderMap) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::full(bytes::Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    headers.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, HEAD"),
    );
    if let Some(asked_headers) = asked.get(ACCESS_CONTROL_REQUEST_HEADERS) {
        headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, asked_headers.clone());
    }
    if asked
        .get(REQUEST_PRIVATE_NETWORK)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"true"))
    {
        headers.insert(ALLOW_PRIVATE_NETWORK, HeaderValue::from_static("true"));
    }
    headers.insert(
        ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(PREFLIGHT_MAX_AGE),
    );
    headers.insert(
        VARY,
        HeaderValue::from_static(
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ),
    );
    response
}

/// Adds [`BrowserGuard`].
#[derive(Clone)]
pub(crate) struct BrowserGuardLayer {
    policy: Arc<Live<BrowserPolicy>>,
}

impl BrowserGuardLayer {
    pub(crate) fn new(policy: Arc<Live<BrowserPolicy>>) -> Self {
        Self { policy }
    }
}

impl<S> Layer<S> for BrowserGuardLayer {
    type Service = BrowserGuard<S>;

    fn layer(&self, inner: S) -> BrowserGuard<S> {
        BrowserGuard {
            inner,
            policy: Arc::clone(&self.policy),
        }
    }
}

/// Refuses what web pages must not do (see the module doc); adds CORS headers to the answers
/// for allowed origins.
#[derive(Clone)]
pub(crate) struct BrowserGuard<S> {
    inner: S,
    policy: Arc<Live<BrowserPolicy>>,
}

impl<S, B> Service<Request<B>> for BrowserGuard<S>
where
    S: Service<Request<B>, Response = Response<ProxyBody>, Error = Infallible>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = GuardFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match self.policy.load().judge(&request) {
            Verdict::Refuse(response) => GuardFuture::Answer {
                ready: std::future::ready(Ok(response)),
            },
            Verdict::Pass(origin) => GuardFuture::Inner {
                future: self.inner.call(request),
                origin,
            },
        }
    }
}

pin_project! {
    /// The guard's own answer, or the inner service's with CORS headers for an allowed origin.
    #[project = GuardFutureProj]
    pub(crate) enum GuardFuture<F> {
        Answer {
            #[pin]
            ready: Ready<Result<Response<ProxyBody>, Infallible>>,
        },
        Inner {
            #[pin]
            future: F,
            origin: Option<HeaderValue>,
        },
    }
}

impl<F> Future for GuardFuture<F>
where
    F: Future<Output = Result<Response<ProxyBody>, Infallible>>,
{
    type Output = Result<Response<ProxyBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            GuardFutureProj::Answer { ready } => ready.poll(cx),
            GuardFutureProj::Inner { future, origin } => {
                let mut response = std::task::ready!(future.poll(cx))?;
                if let Some(origin) = origin.take() {
                    let headers = response.headers_mut();
                    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
                    headers.insert(
                        ACCESS_CONTROL_EXPOSE_HEADERS,
                        HeaderValue::from_static("x-request-id, retry-after"),
                    );
                    headers.append(VARY, HeaderValue::from_static("Origin"));
                }
                Poll::Ready(Ok(response))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(origins: &[&str], keyless: bool) -> BrowserPolicy {
        let origins: Vec<String> = origins.iter().map(|o| (*o).to_owned()).collect();
        BrowserPolicy::new(&origins, keyless).expect("valid origins")
    }

    fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("a request")
    }

    fn status(verdict: &Verdict) -> Option<u16> {
        match verdict {
            Verdict::Refuse(response) => Some(response.status().as_u16()),
            Verdict::Pass(_) => None,
        }
    }

    #[test]
    fn loopback_hosts_are_recognized() {
        for host in [
            "localhost",
            "LOCALHOST:8317",
            "localhost.",
            "app.localhost:3000",
            "127.0.0.1",
            "127.0.0.1:8317",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:8317",
            "[::ffff:127.0.0.1]:8317",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8317",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            ".localhost",
            "10.0.0.1:8317",
            "[::2]:8317",
            "[::1]x",
            "localhost:port",
            "0.0.0.0:8317",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn origins_are_normalized_and_checked() {
        assert_eq!(
            normalize_origin("HTTPS://App.Example:443/").as_deref(),
            Ok("https://app.example")
        );
        assert_eq!(
            normalize_origin(" http://localhost:3000 ").as_deref(),
            Ok("http://localhost:3000")
        );
        assert_eq!(
            normalize_origin("chrome-extension://AbC").as_deref(),
            Ok("chrome-extension://abc")
        );
        for bad in [
            "*",
            "localhost:3000",
            "https://app.example/path",
            "https://user@app.example",
            "https://",
            "://x",
        ] {
            assert!(normalize_origin(bad).is_err(), "{bad}");
        }
        let error = BrowserPolicy::new(&["*".to_owned()], true).expect_err("a wildcard");
        assert!(error.to_string().contains("allowed-origins"), "{error}");
    }

    #[test]
    fn any_origin_not_listed_is_refused_with_or_without_keys() {
        for keyless in [true, false] {
            let policy = policy(&["http://localhost:3000"], keyless);
            let foreign = request(
                "POST",
                "/v1/messages",
                &[("origin", "https://evil.example")],
            );
            let Verdict::Refuse(response) = policy.judge(&foreign) else {
                panic!("a foreign origin passed");
            };
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
            assert!(!response.headers().contains_key(ACCESS_CONTROL_ALLOW_ORIGIN));
            for origin in ["null", "http://localhost:3001", "http://localhost"] {
                assert_eq!(
                    status(&policy.judge(&request("GET", "/v1/models", &[("origin", origin)]))),
                    Some(403),
                    "{origin}"
                );
            }
            let listed = request("GET", "/v1/models", &[("origin", "http://LOCALHOST:3000")]);
            assert!(matches!(policy.judge(&listed), Verdict::Pass(Some(_))));
            assert!(matches!(
                policy.judge(&request("POST", "/v1/models", &[])),
                Verdict::Pass(None)
            ));
        }
    }

    #[test]
    fn preflights_are_answered_for_allowed_origins_only() {
        let policy = policy(&["http://localhost:3000"], false);
        let asked = [
            ("origin", "http://localhost:3000"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization, content-type",
            ),
            ("access-control-request-private-network", "true"),
        ];
        let Verdict::Refuse(response) =
            policy.judge(&request("OPTIONS", "/v1/chat/completions", &asked))
        else {
            panic!("the preflight went on");
        };
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let headers = response.headers();
        assert_eq!(
            headers[ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://localhost:3000"
        );
        assert_eq!(
            headers[ACCESS_CONTROL_ALLOW_HEADERS],
            "authorization, content-type"
        );
        assert_eq!(headers[ALLOW_PRIVATE_NETWORK], "true");
        assert!(
            headers[ACCESS_CONTROL_ALLOW_METHODS]
                .to_str()
                .is_ok_and(|m| m.contains("POST"))
        );
        let foreign = [
            ("origin", "https://evil.example"),
            ("access-control-request-method", "POST"),
        ];
        assert_eq!(
            status(&policy.judge(&request("OPTIONS", "/v1/chat/completions", &foreign))),
            Some(403)
        );
    }

    #[test]
    fn without_keys_foreign_hosts_and_simple_bodies_are_refused() {
        let keyless = policy(&[], true);
        let keyed = policy(&[], false);
        let rebound = request(
            "POST",
            "/v1/chat/completions",
            &[("host", "evil.example:8317")],
        );
        assert_eq!(status(&keyless.judge(&rebound)), Some(403));
        assert_eq!(status(&keyed.judge(&rebound)), None);
        let local = request(
            "POST",
            "/v1/chat/completions",
            &[("host", "127.0.0.1:8317")],
        );
        assert_eq!(status(&keyless.judge(&local)), None);
        assert_eq!(
            status(&keyless.judge(&request("GET", "/healthz", &[]))),
            None
        );

        for content_type in [
            "text/plain",
            "text/plain;charset=UTF-8",
            "Application/X-WWW-Form-Urlencoded",
            "multipart/form-data; boundary=x",
        ] {
            let simple = request(
                "POST",
                "/v1/messages",
                &[("host", "localhost:8317"), ("content-type", content_type)],
            );
            let Verdict::Refuse(response) = keyless.judge(&simple) else {
                panic!("{content_type} passed");
            };
            assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
            assert_eq!(status(&keyed.judge(&simple)), None, "{content_type}");
        }
        let json = request(
            "POST",
            "/v1/messages",
            &[("content-type", "application/json; charset=utf-8")],
        );
        assert_eq!(status(&keyless.judge(&json)), None);
    }
}
