//! Which upstream models take Qwen's `enable_thinking` switch, shared by the Messages and
//! Responses translations. Judged on the model the upstream is asked for, after model
//! aliases, so `"claude-*" = "qwen3-235b-a22b"` thinks and `"gpt-5*" = "coder-model"` does not.

/// Whether `model` takes Qwen's `enable_thinking` switch: Qwen3 models other than the coder
/// ones, and QwQ (case-insensitive).
pub fn takes_thinking_switch(model: &str) -> bool {
    let model = model.to_ascii_lowercase();
    (model.starts_with("qwen3") && !model.contains("coder")) || model.starts_with("qwq")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qwen3_models_without_coder_and_qwq_take_the_switch() {
        for (model, switched) in [
            ("qwen3-235b-a22b", true),
            ("qwen3-max", true),
            ("Qwen3-32B", true),
            ("QwQ-32B", true),
            ("qwq-plus", true),
            ("qwen3-coder-plus", false),
            ("coder-model", false),
            ("qwen-plus", false),
            ("gpt-5-codex", false),
        ] {
            assert_eq!(takes_thinking_switch(model), switched, "{model}");
        }
    }
}
