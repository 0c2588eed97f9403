//! `accounts list`, `logout` and `import qwen-code` end to end through the real binary.

use crate::support::{Sandbox, mode, stamp};
use fake_qwen::FakeQwen;

/// A token file as the Go CLIProxyAPI writes it.
const GO_FILE: &str = r#"{
  "access_token": "go-access-token",
  "refresh_token": "go-refresh-token",
  "last_refresh": "2026-11-20T09:15:42+08:00",
  "resource_url": "portal.qwen.ai",
  "email": "gopher@example.com",
  "type": "qwen",
  "expired": "2099-01-01T00:00:00.123456+08:00"
}"#;

#[tokio::test]
async fn go_cliproxyapi_files_are_listed() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    std::fs::create_dir_all(sandbox.auth_dir()).unwrap();
    std::fs::write(
        sandbox.auth_dir().join("qwen-gopher@example.com.json"),
        GO_FILE,
    )
    .unwrap();

    let listed = sandbox.run(&["accounts", "list"], "").await.success();

    let row = listed
        .lines()
        .find(|l| l.contains("gopher@example.com"))
        .expect(&listed);
    assert!(row.contains("qwen-gopher@example.com.json"), "{row}");
    assert!(row.contains(" ok"), "{row}");
    assert!(listed.starts_with("NAME"), "{listed}");
    assert!(!listed.contains("go-access-token"), "{listed}");
}

#[tokio::test]
async fn listing_reports_bad_files_and_tightens_open_ones() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let dir = sandbox.auth_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let open_file = dir.join("qwen-gopher@example.com.json");
    std::fs::write(&open_file, GO_FILE).unwrap();
    std::fs::set_permissions(
        &open_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    std::fs::write(dir.join("qwen-broken.json"), "{ not json").unwrap();

    let listed = sandbox.run(&["accounts", "list"], "").await.success();

    assert!(listed.contains("gopher@example.com"), "{listed}");
    assert!(listed.contains("skipped qwen-broken.json"), "{listed}");
    assert!(listed.contains("tightened"), "{listed}");
    assert_eq!(mode(&open_file), 0o600);
}

#[tokio::test]
async fn empty_auth_dir_says_how_to_add_an_account() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);

    let listed = sandbox.run(&["accounts", "list"], "").await.success();

    assert!(listed.contains("cliproxy login qwen"), "{listed}");
}

#[tokio::test]
async fn logout_removes_the_account_file() {
    let fake = crate::support::fake_qwen().await;
    let sandbox = Sandbox::new(&fake);
    sandbox
        .run(
            &[
                "login",
                "qwen",
                "--no-browser",
                "--email",
                "dev@example.com",
            ],
            "",
        )
        .await
        .success();

    let removed = sandbox
        .run(&["logout", "DEV@example.com"], "")
        .await
        .success();
    assert!(removed.contains("Removed"), "{removed}");
    assert!(sandbox.token_files().is_empty());

    let shown = sandbox
        .run(&["logout", "dev@example.com"], "")
        .await
        .failure(1);
    assert!(
        shown.contains("no account with email dev@example.com"),
        "{shown}"
    );
}

#[tokio::test]
async fn qwen_code_credentials_import_with_their_expiry() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let qwen_dir = sandbox.home.path().join(".qwen");
    std::fs::create_dir_all(&qwen_dir).unwrap();
    // Two hours from now, to the millisecond, as Qwen Code writes it.
    let expiry = time::OffsetDateTime::now_utc()
        .replace_nanosecond(123_000_000)
        .unwrap()
        + time::Duration::hours(2);
    let expiry_ms = expiry.unix_timestamp() * 1000 + 123;
    std::fs::write(
        qwen_dir.join("oauth_creds.json"),
        format!(
            r#"{{"access_token":"qc-access","token_type":"Bearer","refresh_token":"qc-refresh",
            "resource_url":"portal.qwen.ai","expiry_date":{expiry_ms}}}"#
        ),
    )
    .unwrap();

    let run = sandbox
        .run(&["import", "qwen-code"], "coder@example.com\n")
        .await;
    let out = run.success();

    assert!(out.contains("coder@example.com"), "{out}");
    let (path, json) = sandbox.only_token_file();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(json["access_token"], "qc-access");
    assert_eq!(json["refresh_token"], "qc-refresh");
    assert_eq!(json["resource_url"], "portal.qwen.ai");
    assert_eq!(json["email"], "coder@example.com");
    assert_eq!(stamp(&json, "expired"), expiry, "{json}");
    assert!(!run.stderr().contains("WARN"), "{}", run.stderr());
}

