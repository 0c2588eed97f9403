//! Namespace tools (`{"type": "namespace", "name", "description", "tools": [...]}`, which Codex
//! CLI sends) as flat chat tools, and back.
//!
//! Chat completions have no namespaces, so each function tool inside one is sent as a function
//! named `<namespace>__<name>` ([`flat_name`]). The model's calls of such a function come back
//! as `function_call` items with `name` and `namespace` apart, as the Responses API gives
//! them; a `function_call` item in `input` that carries a `namespace` goes up under the flat
//! name again. A flat name that is also the name of another tool of the request makes the
//! request ambiguous and is refused.

use std::collections::HashMap;

/// What joins a namespace and a tool name in the flat name.
const SEPARATOR: &str = "__";

/// The chat function name of tool `name` in `namespace`.
pub(crate) fn flat_name(namespace: &str, name: &str) -> String {
    format!("{namespace}{SEPARATOR}{name}")
}

/// The namespaced tools of one request, by flat name.
#[derive(Debug, Clone, Default)]
pub struct Namespaces {
    by_flat_name: HashMap<String, (String, String)>,
}

impl Namespaces {
    /// Records tool `name` of `namespace`; returns its flat name.
    pub(crate) fn add(&mut self, namespace: &str, name: &str) -> String {
        let flat = flat_name(namespace, name);
        self.by_flat_name
            .insert(flat.clone(), (namespace.to_owned(), name.to_owned()));
        flat
    }

    /// The namespace and name a chat function name stands for: `(None, name)` for a tool
    /// outside any namespace.
    pub(crate) fn split<'a>(&'a self, chat_name: &'a str) -> (Option<&'a str>, &'a str) {
        match self.by_flat_name.get(chat_name) {
            Some((namespace, name)) => (Some(namespace), name),
            None => (None, chat_name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_names_split_back_only_when_they_were_made_here() {
        let mut namespaces = Namespaces::default();
        assert_eq!(
            namespaces.add("multi_agent_v1", "spawn_agent"),
            "multi_agent_v1__spawn_agent"
        );
        assert_eq!(
            namespaces.split("multi_agent_v1__spawn_agent"),
            (Some("multi_agent_v1"), "spawn_agent")
        );
        assert_eq!(namespaces.split("other__tool"), (None, "other__tool"));
        assert_eq!(namespaces.split("exec_command"), (None, "exec_command"));
    }
}
