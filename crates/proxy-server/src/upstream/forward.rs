//! The failover loop: select a credential, send, classify the answer, report it to the pool,
//! and either hand the answer to the client or try again (refreshed token on the same
//! credential after a 401, else the next credential) within the attempt budget.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use credential_pool::{Outcome, Selection, Slot, Unavailable};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use serde::de::IgnoredAny;
use tracing::Span;
use usage_ledger::FailureClass;

use super::answer::Answer;
use super::classify::{self, Failure, Verdict};
use super::errors::{
    attempts_spent_error, client_limited_error, failure_error, not_json, unavailable_error,
};
use super::request::ChatRequest;
use super::stream::UpstreamBody;
use super::{Upstream, error_chain, headers};
use crate::api_error::{ApiError, SERVER_ERROR};
use crate::layers::request_id::LoggedId;
use crate::recent::{Recent, same_text};
use credential_pool::{Access, Credential, Flavor, RefreshFailure};

/// Largest non-streaming answer held in memory.
const MAX_ANSWER_BYTES: usize = 256 * 1024 * 1024;
/// Largest error body read to classify an answer; the rest is not read.
const MAX_ERROR_BYTES: usize = 1024 * 1024;
/// The reason shown for a credential disabled because its refresh token is dead.
pub(super) const RELOGIN_REASON: &str = "re-login required";

/// Logs a request whose client went away before its answer was ready: dropping the request's
/// future cancels its upstream requests, but never a token refresh (that runs in a task of its
/// own).
struct ClientPresence {
    id: LoggedId,
    answered: bool,
}

impl Drop for ClientPresence {
    fn drop(&mut self) {
        if !self.answered {
            tracing::debug!(request_id = %self.id, "the client went away before the answer");
        }
    }
}

/// What one upstream request came to.
pub(super) enum Attempt {
    Success(Answer),
    PassThrough(Answer),
    Failed(Failure),
}

impl Upstream {
    /// Serves `request` with the pool's credentials.
    ///
    /// # Errors
    ///
    /// An [`ApiError`] for the client when no credential could serve the request.
    pub(crate) async fn chat(&self, request: ChatRequest) -> Result<Answer, ApiError> {
        let mut presence = ClientPresence {
            id: request.id.clone(),
            answered: false,
        };
        let answer = self.serve_chat(request).await;
        presence.answered = true;
        answer
    }

