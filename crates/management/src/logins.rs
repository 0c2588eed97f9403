//! Device logins started from the management API (the dashboard's "add a Qwen account"): the
//! same device grant as `cliproxy login qwen` (auth-core), polled by a task of the server, and
//! the token saved by the same store code (`cli::login::token_record`, `AccountStore::save_login`).
//!
//! A login is `waiting` until approved, then `needs-email` (Qwen's token answer carries no
//! email) until the page sends one, then `saved`; or `failed` / `expired`. Tokens waiting for
//! an email live only in memory, and only until [`KEEP_FINISHED`] after the code's deadline.
//! At most [`MAX_LOGINS`] are remembered; finished ones are dropped first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use auth_core::{Clock as _, DeviceAuthorization, OAuthClient, TokenSet, TokioClock};
use serde::Serialize;
use time::OffsetDateTime;

/// Logins remembered at once.
pub const MAX_LOGINS: usize = 8;
/// How long a finished or approved login is kept after its code's deadline.
pub const KEEP_FINISHED: Duration = Duration::from_secs(10 * 60);

/// Where a login stands.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum LoginState {
    /// Waiting for someone to approve the code.
    Waiting,
    /// Approved; the account's email is needed to save it.
    NeedsEmail,
    /// Being saved.
    Saving,
    /// Saved as this account.
    Saved { email: String, file: String },
    /// Ended without a token (denied, or an error); `message` says what to do.
    Failed { message: String },
}

/// A login as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LoginView {
    pub id: String,
    pub verification_uri: String,
    pub verification_uri_complete: String,
    pub user_code: String,
    /// When the code expires, in Unix seconds.
    pub expires_at: i64,
    /// Seconds left until then.
    pub expires_in: u64,
    #[serde(flatten)]
    pub state: LoginState,
    /// The email given when the login was started, if one was.
    pub email: Option<String>,
    /// The QR code of `verification_uri_complete`, as an SVG image.
    pub qr_svg: String,
}

struct Login {
    view: LoginView,
    /// Approved tokens and when they arrived, while the email is awaited.
    tokens: Option<(TokenSet, SystemTime)>,
    /// When the code expires.
    deadline: SystemTime,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Login {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A save in progress: the saved file's name, or the message of its failure.
pub type SaveFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send>>;

/// Saves approved tokens as the account `email`, received at the given time.
pub type Saver = Arc<dyn Fn(String, TokenSet, SystemTime) -> SaveFuture + Send + Sync + 'static>;

/// What an approved login does next.
enum Approved {
    /// Save it as this email, given when it was started.
    Save(String, TokenSet),
    /// Wait for an email until then, and forget the tokens after.
    AwaitEmail(SystemTime),
}

/// The logins in progress.
pub struct Logins {
    oauth: OAuthClient,
    clock: TokioClock,
    save: Saver,
    logins: Mutex<HashMap<String, Login>>,
}

impl std::fmt::Debug for Logins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logins").finish_non_exhaustive()
    }
}

