//! Shell-style model patterns (`claude-*`), as model aliases and client keys' `models` use them.

/// Whether `text` matches `pattern`, where `*` stands for any run of characters.
pub(crate) fn glob_matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = parts.collect();
    let Some((last, middle)) = pieces.split_last() else {
        return rest.is_empty();
    };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_shell_stars() {
        assert!(glob_matches("claude-*", "claude-sonnet-4-5"));
        assert!(glob_matches("claude-*-4-5", "claude-sonnet-4-5"));
        assert!(glob_matches("*", "anything"));
        assert!(glob_matches("gpt-5", "gpt-5"));
        assert!(!glob_matches("gpt-5", "gpt-5-codex"));
        assert!(!glob_matches("claude-*-4-5", "claude-sonnet-4-6"));
        assert!(!glob_matches("a*a", "a"));
        assert!(glob_matches("a*a", "aa"));
    }
}
