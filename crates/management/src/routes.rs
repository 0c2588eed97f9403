//! The management routes: which paths are ours, the gate, and each handler.
//!
//! | Method | Path | Answer |
//! |---|---|---|
//! | GET | `/metrics` | Prometheus metrics ([`crate::metrics`]) |
//! | GET | `/dashboard`, `/dashboard/app.js`, `/dashboard/style.css` | the page |
//! | GET | `/v0/management/credentials` | every credential with its live state |
//! | POST | `/v0/management/credentials/{id}/disable` | out of rotation (persisted) |
//! | POST | `/v0/management/credentials/{id}/enable` | back in rotation |
//! | POST | `/v0/management/credentials/{id}/refresh` | refresh a Qwen account's token now |
//! | DELETE | `/v0/management/credentials/{id}` | remove a Qwen account (logout) |
//! | GET | `/v0/management/usage?since=24h&by=model` | what `cliproxy usage --json` prints |
//! | POST | `/v0/management/logins` | start a Qwen device login (`{"email": ...}` optional) |
//! | GET | `/v0/management/logins/{id}` | where it stands |
//! | POST | `/v0/management/logins/{id}/email` | save an approved login as `{"email": ...}` |
//! | DELETE | `/v0/management/logins/{id}` | cancel it |
//! | GET | `/v0/management/config` | the effective config, secrets redacted |
//!
//! `{id}` is a credential's pool key or label, percent-encoded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use account_runtime::Accounts;
use bytes::Bytes;
use credential_pool::{Credential, Pool};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use serde::Deserialize;

use crate::ManagementSettings;
use crate::access::{Area, Gate};
use crate::credentials::{self, ActionError};
use crate::dashboard;
use crate::lockout::Lockout;
use crate::logins::{LoginError, Logins, Saver};
use crate::metrics::{self, Metrics};
use crate::reply;

const API: &str = "/v0/management";
/// The largest request body the routes read.
const MAX_BODY: usize = 64 * 1024;
/// How long reading it may take.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// What the handlers share.
pub struct State {
    gate: Gate,
    settings: ManagementSettings,
    accounts: Arc<Accounts>,
    pool: Arc<Pool<Credential>>,
    metrics: Arc<Metrics>,
    logins: Arc<Logins>,
}

impl State {
    pub fn new(
        settings: ManagementSettings,
        accounts: Arc<Accounts>,
        pool: Arc<Pool<Credential>>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let saver: Saver = {
            let accounts = Arc::clone(&accounts);
            Arc::new(move |email, tokens, received_at| {
                let accounts = Arc::clone(&accounts);
                Box::pin(async move {
                    let record = cli::login::token_record(email, tokens, received_at);
                    let saved = accounts
                        .store()
                        .save_login(&record, time::OffsetDateTime::now_utc())
                        .await
                        .map_err(|error| error.to_string())?;
                    if let Err(error) = accounts.reconcile().await {
                        tracing::warn!(
                            "saved a login, but could not re-read the accounts ({error}); the watch picks it up"
                        );
                    }
                    tracing::info!(saved_to = %saved.saved_to, "logged in an account from the management API");
                    Ok(std::path::Path::new(&saved.saved_to)
                        .file_name()
                        .map_or_else(
                            || saved.saved_to.clone(),
                            |name| name.to_string_lossy().into_owned(),
                        ))
                })
            })
        };
        Arc::new(Self {
            gate: Gate {
                key: settings.key.clone(),
                allow_remote: settings.allow_remote,
                lockout: Lockout::default(),
            },
            logins: Logins::new(settings.oauth.clone(), settings.clock, saver),
            settings,
            accounts,
            pool,
            metrics,
        })
    }
}

/// Whether `path` is a management route.
pub fn claims(path: &str) -> bool {
    path == "/metrics"
        || path == "/dashboard"
        || path.starts_with("/dashboard/")
        || path == API
        || path.starts_with("/v0/management/")
}

fn area(path: &str) -> Area {
    if path == "/metrics" {
        Area::Metrics
    } else if path.starts_with("/dashboard") {
        Area::Dashboard
    } else {
        Area::Api
    }
}

