//! The account email: validation, and the prompt that asks for it after authorization.

use std::io::BufRead;
use std::io::Write;

use crate::error::CliError;

/// How many invalid entries the prompt accepts before giving up.
pub const EMAIL_ATTEMPTS: usize = 3;

/// The prompt shown before reading the email.
pub const EMAIL_PROMPT: &str = "Enter your Qwen account email: ";

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
    fn account(self) -> &'static str {
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

/// Asks for the email on `output` and reads it from `input`, up to [`EMAIL_ATTEMPTS`] times.
///
/// An empty line or the end of input means the user gave no email: that is
/// [`CliError::EmailRequired`]. Each invalid entry (bytes that are not UTF-8 included) is
/// explained and asked again.
pub fn prompt_email(
    input: &mut dyn BufRead,
    output: &mut dyn Write,
    purpose: EmailFor,
) -> Result<String, CliError> {
    let mut last_problem = None;
    for _ in 0..EMAIL_ATTEMPTS {
        write!(output, "{EMAIL_PROMPT}").map_err(CliError::terminal)?;
        output.flush().map_err(CliError::terminal)?;
        let mut line = Vec::new();
        let read = input
            .read_until(b'\n', &mut line)
            .map_err(CliError::terminal)?;
        if read == 0 {
            writeln!(output).map_err(CliError::terminal)?;
        }
        if line.trim_ascii().is_empty() {
            return Err(CliError::EmailRequired { purpose });
        }
        let checked = std::str::from_utf8(&line)
            .map_err(|_| EmailProblem::NotText)
            .and_then(validate_email);
        match checked {
            Ok(email) => return Ok(email),
            Err(problem) => {
                writeln!(
                    output,
                    "That is not a valid email: {problem}. Enter the email of {}.",
                    purpose.account()
                )
                .map_err(CliError::terminal)?;
                last_problem = Some(problem);
            }
        }
    }
    Err(CliError::InvalidEmail {
        problem: last_problem.unwrap_or(EmailProblem::MissingAt),
        purpose,
    })
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

    fn run_prompt(input: &str) -> (Result<String, CliError>, String) {
        run_prompt_bytes(input.as_bytes(), EmailFor::Login)
    }

    fn run_prompt_bytes(mut input: &[u8], purpose: EmailFor) -> (Result<String, CliError>, String) {
        let mut output = Vec::new();
        let result = prompt_email(&mut input, &mut output, purpose);
        (result, String::from_utf8(output).unwrap())
    }

    #[test]
    fn valid_entry_is_returned() {
        let (result, shown) = run_prompt("me@example.com\n");
        assert_eq!(result.unwrap(), "me@example.com");
        assert_eq!(shown, EMAIL_PROMPT);
    }

    #[test]
    fn invalid_entry_is_explained_and_asked_again() {
        let (result, shown) = run_prompt("not-an-email\nme@example.com\n");
        assert_eq!(result.unwrap(), "me@example.com");
        assert!(shown.contains("not a valid email: it has no @"), "{shown}");
        assert_eq!(shown.matches(EMAIL_PROMPT).count(), 2);
    }

    #[test]
    fn bytes_that_are_not_utf8_are_an_invalid_entry() {
        let (result, shown) =
            run_prompt_bytes(b"d\xffv@example.com\nme@example.com\n", EmailFor::Login);
        assert_eq!(result.unwrap(), "me@example.com");
        assert!(
            shown.contains("not a valid email: it is not text"),
            "{shown}"
        );
    }

    #[test]
    fn import_messages_name_the_import() {
        let (result, shown) = run_prompt_bytes(b"nope\n\n", EmailFor::Import);
        assert!(shown.contains("Qwen Code is logged in to"), "{shown}");
        assert!(!shown.contains("just approved"), "{shown}");
        let message = result.unwrap_err().to_string();
        assert!(message.contains("`cliproxy import qwen-code`"), "{message}");
        assert!(!message.contains("login"), "{message}");
    }

    #[test]
    fn three_invalid_entries_give_up() {
        let (result, shown) = run_prompt("a\nb\nc\nme@example.com\n");
        assert!(matches!(result, Err(CliError::InvalidEmail { .. })));
        let message = result.unwrap_err().to_string();
        assert!(message.contains("`cliproxy login qwen`"), "{message}");
        assert_eq!(shown.matches(EMAIL_PROMPT).count(), EMAIL_ATTEMPTS);
    }

    #[test]
    fn empty_line_or_end_of_input_is_email_required() {
        for input in ["\n", "", " \r\n", "bad\n"] {
            assert!(
                matches!(run_prompt(input).0, Err(CliError::EmailRequired { .. })),
                "{input:?}"
            );
        }
    }
}
