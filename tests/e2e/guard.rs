//! `cliproxy serve` against what a stranger can do, end to end: web pages in the user's
//! browser (a foreign `Origin`, a rebound `Host`, a `text/plain` POST), clients that hold
//! resources (a trickled body, hundreds of idle sockets), and what error answers reveal.

use crate::support::Sandbox;
use crate::support::server::{API_KEY, MODEL, Server, guarded};
use fake_qwen::{ChatStep, FakeQwen, RefreshBehaviour};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A chat request body.
fn chat_body() -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": "hello"}]})
}

/// A Messages request body.
fn messages_body() -> Value {
    json!({"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "hello"}]})
}

/// The server's `host:port`.
fn address(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

/// POSTs `body` as JSON to `path`, with `headers` (and the key when `key`).
async fn post(
    server: &Server,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
    key: bool,
) -> reqwest::Response {
    let client = if key {
        server.client()
    } else {
        reqwest::Client::new()
    };
    let mut request = client.post(server.url(path)).json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("the server answers")
}

/// Asserts an OpenAI error with `status` and `code`; returns its message.
async fn openai_error(response: reqwest::Response, status: u16, code: &str) -> String {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], code, "{body}");
    body["error"]["message"]
        .as_str()
        .expect("a message")
        .to_owned()
}

/// Asserts an Anthropic error with `status` and `kind`; returns its message.
async fn anthropic_error(response: reqwest::Response, status: u16, kind: &str) -> String {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], kind, "{body}");
    body["error"]["message"]
        .as_str()
        .expect("a message")
        .to_owned()
}

/// A server without client keys, with one account of `fake`.
async fn keyless_server(sandbox: &Sandbox, fake: &FakeQwen) -> Server {
    Server::builder(sandbox)
        .accounts(fake, &["dev@example.com"])
        .without_keys()
        .start()
        .await
}

#[tokio::test]
async fn a_rebound_host_is_refused_without_keys_and_served_with_them() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let keyless = keyless_server(&sandbox, &fake).await;
    let port = address(&keyless).rsplit_once(':').unwrap().1.to_owned();
    let rebound = format!("attacker.example:{port}");

    let refused = post(
        &keyless,
        "/v1/chat/completions",
        &chat_body(),
        &[("host", &rebound)],
        false,
    )
    .await;
    let message = openai_error(refused, 403, "host_not_allowed").await;
    assert!(message.contains("attacker.example"), "{message}");
    assert!(
        message.contains("api-keys"),
        "says what to configure: {message}"
    );
    let refused = post(
        &keyless,
        "/v1/messages",
        &messages_body(),
        &[("host", &rebound)],
        false,
    )
    .await;
    anthropic_error(refused, 403, "permission_error").await;
    assert!(
        fake.chat_requests().is_empty(),
        "nothing reached the upstream"
    );

    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let served = post(
            &keyless,
            "/v1/chat/completions",
            &chat_body(),
            &[("host", &host)],
            false,
        )
        .await;
        assert_eq!(served.status(), 200, "{host}");
    }

    let keyed = Server::start(&sandbox, "").await;
    let served = post(
        &keyed,
        "/v1/chat/completions",
        &chat_body(),
        &[("host", "proxy.internal.example:8317")],
        true,
    )
    .await;
    assert_eq!(served.status(), 200, "with keys, any host name is fine");
}

#[tokio::test]
async fn a_foreign_origin_is_refused_and_an_allowed_one_gets_cors() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let app = "http://localhost:5173";
    let server = Server::builder(&sandbox)
        .accounts(&fake, &["dev@example.com"])
        .config(&format!("allowed-origins = [\"{app}\"]"))
        .start()
        .await;
    let evil = [("origin", "https://evil.example")];

    let refused = post(&server, "/v1/chat/completions", &chat_body(), &evil, true).await;
    assert!(
        !refused
            .headers()
            .contains_key("access-control-allow-origin")
    );
    let message = openai_error(refused, 403, "origin_not_allowed").await;
    assert!(message.contains("allowed-origins"), "{message}");
    let refused = post(&server, "/v1/messages", &messages_body(), &evil, true).await;
    anthropic_error(refused, 403, "permission_error").await;
    assert!(
        fake.chat_requests().is_empty(),
        "nothing reached the upstream"
    );

    let client = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, server.url("/v1/chat/completions"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let answered = preflight("http://localhost:5173").await.unwrap();
    assert_eq!(answered.status(), 204);
    let headers = answered.headers();
    assert_eq!(headers["access-control-allow-origin"], app);
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    assert_eq!(
        headers["access-control-allow-headers"],
        "authorization, content-type"
    );
    let refused = preflight("https://evil.example").await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(
        !refused
            .headers()
            .contains_key("access-control-allow-origin")
    );

    let allowed = post(
        &server,
        "/v1/chat/completions",
        &chat_body(),
        &[("origin", app)],
        true,
    )
    .await;
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.headers()["access-control-allow-origin"], app);
    assert!(
        allowed.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("x-request-id")
    );

    let without_origin = post(&server, "/v1/chat/completions", &chat_body(), &[], true).await;
    assert_eq!(
        without_origin.status(),
        200,
        "SDKs and agents send no Origin"
    );
    assert!(
        !without_origin
            .headers()
            .contains_key("access-control-allow-origin")
    );
}

