//! Test support: a faithful in-process fake of Qwen's OAuth server and model API.
//!
//! [`FakeQwen::start`] binds `127.0.0.1:0` and serves, on its own thread and Tokio runtime, the
//! same paths as `https://chat.qwen.ai` and, under `/v1`, as the model API `resource_url`
//! leads to:
//!
//! - `POST /api/v1/oauth2/device/code` — RFC 8628 device authorization with PKCE S256. Checks
//!   the form content type, `Accept: application/json`, the public `client_id`
//!   ([`CLIENT_ID`]), the exact `scope` ([`SCOPE`]), `code_challenge_method=S256` and the shape
//!   of `code_challenge`; anything else gets 400 `invalid_request`. Answers `device_code`,
//!   `user_code`, `verification_uri` (`<base_url>/authorize`), `verification_uri_complete`,
//!   `expires_in` and, only when set, `interval` ([`DeviceAnswer`]).
//! - `POST /api/v1/oauth2/token` with `grant_type=urn:ietf:params:oauth:grant-type:device_code`
//!   — checks `client_id`, that `device_code` is outstanding (else 400 `invalid_grant`) and that
//!   BASE64URL-NOPAD(SHA256(`code_verifier`)) equals the challenge it was issued for (else 400
//!   `invalid_grant` "PKCE verification failed"), then answers the next [`PollStep`] of the
//!   test's script. Approval uses the device code up.
//! - `POST /api/v1/oauth2/token` with `grant_type=refresh_token` — checks `client_id` and that
//!   the refresh token is live (else 400 `invalid_request` "Invalid refresh token or
//!   client_id"), then answers as the [`RefreshBehaviour`] says (which can also be a redirect
//!   or an answer of any size). A test can
//!   [hold](FakeQwen::hold_refreshes) refresh answers until it releases them, and wait for a
//!   held request to arrive and for its answer to leave, to act at either moment.
//!
//! - `POST /v1/chat/completions` — OpenAI chat completions. Accepts `Authorization: Bearer`
//!   with an access token the fake issued and did not [expire](FakeQwen::expire_access_token),
//!   or an [API key](FakeQwen::add_api_key); anything else gets 401 `invalid_api_key`
//!   "invalid access token or token expired". For OAuth tokens, as on Qwen's OAuth endpoint,
//!   only [`QWEN_OAUTH_MODELS`] exist (else 404 `model_not_found`) and user messages whose
//!   content is an array of text parts get 400 `invalid_parameter_error`. An optional
//!   per-token [requests-per-minute limit](FakeQwen::set_requests_per_minute) answers 429 with
//!   `Retry-After`. An optional per-token [daily allowance](FakeQwen::set_rate_limit_headers)
//!   puts OpenAI's (and DashScope's) `x-ratelimit-*-requests` and `-tokens` headers on every
//!   answer of an authenticated caller. As OpenAI's API does, malformed `tools` and a tool-call history that does
//!   not add up (a `role: "tool"` message answering no pending call, a call left unanswered,
//!   `function.arguments` that is not a string) get 400 `invalid_parameter_error`. Then the
//!   token's [`ChatStep`] script (or the default step) decides the answer: a completion
//!   (streamed as SSE when asked) that echoes the user, calls the offered tools or reports the
//!   tool results it was sent, with `reasoning_content` when `enable_thinking` is on; quota and
//!   rate-limit errors, 5xx, a WAF page, a stream that is cut, ends early, reports an error in
//!   a chunk, or holds its final events until the test
//!   [releases](FakeQwen::release_held_streams) them. The test can
//!   [prefer](FakeQwen::prefer_tool) tools, which the model then calls with given arguments,
//!   so that a real agent runs a real command.
//! - `GET /v1/models` — the OpenAI model list of [`QWEN_OAUTH_MODELS`], same authentication.
//!
//! OAuth errors are JSON `{"error": ..., "error_description": ...}` with Qwen's statuses; model
//! API errors are `{"error": {"code", "message", "type"}}`. "HTML" answers are Alibaba-WAF-like
//! captcha pages (`text/html`, containing `aliyun_waf_` and `captcha`). Successful token answers
//! carry `token_type: "Bearer"`, `expires_in` (any JSON value, or none: [`ExpiresIn`]) and a
//! `resource_url` naming the fake itself
//! (`127.0.0.1:PORT`, no scheme, like `portal.qwen.ai`); the model API is at
//! [`FakeQwen::chat_base_url`] (`http://<resource_url>/v1`).
//!
//! [`FakeQwen::refreshes`] logs each refresh and its outcome (a new pair, a dead token sent
//! again, a scripted failure), so a test can tell which accounts lost their rotated tokens.
//! [`FakeQwen::set_refresh_latency`] and [`FakeQwen::set_stream_interval`] make answers take
//! time, as a real server's do.
//!
//! [`FakeQwen::set_down`] makes every endpoint drop the connection without answering (a
//! transport error for the client); a 5xx answer is a [`PollStep::ServerError`] or
//! [`RefreshBehaviour::ServerError`] instead.
//!
//! Invariants:
//! - Every value the fake issues (device codes, access and refresh tokens) contains the fake's
//!   `host:port` and a counter, so it is unique among the fakes running at the same time; none
//!   of them is a secret, which is why the fake's types derive `Debug`.
//! - POST requests to the two OAuth endpoints and to the chat endpoint are recorded in arrival
//!   order, refused ones included, except while the fake is [down](FakeQwen::set_down).
//! - A streamed answer whose reader goes away before its last event is counted as
//!   [cancelled](FakeQwen::cancelled_streams), so tests can see that a client's disconnect
//!   reached the upstream.
//! - Dropping the [`FakeQwen`] stops the server and frees the port before `drop` returns.

