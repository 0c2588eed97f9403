//! The config file and its resolution, tested together: what a file, the environment and
//! the flags give, and what they refuse.

use std::num::{NonZeroU32, NonZeroU64};
use std::path::PathBuf;
use std::time::Duration;

use credential_pool::ReasoningStyle;

use super::UsageDb;
use super::env::parse_env_value;
use super::file::ConfigFile;
use super::resolve::{DEFAULT_QWEN_MODELS, Overrides, Settings, expand_home, parse_alias_list};
use super::validate::parse;
use super::values::{DurationSetting, RetentionSetting};

#[test]
fn unknown_key_names_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "auth-dri = \"/x\"\n").unwrap();
    let message = ConfigFile::load(Some(&path)).unwrap_err().to_string();
    assert!(message.contains("auth-dri"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[test]
fn file_values_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "auth-dir = \"/srv/auth\"\nproxy-url = \"socks5://127.0.0.1:1080\"\n[qwen]\noauth-base-url = \"http://127.0.0.1:9\"\n",
    )
    .unwrap();
    let file = ConfigFile::load(Some(&path)).unwrap();
    assert_eq!(file.auth_dir.as_deref(), Some("/srv/auth"));
    assert_eq!(file.proxy_url.as_deref(), Some("socks5://127.0.0.1:1080"));
    assert_eq!(
        file.qwen.oauth_base_url.as_deref(),
        Some("http://127.0.0.1:9")
    );
}

#[test]
fn flag_beats_file_for_auth_dir() {
    let file = ConfigFile {
        auth_dir: Some("/from/file".into()),
        ..ConfigFile::default()
    };
    let overrides = Overrides {
        auth_dir: Some("/from/flag".into()),
        ..Overrides::default()
    };
    let settings = Settings::resolve(overrides, file).unwrap();
    assert_eq!(settings.auth_dir, PathBuf::from("/from/flag"));
}

#[test]
fn tilde_expands_to_home() {
    let home = std::env::home_dir().unwrap();
    assert_eq!(expand_home("~/.cli-proxy-api"), home.join(".cli-proxy-api"));
    assert_eq!(expand_home("~"), home);
    assert_eq!(expand_home("/abs"), PathBuf::from("/abs"));
    assert_eq!(expand_home("~other/x"), PathBuf::from("~other/x"));
}

#[test]
fn durations_take_units_or_seconds() {
    let parse = |raw: &str| raw.parse::<DurationSetting>().map(|d| d.0);
    assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
    assert_eq!(parse("45"), Ok(Duration::from_secs(45)));
    assert!(parse("5 minutes").is_err());
    assert!(parse("m").is_err());
}

#[test]
fn serve_defaults() {
    let settings = Settings::resolve(Overrides::default(), ConfigFile::default()).unwrap();
    let serve = settings.serve;
    assert_eq!(serve.host.to_string(), "127.0.0.1");
    assert_eq!(serve.port, 8317);
    assert_eq!(serve.server.max_body_bytes, 32 * 1024 * 1024);
    assert!(serve.server.allowed_origins.is_empty());
    assert_eq!(serve.server.max_connections, 1024);
    assert_eq!(serve.server.body_read_timeout, Duration::from_secs(60));
    assert_eq!(serve.server.body_memory_budget, 512 * 1024 * 1024);
    assert_eq!(serve.server.header_read_timeout, Duration::from_secs(30));
    assert_eq!(serve.server.upstream_idle_timeout, Duration::from_secs(300));
    assert_eq!(serve.server.shutdown_grace, Duration::from_secs(30));
    assert_eq!(serve.refresh_lead, Duration::from_secs(1200));
    assert_eq!(serve.server.request_retry, 3);
    assert_eq!(serve.server.max_output_tokens, Some(65_536));
    assert_eq!(serve.qwen_requests_per_minute, NonZeroU32::new(60));
    assert_eq!(serve.server.models, DEFAULT_QWEN_MODELS);
}

