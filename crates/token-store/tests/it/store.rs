//! Behaviour of the auth dir: creation, saving logins, updates, listing,
//! permissions, crash leftovers, removal and error messages.

use std::fs::{self, File, FileTimes, Permissions};
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde_json::json;
use time::OffsetDateTime;
use time::macros::datetime;
use token_store::{AccountKey, AuthDir, BadFileReason, StoreError, login_file_name};

use crate::support::{
    NOW, assert_child_passed, auth_dir, login, mode, read_json, rerun, saved, temp,
};

const LATER: OffsetDateTime = datetime!(2025-08-21 07:04:05 UTC);

fn file_names(dir: &AuthDir) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

#[test]
fn open_creates_missing_dir_and_parents_0700() {
    let root = temp();
    let path = root.path().join("a/b/auth");
    let dir = AuthDir::open(&path).expect("open");
    assert_eq!(dir.path(), path);
    assert_eq!(mode(&path), 0o700);
    assert_eq!(mode(&root.path().join("a/b")), 0o700);
    assert_eq!(mode(&root.path().join("a")), 0o700);
}

#[test]
fn open_leaves_existing_dir_mode_alone() {
    let root = temp();
    fs::set_permissions(root.path(), Permissions::from_mode(0o755)).expect("chmod");
    AuthDir::open(root.path()).expect("open");
    assert_eq!(mode(root.path()), 0o755);
}

#[test]
fn only_dirs_no_one_else_can_write_are_private() {
    let root = temp();
    let path = root.path().join("auth dir");
    let dir = AuthDir::open(&path).expect("open");
    dir.check_private().expect("a new dir is 0700");
    for private in [0o700, 0o750, 0o755, 0o711, 0o500] {
        fs::set_permissions(&path, Permissions::from_mode(private)).expect("chmod");
        dir.check_private()
            .unwrap_or_else(|error| panic!("{private:o}: {error}"));
    }
    for (open, who) in [
        (0o777, "its group and all users"),
        (0o1777, "its group and all users"),
        (0o770, "its group"),
        (0o775, "its group"),
        (0o702, "all users"),
    ] {
        fs::set_permissions(&path, Permissions::from_mode(open)).expect("chmod");
        let error = dir.check_private().expect_err("writable by others");
        assert!(
            matches!(&error, StoreError::WritableByOthers { path: p, mode } if *p == path && *mode == open),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.starts_with(&format!(
                "the auth dir {} is writable by {who} (mode {open:04o})",
                path.display()
            )),
            "{message}"
        );
        assert!(
            message.contains(&format!("`chmod 700 '{}'`", path.display())),
            "{message}"
        );
    }
    fs::set_permissions(&path, Permissions::from_mode(0o700)).expect("chmod");

    let shared = root.path().join("shared");
    fs::create_dir(&shared).expect("mkdir");
    fs::set_permissions(&shared, Permissions::from_mode(0o777)).expect("chmod");
    let link = root.path().join("link");
    std::os::unix::fs::symlink(&shared, &link).expect("symlink");
    let error = AuthDir::open(&link)
        .expect("open")
        .check_private()
        .expect_err("a link to an open dir is as open as the dir");
    assert!(
        error
            .to_string()
            .contains(&format!("`chmod 700 {}`", link.display())),
        "{error}"
    );
}

#[test]
fn open_under_a_regular_file_names_the_path() {
    let root = temp();
    let blocker = root.path().join("blocker");
    fs::write(&blocker, "not a dir").expect("write");
    let path = blocker.join("auth");
    let error = AuthDir::open(&path).expect_err("cannot create under a file");
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(
        message.contains("is a regular file, not a directory"),
        "{message}"
    );
    let error = AuthDir::open(&blocker).expect_err("a file is not a dir");
    assert!(
        matches!(&error, StoreError::Io { error, .. } if error.kind() == std::io::ErrorKind::NotADirectory),
        "{error:?}"
    );
}