mod chat;
mod chat_state;
mod gate;
mod oauth;
mod record;
mod reply;
mod script;
mod server;
mod state;
mod tools;

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

pub use chat::{CHAT_COMPLETIONS_PATH, MODELS_PATH, QWEN_OAUTH_MODELS};
pub use chat_state::RateLimitHeaders;
pub use oauth::{CLIENT_ID, DEVICE_CODE_PATH, SCOPE, TOKEN_PATH};
pub use record::{IssuedToken, RecordedRequest, RefreshOutcome, RefreshRecord};
pub use script::{ChatStep, DeviceAnswer, ExpiresIn, PollStep, RefreshBehaviour};

use state::Shared;

/// A running fake Qwen server; stops when dropped.
///
/// A fresh fake answers the device request with [`DeviceAnswer::default`], approves the first
/// valid poll, rotates refresh tokens, issues access tokens with `expires_in: 3600`, and answers
/// chat requests with [`ChatStep::Answer`] (3 content chunks when streamed), without a rate
/// limit.
pub struct FakeQwen {
    addr: SocketAddr,
    shared: Shared,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeQwen {
    /// Starts a fake on `127.0.0.1` with a free port.
    ///
    /// # Panics
    ///
    /// If no thread, runtime or port can be had; a test cannot go on without its fake.
    /// The fake serves from its own thread and runtime, so it keeps answering while the calling
    /// thread blocks (for example on `std::process::Command::output`).
    pub async fn start() -> FakeQwen {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("fake-qwen".to_owned())
            .spawn(move || server::run(ready_tx, shutdown_rx))
            .unwrap_or_else(|error| panic!("fake-qwen: cannot spawn its thread: {error}"));
        match ready_rx.await {
            Ok(Ok((addr, shared))) => FakeQwen {
                addr,
                shared,
                shutdown: Some(shutdown_tx),
                thread: Some(thread),
            },
            Ok(Err(reason)) => panic!("fake-qwen: cannot start: {reason}"),
            Err(_) => panic!("fake-qwen: its thread ended before it started serving"),
        }
    }

    /// `http://127.0.0.1:PORT`: the OAuth base URL to point a client at.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:PORT`: what successful token answers carry as `resource_url` by default.
    pub fn resource_url(&self) -> String {
        self.addr.to_string()
    }

    /// Sets what later device requests are answered.
    pub fn set_device_answer(&self, answer: DeviceAnswer) {
        self.shared.lock().device_answer = answer;
    }

    /// Sets what successive valid device-code polls get, from the first step on; the last step
    /// repeats forever, and an empty script means `[PollStep::Pending]`.
    pub fn script_polls(&self, steps: Vec<PollStep>) {
        self.shared.lock().set_script(steps);
    }

    /// Sets how later refresh requests are answered.
    pub fn set_refresh(&self, behaviour: RefreshBehaviour) {
        self.shared.lock().refresh = behaviour;
    }

    /// While on, every refresh request (`grant_type=refresh_token`) is recorded when it arrives
    /// and then held, unanswered, until [released](FakeQwen::release_held_refreshes); the
    /// answer follows the [`RefreshBehaviour`] at that time. Held requests are numbered 1, 2,
    /// ... in arrival order, across the fake's life. Requests already held stay held when the
    /// gate is turned off.
    pub fn hold_refreshes(&self, hold: bool) {
        self.shared.lock().refresh_gate.set_on(hold);
    }

    /// Lets the next `count` held refreshes, in arrival order, be answered, also one whose client
    /// has gone away; a release given before a refresh is held is kept for it.
    pub fn release_held_refreshes(&self, count: usize) {
        self.shared.lock().refresh_gate.release(count);
    }

    /// Waits until at least `count` refresh requests have been held.
    pub async fn wait_for_held_refreshes(&self, count: usize) {
        let gate = self.shared.lock().refresh_gate.clone();
        gate.wait_for_held(count).await;
    }

    /// Waits until held refresh number `number` (1 for the first) was answered: its answer was
    /// handed to the connection whole (or the connection was gone).
    pub async fn wait_for_answered_refresh(&self, number: usize) {
        let gate = self.shared.lock().refresh_gate.clone();
        gate.wait_for_answered(number).await;
    }

    /// Sets the `expires_in` (seconds) of access tokens issued from now on.
    pub fn set_token_expires_in(&self, seconds: u64) {
        self.set_token_expires_in_answer(ExpiresIn::Seconds(seconds));
    }

    /// Sets what token answers from now on carry as `expires_in`: any JSON value, or none.
    pub fn set_token_expires_in_answer(&self, expires_in: ExpiresIn) {
        self.shared.lock().token_expires_in = expires_in;
    }

    /// Makes every refresh answer wait `latency` after it was decided, before it is sent, as a
    /// slow network would: the old refresh token is already dead during the wait, so a client
    /// that gives up then has lost the rotated pair. Zero (the default) sends at once.
    pub fn set_refresh_latency(&self, latency: Duration) {
        self.shared.lock().refresh_latency = latency;
    }

    /// Every refresh request that carried a refresh token, with what it got, in the order the
    /// answers were decided; see [`RefreshOutcome`]. Kept by [`FakeQwen::forget_requests`].
    pub fn refreshes(&self) -> Vec<RefreshRecord> {
        self.shared.lock().refreshes.clone()
    }

    /// Whether `refresh_token` would be accepted now: issued by this fake and not yet used up
    /// by a rotation.
    pub fn refresh_token_is_live(&self, refresh_token: &str) -> bool {
        self.shared.lock().refresh_token_is_live(refresh_token)
    }

    /// Sets the `resource_url` of later full token answers; `None` leaves the field out.
    pub fn set_answered_resource_url(&self, resource_url: Option<String>) {
        self.shared.lock().answered_resource_url = resource_url;
    }

    /// While down, the fake accepts connections but drops every request without answering, so
    /// clients see a transport error (connection closed), as with an unreachable server.
    /// Dropped requests are not recorded.
    pub fn set_down(&self, down: bool) {
        self.shared.lock().down = down;
    }

    /// Issues a token pair as if a login had just completed, for tests that start from stored
    /// tokens; the refresh token works with the current [`RefreshBehaviour`].
    pub fn mint_tokens(&self) -> IssuedToken {
        self.shared.lock().mint_pair()
    }

    /// `http://127.0.0.1:PORT/v1`: the model API base, i.e. `http://<resource_url>/v1`.
    pub fn chat_base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Accepts `key` as an API key on the model API (answers to it skip the OAuth-only checks).
    pub fn add_api_key(&self, key: &str) {
        self.shared.lock().chat.add_api_key(key);
    }

    /// Makes the model API refuse `access_token` from now on with 401 `invalid_api_key`, as for
    /// an expired token.
    pub fn expire_access_token(&self, access_token: &str) {
        self.shared.lock().chat.expire(access_token);
    }

    /// Makes the model API refuse the account that holds `refresh_token` for good: its current
    /// `access_token` and every access token a refresh of it issues from now on get 401, as
    /// for an account the upstream has banned although its refresh token still works.
    pub fn refuse_account(&self, access_token: &str, refresh_token: &str) {
        let mut world = self.shared.lock();
        world.chat.expire(access_token);
        world.refuse_refresh_lineage(refresh_token);
    }

    /// Sets the step that answers chat requests of tokens without a script of their own.
    pub fn set_chat_step(&self, step: ChatStep) {
        self.shared.lock().chat.set_default_step(step);
    }

    /// Sets what successive chat requests with `token` (access token or API key) get, from the
    /// first step on; the last step repeats forever. An empty script falls back to the default
    /// step.
    pub fn script_chat(&self, token: &str, steps: Vec<ChatStep>) {
        self.shared.lock().chat.script(token, steps);
    }

    /// Makes the model call tool `name`, whenever a request offers it and the model calls
    /// tools, with `arguments` (a JSON object) instead of arguments made up from its schema.
    /// Preferred tools come before the other offered ones, in the order they were preferred
    /// (a named `tool_choice` still wins). Preferring a tool again replaces its arguments.
    pub fn prefer_tool(&self, name: &str, arguments: &serde_json::Value) {
        let mut world = self.shared.lock();
        let preferred = &mut world.chat.preferred;
        preferred.retain(|tool| tool.name != name);
        preferred.push(tools::PreferredTool {
            name: name.to_owned(),
            arguments: arguments.to_string(),
        });
    }

    /// Sets the number of content chunks in streamed answers from now on.
    pub fn set_stream_chunks(&self, chunks: usize) {
        self.shared.lock().chat.stream_chunks = chunks;
    }

    /// Makes streamed answers pause `interval` before each event after the first, as a model
    /// that takes its time; zero (the default) sends them back to back.
    pub fn set_stream_interval(&self, interval: Duration) {
        self.shared.lock().chat.stream_interval = interval;
    }

    /// Makes quota answers ([`ChatStep::QuotaExceeded`], [`ChatStep::QuotaExceeded403`]) carry
    /// `Retry-After: <secs>`, as an upstream that names its reset time; `None` (the default)
    /// leaves the header out.
    pub fn set_quota_retry_after(&self, secs: Option<u64>) {
        self.shared.lock().chat.quota_retry_after = secs;
    }

    /// Sends `x-ratelimit-{limit,remaining,reset}-requests` and `-tokens` on every chat
    /// answer to an authenticated caller: the limits given, the requests remaining to that
    /// token (each chat request counts, answered or not), tokens remaining as the limit, and
    /// `reset` (as written, e.g. `"6h0m0s"`) for both. `None` (the default) sends none.
    pub fn set_rate_limit_headers(&self, headers: Option<RateLimitHeaders>) {
        self.shared.lock().chat.rate_limit_headers = headers;
    }

    /// Limits each token to `limit` chat requests within any 60 s; past it, 429
    /// `rate_limit_exceeded` with `Retry-After`. `None` lifts the limit.
    pub fn set_requests_per_minute(&self, limit: Option<u32>) {
        self.shared.lock().chat.requests_per_minute = limit;
    }

    /// Lets `count` streams held by [`ChatStep::HoldLast`] send their final events; a release
    /// given before a stream reaches its hold is kept for it.
    pub fn release_held_streams(&self, count: usize) {
        self.shared.lock().chat.release.add_permits(count);
    }

    /// How many streamed answers lost their reader before their last event.
    pub fn cancelled_streams(&self) -> usize {
        *self.shared.lock().chat.cancelled.borrow()
    }

    /// Waits until at least `count` streamed answers lost their reader before their last event.
    pub async fn wait_for_cancelled_streams(&self, count: usize) {
        let mut cancelled = self.shared.lock().chat.cancelled.subscribe();
        // The sender lives as long as the fake (and `self` borrows the fake), so this cannot fail.
        let _ = cancelled.wait_for(|cancelled| *cancelled >= count).await;
    }

    /// Chat-completion requests so far (refused ones included), oldest first; see
    /// [`RecordedRequest::bearer`] and [`RecordedRequest::json`].
    pub fn chat_requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().chat.requests.clone()
    }