#[test]
fn serve_keys_are_read_from_the_file() {
    let text = r#"
        host = "0.0.0.0"
        port = 9000
        api-keys = ["k1"]
        header-read-timeout = "5s"
        refresh-lead = 600
        routing-strategy = "fill-first"
        allowed-origins = ["http://localhost:3000"]
        max-connections = 64
        body-read-timeout = "10s"
        body-memory-budget = 1048576
        [qwen]
        requests-per-minute = 0
        models = ["coder-model"]
        [[openai-compat]]
        name = "dashscope"
        base-url = "https://dashscope.aliyuncs.com/compatible-mode/v1"
        api-keys = ["sk-1", "sk-2"]
        models = ["qwen-max"]
        requests-per-minute = 30
    "#;
    let file = parse(text).unwrap();
    let serve = Settings::resolve(Overrides::default(), file).unwrap().serve;
    assert_eq!(serve.host.to_string(), "0.0.0.0");
    assert_eq!(serve.port, 9000);
    assert_eq!(serve.server.api_keys, ["k1"]);
    assert_eq!(serve.server.header_read_timeout, Duration::from_secs(5));
    assert_eq!(serve.refresh_lead, Duration::from_secs(600));
    assert_eq!(serve.routing_strategy, credential_pool::Strategy::FillFirst);
    assert_eq!(serve.server.allowed_origins, ["http://localhost:3000"]);
    assert_eq!(serve.server.max_connections, 64);
    assert_eq!(serve.server.body_read_timeout, Duration::from_secs(10));
    assert_eq!(serve.server.body_memory_budget, 1_048_576);
    assert_eq!(serve.qwen_requests_per_minute, None, "0 means no cap");
    assert_eq!(serve.openai_compat[0].api_keys.len(), 2);
}

#[test]
fn model_aliases_come_from_the_file_or_the_environment() {
    let text =
        "[models.aliases]\n\"claude-*\" = \"qwen3-coder-plus\"\n\"gpt-5\" = \"coder-model\"\n";
    let file = parse(text).unwrap();
    let serve = Settings::resolve(Overrides::default(), file).unwrap().serve;
    assert_eq!(
        serve.server.model_aliases,
        [
            ("claude-*".to_owned(), "qwen3-coder-plus".to_owned()),
            ("gpt-5".to_owned(), "coder-model".to_owned())
        ]
    );
    assert_eq!(
        parse_alias_list("a*=b, c = d").unwrap(),
        [
            ("a*".to_owned(), "b".to_owned()),
            ("c".to_owned(), "d".to_owned())
        ]
    );
    assert!(parse_alias_list("nonsense").is_err());
}

#[test]
fn openai_compat_without_keys_is_refused() {
    let text =
        "[[openai-compat]]\nname = \"x\"\nbase-url = \"https://x.example/v1\"\napi-keys = []\n";
    let problems = parse(text).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "openai-compat[1].api-keys");
    assert_eq!(problems[0].line, Some(4));
    assert!(problems[0].message.contains("no api-keys"), "{problems:?}");
}

#[test]
fn openai_compat_entries_need_unique_plain_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let entry = |name: &str| {
        format!(
            "[[openai-compat]]\nname = \"{name}\"\nbase-url = \"https://x.example/v1\"\napi-keys = [\"k\"]\n"
        )
    };
    let refusal = |text: String| {
        std::fs::write(&path, text).unwrap();
        format!("{:#}", ConfigFile::load(Some(&path)).unwrap_err())
    };

    let twice = refusal(entry("dashscope") + &entry("coding") + &entry("dashscope"));
    assert!(
        twice.contains("[[openai-compat]] \"dashscope\" appears more than once"),
        "{twice}"
    );
    assert!(twice.contains(&path.display().to_string()), "{twice}");
    let hash = refusal(entry("a") + &entry("a#1"));
    assert!(
        hash.contains("openai-compat[2].name: \"a#1\" contains `#`"),
        "{hash}"
    );
    let blank = refusal(entry(" "));
    assert!(blank.contains("has an empty name"), "{blank}");
    std::fs::write(&path, entry("a") + &entry("ab")).unwrap();
    ConfigFile::load(Some(&path)).expect("distinct names are fine");
}

