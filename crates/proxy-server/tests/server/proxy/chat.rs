//! Chat completions through one credential: headers and body shape per flavor, pass-through
//! of answers and client errors, streaming delivery and stream endings.

use std::sync::Arc;

use bytes::Bytes;
use credential_pool::Flavor;
use credential_pool::{Models, Pool};
use fake_qwen::{ChatStep, FakeQwen};
use http_body_util::BodyExt as _;
use proxy_server::Proxy;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::support::{
    MODEL, call, chat_body, chat_request, credential, one_api_key, proxy, qwen_pool, within,
};

#[tokio::test]
async fn qwen_requests_carry_qwen_codes_headers_and_body_shape() {
    let (fake, pool, tokens) = qwen_pool(1).await;
    let answer = call(&proxy(&pool), chat_request(&chat_body(false))).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let body = answer.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], "You said: hello");
    assert!(body["usage"]["total_tokens"].is_u64());

    let requests = fake.chat_requests();
    assert_eq!(requests.len(), 1);
    let upstream = &requests[0];
    assert_eq!(upstream.path, "/v1/chat/completions");
    assert_eq!(upstream.bearer(), Some(tokens[0].as_str()));
    let user_agent = upstream.header("user-agent").expect("a User-Agent");
    assert!(user_agent.starts_with("QwenCode/0.14.2 ("), "{user_agent}");
    assert!(user_agent.ends_with(')'), "{user_agent}");
    assert_eq!(upstream.header("x-dashscope-useragent"), Some(user_agent));
    assert_eq!(upstream.header("x-dashscope-authtype"), Some("qwen-oauth"));
    assert_eq!(upstream.header("x-dashscope-cachecontrol"), Some("enable"));
    assert_eq!(upstream.header("content-type"), Some("application/json"));
    assert_eq!(upstream.header("accept"), Some("application/json"));
    assert_eq!(
        upstream.json()["messages"],
        json!([
            { "role": "system", "content": [
                { "type": "text", "text": "You are terse.", "cache_control": { "type": "ephemeral" } }
            ] },
            { "role": "user", "content": "hello" },
        ])
    );
    assert!(upstream.json().get("stream_options").is_none());
}

#[tokio::test]
async fn api_key_requests_pass_the_clients_body_untouched() {
    let fake = FakeQwen::start().await;
    fake.add_api_key("sk-upstream-1");
    let pool = one_api_key("dashscope#1", &fake.chat_base_url(), "sk-upstream-1");
    // Odd spacing and key order must survive byte for byte.
    let raw = r#"{"stream":false,  "model":"any-model","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}"#;
    let request = http::Request::post("/v1/chat/completions")
        .body(http_body_util::Full::new(Bytes::from_static(
            raw.as_bytes(),
        )))
        .expect("a request");
    let answer = call(&proxy(&pool), request).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let upstream = &fake.chat_requests()[0];
    assert_eq!(upstream.body, raw);
    assert_eq!(upstream.bearer(), Some("sk-upstream-1"));
    assert!(upstream.header("x-dashscope-authtype").is_none());
    assert!(
        !upstream
            .header("user-agent")
            .unwrap_or_default()
            .starts_with("QwenCode")
    );
}

#[tokio::test]
async fn other_client_errors_pass_through_as_they_are() {
    let fake = FakeQwen::start().await;
    let token = fake.mint_tokens().access_token;
    let pool = Arc::new(Pool::new(Default::default()));
    let qwen = credential(
        "a@example.com",
        Flavor::QwenOAuth,
        &fake.chat_base_url(),
        &token,
    );
    pool.upsert("qwen:a", Arc::new(qwen), Models::All, None);
    let mut body = chat_body(false);
    body["model"] = "not-a-qwen-model".into();
    let answer = call(&proxy(&pool), chat_request(&body)).await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.json()["error"]["code"], "model_not_found");
    assert!(
        answer.json()["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("not-a-qwen-model"))
    );
    assert_eq!(
        fake.chat_requests().len(),
        1,
        "no failover for the client's mistake"
    );
    assert!(
        pool.statuses(std::time::Instant::now())[0]
            .cooling
            .is_empty()
    );
}

/// Reads frames until the text read so far contains `needle`; returns that text.
async fn read_until<B>(body: &mut B, mut seen: String, needle: &str) -> String
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    while !seen.contains(needle) {
        let frame = within(body.frame())
            .await
            .unwrap_or_else(|| panic!("the stream ended before {needle:?}: {seen}"))
            .expect("an intact stream");
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
    seen
}

#[tokio::test]
async fn a_stream_arrives_incrementally() {
    let (fake, pool, _) = qwen_pool(1).await;
    fake.set_chat_step(ChatStep::HoldLast);
    let proxy: Proxy = proxy(&pool);
    let response = within(proxy.service().oneshot(chat_request(&chat_body(true))))
        .await
        .expect("the service never fails");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream",
        "the upstream's content type"
    );
    let mut body = response.into_body();
    let seen = read_until(&mut body, String::new(), "part0").await;
    // The fake cannot have produced the final events yet: it waits for the release.
    assert!(!seen.contains("[DONE]"), "{seen}");
    assert!(!seen.contains("\"finish_reason\":\"stop\""), "{seen}");

    fake.release_held_streams(1);
    let rest = within(body.collect())
        .await
        .expect("an intact stream")
        .to_bytes();
    let whole = seen + &String::from_utf8_lossy(&rest);
    assert!(whole.ends_with("data: [DONE]\n\n"), "{whole}");
    assert!(whole.contains("\"usage\""), "usage was asked for: {whole}");

    let upstream = fake.chat_requests()[0].json();
    assert_eq!(upstream["stream_options"], json!({ "include_usage": true }));
    assert_eq!(
        fake.chat_requests()[0].header("accept"),
        Some("text/event-stream")
    );
}

