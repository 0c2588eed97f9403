//! `[[openai-compat]]`: an OpenAI-compatible upstream and its keys, as the file writes it, and
//! a `Debug` for lists of keys that never shows one.

use std::fmt;
use std::num::NonZeroU32;

use credential_pool::ReasoningStyle;
use proxy_server::redact_url;
use serde::Deserialize;

/// One `[[openai-compat]]` upstream: each of its keys is a credential of its own.
///
/// `Debug` shows how many keys there are, never a key.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OpenAiCompatEntry {
    pub name: String,
    pub base_url: String,
    pub api_keys: Vec<String>,
    #[serde(default)]
    pub models: Vec<String>,
    /// Per-key cap over a sliding minute; missing: no cap (0 is refused when parsing).
    pub requests_per_minute: Option<NonZeroU32>,
    /// Share of new requests and conversations under `routing-strategy = "weighted"`.
    pub weight: Option<NonZeroU32>,
    /// Tier: lower first; a tier serves when every credential before it cannot.
    pub priority: Option<i32>,
    /// The group client keys can be limited to.
    pub group: Option<String>,
    /// How the upstream is asked for reasoning (`effort`, `qwen` or `off`); missing: `effort`.
    #[serde(default)]
    pub reasoning: ReasoningSetting,
}

/// The `reasoning` of an `[[openai-compat]]` entry: how a translated request asks that upstream
/// for the reasoning the client wants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReasoningSetting(pub ReasoningStyle);

impl<'de> Deserialize<'de> for ReasoningSetting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map(Self).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for OpenAiCompatEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiCompatEntry")
            .field("name", &self.name)
            .field("base_url", &redact_url(&self.base_url))
            .field("api_keys", &Keys(&self.api_keys))
            .field("models", &self.models)
            .field("requests_per_minute", &self.requests_per_minute)
            .field("weight", &self.weight)
            .field("priority", &self.priority)
            .field("group", &self.group)
            .field("reasoning", &self.reasoning.0)
            .finish()
    }
}

/// `Debug` stand-in for a list of keys: how many, never which.
pub(super) struct Keys<'a>(pub(super) &'a [String]);

impl fmt::Debug for Keys<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{} redacted]", self.0.len())
    }
}