#[test]
fn openai_compat_requests_per_minute_of_zero_is_refused() {
    let text = "[[openai-compat]]\nname = \"x\"\nbase-url = \"https://x.example/v1\"\napi-keys = [\"k\"]\nrequests-per-minute = 0\n";
    let error = toml::from_str::<ConfigFile>(text).unwrap_err().to_string();
    assert!(error.contains("expected a nonzero u32"), "{error}");
    let capped: ConfigFile = toml::from_str(&text.replace("= 0", "= 5")).unwrap();
    assert_eq!(
        capped.openai_compat[0].requests_per_minute,
        NonZeroU32::new(5)
    );
}

#[test]
fn openai_compat_reasoning_defaults_to_effort_and_takes_only_its_three_names() {
    let text = "[[openai-compat]]\nname = \"x\"\nbase-url = \"https://x.example/v1\"\napi-keys = [\"k\"]\n";
    let file: ConfigFile = toml::from_str(text).unwrap();
    assert_eq!(file.openai_compat[0].reasoning.0, ReasoningStyle::Effort);
    for (name, style) in [
        ("effort", ReasoningStyle::Effort),
        ("qwen", ReasoningStyle::Qwen),
        ("off", ReasoningStyle::Off),
    ] {
        let file: ConfigFile = toml::from_str(&format!("{text}reasoning = \"{name}\"\n")).unwrap();
        assert_eq!(file.openai_compat[0].reasoning.0, style, "{name}");
    }
    let error = toml::from_str::<ConfigFile>(&format!("{text}reasoning = \"high\"\n"))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("unknown reasoning style \"high\"") && error.contains("\"qwen\""),
        "{error}"
    );
}

#[test]
fn blank_api_keys_in_the_file_are_dropped_and_the_others_trimmed() {
    let file: ConfigFile = toml::from_str("api-keys = [\"\", \"   \", \" k1 \"]\n").unwrap();
    let serve = Settings::resolve(Overrides::default(), file).unwrap().serve;
    assert_eq!(serve.server.api_keys, ["k1"]);
    let only_blank: ConfigFile = toml::from_str("api-keys = [\"  \"]\n").unwrap();
    let serve = Settings::resolve(Overrides::default(), only_blank)
        .unwrap()
        .serve;
    assert!(serve.server.api_keys.is_empty(), "a blank key is no key");
}

#[test]
fn debug_never_shows_keys_or_proxy_passwords() {
    let text = r#"
        proxy-url = "http://alice:proxy-secret@127.0.0.1:3128"
        api-keys = ["client-secret-1", "client-secret-2"]
        [[openai-compat]]
        name = "dashscope"
        base-url = "https://bob:url-secret@dashscope.example/v1"
        api-keys = ["sk-upstream-secret"]
    "#;
    let file: ConfigFile = toml::from_str(text).unwrap();
    let file_debug = format!("{file:?} {file:#?}");
    let settings = Settings::resolve(Overrides::default(), file).unwrap();
    let shown = [
        file_debug,
        format!("{settings:?}"),
        format!("{settings:#?}"),
        format!("{:?}", settings.serve),
        format!("{:?}", settings.serve.openai_compat[0]),
    ];
    for text in &shown {
        assert!(!text.contains("secret"), "{text}");
    }
    assert!(shown[1].contains("api_keys: <2 redacted>"), "{}", shown[1]);
    assert!(shown[1].contains("alice:***@127.0.0.1"), "{}", shown[1]);
    assert!(shown[1].contains("dashscope"), "{}", shown[1]);
}

/// Found by the property test of `config_properties`: `Debug` showed a password written
/// without a scheme (`user:password@host` is a URL of scheme `user` without a host).
#[test]
fn debug_hides_a_password_in_a_url_without_a_scheme() {
    let file: ConfigFile =
        toml::from_str("proxy-url = \"alice:proxy-secret@127.0.0.1:3128\"\n").unwrap();
    let shown = format!("{file:?}");
    assert!(!shown.contains("proxy-secret"), "{shown}");
    assert!(shown.contains("***@127.0.0.1:3128"), "{shown}");
}