#[tokio::test]
async fn a_stream_that_ends_without_done_passes_as_it_is() {
    let (fake, pool, _) = qwen_pool(1).await;
    fake.set_chat_step(ChatStep::EndAfter(2));
    let answer = call(&proxy(&pool), chat_request(&chat_body(true))).await;
    assert_eq!(answer.status, 200);
    let text = answer.text();
    assert!(text.contains("part1"), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
}

/// Streams a chat request through `pool` and returns the error its 200 body ended with.
async fn broken_stream(pool: &Arc<Pool<credential_pool::Credential>>) -> String {
    let response = within(
        proxy(pool)
            .service()
            .oneshot(chat_request(&chat_body(true))),
    )
    .await
    .expect("the service never fails");
    assert_eq!(response.status(), 200);
    within(response.into_body().collect())
        .await
        .expect_err("a broken stream must not end cleanly")
        .to_string()
}

#[tokio::test]
async fn a_broken_upstream_stream_ends_the_body_with_an_error() {
    let (fake, pool, _) = qwen_pool(1).await;
    fake.set_chat_step(ChatStep::CutAfter(2));
    let error = broken_stream(&pool).await;
    assert!(error.contains("broke off"), "{error}");
}

#[tokio::test]
async fn a_non_streaming_answer_that_breaks_off_fails_over() {
    let (fake, pool, tokens) = qwen_pool(2).await;
    fake.script_chat(&tokens[0], vec![ChatStep::CutAfter(1)]);
    let answer = call(&proxy(&pool), chat_request(&chat_body(false))).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body: Value = answer.json();
    assert_eq!(body["object"], "chat.completion");
    let served_by: Vec<_> = fake
        .chat_requests()
        .iter()
        .map(|request| request.bearer().map(str::to_owned))
        .collect();
    assert_eq!(
        served_by,
        [Some(tokens[0].clone()), Some(tokens[1].clone())]
    );
    assert_eq!(body["model"], MODEL);
}

/// An upstream whose answers end with the connection (no length, no chunking): each
/// connection gets `head` and `body` and is closed, which is how such a body can be cut
/// without any transport error.
async fn close_delimited_upstream(head: impl Into<String>, body: impl Into<String>) -> String {
    let (head, body): (String, String) = (head.into(), body.into());
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (head, body) = (head.clone(), body.clone());
            tokio::spawn(async move {
                let mut request = vec![0; 64 * 1024];
                let _ = socket.read(&mut request).await;
                let answer = format!("{head}connection: close\r\n\r\n{body}");
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/v1")
}

#[tokio::test]
async fn a_stream_that_ends_inside_an_event_reaches_the_client_broken() {
    let base_url = close_delimited_upstream(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"choices\":[{\"ind",
    )
    .await;
    let error = broken_stream(&one_api_key("cut#1", &base_url, "sk-cut")).await;
    assert!(error.contains("cut off"), "{error}");
}

#[tokio::test]
async fn streams_whose_last_line_is_whole_or_framed_end_cleanly() {
    const EVENT: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n";
    let sse = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n";
    // The end is the connection's: whole last lines, with or without their blank line, and a
    // `[DONE]` without its line end.
    let mut endings = vec![
        (sse.to_owned(), "data: [DONE]\n"),
        (sse.to_owned(), "data: [DONE]"),
        (sse.to_owned(), "data: {\"choices\":[]}\n"),
    ];
    // Framed by a length: whatever the last line, hyper has checked that the body is whole.
    let cut_looking = "data: {\"choices\"";
    let length = EVENT.len() + cut_looking.len();
    endings.push((format!("{sse}content-length: {length}\r\n"), cut_looking));
    for (head, last) in endings {
        let body = format!("{EVENT}{last}");
        let base_url = close_delimited_upstream(head.clone(), body.clone()).await;
        let answer = call(
            &proxy(&one_api_key("cut#1", &base_url, "sk-cut")),
            chat_request(&chat_body(true)),
        )
        .await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.text(), body, "{head}");
    }
}

#[tokio::test]
async fn a_whole_answer_cut_where_the_connection_ends_is_not_passed_on() {
    let base_url = close_delimited_upstream(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n",
        "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"choi",
    )
    .await;
    let answer = call(
        &proxy(&one_api_key("cut#1", &base_url, "sk-cut")),
        chat_request(&chat_body(false)),
    )
    .await;
    let message = answer.error(502, "upstream_invalid_answer");
    assert!(message.contains("not whole JSON"), "{message}");
}

/// A lone UTF-16 surrogate passes the proxy's quick read of a body but not a full parse: an
/// API key gets the body as it came, a Qwen account (whose body must be reshaped) a 400.
#[tokio::test]
async fn a_body_only_a_full_parse_refuses_is_passed_on_or_refused_never_replaced() {
    let raw = r#"{"model":"coder-model","messages":[{"role":"user","content":"\udc00"}]}"#;
    let request = || {
        http::Request::post("/v1/chat/completions")
            .body(http_body_util::Full::new(Bytes::from_static(
                raw.as_bytes(),
            )))
            .expect("a request")
    };

    let (fake, pool, _) = qwen_pool(1).await;
    let message = call(&proxy(&pool), request())
        .await
        .error(400, "invalid_json");
    assert!(message.contains("surrogate"), "{message}");
    assert!(fake.chat_requests().is_empty());

    fake.add_api_key("sk-upstream-1");
    let keys = one_api_key("dashscope#1", &fake.chat_base_url(), "sk-upstream-1");
    call(&proxy(&keys), request()).await;
    assert_eq!(fake.chat_requests()[0].body, raw);
}
