//! Refreshing: rotation, keeping old values, dead refresh tokens and temporary failures.

use std::time::{Duration, SystemTime};

use auth_core::TokenSet;
use auth_core::{RefreshError, TransientCause};
use fake_qwen::{CLIENT_ID, ExpiresIn, FakeQwen, RefreshBehaviour};

use crate::support::{CannedServer, TokenAnswer, client_at, client_for};

#[tokio::test]
async fn rotation_returns_new_tokens_and_retires_the_old_refresh_token() {
    let fake = FakeQwen::start().await;
    let stored = fake.mint_tokens();
    let client = client_for(&fake);

    let fresh = client
        .refresh(&stored.refresh_token)
        .await
        .expect("refreshed");
    let new_refresh = fresh.refresh_token.clone().expect("rotated");
    assert_ne!(new_refresh, stored.refresh_token);
    assert_ne!(fresh.access_token, stored.access_token);
    assert_eq!(fresh.resource_url, Some(fake.resource_url()));
    let merged = fresh.merged_with_previous(&stored.refresh_token, Some("old.example"));
    assert_eq!(merged.refresh_token, Some(new_refresh.clone()));
    assert_eq!(merged.resource_url, Some(fake.resource_url()));

    let stale = client.refresh(&stored.refresh_token).await;
    assert!(
        matches!(stale, Err(RefreshError::ReloginRequired { .. })),
        "{stale:?}"
    );
    assert!(client.refresh(&new_refresh).await.is_ok());
}

#[tokio::test]
async fn answer_without_refresh_token_keeps_the_old_values() {
    let fake = FakeQwen::start().await;
    fake.set_refresh(RefreshBehaviour::KeepRefresh);
    fake.set_token_expires_in(900);
    let stored = fake.mint_tokens();
    let client = client_for(&fake);

    let fresh = client
        .refresh(&stored.refresh_token)
        .await
        .expect("refreshed");
    assert_eq!(fresh.refresh_token, None);
    assert_eq!(fresh.resource_url, None);
    let received_at = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
    assert_eq!(
        fresh.expires_at(received_at),
        Some(received_at + Duration::from_secs(900))
    );
    let merged = fresh.merged_with_previous(&stored.refresh_token, Some("portal.qwen.ai"));
    assert_eq!(merged.refresh_token, Some(stored.refresh_token.clone()));
    assert_eq!(merged.resource_url.as_deref(), Some("portal.qwen.ai"));
    assert!(
        client.refresh(&stored.refresh_token).await.is_ok(),
        "still live"
    );
}

#[tokio::test]
async fn dead_refresh_token_requires_a_new_login() {
    let fake = FakeQwen::start().await;
    fake.set_refresh(RefreshBehaviour::Invalid);
    let stored = fake.mint_tokens();
    let error = client_for(&fake)
        .refresh(&stored.refresh_token)
        .await
        .expect_err("refused");

    let RefreshError::ReloginRequired {
        status,
        code,
        description,
    } = &error
    else {
        panic!("expected ReloginRequired, got {error:?}");
    };
    assert_eq!((*status, code.as_str()), (400, "invalid_request"));
    assert_eq!(
        description.as_deref(),
        Some("Invalid refresh token or client_id")
    );
    assert!(error.needs_relogin() && !error.is_retryable());
    let message = error.to_string();
    assert!(message.contains("log in again"), "{message}");
    for text in [message, format!("{error:?}")] {
        assert!(!text.contains(&stored.refresh_token), "{text}");
        assert!(!text.contains(&stored.access_token), "{text}");
    }
}

#[tokio::test]
async fn unknown_refresh_token_requires_a_new_login() {
    let fake = FakeQwen::start().await;
    let error = client_for(&fake)
        .refresh("never-issued")
        .await
        .expect_err("refused");
    assert!(error.needs_relogin(), "{error:?}");
    assert!(!error.to_string().contains("never-issued"));
}

#[tokio::test]
async fn temporary_failures_are_transient_and_say_which_kind() {
    let fake = FakeQwen::start().await;
    let stored = fake.mint_tokens();
    let client = client_for(&fake);

    fake.set_refresh(RefreshBehaviour::ServerError(503));
    let server = client
        .refresh(&stored.refresh_token)
        .await
        .expect_err("5xx");
    assert!(matches!(
        &server,
        RefreshError::Transient {
            cause: TransientCause::ServerError { status: 503 }
        }
    ));

    fake.set_refresh(RefreshBehaviour::Html { status: 403 });
    let blocked = client
        .refresh(&stored.refresh_token)
        .await
        .expect_err("waf");
    assert!(matches!(
        &blocked,
        RefreshError::Transient {
            cause: TransientCause::Blocked { status: 403 }
        }
    ));
    assert!(blocked.to_string().contains("web page"), "{blocked}");

    fake.set_refresh(RefreshBehaviour::Rotate);
    fake.set_down(true);
    let down = client
        .refresh(&stored.refresh_token)
        .await
        .expect_err("down");
    assert!(matches!(
        &down,
        RefreshError::Transient {
            cause: TransientCause::Unreachable { .. }
        }
    ));

    for error in [&server, &blocked, &down] {
        assert!(error.is_retryable() && !error.needs_relogin(), "{error:?}");
        assert!(!error.to_string().contains(&stored.refresh_token));
    }

    fake.set_down(false);
    assert!(
        client.refresh(&stored.refresh_token).await.is_ok(),
        "token still live"
    );
}

