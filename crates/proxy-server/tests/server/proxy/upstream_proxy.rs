//! The configured upstream proxy: what goes through it, in which form, with which
//! credentials, and what the client sees when the way through fails.

use std::net::SocketAddr;
use std::sync::Arc;

use credential_pool::{Credential, Flavor};
use credential_pool::{Pool, PoolConfig};
use fake_net::{Destination, HttpProxy, Socks5Proxy, TlsFront};
use fake_qwen::FakeQwen;
use proxy_server::{BuildError, Proxy, ServerConfig};

use crate::support::{call, chat_body, chat_request, credential, proxy_with, qwen_models};

/// A pool of one Qwen credential at `base_url` with a token the fake accepts.
fn one_account(fake: &FakeQwen, base_url: &str) -> Arc<Pool<Credential>> {
    let pool = Arc::new(Pool::new(PoolConfig::default()));
    let token = fake.mint_tokens().access_token;
    let account = credential("user@example.com", Flavor::QwenOAuth, base_url, &token);
    pool.upsert("qwen:0", Arc::new(account), qwen_models(), None);
    pool
}

/// The fake's `127.0.0.1:PORT`.
fn fake_addr(fake: &FakeQwen) -> SocketAddr {
    fake.resource_url().parse().expect("an address")
}

fn through(proxy_url: String, pool: &Arc<Pool<Credential>>) -> Proxy {
    let config = ServerConfig {
        upstream_proxy_url: Some(proxy_url),
        ..ServerConfig::default()
    };
    proxy_with(config, pool)
}

#[tokio::test]
async fn plain_http_upstreams_are_forwarded_by_an_http_proxy_with_its_credentials() {
    let fake = FakeQwen::start().await;
    let http_proxy = HttpProxy::start().await;
    let pool = one_account(&fake, &fake.chat_base_url());
    let proxy_url = http_proxy
        .url()
        .replace("http://", "http://cliproxy:s%40cret@");
    let proxy = through(proxy_url, &pool);

    for _ in 0..2 {
        let answer = call(&proxy, chat_request(&chat_body(false))).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
    }

    let expected_line = format!("POST {}/chat/completions HTTP/1.1", fake.chat_base_url());
    let requests = http_proxy.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    for request in requests {
        assert_eq!(request.request_line, expected_line);
        // base64("cliproxy:s@cret"): the URL's percent-encoding is undone.
        assert_eq!(
            request.proxy_authorization.as_deref(),
            Some("Basic Y2xpcHJveHk6c0BjcmV0")
        );
    }
    assert_eq!(fake.chat_requests().len(), 2);
}

#[tokio::test]
async fn https_upstreams_are_tunnelled_and_their_certificate_is_checked() {
    let fake = FakeQwen::start().await;
    let front = TlsFront::start(fake_addr(&fake)).await;
    let http_proxy = HttpProxy::start().await;
    let base_url = format!("https://localhost:{}/v1", front.port());
    let pool = one_account(&fake, &base_url);
    let proxy_url = http_proxy
        .url()
        .replace("http://", "http://cliproxy:secret@");
    let proxy = through(proxy_url, &pool);

    let answer = call(&proxy, chat_request(&chat_body(false))).await;

    // The front's CA is not in this machine's trust store, so the tunnel is opened but the
    // TLS handshake through it must fail, and nothing reaches the upstream.
    let message = answer.error(502, "upstream_unreachable");
    assert!(message.contains("certificate"), "{message}");
    assert_eq!(
        http_proxy.requests(),
        [fake_net::ProxiedRequest {
            request_line: format!("CONNECT localhost:{} HTTP/1.1", front.port()),
            proxy_authorization: Some("Basic Y2xpcHJveHk6c2VjcmV0".to_owned()),
        }]
    );
    assert!(fake.chat_requests().is_empty());
}

#[tokio::test]
async fn socks5_resolves_names_here_and_socks5h_leaves_them_to_the_proxy() {
    let fake = FakeQwen::start().await;
    let port = fake_addr(&fake).port();

    let socks = Socks5Proxy::start().await;
    let pool = one_account(&fake, &fake.chat_base_url());
    let answer = call(
        &through(socks.url("socks5"), &pool),
        chat_request(&chat_body(true)),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        socks.destinations(),
        [Destination::Address(fake_addr(&fake))]
    );

    let socks = Socks5Proxy::start_with_password("cliproxy", "secret").await;
    let pool = one_account(&fake, &format!("http://localhost:{port}/v1"));
    let proxy_url = socks.url("socks5h").replace("://", "://cliproxy:secret@");
    let answer = call(&through(proxy_url, &pool), chat_request(&chat_body(false))).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        socks.destinations(),
        [Destination::Name("localhost".to_owned(), port)]
    );
    assert_eq!(fake.chat_requests().len(), 2);
}

/// Without a port in the upstream URL, the proxy is asked for the scheme's port (80 for
/// `http://`), not 443.
#[tokio::test]
async fn socks_destinations_carry_the_schemes_default_port() {
    let fake = FakeQwen::start().await;
    let socks = Socks5Proxy::start().await;
    let pool = one_account(&fake, "http://localhost/v1");
    call(
        &through(socks.url("socks5h"), &pool),
        chat_request(&chat_body(false)),
    )
    .await;
    assert_eq!(
        socks.destinations(),
        [Destination::Name("localhost".to_owned(), 80)]
    );
}

#[tokio::test]
async fn a_socks5_proxy_that_refuses_the_password_is_a_502_naming_the_proxy() {
    let fake = FakeQwen::start().await;
    let socks = Socks5Proxy::start_with_password("cliproxy", "secret").await;
    let pool = one_account(&fake, &fake.chat_base_url());
    let proxy_url = socks.url("socks5").replace("://", "://cliproxy:wrong@");

    let answer = call(&through(proxy_url, &pool), chat_request(&chat_body(false))).await;

    let message = answer.error(502, "upstream_unreachable");
    assert!(message.to_lowercase().contains("socks"), "{message}");
    assert!(!message.contains("wrong"), "the password leaked: {message}");
    assert!(socks.destinations().is_empty());
    assert!(fake.chat_requests().is_empty());
}

#[test]
fn unusable_proxy_urls_are_refused_at_start_without_showing_them() {
    let pool = Arc::new(Pool::new(PoolConfig::default()));
    for (url, reason) in [
        ("ftp://proxy.example:21", "`ftp://` is not supported"),
        ("proxy.example:3128", "no scheme"),
        ("http://", "not a URL"),
        ("http://user:hunter2@/", "not a URL"),
    ] {
        let config = ServerConfig {
            upstream_proxy_url: Some(url.to_owned()),
            ..ServerConfig::default()
        };
        let Err(error @ BuildError::UpstreamProxy { .. }) = Proxy::new(config, Arc::clone(&pool))
        else {
            panic!("{url} was accepted");
        };
        let message = error.to_string();
        assert!(message.contains(reason), "{url}: {message}");
        assert!(!message.contains("hunter2"), "{message}");
    }
}
