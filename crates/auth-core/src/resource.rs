//! Where an account's model API lives: Qwen's token answers name a `resource_url` (a host such
//! as `portal.qwen.ai`), which becomes the base URL the account's requests go to.

/// Qwen's default API base when an account has no `resource_url`.
pub const QWEN_DEFAULT_BASE_URL: &str = "https://dashscope.aliyuncs.com/compatible-mode/v1";

/// The API base URL for a Qwen account's `resource_url`: `https://` added when
/// there is no scheme, `/v1` appended when missing, the default when absent.
#[must_use]
pub fn qwen_base_url(resource_url: Option<&str>) -> String {
    let Some(raw) = resource_url.map(str::trim).filter(|r| !r.is_empty()) else {
        return QWEN_DEFAULT_BASE_URL.to_owned();
    };
    let with_scheme = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("https://{raw}")
    };
    let trimmed = with_scheme.trim_end_matches('/');
    if trimmed.ends_with("/v1") {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/v1")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_from_resource_url() {
        assert_eq!(
            qwen_base_url(Some("portal.qwen.ai")),
            "https://portal.qwen.ai/v1"
        );
        assert_eq!(
            qwen_base_url(Some("https://portal.qwen.ai/v1/")),
            "https://portal.qwen.ai/v1"
        );
        assert_eq!(
            qwen_base_url(Some("http://127.0.0.1:9/")),
            "http://127.0.0.1:9/v1"
        );
        assert_eq!(qwen_base_url(None), QWEN_DEFAULT_BASE_URL);
        assert_eq!(qwen_base_url(Some("  ")), QWEN_DEFAULT_BASE_URL);
    }
}
