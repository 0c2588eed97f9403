//! `cliproxy serve` against what it must not trust: absurd token lifetimes, redirected and
//! oversized OAuth answers, token files with extreme dates, and an auth dir others can write.

use crate::support::server::{DAY, MODEL, Server, write_account};
use crate::support::{Sandbox, assert_refuses_open_auth_dir, read_json, run, stamp};
use fake_qwen::{ExpiresIn, FakeQwen, RefreshBehaviour, TOKEN_PATH};

/// A refresh answered with `expires_in: 10^13` (and then with a number no integer type holds)
/// neither crashes the refresh nor stores a date past what a token file can hold: the account
/// is taken to live a day, says so in the log, and keeps serving, through the scheduler's
/// refresh and a 401's.
#[tokio::test]
async fn refreshes_answered_with_absurd_lifetimes_keep_the_account_serving() {
    let fake = FakeQwen::start().await;
    fake.set_token_expires_in_answer(ExpiresIn::Json("10000000000000".into()));
    let sandbox = Sandbox::new(&fake);
    // Inside the refresh lead: the scheduler refreshes at once.
    let (path, stored) = write_account(&sandbox, &fake, "dev@example.com", 60);
    let mut server = Server::start(&sandbox, "").await;

    server.wait_for_log("refreshed the access token").await;
    let warning = server.wait_for_log("expires_in").await;
    assert!(
        warning.contains("WARN") && warning.contains("86400 s"),
        "{warning}"
    );
    let saved = read_json(&path);
    assert_eq!(
        stamp(&saved, "expired") - stamp(&saved, "last_refresh"),
        time::Duration::days(1),
        "{saved}"
    );
    let scheduled = fake.issued_tokens().pop().unwrap();
    assert_eq!(saved["access_token"], scheduled.access_token.as_str());
    assert_eq!(server.chat(MODEL, false).await.status(), 200);

    fake.set_token_expires_in_answer(ExpiresIn::Json("184467440737095516160000".into()));
    fake.expire_access_token(&scheduled.access_token);
    let response = server.chat(MODEL, false).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let after_401 = fake.issued_tokens().pop().unwrap();
    assert_ne!(after_401.access_token, scheduled.access_token);
    assert_eq!(
        fake.chat_requests().pop().unwrap().bearer(),
        Some(after_401.access_token.as_str())
    );
    let saved = read_json(&path);
    assert_eq!(
        stamp(&saved, "expired") - stamp(&saved, "last_refresh"),
        time::Duration::days(1),
        "{saved}"
    );
    for line in &server.seen {
        assert!(!line.contains("panicked"), "{line}");
        for token in [&stored.refresh_token, &after_401.refresh_token] {
            assert!(!line.contains(token.as_str()), "{line}");
        }
    }
}

/// RFC 9700: a 307 to a refresh would have the client re-POST the refresh token wherever it
/// points. The server stops at the redirect, logs what to check, sends nothing there, keeps the
/// token file as it was, and the account keeps serving with its access token.
#[tokio::test]
async fn a_redirected_refresh_is_refused_and_the_refresh_token_goes_nowhere_else() {
    let fake = FakeQwen::start().await;
    let elsewhere = FakeQwen::start().await;
    fake.set_refresh(RefreshBehaviour::Redirect {
        status: 307,
        location: format!("{}{TOKEN_PATH}", elsewhere.base_url()),
    });
    let sandbox = Sandbox::new(&fake);
    let (path, stored) = write_account(&sandbox, &fake, "dev@example.com", 60);
    let before = std::fs::read(&path).unwrap();
    let mut server = Server::start(&sandbox, "").await;

    let refused = server.wait_for_log("with a redirect (HTTP 307").await;
    assert!(
        refused.contains(&format!("to {}", elsewhere.base_url())),
        "{refused}"
    );
    assert!(
        refused.contains("the refresh token was not sent there"),
        "{refused}"
    );
    assert!(!refused.contains(&stored.refresh_token), "{refused}");

    assert!(
        elsewhere.token_requests().is_empty(),
        "the redirect's target got nothing"
    );
    assert_eq!(
        fake.token_requests()[0].form_value("refresh_token"),
        Some(stored.refresh_token.as_str()),
        "only the token endpoint saw the refresh token"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "file untouched");
    assert_eq!(server.chat(MODEL, false).await.status(), 200);
    assert_eq!(
        fake.chat_requests().pop().unwrap().bearer(),
        Some(stored.access_token.as_str())
    );
}

