//! The device login: request shape, polling rules, terminal errors, retries and cancellation.

use std::sync::Arc;
use std::time::Duration;

use auth_core::{Clock as _, DeviceFlowError, Pkce, PollEvent};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fake_qwen::{CLIENT_ID, DeviceAnswer, FakeQwen, PollStep, SCOPE};
use sha2::{Digest as _, Sha256};

use crate::support::{
    CannedServer, Events, FakeClock, TokenAnswer, client_at, client_for, client_with_timeout,
    closed_port, secs,
};

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

async fn login_with(
    fake: &FakeQwen,
    clock: &FakeClock,
    events: &mut Events,
) -> Result<auth_core::TokenSet, DeviceFlowError> {
    let client = client_for(fake);
    let auth = client
        .start_device_login(clock)
        .await
        .expect("device request");
    client
        .poll_for_token(&auth, clock, &mut events.sink())
        .await
}

#[tokio::test]
async fn approval_on_first_poll_returns_the_issued_tokens() {
    let fake = FakeQwen::start().await;
    let clock = FakeClock::new();
    let tokens = login_with(&fake, &clock, &mut Events::default())
        .await
        .expect("approved");

    let issued = &fake.issued_tokens()[0];
    assert_eq!(tokens.access_token, issued.access_token);
    assert_eq!(
        tokens.refresh_token.as_deref(),
        Some(issued.refresh_token.as_str())
    );
    assert_eq!(tokens.token_type, "Bearer");
    assert_eq!(tokens.expires_in, Some(Duration::from_secs(3600)));
    assert_eq!(tokens.resource_url, Some(fake.resource_url()));
    assert_eq!(clock.sleeps(), secs(&[5]));
}

#[tokio::test]
async fn pending_keeps_polling_until_approval() {
    let fake = FakeQwen::start().await;
    fake.script_polls(vec![
        PollStep::Pending,
        PollStep::Pending,
        PollStep::Approve,
    ]);
    let clock = FakeClock::new();
    let mut events = Events::default();
    login_with(&fake, &clock, &mut events)
        .await
        .expect("approved");

    assert_eq!(clock.sleeps(), secs(&[5, 5, 5]));
    assert_eq!(fake.token_requests().len(), 3);
    let remaining: Vec<Duration> = events
        .0
        .iter()
        .map(|event| match event {
            PollEvent::Waiting { remaining } => *remaining,
            other => panic!("only waits expected, got {other:?}"),
        })
        .collect();
    assert_eq!(remaining, secs(&[600, 595, 590]));
}

#[tokio::test]
async fn slow_down_on_400_and_429_each_add_five_seconds_for_good() {
    let fake = FakeQwen::start().await;
    fake.script_polls(vec![
        PollStep::Pending,
        PollStep::SlowDown400,
        PollStep::Pending,
        PollStep::SlowDown429,
        PollStep::Approve,
    ]);
    let clock = FakeClock::new();
    let mut events = Events::default();
    login_with(&fake, &clock, &mut events)
        .await
        .expect("approved");

    assert_eq!(clock.sleeps(), secs(&[5, 5, 10, 10, 15]));
    let slow_downs: Vec<&PollEvent> = events
        .0
        .iter()
        .filter(|event| matches!(event, PollEvent::SlowDown { .. }))
        .collect();
    assert_eq!(
        slow_downs,
        [
            &PollEvent::SlowDown {
                new_interval: Duration::from_secs(10)
            },
            &PollEvent::SlowDown {
                new_interval: Duration::from_secs(15)
            },
        ]
    );
}

#[tokio::test]
async fn server_interval_is_used_and_absent_interval_means_five_seconds() {
    let fake = FakeQwen::start().await;
    let client = client_for(&fake);
    let auth = client
        .start_device_login(&FakeClock::new())
        .await
        .expect("device request");
    assert_eq!(auth.interval, Duration::from_secs(5));

    fake.set_device_answer(DeviceAnswer {
        interval: Some(2),
        ..DeviceAnswer::default()
    });
    fake.script_polls(vec![PollStep::Pending, PollStep::Approve]);
    let clock = FakeClock::new();
    let auth = client
        .start_device_login(&clock)
        .await
        .expect("device request");
    assert_eq!(auth.interval, Duration::from_secs(2));
    client
        .poll_for_token(&auth, &clock, &mut |_| {})
        .await
        .expect("approved");
    assert_eq!(clock.sleeps(), secs(&[2, 2]));
}