/// Found by the property test of `config_properties`: `Debug` showed the password of
/// `[qwen] oauth-base-url`.
#[test]
fn debug_hides_the_password_of_the_oauth_base_url() {
    let text = "[qwen]\noauth-base-url = \"https://carol:oauth-secret@qwen.example/\"\n";
    let file: ConfigFile = toml::from_str(text).unwrap();
    let file_debug = format!("{file:?}");
    let settings = Settings::resolve(Overrides::default(), file).unwrap();
    for shown in [file_debug, format!("{settings:?}")] {
        assert!(!shown.contains("oauth-secret"), "{shown}");
        assert!(shown.contains("carol:***@qwen.example"), "{shown}");
    }
}

#[test]
fn strict_permissions_is_on_unless_the_file_turns_it_off() {
    let defaults = Settings::resolve(Overrides::default(), ConfigFile::default()).unwrap();
    assert!(defaults.strict_permissions);
    let file: ConfigFile = toml::from_str("strict-permissions = false\n").unwrap();
    let relaxed = Settings::resolve(Overrides::default(), file).unwrap();
    assert!(!relaxed.strict_permissions);
    let error = parse_env_value::<bool>("CLIPROXY_STRICT_PERMISSIONS", "no", "true or false")
        .expect_err("not a bool");
    assert!(error.to_string().contains("give true or false"), "{error}");
}

#[test]
fn a_bad_number_in_the_environment_says_what_is_expected() {
    let error = parse_env_value::<u16>("CLIPROXY_PORT", "80a", "a port number from 0 to 65535")
        .expect_err("not a port");
    let message = error.to_string();
    assert!(
        message.starts_with("environment variable CLIPROXY_PORT=\"80a\" is not valid"),
        "{message}"
    );
    assert!(
        message.contains("give a port number from 0 to 65535, or unset it"),
        "{message}"
    );
}

#[test]
fn example_config_parses() {
    let file = parse(include_str!("../../config.example.toml")).unwrap();
    let defaults = Settings::resolve(Overrides::default(), ConfigFile::default()).unwrap();
    let example = Settings::resolve(Overrides::default(), file).unwrap();
    assert_eq!(
        format!("{:?}", example.serve),
        format!("{:?}", defaults.serve),
        "the example file shows the defaults"
    );
    assert_eq!(example.strict_permissions, defaults.strict_permissions);
    assert_eq!(example.usage, defaults.usage);
    assert_eq!(example.store, defaults.store);
    assert_eq!(
        format!("{:?}", example.management),
        format!("{:?}", defaults.management)
    );
}

#[test]
fn management_keys_are_read_from_the_file_and_never_shown() {
    let text = "management-key = \"file-key-123\"\n[management]\nallow-remote = true\n[metrics]\nhash-emails = true\n";
    let file: ConfigFile = toml::from_str(text).unwrap();
    assert!(!format!("{file:?}").contains("file-key-123"));
    let settings = Settings::resolve(Overrides::default(), file).unwrap();
    let management = &settings.management;
    assert!(management.key.as_ref().is_some_and(|key| !key.is_hash()));
    assert!(management.allow_remote && management.hash_emails);
    assert!(!format!("{settings:?}").contains("file-key-123"));
    let defaults = Settings::resolve(Overrides::default(), ConfigFile::default()).unwrap();
    assert!(defaults.management.key.is_none());
    assert!(!defaults.management.allow_remote && !defaults.management.hash_emails);
}

#[test]
fn an_empty_or_broken_management_key_is_an_error_that_says_what_to_give() {
    for (text, expected) in [
        ("management-key = \"\"", "the management key is empty"),
        (
            "management-key = \"$argon2id$v=19$broken\"",
            "looks like an Argon2 hash",
        ),
    ] {
        let file: ConfigFile = toml::from_str(text).unwrap();
        let error = Settings::resolve(Overrides::default(), file).unwrap_err();
        assert!(format!("{error:#}").contains(expected), "{error:#}");
    }
}