#[test]
fn save_login_writes_private_file_with_name_and_keys() {
    let (_root, dir) = auth_dir();
    let path = saved(&dir, "Alice@Example.com", "tok-a");
    assert_eq!(
        path.file_name().and_then(|n| n.to_str()),
        Some("qwen-alice@example.com-1755673445.json")
    );
    assert_eq!(
        login_file_name("Alice@Example.com", NOW).expect("name"),
        "qwen-alice@example.com-1755673445.json"
    );
    assert_eq!(mode(&path), 0o600);
    let json = read_json(&path);
    let keys: Vec<&str> = json
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "type",
            "email",
            "access_token",
            "refresh_token",
            "token_type",
            "resource_url",
            "expired",
            "last_refresh"
        ]
    );
    assert_eq!(json["type"], "qwen");
    assert_eq!(json["email"], "Alice@Example.com");
    assert_eq!(json["access_token"], "tok-a");
    assert_eq!(json["expired"], "2025-08-20T13:04:05+06:00");
    assert_eq!(json["last_refresh"], "2025-08-20T07:04:05Z");
    let text = fs::read_to_string(&path).expect("read");
    assert!(
        text.contains("\n  \"type\": \"qwen\""),
        "pretty JSON: {text}"
    );
    assert_eq!(
        dir.load(&path).expect("load").record,
        login("Alice@Example.com", "tok-a")
    );
}

#[test]
fn relogin_replaces_the_old_file_whatever_the_case() {
    let (_root, dir) = auth_dir();
    let first = dir.save_login(&login("a@b.com", "old"), NOW).expect("save");
    assert!(first.replaced.is_empty(), "{:?}", first.replaced);
    let second = dir
        .save_login(&login("A@B.COM", "new"), LATER)
        .expect("save");
    assert!(!first.path.exists());
    assert_eq!(second.replaced, [first.path]);
    assert_eq!(file_names(&dir), ["qwen-a@b.com-1755759845.json"]);
    assert_eq!(
        dir.load(&second.path).expect("load").record.access_token,
        "new"
    );
    let again = dir
        .save_login(&login("a@b.com", "newest"), LATER)
        .expect("same second");
    assert_eq!(again.path, second.path);
    assert!(
        again.replaced.is_empty(),
        "a file overwritten in place is not reported as replaced"
    );
    let again = again.path;
    assert_eq!(file_names(&dir).len(), 1);
    assert_eq!(
        dir.load(&again).expect("load").record.access_token,
        "newest"
    );
}