#[tokio::test]
async fn a_text_plain_post_is_refused_without_keys_only() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let keyless = keyless_server(&sandbox, &fake).await;
    let send = |server: &Server, key: bool, content_type: &'static str| {
        let client = if key {
            server.client()
        } else {
            reqwest::Client::new()
        };
        client
            .post(server.url("/v1/chat/completions"))
            .header("content-type", content_type)
            .body(chat_body().to_string())
            .send()
    };

    for content_type in [
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let refused = send(&keyless, false, content_type).await.unwrap();
        let message = openai_error(refused, 415, "unsupported_content_type").await;
        assert!(
            message.contains("Content-Type: application/json"),
            "names the header to send: {message}"
        );
    }
    assert!(
        fake.chat_requests().is_empty(),
        "nothing reached the upstream"
    );
    let json = send(&keyless, false, "application/json").await.unwrap();
    assert_eq!(json.status(), 200);

    let keyed = Server::start(&sandbox, "").await;
    let plain = send(&keyed, true, "text/plain").await.unwrap();
    assert_eq!(
        plain.status(),
        200,
        "with keys, the content type is left alone"
    );
}

/// The client sends its headers and then its body a byte at a time, on and on: every read
/// brings something, so only a deadline for the whole body ends it.
#[tokio::test]
async fn a_trickled_body_gets_408_and_its_connection_closes() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let server = Server::builder(&sandbox)
        .accounts(&fake, &["dev@example.com"])
        .config("body-read-timeout = \"1s\"")
        .start()
        .await;
    let socket = tokio::net::TcpStream::connect(address(&server))
        .await
        .unwrap();
    let (mut reader, mut writer) = socket.into_split();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{"
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    let trickle = tokio::spawn(async move {
        // Pacing the client, not waiting for the server: it stops when the server hangs up.
        while writer.write_all(b" ").await.is_ok() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });

    let mut answer = Vec::new();
    guarded(
        "the 408 and the end of the connection",
        reader.read_to_end(&mut answer),
    )
    .await
    .expect("the server closes the connection cleanly");
    trickle.abort();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(answer.contains("body-read-timeout"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(fake.chat_requests().is_empty());
}

/// Open file descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the server's /proc entry")
        .count()
}

#[tokio::test]
async fn idle_sockets_past_max_connections_wait_outside_the_process() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    // Idle connections would otherwise be closed after 30 s, perhaps before the count.
    let mut server = Server::builder(&sandbox)
        .accounts(&fake, &["dev@example.com"])
        .config("max-connections = 64\nheader-read-timeout = \"10m\"")
        .start()
        .await;
    let before = open_fds(server.pid());

    let mut idle = Vec::new();
    for _ in 0..400 {
        idle.push(
            tokio::net::TcpStream::connect(address(&server))
                .await
                .unwrap(),
        );
    }
    server
        .wait_for_log("connection limit reached (max-connections = 64)")
        .await;
    let during = open_fds(server.pid());
    assert!(
        during < 110,
        "400 idle sockets against a cap of 64 left {during} open descriptors ({before} before)"
    );

    // Once they close, the server accepts again (the queued ones first, which are closed too).
    drop(idle);
    let response = server.chat(MODEL, false).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn client_errors_name_no_account_but_the_request_id_the_log_has() {
    let email = "private.person@example.com";
    let fake = FakeQwen::start().await;
    fake.set_refresh(RefreshBehaviour::ServerError(503));
    let sandbox = Sandbox::new(&fake);
    let mut server = Server::with_accounts(&sandbox, &fake, &[email]).await;
    let tokens = server.account(email).tokens.clone();

    fake.set_chat_step(ChatStep::ServerError(500));
    let failed = server.chat(MODEL, false).await;
    let id = failed.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let message = openai_error(failed, 502, "upstream_error").await;
    assert!(!message.contains(email), "{message}");
    assert!(message.contains(&id), "{message}");
    assert!(
        message.contains("retry"),
        "still says what to do: {message}"
    );
    let logged = server.wait_for_log(&id).await;
    assert!(
        logged.contains(email),
        "the log names the account: {logged}"
    );
    assert!(logged.contains("WARN"), "{logged}");

    // A refused token whose refresh fails: the refresh's detail stays in the log too.
    fake.set_chat_step(ChatStep::Answer);
    fake.expire_access_token(&tokens.access_token);
    let failed = post(&server, "/v1/messages", &messages_body(), &[], true).await;
    let id = failed.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let message = anthropic_error(failed, 502, "api_error").await;
    assert!(!message.contains(email), "{message}");
    let auth_dir = sandbox.auth_dir().display().to_string();
    assert!(
        !message.contains(&auth_dir),
        "no token-store detail: {message}"
    );
    assert!(message.contains(&id), "{message}");
    assert!(message.contains("cliproxy login qwen"), "{message}");
    let logged = server.wait_for_log(&id).await;
    assert!(logged.contains(email), "{logged}");
}
