//! The fake's mutable world: test settings, outstanding device codes, live tokens, the chat
//! API's state and the request logs. Guarded by one mutex; handlers run with it held and never await.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::chat_state::ChatState;
use crate::gate::RefreshGate;
use crate::record::{IssuedToken, RecordedRequest, RefreshRecord};
use crate::script::{DeviceAnswer, ExpiresIn, PollStep, RefreshBehaviour};

/// The world shared between the [`crate::FakeQwen`] handle and the server thread.
#[derive(Clone)]
pub(crate) struct Shared(Arc<Mutex<World>>);

impl Shared {
    pub(crate) fn new(world: World) -> Self {
        Self(Arc::new(Mutex::new(world)))
    }

    /// Locks the world. A panic in another test thread must not hide this test's result, so a
    /// poisoned lock is simply taken over.
    pub(crate) fn lock(&self) -> MutexGuard<'_, World> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Everything the fake knows.
pub(crate) struct World {
    /// `http://127.0.0.1:PORT`.
    pub(crate) base_url: String,
    /// `127.0.0.1:PORT`, used to make tokens of different fakes distinct.
    pub(crate) host_port: String,
    pub(crate) device_answer: DeviceAnswer,
    script: Vec<PollStep>,
    next_step: usize,
    pub(crate) refresh: RefreshBehaviour,
    pub(crate) down: bool,
    pub(crate) token_expires_in: ExpiresIn,
    /// What successful token answers carry as `resource_url`; `None` omits it.
    pub(crate) answered_resource_url: Option<String>,
    /// Outstanding device codes and the PKCE challenge each was issued for.
    devices: HashMap<String, String>,
    live_refresh_tokens: HashSet<String>,
    /// Refresh tokens of refused accounts: the access tokens their refreshes issue get 401.
    refused_lineages: HashSet<String>,
    pub(crate) issued: Vec<IssuedToken>,
    pub(crate) device_requests: Vec<RecordedRequest>,
    pub(crate) token_requests: Vec<RecordedRequest>,
    /// Every refresh request with a refresh token, and what it got.
    pub(crate) refreshes: Vec<RefreshRecord>,
    /// How long a refresh answer waits after it was decided, before it is sent.
    pub(crate) refresh_latency: Duration,
    /// The chat API's settings, credentials and records.
    pub(crate) chat: ChatState,
    /// Holds refresh answers while a test wants them held.
    pub(crate) refresh_gate: RefreshGate,
    counter: u64,
}

impl World {
    pub(crate) fn new(host_port: String) -> Self {
        Self {
            base_url: format!("http://{host_port}"),
            answered_resource_url: Some(host_port.clone()),
            host_port,
            device_answer: DeviceAnswer::default(),
            script: vec![PollStep::Approve],
            next_step: 0,
            refresh: RefreshBehaviour::default(),
            down: false,
            token_expires_in: ExpiresIn::Seconds(3600),
            devices: HashMap::new(),
            live_refresh_tokens: HashSet::new(),
            refused_lineages: HashSet::new(),
            issued: Vec::new(),
            device_requests: Vec::new(),
            token_requests: Vec::new(),
            refreshes: Vec::new(),
            refresh_latency: Duration::ZERO,
            chat: ChatState::new(),
            refresh_gate: RefreshGate::new(),
            counter: 0,
        }
    }

    /// Replaces the poll script and starts it from the top. An empty script means `[Pending]`.
    pub(crate) fn set_script(&mut self, steps: Vec<PollStep>) {
        self.script = if steps.is_empty() {
            vec![PollStep::Pending]
        } else {
            steps
        };
        self.next_step = 0;
    }

    /// The step for the next valid poll; the last step repeats forever.
    pub(crate) fn take_step(&mut self) -> PollStep {
        let index = self.next_step.min(self.script.len().saturating_sub(1));
        self.next_step = self.next_step.saturating_add(1);
        self.script.get(index).copied().unwrap_or(PollStep::Pending)
    }

    /// A fresh, unique value such as `fake-device-127.0.0.1:4567-3`.
    fn unique(&mut self, kind: &str) -> String {
        self.counter += 1;
        format!("fake-{kind}-{}-{}", self.host_port, self.counter)
    }

    /// Starts a device authorization bound to `code_challenge`; returns its device code.
    pub(crate) fn open_device(&mut self, code_challenge: &str) -> String {
        let device_code = self.unique("device");
        self.devices
            .insert(device_code.clone(), code_challenge.to_owned());
        device_code
    }

    /// The PKCE challenge an outstanding device code was issued for.
    pub(crate) fn device_challenge(&self, device_code: &str) -> Option<&str> {
        self.devices.get(device_code).map(String::as_str)
    }

    /// Uses up a device code after approval, as a real server does.
    pub(crate) fn close_device(&mut self, device_code: &str) {
        self.devices.remove(device_code);
    }

    /// Issues a new access and refresh token pair.
    pub(crate) fn mint_pair(&mut self) -> IssuedToken {
        let access_token = self.unique("access");
        let refresh_token = self.unique("refresh");
        self.live_refresh_tokens.insert(refresh_token.clone());
        self.record_issue(access_token, refresh_token)
    }

    /// Issues a new access token that goes with the existing `refresh_token`.
    pub(crate) fn mint_access(&mut self, refresh_token: &str) -> IssuedToken {
        let access_token = self.unique("access");
        self.record_issue(access_token, refresh_token.to_owned())
    }

    fn record_issue(&mut self, access_token: String, refresh_token: String) -> IssuedToken {
        let token = IssuedToken {
            access_token,
            refresh_token,
            expires_in: self.token_expires_in.clone(),
        };
        self.issued.push(token.clone());
        token
    }

    /// Refuses, on the model API, every access token that refreshing `refresh_token` (or its
    /// successors) issues.
    pub(crate) fn refuse_refresh_lineage(&mut self, refresh_token: &str) {
        self.refused_lineages.insert(refresh_token.to_owned());
    }

    /// Carries a refused account over to what a refresh of `old` issued.
    pub(crate) fn inherit_refusal(&mut self, old: &str, issued: &IssuedToken) {
        if self.refused_lineages.contains(old) {
            self.refused_lineages.insert(issued.refresh_token.clone());
            self.chat.expire(&issued.access_token);
        }
    }

    pub(crate) fn refresh_token_is_live(&self, refresh_token: &str) -> bool {
        self.live_refresh_tokens.contains(refresh_token)
    }

    /// Whether this fake ever issued `refresh_token` (live or not).
    pub(crate) fn refresh_token_was_issued(&self, refresh_token: &str) -> bool {
        self.issued
            .iter()
            .any(|token| token.refresh_token == refresh_token)
    }

    /// Ends a refresh token's life (after rotation).
    pub(crate) fn retire_refresh_token(&mut self, refresh_token: &str) {
        self.live_refresh_tokens.remove(refresh_token);
    }

    pub(crate) fn access_token_is_issued(&self, access_token: &str) -> bool {
        self.issued
            .iter()
            .any(|token| token.access_token == access_token)
    }
}
