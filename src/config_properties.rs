//! Property tests of the config file model: what the `config_file` fuzz target checks for
//! minutes, here for a few hundred generated files in `cargo test`. Any file is parsed,
//! checked and resolved without a panic, and no `Debug` output shows one of its secrets:
//! client keys (`api-keys` and `[[client-keys]]`), upstream API keys, the password of any URL.

use proptest::collection::vec;
use proptest::prelude::*;

use crate::config::{ConfigFile, Overrides, Settings, parse};

/// A secret nothing else in a generated file contains.
fn secret() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]{8,16}".prop_map(|tail| format!("s3cr3t{tail}"))
}

/// A URL, with a password or without, or text that is not a URL.
fn url(password: String) -> impl Strategy<Value = String> {
    prop_oneof![
        Just(format!("http://user:{password}@127.0.0.1:3128")),
        Just(format!("socks5h://user:{password}@proxy.example:1080/")),
        Just(format!("https://:{password}@dashscope.example/v1?x=1")),
        Just(format!("user:{password}@no-scheme")),
        Just("https://dashscope.aliyuncs.com/compatible-mode/v1".to_owned()),
    ]
}

/// A config file with secrets in every place one can go, and the secrets.
fn config_file() -> impl Strategy<Value = (String, Vec<String>)> {
    (
        vec(secret(), 5),
        vec(secret(), 0..3),
        any::<bool>(),
        prop_oneof![Just(""), Just("port = 8317\n"), Just("host = \"::1\"\n"), Just("hots = 1\n")],
    )
        .prop_flat_map(|(passwords, keys, with_entry, other)| {
            let [proxy, oauth, base, key, client_key] =
                [0, 1, 2, 3, 4].map(|at| passwords[at].clone());
            (url(proxy), url(oauth), url(base)).prop_map(move |(proxy, oauth, base)| {
                let quoted: Vec<String> = keys.iter().map(|key| format!("{key:?}")).collect();
                let mut text = format!(
                    "{other}proxy-url = {proxy:?}\napi-keys = [{}]\n[qwen]\noauth-base-url = {oauth:?}\n",
                    quoted.join(", ")
                );
                if with_entry {
                    text.push_str(&format!(
                        "[[openai-compat]]\nname = \"up\"\nbase-url = {base:?}\napi-keys = [{key:?}]\n"
                    ));
                    text.push_str(&format!(
                        "[[client-keys]]\nname = \"ci\"\nkey = {client_key:?}\ncredentials = [\"up\"]\n"
                    ));
                }
                let mut secrets = passwords.clone();
                secrets.extend(keys.iter().cloned());
                (text, secrets)
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_debug_output_shows_a_secret_of_the_file((text, secrets) in config_file()) {
        let Ok(file) = toml::from_str::<ConfigFile>(&text) else {
            return Ok(());
        };
        let mut shown = vec![format!("{file:?}")];
        if let Ok(checked) = parse(&text)
            && let Ok(settings) = Settings::resolve(Overrides::default(), checked)
        {
            shown.push(format!("{settings:?}"));
        }
        for shown in &shown {
            for secret in &secrets {
                prop_assert!(!shown.contains(secret.as_str()), "{} in {}", secret, shown);
            }
        }
    }

    #[test]
    fn any_text_is_parsed_or_refused_without_a_panic(text in "[-a-z =\\[\\]\"0-9.\n#]{0,80}") {
        if let Ok(file) = parse(&text) {
            let _ = Settings::resolve(Overrides::default(), file);
        }
    }
}
