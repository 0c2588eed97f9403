//! `cliproxy login qwen` end to end: the real binary against the fake Qwen.

use crate::support::{Sandbox, assert_refuses_open_auth_dir, fake_qwen, mode};
use fake_qwen::{DeviceAnswer, ExpiresIn, PollStep};
use tokio::io::{AsyncBufReadExt as _, BufReader};

const EMAIL: &str = "dev@example.com";

fn login_args() -> [&'static str; 3] {
    ["login", "qwen", "--no-browser"]
}

#[tokio::test]
async fn login_writes_a_private_token_file_named_after_the_email() {
    let fake = fake_qwen().await;
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
        shown.contains("No browser was opened (--no-browser): open the URL on any device."),
        "{shown}"
    );
    assert!(
        !shown.contains("QR") && !shown.contains("code expires in"),
        "no QR code or countdown without a terminal: {shown}"
    );
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
    let fake = fake_qwen().await;
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
    let fake = fake_qwen().await;
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
    let fake = fake_qwen().await;
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
    let fake = fake_qwen().await;
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
    let fake = fake_qwen().await;
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
    let fake = fake_qwen().await;
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
    let fake = fake_qwen().await;
    fake.script_polls(vec![
        PollStep::ServerError(503),
        PollStep::ServerError(502),
        PollStep::Approve,
    ]);
    let sandbox = Sandbox::new(&fake);

    let run = sandbox.run(&login_args(), "dev@example.com\n").await;
    run.success();

    let shown = run.stderr();
    assert!(
        shown.contains(
            "Checking for approval failed (the login server failed with HTTP 503); retrying in"
        ),
        "{shown}"
    );
    assert!(
        !shown.contains("Could not reach"),
        "the server did answer: {shown}"
    );
    sandbox.only_token_file();
}

#[tokio::test]
async fn unreachable_server_says_what_to_check() {
    let fake = fake_qwen().await;
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
    let fake = fake_qwen().await;
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
    let fake = fake_qwen().await;
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
    let fake = fake_qwen().await;
    let sandbox = Sandbox::new(&fake);

    for stdin in ["", "\n"] {
        let shown = sandbox.run(&login_args(), stdin).await.failure(2);
        assert!(shown.contains("EmailRequiredError"), "{shown}");
    }
    assert!(sandbox.token_files().is_empty());
}

#[tokio::test]
async fn email_flag_skips_the_prompt() {
    let fake = fake_qwen().await;
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
    let fake = fake_qwen().await;
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
    let fake = fake_qwen().await;
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
    let fake = fake_qwen().await;
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
    let fake = fake_qwen().await;
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
    crate::support::run(no_browser, "dev@example.com\n")
        .await
        .success();
    let opened_log = sandbox.home.path().join("opened-log");
    assert!(!opened_log.exists(), "--no-browser must not open a browser");

    let mut with_browser = sandbox.command(&["login", "qwen"]);
    with_browser.env("BROWSER", &browser);
    let run = crate::support::run(with_browser, "dev@example.com\n").await;
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
    let fake = fake_qwen().await;
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
    let fake = fake_qwen().await;
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
    let fake = fake_qwen().await;
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

#[tokio::test]
async fn an_email_the_store_cannot_save_is_asked_for_again() {
    let fake = fake_qwen().await;
    let sandbox = Sandbox::new(&fake);

    let run = sandbox
        .run(&login_args(), "a..b@example.com\nok@example.com\n")
        .await;
    let stdout = run.success();

    let shown = run.stderr();
    assert!(
        shown.contains("That is not a valid email: it contains `..`"),
        "{shown}"
    );
    assert_eq!(fake.issued_tokens().len(), 1, "one authorization");
    let (path, json) = sandbox.only_token_file();
    assert_eq!(json["email"], "ok@example.com");
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("qwen-ok@example.com-"), "{name}");
    assert!(stdout.contains("ok@example.com"), "{stdout}");
}

