//! Text from outside (an upstream's error message, a header a client sent) made fit to be
//! quoted in a message to a client or in the log: one line, nothing that reorders or hides
//! text, and a few hundred characters at most.

/// Longest text from outside (an upstream's error message, a header the client sent) quoted
/// in a message to a client.
pub const MAX_QUOTED_CHARS: usize = 300;

/// `text` fit to be quoted to a client: control characters (line breaks included) and the
/// invisible characters that reorder text (bidirectional overrides) become spaces, and past
/// [`MAX_QUOTED_CHARS`] it is cut, with `…` at the cut.
pub fn client_text(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len().min(MAX_QUOTED_CHARS * 4));
    for (count, c) in text.trim().chars().enumerate() {
        if count == MAX_QUOTED_CHARS {
            quoted.push('…');
            break;
        }
        let hidden =
            c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        quoted.push(if hidden { ' ' } else { c });
    }
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_text_is_one_short_line() {
        assert_eq!(client_text(" a\nb\r\tc\u{1b}[31m "), "a b  c [31m");
        assert_eq!(client_text("x\u{202e}y"), "x y");
        let long = client_text(&"é".repeat(1000));
        assert_eq!(long.chars().count(), MAX_QUOTED_CHARS + 1);
        assert!(long.ends_with('…'));
        assert_eq!(
            client_text(&"é".repeat(MAX_QUOTED_CHARS)).chars().count(),
            MAX_QUOTED_CHARS
        );
    }
}
