//! `accounts list`, `logout` and `import qwen-code` end to end through the real binary.

use crate::support::{Sandbox, mode};
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
    assert!(listed.starts_with("EMAIL"), "{listed}");
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
    std::fs::write(
        qwen_dir.join("oauth_creds.json"),
        r#"{"access_token":"qc-access","token_type":"Bearer","refresh_token":"qc-refresh",
            "resource_url":"portal.qwen.ai","expiry_date":4102444800000}"#,
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
    assert!(
        json["expired"]
            .as_str()
            .unwrap()
            .starts_with("2100-01-01T00:00:00"),
        "{json}"
    );
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