/// No OAuth answer is anywhere near 1 MiB: a bigger one (here chunked, so its size shows only
/// while reading) is refused once 1 MiB has been read, and the server goes on serving.
#[tokio::test]
async fn an_oauth_answer_over_one_mebibyte_is_refused() {
    let fake = FakeQwen::start().await;
    fake.set_refresh(RefreshBehaviour::Oversized {
        bytes: 8 << 20,
        chunked: true,
    });
    let sandbox = Sandbox::new(&fake);
    let (path, stored) = write_account(&sandbox, &fake, "dev@example.com", 60);
    let mut server = Server::start(&sandbox, "").await;

    let refused = server.wait_for_log("larger than 1 MiB").await;
    assert!(refused.contains("refresh answer (HTTP 200)"), "{refused}");
    assert_eq!(
        read_json(&path)["access_token"],
        stored.access_token.as_str(),
        "nothing from the oversized answer was saved"
    );
    assert_eq!(server.chat(MODEL, false).await.status(), 200);
}

/// RFC 3339 allows years 0000 to 9999 and offsets up to ±23:59, so a token file can name an
/// instant just past either end of that range in UTC. Such files are served, refreshed and
/// listed like any other.
#[tokio::test]
async fn token_files_with_extreme_dates_are_served_and_listed() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let (late, late_tokens) = write_account(&sandbox, &fake, "late@example.com", DAY);
    let (early, _) = write_account(&sandbox, &fake, "early@example.com", DAY);
    for (path, expired, last_refresh) in [
        (
            &late,
            "9999-12-31T23:59:59.999999999-23:59",
            "0000-01-01T00:00:00+23:59",
        ),
        (&early, "0000-01-01T00:00:00+23:59", "9999-12-31T23:59:59Z"),
    ] {
        let mut json = read_json(path);
        json["expired"] = expired.into();
        json["last_refresh"] = last_refresh.into();
        std::fs::write(path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    }
    let mut server = Server::start(&sandbox, "").await;

    // The early one expired long ago: refreshed at once.
    server.wait_for_log("refreshed the access token").await;
    assert_ne!(read_json(&early)["expired"], "0000-01-01T00:00:00+23:59");
    for _ in 0..4 {
        assert_eq!(server.chat(MODEL, false).await.status(), 200);
    }
    assert!(
        fake.chat_requests()
            .iter()
            .any(|request| request.bearer() == Some(late_tokens.access_token.as_str())),
        "the far-future account serves too"
    );
    let listed = sandbox.run(&["accounts", "list"], "").await.success();
    let row = listed
        .lines()
        .find(|line| line.contains("late@example.com"))
        .expect(&listed);
    assert!(row.contains(" ok"), "{listed}");
    for line in &server.seen {
        assert!(!line.contains("panicked"), "{line}");
    }
}

/// Like ssh's StrictModes: `serve` refuses an auth dir others can write (they could plant an
/// account or replace one), naming the dir and the fix; `strict-permissions = false` starts
/// anyway with a warning.
#[tokio::test]
async fn a_world_writable_auth_dir_is_refused_at_serve_unless_strictness_is_off() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let serve = Server::builder(&sandbox).accounts(&fake, &["dev@example.com"]);
    let dir = sandbox.auth_dir();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();

    let shown = run(serve.command(), "").await.failure(1);
    assert_refuses_open_auth_dir(&shown, &dir);
    assert!(!shown.contains("listening"), "{shown}");

    let mut server = serve.config("strict-permissions = false").start().await;
    let warning = server.wait_for_log("writable by").await;
    assert!(
        warning.contains("WARN") && warning.contains("strict-permissions = false"),
        "{warning}"
    );
    assert_eq!(server.chat(MODEL, false).await.status(), 200);
}