/// Why a login cannot start or go on.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("{MAX_LOGINS} logins are in progress already; finish or cancel one first")]
    TooMany,
    #[error(
        "no such login (it finished more than 10 minutes ago, or the server restarted); start a new one"
    )]
    Unknown,
    #[error("this login does not wait for an email (it is {0})")]
    NotWaitingForEmail(&'static str),
    #[error("the email is not valid: {0}")]
    Email(#[from] cli::email::EmailProblem),
    #[error("could not start the login: {0}")]
    Start(#[from] auth_core::DeviceFlowError),
}

fn unix(at: SystemTime) -> i64 {
    OffsetDateTime::from(at).unix_timestamp()
}

fn qr_svg(text: &str) -> String {
    qrcode::QrCode::new(text.as_bytes())
        .map(|code| {
            code.render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(200, 200)
                .quiet_zone(true)
                .build()
        })
        .unwrap_or_default()
}

impl Logins {
    pub fn new(oauth: OAuthClient, clock: TokioClock, save: Saver) -> Arc<Self> {
        Arc::new(Self {
            oauth,
            clock,
            save,
            logins: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Login>> {
        self.logins.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a device login; `email`, when given, saves the account as soon as it is approved.
    pub async fn start(self: &Arc<Self>, email: Option<&str>) -> Result<LoginView, LoginError> {
        let email = email
            .filter(|email| !email.trim().is_empty())
            .map(cli::email::validate_email)
            .transpose()?;
        self.prune();
        if self.lock().len() >= MAX_LOGINS {
            return Err(LoginError::TooMany);
        }
        let authorization = self.oauth.start_device_login(&self.clock).await?;
        let deadline = self.clock.wall() + authorization.expires_in;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let view = LoginView {
            id: id.clone(),
            verification_uri: authorization.verification_uri.clone(),
            verification_uri_complete: authorization.verification_uri_complete.clone(),
            user_code: authorization.user_code.clone(),
            expires_at: unix(deadline),
            expires_in: authorization.expires_in.as_secs(),
            state: LoginState::Waiting,
            email,
            qr_svg: qr_svg(&authorization.verification_uri_complete),
        };
        let task = tokio::spawn(Arc::clone(self).poll(id.clone(), authorization));
        let mut logins = self.lock();
        if logins.len() >= MAX_LOGINS {
            task.abort();
            return Err(LoginError::TooMany);
        }
        logins.insert(
            id,
            Login {
                view: view.clone(),
                tokens: None,
                deadline,
                task: Some(task),
            },
        );
        Ok(view)
    }

    async fn poll(self: Arc<Self>, id: String, authorization: DeviceAuthorization) {
        let polled = self
            .oauth
            .poll_for_token(&authorization, &self.clock, &mut |_| {})
            .await;
        let received_at = SystemTime::now();
        let next = {
            let mut logins = self.lock();
            let Some(login) = logins.get_mut(&id) else {
                return;
            };
            match polled {
                Err(error) => {
                    tracing::warn!("a device login from the management API failed: {error}");
                    login.view.state = LoginState::Failed {
                        message: error.to_string(),
                    };
                    return;
                }
                Ok(tokens) => match login.view.email.clone() {
                    Some(email) => {
                        login.view.state = LoginState::Saving;
                        Approved::Save(email, tokens)
                    }
                    None => {
                        tracing::info!(
                            "a device login from the management API was approved; waiting for the account's email"
                        );
                        login.view.state = LoginState::NeedsEmail;
                        login.tokens = Some((tokens, received_at));
                        Approved::AwaitEmail(login.deadline + KEEP_FINISHED)
                    }
                },
            }
        };
        match next {
            Approved::Save(email, tokens) => self.save_as(&id, email, tokens, received_at).await,
            Approved::AwaitEmail(until) => self.forget_tokens_at(&id, until).await,
        }
    }

    /// Drops approved tokens that got no email by `at`: they live in memory only that long.
    async fn forget_tokens_at(&self, id: &str, at: SystemTime) {
        let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
        tokio::time::sleep(wait).await;
        if let Some(login) = self.lock().get_mut(id)
            && login.tokens.take().is_some()
        {
            login.view.state = LoginState::Failed {
                message:
                    "no email was given within 10 minutes after the code expired; start a new login"
                        .to_owned(),
            };
        }
    }

    async fn save_as(&self, id: &str, email: String, tokens: TokenSet, received_at: SystemTime) {
        let saved = (self.save)(email.clone(), tokens, received_at).await;
        if let Some(login) = self.lock().get_mut(id) {
            login.view.state = match saved {
                Ok(file) => LoginState::Saved { email, file },
                Err(message) => LoginState::Failed { message },
            };
        }
    }

    /// The login `id` now.
    pub fn get(&self, id: &str) -> Result<LoginView, LoginError> {
        let mut logins = self.lock();
        let login = logins.get_mut(id).ok_or(LoginError::Unknown)?;
        let left = login
            .deadline
            .duration_since(self.clock.wall())
            .unwrap_or_default();
        login.view.expires_in = left.as_secs();
        Ok(login.view.clone())
    }

    /// Saves an approved login as the account `email`.
    pub async fn give_email(&self, id: &str, email: &str) -> Result<LoginView, LoginError> {
        let email = cli::email::validate_email(email)?;
        let (tokens, received_at) = {
            let mut logins = self.lock();
            let login = logins.get_mut(id).ok_or(LoginError::Unknown)?;
            let Some(tokens) = login.tokens.take() else {
                return Err(LoginError::NotWaitingForEmail(match login.view.state {
                    LoginState::Waiting => "waiting for approval",
                    LoginState::Saving => "being saved",
                    LoginState::Saved { .. } => "saved already",
                    _ => "over",
                }));
            };
            login.view.state = LoginState::Saving;
            login.view.email = Some(email.clone());
            tokens
        };
        self.save_as(id, email, tokens, received_at).await;
        self.get(id)
    }

    /// Cancels a login: stops polling and forgets it (approved tokens included).
    pub fn cancel(&self, id: &str) -> Result<(), LoginError> {
        self.lock().remove(id).map(drop).ok_or(LoginError::Unknown)
    }

    /// Forgets logins whose code expired [`KEEP_FINISHED`] ago.
    fn prune(&self) {
        let now = self.clock.wall();
        self.lock()
            .retain(|_, login| login.deadline + KEEP_FINISHED > now);
    }
}
