//! Tests of the fake itself, at the HTTP level with a plain reqwest client.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fake_qwen::{
    CLIENT_ID, DEVICE_CODE_PATH, DeviceAnswer, ExpiresIn, FakeQwen, PollStep, RefreshBehaviour,
    RefreshOutcome, RefreshRecord, SCOPE, TOKEN_PATH,
};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::support::{self, Answer, HANG_GUARD, client, refresh_at};

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const OTHER_VERIFIER: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

async fn post(fake: &FakeQwen, path: &str, form: &[(&str, &str)]) -> Answer {
    support::post(&fake.base_url(), path, form).await
}

async fn device_code(fake: &FakeQwen, verifier: &str) -> String {
    let answer = post(
        fake,
        DEVICE_CODE_PATH,
        &[
            ("client_id", CLIENT_ID),
            ("scope", SCOPE),
            ("code_challenge", &challenge(verifier)),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()["device_code"]
        .as_str()
        .expect("a device_code")
        .to_owned()
}

async fn poll(fake: &FakeQwen, device_code: &str, verifier: &str) -> Answer {
    post(
        fake,
        TOKEN_PATH,
        &[
            ("grant_type", DEVICE_GRANT),
            ("client_id", CLIENT_ID),
            ("device_code", device_code),
            ("code_verifier", verifier),
        ],
    )
    .await
}

async fn refresh(fake: &FakeQwen, refresh_token: &str) -> Answer {
    refresh_at(&fake.base_url(), refresh_token).await
}

#[tokio::test]
async fn device_answer_has_qwen_shape_and_omits_absent_interval() {
    let fake = FakeQwen::start().await;
    let answer = post(
        &fake,
        DEVICE_CODE_PATH,
        &[
            ("client_id", CLIENT_ID),
            ("scope", SCOPE),
            ("code_challenge", &challenge(VERIFIER)),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200);
    assert!(answer.content_type.starts_with("application/json"));
    let body = answer.json();
    assert_eq!(body["user_code"], "QWEN-1234");
    assert_eq!(body["expires_in"], 600);
    assert!(body.get("interval").is_none());
    assert_eq!(
        body["verification_uri"],
        format!("{}/authorize", fake.base_url())
    );
    assert_eq!(
        body["verification_uri_complete"],
        format!("{}/authorize?user_code=QWEN-1234", fake.base_url())
    );

    fake.set_device_answer(DeviceAnswer {
        user_code: "ABCD-5678".to_owned(),
        expires_in: 30,
        interval: Some(7),
        include_verification_uri_complete: false,
    });
    let body = post(
        &fake,
        DEVICE_CODE_PATH,
        &[
            ("client_id", CLIENT_ID),
            ("scope", SCOPE),
            ("code_challenge", &challenge(VERIFIER)),
            ("code_challenge_method", "S256"),
        ],
    )
    .await
    .json();
    assert_eq!(body["interval"], 7);
    assert_eq!(body["expires_in"], 30);
    assert!(body.get("verification_uri_complete").is_none());
}

#[tokio::test]
async fn device_request_is_checked_like_qwen() {
    let fake = FakeQwen::start().await;
    let good_challenge = challenge(VERIFIER);
    let cases: [[(&str, &str); 4]; 4] = [
        [
            ("client_id", "someone-else"),
            ("scope", SCOPE),
            ("code_challenge", &good_challenge),
            ("code_challenge_method", "S256"),
        ],
        [
            ("client_id", CLIENT_ID),
            ("scope", "openid"),
            ("code_challenge", &good_challenge),
            ("code_challenge_method", "S256"),
        ],
        [
            ("client_id", CLIENT_ID),
            ("scope", SCOPE),
            ("code_challenge", &good_challenge),
            ("code_challenge_method", "plain"),
        ],
        [
            ("client_id", CLIENT_ID),
            ("scope", SCOPE),
            ("code_challenge", "short"),
            ("code_challenge_method", "S256"),
        ],
    ];
    for form in cases {
        let answer = post(&fake, DEVICE_CODE_PATH, &form).await;
        assert_eq!(answer.status, 400, "{form:?}");
        assert_eq!(answer.error(), "invalid_request", "{form:?}");
    }

    let client = client();
    let url = format!("{}{DEVICE_CODE_PATH}", fake.base_url());
    let form = [
        ("client_id", CLIENT_ID),
        ("scope", SCOPE),
        ("code_challenge", good_challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let without_accept = client.post(&url).form(&form).send().await.expect("answer");
    assert_eq!(without_accept.status().as_u16(), 400);
    let as_json = client
        .post(&url)
        .header("accept", "application/json")
        .json(&serde_json::json!({ "client_id": CLIENT_ID }))
        .send()
        .await
        .expect("answer");
    assert_eq!(as_json.status().as_u16(), 400);

    assert_eq!(fake.device_requests().len(), 6);
    assert_eq!(
        fake.device_requests()[0].form_value("client_id"),
        Some("someone-else")
    );
}

#[tokio::test]
async fn wrong_pkce_verifier_is_rejected_and_does_not_use_a_step() {
    let fake = FakeQwen::start().await;
    fake.script_polls(vec![PollStep::Pending, PollStep::Approve]);
    let code = device_code(&fake, VERIFIER).await;

    let wrong = poll(&fake, &code, OTHER_VERIFIER).await;
    assert_eq!(wrong.status, 400);
    assert_eq!(
        wrong.json(),
        serde_json::json!({"error": "invalid_grant", "error_description": "PKCE verification failed"})
    );

    let pending = poll(&fake, &code, VERIFIER).await;
    assert_eq!(pending.error(), "authorization_pending");
    let right = poll(&fake, &code, VERIFIER).await;
    assert_eq!(right.status, 200, "{}", right.body);
    assert!(fake.issued_access_token(right.json()["access_token"].as_str().unwrap_or_default()));
}

#[tokio::test]
async fn unknown_and_used_device_codes_are_invalid_grant() {
    let fake = FakeQwen::start().await;
    let unknown = poll(&fake, "no-such-code", VERIFIER).await;
    assert_eq!(
        (unknown.status, unknown.error()),
        (400, "invalid_grant".to_owned())
    );

    let code = device_code(&fake, VERIFIER).await;
    assert_eq!(poll(&fake, &code, VERIFIER).await.status, 200);
    let again = poll(&fake, &code, VERIFIER).await;
    assert_eq!(
        (again.status, again.error()),
        (400, "invalid_grant".to_owned())
    );
}

#[tokio::test]
async fn polls_follow_the_script_in_order_and_the_last_step_repeats() {
    let fake = FakeQwen::start().await;
    fake.script_polls(vec![
        PollStep::Pending,
        PollStep::SlowDown400,
        PollStep::SlowDown429,
        PollStep::ServerError(502),
        PollStep::Html { status: 405 },
        PollStep::Denied,
    ]);
    let code = device_code(&fake, VERIFIER).await;
    let mut seen = Vec::new();
    for _ in 0..7 {
        let answer = poll(&fake, &code, VERIFIER).await;
        let error = if answer.content_type.starts_with("text/html") {
            assert!(answer.body.contains("aliyun_waf_") && answer.body.contains("captcha"));
            "html".to_owned()
        } else {
            answer.error()
        };
        seen.push((answer.status, error));
    }
    let expected = [
        (400, "authorization_pending"),
        (400, "slow_down"),
        (429, "slow_down"),
        (502, "server_error"),
        (405, "html"),
        (400, "access_denied"),
        (400, "access_denied"),
    ]
    .map(|(status, error)| (status, error.to_owned()));
    assert_eq!(seen, expected);

    fake.script_polls(vec![PollStep::Expired]);
    let expired = poll(&fake, &code, VERIFIER).await;
    assert_eq!(
        (expired.status, expired.error()),
        (400, "expired_token".to_owned())
    );
}

#[tokio::test]
async fn approval_answers_tokens_pointing_at_the_fake() {
    let fake = FakeQwen::start().await;
    fake.set_token_expires_in(120);
    let code = device_code(&fake, VERIFIER).await;
    let answer = poll(&fake, &code, VERIFIER).await;
    let body = answer.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 120);
    assert_eq!(body["resource_url"], fake.resource_url());
    assert!(!fake.resource_url().contains("://"));
    let issued = fake.issued_tokens();
    assert_eq!(issued.len(), 1);
    assert_eq!(body["access_token"], issued[0].access_token);
    assert_eq!(body["refresh_token"], issued[0].refresh_token);
}

#[tokio::test]
async fn refresh_rotates_and_retires_the_old_token() {
    let fake = FakeQwen::start().await;
    let first = fake.mint_tokens();
    let answer = refresh(&fake, &first.refresh_token).await;
    assert_eq!(answer.status, 200);
    let body = answer.json();
    let new_refresh = body["refresh_token"].as_str().expect("rotated").to_owned();
    assert_ne!(new_refresh, first.refresh_token);
    assert_eq!(body["resource_url"], fake.resource_url());

    let stale = refresh(&fake, &first.refresh_token).await;
    assert_eq!(stale.status, 400);
    assert_eq!(
        stale.json(),
        serde_json::json!({"error": "invalid_request", "error_description": "Invalid refresh token or client_id"})
    );
    assert_eq!(refresh(&fake, &new_refresh).await.status, 200);
}

#[tokio::test]
async fn refresh_behaviours() {
    let fake = FakeQwen::start().await;
    let tokens = fake.mint_tokens();

    fake.set_refresh(RefreshBehaviour::KeepRefresh);
    let kept = refresh(&fake, &tokens.refresh_token).await.json();
    assert!(kept.get("refresh_token").is_none());
    assert!(kept.get("resource_url").is_none());
    assert_ne!(kept["access_token"], tokens.access_token);
    assert_eq!(refresh(&fake, &tokens.refresh_token).await.status, 200);

    fake.set_refresh(RefreshBehaviour::Invalid);
    let invalid = refresh(&fake, &tokens.refresh_token).await;
    assert_eq!(
        (invalid.status, invalid.error()),
        (400, "invalid_request".to_owned())
    );

    fake.set_refresh(RefreshBehaviour::ServerError(503));
    assert_eq!(refresh(&fake, &tokens.refresh_token).await.status, 503);

    fake.set_refresh(RefreshBehaviour::Html { status: 403 });
    let page = refresh(&fake, &tokens.refresh_token).await;
    assert_eq!(page.status, 403);
    assert!(page.content_type.starts_with("text/html"));
    assert!(page.body.contains("aliyun_waf_"));
}

#[tokio::test]
async fn expires_in_can_be_any_json_value_or_missing() {
    let fake = FakeQwen::start().await;
    let mut tokens = fake.mint_tokens();
    for (answer, shown) in [
        (ExpiresIn::Json("-5".into()), Some("-5")),
        (ExpiresIn::Json("3600.5".into()), Some("3600.5")),
        (
            ExpiresIn::Json("184467440737095516160000".into()),
            Some("184467440737095516160000"),
        ),
        (ExpiresIn::Json(r#""3600""#.into()), Some(r#""3600""#)),
        (ExpiresIn::Seconds(7), Some("7")),
        (ExpiresIn::Missing, None),
    ] {
        fake.set_token_expires_in_answer(answer);
        let answered = refresh(&fake, &tokens.refresh_token).await;
        assert_eq!(answered.status, 200, "{}", answered.body);
        match shown {
            Some(raw) => assert!(
                answered.body.contains(&format!(r#""expires_in":{raw}"#)),
                "{}",
                answered.body
            ),
            None => assert!(!answered.body.contains("expires_in"), "{}", answered.body),
        }
        let body: Value = serde_json::from_str(&answered.body).expect("still JSON");
        tokens.refresh_token = body["refresh_token"].as_str().expect("rotated").to_owned();
    }
}

#[tokio::test]
async fn refreshes_can_be_redirected_or_oversized() {
    let fake = FakeQwen::start().await;
    let tokens = fake.mint_tokens();
    fake.set_refresh(RefreshBehaviour::Redirect {
        status: 307,
        location: "http://127.0.0.1:9/elsewhere".into(),
    });
    let not_following = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let redirect = not_following
        .post(format!("{}{TOKEN_PATH}", fake.base_url()))
        .header("accept", "application/json")
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", tokens.refresh_token.as_str()),
            ("client_id", CLIENT_ID),
        ])
        .send()
        .await
        .expect("answered");
    assert_eq!(redirect.status(), 307);
    assert_eq!(
        redirect.headers()["location"],
        "http://127.0.0.1:9/elsewhere"
    );

    let mut refresh_token = tokens.refresh_token;
    for chunked in [false, true] {
        fake.set_refresh(RefreshBehaviour::Oversized {
            bytes: 2 << 20,
            chunked,
        });
        let answer = not_following
            .post(format!("{}{TOKEN_PATH}", fake.base_url()))
            .header("accept", "application/json")
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token.as_str()),
                ("client_id", CLIENT_ID),
            ])
            .send()
            .await
            .expect("answered");
        assert_eq!(answer.status(), 200);
        assert_eq!(
            answer.content_length().is_none(),
            chunked,
            "Content-Length only when not chunked"
        );
        let body: Value = answer.json().await.expect("a JSON token answer");
        assert!(body["padding"].as_str().expect("padded").len() >= 2 << 20);
        refresh_token = body["refresh_token"].as_str().expect("rotated").to_owned();
    }
}

/// Stops a test whose awaited event never comes; never a synchronisation.

#[tokio::test]
async fn held_refreshes_are_answered_in_order_once_released() {
    let fake = FakeQwen::start().await;
    fake.set_refresh(RefreshBehaviour::KeepRefresh);
    let tokens = fake.mint_tokens();
    fake.hold_refreshes(true);

    let first = tokio::spawn({
        let (url, token) = (fake.base_url(), tokens.refresh_token.clone());
        async move { refresh_at(&url, &token).await }
    });
    tokio::time::timeout(HANG_GUARD, fake.wait_for_held_refreshes(1))
        .await
        .expect("the refresh is held");
    assert_eq!(fake.token_requests().len(), 1, "recorded on arrival");
    assert_eq!(fake.issued_tokens().len(), 1, "not answered yet");
    let second = tokio::spawn({
        let (url, token) = (fake.base_url(), tokens.refresh_token.clone());
        async move { refresh_at(&url, &token).await }
    });
    tokio::time::timeout(HANG_GUARD, fake.wait_for_held_refreshes(2))
        .await
        .expect("the second refresh is held too");

    fake.release_held_refreshes(1);
    tokio::time::timeout(HANG_GUARD, fake.wait_for_answered_refresh(1))
        .await
        .expect("the first is answered");
    let answer = first.await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(fake.issued_tokens().len(), 2, "the second is still held");
    // A release given before a refresh is held is kept for it; turning the gate off lets
    // later ones through.
    fake.release_held_refreshes(2);
    assert_eq!(second.await.unwrap().status, 200);
    fake.hold_refreshes(false);
    assert_eq!(refresh(&fake, &tokens.refresh_token).await.status, 200);
    assert_eq!(fake.issued_tokens().len(), 4);
}

#[tokio::test]
async fn the_refresh_log_tells_rotations_from_spent_and_unknown_tokens() {
    let fake = FakeQwen::start().await;
    let tokens = fake.mint_tokens();
    assert!(fake.refresh_token_is_live(&tokens.refresh_token));
    assert_eq!(refresh(&fake, &tokens.refresh_token).await.status, 200);
    let rotated = fake.issued_tokens().pop().expect("a new pair");
    assert!(!fake.refresh_token_is_live(&tokens.refresh_token));
    assert!(fake.refresh_token_is_live(&rotated.refresh_token));
    assert_eq!(refresh(&fake, &tokens.refresh_token).await.status, 400);
    assert_eq!(refresh(&fake, "never-issued").await.status, 400);
    fake.set_refresh(RefreshBehaviour::ServerError(503));
    assert_eq!(refresh(&fake, &rotated.refresh_token).await.status, 503);
    // A request without a refresh token is not a refresh of any token.
    let answer = post(
        &fake,
        TOKEN_PATH,
        &[("grant_type", "refresh_token"), ("client_id", CLIENT_ID)],
    )
    .await;
    assert_eq!(answer.status, 400);

    let record = |token: &str, outcome| RefreshRecord {
        refresh_token: token.to_owned(),
        outcome,
    };
    assert_eq!(
        fake.refreshes(),
        vec![
            record(
                &tokens.refresh_token,
                RefreshOutcome::Issued(rotated.clone())
            ),
            record(&tokens.refresh_token, RefreshOutcome::Dead { spent: true }),
            record("never-issued", RefreshOutcome::Dead { spent: false }),
            record(&rotated.refresh_token, RefreshOutcome::Failed),
        ]
    );
    fake.forget_requests();
    assert!(fake.token_requests().is_empty());
    assert_eq!(fake.refreshes().len(), 4, "the refresh log is kept");
}

#[tokio::test]
async fn a_client_leaving_during_the_refresh_latency_has_lost_the_rotation() {
    let fake = FakeQwen::start().await;
    let tokens = fake.mint_tokens();
    // Longer than any test: the answer can only be lost, never received.
    fake.set_refresh_latency(std::time::Duration::from_secs(3600));
    let client = tokio::spawn({
        let (url, token) = (fake.base_url(), tokens.refresh_token.clone());
        async move { refresh_at(&url, &token).await }
    });
    tokio::time::timeout(HANG_GUARD, async {
        while fake.refreshes().is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the refresh is decided before its answer leaves");
    client.abort();
    assert!(
        !fake.refresh_token_is_live(&tokens.refresh_token),
        "rotated before the answer left"
    );
    fake.set_refresh_latency(std::time::Duration::ZERO);
    assert_eq!(refresh(&fake, &tokens.refresh_token).await.status, 400);
    assert_eq!(
        fake.refreshes()[1].outcome,
        RefreshOutcome::Dead { spent: true }
    );
}

#[tokio::test]
async fn down_drops_connections_until_up_again() {
    let fake = FakeQwen::start().await;
    fake.set_down(true);
    let client = client();
    let url = format!("{}{TOKEN_PATH}", fake.base_url());
    let failed = client.post(&url).form(&[("a", "b")]).send().await;
    assert!(failed.is_err(), "a down fake must not answer");
    assert!(fake.token_requests().is_empty());

    fake.set_down(false);
    let answered = client
        .post(&url)
        .form(&[("a", "b")])
        .send()
        .await
        .expect("an answer once up");
    assert_eq!(answered.status().as_u16(), 400);
    assert_eq!(fake.token_requests().len(), 1);
}

#[tokio::test]
async fn dropping_the_fake_stops_it() {
    let fake = FakeQwen::start().await;
    let url = format!("{}{TOKEN_PATH}", fake.base_url());
    drop(fake);
    assert!(client().post(url).send().await.is_err());
}

#[test]
fn serves_while_the_caller_blocks() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let fake = runtime.block_on(FakeQwen::start());
    let url = format!("{}/nowhere", fake.base_url());
    // A blocking client on another thread while this thread waits: the fake needs no help.
    let status = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            reqwest::get(url)
                .await
                .map(|answer| answer.status().as_u16())
        })
    })
    .join()
    .expect("the client thread");
    assert_eq!(status.expect("an answer"), 404);
}