#[tokio::test]
async fn an_email_flag_the_store_cannot_save_fails_before_the_login() {
    let fake = fake_qwen().await;
    let sandbox = Sandbox::new(&fake);

    let args = [
        "login",
        "qwen",
        "--no-browser",
        "--email",
        "x..y@example.com",
    ];
    let shown = sandbox.run(&args, "").await.failure(2);

    assert!(
        shown.contains("invalid email format (it contains `..`"),
        "{shown}"
    );
    assert!(fake.device_requests().is_empty(), "no login was started");
    assert!(sandbox.token_files().is_empty());
}

#[tokio::test]
async fn an_entry_that_is_not_utf8_is_asked_for_again() {
    let fake = fake_qwen().await;
    let sandbox = Sandbox::new(&fake);

    let run = sandbox
        .run_bytes(&login_args(), b"d\xffv@example.com\nok@example.com\n")
        .await;
    run.success();

    assert!(run.stderr().contains("it is not text"), "{}", run.stderr());
    assert_eq!(fake.issued_tokens().len(), 1, "one authorization");
    assert_eq!(sandbox.only_token_file().1["email"], "ok@example.com");
}

#[tokio::test]
async fn token_lifetime_counts_from_the_approval_not_from_the_email() {
    const TOKEN_LIFETIME_SECS: i64 = 3600;
    let fake = fake_qwen().await;
    fake.set_token_expires_in(TOKEN_LIFETIME_SECS.unsigned_abs());
    let sandbox = Sandbox::new(&fake);
    let started = time::OffsetDateTime::now_utc();
    let mut login = sandbox.spawn(&login_args());

    login.wait_for("Enter your Qwen account email:").await;
    let asked = time::OffsetDateTime::now_utc();
    login.write("dev@example.com\n").await;
    let finished = login.finish().await;

    assert_eq!(finished.code, Some(0), "{}", finished.shown);
    let (_, json) = sandbox.only_token_file();
    let stamp = |field: &str| {
        let text = json[field].as_str().expect(field);
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .expect("RFC 3339")
    };
    let lifetime = time::Duration::seconds(TOKEN_LIFETIME_SECS);
    assert!(
        started <= stamp("last_refresh") && stamp("last_refresh") <= asked,
        "last_refresh {} is when the tokens arrived, before the prompt at {asked}",
        stamp("last_refresh")
    );
    assert!(
        stamp("expired") <= asked + lifetime,
        "expired {} counts from the approval, not from the email typed after {asked}",
        stamp("expired")
    );
    assert_eq!(stamp("expired") - stamp("last_refresh"), lifetime);
}

#[tokio::test]
async fn relogin_reports_a_replaced_go_style_file_whatever_its_case() {
    let fake = fake_qwen().await;
    let sandbox = Sandbox::new(&fake);
    std::fs::create_dir_all(sandbox.auth_dir()).unwrap();
    let go_file = sandbox.auth_dir().join("qwen-Dev@Example.com.json");
    std::fs::write(
        &go_file,
        r#"{"type":"qwen","email":"Dev@Example.com","access_token":"go-access"}"#,
    )
    .unwrap();

    let stdout = sandbox
        .run(&login_args(), "dev@example.com\n")
        .await
        .success();

    assert!(
        stdout.contains(&format!(
            "Replaced the previous login {}",
            go_file.display()
        )),
        "{stdout}"
    );
    assert!(!go_file.exists());
    assert_eq!(
        sandbox.only_token_file().1["access_token"],
        fake.issued_tokens()[0].access_token.as_str()
    );
}