/// Qwen Code writes `expiry_date` as now plus the server's `expires_in`: an absurd answer gives
/// a date centuries away, or past any date type. The import still works, holds the expiry to a
/// day from now (so the server refreshes the token in time) and says so.
#[tokio::test]
async fn an_absurd_qwen_code_expiry_is_held_to_a_day() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let qwen_dir = sandbox.home.path().join(".qwen");
    std::fs::create_dir_all(&qwen_dir).unwrap();
    for expiry_date in ["10000001755673445123", "1e300", "4102444800000"] {
        std::fs::write(
            qwen_dir.join("oauth_creds.json"),
            format!(
                r#"{{"access_token":"qc-access","refresh_token":"qc-refresh","expiry_date":{expiry_date}}}"#
            ),
        )
        .unwrap();
        let before = time::OffsetDateTime::now_utc();

        let run = sandbox
            .run(&["import", "qwen-code", "--email", "coder@example.com"], "")
            .await;
        run.success();

        let after = time::OffsetDateTime::now_utc();
        let (_, json) = sandbox.only_token_file();
        let expired = stamp(&json, "expired");
        let day = time::Duration::days(1);
        assert!(
            before + day <= expired && expired <= after + day,
            "{expiry_date}: {json}"
        );
        let shown = run.stderr();
        assert!(
            shown.contains("WARN") && shown.contains("expiry_date"),
            "{expiry_date}: {shown}"
        );
        assert!(
            !shown.contains("qc-access") && !shown.contains("qc-refresh"),
            "{shown}"
        );
    }
}

#[tokio::test]
async fn import_refuses_an_auth_dir_others_can_write() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let qwen_dir = sandbox.home.path().join(".qwen");
    std::fs::create_dir_all(&qwen_dir).unwrap();
    std::fs::write(
        qwen_dir.join("oauth_creds.json"),
        r#"{"access_token":"qc-access","refresh_token":"qc-refresh"}"#,
    )
    .unwrap();
    let dir = sandbox.auth_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o770)).unwrap();

    let args = ["import", "qwen-code", "--email", "coder@example.com"];
    let shown = sandbox.run(&args, "").await.failure(1);

    assert!(
        shown.contains(&format!(
            "the auth dir {} is writable by its group (mode 0770)",
            dir.display()
        )),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("chmod 700 {}", dir.display())),
        "{shown}"
    );
    assert!(sandbox.token_files().is_empty());

    let mut relaxed = sandbox.command(&args);
    relaxed.env("CLIPROXY_STRICT_PERMISSIONS", "false");
    let run = crate::support::run(relaxed, "").await;
    run.success();
    assert!(
        run.stderr().contains("writable by its group"),
        "{}",
        run.stderr()
    );
    assert_eq!(sandbox.only_token_file().1["access_token"], "qc-access");
}

/// Waits until a lock call blocks on the lock file at `lock_path` (a `->` entry for its inode
/// in `/proc/locks`); fails if `child` exits first.
async fn wait_until_blocked_on(lock_path: &std::path::Path, child: &mut tokio::process::Child) {
    use std::os::unix::fs::MetadataExt as _;
    let suffix = format!(":{}", std::fs::metadata(lock_path).unwrap().ino());
    let blocked = async {
        loop {
            let locks = std::fs::read_to_string("/proc/locks").expect("/proc/locks");
            if locks.lines().any(|line| {
                line.contains("->") && line.split_whitespace().any(|f| f.ends_with(&suffix))
            }) {
                return;
            }
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!("the command ended ({status}) without waiting for the held lock");
            }
            // Polls the kernel's lock table; the pause only spares the CPU.
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    };
    // Not a synchronisation: only turns a hang into a failure.
    tokio::time::timeout(std::time::Duration::from_secs(120), blocked)
        .await
        .expect("the command blocked on the lock within 2 minutes");
}