#[test]
fn usage_db_defaults_to_beside_the_auth_dir_and_retention_to_90_days() {
    let overrides = Overrides {
        auth_dir: Some("/srv/cliproxy/auth".into()),
        ..Overrides::default()
    };
    let usage = Settings::resolve(overrides, ConfigFile::default())
        .unwrap()
        .usage;
    assert_eq!(
        usage.db,
        UsageDb::File(PathBuf::from("/srv/cliproxy/auth-usage.sqlite3"))
    );
    assert_eq!(usage.retention, Some(Duration::from_secs(90 * 86_400)));
    let home = std::env::home_dir().unwrap();
    let defaults = Settings::resolve(Overrides::default(), ConfigFile::default()).unwrap();
    assert_eq!(
        defaults.usage.db,
        UsageDb::File(home.join(".cli-proxy-api-usage.sqlite3"))
    );
    let off: ConfigFile = toml::from_str("usage-db = \"off\"\n").unwrap();
    let usage = Settings::resolve(Overrides::default(), off).unwrap().usage;
    assert_eq!(usage.db, UsageDb::Off, "the ledger is off");
}

#[test]
fn usage_goes_to_the_postgres_store_unless_usage_db_is_set() {
    let on_postgres = "[store]\nkind = \"postgres\"\nurl = \"postgres://u:hunter2@db/pool\"\n";
    let file: ConfigFile = toml::from_str(on_postgres).unwrap();
    let usage = Settings::resolve(Overrides::default(), file).unwrap().usage;
    assert_eq!(
        usage.db,
        UsageDb::Postgres("postgres://u:hunter2@db/pool".to_owned())
    );
    assert!(!format!("{usage:?}").contains("hunter2"), "{usage:?}");
    for (usage_db, expected) in [
        ("off", UsageDb::Off),
        (
            "/var/lib/usage.db",
            UsageDb::File("/var/lib/usage.db".into()),
        ),
    ] {
        let text = format!("usage-db = \"{usage_db}\"\n{on_postgres}");
        let file: ConfigFile = toml::from_str(&text).unwrap();
        let usage = Settings::resolve(Overrides::default(), file).unwrap().usage;
        assert_eq!(usage.db, expected, "an explicit usage-db wins");
    }
}

#[test]
fn usage_keys_are_read_from_the_file() {
    let text = "usage-db = \"~/state/usage.db\"\nusage-retention = \"36h\"\n";
    let file: ConfigFile = toml::from_str(text).unwrap();
    let usage = Settings::resolve(Overrides::default(), file).unwrap().usage;
    assert_eq!(
        usage.db,
        UsageDb::File(std::env::home_dir().unwrap().join("state/usage.db"))
    );
    assert_eq!(usage.retention, Some(Duration::from_secs(36 * 3600)));
    let forever: ConfigFile = toml::from_str("usage-retention = 0\n").unwrap();
    let usage = Settings::resolve(Overrides::default(), forever)
        .unwrap()
        .usage;
    assert_eq!(usage.retention, None, "0 keeps usage for ever");
}

#[test]
fn usage_retention_takes_days_or_hours() {
    let parse = |raw: &str| raw.parse::<RetentionSetting>().map(|r| r.0);
    let days = |n: u64| Some(Duration::from_secs(n * 86_400));
    assert_eq!(parse("90d"), Ok(days(90)));
    assert_eq!(parse("7"), Ok(days(7)));
    assert_eq!(parse("48h"), Ok(Some(Duration::from_secs(48 * 3600))));
    assert_eq!(parse("0"), Ok(None));
    assert_eq!(parse("0d"), Ok(None));
    let error = parse("3 months").unwrap_err();
    assert!(
        error.contains("write days or hours like 90d or 36h"),
        "{error}"
    );
    assert!(
        parse("30m").is_err(),
        "minutes are finer than the hourly rollups"
    );
    assert!(parse("99999999999999999d").is_err());
    let in_toml: ConfigFile = toml::from_str("usage-retention = 30\n").unwrap();
    assert_eq!(in_toml.usage_retention.map(|r| r.0), Some(days(30)));
    let refused = toml::from_str::<ConfigFile>("usage-retention = \"1y\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("invalid usage-retention \"1y\""),
        "{refused}"
    );
}

/// The `[[client-keys]]` of `text` resolved, or the error's text.
fn client_keys(text: &str) -> Result<Vec<proxy_server::ClientKeyConfig>, String> {
    let file = parse(text).map_err(|problems| format!("{problems:?}"))?;
    Settings::resolve(Overrides::default(), file)
        .map(|settings| settings.serve.server.client_keys)
        .map_err(|error| error.to_string())
}