    async fn serve_chat(&self, mut request: ChatRequest) -> Result<Answer, ApiError> {
        if let Some(cap) = self.max_output_tokens
            && request.output_tokens() > Some(u64::from(cap))
        {
            request.cap_output_tokens(cap).map_err(not_json)?;
        }
        let model = std::mem::take(&mut request.model);
        let stream = request.stream;
        let id = std::mem::take(&mut request.id);
        let conversation = request.conversation;
        let client = Arc::clone(&request.client);
        // Dropped with this future when the client leaves first: counted as a cancel.
        // Both clocks read once for the checks before the first attempt.
        let (now, wall) = (Instant::now(), SystemTime::now());
        let mut meter = self.usage.meter(&client, request.api, &model, now);
        // A client key past its own limits never reaches the upstream.
        if let Err(limited) = client.admit_shared(&self.pool, now, wall) {
            if let Some(meter) = meter {
                meter.failed(FailureClass::Rate);
            }
            return Err(client_limited_error(&client, limited));
        }
        let mut outgoing = request.into_outgoing();
        let mut tried: Vec<Arc<str>> = Vec::new();
        let mut last: Option<Failure> = None;
        let mut attempts = 0;
        let mut first_clocks = Some((now, wall));
        while attempts < self.attempts {
            let (now, wall) = first_clocks
                .take()
                .unwrap_or_else(|| (Instant::now(), SystemTime::now()));
            let lease = match self.pool.select_with(Selection {
                model: &model,
                tried: &tried,
                conversation,
                scope: &client.scope,
                now,
                wall,
            }) {
                Ok(lease) => lease,
                Err(unavailable) => {
                    if let Some(meter) = meter {
                        meter.failed(match (&last, &unavailable) {
                            (Some(failure), _) => failure_class(failure),
                            (None, Unavailable::CoolingDown { .. }) => FailureClass::Rate,
                            (None, _) => FailureClass::Other,
                        });
                    }
                    return Err(match last {
                        // The credential just refused leaves rotation: its refusal, not the
                        // pool's state after it, is what the client needs to hear.
                        Some(failure @ Failure::Unauthorized { .. }) => failure_error(failure, &id),
                        last => unavailable_error(&unavailable, last, &self.aliases, &id),
                    });
                }
            };
            let credential: &Credential = &lease.credential;
            Span::current().record("account", &*credential.label);
            let body = outgoing
                .for_flavor(credential.flavor, &model)
                .map_err(not_json)?;

            let mut access = credential.access.current();
            let mut refreshed = false;
            // Set when a 401 is one no refresh can cure: the credential itself is refused.
            let mut refused = false;
            let failure = loop {
                attempts += 1;
                if let Some(meter) = &mut meter {
                    meter.attempt(&lease.key, &credential.label, body.len());
                }
                let failure = match self
                    .attempt(&lease.key, &access, credential.flavor, stream, &body, &id)
                    .await
                {
                    Attempt::Success(answer) => {
                        let (answer, tokens) = answer.metered(meter);
                        let now = Instant::now();
                        if tokens > 0 {
                            self.pool.report_success_spending(
                                &lease.key,
                                &model,
                                tokens,
                                now,
                                SystemTime::now(),
                            );
                        } else {
                            self.pool.report(&lease.key, &model, Outcome::Success, now);
                        }
                        return Ok(answer);
                    }
                    Attempt::PassThrough(answer) => {
                        if let Some(meter) = meter {
                            meter.failed(FailureClass::Other);
                        }
                        return Ok(answer);
                    }
                    Attempt::Failed(failure) => failure,
                };
                let Failure::Unauthorized { message, .. } = &failure else {
                    break failure;
                };
                if refreshed {
                    // A freshly refreshed token refused too: refreshing again per request
                    // would only burn refreshes.
                    refused = true;
                    break failure;
                }
                refreshed = true;
                // The refresh runs in a task of its own: if this request is dropped now, the
                // refresh still finishes and its tokens are kept.
                match Arc::clone(&credential.access).refresh().await {
                    Ok(fresh) if attempts < self.attempts => {
                        // The retry is one more request against the credential's rate cap.
                        match self
                            .pool
                            .take_slot(&lease.key, Instant::now(), SystemTime::now())
                        {
                            Slot::Taken => {}
                            Slot::Capped => break Failure::RateCapped,
                            // Disabled or removed meanwhile: the next credential, if any.
                            Slot::Gone => break failure,
                        }
                        tracing::info!(request_id = %id, account = %credential.label, "token refused; retrying with a refreshed token");
                        access = fresh;
                    }
                    Ok(_) => break failure,
                    Err(RefreshFailure::ReloginRequired) => {
                        // The access source logs this once per account; the proxy only acts on it.
                        self.pool
                            .set_disabled(&lease.key, Some(RELOGIN_REASON.to_owned()));
                        break Failure::Relogin;
                    }
                    Err(RefreshFailure::NotRefreshable) => {
                        // An API key: nothing can renew it.
                        refused = true;
                        break failure;
                    }
                    Err(other @ RefreshFailure::Transient(_)) => {
                        break Failure::Unauthorized {
                            message: message.clone(),
                            refresh: Some(other.to_string()),
                        };
                    }
                }
            };
            tracing::warn!(request_id = %id, account = %credential.label, %model, %failure, "upstream attempt failed");
            let outcome = match &failure {
                Failure::Quota {
                    retry_after,
                    daily: true,
                    ..
                } => {
                    let wait = retry_after
                        .unwrap_or_else(|| self.quota_reset.wait_after(SystemTime::now()));
                    tracing::warn!(request_id = %id, account = %credential.label, "quota of the day used up: the credential leaves rotation for {} s, until it resets", wait.as_secs());
                    Outcome::Exhausted {
                        until: Instant::now() + wait,
                    }
                }
                Failure::Quota { retry_after, .. } => Outcome::QuotaExceeded {
                    retry_after: *retry_after,
                },
                Failure::Forbidden { .. } => {
                    tracing::warn!(request_id = %id, account = %credential.label, "the upstream refuses this credential (403): it leaves rotation and is probed until it works again");
                    Outcome::Refused { status: 403 }
                }
                Failure::Unauthorized { .. } if refused => {
                    tracing::warn!(request_id = %id, account = %credential.label, "the upstream refuses this credential even with a fresh token: it leaves rotation and is probed until it works again (`cliproxy accounts list` shows when)");
                    Outcome::Refused { status: 401 }
                }
                _ => Outcome::Failed,
            };
            self.pool
                .report(&lease.key, &model, outcome, Instant::now());
            if matches!(outcome, Outcome::Refused { .. }) {
                self.probe_wake.notify_one();
            }
            tried.push(Arc::clone(&lease.key));
            last = Some(failure);
        }
        if let Some(meter) = meter {
            meter.failed(last.as_ref().map_or(FailureClass::Other, failure_class));
        }
        Err(match last {
            // Every attempt was spent on limits: say when a credential is free again, as when
            // all of them cool down before any attempt.
            Some(failure @ (Failure::Quota { .. } | Failure::RateCapped)) => {
                match self.pool.availability(&model, Instant::now()) {
                    Ok(()) => attempts_spent_error(&failure, self.attempts),
                    Err(unavailable) => unavailable_error(&unavailable, None, &self.aliases, &id),
                }
            }
            Some(failure) => failure_error(failure, &id),
            None => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                SERVER_ERROR,
                "no_attempt",
                "no upstream request could be made; check `request-retry` in the config",
            ),
        })
    }

    /// One upstream request with the credential under `key`; reads as much of the answer as
    /// needed to classify it, and records on the credential what the answer said about its
    /// limits.
    pub(super) async fn attempt(
        &self,
        key: &str,
        access: &Access,
        flavor: Flavor,
        stream: bool,
        body: &Bytes,
        id: &LoggedId,
    ) -> Attempt {
        let Some(authorization) = headers::shared_bearer(&access.bearer) else {
            return Attempt::Failed(Failure::BadToken);
        };
        let Some(uri) = shared_chat_completions_uri(&access.base_url) else {
            return Attempt::Failed(Failure::BadBaseUrl {
                base_url: crate::redact::redact_url(&access.base_url),
            });
        };
        let mut request = Request::new(Full::new(body.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        *request.headers_mut() = self
            .headers
            .with_authorization(flavor, stream, authorization);
        let response =
            match tokio::time::timeout(self.idle_timeout, self.client.send(request)).await {
                Err(_) => {
                    return Attempt::Failed(Failure::Timeout {
                        after: self.idle_timeout,
                    });
                }
                Ok(Err(error)) => {
                    return Attempt::Failed(Failure::Unreachable {
                        error: error_chain(&error),
                    });
                }
                Ok(Ok(response)) => response,
            };
        let status = response.status();
        let (parts, mut body) = response.into_parts();
        let content_type = parts.headers.get(CONTENT_TYPE).cloned();
        let said = classify::upstream_said(&parts.headers);

        if !status.is_success() {
            let bytes = match self.read(&mut body, MAX_ERROR_BYTES, false).await {
                Ok(bytes) => bytes,
                Err(failure) => return Attempt::Failed(failure),
            };
            let verdict = classify::error_answer(status, &parts.headers, &bytes);
            let quota_error = match &verdict {
                Verdict::Fail(Failure::Quota { message, .. }) => {
                    Some(message.clone().unwrap_or_else(|| status.to_string()))
                }
                _ => None,
            };
            if said.is_some() || quota_error.is_some() {
                let mut said = said.unwrap_or_default();
                said.quota_error = quota_error;
                self.pool.heard(key, said, Instant::now());
            }
            return match verdict {
                Verdict::PassThrough => Attempt::PassThrough(Answer::Complete {
                    status,
                    content_type,
                    body: bytes,
                }),
                Verdict::Fail(failure) => Attempt::Failed(failure),
            };
        }
        if let Some(said) = said {
            self.pool.heard(key, said, Instant::now());
        }
        if classify::is_html(&parts.headers, b"") {
            return Attempt::Failed(Failure::Html { status });
        }
        if stream {
            // The first chunk is read before committing, to catch an HTML page sent with 200.
            let first = match self.next_data(&mut body).await {
                Ok(first) => first,
                Err(failure) => return Attempt::Failed(failure),
            };
            if first
                .as_ref()
                .is_some_and(|first| classify::is_html(&HeaderMap::new(), first))
            {
                return Attempt::Failed(Failure::Html { status });
            }
            return Attempt::Success(Answer::Stream {
                content_type,
                body: Box::new(UpstreamBody::new(
                    first,
                    body,
                    self.idle_timeout,
                    id.clone(),
                    ends_with_connection(&parts),
                )),
            });
        }
        let bytes = match self.read(&mut body, MAX_ANSWER_BYTES, true).await {
            Ok(bytes) => bytes,
            Err(failure) => return Attempt::Failed(failure),
        };
        if classify::is_html(&HeaderMap::new(), &bytes) {
            return Attempt::Failed(Failure::Html { status });
        }
        // A body that ends with the connection can be cut without any error: only whole JSON
        // is an answer.
        if serde_json::from_slice::<IgnoredAny>(&bytes).is_err() {
            return Attempt::Failed(Failure::NotJson { status });
        }
        Attempt::Success(Answer::Complete {
            status,
            content_type,
            body: bytes,
        })
    }

    /// The next body frame's data within the idle timeout; `Ok(None)` at the end.
    async fn next_data(&self, body: &mut Incoming) -> Result<Option<Bytes>, Failure> {
        loop {
            let frame = match tokio::time::timeout(self.idle_timeout, body.frame()).await {
                Err(_) => {
                    return Err(Failure::Timeout {
                        after: self.idle_timeout,
                    });
                }
                Ok(None) => return Ok(None),
                Ok(Some(Err(error))) => {
                    return Err(Failure::Unreachable {
                        error: error_chain(&error),
                    });
                }
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data()
                && !data.is_empty()
            {
                return Ok(Some(data));
            }
        }
    }

    /// Reads up to `limit` bytes of a body. Past the limit, `strict` makes it a failure;
    /// otherwise the rest is left unread (enough to classify an error).
    async fn read(
        &self,
        body: &mut Incoming,
        limit: usize,
        strict: bool,
    ) -> Result<Bytes, Failure> {
        let Some(first) = self.next_data(body).await? else {
            return Ok(Bytes::new());
        };
        let mut whole: Option<BytesMut> = None;
        loop {
            let held = whole.as_ref().map_or(first.len(), BytesMut::len);
            if held > limit {
                if strict {
                    return Err(Failure::Oversized { limit });
                }
                break;
            }
            let Some(next) = self.next_data(body).await? else {
                break;
            };
            whole
                .get_or_insert_with(|| BytesMut::from(&first[..]))
                .extend_from_slice(&next);
        }
        Ok(whole.map_or(first, BytesMut::freeze))
    }
}

/// The usage ledger's class of the failure a client was answered with.
fn failure_class(failure: &Failure) -> FailureClass {
    match failure {
        Failure::Quota { daily: true, .. } => FailureClass::Quota,
        Failure::Quota { .. } | Failure::RateCapped => FailureClass::Rate,
        Failure::Forbidden { .. } | Failure::Unauthorized { .. } | Failure::Relogin => {
            FailureClass::Refused
        }
        Failure::Server { .. }
        | Failure::Html { .. }
        | Failure::NotJson { .. }
        | Failure::Oversized { .. } => FailureClass::Upstream5xx,
        Failure::Timeout { .. } => FailureClass::Timeout,
        Failure::Unreachable { .. } | Failure::BadToken | Failure::BadBaseUrl { .. } => {
            FailureClass::Other
        }
    }
}

thread_local! {
    /// The chat-completions URLs of the upstreams this worker thread sent to last.
    static RECENT_URIS: RefCell<Recent<str, Option<Uri>>> = const { RefCell::new(Recent::new()) };
}

/// [`chat_completions_uri`] of `base_url`, made once while this thread keeps sending there
/// (a `Uri` clones by reference counts).
fn shared_chat_completions_uri(base_url: &Arc<str>) -> Option<Uri> {
    RECENT_URIS.with_borrow_mut(|recent| {
        recent
            .get_or_make(
                base_url,
                same_text,
                || Arc::clone(base_url),
                chat_completions_uri,
            )
            .1
            .clone()
    })
}

/// The chat-completions URL under `base_url`. A URL `http` does not take as it is (a host in
/// Unicode, a space in the path) is normalized by the `url` crate first, as the config check
/// and the former HTTP client did: only that rare case pays for the full URL parser.
fn chat_completions_uri(base_url: &str) -> Option<Uri> {
    const PATH: &str = "/chat/completions";
    Uri::try_from(format!("{base_url}{PATH}")).ok().or_else(|| {
        let url = url::Url::parse(&format!("{base_url}{PATH}")).ok()?;
        Uri::try_from(url.as_str()).ok()
    })
}

/// Whether an answer is an HTTP/1 event stream whose end is its connection's (no length, no
/// chunks), so that a cut shows only in its content.
fn ends_with_connection(parts: &http::response::Parts) -> bool {
    let event_stream = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim_start().starts_with("text/event-stream"));
    event_stream
        && parts.version < http::Version::HTTP_2
        && !parts.headers.contains_key(CONTENT_LENGTH)
        && !parts.headers.contains_key(TRANSFER_ENCODING)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_make_request_urls_normalized_only_when_needed() {
        let uri = |base: &str| chat_completions_uri(base).map(|uri| uri.to_string());
        assert_eq!(
            uri("https://portal.qwen.ai/v1").as_deref(),
            Some("https://portal.qwen.ai/v1/chat/completions")
        );
        assert_eq!(
            uri("http://[::1]:8080/v1").as_deref(),
            Some("http://[::1]:8080/v1/chat/completions")
        );
        assert_eq!(
            uri("https://例え.jp/v1").as_deref(),
            Some("https://xn--r8jz45g.jp/v1/chat/completions")
        );
        assert_eq!(
            uri("https://api.example/my models/v1").as_deref(),
            Some("https://api.example/my%20models/v1/chat/completions")
        );
        assert_eq!(uri("not a url"), None);
    }
}
