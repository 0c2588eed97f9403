//! The HTTP client of upstream requests: hyper-util's pooled client, HTTP/1.1 or HTTP/2 (by
//! ALPN) over rustls with the platform's trust store, connecting directly or through a proxy.
//!
//! The proxy is the configured `proxy-url` for every request, or else the standard
//! `HTTP_PROXY` / `HTTPS_PROXY` / `ALL_PROXY` / `NO_PROXY` variables:
//!
//! | proxy        | `https://` upstream                      | `http://` upstream                          |
//! |--------------|------------------------------------------|---------------------------------------------|
//! | `http(s)://` | `CONNECT` tunnel, then TLS to the upstream | absolute-form request to the proxy, with `Proxy-Authorization` |
//! | `socks5://`  | SOCKS5, names resolved here, then TLS     | SOCKS5, names resolved here                 |
//! | `socks5h://` | SOCKS5, names resolved by the proxy, then TLS | SOCKS5, names resolved by the proxy     |
//!
//! Connecting is off the hot path (connections are pooled and kept alive); sending a request
//! is one `hyper_util` call, with no URL re-parsing, redirect or retry layers in between.

use std::error::Error as StdError;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Scheme;
use http::{HeaderValue, Request, Uri};
use http_body_util::Full;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::proxy::{SocksV5, Tunnel};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower::Service;

use crate::error::BuildError;
use credential_pool::BoxFuture;

/// Idle time before TCP keep-alive probes, and the time between them.
const TCP_KEEPALIVE: Duration = Duration::from_secs(15);
/// How long an unused pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

type BoxError = Box<dyn StdError + Send + Sync>;

/// Sends upstream requests; cheap to clone (the pool is shared).
#[derive(Clone)]
pub(crate) struct HttpClient {
    client: Client<Connector, Full<Bytes>>,
    proxies: Arc<Proxies>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client that connects through `proxy_url` when given, else as the environment's proxy
    /// variables say (unless `proxy_from_env` is off), giving each new connection `connect_timeout` to be ready (TCP, proxy
    /// handshake and TLS together).
    ///
    /// # Errors
    ///
    /// [`BuildError::UpstreamProxy`] for a proxy URL that is not `http`, `https`, `socks5` or
    /// `socks5h` with a host; [`BuildError::Tls`] when the platform's trust store cannot be
    /// used.
    pub(crate) fn new(
        proxy_url: Option<&str>,
        proxy_from_env: bool,
        connect_timeout: Duration,
    ) -> Result<Self, BuildError> {
        let proxies = Arc::new(match proxy_url {
            Some(url) => Proxies::configured(url)?,
            None if proxy_from_env => Proxies::from_env(),
            None => Proxies::none(),
        });
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        // A stream can go quiet for minutes; keep-alive probes find a connection that died
        // silently (NAT, load balancers) instead of leaving it to the idle timeout.
        http.set_keepalive(Some(TCP_KEEPALIVE));
        http.set_keepalive_interval(Some(TCP_KEEPALIVE));
        http.set_keepalive_retries(Some(3));
        let (tls, tls_to_proxy) = tls_configs()?;
        let connector = Connector(Arc::new(Connecting {
            http,
            tls,
            tls_to_proxy,
            proxies: Arc::clone(&proxies),
            timeout: connect_timeout,
        }));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        Ok(Self { client, proxies })
    }

    /// Sends `request`; a plain-HTTP request through an HTTP proxy gets the proxy's
    /// credentials.
    pub(crate) fn send(&self, mut request: Request<Full<Bytes>>) -> ResponseFuture {
        if let Some(credentials) = self.proxies.forwarding_credentials(request.uri()) {
            request
                .headers_mut()
                .insert(http::header::PROXY_AUTHORIZATION, credentials);
        }
        self.client.request(request)
    }
}

/// Which proxy, if any, carries a connection: the configured one for all, or the
/// environment's (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`).
struct Proxies(Matcher);