const DASHSCOPE: &str = "[[openai-compat]]\nname = \"dashscope\"\nbase-url = \"https://d.example/v1\"\napi-keys = [\"sk-1\", \"sk-2\"]\n";

#[test]
fn client_keys_resolve_their_key_scope_and_limits() {
    let text = format!(
        "{DASHSCOPE}[[client-keys]]\nname = \"alice\"\nkey = \"alice-secret\"\nmodels = [\"qwen3-*\"]\n\
         credentials = [\"Dev@Example.com\", \"dashscope#2\"]\ngroups = [\"team\"]\n\
         requests-per-minute = 30\ntokens-per-day = 1000000\n\
         [[client-keys]]\nname = \"bob\"\n\
         key-sha256 = \"2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824\"\n\
         credentials = [\"dashscope\"]\n\
         [[client-keys]]\nname = \"carol\"\nkey = \"carol-secret\"\n"
    );
    let keys = client_keys(&text).unwrap();
    assert_eq!(keys.len(), 3);
    let alice = &keys[0];
    assert_eq!(alice.name, "alice");
    assert_eq!(alice.models, ["qwen3-*"]);
    assert_eq!(alice.requests_per_minute.map(NonZeroU32::get), Some(30));
    assert_eq!(
        alice.tokens_per_day.map(std::num::NonZeroU64::get),
        Some(1_000_000)
    );
    let keys_of = |config: &proxy_server::ClientKeyConfig| -> Vec<String> {
        config
            .scope
            .keys
            .iter()
            .map(|key| key.to_string())
            .collect()
    };
    assert_eq!(
        keys_of(alice),
        ["qwen-dev@example.com", "openai-compat:dashscope#2"]
    );
    assert_eq!(alice.scope.groups.len(), 1);
    assert!(!alice.scope.everything);
    // sha256("hello"), written in upper case.
    assert_eq!(
        bob_digest(&keys[1]),
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
    assert_eq!(
        keys_of(&keys[1]),
        ["openai-compat:dashscope#1", "openai-compat:dashscope#2"]
    );
    assert!(
        keys[2].scope.everything,
        "no credentials or groups: every credential"
    );
    let shown = format!(
        "{:?}",
        Settings::resolve(Overrides::default(), toml::from_str(&text).unwrap()).unwrap()
    );
    assert!(
        !shown.contains("alice-secret") && !shown.contains("carol-secret"),
        "{shown}"
    );
}

fn bob_digest(config: &proxy_server::ClientKeyConfig) -> String {
    config
        .key_sha256
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[test]
fn client_key_mistakes_are_refused_with_their_fix() {
    let cases = [
        ("[[client-keys]]\nname = \"a\"\n", "has no key"),
        (
            "[[client-keys]]\nname = \"a\"\nkey = \"k\"\nkey-sha256 = \"00\"\n",
            "keep one of them",
        ),
        (
            "[[client-keys]]\nname = \"a\"\nkey-sha256 = \"xyz\"\n",
            "64 hexadecimal digits",
        ),
        ("[[client-keys]]\nname = \" \"\nkey = \"k\"\n", "empty name"),
        ("[[client-keys]]\nname = \"a\"\nkey = \"  \"\n", "empty key"),
        (
            "[[client-keys]]\nname = \"a\"\nkey = \"k1\"\n[[client-keys]]\nname = \"a\"\nkey = \"k2\"\n",
            "more than once",
        ),
        (
            "[[client-keys]]\nname = \"a\"\nkey = \"k\"\ncredentials = [\"nowhere\"]\n",
            "neither an account email nor an [[openai-compat]] name",
        ),
        (
            "[[client-keys]]\nname = \"a\"\nkey = \"k\"\nrequests-per-minute = 0\n",
            "nonzero",
        ),
    ];
    for (text, expected) in cases {
        let message = client_keys(text).unwrap_err();
        assert!(message.contains(expected), "{text}: {message}");
    }
    let past_the_last_key = format!(
        "{DASHSCOPE}[[client-keys]]\nname = \"a\"\nkey = \"k\"\ncredentials = [\"dashscope#3\"]\n"
    );
    assert!(
        client_keys(&past_the_last_key)
            .unwrap_err()
            .contains("has keys #1 to #2")
    );
}

#[test]
fn limits_of_the_day_are_read_for_qwen_accounts_and_each_openai_compat_entry() {
    let text = r#"
        [qwen]
        requests-per-day = 2000
        tokens-per-day = 0
        [accounts."Alice@Example.com"]
        requests-per-day = 0
        tokens-per-day = 500000
        [[openai-compat]]
        name = "coding-plan"
        base-url = "https://x.example/v1"
        api-keys = ["sk-1"]
        requests-per-day = 90
        tokens-per-day = 1000000
    "#;
    let serve = Settings::resolve(Overrides::default(), parse(text).unwrap())
        .unwrap()
        .serve;
    assert_eq!(serve.qwen_daily.requests.map(NonZeroU64::get), Some(2000));
    assert_eq!(serve.qwen_daily.tokens, None, "0 means no limit");
    let alice = &serve.accounts["alice@example.com"];
    assert_eq!(
        (alice.requests_per_day, alice.tokens_per_day),
        (Some(0), Some(500_000))
    );
    let entry = &serve.openai_compat[0];
    assert_eq!(entry.requests_per_day.map(NonZeroU64::get), Some(90));
    assert_eq!(entry.tokens_per_day.map(NonZeroU64::get), Some(1_000_000));

    let defaults = Settings::resolve(Overrides::default(), parse("").unwrap())
        .unwrap()
        .serve;
    assert_eq!(defaults.qwen_daily, credential_pool::DailyLimits::default());
}

#[test]
fn limits_of_the_day_that_are_not_whole_numbers_are_refused_with_their_line() {
    let cases = [
        (
            "[qwen]\nrequests-per-day = -1\n",
            "line 2, qwen.requests-per-day",
            "requests-per-day = 1000",
        ),
        (
            "[qwen]\n\ntokens-per-day = \"lots\"\n",
            "line 3, qwen.tokens-per-day",
            "tokens-per-day = 1000000",
        ),
        (
            "[[openai-compat]]\nname = \"x\"\nbase-url = \"https://x.example/v1\"\napi-keys = [\"k\"]\nrequests-per-day = 0\n",
            "line 5, openai-compat[1].requests-per-day",
            "leave it out for no limit",
        ),
    ];
    for (text, place, fix) in cases {
        let problems = parse(text).unwrap_err();
        let message = problems[0].to_string();
        assert!(message.starts_with(place), "{text}: {message}");
        assert!(message.contains(fix), "{text}: {message}");
    }
    assert_eq!(
        parse_env_value::<u64>("CLIPROXY_QWEN_REQUESTS_PER_DAY", "many", "a whole number")
            .unwrap_err()
            .to_string(),
        "environment variable CLIPROXY_QWEN_REQUESTS_PER_DAY=\"many\" is not valid: give a whole number, or unset it"
    );
}

#[test]
fn weights_above_a_thousand_are_refused_where_they_are_written() {
    let text = "[[openai-compat]]\nname = \"a\"\nbase-url = \"https://x.example/v1\"\napi-keys = [\"k\"]\nweight = 1001\n\
                [accounts.\"a@b.c\"]\nweight = 1000\n";
    let problems = parse(text).expect_err("one problem");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].line, Some(5));
    assert!(
        problems[0]
            .to_string()
            .contains("weight 1001 is more than 1000")
    );
}

#[test]
fn config_check_names_the_line_of_a_broken_management_key_without_quoting_it() {
    let problems = parse("port = 1\nmanagement-key = \"$argon2id$v=19$secretpart\"\n").unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    let problem = &problems[0];
    assert_eq!(problem.key, "management-key");
    assert_eq!(problem.line, Some(2));
    assert!(!problem.to_string().contains("secretpart"), "{problem}");
    assert!(parse("management-key = \"plain-key\"\n[management]\nallow-remote = true\n[metrics]\nhash-emails = true\n").is_ok());
}
