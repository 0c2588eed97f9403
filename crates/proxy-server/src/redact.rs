//! URLs as they may be shown: in logs, `Debug` output and messages, a URL's password (a proxy
//! URL's, an upstream base URL's) is replaced by `***`.

/// `raw` with the password of its userinfo replaced by `***`. Text that does not parse as a URL
/// but may hold credentials (it has an `@`) keeps only what follows its last `@`.
#[must_use]
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            // Fails only for URLs that cannot have credentials, which this one has.
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        Ok(_) => raw.to_owned(),
        Err(_) => match raw.rsplit_once('@') {
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
}