impl Proxies {
    fn configured(url: &str) -> Result<Self, BuildError> {
        let uri: Uri = url.parse().map_err(|_| BuildError::UpstreamProxy {
            reason: "it is not a URL".to_owned(),
        })?;
        match uri.scheme_str() {
            Some("http" | "https" | "socks5" | "socks5h") => {}
            Some(other) => {
                return Err(BuildError::UpstreamProxy {
                    reason: format!(
                        "`{other}://` is not supported; use http://, https://, socks5:// or socks5h://"
                    ),
                });
            }
            None => {
                return Err(BuildError::UpstreamProxy {
                    reason: "it has no scheme such as http://".to_owned(),
                });
            }
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(BuildError::UpstreamProxy {
                reason: "it has no host".to_owned(),
            });
        }
        Ok(Self(Matcher::builder().all(url.to_owned()).build()))
    }

    fn from_env() -> Self {
        Self(Matcher::from_env())
    }

    fn none() -> Self {
        Self(Matcher::builder().build())
    }

    fn intercept(&self, dst: &Uri) -> Option<Intercept> {
        self.0.intercept(dst)
    }

    /// `Proxy-Authorization` for a request forwarded in absolute form: a plain-HTTP upstream
    /// through an HTTP(S) proxy that has credentials.
    fn forwarding_credentials(&self, dst: &Uri) -> Option<HeaderValue> {
        if dst.scheme() != Some(&Scheme::HTTP) {
            return None;
        }
        let proxy = self.intercept(dst)?;
        if !is_http_proxy(proxy.uri()) {
            return None;
        }
        proxy.basic_auth().cloned()
    }
}

fn is_http_proxy(proxy: &Uri) -> bool {
    matches!(proxy.scheme_str(), Some("http" | "https"))
}

/// rustls client configs that share one verifier of the platform's trust store (loaded once):
/// one offering HTTP/2 and HTTP/1.1 for upstreams, one without ALPN for `https://` proxies.
fn tls_configs() -> Result<(Arc<rustls::ClientConfig>, Arc<rustls::ClientConfig>), BuildError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(
        rustls_platform_verifier::Verifier::new(Arc::clone(&provider)).map_err(BuildError::Tls)?,
    );
    // `dangerous()` is only rustls's door to a custom verifier: this one verifies fully.
    let mut upstream = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(BuildError::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let to_proxy = Arc::new(upstream.clone());
    upstream.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((Arc::new(upstream), to_proxy))
}

/// Opens upstream connections, through the proxy when one applies. The pool clones it for
/// every request, so it is one `Arc`.
#[derive(Clone)]
struct Connector(Arc<Connecting>);

/// What opening a connection needs.
struct Connecting {
    http: HttpConnector,
    /// For upstreams: offers HTTP/2 and HTTP/1.1.
    tls: Arc<rustls::ClientConfig>,
    /// For the connection to an `https://` proxy: no ALPN (it speaks HTTP/1.1 `CONNECT`).
    tls_to_proxy: Arc<rustls::ClientConfig>,
    proxies: Arc<Proxies>,
    /// For the whole set-up of a connection.
    timeout: Duration,
}

impl Service<Uri> for Connector {
    type Response = Conn;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Conn, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let connecting = Arc::clone(&self.0);
        Box::pin(async move {
            let timeout = connecting.timeout;
            tokio::time::timeout(timeout, connecting.connect(dst))
                .await
                .map_err(|_| format!("no connection within {} s", timeout.as_secs()))?
        })
    }
}

impl Connecting {
    async fn connect(&self, dst: Uri) -> Result<Conn, BoxError> {
        let Some(proxy) = self.proxies.intercept(&dst) else {
            let io = HttpsConnector::from((self.http.clone(), Arc::clone(&self.tls)))
                .call(dst)
                .await?;
            return Ok(Conn::new(io, false));
        };
        let proxy_uri = proxy.uri().clone();
        match proxy_uri.scheme_str() {
            Some(scheme @ ("socks5" | "socks5h")) => {
                let mut socks = SocksV5::new(with_port(&proxy_uri, SOCKS_PORT)?, self.http.clone())
                    .local_dns(false);
                if let Some((user, password)) = proxy.raw_auth() {
                    socks = socks.with_auth(user.to_owned(), password.to_owned());
                }
                let through = ThroughSocks {
                    socks,
                    resolve_here: scheme == "socks5",
                };
                let io = HttpsConnector::from((through, Arc::clone(&self.tls)))
                    .call(dst)
                    .await?;
                Ok(Conn::new(io, false))
            }
            Some(other) if !is_http_proxy(&proxy_uri) => Err(format!(
                "the proxy scheme `{other}://` is not supported; use http://, https://, \
                 socks5:// or socks5h://"
            )
            .into()),
            _ if dst.scheme() == Some(&Scheme::HTTPS) => {
                let to_proxy =
                    HttpsConnector::from((self.http.clone(), Arc::clone(&self.tls_to_proxy)));
                let mut tunnel = Tunnel::new(proxy_uri, to_proxy);
                if let Some(credentials) = proxy.basic_auth() {
                    tunnel = tunnel.with_auth(credentials.clone());
                }
                let io = HttpsConnector::from((tunnel, Arc::clone(&self.tls)))
                    .call(dst)
                    .await?;
                Ok(Conn::new(io, false))
            }
            _ => {
                let io = HttpsConnector::from((self.http.clone(), Arc::clone(&self.tls_to_proxy)))
                    .call(proxy_uri)
                    .await?;
                Ok(Conn::new(io, true))
            }
        }
    }
}