#[tokio::test]
async fn a_failing_system_opener_is_reported_not_claimed_as_opened() {
    for (exit_code, expected) in [
        (
            3,
            "Could not open a browser (xdg-open exited with status 3): open the URL yourself",
        ),
        (
            0,
            "Opened the URL in your browser (pass --no-browser to stop this).",
        ),
    ] {
        let fake = fake_qwen().await;
        fake.script_polls(vec![PollStep::Pending]);
        let sandbox = Sandbox::new(&fake);
        let bin = sandbox.home.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let opener = bin.join("xdg-open");
        std::fs::write(&opener, format!("#!/bin/sh\nexit {exit_code}\n")).unwrap();
        std::fs::set_permissions(&opener, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = sandbox.command(&["login", "qwen"]);
        command.env("PATH", path).env("DISPLAY", ":99");
        let mut login = crate::support::Running::spawn(command);

        login.wait_for(expected).await;
        fake.script_polls(vec![PollStep::Approve]);
        login.wait_for("Enter your Qwen account email:").await;
        login.write("dev@example.com\n").await;
        let finished = login.finish().await;

        assert_eq!(finished.code, Some(0), "{}", finished.shown);
        if exit_code != 0 {
            assert!(
                !finished.shown.contains("Opened the URL"),
                "{}",
                finished.shown
            );
        }
        sandbox.only_token_file();
    }
}

#[tokio::test]
async fn a_terminal_gets_a_qr_code_and_a_live_countdown() {
    let fake = fake_qwen().await;
    fake.script_polls(vec![PollStep::Pending]);
    let sandbox = Sandbox::new(&fake);
    let mut login = sandbox.spawn_in_terminal(&login_args());

    login.wait_for("Or scan it with your phone:").await;
    login.wait_for("code expires in").await;
    fake.script_polls(vec![PollStep::Approve]);
    login.wait_for("Enter your Qwen account email:").await;
    login.write("dev@example.com\n").await;
    let finished = login.finish().await;

    assert_eq!(finished.code, Some(0), "{}", finished.shown);
    let shown = finished.shown;
    let qr_rows = shown
        .lines()
        .skip_while(|line| !line.contains("Or scan it with your phone:"))
        .skip(1)
        .take_while(|line| {
            let line = line.trim_end_matches('\r');
            !line.is_empty() && line.chars().all(|c| matches!(c, '█' | '▀' | '▄' | ' '))
        })
        .count();
    assert!(qr_rows >= 13, "a QR code of at least 25 modules: {shown}");
    let countdown = shown
        .split("Waiting for approval... code expires in ")
        .nth(1)
        .expect("a countdown");
    let (minutes, rest) = countdown.split_once(':').expect("minutes:seconds");
    assert!(
        minutes.parse::<u32>().is_ok() && rest[..2].parse::<u32>().is_ok(),
        "the countdown shows the time left: {shown}"
    );
    assert!(shown.contains("(Ctrl-C to cancel)"), "{shown}");
    sandbox.only_token_file();
}

#[tokio::test]
async fn ctrl_c_at_the_email_prompt_exits_at_once() {
    let fake = fake_qwen().await;
    let sandbox = Sandbox::new(&fake);
    let mut login = sandbox.spawn(&login_args());

    login.wait_for("Enter your Qwen account email:").await;
    let killed = std::process::Command::new("kill")
        .args(["-INT", &login.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // stdin stays open: the process must not wait for a line that never comes.
    let finished = login.finish_keeping_stdin().await;

    assert_eq!(finished.code, Some(130), "{}", finished.shown);
    assert!(
        finished.shown.contains("login cancelled"),
        "{}",
        finished.shown
    );
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

/// The lifetimes a login takes from `expires_in` answers a server should never give: 10^13 s,
/// a number no integer type holds, negative, zero, missing and not a number. None crashes the
/// login; each is saved as a lifetime within 60 s to 24 h (missing or unreadable: 1 h) and
/// logged as a warning that shows no token.
#[tokio::test]
async fn absurd_token_lifetimes_are_clamped_at_login_and_logged() {
    const MIN: i64 = 60;
    const DEFAULT: i64 = 3600;
    const MAX: i64 = 86_400;
    for (answer, saved_secs) in [
        (ExpiresIn::Json("10000000000000".into()), MAX),
        (ExpiresIn::Json("184467440737095516160000".into()), MAX),
        (ExpiresIn::Json("-5".into()), MIN),
        (ExpiresIn::Json("0".into()), MIN),
        (ExpiresIn::Missing, DEFAULT),
        (ExpiresIn::Json(r#""soon""#.into()), DEFAULT),
    ] {
        let fake = fake_qwen().await;
        fake.set_token_expires_in_answer(answer.clone());
        let sandbox = Sandbox::new(&fake);

        let run = sandbox
            .run(&["login", "qwen", "--no-browser", "--email", EMAIL], "")
            .await;
        run.success();

        let (_, json) = sandbox.only_token_file();
        let stamp = |field: &str| {
            let text = json[field].as_str().expect(field);
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .expect("RFC 3339")
        };
        assert_eq!(
            stamp("expired") - stamp("last_refresh"),
            time::Duration::seconds(saved_secs),
            "{answer:?}: {json}"
        );
        let shown = run.stderr();
        let warning = shown
            .lines()
            .find(|line| line.contains("WARN") && line.contains("expires_in"))
            .unwrap_or_else(|| panic!("{answer:?}: no warning in {shown}"));
        assert!(
            warning.contains(&format!("{saved_secs} s")),
            "{answer:?}: {warning}"
        );
        let issued = &fake.issued_tokens()[0];
        assert!(!shown.contains(&issued.access_token), "{shown}");
        assert!(!shown.contains(&issued.refresh_token), "{shown}");
        assert!(!shown.contains("panicked"), "{shown}");
    }
}

#[tokio::test]
async fn an_answer_within_range_logs_no_warning() {
    let fake = fake_qwen().await;
    fake.set_token_expires_in_answer(ExpiresIn::Json("7200.5".into()));
    let sandbox = Sandbox::new(&fake);

    let run = sandbox
        .run(&["login", "qwen", "--no-browser", "--email", EMAIL], "")
        .await;
    run.success();

    assert!(!run.stderr().contains("WARN"), "{}", run.stderr());
}

/// Like ssh's StrictModes: an auth dir others can write is refused before anything is asked
/// of Qwen, unless `strict-permissions = false` (file or environment) turns the refusal into a
/// warning. The environment beats the file.
#[tokio::test]
async fn a_world_writable_auth_dir_is_refused_at_login_unless_strictness_is_off() {
    let fake = fake_qwen().await;
    let sandbox = Sandbox::new(&fake);
    let dir = sandbox.auth_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let relaxed = sandbox.home.path().join("relaxed.toml");
    std::fs::write(&relaxed, "strict-permissions = false\n").unwrap();
    let args = |config: Option<&std::path::Path>| {
        let mut args: Vec<String> = Vec::new();
        if let Some(config) = config {
            args.extend(["--config".to_owned(), config.display().to_string()]);
        }
        args.extend(["login", "qwen", "--no-browser", "--email", EMAIL].map(str::to_owned));
        args
    };
    let run = |args: Vec<String>, env: Option<&'static str>| {
        let mut command = sandbox.command(&args.iter().map(String::as_str).collect::<Vec<_>>());
        if let Some(value) = env {
            command.env("CLIPROXY_STRICT_PERMISSIONS", value);
        }
        crate::support::run(command, "")
    };

    for (config, env) in [(None, None), (Some(relaxed.as_path()), Some("true"))] {
        let shown = run(args(config), env).await.failure(1);
        assert_refuses_open_auth_dir(&shown, &dir);
        assert!(fake.device_requests().is_empty(), "no login was started");
        assert!(sandbox.token_files().is_empty());
    }

    for (config, env) in [(Some(relaxed.as_path()), None), (None, Some("false"))] {
        let login = run(args(config), env).await;
        login.success();
        let shown = login.stderr();
        let warning = shown
            .lines()
            .find(|line| line.contains("WARN") && line.contains("writable by"))
            .unwrap_or_else(|| panic!("no warning: {shown}"));
        assert!(warning.contains("strict-permissions = false"), "{warning}");
        assert_eq!(sandbox.only_token_file().1["email"], EMAIL);
    }
    assert_eq!(mode(&dir), 0o777, "cliproxy does not change the dir's mode");
}
