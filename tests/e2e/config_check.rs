//! `cliproxy config check` end to end: typical mistakes, each reported with its line, its key
//! and the fix, exit 1, and never a secret; a good file passes with exit 0, and `serve` refuses
//! a bad one with the same words.

use crate::support::Sandbox;
use crate::support::server::guarded;
use fake_qwen::FakeQwen;

/// A secret that each broken file holds somewhere: it must never be printed.
const SECRET: &str = "sk-secret-4ab1";

/// (what the user wrote, the reported `FILE:LINE: KEY`, words of the message or the fix)
fn mistakes() -> Vec<(String, &'static str, &'static [&'static str])> {
    let keys = format!("api-keys = [\"{SECRET}\"]\n");
    vec![
        // 1. a misspelt key
        (
            format!("{keys}auth-dri = \"/srv/auth\"\n"),
            "c.toml:2: auth-dri",
            &["unknown key `auth-dri`", "did you mean `auth-dir`?"],
        ),
        // 2. a number in quotes
        (
            format!("{keys}port = \"8317\"\n"),
            "c.toml:2: port",
            &["expected u16", "port = 8317"],
        ),
        // 3. a port out of range
        (
            format!("{keys}port = 83170\n"),
            "c.toml:2: port",
            &["83170", "from 0 to 65535"],
        ),
        // 4. one key where a list belongs (the key must not be quoted back)
        (
            format!("api-keys = \"{SECRET}\"\n"),
            "c.toml:1: api-keys",
            &[
                "expected a sequence",
                "api-keys = [\"key-one\", \"key-two\"]",
            ],
        ),
        // 5. a host name instead of an address
        (
            format!("{keys}host = \"localhost\"\n"),
            "c.toml:2: host",
            &["is not an IP address", "127.0.0.1"],
        ),
        // 6. every interface, but no client keys
        (
            "host = \"0.0.0.0\"\n".to_owned(),
            "c.toml:1: host",
            &[
                "refuse to listen on 0.0.0.0 (not loopback) without client keys",
                "cliproxy init",
            ],
        ),
        // 7. an unknown strategy
        (
            format!("{keys}routing-strategy = \"random\"\n"),
            "c.toml:2: routing-strategy",
            &["\"random\" is not known", "\"fill-first\""],
        ),
        // 8. a duration in words
        (
            format!("{keys}header-read-timeout = \"5 minutes\"\n"),
            "c.toml:2: header-read-timeout",
            &["invalid duration", "30s"],
        ),
        // 9. an upstream without base-url
        (
            format!("[[openai-compat]]\nname = \"dashscope\"\n{keys}"),
            "c.toml:1: openai-compat[1]",
            &["missing key `base-url`", "base-url = \"https://"],
        ),
        // 10. a base-url without its scheme, on the second upstream
        (
            format!(
                "[[openai-compat]]\nname = \"a\"\nbase-url = \"https://a.example/v1\"\n{keys}[[openai-compat]]\nname = \"b\"\nbase-url = \"{SECRET}.example/v1\"\n{keys}"
            ),
            "c.toml:7: openai-compat[2].base-url",
            &["not an http(s) URL", "with its scheme"],
        ),
        // 11. a string left open: TOML would quote the line, and with it the key
        (
            format!("api-keys = [\"{SECRET}]\n"),
            "c.toml:1: api-keys",
            &["api-keys = [\"key-one\""],
        ),
        // 12. a section misspelt
        (
            format!("{keys}[model.aliases]\n\"claude-*\" = \"qwen3-coder-plus\"\n"),
            "c.toml:2: model.aliases",
            &["unknown key `model`", "did you mean `models`?"],
        ),
        // 13. two upstreams of one name
        (
            format!(
                "[[openai-compat]]\nname = \"a\"\nbase-url = \"https://a.example/v1\"\n{keys}[[openai-compat]]\nname = \"a\"\nbase-url = \"https://b.example/v1\"\n{keys}"
            ),
            "c.toml:6: openai-compat[2].name",
            &["appears more than once", "its own name"],
        ),
        // 14. a proxy URL with a password, but no scheme
        (
            format!("{keys}proxy-url = \"user:{SECRET}@proxy:3128\"\n"),
            "c.toml:2: proxy-url",
            &["not a URL with the scheme http", "socks5://"],
        ),
    ]
}

#[tokio::test]
async fn typical_mistakes_are_named_by_line_key_and_fix_without_a_secret() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let path = sandbox.home.path().join("c.toml");
    for (text, at, words) in mistakes() {
        std::fs::write(&path, &text).unwrap();
        let mut command = sandbox.command(&["--config", "c.toml", "config", "check"]);
        command.current_dir(sandbox.home.path());
        let run = crate::support::run(command, "").await;
        let shown = format!("{}{}", run.stdout(), run.stderr());
        assert_eq!(run.code(), Some(1), "{text}\n{shown}");
        assert!(
            shown.contains(&format!("error: {at}: ")),
            "expected {at:?} for\n{text}\n{shown}"
        );
        for word in words {
            assert!(
                shown.contains(word),
                "expected {word:?} for\n{text}\n{shown}"
            );
        }
        assert!(
            !shown.contains(SECRET),
            "a secret was printed for\n{text}\n{shown}"
        );
        assert!(shown.contains("nothing was started"), "{shown}");
    }
}

#[tokio::test]
async fn a_good_config_passes_and_a_bad_environment_is_named() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let path = sandbox.home.path().join("c.toml");
    std::fs::write(&path, format!("api-keys = [\"{SECRET}\"]\nport = 9000\n")).unwrap();
    let config = path.to_str().unwrap();
    let ok = sandbox
        .run(&["--config", config, "config", "check"], "")
        .await
        .success();
    assert!(
        ok.contains(": ok. Serves http://127.0.0.1:9000 with 1 client key(s)"),
        "{ok}"
    );
    assert!(!ok.contains(SECRET), "{ok}");

    let mut command = sandbox.command(&["--config", config, "config", "check"]);
    command.env("CLIPROXY_PORT", "80a");
    let shown = crate::support::run(command, "").await.failure(1);
    assert!(
        shown.contains("CLIPROXY_PORT=\"80a\" is not valid"),
        "{shown}"
    );

    // No file at all: the defaults, which are fine.
    let none = sandbox.run(&["config", "check"], "").await.success();
    assert!(none.contains("No config file at"), "{none}");
}

#[tokio::test]
async fn serve_refuses_a_bad_config_with_the_same_words_and_no_secret() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let path = sandbox.home.path().join("c.toml");
    std::fs::write(&path, format!("api-keys = [\"{SECRET}]\n")).unwrap();
    let run = guarded(
        "serve to refuse the config",
        sandbox.run(&["--config", path.to_str().unwrap(), "serve"], ""),
    )
    .await;
    let shown = run.failure(1);
    assert!(shown.contains("invalid config file"), "{shown}");
    assert!(shown.contains("line 1, api-keys:"), "{shown}");
    assert!(!shown.contains(SECRET), "{shown}");
}