/// Answers one request.
pub async fn serve(state: &State, request: Request<Incoming>, peer: SocketAddr) -> Response<Bytes> {
    let path = request.uri().path().to_owned();
    if let Err(refused) = state.gate.check(area(&path), request.headers(), peer).await {
        return refused;
    }
    let method = request.method().clone();
    let query = request.uri().query().unwrap_or_default().to_owned();
    match area(&path) {
        Area::Metrics => {
            if method != Method::GET {
                return method_not_allowed("GET");
            }
            let credentials =
                account_runtime::status::live_credentials(&state.accounts, &state.pool);
            let text = state.metrics.render(&credentials, &state.accounts);
            return reply::with_type(StatusCode::OK, metrics::CONTENT_TYPE, Bytes::from(text));
        }
        Area::Dashboard => {
            if method != Method::GET {
                return method_not_allowed("GET");
            }
            return dashboard::asset(&path).unwrap_or_else(reply::not_found);
        }
        Area::Api => {}
    }
    let rest = path.strip_prefix(API).unwrap_or_default();
    let segments: Vec<String> = rest
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            percent_encoding::percent_decode_str(segment)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["credentials"]) => reply::json(
            StatusCode::OK,
            &serde_json::json!({
                "credentials": credentials::list(&state.accounts, &state.pool),
            }),
        ),
        (&Method::POST, ["credentials", id, action]) => credential_action(state, id, action).await,
        (&Method::DELETE, ["credentials", id]) => remove(state, id).await,
        (&Method::GET, ["usage"]) => usage(state, &query).await,
        (&Method::GET, ["config"]) => reply::json(StatusCode::OK, &state.settings.effective_config),
        (&Method::POST, ["logins"]) => {
            let body = match read_json::<EmailBody>(request).await {
                Ok(body) => body,
                Err(refused) => return refused,
            };
            login_answer(
                state.logins.start(body.email.as_deref()).await,
                StatusCode::CREATED,
            )
        }
        (&Method::GET, ["logins", id]) => login_answer(state.logins.get(id), StatusCode::OK),
        (&Method::DELETE, ["logins", id]) => match state.logins.cancel(id) {
            Ok(()) => reply::json(StatusCode::OK, &serde_json::json!({"cancelled": true})),
            Err(error) => login_error(&error),
        },
        (&Method::POST, ["logins", id, "email"]) => {
            let id = (*id).to_owned();
            let body = match read_json::<EmailBody>(request).await {
                Ok(body) => body,
                Err(refused) => return refused,
            };
            let Some(email) = body.email else {
                return reply::error(
                    StatusCode::BAD_REQUEST,
                    "email_required",
                    "send the account's email as {\"email\": \"you@example.com\"}",
                );
            };
            login_answer(state.logins.give_email(&id, &email).await, StatusCode::OK)
        }
        (
            _,
            ["credentials"]
            | ["credentials", _, _]
            | ["credentials", _]
            | ["usage"]
            | ["config"]
            | ["logins"]
            | ["logins", _]
            | ["logins", _, "email"],
        ) => method_not_allowed(allowed(segments.as_slice())),
        _ => reply::not_found(),
    }
}

/// The methods a known path takes.
fn allowed(segments: &[&str]) -> &'static str {
    match segments {
        ["credentials", _, _] | ["logins"] | ["logins", _, "email"] => "POST",
        ["credentials", _] => "DELETE",
        ["logins", _] => "GET, DELETE",
        _ => "GET",
    }
}

fn method_not_allowed(allow: &'static str) -> Response<Bytes> {
    let mut response = reply::error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("this route takes {allow}; see docs/management.md"),
    );
    response
        .headers_mut()
        .insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
    response
}

#[derive(Debug, Default, Deserialize)]
struct EmailBody {
    #[serde(default)]
    email: Option<String>,
}

/// The body as JSON; an empty body is `T::default()`.
async fn read_json<T: for<'de> Deserialize<'de> + Default>(
    request: Request<Incoming>,
) -> Result<T, Response<Bytes>> {
    let body = Limited::new(request.into_body(), MAX_BODY);
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, body.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(_)) => {
            return Err(reply::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the body is larger than 64 KiB or broke off; send a small JSON object",
            ));
        }
        Err(_) => {
            return Err(reply::error(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the body took longer than 10 s to arrive; send it again",
            ));
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes).map_err(|error| {
        reply::error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not the JSON this route takes ({error}); see docs/management.md"),
        )
    })
}

fn action_error(error: &ActionError) -> Response<Bytes> {
    let (status, code) = match error {
        ActionError::NotFound(_) => (StatusCode::NOT_FOUND, "credential_not_found"),
        ActionError::FromConfig(_) => (StatusCode::CONFLICT, "credential_from_config"),
        ActionError::NotRefreshable(_) => (StatusCode::CONFLICT, "not_refreshable"),
        ActionError::ReloginRequired => (StatusCode::CONFLICT, "relogin_required"),
        ActionError::Refresh(_) => (StatusCode::BAD_GATEWAY, "refresh_failed"),
        ActionError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "store_error"),
    };
    reply::error(status, code, error.to_string())
}

