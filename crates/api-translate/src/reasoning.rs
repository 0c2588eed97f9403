//! What a client asks of the model's reasoning, in neither API's words ([`Reasoning`]), and
//! the chat-completions fields each kind of upstream takes for it ([`Style`]).
//!
//! The translations read the client's request into a [`Reasoning`] and leave it out of the
//! chat body: which fields carry it depends on the credential the request goes to, which is
//! chosen later (and may change on failover). The server writes [`Reasoning::fields`] into the
//! body made for each credential's style.
//!
//! | client asks for | `enabled` | `effort` | `budget_tokens` |
//! |---|---|---|---|
//! | Anthropic `thinking: {type: "enabled", budget_tokens: N}` | yes | [`effort_for_budget`]`(N)` | N |
//! | Anthropic `thinking: {type: "adaptive"}` | yes | `output_config.effort` (`max` → `high`), else `medium` | none |
//! | Anthropic `thinking: {type: "disabled"}` | no | none | none |
//! | Responses `reasoning: {effort: E}` | unless E is `none` or `minimal` | E, as sent | none |
//! | Responses `reasoning` without `effort` | yes | none | none |
//!
//! Each style's fields:
//! - `Effort` (OpenAI and most OpenAI-compatible servers): `reasoning_effort` when there is an
//!   effort; nothing otherwise (OpenAI has no "no reasoning" value that every reasoning model
//!   takes).
//! - `Qwen` (Qwen OAuth accounts; DashScope): for models that take Qwen's switch
//!   ([`takes_thinking_switch`]), `enable_thinking`, and `thinking_budget` when it is on with
//!   a budget; nothing for other models (the coder models have no switch).
//! - `Off`: nothing.

use serde_json::Value;

/// How an upstream is asked to reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// OpenAI's `reasoning_effort`.
    Effort,
    /// Qwen's `enable_thinking` and `thinking_budget`.
    Qwen,
    /// No reasoning field at all.
    Off,
}

/// A client's reasoning request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reasoning {
    /// Whether the model should reason at all.
    pub enabled: bool,
    /// OpenAI's effort (`low`, `medium`, `high`, or what a Responses client sent).
    pub effort: Option<String>,
    /// The most tokens to reason with (Anthropic's `budget_tokens`).
    pub budget_tokens: Option<u64>,
}

/// Thinking budgets up to this many tokens are effort `low` (Claude Code's "think" asks for
/// 4000).
pub const LOW_EFFORT_MAX_BUDGET: u64 = 4_000;
/// Thinking budgets up to this many tokens (and above [`LOW_EFFORT_MAX_BUDGET`]) are effort
/// `medium` (Claude Code's "think hard" asks for 10000); larger ones are `high` (its
/// "ultrathink" asks for 31999).
pub const MEDIUM_EFFORT_MAX_BUDGET: u64 = 10_000;

/// OpenAI's effort for an Anthropic thinking budget of `budget_tokens`.
pub fn effort_for_budget(budget_tokens: u64) -> &'static str {
    if budget_tokens <= LOW_EFFORT_MAX_BUDGET {
        "low"
    } else if budget_tokens <= MEDIUM_EFFORT_MAX_BUDGET {
        "medium"
    } else {
        "high"
    }
}

impl Reasoning {
    /// The request of an Anthropic `thinking` object; `output_config` is the request's
    /// (Claude Code sends the effort of adaptive thinking there). `None` for a `thinking` of
    /// an unknown type.
    pub fn from_anthropic(thinking: &Value, output_config: Option<&Value>) -> Option<Self> {
        match thinking.get("type").and_then(Value::as_str)? {
            "enabled" => {
                let budget_tokens = thinking.get("budget_tokens").and_then(Value::as_u64);
                let effort = budget_tokens.map_or("medium", effort_for_budget);
                Some(Self {
                    enabled: true,
                    effort: Some(effort.to_owned()),
                    budget_tokens,
                })
            }
            "adaptive" => {
                let asked = output_config
                    .and_then(|config| config.get("effort"))
                    .and_then(Value::as_str);
                let effort = match asked {
                    Some(effort @ ("low" | "medium" | "high")) => effort,
                    Some("max") => "high",
                    _ => "medium",
                };
                Some(Self {
                    enabled: true,
                    effort: Some(effort.to_owned()),
                    budget_tokens: None,
                })
            }
            "disabled" => Some(Self {
                enabled: false,
                effort: None,
                budget_tokens: None,
            }),
            _ => None,
        }
    }

