//! Model aliases: client model names (exact, or globs with `*`) mapped to the
//! models the credentials serve, so agents that send their own model ids
//! (`claude-sonnet-4-5`, `gpt-5-codex`) land on a Qwen model.
//!
//! Precedence: an exact pattern wins; otherwise the longest matching glob
//! (the most specific), ties broken alphabetically — never file order.

use crate::glob::glob_matches;

/// The configured aliases, ordered by precedence.
#[derive(Debug, Clone, Default)]
pub(crate) struct Aliases {
    rules: Vec<(String, String)>,
}

impl Aliases {
    pub(crate) fn new(pairs: &[(String, String)]) -> Self {
        let mut rules = pairs.to_vec();
        rules.sort_by(|(a, _), (b, _)| {
            let exact = |pattern: &str| !pattern.contains('*');
            exact(b)
                .cmp(&exact(a))
                .then(b.len().cmp(&a.len()))
                .then(a.cmp(b))
        });
        Self { rules }
    }

    /// The model `requested` stands for, or `None` when no alias matches.
    pub(crate) fn resolve(&self, requested: &str) -> Option<&str> {
        self.rules
            .iter()
            .find(|(pattern, _)| glob_matches(pattern, requested))
            .map(|(_, target)| target.as_str())
    }

    /// The alias patterns, for `GET /v1/models` and error messages.
    pub(crate) fn patterns(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|(pattern, _)| pattern.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aliases(pairs: &[(&str, &str)]) -> Aliases {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
            .collect();
        Aliases::new(&owned)
    }

    #[test]
    fn exact_then_most_specific_glob_wins() {
        let table = aliases(&[
            ("*", "coder-model"),
            ("claude-*", "qwen3-coder-plus"),
            ("claude-haiku-*", "qwen3-coder-flash"),
            ("claude-haiku-4-5", "vision-model"),
        ]);
        assert_eq!(table.resolve("claude-haiku-4-5"), Some("vision-model"));
        assert_eq!(table.resolve("claude-haiku-3"), Some("qwen3-coder-flash"));
        assert_eq!(table.resolve("claude-opus-4"), Some("qwen3-coder-plus"));
        assert_eq!(table.resolve("gpt-5"), Some("coder-model"));
        assert_eq!(aliases(&[]).resolve("gpt-5"), None);
    }
}