#[tokio::test]
async fn device_answer_is_exposed_with_a_complete_uri_fallback() {
    let fake = FakeQwen::start().await;
    fake.set_device_answer(DeviceAnswer {
        user_code: "WXYZ-0001".to_owned(),
        expires_in: 300,
        interval: None,
        include_verification_uri_complete: false,
    });
    let auth = client_for(&fake)
        .start_device_login(&FakeClock::new())
        .await
        .expect("device request");
    assert_eq!(auth.user_code, "WXYZ-0001");
    assert_eq!(auth.expires_in, Duration::from_secs(300));
    assert_eq!(
        auth.verification_uri,
        format!("{}/authorize", fake.base_url())
    );
    assert_eq!(
        auth.verification_uri_complete,
        format!("{}/authorize?user_code=WXYZ-0001", fake.base_url())
    );
}

#[tokio::test]
async fn denial_expiry_and_deadline_are_distinct_errors() {
    let fake = FakeQwen::start().await;
    fake.script_polls(vec![PollStep::Pending, PollStep::Denied]);
    let denied = login_with(&fake, &FakeClock::new(), &mut Events::default()).await;
    assert!(matches!(denied, Err(DeviceFlowError::Denied)), "{denied:?}");

    fake.script_polls(vec![PollStep::Expired]);
    let expired = login_with(&fake, &FakeClock::new(), &mut Events::default()).await;
    assert!(
        matches!(expired, Err(DeviceFlowError::Expired)),
        "{expired:?}"
    );
}

#[tokio::test]
async fn deadline_passes_while_pending_in_virtual_time() {
    let fake = FakeQwen::start().await;
    fake.set_device_answer(DeviceAnswer {
        expires_in: 12,
        ..DeviceAnswer::default()
    });
    fake.script_polls(vec![PollStep::Pending]);
    let clock = FakeClock::new();
    let result = login_with(&fake, &clock, &mut Events::default()).await;

    assert!(
        matches!(
            result,
            Err(DeviceFlowError::TimedOut { last_problem: None })
        ),
        "{result:?}"
    );
    assert_eq!(
        clock.sleeps(),
        secs(&[5, 5, 2]),
        "never waits past the deadline"
    );
    assert_eq!(fake.token_requests().len(), 2);
}

