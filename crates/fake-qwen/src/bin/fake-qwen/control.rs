//! The control API of `fake-qwen --control`: a second loopback port where a test harness in
//! another process (`cargo xtask soak`) turns the fake's knobs while clients use it, and reads
//! what happened to the refresh tokens. Every answer is JSON.
//!
//! - `POST /mint`: a new token pair, as after a login: `access_token`, `refresh_token`,
//!   `expires_in`.
//! - `POST /expire` `{"share": 0.25}`: refuses the newest access token of that share of the
//!   token chains (at least one, taking turns) with 401 from now on, as when Qwen expires a
//!   token early; answers `{"expired": n}`.
//! - `POST /quota` `{"share": 0.1, "answers": 2}`: the newest access token of that share of the
//!   chains (taking turns) gets `answers` quota errors (429 `insufficient_quota`) before it is
//!   answered normally again; answers `{"scripted": n}`.
//! - `POST /lookup` `{"refresh_tokens": [...]}`: for each token, the root of its chain (see
//!   [`crate::chains`]) and whether it is live: `{"tokens": [{"refresh_token", "root", "live"}]}`.
//! - `GET /report`: the refresh log in short: `{"issued": n, "failed": n, "chains": n, "dead":
//!   [{"refresh_token", "root", "spent"}]}`; `dead` lists every refresh refused because its
//!   token was dead (`spent`: used up by an earlier rotation).
//! - `POST /forget`: drops the recorded requests (not the refresh log), so a long run does not
//!   make the fake grow.
//!
//! The values it hands out are the fake's, which are not secrets.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use fake_qwen::{ChatStep, ExpiresIn, FakeQwen, RefreshOutcome};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::chains::Chains;

/// Most quota answers one `/quota` call may script per token.
const MAX_QUOTA_ANSWERS: u64 = 100;

/// The control server; stops accepting when dropped.
pub(crate) struct Control {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Control {
    /// Binds a free port on 127.0.0.1 and serves the control API for `fake`.
    pub(crate) async fn start(fake: Arc<FakeQwen>) -> std::io::Result<Control> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            fake,
            turns: Mutex::new(Turns::default()),
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(state.handle(request).await) }
                    });
                    // A client leaving early is its own business.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Control { addr, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where the next `/expire` and `/quota` start among the chains, so they take turns.
#[derive(Default)]
struct Turns {
    expire: usize,
    quota: usize,
}

struct State {
    fake: Arc<FakeQwen>,
    turns: Mutex<Turns>,
}

type Answer = Response<Full<Bytes>>;

