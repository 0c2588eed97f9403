//! Any text as a config file, through the real `ConfigFile` model, its checks and the
//! resolution into `Settings` (with no `CLIPROXY_*` variable set): nothing panics, and no
//! `Debug` output shows a secret of the file (client keys, `[[client-keys]]` keys and their
//! digests, upstream API keys, the password of any URL).
#![no_main]

use cliproxy::config::{ConfigFile, Overrides, Settings, parse};
use cliproxy_fuzz::reveals;
use libfuzzer_sys::fuzz_target;

/// A stand-in nobody writes in a config file.
const BLANK: &str = "\u{1}";

/// The secrets of `file`: keys, and the passwords of its URLs.
fn secrets(file: &ConfigFile) -> Vec<String> {
    let mut secrets: Vec<String> = file.api_keys.iter().flatten().cloned().collect();
    let urls = file
        .proxy_url
        .iter()
        .chain(&file.qwen.oauth_base_url)
        .chain(file.openai_compat.iter().map(|entry| &entry.base_url));
    for raw in urls {
        if let Ok(url) = url::Url::parse(raw)
            && let Some(password) = url.password()
        {
            secrets.push(password.to_owned());
        }
    }
    for entry in &file.openai_compat {
        secrets.extend(entry.api_keys.iter().cloned());
    }
    for entry in &file.client_keys {
        secrets.extend(entry.key.iter().chain(&entry.key_sha256).cloned());
    }
    secrets
}

/// `file` with every secret replaced by [`BLANK`].
fn blanked(text: &str) -> ConfigFile {
    let mut file: ConfigFile = toml::from_str(text).expect("parsed once already");
    let blank_password = |raw: &mut String| {
        if let Ok(mut url) = url::Url::parse(raw)
            && url.password().is_some()
            && url.set_password(Some("x")).is_ok()
        {
            *raw = url.to_string();
        }
    };
    for key in file.api_keys.iter_mut().flatten() {
        *key = BLANK.to_owned();
    }
    file.proxy_url.as_mut().map(blank_password);
    file.qwen.oauth_base_url.as_mut().map(blank_password);
    for entry in &mut file.openai_compat {
        blank_password(&mut entry.base_url);
        entry
            .api_keys
            .iter_mut()
            .for_each(|key| *key = BLANK.to_owned());
    }
    for entry in &mut file.client_keys {
        for key in entry.key.iter_mut().chain(&mut entry.key_sha256) {
            *key = BLANK.to_owned();
        }
    }
    file
}

fn assert_hidden(shown: &str, secrets: &[String], without: impl Fn() -> String) {
    for secret in secrets {
        assert!(
            !reveals(shown, secret, &without),
            "Debug shows the secret {secret:?}: {shown}"
        );
    }
}

fuzz_target!(|bytes: &[u8]| {
    // `ConfigFile::load` reads the file as UTF-8 text.
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let Ok(file) = toml::from_str::<ConfigFile>(text) else {
        return;
    };
    let secrets = secrets(&file);
    assert_hidden(&format!("{file:?}"), &secrets, || {
        format!("{:?}", blanked(text))
    });
    // The checks every command makes (`ConfigFile::load`), on the same text.
    let Ok(file) = parse(text) else {
        return;
    };
    if let Ok(settings) = Settings::resolve(Overrides::default(), file) {
        let shown = format!("{settings:?}");
        assert_hidden(&shown, &secrets, || {
            Settings::resolve(Overrides::default(), blanked(text))
                .map(|settings| format!("{settings:?}"))
                .unwrap_or_default()
        });
    }
});
