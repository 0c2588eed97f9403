//! The HTTP settings: the proxy carries every request, and bad proxies fail clearly.

use auth_core::{
    ClientBuildError, DeviceFlowError, HttpSettings, OAuthClient, ProviderProfile, RefreshError,
    TransientCause,
};
use fake_qwen::{FakeQwen, PollStep, RefreshBehaviour, TOKEN_PATH};

use crate::support::{FakeClock, RecordingProxy, client_at, client_for, closed_port};

#[tokio::test]
async fn every_request_goes_through_the_proxy() {
    let fake = FakeQwen::start().await;
    fake.script_polls(vec![PollStep::Pending, PollStep::Approve]);
    let proxy = RecordingProxy::start().await;
    let client = client_at(&fake.base_url(), Some(proxy.url()));

    let clock = FakeClock::new();
    let auth = client
        .start_device_login(&clock)
        .await
        .expect("device request via proxy");
    let tokens = client
        .poll_for_token(&auth, &clock, &mut |_| {})
        .await
        .expect("approved via proxy");
    client
        .refresh(tokens.refresh_token.as_deref().expect("refresh token"))
        .await
        .expect("refreshed via proxy");

    let device = format!(
        "POST {}/api/v1/oauth2/device/code HTTP/1.1",
        fake.base_url()
    );
    let token = format!("POST {}/api/v1/oauth2/token HTTP/1.1", fake.base_url());
    assert_eq!(
        proxy.request_lines(),
        [device, token.clone(), token.clone(), token]
    );
    assert_eq!(fake.token_requests().len(), 3);
}

#[tokio::test]
async fn a_dead_proxy_makes_requests_unreachable_while_direct_ones_work() {
    let fake = FakeQwen::start().await;
    let stored = fake.mint_tokens();
    let dead_proxy = Some(format!("http://127.0.0.1:{}", closed_port().await));
    let via_dead_proxy = client_at(&fake.base_url(), dead_proxy);

    let login = via_dead_proxy.start_device_login(&FakeClock::new()).await;
    let Err(error @ DeviceFlowError::Unreachable { .. }) = login else {
        panic!("expected Unreachable, got {login:?}");
    };
    assert!(
        error.to_string().contains("through the configured proxy"),
        "{error}"
    );
    let refresh = via_dead_proxy.refresh(&stored.refresh_token).await;
    assert!(
        matches!(
            refresh,
            Err(RefreshError::Transient {
                cause: TransientCause::Unreachable { .. }
            })
        ),
        "{refresh:?}"
    );
    assert!(fake.device_requests().is_empty() && fake.token_requests().is_empty());

    assert!(
        client_for(&fake)
            .start_device_login(&FakeClock::new())
            .await
            .is_ok()
    );
}

#[test]
fn bad_proxy_settings_are_typed_errors_without_passwords() {
    let build = |proxy: &str| {
        OAuthClient::new(
            ProviderProfile::qwen(),
            &HttpSettings {
                proxy_url: Some(proxy.to_owned()),
                ..HttpSettings::default()
            },
        )
    };
    assert!(build("socks5://127.0.0.1:1080").is_ok());
    assert!(matches!(
        build("ftp://user:secret@127.0.0.1:21"),
        Err(ClientBuildError::UnsupportedProxyScheme { .. })
    ));
    let invalid = build("http://user:secret@").expect_err("no host");
    assert!(
        matches!(invalid, ClientBuildError::InvalidProxyUrl { .. }),
        "{invalid:?}"
    );
    assert!(!invalid.to_string().contains("secret"), "{invalid}");
    assert!(!format!("{invalid:?}").contains("secret"));
}

/// RFC 9700 §4.11: a 307 tells a client to repeat its POST, refresh token included, wherever
/// the `Location` points. The client must stop at the redirect instead.
#[tokio::test]
async fn a_redirected_refresh_is_refused_and_not_followed() {
    let fake = FakeQwen::start().await;
    let elsewhere = FakeQwen::start().await;
    let stored = fake.mint_tokens();
    let client = client_for(&fake);
    for status in [307, 308, 302, 301] {
        fake.set_refresh(RefreshBehaviour::Redirect {
            status,
            location: format!("{}{TOKEN_PATH}?from=redirect", elsewhere.base_url()),
        });
        let error = client
            .refresh(&stored.refresh_token)
            .await
            .expect_err("a redirect is no token answer");
        let RefreshError::Redirected {
            status: answered,
            target,
        } = &error
        else {
            panic!("expected Redirected, got {error:?}");
        };
        assert_eq!(*answered, status);
        assert_eq!(*target, elsewhere.base_url(), "the origin only");
        let message = error.to_string();
        assert!(message.contains("was not sent there"), "{message}");
        assert!(!message.contains("from=redirect"), "{message}");
        assert!(!error.is_retryable() && !error.needs_relogin());
    }
    assert!(
        elsewhere.token_requests().is_empty(),
        "the refresh token never reached the redirect's target"
    );
    assert_eq!(fake.token_requests().len(), 4);
}

#[tokio::test]
async fn an_answer_over_one_mebibyte_is_refused_unread() {
    let fake = FakeQwen::start().await;
    let client = client_for(&fake);
    for chunked in [false, true] {
        let stored = fake.mint_tokens();
        fake.set_refresh(RefreshBehaviour::Oversized {
            bytes: 1 << 20,
            chunked,
        });
        let error = client
            .refresh(&stored.refresh_token)
            .await
            .expect_err("too large");
        assert!(
            matches!(error, RefreshError::AnswerTooLarge { status: 200 }),
            "{error:?}"
        );
        assert!(error.to_string().contains("larger than 1 MiB"), "{error}");
    }
    // Just under the limit is read as usual.
    let stored = fake.mint_tokens();
    fake.set_refresh(RefreshBehaviour::Oversized {
        bytes: (1 << 20) - 4096,
        chunked: true,
    });
    client
        .refresh(&stored.refresh_token)
        .await
        .expect("an answer under 1 MiB is read");
}
