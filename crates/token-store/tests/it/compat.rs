//! Interoperability: files written by the Go CLIProxyAPI, web logins
//! without an email, and Qwen Code's own credentials file.

use std::fs;
use std::path::Path;

use time::macros::datetime;
use token_store::{
    AccountKey, AuthDir, BadFileReason, StoreError, default_qwen_code_creds_path,
    read_qwen_code_creds,
};

use crate::support::{assert_child_passed, auth_dir, read_json, rerun, temp};

/// What Go CLIProxyAPI's QwenTokenStorage writes (its key order, its time format).
const GO_FILE: &str = r#"{
  "access_token": "go-access-token",
  "refresh_token": "go-refresh-token",
  "last_refresh": "2025-08-20T15:04:05+08:00",
  "resource_url": "portal.qwen.ai",
  "email": "Alice@Example.com",
  "type": "qwen",
  "expired": ""
}"#;

const GO_FILE_FRACTIONAL: &str = r#"{
  "access_token": "go-access-token-2",
  "refresh_token": "go-refresh-token-2",
  "last_refresh": "2025-08-20T15:04:05.123456789+08:00",
  "resource_url": "portal.qwen.ai",
  "email": "bob@example.com",
  "type": "qwen",
  "expired": "2025-08-20T21:04:05.5-07:00"
}"#;

/// A web login: named after the unix milliseconds, no email.
const WEB_LOGIN: &str = r#"{
  "access_token": "web-access",
  "refresh_token": "web-refresh",
  "last_refresh": "2024-08-20T10:00:00Z",
  "resource_url": "portal.qwen.ai",
  "email": "",
  "type": "qwen",
  "expired": "2024-08-20T16:00:00Z"
}"#;

#[test]
fn go_cliproxyapi_files_load() {
    let (root, dir) = auth_dir();
    let plain = root.path().join("qwen-Alice@Example.com.json");
    let fractional = root.path().join("qwen-bob@example.com.json");
    fs::write(&plain, GO_FILE).expect("write");
    fs::write(&fractional, GO_FILE_FRACTIONAL).expect("write");

    let listing = dir.list().expect("list");
    assert!(listing.problems.is_empty(), "{:?}", listing.problems);
    assert_eq!(listing.accounts.len(), 2);
    let alice = &listing.accounts[0].record;
    assert_eq!(alice.email.as_deref(), Some("Alice@Example.com"));
    assert_eq!(alice.access_token, "go-access-token");
    assert_eq!(alice.refresh_token.as_deref(), Some("go-refresh-token"));
    assert_eq!(alice.expired, None);
    assert_eq!(alice.last_refresh, Some(datetime!(2025-08-20 07:04:05 UTC)));
    assert_eq!(alice.resource_url.as_deref(), Some("portal.qwen.ai"));
    assert_eq!(listing.accounts[0].key().as_str(), "qwen-alice@example.com");
    let bob = &listing.accounts[1].record;
    assert_eq!(bob.expired, Some(datetime!(2025-08-21 04:04:05.5 UTC)));
    assert_eq!(
        bob.last_refresh,
        Some(datetime!(2025-08-20 07:04:05.123456789 UTC))
    );

    dir.update(&plain, |r| {
        r.expired = Some(datetime!(2025-09-01 00:00 UTC))
    })
    .expect("update");
    let json = read_json(&plain);
    assert_eq!(json["expired"], "2025-09-01T00:00:00Z");
    assert_eq!(json["last_refresh"], "2025-08-20T15:04:05+08:00");
}

