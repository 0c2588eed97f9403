//! Names of new token files: `qwen-<email>-<unix seconds>.json`, and the
//! one rule that keeps an email safe to be part of such a name.

use time::OffsetDateTime;

use crate::error::StoreError;
use crate::record::QWEN;

/// File name for a fresh Qwen login: `qwen-<email lowercased>-<unix seconds>.json`.
///
/// Fails if the email is empty or contains `/`, `\`, `..` or a control
/// character (NUL included), which could escape the auth dir or confuse tools.
pub fn login_file_name(email: &str, now: OffsetDateTime) -> Result<String, StoreError> {
    file_name(QWEN, email, now)
}

pub(crate) fn file_name(
    provider: &str,
    email: &str,
    now: OffsetDateTime,
) -> Result<String, StoreError> {
    check_email(email)?;
    Ok(format!(
        "{provider}-{}-{}.json",
        email.to_lowercase(),
        now.unix_timestamp()
    ))
}

/// Refuses emails that cannot safely become part of a file name.
pub(crate) fn check_email(email: &str) -> Result<(), StoreError> {
    if email.trim().is_empty() {
        return Err(StoreError::MissingEmail);
    }
    match email_file_name_problem(email) {
        Some(problem) => Err(StoreError::UnsafeEmail {
            email: email.to_owned(),
            problem,
        }),
        None => Ok(()),
    }
}

/// What keeps `email` out of a token file name, such as "`..`", or `None` when it fits.
///
/// Refused: `/`, `\`, `..`, a NUL byte and any other control character, which could escape
/// the auth dir or confuse tools. This is the one rule the store applies; the login's email
/// check calls it too, so an email the login accepts can always be saved.
pub fn email_file_name_problem(email: &str) -> Option<&'static str> {
    if email.contains('/') {
        Some("`/`")
    } else if email.contains('\\') {
        Some("`\\`")
    } else if email.contains('\0') {
        Some("a NUL byte")
    } else if email.contains("..") {
        Some("`..`")
    } else if email.chars().any(char::is_control) {
        Some("a control character")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn login_name_format() {
        let now = datetime!(2025-08-20 07:04:05 UTC);
        assert_eq!(
            login_file_name("Alice@Example.COM", now).expect("safe"),
            "qwen-alice@example.com-1755673445.json"
        );
    }

    #[test]
    fn unsafe_emails_are_refused() {
        let now = datetime!(2025-08-20 07:04:05 UTC);
        for email in [
            "a/b@c.com",
            "a\\b@c.com",
            "a\0@c.com",
            "a@..",
            "../x",
            "a\n@c.com",
        ] {
            assert!(
                matches!(
                    login_file_name(email, now),
                    Err(StoreError::UnsafeEmail { .. })
                ),
                "{email:?}"
            );
        }
        assert!(matches!(
            login_file_name(" ", now),
            Err(StoreError::MissingEmail)
        ));
    }
}
