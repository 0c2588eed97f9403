//! Behaviour that needs real sockets: client disconnects, broken and idle upstream streams
//! reaching the client as broken, graceful shutdown, slow half-open clients, and the bind
//! check in `serve`.

use std::time::Duration;

use fake_qwen::ChatStep;
use proxy_server::{ConfigError, ServeError, ServerConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{Server, chat_body, client, proxy, proxy_with, qwen_pool, within};

/// Starts a streamed chat request and reads until the first content chunk arrived.
async fn start_stream(server: &Server) -> (reqwest::Response, String) {
    let mut response = within(
        client()
            .post(server.url("/v1/chat/completions"))
            .json(&chat_body(true))
            .send(),
    )
    .await
    .expect("an answer");
    assert_eq!(response.status(), 200);
    let mut seen = String::new();
    while !seen.contains("part0") {
        let chunk = within(response.chunk())
            .await
            .expect("an intact stream")
            .expect("more of the stream");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    (response, seen)
}

/// Reads the rest of a stream: `Ok(text)` at a clean end, `Err` when it broke.
async fn rest_of(response: &mut reqwest::Response) -> Result<String, reqwest::Error> {
    let mut text = String::new();
    while let Some(chunk) = within(response.chunk()).await? {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    Ok(text)
}

#[tokio::test]
async fn a_client_disconnect_cancels_the_upstream_request() {
    let (fake, pool, _) = qwen_pool(1).await;
    fake.set_chat_step(ChatStep::HoldLast);
    let server = Server::start(proxy(&pool)).await;
    let (response, seen) = start_stream(&server).await;
    assert!(!seen.contains("[DONE]"));
    drop(response);
    within(fake.wait_for_cancelled_streams(1)).await;
    server.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn a_broken_upstream_stream_reaches_the_client_broken() {
    let (fake, pool, _) = qwen_pool(1).await;
    fake.set_chat_step(ChatStep::CutAfter(2));
    let server = Server::start(proxy(&pool)).await;
    let (mut response, _) = start_stream(&server).await;
    let rest = rest_of(&mut response).await;
    assert!(rest.is_err(), "the stream ended cleanly: {rest:?}");
    server.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn an_idle_upstream_stream_is_aborted() {
    let (fake, pool, _) = qwen_pool(1).await;
    fake.set_chat_step(ChatStep::HoldLast);
    let config = ServerConfig {
        upstream_idle_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let server = Server::start(proxy_with(config, &pool)).await;
    let (mut response, _) = start_stream(&server).await;
    let rest = rest_of(&mut response).await;
    assert!(rest.is_err(), "the stream ended cleanly: {rest:?}");
    // The proxy let go of the upstream stream as well.
    within(fake.wait_for_cancelled_streams(1)).await;
    server.stop().await.expect("a clean stop");
}

/// Waits until the server no longer accepts connections (its listener is closed).
async fn until_refused(server: &Server) {
    within(async {
        while TcpStream::connect(server.addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test]
async fn graceful_shutdown_lets_an_in_flight_stream_finish() {
    let (fake, pool, _) = qwen_pool(1).await;
    fake.set_chat_step(ChatStep::HoldLast);
    let mut server = Server::start(proxy(&pool)).await;
    let (mut response, _) = start_stream(&server).await;

    server.trigger_shutdown();
    until_refused(&server).await;
    assert!(!server.is_finished(), "serve waits for the open stream");

    fake.release_held_streams(1);
    let rest = rest_of(&mut response).await.expect("the stream completes");
    assert!(rest.ends_with("data: [DONE]\n\n"), "{rest}");
    server.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn streams_still_open_after_the_grace_period_are_closed() {
    let (fake, pool, _) = qwen_pool(1).await;
    fake.set_chat_step(ChatStep::HoldLast);
    let config = ServerConfig {
        shutdown_grace: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    let server = Server::start(proxy_with(config, &pool)).await;
    let (mut response, _) = start_stream(&server).await;
    server
        .stop()
        .await
        .expect("serve returns after the grace period");
    assert!(rest_of(&mut response).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_half_open_connections_neither_block_others_nor_stay_open() {
    let (_fake, pool, _) = qwen_pool(1).await;
    let config = ServerConfig {
        header_read_timeout: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    let server = Server::start(proxy_with(config, &pool)).await;

    let mut slow = Vec::new();
    for i in 0..200 {
        let mut socket = within(TcpStream::connect(server.addr))
            .await
            .expect("a connection");
        if i % 10 != 0 {
            // A partial request line, then nothing; every tenth sends nothing at all.
            within(socket.write_all(b"GET /v1/mod"))
                .await
                .expect("a write");
        }
        slow.push(socket);
    }

    let answer = within(client().get(server.url("/v1/models")).send())
        .await
        .expect("an answer");
    assert_eq!(answer.status(), 200);

    for mut socket in slow {
        let mut rest = Vec::new();
        // EOF (possibly after a 408) or a reset: either way the server closed it.
        let _ = within(socket.read_to_end(&mut rest)).await;
    }
    server.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn serve_refuses_an_open_address_without_keys() {
    let (_fake, pool, _) = qwen_pool(1).await;
    let listener = TcpListener::bind(("0.0.0.0", 0)).await.expect("a port");
    let refused = proxy(&pool)
        .serve(listener, std::future::pending())
        .await
        .expect_err("no keys on 0.0.0.0");
    assert!(matches!(
        refused,
        ServeError::Config(ConfigError::OpenWithoutKeys { .. })
    ));
    assert!(refused.to_string().contains("api-keys = ["));
}

/// Reads a stream to its end or break, returning what arrived and whether it broke.
async fn everything_of(response: &mut reqwest::Response) -> (String, bool) {
    let mut text = String::new();
    loop {
        match within(response.chunk()).await {
            Ok(Some(chunk)) => text.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(None) => return (text, false),
            Err(_) => return (text, true),
        }
    }
}

/// The translated routes' streams whose upstream breaks off or times out end as the APIs end
/// a failed stream: their error event (`error`; `error` and `response.failed`), then the end
/// of the body. A passed-through chat stream is aborted instead (chat completions have no
/// error event).
#[tokio::test]
async fn a_translated_stream_that_fails_ends_with_its_error_event_and_a_clean_end() {
    for (step, timeout, reason) in [
        (ChatStep::CutAfter(2), Duration::from_secs(30), "broke off"),
        (
            ChatStep::HoldLast,
            Duration::from_millis(300),
            "sent nothing for",
        ),
    ] {
        let (fake, pool, _) = qwen_pool(1).await;
        fake.set_chat_step(step);
        let config = ServerConfig {
            upstream_idle_timeout: timeout,
            ..ServerConfig::default()
        };
        let server = Server::start(proxy_with(config, &pool)).await;
        let requests = [
            (
                "/v1/messages",
                serde_json::json!({
                    "model": crate::support::MODEL, "max_tokens": 100, "stream": true,
                    "messages": [{"role": "user", "content": "hello"}],
                }),
                "error",
            ),
            (
                "/v1/responses",
                serde_json::json!({"model": crate::support::MODEL, "stream": true, "input": "hello"}),
                "response.failed",
            ),
        ];
        for (path, body, closing_event) in requests {
            let mut response = within(client().post(server.url(path)).json(&body).send())
                .await
                .expect("an answer");
            assert_eq!(response.status(), 200, "{path}");
            let (text, broke) = everything_of(&mut response).await;
            assert!(!broke, "{path}: the body broke off: {text}");
            let last = text.trim_end().rsplit("\n\n").next().unwrap_or_default();
            assert!(
                last.starts_with(&format!("event: {closing_event}\n")) && last.contains(reason),
                "{path}: the stream does not end with {closing_event} ({reason}): {text}"
            );
            assert!(!text.contains("message_stop") && !text.contains("response.completed"));
        }
        server.stop().await.expect("a clean stop");
    }
}

/// The error event reaches a client that had not read its stream when the upstream failed.
/// hyper drops what it holds unwritten when a body ends with an error, so a body that ended
/// with one after its error event would lose the event whenever the client's socket was full
/// at that moment, as here: small socket buffers, a long answer nobody reads, then the
/// upstream falls silent for the idle timeout.
#[tokio::test]
async fn the_error_event_reaches_a_client_that_was_not_reading_when_the_upstream_failed() {
    let (fake, pool, _) = qwen_pool(1).await;
    fake.set_chat_step(ChatStep::HoldLast);
    let config = ServerConfig {
        upstream_idle_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let server = Server::start_with_send_buffer(proxy_with(config, &pool), 4096).await;
    // The model quotes a 192 KiB tool result, far more than the socket buffers hold.
    let result = "x".repeat(192 * 1024);
    let body = serde_json::json!({
        "model": crate::support::MODEL, "max_tokens": 100, "stream": true,
        "messages": [
            {"role": "user", "content": "read it"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "t1", "name": "read", "input": {}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": result},
            ]},
        ],
    })
    .to_string();
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut stream = within(socket.connect(server.addr))
        .await
        .expect("a connection");
    let request = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    within(stream.write_all(request.as_bytes()))
        .await
        .expect("the request is sent");
    // The proxy gave up on the silent upstream and is done with the answer.
    within(fake.wait_for_cancelled_streams(1)).await;
    let mut answer = Vec::new();
    let read = within(stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    let tail = &text[text.len().saturating_sub(600)..];
    assert!(
        read.is_ok(),
        "the connection was reset; it ended with: {tail}"
    );
    assert!(
        tail.contains("event: error") && tail.contains("sent nothing for"),
        "no error event at the end: {tail}"
    );
    assert!(tail.ends_with("\r\n0\r\n\r\n"), "no clean end: {tail}");
    server.stop().await.expect("a clean stop");
}