#[test]
fn web_login_without_email_loads_with_the_file_stem_as_key() {
    let (root, dir) = auth_dir();
    let path = root.path().join("qwen-1724150000000.json");
    fs::write(&path, WEB_LOGIN).expect("write");
    let account = dir.load(&path).expect("load");
    assert_eq!(account.record.email, None);
    assert_eq!(account.key().as_str(), "qwen-1724150000000");
    assert_eq!(
        AccountKey::for_record(&account.record, &path).to_string(),
        "qwen-1724150000000"
    );
    assert!(account.record.is_expired_at(datetime!(2025-01-01 0:00 UTC)));
    let updated = dir
        .update(&path, |r| r.access_token = "refreshed".into())
        .expect("update under the stem key");
    assert_eq!(updated.access_token, "refreshed");
}

#[test]
fn qwen_code_creds_import_then_save() {
    let root = temp();
    let creds = root.path().join("oauth_creds.json");
    fs::write(
        &creds,
        r#"{"access_token":"qc-access","token_type":"Bearer","refresh_token":"qc-refresh",
           "resource_url":"portal.qwen.ai","expiry_date":1755673445999}"#,
    )
    .expect("write");
    let mut record = read_qwen_code_creds(&creds).expect("import");
    assert_eq!(record.provider, "qwen");
    assert_eq!(record.email, None);
    assert_eq!(record.access_token, "qc-access");
    assert_eq!(record.refresh_token.as_deref(), Some("qc-refresh"));
    assert_eq!(record.expired, Some(datetime!(2025-08-20 07:04:05.999 UTC)));

    let dir = AuthDir::open(root.path().join("auth")).expect("open");
    record.email = Some("qc@example.com".into());
    let path = dir
        .save_login(&record, datetime!(2025-08-20 07:00 UTC))
        .expect("save")
        .path;
    assert_eq!(dir.load(&path).expect("load").record, record);
}

#[test]
fn qwen_code_creds_errors() {
    let root = temp();
    let missing = root.path().join("nope.json");
    let message = read_qwen_code_creds(&missing)
        .expect_err("missing")
        .to_string();
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
    assert!(message.contains("Qwen Code"), "{message}");
    let empty = root.path().join("empty.json");
    fs::write(&empty, r#"{"expiry_date":1}"#).expect("write");
    let error = read_qwen_code_creds(&empty).expect_err("no token");
    let message = error.to_string();
    assert!(
        matches!(&error, StoreError::InvalidQwenCodeCreds(bad) if bad.reason == BadFileReason::MissingToken),
        "{error:?}"
    );
    assert!(message.contains("Qwen Code's credentials"), "{message}");
    assert!(
        message.contains("cliproxy login qwen"),
        "says what to do: {message}"
    );
}

/// Set (to the expected path, or `none`) when this binary re-runs
/// [`default_creds_path_child`] with a `HOME` of the parent's choosing.
const HOME_CHILD_ENV: &str = "TOKEN_STORE_TEST_EXPECTED_CREDS_PATH";

#[test]
fn default_creds_path_is_under_home() {
    let home = temp();
    let expected = home.path().join(".qwen/oauth_creds.json");
    let cases = [
        (
            Some(home.path().as_os_str()),
            expected.to_str().expect("utf-8"),
        ),
        (Some(std::ffi::OsStr::new("")), "none"),
        (None, "none"),
    ];
    for (home, expected) in cases {
        let mut child = rerun(module_path!(), "default_creds_path_child");
        child.env(HOME_CHILD_ENV, expected);
        match home {
            Some(home) => child.env("HOME", home),
            None => child.env_remove("HOME"),
        };
        let output = child.output().expect("re-run the test binary");
        assert_child_passed(&output, &format!("HOME={home:?}"));
    }
}

/// Does nothing in a normal run; [`default_creds_path_is_under_home`] re-runs this binary with
/// only this test, a chosen `HOME` and [`HOME_CHILD_ENV`] set.
#[test]
fn default_creds_path_child() {
    let Some(expected) = std::env::var_os(HOME_CHILD_ENV) else {
        return;
    };
    let found = default_qwen_code_creds_path();
    if expected == "none" {
        assert_eq!(found, None);
    } else {
        assert_eq!(found.as_deref(), Some(Path::new(&expected)));
    }
}
