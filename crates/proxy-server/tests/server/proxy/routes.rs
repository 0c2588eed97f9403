//! Routing, the model list, health, request ids, and the request-shape errors.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body, Frame};
use proxy_server::ServerConfig;
use serde_json::json;
use tower::ServiceExt as _;

use crate::support::{
    self, MODEL, call, chat_body, chat_request, get, proxy, proxy_with, qwen_pool, within,
};

#[tokio::test]
async fn models_lists_configured_and_pool_models_once_each() {
    let (_fake, pool, _) = qwen_pool(1).await;
    let config = ServerConfig {
        models: vec!["extra-model".into(), MODEL.into()],
        ..ServerConfig::default()
    };
    let answer = call(&proxy_with(config, &pool), get("/v1/models")).await;
    assert_eq!(answer.status, 200);
    let body = answer.json();
    assert_eq!(body["object"], "list");
    let ids: Vec<&str> = body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|model| model["id"].as_str().expect("an id"))
        .collect();
    assert_eq!(ids, ["extra-model", MODEL, "qwen3-coder-plus"]);
    let first = &body["data"][0];
    assert_eq!(first["object"], "model");
    assert!(first["created"].is_u64());
    assert!(first["owned_by"].is_string());
}

#[tokio::test]
async fn healthz_counts_credentials_and_needs_no_key() {
    let (_fake, pool, _) = qwen_pool(2).await;
    pool.set_disabled("qwen:1", Some("re-login required".into()));
    let config = ServerConfig {
        api_keys: vec!["client-key".into()],
        ..ServerConfig::default()
    };
    let answer = call(&proxy_with(config, &pool), get("/healthz")).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.json(),
        json!({ "status": "ok", "credentials": { "total": 2, "usable": 1 } })
    );
}

#[tokio::test]
async fn unknown_route_is_404_and_wrong_method_is_405() {
    let (_fake, pool, _) = qwen_pool(1).await;
    let proxy = proxy(&pool);
    let message = call(&proxy, get("/v1/nope"))
        .await
        .error(404, "unknown_url");
    assert!(message.contains("/v1/nope"), "{message}");

    let answer = call(&proxy, get("/v1/chat/completions")).await;
    let message = answer.error(405, "method_not_allowed");
    assert!(message.contains("POST"), "{message}");
    assert_eq!(answer.header("allow"), Some("POST"));
}

#[tokio::test]
async fn request_ids_are_generated_or_echoed() {
    let (_fake, pool, _) = qwen_pool(1).await;
    let proxy = proxy(&pool);
    let generated = call(&proxy, get("/v1/models")).await;
    let id = generated.header("x-request-id").expect("a generated id");
    assert_eq!(id.len(), 36, "a UUID: {id}");

    let mut request = get("/v1/nope");
    request
        .headers_mut()
        .insert("x-request-id", "my-request-7".parse().expect("a header"));
    let echoed = call(&proxy, request).await;
    assert_eq!(echoed.header("x-request-id"), Some("my-request-7"));

    let another = call(&proxy, get("/v1/models")).await;
    assert_ne!(another.header("x-request-id"), Some(id), "ids are fresh");

    // The client-auth layer's own 401 carries one too.
    let config = ServerConfig {
        api_keys: vec!["right".to_owned()],
        ..ServerConfig::default()
    };
    let refused = call(&proxy_with(config, &pool), get("/v1/models")).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("x-request-id").map(str::len), Some(36));
}

#[tokio::test]
async fn malformed_json_is_400() {
    let (fake, pool, _) = qwen_pool(1).await;
    let proxy = proxy(&pool);
    let request = Request::post("/v1/chat/completions")
        .body(Full::new(Bytes::from_static(b"{\"model\": ")))
        .expect("a request");
    let message = call(&proxy, request).await.error(400, "invalid_json");
    assert!(message.contains("not valid JSON"), "{message}");

    let array = Request::post("/v1/chat/completions")
        .body(Full::new(Bytes::from_static(b"[\"coder-model\"]")))
        .expect("a request");
    let message = call(&proxy, array).await.error(400, "invalid_json");
    assert!(message.contains("must be a JSON object"), "{message}");

    let message = call(&proxy, chat_request(&json!({ "messages": [] })))
        .await
        .error(400, "missing_model");
    assert!(message.contains("/v1/models"), "{message}");
    assert!(fake.chat_requests().is_empty());
}

/// A body that records whether anyone read it.
struct Untouchable {
    polled: Arc<AtomicBool>,
}

impl Body for Untouchable {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.polled.store(true, Ordering::SeqCst);
        Poll::Ready(None)
    }
}

