//! Client authentication through the whole stack.

use http::Request;
use proxy_server::ServerConfig;

use crate::support::{call, get, proxy, proxy_with, qwen_pool};

const KEY: &str = "sk-client-0123456789";

fn keyed() -> ServerConfig {
    ServerConfig {
        api_keys: vec!["other-key".into(), KEY.into()],
        ..ServerConfig::default()
    }
}

#[tokio::test]
async fn each_key_location_is_accepted() {
    let (_fake, pool, _) = qwen_pool(1).await;
    let proxy = proxy_with(keyed(), &pool);
    let with_header = |name: &str, value: String| {
        let mut request = get("/v1/models");
        request.headers_mut().insert(
            http::HeaderName::try_from(name).expect("a name"),
            value.parse().expect("a value"),
        );
        request
    };
    for request in [
        with_header("authorization", format!("Bearer {KEY}")),
        with_header("x-api-key", KEY.to_owned()),
        with_header("x-goog-api-key", KEY.to_owned()),
        get(&format!("/v1/models?key={KEY}")),
    ] {
        let uri = request.uri().clone();
        let answer = call(&proxy, request).await;
        assert_eq!(answer.status, 200, "{uri}: {}", answer.text());
    }
}

#[tokio::test]
async fn a_wrong_or_missing_key_is_401() {
    let (fake, pool, _) = qwen_pool(1).await;
    let proxy = proxy_with(keyed(), &pool);
    let mut wrong = crate::support::chat_request(&crate::support::chat_body(false));
    wrong.headers_mut().insert(
        "authorization",
        "Bearer sk-client-0123456788".parse().expect("a value"),
    );
    let answer = call(&proxy, wrong).await;
    let message = answer.error(401, "invalid_api_key");
    assert!(message.contains("api-keys"), "{message}");
    assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
    assert!(!message.contains("0123456788"), "the key is not echoed");

    let message = call(&proxy, get("/v1/models"))
        .await
        .error(401, "invalid_api_key");
    assert!(message.contains("Authorization: Bearer"), "{message}");

    // Unknown paths are behind auth too: nothing is learnt without a key.
    call(&proxy, get("/v1/secret-route"))
        .await
        .error(401, "invalid_api_key");
    assert!(fake.chat_requests().is_empty());
}

#[tokio::test]
async fn without_configured_keys_auth_is_off() {
    let (_fake, pool, _) = qwen_pool(1).await;
    let answer = call(
        &proxy(&pool),
        Request::get("/v1/models")
            .body(Default::default())
            .expect("a request"),
    )
    .await;
    assert_eq!(answer.status, 200);
}