#[tokio::test]
async fn refresh_request_carries_exactly_the_specified_fields() {
    let fake = FakeQwen::start().await;
    let stored = fake.mint_tokens();
    client_for(&fake)
        .refresh(&stored.refresh_token)
        .await
        .expect("refreshed");

    let requests = fake.token_requests();
    let [request] = requests.as_slice() else {
        panic!("one request expected, got {requests:?}");
    };
    assert_eq!(
        request.form_names(),
        ["grant_type", "refresh_token", "client_id"]
    );
    assert_eq!(request.form_value("grant_type"), Some("refresh_token"));
    assert_eq!(
        request.form_value("refresh_token"),
        Some(stored.refresh_token.as_str())
    );
    assert_eq!(request.form_value("client_id"), Some(CLIENT_ID));
    assert_eq!(request.header("accept"), Some("application/json"));
}

#[tokio::test]
async fn invalid_grant_and_401_require_a_new_login() {
    let cases = [
        (401, "invalid_grant"),
        (400, "invalid_grant"),
        (401, "invalid_request"),
    ];
    for (status, code) in cases {
        let body: &'static str = Box::leak(
            format!(r#"{{"error":"{code}","error_description":"Refresh token expired"}}"#)
                .into_boxed_str(),
        );
        let server = CannedServer::start(600, 5, TokenAnswer::Reply { status, body }).await;
        let error = client_at(&server.url(), None)
            .refresh("dead-refresh-token")
            .await
            .expect_err("refused");

        let RefreshError::ReloginRequired {
            status: seen_status,
            code: seen_code,
            description,
        } = &error
        else {
            panic!("{status} {code}: expected ReloginRequired, got {error:?}");
        };
        assert_eq!((*seen_status, seen_code.as_str()), (status, code));
        assert_eq!(description.as_deref(), Some("Refresh token expired"));
        assert!(error.needs_relogin() && !error.is_retryable(), "{error:?}");
        assert!(error.to_string().contains("must log in again"), "{error}");
        assert!(!error.to_string().contains("dead-refresh-token"), "{error}");
    }
}

#[tokio::test]
async fn other_refusals_are_neither_relogin_nor_retryable() {
    let server = CannedServer::start(
        600,
        5,
        TokenAnswer::Reply {
            status: 401,
            body: r#"{"error":"unauthorized_client"}"#,
        },
    )
    .await;
    let error = client_at(&server.url(), None)
        .refresh("r")
        .await
        .expect_err("refused");
    assert!(
        matches!(&error, RefreshError::Rejected { status: 401, code, .. } if code == "unauthorized_client"),
        "{error:?}"
    );
    assert!(!error.needs_relogin() && !error.is_retryable());
}

#[tokio::test]
async fn absurd_lifetimes_are_clamped_into_range() {
    let fake = FakeQwen::start().await;
    let client = client_for(&fake);
    let mut refresh_token = fake.mint_tokens().refresh_token;
    let cases = [
        (
            ExpiresIn::Json("10000000000000".into()),
            TokenSet::MAX_LIFETIME,
        ),
        (
            ExpiresIn::Json("184467440737095516160000".into()),
            TokenSet::MAX_LIFETIME,
        ),
        (ExpiresIn::Json("-3600".into()), TokenSet::MIN_LIFETIME),
        (ExpiresIn::Json("0".into()), TokenSet::MIN_LIFETIME),
        (ExpiresIn::Missing, TokenSet::DEFAULT_LIFETIME),
        (ExpiresIn::Json("null".into()), TokenSet::DEFAULT_LIFETIME),
        (
            ExpiresIn::Json(r#""soon""#.into()),
            TokenSet::DEFAULT_LIFETIME,
        ),
        (ExpiresIn::Json("7200.75".into()), Duration::from_secs(7200)),
        (
            ExpiresIn::Json(r#""1800""#.into()),
            Duration::from_secs(1800),
        ),
    ];
    for (answer, expected) in cases {
        fake.set_token_expires_in_answer(answer.clone());
        let fresh = client.refresh(&refresh_token).await.expect("refreshed");
        assert_eq!(fresh.expires_in, Some(expected), "{answer:?}");
        let received_at = SystemTime::now();
        assert_eq!(
            fresh.expires_at(received_at),
            Some(received_at + expected),
            "{answer:?}"
        );
        refresh_token = fresh.refresh_token.expect("rotated");
    }
}
