//! The account email: validation, and the prompt that asks for it after authorization.

use std::io::BufRead;
use std::io::Write;

use crate::error::CliError;

/// How many invalid entries the prompt accepts before giving up.
pub const EMAIL_ATTEMPTS: usize = 3;

/// The prompt shown before reading the email.
pub const EMAIL_PROMPT: &str = "Enter your Qwen account email: ";

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
    #[error("it contains {0:?}; only letters, digits and @ . + - _ are allowed")]
    Character(char),
}

/// Checks an email the way the login requires, and returns it lowercased.
pub fn validate_email(raw: &str) -> Result<String, EmailProblem> {
    let email = raw.trim();
    if email.chars().any(char::is_whitespace) {
        return Err(EmailProblem::Space);
    }
    if let Some(bad) = email
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '@' | '.' | '+' | '-' | '_')))
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
    Ok(email.to_lowercase())
}

/// Asks for the email on `output` and reads it from `input`, up to [`EMAIL_ATTEMPTS`] times.
///
/// An empty line or the end of input means the user gave no email: that is
/// [`CliError::EmailRequired`]. Each invalid entry is explained and asked again.
pub fn prompt_email(input: &mut dyn BufRead, output: &mut dyn Write) -> Result<String, CliError> {
    let mut last_problem = None;
    for _ in 0..EMAIL_ATTEMPTS {
        write!(output, "{EMAIL_PROMPT}").map_err(CliError::terminal)?;
        output.flush().map_err(CliError::terminal)?;
        let mut line = String::new();
        let read = input.read_line(&mut line).map_err(CliError::terminal)?;
        if read == 0 {
            writeln!(output).map_err(CliError::terminal)?;
        }
        if line.trim().is_empty() {
            return Err(CliError::EmailRequired);
        }
        match validate_email(&line) {
            Ok(email) => return Ok(email),
            Err(problem) => {
                writeln!(
                    output,
                    "That is not a valid email: {problem}. Enter the email of the Qwen account you just approved."
                )
                .map_err(CliError::terminal)?;
                last_problem = Some(problem);
            }
        }
    }
    Err(CliError::InvalidEmail {
        problem: last_problem.unwrap_or(EmailProblem::MissingAt),
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
        ];
        for (input, expected) in cases {
            assert_eq!(validate_email(input), Err(expected), "{input}");
        }
    }

    fn run_prompt(input: &str) -> (Result<String, CliError>, String) {
        let mut reader = input.as_bytes();
        let mut output = Vec::new();
        let result = prompt_email(&mut reader, &mut output);
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
    fn three_invalid_entries_give_up() {
        let (result, shown) = run_prompt("a\nb\nc\nme@example.com\n");
        assert!(matches!(result, Err(CliError::InvalidEmail { .. })));
        assert_eq!(shown.matches(EMAIL_PROMPT).count(), EMAIL_ATTEMPTS);
    }

    #[test]
    fn empty_line_or_end_of_input_is_email_required() {
        assert!(matches!(run_prompt("\n").0, Err(CliError::EmailRequired)));
        assert!(matches!(run_prompt("").0, Err(CliError::EmailRequired)));
        assert!(matches!(
            run_prompt("bad\n").0,
            Err(CliError::EmailRequired)
        ));
    }
}