fn credential_view(state: &State, key: &str) -> serde_json::Value {
    credentials::list(&state.accounts, &state.pool)
        .into_iter()
        .find(|view| view.live.key == key)
        .map_or(serde_json::Value::Null, |view| {
            serde_json::to_value(view).unwrap_or_default()
        })
}

async fn credential_action(state: &State, id: &str, action: &str) -> Response<Bytes> {
    let Some(live) = credentials::find(&state.accounts, &state.pool, id) else {
        return action_error(&ActionError::NotFound(id.to_owned()));
    };
    let done = match action {
        "disable" | "enable" => {
            credentials::set_disabled(&state.accounts, &live, action == "disable")
                .await
                .map(|changed| serde_json::json!({"changed": changed}))
        }
        "refresh" => credentials::refresh(&state.accounts, &live)
            .await
            .map(|_| serde_json::json!({"refreshed": true})),
        _ => return reply::not_found(),
    };
    match done {
        Ok(mut answer) => {
            answer["credential"] = credential_view(state, &live.key);
            reply::json(StatusCode::OK, &answer)
        }
        Err(error) => action_error(&error),
    }
}

async fn remove(state: &State, id: &str) -> Response<Bytes> {
    let Some(live) = credentials::find(&state.accounts, &state.pool, id) else {
        return action_error(&ActionError::NotFound(id.to_owned()));
    };
    match credentials::remove(&state.accounts, &live).await {
        Ok(files) => reply::json(
            StatusCode::OK,
            &serde_json::json!({"removed": live.label, "files": files}),
        ),
        Err(error) => action_error(&error),
    }
}

/// What `cliproxy usage --since SINCE --by BY --json` prints, byte for byte.
async fn usage(state: &State, query: &str) -> Response<Bytes> {
    let mut options = cli::UsageOptions {
        since: "24h".to_owned(),
        by: cli::UsageGroup::Credential,
        json: true,
    };
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*name {
            "since" => options.since = value.into_owned(),
            "by" => {
                options.by = match &*value {
                    "credential" => cli::UsageGroup::Credential,
                    "model" => cli::UsageGroup::Model,
                    "client-key" => cli::UsageGroup::ClientKey,
                    "day" => cli::UsageGroup::Day,
                    "hour" => cli::UsageGroup::Hour,
                    other => {
                        return reply::error(
                            StatusCode::BAD_REQUEST,
                            "invalid_by",
                            format!(
                                "by={other:?} is not a grouping; use credential, model, client-key, day or hour"
                            ),
                        );
                    }
                }
            }
            _ => {}
        }
    }
    let db = state.settings.usage_db.clone();
    let answer =
        tokio::task::spawn_blocking(move || cli::usage::usage(&db, &options, SystemTime::now()))
            .await;
    match answer {
        Ok(Ok(json)) => reply::with_type(StatusCode::OK, "application/json", Bytes::from(json)),
        Ok(Err(error @ cli::CliError::InvalidSince { .. })) => {
            reply::error(StatusCode::BAD_REQUEST, "invalid_since", error.to_string())
        }
        Ok(Err(error)) => reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "usage_unavailable",
            error.to_string(),
        ),
        Err(join) => reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "usage_unavailable",
            format!("reading the usage ledger stopped abnormally: {join}"),
        ),
    }
}

fn login_answer(
    answer: Result<crate::logins::LoginView, LoginError>,
    status: StatusCode,
) -> Response<Bytes> {
    match answer {
        Ok(view) => reply::json(status, &view),
        Err(error) => login_error(&error),
    }
}

fn login_error(error: &LoginError) -> Response<Bytes> {
    let (status, code) = match error {
        LoginError::TooMany => (StatusCode::TOO_MANY_REQUESTS, "too_many_logins"),
        LoginError::Unknown => (StatusCode::NOT_FOUND, "login_not_found"),
        LoginError::NotWaitingForEmail(_) => (StatusCode::CONFLICT, "login_not_waiting_for_email"),
        LoginError::Email(_) => (StatusCode::BAD_REQUEST, "invalid_email"),
        LoginError::Start(_) => (StatusCode::BAD_GATEWAY, "login_start_failed"),
    };
    reply::error(status, code, error.to_string())
}
