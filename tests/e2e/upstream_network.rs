//! The network between `cliproxy serve` and an upstream, end to end: HTTPS (HTTP/2 when the
//! upstream offers it) with a CA the user trusts through `SSL_CERT_FILE`, and the
//! environment's proxy variables.

use crate::support::Sandbox;
use crate::support::server::Server;
use fake_net::{HttpProxy, TlsFront};
use fake_qwen::FakeQwen;

const MODEL: &str = "coder-model";
const UPSTREAM_KEY: &str = "sk-upstream-test";

/// An `[[openai-compat]]` entry for `base_url` serving [`MODEL`] with [`UPSTREAM_KEY`].
fn upstream_entry(base_url: &str) -> String {
    format!(
        "[[openai-compat]]\nname = \"tls\"\nbase-url = \"{base_url}\"\napi-keys = [\"{UPSTREAM_KEY}\"]\nmodels = [\"{MODEL}\"]\n"
    )
}

/// The fake behind a TLS front, and the front's CA written to a PEM file in the sandbox.
async fn tls_upstream(sandbox: &Sandbox) -> (FakeQwen, TlsFront, String) {
    let fake = FakeQwen::start().await;
    fake.add_api_key(UPSTREAM_KEY);
    let backend = fake.resource_url().parse().expect("the fake's address");
    let front = TlsFront::start(backend).await;
    let ca = sandbox.home.path().join("ca.pem");
    std::fs::write(&ca, front.ca_pem()).expect("write the CA");
    (fake, front, ca.to_str().expect("a UTF-8 path").to_owned())
}

#[tokio::test]
async fn an_https_upstream_signed_by_a_ca_in_ssl_cert_file_is_served() {
    let sandbox = Sandbox::new(&FakeQwen::start().await);
    let (fake, front, ca) = tls_upstream(&sandbox).await;
    let config = upstream_entry(&format!("https://localhost:{}/v1", front.port()));

    let server = Server::builder(&sandbox)
        .config(&config)
        .env("SSL_CERT_FILE", &ca)
        .start()
        .await;
    let answer = server.chat(MODEL, false).await;
    assert_eq!(
        answer.status(),
        200,
        "{}",
        answer.text().await.unwrap_or_default()
    );
    let streamed = server.chat(MODEL, true).await;
    assert_eq!(streamed.status(), 200);
    let events = streamed.text().await.expect("a whole stream");
    assert!(events.trim_end().ends_with("data: [DONE]"), "{events}");
    assert_eq!(fake.chat_requests().len(), 2);
    // Both went over one pooled connection, in HTTP/2 as the TLS handshake agreed.
    assert_eq!(front.protocols(), ["h2"]);
}

#[tokio::test]
async fn https_proxy_from_the_environment_tunnels_unless_no_proxy_names_the_host() {
    let sandbox = Sandbox::new(&FakeQwen::start().await);
    let (fake, front, ca) = tls_upstream(&sandbox).await;
    let http_proxy = HttpProxy::start().await;
    let proxy_url = http_proxy.url();
    let config = upstream_entry(&format!("https://localhost:{}/v1", front.port()));

    let through_proxy = || {
        Server::builder(&sandbox)
            .config(&config)
            .env("SSL_CERT_FILE", &ca)
            .env("HTTPS_PROXY", &proxy_url)
    };
    let server = through_proxy().start().await;
    assert_eq!(server.chat(MODEL, false).await.status(), 200);
    let tunnels: Vec<String> = http_proxy
        .requests()
        .into_iter()
        .map(|request| request.request_line)
        .collect();
    assert_eq!(
        tunnels,
        [format!("CONNECT localhost:{} HTTP/1.1", front.port())]
    );
    drop(server);

    let server = through_proxy()
        .env("NO_PROXY", "example.com,localhost")
        .start()
        .await;
    assert_eq!(server.chat(MODEL, false).await.status(), 200);
    assert_eq!(
        http_proxy.requests().len(),
        1,
        "NO_PROXY bypasses the proxy"
    );
    assert_eq!(fake.chat_requests().len(), 2);
}