#[tokio::test]
async fn a_declared_oversized_body_is_413_before_it_is_read() {
    let (fake, pool, _) = qwen_pool(1).await;
    let config = ServerConfig {
        max_body_bytes: 1024,
        ..ServerConfig::default()
    };
    let proxy = proxy_with(config, &pool);
    let polled = Arc::new(AtomicBool::new(false));
    let request = Request::post("/v1/chat/completions")
        .header("content-length", "1025")
        .body(Untouchable {
            polled: Arc::clone(&polled),
        })
        .expect("a request");
    let response = within(proxy.service().oneshot(request))
        .await
        .expect("the service never fails");
    assert_eq!(response.status(), 413);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(body["error"]["code"], "request_too_large");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("1 KiB")),
        "{body}"
    );
    assert!(!polled.load(Ordering::SeqCst), "the body was read");
    assert!(fake.chat_requests().is_empty());
}

#[tokio::test]
async fn an_undeclared_oversized_body_is_413_while_reading() {
    let (fake, pool, _) = qwen_pool(1).await;
    let config = ServerConfig {
        max_body_bytes: 1024,
        ..ServerConfig::default()
    };
    let big =
        json!({ "model": MODEL, "messages": [{ "role": "user", "content": "x".repeat(2000) }] });
    // No Content-Length: like a chunked body.
    let request = Request::post("/v1/chat/completions")
        .body(Full::new(Bytes::from(big.to_string())))
        .expect("a request");
    call(&proxy_with(config, &pool), request)
        .await
        .error(413, "request_too_large");
    assert!(fake.chat_requests().is_empty());
}

#[tokio::test]
async fn an_unknown_model_is_404_naming_the_known_ones() {
    let (_fake, pool, _) = qwen_pool(1).await;
    let mut body = support::chat_body(false);
    body["model"] = "gpt-9".into();
    let message = call(&proxy(&pool), chat_request(&body))
        .await
        .error(404, "model_not_found");
    assert!(message.contains("gpt-9"), "{message}");
    assert!(message.contains(MODEL), "{message}");
}

#[tokio::test]
async fn model_aliases_route_client_names_to_served_models() {
    let (fake, pool, _) = qwen_pool(1).await;
    let config = ServerConfig {
        model_aliases: vec![
            ("claude-*".to_owned(), "qwen3-coder-plus".to_owned()),
            ("gpt-5".to_owned(), MODEL.to_owned()),
        ],
        ..ServerConfig::default()
    };
    let proxy = proxy_with(config, &pool);

    let mut body = chat_body(false);
    body["model"] = json!("claude-sonnet-4-5");
    let answer = call(&proxy, chat_request(&body)).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let sent = fake.chat_requests();
    assert_eq!(sent.last().unwrap().json()["model"], "qwen3-coder-plus");

    let listed = call(&proxy, get("/v1/models")).await.json();
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|model| model["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"gpt-5"), "exact aliases are models: {ids:?}");
    assert!(
        !ids.iter().any(|id| id.contains('*')),
        "glob patterns are not model ids: {ids:?}"
    );

    body["model"] = json!("gemini-pro");
    let message = call(&proxy, chat_request(&body))
        .await
        .error(404, "model_not_found");
    assert!(
        message.contains("claude-*") && message.contains(MODEL),
        "{message}"
    );
}

#[tokio::test]
async fn output_token_requests_above_the_cap_are_lowered() {
    let (fake, pool, _) = qwen_pool(1).await;
    let mut body = chat_body(false);
    body["max_tokens"] = json!(128_000);

    let capped = proxy_with(ServerConfig::default(), &pool);
    assert_eq!(call(&capped, chat_request(&body)).await.status, 200);
    assert_eq!(
        fake.chat_requests().last().unwrap().json()["max_tokens"],
        65_536
    );

    let uncapped = ServerConfig {
        max_output_tokens: None,
        ..ServerConfig::default()
    };
    assert_eq!(
        call(&proxy_with(uncapped, &pool), chat_request(&body))
            .await
            .status,
        200
    );
    assert_eq!(
        fake.chat_requests().last().unwrap().json()["max_tokens"],
        128_000
    );

    body["max_tokens"] = json!(100);
    assert_eq!(call(&capped, chat_request(&body)).await.status, 200);
    assert_eq!(
        fake.chat_requests().last().unwrap().json()["max_tokens"],
        100
    );
}

#[tokio::test]
async fn errors_under_v1_messages_have_the_anthropic_shape() {
    let (_fake, pool, _) = qwen_pool(1).await;
    let config = ServerConfig {
        max_body_bytes: 16,
        ..ServerConfig::default()
    };
    let proxy = proxy_with(config, &pool);

    let wrong_method = call(&proxy, get("/v1/messages")).await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.json()["type"], "error");

    let unknown = call(&proxy, get("/v1/messages/nothing")).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"]["type"], "not_found_error");

    let too_large = Request::post("/v1/messages")
        .header("content-length", "4096")
        .body(Full::new(Bytes::from(vec![b' '; 4096])))
        .unwrap();
    let answer = call(&proxy, too_large).await;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.json()["error"]["type"], "request_too_large");
}