    /// Requests to the device endpoint so far, oldest first.
    pub fn device_requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().device_requests.clone()
    }

    /// Requests to the token endpoint (polls and refreshes) so far, oldest first.
    pub fn token_requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().token_requests.clone()
    }

    /// Drops the requests recorded so far ([`FakeQwen::chat_requests`],
    /// [`FakeQwen::device_requests`], [`FakeQwen::token_requests`]), so that a fake serving for
    /// hours does not grow without end. Issued tokens and [`FakeQwen::refreshes`] are kept.
    pub fn forget_requests(&self) {
        let mut world = self.shared.lock();
        world.chat.requests = Vec::new();
        world.device_requests = Vec::new();
        world.token_requests = Vec::new();
    }

    /// Every token pair issued so far, oldest first.
    pub fn issued_tokens(&self) -> Vec<IssuedToken> {
        self.shared.lock().issued.clone()
    }

    /// Whether this fake ever issued `access_token`.
    pub fn issued_access_token(&self, access_token: &str) -> bool {
        self.shared.lock().access_token_is_issued(access_token)
    }
}

impl Drop for FakeQwen {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // The server thread may already be gone; then there is nothing to stop.
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A panic on the server thread has already been printed; the test decides the rest.
            let _ = thread.join();
        }
    }
}
