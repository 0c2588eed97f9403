//! The account email: which command asks for it, and the rules an entered email must pass.

/// Which command asks for the email; its messages say how to retry it and which account is meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailFor {
    /// `cliproxy login qwen`, after the approval.
    Login,
    /// `cliproxy import qwen-code`.
    Import,
}

impl EmailFor {
    /// The command to run again.
    pub fn command(self) -> &'static str {
        match self {
            Self::Login => "cliproxy login qwen",
            Self::Import => "cliproxy import qwen-code",
        }
    }

    /// The account whose email is wanted.
    pub(crate) fn account(self) -> &'static str {
        match self {
            Self::Login => "the Qwen account you just approved",
            Self::Import => "the Qwen account Qwen Code is logged in to",
        }
    }
}

/// Why an entered email was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailProblem {
    #[error("it has no @")]
    MissingAt,
    #[error("it has more than one @")]
    SeveralAts,
    #[error("the part before @ is empty")]
    EmptyLocalPart,
    #[error("the domain after @ needs a dot, like example.com")]
    DomainWithoutDot,
    #[error("it contains a space")]
    Space,
    #[error("it contains {0:?}; only letters a-z, digits and @ . + - _ are allowed")]
    Character(char),
    /// What [`token_store::email_file_name_problem`] refuses, such as `..`.
    #[error("it contains {0}, which a token file name cannot hold")]
    NotForFileName(&'static str),
    #[error("it is not text (the bytes are not UTF-8)")]
    NotText,
}

/// Checks an email the way the login requires, and returns it lowercased.
///
/// Allowed are ASCII letters and digits and `@ . + - _`, one `@` with something before it, and
/// a domain with a dot. The result always passes the store's file-name rule as well.
pub fn validate_email(raw: &str) -> Result<String, EmailProblem> {
    let email = raw.trim();
    if email.chars().any(char::is_whitespace) {
        return Err(EmailProblem::Space);
    }
    if let Some(bad) = email
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '+' | '-' | '_')))
    {
        return Err(EmailProblem::Character(bad));
    }
    let mut parts = email.split('@');
    let (Some(local), Some(domain)) = (parts.next(), parts.next()) else {
        return Err(EmailProblem::MissingAt);
    };
    if parts.next().is_some() {
        return Err(EmailProblem::SeveralAts);
    }
    if local.is_empty() {
        return Err(EmailProblem::EmptyLocalPart);
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 || labels.iter().any(|label| label.is_empty()) {
        return Err(EmailProblem::DomainWithoutDot);
    }
    let email = email.to_lowercase();
    if let Some(problem) = token_store::email_file_name_problem(&email) {
        return Err(EmailProblem::NotForFileName(problem));
    }
    Ok(email)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_addresses_and_lowercases_them() {
        assert_eq!(
            validate_email(" Dev.Ops+qwen@Example.CO.uk\n").unwrap(),
            "dev.ops+qwen@example.co.uk"
        );
        assert_eq!(validate_email("a_b-c@d.io").unwrap(), "a_b-c@d.io");
    }

    #[test]
    fn refuses_each_kind_of_bad_address() {
        let cases = [
            ("user.example.com", EmailProblem::MissingAt),
            ("a@b@c.com", EmailProblem::SeveralAts),
            ("@example.com", EmailProblem::EmptyLocalPart),
            ("user@localhost", EmailProblem::DomainWithoutDot),
            ("user@example.", EmailProblem::DomainWithoutDot),
            ("user@.com", EmailProblem::DomainWithoutDot),
            ("us er@example.com", EmailProblem::Space),
            ("user/x@example.com", EmailProblem::Character('/')),
            ("user@example.com;rm", EmailProblem::Character(';')),
            ("jos\u{e9}@example.com", EmailProblem::Character('\u{e9}')),
            ("\u{3b4}@example.com", EmailProblem::Character('\u{3b4}')),
            ("a@exa\u{ff4d}ple.com", EmailProblem::Character('\u{ff4d}')),
            ("a..b@example.com", EmailProblem::NotForFileName("`..`")),
        ];
        for (input, expected) in cases {
            assert_eq!(validate_email(input), Err(expected), "{input}");
        }
    }

    #[test]
    fn every_accepted_email_can_name_a_token_file() {
        let now = time::OffsetDateTime::UNIX_EPOCH;
        let pieces = ["a", "B", "7", ".", "..", "+", "-", "_", "@", "x.io"];
        for first in pieces {
            for second in pieces {
                for third in pieces {
                    let raw = format!("{first}{second}@{third}x.co");
                    if let Ok(email) = validate_email(&raw) {
                        assert!(
                            token_store::login_file_name(&email, now).is_ok(),
                            "{raw:?} is accepted at the prompt but cannot be saved"
                        );
                    }
                }
            }
        }
    }
}