impl State {
    async fn handle(&self, request: Request<Incoming>) -> Answer {
        let (parts, body) = request.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => return answer(400, &json!({ "error": error.to_string() })),
        };
        let input: Value = if body.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&body) {
                Ok(value) => value,
                Err(error) => {
                    return answer(400, &json!({ "error": format!("not JSON: {error}") }));
                }
            }
        };
        let result = match (&parts.method, parts.uri.path()) {
            (&Method::POST, "/mint") => Ok(self.mint()),
            (&Method::POST, "/expire") => share(&input).map(|share| self.expire(share)),
            (&Method::POST, "/quota") => share(&input).and_then(|share| {
                let answers = input
                    .get("answers")
                    .and_then(Value::as_u64)
                    .filter(|n| (1..=MAX_QUOTA_ANSWERS).contains(n))
                    .ok_or_else(|| format!("`answers` must be 1 to {MAX_QUOTA_ANSWERS}"))?;
                Ok(self.quota(share, answers))
            }),
            (&Method::POST, "/lookup") => self.lookup(&input),
            (&Method::GET, "/report") => Ok(self.report()),
            (&Method::POST, "/forget") => {
                self.fake.forget_requests();
                Ok(json!({}))
            }
            _ => {
                return answer(
                    404,
                    &json!({ "error": "no such control endpoint; see fake-qwen's control.rs" }),
                );
            }
        };
        match result {
            Ok(value) => answer(200, &value),
            Err(message) => answer(400, &json!({ "error": message })),
        }
    }

    fn mint(&self) -> Value {
        let pair = self.fake.mint_tokens();
        json!({
            "access_token": pair.access_token,
            "refresh_token": pair.refresh_token,
            "expires_in": match pair.expires_in {
                ExpiresIn::Seconds(seconds) => Value::from(seconds),
                ExpiresIn::Json(raw) => serde_json::from_str(&raw).unwrap_or(Value::Null),
                ExpiresIn::Missing => Value::Null,
            },
        })
    }

    fn chains(&self) -> Chains {
        Chains::new(&self.fake.issued_tokens(), &self.fake.refreshes())
    }

    /// Picks ⌈share × chains⌉ chains (at least one when there are any) from the turn `pick`
    /// says, and moves that turn on.
    fn pick(&self, share: f64, turn: impl FnOnce(&mut Turns) -> &mut usize) -> Vec<String> {
        let chains = self.chains();
        let count = chains_for(share, chains.len());
        let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
        let start = turn(&mut turns);
        let picked: Vec<String> = chains
            .newest_access_tokens(*start, count)
            .into_iter()
            .map(str::to_owned)
            .collect();
        *start = (*start + count) % chains.len().max(1);
        picked
    }

    fn expire(&self, share: f64) -> Value {
        let picked = self.pick(share, |turns| &mut turns.expire);
        for access_token in &picked {
            self.fake.expire_access_token(access_token);
        }
        json!({ "expired": picked.len() })
    }

    fn quota(&self, share: f64, answers: u64) -> Value {
        let picked = self.pick(share, |turns| &mut turns.quota);
        let mut steps = vec![ChatStep::QuotaExceeded; usize::try_from(answers).unwrap_or(1)];
        steps.push(ChatStep::Answer);
        for access_token in &picked {
            self.fake.script_chat(access_token, steps.clone());
        }
        json!({ "scripted": picked.len() })
    }

    fn lookup(&self, input: &Value) -> Result<Value, String> {
        let tokens = input
            .get("refresh_tokens")
            .and_then(Value::as_array)
            .ok_or("`refresh_tokens` must be a list of strings")?;
        let chains = self.chains();
        let mut found = Vec::with_capacity(tokens.len());
        for token in tokens {
            let token = token
                .as_str()
                .ok_or("`refresh_tokens` must be a list of strings")?;
            found.push(json!({
                "refresh_token": token,
                "root": chains.root(token),
                "live": self.fake.refresh_token_is_live(token),
            }));
        }
        Ok(json!({ "tokens": found }))
    }

    fn report(&self) -> Value {
        let refreshes = self.fake.refreshes();
        let chains = Chains::new(&self.fake.issued_tokens(), &refreshes);
        let (mut issued, mut failed, mut dead) = (0_u64, 0_u64, Vec::new());
        for record in &refreshes {
            match record.outcome {
                RefreshOutcome::Issued(_) => issued += 1,
                RefreshOutcome::Failed => failed += 1,
                RefreshOutcome::Dead { spent } => dead.push(json!({
                    "refresh_token": record.refresh_token,
                    "root": chains.root(&record.refresh_token),
                    "spent": spent,
                })),
            }
        }
        json!({ "issued": issued, "failed": failed, "chains": chains.len(), "dead": dead })
    }
}

/// The `share` of a request: a number above 0, at most 1.
fn share(input: &Value) -> Result<f64, String> {
    input
        .get("share")
        .and_then(Value::as_f64)
        .filter(|share| *share > 0.0 && *share <= 1.0)
        .ok_or_else(|| "`share` must be a number above 0 and at most 1".to_owned())
}

/// How many of `chains` a `share` picks: rounded up, at least one when there are any.
fn chains_for(share: f64, chains: usize) -> usize {
    if chains == 0 {
        return 0;
    }
    // `share` is within (0, 1], so the product fits and is not negative.
    let wanted = (share * chains as f64).ceil() as usize;
    wanted.clamp(1, chains)
}

fn answer(status: u16, body: &Value) -> Answer {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_picks_at_least_one_chain_and_at_most_all() {
        assert_eq!(chains_for(0.25, 32), 8);
        assert_eq!(chains_for(0.1, 32), 4);
        assert_eq!(chains_for(0.001, 32), 1);
        assert_eq!(chains_for(1.0, 5), 5);
        assert_eq!(chains_for(0.5, 0), 0);
        assert_eq!(share(&json!({ "share": 0.5 })), Ok(0.5));
        assert!(share(&json!({ "share": 1.5 })).is_err());
        assert!(share(&json!({ "share": 0 })).is_err());
        assert!(share(&json!({})).is_err());
    }
}
