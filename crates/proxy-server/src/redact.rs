//! URLs as they may be shown: in logs, `Debug` output and messages, a URL's password (a proxy
//! URL's, an upstream base URL's) is replaced by `***`.

/// `raw` with the password of its userinfo replaced by `***`. Text that is not a URL with a host
/// but may hold credentials (it has an `@`) keeps only what follows its last `@`: written
/// without a scheme, `user:password@host` parses as a URL of scheme `user` without a host, whose
/// password `Url` does not see.
#[must_use]
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.has_host() && url.password().is_some() => {
            // Fails only for URLs that cannot have credentials, which this one has.
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        Ok(url) if url.has_host() => raw.to_owned(),
        _ => match raw.rsplit_once('@') {
            Some((_, host)) => format!("***@{host}"),
            None => raw.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact_url("https://user:hunter2@api.example/v1"),
            "https://user:***@api.example/v1"
        );
        assert_eq!(
            redact_url("https://api.example/v1"),
            "https://api.example/v1"
        );
        assert_eq!(
            redact_url("socks5://127.0.0.1:1080"),
            "socks5://127.0.0.1:1080"
        );
        let unparsable = redact_url("bad url user:hunter2@x");
        assert!(!unparsable.contains("hunter2"), "{unparsable}");
    }

    /// Found by the config property test: without a scheme, `alice:hunter2@proxy:3128` is a
    /// URL of scheme `alice` and no host, and its password was shown.
    #[test]
    fn a_password_written_without_a_scheme_is_not_shown() {
        for raw in [
            "alice:hunter2@127.0.0.1:3128",
            "socks5:alice:hunter2@proxy.example",
        ] {
            let shown = redact_url(raw);
            assert!(!shown.contains("hunter2"), "{shown}");
        }
        assert_eq!(
            redact_url("alice:hunter2@127.0.0.1:3128"),
            "***@127.0.0.1:3128"
        );
        assert_eq!(redact_url("mailto:someone"), "mailto:someone");
    }
}
