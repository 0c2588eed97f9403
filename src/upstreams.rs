//! The `[[openai-compat]]` entries as pool credentials: one per key, labelled `<name>#<n>`,
//! with its entry's models, rate cap and routing. `serve` adds them at start, a config reload
//! replaces them, and `accounts check` probes each.

use std::num::NonZeroU32;
use std::sync::Arc;

use credential_pool::{Access, Credential, Flavor, Models, Pool, Routing, StaticAccess};

use crate::config::OpenAiCompatEntry;

/// Adds every `[[openai-compat]]` key to the pool, each with its entry's rate cap.
pub(crate) fn add_api_keys(pool: &Pool<Credential>, entries: &[OpenAiCompatEntry]) {
    for key in api_key_credentials(entries) {
        let pool_key = format!("openai-compat:{}", key.credential.label);
        pool.upsert(
            &pool_key,
            Arc::new(key.credential),
            key.models,
            key.requests_per_minute,
        );
        pool.set_routing(&pool_key, key.routing);
    }
}

/// One key of an `[[openai-compat]]` entry, as a credential of its own.
pub(crate) struct ApiKeyCredential {
    /// Labelled `<name>#<n>`; names are unique and free of `#` (checked at config load).
    pub(crate) credential: Credential,
    pub(crate) models: Models,
    pub(crate) requests_per_minute: Option<NonZeroU32>,
    /// Its entry's weight, tier and group.
    pub(crate) routing: Routing,
}

/// Each key of each `[[openai-compat]]` entry, with the models and rate cap of its entry.
pub(crate) fn api_key_credentials(entries: &[OpenAiCompatEntry]) -> Vec<ApiKeyCredential> {
    let mut credentials = Vec::new();
    for entry in entries {
        let base_url: Arc<str> = entry.base_url.trim_end_matches('/').into();
        let models = if entry.models.is_empty() {
            Models::All
        } else {
            Models::Only(entry.models.clone())
        };
        for (index, key) in entry.api_keys.iter().enumerate() {
            let access = StaticAccess(Access {
                bearer: key.as_str().into(),
                base_url: Arc::clone(&base_url),
            });
            credentials.push(ApiKeyCredential {
                credential: Credential {
                    label: format!("{}#{}", entry.name, index + 1).into(),
                    flavor: Flavor::OpenAiCompatible(entry.reasoning.0),
                    access: Arc::new(access),
                },
                models: models.clone(),
                requests_per_minute: entry.requests_per_minute,
                routing: Routing {
                    weight: entry.weight.unwrap_or(NonZeroU32::MIN),
                    priority: entry.priority.unwrap_or(0),
                    group: entry.group.as_deref().map(Arc::from),
                },
            });
        }
    }
    credentials
}

#[cfg(test)]
mod tests {
    use super::*;
    use credential_pool::ReasoningStyle;

    fn entry(name: &str, keys: usize, rpm: Option<u32>) -> OpenAiCompatEntry {
        OpenAiCompatEntry {
            name: name.to_owned(),
            base_url: "https://x.example/v1/".to_owned(),
            api_keys: (0..keys).map(|i| format!("{name}-key-{i}")).collect(),
            models: Vec::new(),
            requests_per_minute: rpm.and_then(NonZeroU32::new),
            weight: None,
            priority: None,
            group: None,
            reasoning: Default::default(),
        }
    }

    #[test]
    fn each_key_asks_for_reasoning_in_the_style_of_its_own_entry() {
        let mut qwen = entry("dashscope", 2, None);
        qwen.reasoning.0 = ReasoningStyle::Qwen;
        let entries = [entry("openai", 1, None), qwen];
        let flavors: Vec<Flavor> = api_key_credentials(&entries)
            .iter()
            .map(|key| key.credential.flavor)
            .collect();
        assert_eq!(
            flavors,
            [
                Flavor::OpenAiCompatible(ReasoningStyle::Effort),
                Flavor::OpenAiCompatible(ReasoningStyle::Qwen),
                Flavor::OpenAiCompatible(ReasoningStyle::Qwen),
            ]
        );
    }

    #[test]
    fn each_key_carries_the_rate_cap_of_its_own_entry() {
        let entries = [
            entry("a", 2, Some(7)),
            entry("ab", 1, None),
            entry("b", 1, Some(3)),
        ];
        let keys: Vec<(String, Option<u32>)> = api_key_credentials(&entries)
            .iter()
            .map(|key| {
                (
                    key.credential.label.to_string(),
                    key.requests_per_minute.map(NonZeroU32::get),
                )
            })
            .collect();
        assert_eq!(
            keys,
            [
                ("a#1".to_owned(), Some(7)),
                ("a#2".to_owned(), Some(7)),
                ("ab#1".to_owned(), None),
                ("b#1".to_owned(), Some(3)),
            ]
        );
        let access = api_key_credentials(&entries)[0].credential.access.current();
        assert_eq!(&*access.base_url, "https://x.example/v1");
    }
}
