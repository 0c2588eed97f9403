//! The headers of upstream requests, built once: Qwen Code's identity for Qwen OAuth accounts,
//! plain JSON headers for OpenAI-compatible API keys. Only `Authorization` is added per
//! attempt.

use std::cell::RefCell;
use std::sync::Arc;

use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::error::BuildError;
use crate::recent::{Recent, same_text};
use credential_pool::Flavor;

const JSON: &str = "application/json";
const EVENT_STREAM: &str = "text/event-stream";
const OWN_USER_AGENT: &str = concat!("cliproxy/", env!("CARGO_PKG_VERSION"));

/// Precomputed header sets, one per (flavor, streaming) pair.
#[derive(Debug)]
pub(crate) struct UpstreamHeaders {
    qwen: HeaderMap,
    qwen_stream: HeaderMap,
    plain: HeaderMap,
    plain_stream: HeaderMap,
}

impl UpstreamHeaders {
    pub(crate) fn new(qwen_client_version: &str) -> Result<Self, BuildError> {
        let user_agent =
            HeaderValue::try_from(qwen_user_agent(qwen_client_version)).map_err(|_| {
                BuildError::ClientVersion {
                    version: qwen_client_version.to_owned(),
                }
            })?;
        let mut qwen = HeaderMap::new();
        qwen.insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
        qwen.insert(USER_AGENT, user_agent.clone());
        qwen.insert(HeaderName::from_static("x-dashscope-useragent"), user_agent);
        qwen.insert(
            HeaderName::from_static("x-dashscope-authtype"),
            HeaderValue::from_static("qwen-oauth"),
        );
        qwen.insert(
            HeaderName::from_static("x-dashscope-cachecontrol"),
            HeaderValue::from_static("enable"),
        );
        let mut plain = HeaderMap::new();
        plain.insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
        plain.insert(USER_AGENT, HeaderValue::from_static(OWN_USER_AGENT));
        Ok(Self {
            qwen_stream: with_accept(&qwen, EVENT_STREAM),
            qwen: with_accept(&qwen, JSON),
            plain_stream: with_accept(&plain, EVENT_STREAM),
            plain: with_accept(&plain, JSON),
        })
    }

    /// The headers for a request of `flavor` with `authorization`, in a map with room for
    /// the headers hyper adds (`Host`, `Content-Length`), so none of them reallocates it.
    pub(crate) fn with_authorization(
        &self,
        flavor: Flavor,
        stream: bool,
        authorization: HeaderValue,
    ) -> HeaderMap {
        let template = self.get(flavor, stream);
        let mut headers = HeaderMap::with_capacity(template.len() + 3);
        for (name, value) in template {
            headers.insert(name, value.clone());
        }
        headers.insert(AUTHORIZATION, authorization);
        headers
    }

    /// The headers for a request of `flavor`, without `Authorization`.
    fn get(&self, flavor: Flavor, stream: bool) -> &HeaderMap {
        match (flavor, stream) {
            (Flavor::QwenOAuth, false) => &self.qwen,
            (Flavor::QwenOAuth, true) => &self.qwen_stream,
            (Flavor::OpenAiCompatible(_), false) => &self.plain,
            (Flavor::OpenAiCompatible(_), true) => &self.plain_stream,
        }
    }
}

fn with_accept(base: &HeaderMap, accept: &'static str) -> HeaderMap {
    let mut headers = base.clone();
    headers.insert(ACCEPT, HeaderValue::from_static(accept));
    headers
}

/// The value of `Authorization: Bearer <token>`, marked sensitive (hyper's HPACK and debug
/// output skip it); `None` when the token has bytes a header cannot carry.
pub(crate) fn bearer(token: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::try_from(format!("Bearer {token}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

thread_local! {
    /// The `Authorization` values of the credentials this worker thread sent with last. A
    /// refreshed token is a new string: the old value is not used again, and leaves as newer
    /// ones come.
    static RECENT_BEARERS: RefCell<Recent<str, Option<HeaderValue>>> =
        const { RefCell::new(Recent::new()) };
}

/// [`bearer`] of `token`, made once while this thread keeps sending with it (a `HeaderValue`
/// clones by reference counts).
pub(crate) fn shared_bearer(token: &Arc<str>) -> Option<HeaderValue> {
    RECENT_BEARERS.with_borrow_mut(|recent| {
        recent
            .get_or_make(token, same_text, || Arc::clone(token), bearer)
            .1
            .clone()
    })
}

/// `QwenCode/<version> (<platform>; <arch>)` with Node.js's names for this machine.
pub(crate) fn qwen_user_agent(version: &str) -> String {
    format!(
        "QwenCode/{version} ({}; {})",
        node_platform(std::env::consts::OS),
        node_arch(std::env::consts::ARCH)
    )
}

/// Node.js's `process.platform` for a Rust `target_os`.
fn node_platform(os: &str) -> &str {
    match os {
        "macos" => "darwin",
        "windows" => "win32",
        "solaris" | "illumos" => "sunos",
        other => other,
    }
}

/// Node.js's `process.arch` for a Rust `target_arch`.
fn node_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        "x86" => "ia32",
        "powerpc64" => "ppc64",
        "powerpc" => "ppc",
        "loongarch64" => "loong64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use credential_pool::ReasoningStyle;

    #[test]
    fn node_names() {
        assert_eq!(node_platform("linux"), "linux");
        assert_eq!(node_platform("macos"), "darwin");
        assert_eq!(node_platform("windows"), "win32");
        assert_eq!(node_arch("x86_64"), "x64");
        assert_eq!(node_arch("aarch64"), "arm64");
        assert_eq!(node_arch("riscv64"), "riscv64");
    }

    #[test]
    fn qwen_headers_carry_qwen_codes_identity() {
        let headers = UpstreamHeaders::new("0.14.2").expect("a valid version");
        let qwen = headers.get(Flavor::QwenOAuth, true);
        let user_agent = qwen_user_agent("0.14.2");
        assert!(user_agent.starts_with("QwenCode/0.14.2 ("));
        assert_eq!(qwen[USER_AGENT], user_agent.as_str());
        assert_eq!(qwen["x-dashscope-useragent"], user_agent.as_str());
        assert_eq!(qwen["x-dashscope-authtype"], "qwen-oauth");
        assert_eq!(qwen["x-dashscope-cachecontrol"], "enable");
        assert_eq!(qwen[ACCEPT], "text/event-stream");
        assert_eq!(
            headers.get(Flavor::QwenOAuth, false)[ACCEPT],
            "application/json"
        );

        let plain = headers.get(Flavor::OpenAiCompatible(ReasoningStyle::Effort), false);
        assert!(plain.get("x-dashscope-authtype").is_none());
        assert_eq!(plain[CONTENT_TYPE], "application/json");
    }

    #[test]
    fn a_version_with_a_newline_is_refused() {
        assert!(matches!(
            UpstreamHeaders::new("1\n2"),
            Err(BuildError::ClientVersion { .. })
        ));
    }

    #[test]
    fn bearer_is_sensitive() {
        let value = bearer("tok").expect("a valid token");
        assert_eq!(value, "Bearer tok");
        assert!(value.is_sensitive());
        assert!(bearer("bad\ntoken").is_none());
    }
}