/// The port of a SOCKS proxy given without one (curl's and reqwest's default too).
const SOCKS_PORT: u16 = 1080;

/// `uri` with `port` when it names none.
fn with_port(uri: &Uri, port: u16) -> Result<Uri, BoxError> {
    if uri.port().is_some() {
        return Ok(uri.clone());
    }
    let host = uri.host().ok_or("the proxy URL has no host")?;
    let scheme = uri.scheme_str().unwrap_or("http");
    Ok(format!("{scheme}://{host}:{port}").parse()?)
}

/// Connects to an upstream through a SOCKS5 proxy. The destination always carries its port
/// (hyper-util's `SocksV5` would take 443 for a URL without one, an `http://` one included),
/// and for `socks5://` its name is resolved here, without blocking the runtime, so that the
/// proxy gets an address; for `socks5h://` the proxy gets the name.
#[derive(Clone)]
struct ThroughSocks {
    socks: SocksV5<HttpConnector>,
    resolve_here: bool,
}

impl Service<Uri> for ThroughSocks {
    type Response = <SocksV5<HttpConnector> as Service<Uri>>::Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let mut socks = self.socks.clone();
        let resolve_here = self.resolve_here;
        Box::pin(async move {
            let host = dst.host().ok_or("the upstream URL has no host")?;
            let default_port = if dst.scheme() == Some(&Scheme::HTTPS) {
                443
            } else {
                80
            };
            let port = dst.port_u16().unwrap_or(default_port);
            let authority = if resolve_here {
                let name = host.trim_start_matches('[').trim_end_matches(']');
                tokio::net::lookup_host((name, port))
                    .await?
                    .next()
                    .ok_or_else(|| format!("{name} has no address"))?
                    .to_string()
            } else {
                format!("{host}:{port}")
            };
            let scheme = dst.scheme_str().unwrap_or("http");
            let target: Uri = format!("{scheme}://{authority}/").parse()?;
            Ok(socks.call(target).await?)
        })
    }
}

/// What a connection must be for hyper.
trait Io: Read + Write + Connection + Send + Unpin + 'static {}

impl<T: Read + Write + Connection + Send + Unpin + 'static> Io for T {}

/// An upstream connection: TCP, TLS, tunnelled or not.
pub(crate) struct Conn {
    io: Box<dyn Io>,
    /// Sent to an HTTP proxy in absolute form (not tunnelled).
    forwarded: bool,
}

impl Conn {
    fn new(io: impl Io, forwarded: bool) -> Self {
        Self {
            io: Box::new(io),
            forwarded,
        }
    }
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.forwarded)
    }
}

impl Read for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_read(cx, buf)
    }
}

impl Write for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.io).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_without_a_port_gets_the_default_one() {
        let uri = |text: &str| text.parse::<Uri>().expect("a URI");
        assert_eq!(
            with_port(&uri("socks5://proxy.example"), SOCKS_PORT).expect("a URI"),
            uri("socks5://proxy.example:1080")
        );
        assert_eq!(
            with_port(&uri("socks5h://[::1]:9050"), SOCKS_PORT).expect("a URI"),
            uri("socks5h://[::1]:9050")
        );
        assert_eq!(
            with_port(&uri("socks5://[::1]"), SOCKS_PORT).expect("a URI"),
            uri("socks5://[::1]:1080")
        );
    }
}