#[test]
fn relogin_replaces_go_style_files_and_keeps_their_unknown_fields() {
    let (root, dir) = auth_dir();
    let go_file = root.path().join("qwen-A@b.com.json");
    fs::write(
        &go_file,
        r#"{"access_token":"go","refresh_token":"go-r","last_refresh":"","resource_url":"portal.qwen.ai","email":"A@b.com","type":"qwen","expired":"","label":"work"}"#,
    )
    .expect("write");
    let emailless = root.path().join("qwen-a@b.com-1700000000.json");
    fs::write(
        &emailless,
        r#"{"type":"qwen","access_token":"x","disabled":false}"#,
    )
    .expect("write");
    let other = root.path().join("qwen-c@d.com.json");
    fs::write(
        &other,
        r#"{"type":"qwen","email":"c@d.com","access_token":"c"}"#,
    )
    .expect("write");
    let web = root.path().join("qwen-1724150000000.json");
    fs::write(&web, r#"{"type":"qwen","access_token":"w"}"#).expect("write");

    let mut record = login("a@b.com", "fresh");
    record.extra.insert("label".into(), "personal".into());
    let saved = dir.save_login(&record, NOW).expect("save");
    let path = saved.path;

    assert_eq!(saved.replaced, [go_file, emailless], "sorted by path");
    assert_eq!(
        file_names(&dir),
        [
            "qwen-1724150000000.json",
            "qwen-a@b.com-1755673445.json",
            "qwen-c@d.com.json"
        ]
    );
    let json = read_json(&path);
    assert_eq!(json["label"], "personal", "the new record's own extra wins");
    assert_eq!(
        json["disabled"], false,
        "unknown fields of replaced files carry over"
    );
    assert_eq!(json["access_token"], "fresh");
}

#[test]
fn save_login_refuses_unusable_records() {
    let (_root, dir) = auth_dir();
    let mut record = login("a@b.com", "t");
    record.email = None;
    assert!(matches!(
        dir.save_login(&record, NOW),
        Err(StoreError::MissingEmail)
    ));
    record.email = Some("../../etc/passwd".into());
    let error = dir.save_login(&record, NOW).expect_err("unsafe");
    assert!(matches!(error, StoreError::UnsafeEmail { .. }), "{error}");
    record.email = Some("a@b.com".into());
    record.access_token.clear();
    record.refresh_token = None;
    assert!(matches!(
        dir.save_login(&record, NOW),
        Err(StoreError::InvalidRecord(BadFileReason::MissingToken))
    ));
    assert!(file_names(&dir).is_empty());
}

#[test]
fn update_keeps_unknown_fields_and_rereads_the_file() {
    let (root, dir) = auth_dir();
    let path = root.path().join("qwen-a@b.com.json");
    fs::write(
        &path,
        r#"{"type":"qwen","email":"a@b.com","access_token":"old","nested":{"k":[1,2,3]},"note":"keep me"}"#,
    )
    .expect("write");
    let written = dir
        .update(&path, |r| {
            r.access_token = "new".into();
            r.expired = Some(LATER);
        })
        .expect("update");
    assert_eq!(written.access_token, "new");
    let json = read_json(&path);
    assert_eq!(json["nested"], json!({"k": [1, 2, 3]}));
    assert_eq!(json["note"], "keep me");
    assert_eq!(json["access_token"], "new");
    assert_eq!(json["expired"], "2025-08-21T07:04:05Z");
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn update_cannot_move_a_file_to_another_account() {
    let (_root, dir) = auth_dir();
    let path = saved(&dir, "a@b.com", "t");
    let error = dir
        .update(&path, |r| r.email = Some("x@y.com".into()))
        .expect_err("account change");
    assert!(matches!(error, StoreError::WrongLock { .. }), "{error}");
    assert_eq!(
        dir.load(&path).expect("load").record.email.as_deref(),
        Some("a@b.com")
    );
}

#[test]
fn update_of_a_replaced_file_is_not_found() {
    let (_root, dir) = auth_dir();
    let old = saved(&dir, "a@b.com", "t");
    dir.save_login(&login("a@b.com", "u"), LATER).expect("save");
    let error = dir.update(&old, |_| {}).expect_err("gone");
    assert!(
        matches!(&error, StoreError::Io { error, .. } if error.kind() == std::io::ErrorKind::NotFound),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("list the auth dir again"),
        "{error}"
    );
}

#[test]
fn listing_reports_bad_files_by_name_and_loads_the_good_ones() {
    let (root, dir) = auth_dir();
    let good = saved(&dir, "a@b.com", "good-secret");
    let files = [
        (
            "broken.json",
            r#"{"type":"qwen","access_token":"broken-secret""#,
        ),
        (
            "empty.json",
            r#"{"type":"qwen","access_token":"","refresh_token":""}"#,
        ),
        ("other.json", r#"{"type":"gemini","access_token":"t"}"#),
        ("untyped.json", r#"{"access_token":"t"}"#),
        ("list.json", "[]"),
        (".hidden.json", "garbage"),
        (".qwen-x.tmp", "garbage"),
        ("notes.txt", "garbage"),
        ("qwen-a@b.com.json.bak", "garbage"),
    ];
    for (name, text) in files {
        fs::write(root.path().join(name), text).expect("write");
    }
    fs::create_dir(root.path().join("sub.json")).expect("subdir");
    fs::write(root.path().join("sub.json/inner.json"), "garbage").expect("write");

    let listing = dir.list().expect("list");
    let paths: Vec<&PathBuf> = listing.accounts.iter().map(|a| &a.path).collect();
    assert_eq!(paths, [&good]);
    let problems: Vec<String> = listing.problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 5, "{problems:?}");
    assert!(
        problems[0].starts_with("broken.json: invalid JSON: EOF"),
        "{problems:?}"
    );
    assert_eq!(problems[1], "empty.json: no access_token or refresh_token");
    assert_eq!(
        problems[2],
        "list.json: invalid JSON: the top level is not a JSON object"
    );
    assert_eq!(problems[3], "other.json: unknown type \"gemini\"");
    assert_eq!(problems[4], "untyped.json: missing \"type\"");
    assert_eq!(
        listing.problems[3].reason,
        BadFileReason::UnknownType("gemini".into())
    );
    let debug = format!("{listing:?}");
    assert!(!debug.contains("secret"), "{debug}");
    assert!(!problems.concat().contains("secret"));
}

#[test]
fn listing_tightens_files_open_to_others() {
    let (_root, dir) = auth_dir();
    let path = saved(&dir, "a@b.com", "t");
    fs::set_permissions(&path, Permissions::from_mode(0o644)).expect("chmod");
    let listing = dir.list().expect("list");
    assert_eq!(listing.tightened, std::slice::from_ref(&path));
    assert_eq!(listing.accounts.len(), 1);
    assert_eq!(mode(&path), 0o600);
    assert!(dir.list().expect("list").tightened.is_empty());
}

#[test]
fn crash_leftovers_are_ignored_and_stale_ones_removed() {
    let (root, dir) = auth_dir();
    let good = saved(&dir, "a@b.com", "t");
    let before = fs::read(&good).expect("read");
    let fresh_tmp = root.path().join(".qwen-x.tmp");
    fs::write(&fresh_tmp, r#"{"type":"qwen","access_tok"#).expect("write");
    let stale_tmp = root.path().join(".abc123.tmp");
    fs::write(&stale_tmp, "{").expect("write");
    let two_hours_ago = SystemTime::now() - Duration::from_secs(2 * 60 * 60);
    File::options()
        .write(true)
        .open(&stale_tmp)
        .expect("open")
        .set_times(FileTimes::new().set_modified(two_hours_ago))
        .expect("set mtime");

    let listing = dir.list().expect("list");
    assert_eq!(listing.accounts.len(), 1);
    assert!(listing.problems.is_empty(), "{:?}", listing.problems);
    assert_eq!(fs::read(&good).expect("read"), before);
    assert!(
        fresh_tmp.exists(),
        "a recent temp file may belong to a write in progress"
    );
    assert!(!stale_tmp.exists());
}

#[test]
fn write_errors_name_the_path_and_what_to_do() {
    let root = temp();
    let dir = AuthDir::open(root.path().join("auth")).expect("open");
    let blocker = root.path().join("blocker");
    fs::write(&blocker, "a file").expect("write");
    let target = blocker.join("qwen-a@b.com.json");
    let record = login("a@b.com", "secret-token");
    let lock = dir
        .lock_account(&AccountKey::for_record(&record, &target))
        .expect("lock");
    let error = lock.write(&target, &record).expect_err("parent is a file");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "could not write token file {}: ",
            target.display()
        )),
        "{message}"
    );
    assert!(message.contains("--auth-dir"), "{message}");
    assert!(!message.contains("secret-token"), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");
}

/// Set when this binary re-runs [`permission_denied_names_the_path`] as an unprivileged user.
const UNPRIVILEGED_ENV: &str = "TOKEN_STORE_TEST_UNPRIVILEGED";
/// The user and group `nobody`, which file modes apply to.
const NOBODY: u32 = 65_534;

#[test]
fn permission_denied_names_the_path() {
    let (root, dir) = auth_dir();
    fs::create_dir(root.path().join(".locks")).expect("locks dir");
    fs::set_permissions(root.path(), Permissions::from_mode(0o500)).expect("chmod");
    let modes_apply = File::create(root.path().join("probe")).is_err();
    let result = dir.save_login(&login("a@b.com", "t"), NOW);
    fs::set_permissions(root.path(), Permissions::from_mode(0o700)).expect("chmod back");
    if !modes_apply {
        assert!(
            std::env::var_os(UNPRIVILEGED_ENV).is_none(),
            "file modes do not apply even as uid {NOBODY}"
        );
        // root (CI runs as root) ignores file modes: run this test again as `nobody`, for
        // whom the read-only dir really refuses the write.
        rerun_unprivileged("permission_denied_names_the_path");
        return;
    }
    let message = result.expect_err("read-only dir").to_string();
    let target = root.path().join("qwen-a@b.com-1755673445.json");
    assert!(message.contains(&target.display().to_string()), "{message}");
    assert!(message.contains("permission denied"), "{message}");
    assert!(message.contains("writable by this user"), "{message}");
}

/// Runs the test `name` of this module as user `nobody` and asserts that it passed.
fn rerun_unprivileged(name: &str) {
    use std::os::unix::process::CommandExt as _;
    let spawned = rerun(module_path!(), name)
        .arg("--nocapture")
        .env(UNPRIVILEGED_ENV, "1")
        .uid(NOBODY)
        .gid(NOBODY)
        .output();
    let output = match spawned {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
            println!(
                "SKIPPED {name}: file modes do not apply to this user, and it cannot switch to uid {NOBODY} ({error})"
            );
            return;
        }
        Err(error) => panic!("could not re-run this test binary as uid {NOBODY}: {error}"),
    };
    assert_child_passed(&output, &format!("as uid {NOBODY}"));
}

#[test]
fn remove_account_removes_every_file_of_that_email() {
    let (root, dir) = auth_dir();
    let new = saved(&dir, "a@b.com", "t");
    let go = root.path().join("qwen-A@B.com.json");
    fs::write(
        &go,
        r#"{"type":"qwen","email":"A@B.com","access_token":"t"}"#,
    )
    .expect("write");
    let keep = saved(&dir, "c@d.com", "t");
    let bad = root.path().join("qwen-a@b.com-1.json");
    fs::write(&bad, "{").expect("write");

    let removed = dir.remove_account("A@b.com").expect("remove");
    assert_eq!(removed, [go, new]);
    assert!(keep.exists());
    assert!(
        bad.exists(),
        "unparseable files are reported by list, never deleted"
    );
    assert!(dir.remove_account("a@b.com").expect("remove").is_empty());
    assert!(matches!(
        dir.remove_account("a/b"),
        Err(StoreError::UnsafeEmail { .. })
    ));
}

#[test]
fn debug_output_never_shows_tokens() {
    let mut record = login("a@b.com", "sekrit-access");
    record.refresh_token = Some("sekrit-refresh".into());
    let (_root, dir) = auth_dir();
    let path = dir.save_login(&record, NOW).expect("save").path;
    let account = dir.load(&path).expect("load");
    for text in [
        format!("{record:?}"),
        format!("{account:#?}"),
        format!("{:?}", dir.list()),
    ] {
        assert!(!text.contains("sekrit"), "{text}");
    }
    assert!(format!("{record:?}").contains("access_token: \"<redacted>\""));
}

#[test]
fn expiry_check() {
    let record = login("a@b.com", "t");
    assert!(!record.is_expired_at(datetime!(2025-08-20 07:04:04 UTC)));
    assert!(record.is_expired_at(datetime!(2025-08-20 07:04:05 UTC)));
    assert!(record.is_expired_at(LATER));
}

#[test]
fn a_fresh_login_clears_the_recorded_status() {
    let (_root, dir) = auth_dir();
    let mut first = login("a@b.com", "token-1");
    first.set_status(Some(token_store::STATUS_RELOGIN_REQUIRED));
    first
        .extra
        .insert("note".to_owned(), serde_json::Value::from("kept"));
    dir.save_login(&first, datetime!(2026-11-25 10:00 UTC))
        .expect("save");

    let second = login("a@b.com", "token-2");
    let path = dir
        .save_login(&second, datetime!(2026-11-25 11:00 UTC))
        .expect("save")
        .path;

    let saved = dir.load(&path).expect("load").record;
    assert_eq!(saved.status(), None);
    assert_eq!(saved.extra["note"], "kept");
}