    /// The request of a Responses `reasoning` object (`None` when it is not an object).
    pub fn from_responses(reasoning: &Value) -> Option<Self> {
        let reasoning = reasoning.as_object()?;
        let effort = reasoning.get("effort").and_then(Value::as_str);
        Some(Self {
            enabled: !matches!(effort, Some("none" | "minimal")),
            effort: effort.map(str::to_owned),
            budget_tokens: None,
        })
    }

    /// The chat-completions fields that ask an upstream of `style` for this reasoning, for a
    /// request to `model` (the model the upstream is asked for, after aliases).
    pub fn fields(&self, style: Style, model: &str) -> Vec<(&'static str, Value)> {
        match style {
            Style::Effort => self
                .effort
                .iter()
                .map(|effort| ("reasoning_effort", Value::from(effort.as_str())))
                .collect(),
            Style::Qwen if takes_thinking_switch(model) => {
                let mut fields = vec![("enable_thinking", Value::Bool(self.enabled))];
                if let Some(budget) = self.budget_tokens.filter(|_| self.enabled) {
                    fields.push(("thinking_budget", budget.into()));
                }
                fields
            }
            Style::Qwen | Style::Off => Vec::new(),
        }
    }
}

/// Whether `model` takes Qwen's `enable_thinking` switch: Qwen3 models other than the coder
/// ones, and QwQ (case-insensitive, after any `org/` prefix such as `Qwen/Qwen3-32B`).
pub fn takes_thinking_switch(model: &str) -> bool {
    let name = model
        .rsplit('/')
        .next()
        .unwrap_or(model)
        .to_ascii_lowercase();
    (name.starts_with("qwen3") && !name.contains("coder")) || name.starts_with("qwq")
}

#[cfg(test)]
mod golden;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn qwen3_models_without_coder_and_qwq_take_the_switch() {
        for (model, switched) in [
            ("qwen3-235b-a22b", true),
            ("qwen3-max", true),
            ("Qwen3-32B", true),
            ("Qwen/Qwen3-32B", true),
            ("QwQ-32B", true),
            ("qwq-plus", true),
            ("qwen3-coder-plus", false),
            ("Qwen/Qwen3-Coder-480B-A35B-Instruct", false),
            ("coder-model", false),
            ("qwen-plus", false),
            ("gpt-5-codex", false),
        ] {
            assert_eq!(takes_thinking_switch(model), switched, "{model}");
        }
    }

    #[test]
    fn budgets_map_to_efforts_at_the_documented_thresholds() {
        for (budget, effort) in [
            (0, "low"),
            (1024, "low"),
            (4000, "low"),
            (4001, "medium"),
            (10_000, "medium"),
            (10_001, "high"),
            (31_999, "high"),
            (u64::MAX, "high"),
        ] {
            assert_eq!(effort_for_budget(budget), effort, "{budget}");
        }
    }

    #[test]
    fn unknown_kinds_ask_for_nothing() {
        assert_eq!(
            Reasoning::from_anthropic(&json!({ "type": "auto" }), None),
            None
        );
        assert_eq!(Reasoning::from_anthropic(&json!("enabled"), None), None);
        assert_eq!(Reasoning::from_responses(&json!("high")), None);
    }

    #[test]
    fn a_disabled_request_sends_no_budget_to_qwen() {
        let off = Reasoning {
            enabled: false,
            effort: None,
            budget_tokens: Some(100),
        };
        assert_eq!(
            off.fields(Style::Qwen, "qwen3-max"),
            [("enable_thinking", Value::Bool(false))]
        );
        assert!(off.fields(Style::Effort, "qwen3-max").is_empty());
    }
}
