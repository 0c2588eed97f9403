//! `cliproxy login qwen` end to end: the real binary against the fake Qwen.

mod support;

use fake_qwen::{DeviceAnswer, FakeQwen, PollStep};
use support::{Sandbox, mode};
use tokio::io::{AsyncBufReadExt as _, BufReader};

const EMAIL: &str = "dev@example.com";

fn login_args() -> [&'static str; 3] {
    ["login", "qwen", "--no-browser"]
}

#[tokio::test]
async fn login_writes_a_private_token_file_named_after_the_email() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);

    let run = sandbox.run(&login_args(), "Dev@Example.com\n").await;
    let stdout = run.success();

    let (path, json) = sandbox.only_token_file();
    let name = path.file_name().unwrap().to_str().unwrap();
    let stamp = name
        .strip_prefix("qwen-dev@example.com-")
        .and_then(|rest| rest.strip_suffix(".json"))
        .unwrap_or_else(|| panic!("unexpected file name {name}"));
    assert!(stamp.parse::<u64>().is_ok(), "timestamp in {name}");
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&sandbox.auth_dir()), 0o700);

    let issued = fake.issued_tokens();
    assert_eq!(issued.len(), 1);
    assert_eq!(json["type"], "qwen");
    assert_eq!(json["email"], EMAIL);
    assert_eq!(json["access_token"], issued[0].access_token.as_str());
    assert_eq!(json["refresh_token"], issued[0].refresh_token.as_str());
    assert_eq!(json["token_type"], "Bearer");
    assert_eq!(json["resource_url"], fake.resource_url().as_str());
    for stamp_field in ["expired", "last_refresh"] {
        let value = json[stamp_field].as_str().expect(stamp_field);
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| panic!("{stamp_field} is RFC 3339: {value}"));
    }

    assert!(stdout.contains(EMAIL) && stdout.contains(name), "{stdout}");
    let shown = run.stderr();
    assert!(
        shown.contains("/authorize?user_code=QWEN-1234"),
        "full URL shown: {shown}"
    );
    assert!(shown.contains("QWEN-1234"), "{shown}");
    assert!(shown.contains("Enter your Qwen account email:"), "{shown}");
    assert!(
        !shown.contains(&issued[0].access_token),
        "token leaked to the terminal"
    );
    assert!(
        !stdout.contains(&issued[0].access_token),
        "token leaked to the terminal"
    );
}

#[tokio::test]
async fn pending_polls_continue_until_approval() {
    let fake = FakeQwen::start().await;
    fake.script_polls(vec![
        PollStep::Pending,
        PollStep::Pending,
        PollStep::Approve,
    ]);
    let sandbox = Sandbox::new(&fake);

    sandbox
        .run(&login_args(), "dev@example.com\n")
        .await
        .success();

    assert_eq!(fake.token_requests().len(), 3);
    sandbox.only_token_file();
}

#[tokio::test]
async fn slow_down_on_400_and_429_each_add_five_seconds() {
    let fake = FakeQwen::start().await;
    fake.script_polls(vec![
        PollStep::SlowDown400,
        PollStep::Pending,
        PollStep::SlowDown429,
        PollStep::Approve,
    ]);
    let sandbox = Sandbox::new(&fake);

    let run = sandbox.run(&login_args(), "dev@example.com\n").await;
    run.success();

    let shown = run.stderr();
    assert!(shown.contains("now checking every 10 s"), "{shown}");
    assert!(shown.contains("now checking every 15 s"), "{shown}");
}

#[tokio::test]
async fn denial_ends_the_login_and_writes_nothing() {
    let fake = FakeQwen::start().await;
    fake.script_polls(vec![PollStep::Pending, PollStep::Denied]);
    let sandbox = Sandbox::new(&fake);

    let shown = sandbox
        .run(&login_args(), "dev@example.com\n")
        .await
        .failure(1);

    assert!(shown.contains("denied"), "{shown}");
    assert!(sandbox.token_files().is_empty());
}

#[tokio::test]
async fn expired_code_ends_the_login_and_writes_nothing() {
    let fake = FakeQwen::start().await;
    fake.script_polls(vec![PollStep::Expired]);
    let sandbox = Sandbox::new(&fake);

    let shown = sandbox
        .run(&login_args(), "dev@example.com\n")
        .await
        .failure(1);

    assert!(shown.contains("expired"), "{shown}");
    assert!(sandbox.token_files().is_empty());
}