#[tokio::test]
async fn firewall_page_while_polling_is_blocked() {
    let fake = FakeQwen::start().await;
    fake.script_polls(vec![PollStep::Pending, PollStep::Html { status: 405 }]);
    let result = login_with(&fake, &FakeClock::new(), &mut Events::default()).await;
    let Err(error @ DeviceFlowError::Blocked { status: 405 }) = result else {
        panic!("expected Blocked, got {result:?}");
    };
    let message = error.to_string();
    assert!(
        message.contains("web page") && message.contains("proxy-url"),
        "{message}"
    );
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff_until_up() {
    let fake = FakeQwen::start().await;
    fake.script_polls(vec![
        PollStep::ServerError(503),
        PollStep::ServerError(503),
        PollStep::Approve,
    ]);
    let clock = FakeClock::new();
    let mut events = Events::default();
    login_with(&fake, &clock, &mut events)
        .await
        .expect("approved after retries");

    assert_eq!(clock.sleeps(), secs(&[5, 10, 20]));
    let retries: Vec<(String, Duration)> = events
        .0
        .iter()
        .filter_map(|event| match event {
            PollEvent::Retrying { reason, retry_in } => Some((reason.clone(), *retry_in)),
            _ => None,
        })
        .collect();
    assert_eq!(retries.len(), 2);
    assert!(retries[0].0.contains("HTTP 503"), "{retries:?}");
    assert_eq!(
        retries.iter().map(|(_, wait)| *wait).collect::<Vec<_>>(),
        secs(&[10, 20])
    );
}

#[tokio::test]
async fn transport_errors_are_retried_until_the_server_is_back() {
    let fake = Arc::new(FakeQwen::start().await);
    let client = client_for(&fake);
    let hooked = Arc::clone(&fake);
    let clock = FakeClock::new().on_sleep(move |index| {
        if index == 1 {
            hooked.set_down(false);
        }
    });
    let auth = client
        .start_device_login(&clock)
        .await
        .expect("device request");
    fake.set_down(true);
    let mut events = Events::default();
    client
        .poll_for_token(&auth, &clock, &mut events.sink())
        .await
        .expect("approved once up");

    assert_eq!(clock.sleeps(), secs(&[5, 10]));
    assert!(events.0.iter().any(|event| matches!(
        event,
        PollEvent::Retrying { reason, .. } if reason.contains("could not reach")
    )));
}

#[tokio::test]
async fn retries_stop_at_the_deadline_and_say_why() {
    let fake = FakeQwen::start().await;
    fake.set_device_answer(DeviceAnswer {
        expires_in: 30,
        ..DeviceAnswer::default()
    });
    fake.script_polls(vec![PollStep::ServerError(500)]);
    let clock = FakeClock::new();
    let result = login_with(&fake, &clock, &mut Events::default()).await;

    assert_eq!(clock.sleeps(), secs(&[5, 10, 15]));
    let Err(
        error @ DeviceFlowError::TimedOut {
            last_problem: Some(_),
        },
    ) = result
    else {
        panic!("expected TimedOut with a problem, got {result:?}");
    };
    assert!(error.to_string().contains("HTTP 500"), "{error}");
}

#[tokio::test]
async fn reused_device_code_is_a_typed_invalid_grant() {
    let fake = FakeQwen::start().await;
    let client = client_for(&fake);
    let clock = FakeClock::new();
    let auth = client
        .start_device_login(&clock)
        .await
        .expect("device request");
    client
        .poll_for_token(&auth, &clock, &mut |_| {})
        .await
        .expect("approved");

    let again = client
        .poll_for_token(&auth, &FakeClock::new(), &mut |_| {})
        .await;
    let Err(DeviceFlowError::Rejected {
        status,
        code,
        description,
    }) = again
    else {
        panic!("expected Rejected, got {again:?}");
    };
    assert_eq!((status, code.as_str()), (400, "invalid_grant"));
    assert_eq!(description.as_deref(), Some("Invalid device_code"));
}

#[tokio::test]
async fn fake_rejects_a_wrong_pkce_verifier_at_the_http_level() {
    let fake = FakeQwen::start().await;
    let issued_for = Pkce::generate().expect("randomness");
    let other = Pkce::generate().expect("randomness");
    let http = reqwest::Client::new();
    let device: serde_json::Value = http
        .post(format!("{}/api/v1/oauth2/device/code", fake.base_url()))
        .header("accept", "application/json")
        .form(&[
            ("client_id", CLIENT_ID),
            ("scope", SCOPE),
            ("code_challenge", issued_for.challenge()),
            ("code_challenge_method", Pkce::METHOD),
        ])
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    let device_code = device["device_code"].as_str().expect("a device code");

    let poll = |verifier: String| {
        http.post(format!("{}/api/v1/oauth2/token", fake.base_url()))
            .header("accept", "application/json")
            .form(&[
                ("grant_type", DEVICE_GRANT),
                ("client_id", CLIENT_ID),
                ("device_code", device_code),
                ("code_verifier", &verifier),
            ])
            .send()
    };
    let wrong = poll(other.verifier().to_owned()).await.expect("answer");
    assert_eq!(wrong.status().as_u16(), 400);
    let body: serde_json::Value = wrong.json().await.expect("json");
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(body["error_description"], "PKCE verification failed");

    let right = poll(issued_for.verifier().to_owned())
        .await
        .expect("answer");
    assert_eq!(right.status().as_u16(), 200);
}

#[tokio::test]
async fn requests_carry_exactly_the_specified_fields() {
    let fake = FakeQwen::start().await;
    login_with(&fake, &FakeClock::new(), &mut Events::default())
        .await
        .expect("approved");
    login_with(&fake, &FakeClock::new(), &mut Events::default())
        .await
        .expect("approved");

    let devices = fake.device_requests();
    let polls = fake.token_requests();
    assert_eq!((devices.len(), polls.len()), (2, 2));
    for (device, poll) in devices.iter().zip(&polls) {
        assert_eq!(
            device.form_names(),
            [
                "client_id",
                "scope",
                "code_challenge",
                "code_challenge_method"
            ]
        );
        assert_eq!(device.form_value("client_id"), Some(CLIENT_ID));
        assert_eq!(device.form_value("scope"), Some(SCOPE));
        assert_eq!(device.form_value("code_challenge_method"), Some("S256"));
        assert_eq!(device.header("accept"), Some("application/json"));
        assert_eq!(
            device.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(device.header("user-agent"), Some("auth-core-tests/1"));
        let request_id = device.header("x-request-id").expect("x-request-id");
        let request_id = uuid::Uuid::parse_str(request_id).expect("a UUID");
        assert_eq!(request_id.get_version_num(), 4);

        assert_eq!(
            poll.form_names(),
            ["grant_type", "client_id", "device_code", "code_verifier"]
        );
        assert_eq!(poll.form_value("grant_type"), Some(DEVICE_GRANT));
        assert_eq!(poll.form_value("client_id"), Some(CLIENT_ID));
        assert_eq!(poll.header("accept"), Some("application/json"));
        let verifier = poll.form_value("code_verifier").expect("a verifier");
        assert_eq!(verifier.len(), 43);
        assert_eq!(
            device.form_value("code_challenge"),
            Some(URL_SAFE_NO_PAD.encode(Sha256::digest(verifier)).as_str())
        );
    }
    assert_ne!(
        devices[0].header("x-request-id"),
        devices[1].header("x-request-id")
    );
    assert_ne!(
        polls[0].form_value("code_verifier"),
        polls[1].form_value("code_verifier")
    );
}

#[tokio::test]
async fn device_request_failures_are_typed() {
    let unreachable = client_at(&format!("http://127.0.0.1:{}", closed_port().await), None)
        .start_device_login(&FakeClock::new())
        .await;
    let Err(error @ DeviceFlowError::Unreachable { .. }) = unreachable else {
        panic!("expected Unreachable, got {unreachable:?}");
    };
    assert!(error.to_string().contains("proxy-url"), "{error}");

    let fake = FakeQwen::start().await;
    let mut profile = auth_core::ProviderProfile::qwen()
        .with_base_url(url::Url::parse(&fake.base_url()).expect("url"));
    profile.client_id = "not-qwen".to_owned();
    let client =
        auth_core::OAuthClient::new(profile, &auth_core::HttpSettings::default()).expect("client");
    let refused = client.start_device_login(&FakeClock::new()).await;
    let Err(DeviceFlowError::Rejected {
        status: 400, code, ..
    }) = refused
    else {
        panic!("expected Rejected, got {refused:?}");
    };
    assert_eq!(code, "invalid_request");
}

#[tokio::test]
async fn dropping_the_poll_future_cancels_the_login() {
    let fake = FakeQwen::start().await;
    fake.script_polls(vec![PollStep::Pending, PollStep::Approve]);
    let client = client_for(&fake);
    let clock = FakeClock::new().stalling_from(1);
    let auth = client
        .start_device_login(&clock)
        .await
        .expect("device request");
    {
        let mut ignore = |_| {};
        let polling = client.poll_for_token(&auth, &clock, &mut ignore);
        tokio::select! {
            result = polling => panic!("the stalled poll cannot finish: {result:?}"),
            () = clock.stalled() => {}
        }
    }
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        fake.token_requests().len(),
        1,
        "nothing polls after the drop"
    );

    let tokens = client
        .poll_for_token(&auth, &FakeClock::new(), &mut |_| {})
        .await
        .expect("a new poll picks up where the login stands");
    assert!(fake.issued_access_token(&tokens.access_token));
}

#[tokio::test]
async fn poll_future_is_send_so_it_can_be_spawned() {
    fn assert_send<T: Send>(value: T) -> T {
        value
    }
    let fake = FakeQwen::start().await;
    let client = client_for(&fake);
    let clock = FakeClock::new();
    let auth = client
        .start_device_login(&clock)
        .await
        .expect("device request");
    let mut sink = |_: PollEvent| {};
    let polling = assert_send(client.poll_for_token(&auth, &clock, &mut sink));
    polling.await.expect("approved");
}

#[tokio::test]
async fn debug_and_errors_never_show_secrets() {
    let fake = FakeQwen::start().await;
    fake.script_polls(vec![PollStep::Approve, PollStep::Denied]);
    let client = client_for(&fake);
    let clock = FakeClock::new();
    let auth = client
        .start_device_login(&clock)
        .await
        .expect("device request");
    let tokens = client
        .poll_for_token(&auth, &clock, &mut |_| {})
        .await
        .expect("approved");
    let poll = &fake.token_requests()[0];
    let secrets = [
        poll.form_value("device_code")
            .expect("device code")
            .to_owned(),
        poll.form_value("code_verifier")
            .expect("verifier")
            .to_owned(),
        tokens.access_token.clone(),
        tokens.refresh_token.clone().expect("refresh token"),
    ];

    let again = client
        .poll_for_token(&auth, &FakeClock::new(), &mut |_| {})
        .await
        .expect_err("the device code is used up");
    let shown = [
        format!("{auth:?}"),
        format!("{tokens:?}"),
        format!("{client:?}"),
        format!("{again:?}"),
        again.to_string(),
    ];
    for text in &shown {
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "{text}");
        }
    }
}

