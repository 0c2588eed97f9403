//! `cliproxy accounts check`: one minimal request per credential through the
//! real proxy stack, reported as a table.

use std::sync::Arc;

use anyhow::Context as _;
use auth_core::OAuthClient;
use bytes::Bytes;
use credential_pool::Credential;
use credential_pool::{Models, Pool, PoolConfig};
use http_body_util::{BodyExt as _, Full};
use proxy_server::{Proxy, ServerConfig};
use tower::ServiceExt as _;

use crate::config::Settings;
use account_runtime::{QwenAccount, Refreshes, account_credential};

/// What one probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Ok,
    Expired,
    Quota,
    ReloginRequired,
    NetworkError,
    UpstreamError,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Expired => "expired",
            Self::Quota => "quota",
            Self::ReloginRequired => "re-login required",
            Self::NetworkError => "network error",
            Self::UpstreamError => "upstream error",
        }
    }

    /// Reads the proxy's answer: its status and OpenAI error `code`.
    fn of(status: u16, code: &str) -> Self {
        match (status, code) {
            (200..=299, _) => Self::Ok,
            (_, "relogin_required" | "credentials_disabled") => Self::ReloginRequired,
            (_, "upstream_auth_failed") => Self::Expired,
            (429, _) => Self::Quota,
            (_, "upstream_unreachable" | "upstream_timeout") => Self::NetworkError,
            _ => Self::UpstreamError,
        }
    }
}

/// Checks every account and API key; fails when any is not ok.
pub async fn check_accounts(settings: &Settings, oauth: OAuthClient) -> anyhow::Result<()> {
    let serve = &settings.serve;
    let store = crate::store::open(settings, crate::store::Trust::ReadOnly).await?;
    let listing = store.list().await?;
    let refreshes = Refreshes::new();
    let mut probes: Vec<(Arc<str>, Credential, String)> = Vec::new();
    let mut relogin_marked = Vec::new();
    let qwen_model = serve
        .server
        .models
        .first()
        .cloned()
        .context("[qwen] models is empty: name at least one model to check accounts with")?;
    for stored in listing.accounts {
        let account = Arc::new(QwenAccount::new(
            stored,
            store.clone(),
            oauth.clone(),
            Arc::clone(&refreshes),
        ));
        if account.needs_relogin() {
            relogin_marked.push(Arc::clone(&account.label));
        }
        let credential = account_credential(&account);
        probes.push((Arc::clone(&account.label), credential, qwen_model.clone()));
    }
    for key in crate::upstreams::api_key_credentials(&serve.openai_compat) {
        let model = match key.models {
            Models::Only(list) if !list.is_empty() => list[0].clone(),
            _ => qwen_model.clone(),
        };
        probes.push((Arc::clone(&key.credential.label), key.credential, model));
    }
    for problem in &listing.problems {
        eprintln!("skipped {problem}");
    }
    if probes.is_empty() {
        println!(
            "No accounts in {} and no [[openai-compat]] keys. Add one with `cliproxy login qwen`.",
            store.describe()
        );
        return Ok(());
    }

    let mut rows = Vec::new();
    for (label, credential, model) in probes {
        let (verdict, detail) = if relogin_marked.contains(&label) {
            (
                Verdict::ReloginRequired,
                "the server found its refresh token dead; run `cliproxy login qwen` for it"
                    .to_owned(),
            )
        } else {
            probe(settings, credential, &model).await?
        };
        rows.push((label, verdict, model, detail));
    }
    // A probe's refresh may have left new tokens still to be written: give them the grace.
    refreshes
        .drain(tokio::time::Instant::now() + serve.server.shutdown_grace)
        .await;
    let width = rows.iter().map(|row| row.0.len()).max().unwrap_or(7).max(7);
    println!(
        "{:<width$}  {:<17}  {:<18}  DETAIL",
        "ACCOUNT", "STATUS", "MODEL"
    );
    for (label, verdict, model, detail) in &rows {
        println!(
            "{label:<width$}  {:<17}  {model:<18}  {detail}",
            verdict.label()
        );
    }
    let failing = rows.iter().filter(|row| row.1 != Verdict::Ok).count();
    anyhow::ensure!(
        failing == 0,
        "{failing} of {} credentials failed the check; see docs/troubleshooting.md for each status",
        rows.len()
    );
    Ok(())
}

/// Sends `{"model", "messages": [ping], "max_tokens": 1}` through a proxy whose pool holds only `credential`.
async fn probe(
    settings: &Settings,
    credential: Credential,
    model: &str,
) -> anyhow::Result<(Verdict, String)> {
    let pool = Arc::new(Pool::new(PoolConfig::default()));
    let key = credential.label.to_string();
    pool.upsert(&key, Arc::new(credential), Models::All, None);
    // The server's own settings (timeouts, upstream proxy, client version), but no client
    // keys: the probe is sent in-process, without one.
    let config = ServerConfig {
        api_keys: Vec::new(),
        request_retry: 2,
        ..settings.serve.server.clone()
    };
    let proxy = Proxy::new(config, pool)?;
    let body = serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": "ping"}],
        "max_tokens": 1,
    });
    let request = http::Request::post("/v1/chat/completions")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))?;
    let response = proxy.service().oneshot(request).await?;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    let error: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let code = error["error"]["code"].as_str().unwrap_or_default();
    let message = error["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok((Verdict::of(status, code), message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_the_proxy_error_codes() {
        assert_eq!(Verdict::of(200, ""), Verdict::Ok);
        assert_eq!(
            Verdict::of(503, "relogin_required"),
            Verdict::ReloginRequired
        );
        assert_eq!(
            Verdict::of(503, "credentials_disabled"),
            Verdict::ReloginRequired
        );
        assert_eq!(Verdict::of(502, "upstream_auth_failed"), Verdict::Expired);
        assert_eq!(Verdict::of(429, "rate_limit_exceeded"), Verdict::Quota);
        assert_eq!(
            Verdict::of(502, "upstream_unreachable"),
            Verdict::NetworkError
        );
        assert_eq!(Verdict::of(502, "upstream_html"), Verdict::UpstreamError);
    }
}