#[tokio::test]
async fn approval_deadline_passing_times_out() {
    let fake = FakeQwen::start().await;
    fake.set_device_answer(DeviceAnswer {
        expires_in: 12,
        ..DeviceAnswer::default()
    });
    fake.script_polls(vec![PollStep::Pending]);
    let sandbox = Sandbox::new(&fake);

    let shown = sandbox
        .run(&login_args(), "dev@example.com\n")
        .await
        .failure(1);

    assert!(
        shown.contains("not approved") || shown.contains("timed out"),
        "{shown}"
    );
    assert!(sandbox.token_files().is_empty());
}

#[tokio::test]
async fn firewall_page_is_a_clear_error() {
    let fake = FakeQwen::start().await;
    fake.script_polls(vec![PollStep::Html { status: 405 }]);
    let sandbox = Sandbox::new(&fake);

    let shown = sandbox
        .run(&login_args(), "dev@example.com\n")
        .await
        .failure(1);

    assert!(shown.contains("firewall"), "{shown}");
    assert!(!shown.contains("panicked"), "{shown}");
    assert!(sandbox.token_files().is_empty());
}

#[tokio::test]
async fn server_errors_are_retried_until_it_is_back() {
    let fake = FakeQwen::start().await;
    fake.script_polls(vec![
        PollStep::ServerError(503),
        PollStep::ServerError(502),
        PollStep::Approve,
    ]);
    let sandbox = Sandbox::new(&fake);

    let run = sandbox.run(&login_args(), "dev@example.com\n").await;
    run.success();

    assert!(run.stderr().contains("retrying"), "{}", run.stderr());
    sandbox.only_token_file();
}

#[tokio::test]
async fn unreachable_server_says_what_to_check() {
    let fake = FakeQwen::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut sandbox = Sandbox::new(&fake);
    sandbox.oauth_base_url = closed_url;

    let shown = sandbox
        .run(&login_args(), "dev@example.com\n")
        .await
        .failure(1);

    assert!(
        shown.contains("could not reach") || shown.contains("Could not reach"),
        "{shown}"
    );
    assert!(sandbox.token_files().is_empty());
}

#[tokio::test]
async fn invalid_email_is_explained_then_a_valid_one_is_accepted() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);

    let run = sandbox
        .run(&login_args(), "dev at example.com\ndev@example.com\n")
        .await;
    run.success();

    assert!(
        run.stderr().contains("not a valid email"),
        "{}",
        run.stderr()
    );
    assert_eq!(
        fake.issued_tokens().len(),
        1,
        "one authorization, not a second login"
    );
    sandbox.only_token_file();
}

#[tokio::test]
async fn three_invalid_emails_fail_with_usage_exit_code() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);

    let shown = sandbox
        .run(&login_args(), "a\nb@c\nd e@f.g\n")
        .await
        .failure(2);

    assert!(shown.contains("invalid email format"), "{shown}");
    assert!(sandbox.token_files().is_empty());
}

#[tokio::test]
async fn missing_email_is_email_required_error() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);

    for stdin in ["", "\n"] {
        let shown = sandbox.run(&login_args(), stdin).await.failure(2);
        assert!(shown.contains("EmailRequiredError"), "{shown}");
    }
    assert!(sandbox.token_files().is_empty());
}

#[tokio::test]
async fn email_flag_skips_the_prompt() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);

    let run = sandbox
        .run(&["login", "qwen", "--no-browser", "--email", EMAIL], "")
        .await;
    run.success();

    assert!(!run.stderr().contains("Enter your Qwen account email"));
    assert_eq!(sandbox.only_token_file().1["email"], EMAIL);
}

#[tokio::test]
async fn logging_the_same_email_in_again_replaces_its_file() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);

    sandbox
        .run(&login_args(), "dev@example.com\n")
        .await
        .success();
    let (first, _) = sandbox.only_token_file();
    std::fs::rename(
        &first,
        sandbox.auth_dir().join("qwen-dev@example.com-1.json"),
    )
    .unwrap();
    let second = sandbox.run(&login_args(), "DEV@example.com\n").await;
    second.success();

    let (_, json) = sandbox.only_token_file();
    assert_eq!(
        json["access_token"],
        fake.issued_tokens()[1].access_token.as_str()
    );
    assert!(
        second.stdout().contains("Replaced the previous login"),
        "{}",
        second.stdout()
    );
}