#[tokio::test]
async fn the_code_lifetime_counts_from_the_device_answer() {
    let fake = FakeQwen::start().await;
    fake.set_device_answer(DeviceAnswer {
        expires_in: 30,
        ..DeviceAnswer::default()
    });
    fake.script_polls(vec![PollStep::Pending]);
    let client = client_for(&fake);
    let clock = FakeClock::new();
    let auth = client
        .start_device_login(&clock)
        .await
        .expect("device request");
    assert_eq!(auth.deadline(), clock.now() + Duration::from_secs(30));
    // Ten seconds pass (the user reads the instructions) before polling starts.
    clock.sleep(Duration::from_secs(10)).await;

    let result = client.poll_for_token(&auth, &clock, &mut |_| {}).await;

    assert!(
        matches!(result, Err(DeviceFlowError::TimedOut { .. })),
        "{result:?}"
    );
    assert_eq!(clock.sleeps(), secs(&[10, 5, 5, 5, 5]), "20 s were left");
    assert_eq!(clock.now(), auth.deadline());
}

#[tokio::test]
async fn a_hanging_poll_is_given_up_when_the_code_runs_out() {
    // The code has 1 s left at the first poll; the HTTP timeout alone would wait an hour.
    let server = CannedServer::start(6, 5, TokenAnswer::Hang).await;
    let client = client_with_timeout(&server.url(), Duration::from_secs(3600));
    let clock = FakeClock::new();
    let auth = client
        .start_device_login(&clock)
        .await
        .expect("device request");

    let mut ignore = |_| {};
    let polling = client.poll_for_token(&auth, &clock, &mut ignore);
    let result = tokio::time::timeout(Duration::from_secs(600), polling)
        .await
        .expect("the poll request outlived the device code");

    let Err(DeviceFlowError::TimedOut {
        last_problem: Some(problem),
    }) = &result
    else {
        panic!("expected TimedOut with a problem, got {result:?}");
    };
    assert!(problem.contains("timed out"), "{problem}");
    server.abandoned(1).await;
    assert_eq!(clock.sleeps(), secs(&[5, 1]));
}
