//! The prompt that asks for the account email after authorization, explains a refused
//! entry and asks again.

use std::io::BufRead;
use std::io::Write;

use crate::email::{EmailFor, EmailProblem, validate_email};
use crate::error::CliError;

/// How many invalid entries the prompt accepts before giving up.
pub const EMAIL_ATTEMPTS: usize = 3;

/// The prompt shown before reading the email.
pub const EMAIL_PROMPT: &str = "Enter your Qwen account email: ";

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