#[tokio::test]
async fn legacy_go_spellings_log_in() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let other_dir = sandbox.home.path().join("legacy-auth");

    let args = [
        "-qwen-login",
        "-no-browser",
        "-auth-dir",
        other_dir.to_str().unwrap(),
    ];
    sandbox.run(&args, "dev@example.com\n").await.success();

    let saved = std::fs::read_dir(&other_dir)
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|e| e == "json")
        })
        .count();
    assert_eq!(saved, 1, "the -auth-dir given was used");
    let run = sandbox
        .run(&["--qwen-login", "--no-browser"], "dev@example.com\n")
        .await;
    run.success();
    sandbox.only_token_file();
}

#[tokio::test]
async fn callback_port_is_accepted_with_a_note() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);

    let args = [
        "login",
        "qwen",
        "--no-browser",
        "--oauth-callback-port",
        "8085",
    ];
    let run = sandbox.run(&args, "dev@example.com\n").await;
    run.success();

    assert!(
        run.stderr().contains("--oauth-callback-port is not needed"),
        "{}",
        run.stderr()
    );
}

#[tokio::test]
async fn browser_opens_unless_told_not_to() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let opened = sandbox.home.path().join("opened-url");
    let fifo = std::process::Command::new("mkfifo")
        .arg(&opened)
        .status()
        .unwrap();
    assert!(fifo.success());
    let browser = sandbox.home.path().join("browser.sh");
    let script = format!(
        "#!/bin/sh\necho \"$1\" >> {log}\nprintf '%s' \"$1\" > {fifo}\n",
        log = sandbox.home.path().join("opened-log").display(),
        fifo = opened.display()
    );
    std::fs::write(&browser, script).unwrap();
    std::fs::set_permissions(
        &browser,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    let mut no_browser = sandbox.command(&login_args());
    no_browser.env("BROWSER", &browser);
    support::run(no_browser, "dev@example.com\n")
        .await
        .success();
    let opened_log = sandbox.home.path().join("opened-log");
    assert!(!opened_log.exists(), "--no-browser must not open a browser");

    let mut with_browser = sandbox.command(&["login", "qwen"]);
    with_browser.env("BROWSER", &browser);
    let run = support::run(with_browser, "dev@example.com\n").await;
    run.success();
    assert!(
        run.stderr().contains("--no-browser"),
        "says how to stop it: {}",
        run.stderr()
    );
    let url = read_fifo(&opened).await;
    assert!(url.contains("/authorize?user_code=QWEN-1234"), "{url}");
}

#[tokio::test]
async fn headless_login_says_no_browser_was_opened() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);

    let run = sandbox.run(&["login", "qwen"], "dev@example.com\n").await;
    run.success();

    assert!(
        run.stderr().contains("No display found"),
        "{}",
        run.stderr()
    );
}

#[tokio::test]
async fn unwritable_auth_dir_fails_before_asking_for_approval() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let blocker = sandbox.home.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let auth_dir = blocker.join("auth");

    let args = [
        "login",
        "qwen",
        "--no-browser",
        "--auth-dir",
        auth_dir.to_str().unwrap(),
    ];
    let shown = sandbox.run(&args, "dev@example.com\n").await.failure(1);

    assert!(
        shown.contains(auth_dir.to_str().unwrap()),
        "names the path: {shown}"
    );
    assert!(fake.device_requests().is_empty(), "no login was started");
}

#[tokio::test]
async fn ctrl_c_while_waiting_cancels_cleanly() {
    let fake = FakeQwen::start().await;
    fake.script_polls(vec![PollStep::Pending]);
    let sandbox = Sandbox::new(&fake);
    let mut child = sandbox.command(&login_args()).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();

    let mut shown = String::new();
    while let Some(line) = stderr.next_line().await.unwrap() {
        shown.push_str(&line);
        shown.push('\n');
        if line.contains("Waiting for you to approve") {
            break;
        }
    }
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    while let Some(line) = stderr.next_line().await.unwrap() {
        shown.push_str(&line);
        shown.push('\n');
    }
    let status = child.wait().await.unwrap();

    assert_eq!(status.code(), Some(130), "{shown}");
    assert!(shown.contains("cancelled"), "{shown}");
    assert!(sandbox.token_files().is_empty());
}

/// Reads what the fake browser writes into the FIFO at `path`: blocks until it writes.
async fn read_fifo(path: &std::path::Path) -> String {
    let path = path.to_owned();
    let read = tokio::task::spawn_blocking(move || std::fs::read_to_string(path));
    tokio::time::timeout(std::time::Duration::from_secs(60), read)
        .await
        .expect("the browser was never started")
        .unwrap()
        .unwrap()
}