/// A token file whose name has the email but whose JSON has none (the Go tool's files, or
/// ones edited by hand) locks under the email's key, the lock `logout EMAIL` takes: while
/// another holder (a server refreshing it) has the file's lock, logout waits for it.
#[tokio::test]
async fn logout_waits_for_the_lock_of_a_file_with_the_email_only_in_its_name() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let dir = sandbox.auth_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("qwen-Dev@Example.com-1700000000.json");
    std::fs::write(
        &path,
        r#"{"type":"qwen","access_token":"a","refresh_token":"r"}"#,
    )
    .unwrap();
    let store = token_store::AuthDir::open(&dir).unwrap();
    let account = store.list().unwrap().accounts.remove(0);
    let held = store.lock_account(&account.key()).unwrap();

    let mut logout = sandbox
        .command(&["logout", "dev@example.com"])
        .spawn()
        .expect("spawn logout");
    wait_until_blocked_on(held.lock_path(), &mut logout).await;
    assert!(path.exists(), "nothing removed while the lock is held");
    drop(held);
    let output = logout.wait_with_output().await.expect("logout ends");

    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("Removed {}", path.display())),
        "{stdout}"
    );
    assert!(sandbox.token_files().is_empty());
}

#[tokio::test]
async fn import_messages_speak_of_the_import() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let qwen_dir = sandbox.home.path().join(".qwen");
    std::fs::create_dir_all(&qwen_dir).unwrap();
    let creds = qwen_dir.join("oauth_creds.json");
    std::fs::write(&creds, r#"{"access_token":"qc-access"}"#).unwrap();

    let run = sandbox.run(&["import", "qwen-code"], "bad\n\n").await;
    let shown = run.failure(2);
    assert!(
        shown.contains("Enter the email of the Qwen account Qwen Code is logged in to."),
        "{shown}"
    );
    assert!(
        shown.contains("EmailRequiredError")
            && shown.contains("Run `cliproxy import qwen-code` again"),
        "{shown}"
    );
    assert!(
        !shown.contains("just approved") && !shown.contains("login"),
        "{shown}"
    );

    std::fs::write(&creds, r#"{"expiry_date":1}"#).unwrap();
    let shown = sandbox
        .run(&["import", "qwen-code", "--email", "a@b.co"], "")
        .await
        .failure(1);
    assert!(
        shown.contains(&format!(
            "cannot import Qwen Code's credentials {}",
            creds.display()
        )),
        "{shown}"
    );
    assert!(
        shown.contains("no access_token or refresh_token"),
        "{shown}"
    );
    assert!(
        shown.contains("cliproxy login qwen"),
        "says what to do: {shown}"
    );
    assert!(sandbox.token_files().is_empty());
}

#[tokio::test]
async fn import_without_qwen_code_credentials_says_where_it_looked() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);

    let shown = sandbox
        .run(&["import", "qwen-code", "--email", "a@b.co"], "")
        .await
        .failure(1);

    assert!(shown.contains("oauth_creds.json"), "{shown}");
}

#[tokio::test]
async fn unknown_config_key_is_named_with_its_file() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let config = sandbox.home.path().join("cliproxy.toml");
    std::fs::write(&config, "auth-dri = \"/tmp/x\"\n").unwrap();

    let args = ["--config", config.to_str().unwrap(), "accounts", "list"];
    let shown = sandbox.run(&args, "").await.failure(1);

    assert!(
        shown.contains("auth-dri") && shown.contains("cliproxy.toml"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_bad_number_in_the_environment_says_what_it_should_be() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let mut command = sandbox.command(&["accounts", "list"]);
    command.env("CLIPROXY_PORT", "eighty");

    let shown = crate::support::run(command, "").await.failure(1);

    assert!(
        shown.contains(
            "environment variable CLIPROXY_PORT=\"eighty\" is not valid: give a port number from 0 to 65535, or unset it"
        ),
        "{shown}"
    );
}
