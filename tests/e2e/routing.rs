//! Routing end to end: conversations kept on one account, weights, priority tiers, headroom
//! under rate caps, refused credentials that heal, exhausted ones that wait for their reset,
//! and `accounts disable|enable` on a running server.

use std::collections::HashMap;
use std::time::Duration;

use fake_qwen::{ChatStep, FakeQwen};
use serde_json::{Value, json};

use crate::support::Sandbox;
use crate::support::server::{MODEL, Server, guarded};

/// Emails of the test accounts, `user0@example.com` ...
fn emails(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("user{i}@example.com")).collect()
}

fn as_strs(emails: &[String]) -> Vec<&str> {
    emails.iter().map(String::as_str).collect()
}

/// The account (email) each chat request the fake saw came from, in order; probes left out.
fn served_by(fake: &FakeQwen, server: &Server, emails: &[String]) -> Vec<String> {
    let by_token: HashMap<&str, &str> = emails
        .iter()
        .map(|email| {
            (
                server.account(email).tokens.access_token.as_str(),
                email.as_str(),
            )
        })
        .collect();
    fake.chat_requests()
        .iter()
        .filter(|request| !is_probe(&request.json()))
        .map(|request| {
            let bearer = request.bearer().unwrap_or_default();
            by_token
                .get(bearer)
                .map_or(bearer, |email| email)
                .to_owned()
        })
        .collect()
}

/// Whether a chat request is the prober's one-word request.
fn is_probe(body: &Value) -> bool {
    body["messages"][0]["content"] == "ping"
}

fn count(served: &[String], who: &str) -> usize {
    served.iter().filter(|email| *email == who).count()
}

/// The history of turn `turn` (from 0) of a conversation opened by `opening`: the opening,
/// then each earlier turn's question and answer, then this turn's question.
fn history(opening: &str, turn: usize) -> Vec<Value> {
    let mut messages = vec![json!({"role": "user", "content": opening})];
    for earlier in 0..turn {
        messages.push(json!({"role": "assistant", "content": format!("answer {earlier}")}));
        messages.push(json!({"role": "user", "content": format!("question {}", earlier + 1)}));
    }
    messages
}

/// A turn as Claude Code sends it: `POST /v1/messages` with its session header and the session
/// in `metadata.user_id`.
async fn claude_code_turn(server: &Server, session: &str, turn: usize) {
    let user_id = json!({"device_id": "d3v1c3", "account_uuid": "", "session_id": session});
    let response = server
        .client()
        .post(server.url("/v1/messages"))
        .header("x-claude-code-session-id", session)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 64,
            "system": [{"type": "text", "text": "You are Claude Code."}],
            "metadata": {"user_id": user_id.to_string()},
            "messages": history("fix the build", turn),
        }))
        .send()
        .await
        .expect("request reaches the server");
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

/// A turn as Codex CLI sends it: `POST /v1/responses` with its `session-id` header and the
/// session as `prompt_cache_key`.
async fn codex_turn(server: &Server, session: &str, turn: usize) {
    let input: Vec<Value> = history("add a test", turn)
        .into_iter()
        .map(|message| {
            let kind = if message["role"] == "user" {
                "input_text"
            } else {
                "output_text"
            };
            json!({
                "type": "message",
                "role": message["role"],
                "content": [{"type": kind, "text": message["content"]}],
            })
        })
        .collect();
    let response = server
        .client()
        .post(server.url("/v1/responses"))
        .header("session-id", session)
        .json(&json!({
            "model": "gpt-5-codex",
            "instructions": "You are Codex.",
            "input": input,
            "prompt_cache_key": session,
            "store": false,
        }))
        .send()
        .await
        .expect("request reaches the server");
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

/// A turn as Qwen Code 0.24 sends it through an OpenAI provider: a chat completion with no
/// session signal at all, only the conversation's opening in common with earlier turns.
async fn qwen_code_turn(server: &Server, opening: &str, turn: usize) {
    let mut messages = vec![json!({"role": "system", "content": "You are Qwen Code."})];
    messages.extend(history(opening, turn));
    let response = server
        .client()
        .post(server.url("/v1/chat/completions"))
        .json(&json!({"model": MODEL, "messages": messages}))
        .send()
        .await
        .expect("request reaches the server");
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

/// Twenty turns each of a Claude Code, a Codex and a Qwen Code conversation, interleaved: each
/// conversation stays on one account, and the three new conversations are spread over the
/// three accounts as single requests would be.
#[tokio::test]
async fn each_agents_conversation_stays_on_one_account() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let emails = emails(3);
    let server = Server::builder(&sandbox)
        .accounts(&fake, &as_strs(&emails))
        .client_aliases()
        .session_affinity()
        .start()
        .await;

    for turn in 0..20 {
        claude_code_turn(&server, "0b6c7a52-cc-session", turn).await;
        codex_turn(&server, "0199a1f3-codex-session", turn).await;
        qwen_code_turn(&server, "explain this repository", turn).await;
    }

    let served = served_by(&fake, &server, &emails);
    assert_eq!(served.len(), 60);
    let conversations: Vec<Vec<&String>> = (0..3)
        .map(|which| served.iter().skip(which).step_by(3).collect())
        .collect();
    for (which, turns) in conversations.iter().enumerate() {
        assert!(
            turns.iter().all(|email| *email == turns[0]),
            "conversation {which} moved between accounts: {turns:?}"
        );
    }
    let mut accounts: Vec<&String> = conversations.iter().map(|turns| turns[0]).collect();
    accounts.sort();
    accounts.dedup();
    assert_eq!(
        accounts.len(),
        3,
        "new conversations are spread: {served:?}"
    );
}

/// Without affinity the same turns rotate over the accounts: the test above is not passing by
/// accident of the rotation.
#[tokio::test]
async fn without_affinity_the_turns_of_a_conversation_rotate() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let emails = emails(2);
    let server = Server::builder(&sandbox)
        .accounts(&fake, &as_strs(&emails))
        .client_aliases()
        .start()
        .await;
    for turn in 0..4 {
        claude_code_turn(&server, "0b6c7a52-cc-session", turn).await;
    }
    let served = served_by(&fake, &server, &emails);
    assert_eq!(count(&served, &emails[0]), 2, "{served:?}");
    assert_eq!(count(&served, &emails[1]), 2, "{served:?}");
}

/// A conversation's account runs out of quota: the next turn is served by another account
/// without an error, and the conversation stays there.
#[tokio::test]
async fn the_pin_moves_when_its_account_runs_out_of_quota() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let emails = emails(2);
    let server = Server::builder(&sandbox)
        .accounts(&fake, &as_strs(&emails))
        .client_aliases()
        .session_affinity()
        .start()
        .await;

    for turn in 0..5 {
        claude_code_turn(&server, "session-a", turn).await;
    }
    let first = served_by(&fake, &server, &emails)[0].clone();
    let other = emails.iter().find(|email| **email != first).unwrap();
    fake.script_chat(
        &server.account(&first).tokens.access_token,
        vec![ChatStep::QuotaExceeded],
    );
    for turn in 5..10 {
        claude_code_turn(&server, "session-a", turn).await;
    }

    let served = served_by(&fake, &server, &emails);
    assert!(
        served[..5].iter().all(|email| *email == first),
        "{served:?}"
    );
    assert_eq!(
        served[5], first,
        "the quota answer came from the pinned account"
    );
    assert!(served[6..].iter().all(|email| email == other), "{served:?}");
}

/// `routing-strategy = "weighted"`, weights 3 and 1: 400 requests split 300:100 within ±5 %.
#[tokio::test]
async fn weights_three_to_one_split_the_requests() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let emails = emails(2);
    let server = Server::builder(&sandbox)
        .accounts(&fake, &as_strs(&emails))
        .config(&format!(
            "routing-strategy = \"weighted\"\n\
             [accounts.\"{}\"]\nweight = 3\nrequests-per-minute = 0\n\
             [accounts.\"{}\"]\nweight = 1\nrequests-per-minute = 0",
            emails[0], emails[1]
        ))
        .start()
        .await;

    for _ in 0..400 {
        let response = server.chat(MODEL, false).await;
        assert_eq!(response.status(), 200);
    }
    let served = served_by(&fake, &server, &emails);
    let heavy = count(&served, &emails[0]);
    assert!((280..=320).contains(&heavy), "{heavy} of 400 for weight 3");
    assert_eq!(count(&served, &emails[1]), 400 - heavy);
    // Smoothly: never more than three in a row on the heavy one.
    assert!(
        !served
            .windows(4)
            .any(|run| run.iter().all(|e| *e == emails[0])),
        "bursts on the heavy account"
    );
}

/// `priority`: the lower tier serves everything while it can; when it runs out of quota the
/// next tier serves, spread over its accounts.
#[tokio::test]
async fn priority_tiers_are_used_in_order() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let emails = emails(3);
    let server = Server::builder(&sandbox)
        .accounts(&fake, &as_strs(&emails))
        .config(&format!(
            "routing-strategy = \"priority\"\n\
             [accounts.\"{}\"]\npriority = 0\n\
             [accounts.\"{}\"]\npriority = 1\n\
             [accounts.\"{}\"]\npriority = 1",
            emails[0], emails[1], emails[2]
        ))
        .start()
        .await;

    for _ in 0..6 {
        assert_eq!(server.chat(MODEL, false).await.status(), 200);
    }
    fake.script_chat(
        &server.account(&emails[0]).tokens.access_token,
        vec![ChatStep::QuotaExceeded],
    );
    for _ in 0..6 {
        assert_eq!(server.chat(MODEL, false).await.status(), 200);
    }

    let served = served_by(&fake, &server, &emails);
    assert!(served[..7].iter().all(|e| *e == emails[0]), "{served:?}");
    let second_tier = &served[7..];
    assert_eq!(second_tier.len(), 6);
    assert_eq!(count(second_tier, &emails[1]), 3, "{served:?}");
    assert_eq!(count(second_tier, &emails[2]), 3, "{served:?}");
}

/// `headroom` under per-minute caps of 10 and 5: the account with more room left serves until
/// both have the same, 15 requests fill both caps exactly, and the 16th is answered 429 with
/// `Retry-After` without reaching the upstream.
#[tokio::test]
async fn headroom_picks_the_account_with_the_most_room() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let emails = emails(2);
    let server = Server::builder(&sandbox)
        .accounts(&fake, &as_strs(&emails))
        .config(&format!(
            "routing-strategy = \"headroom\"\n\
             [accounts.\"{}\"]\nrequests-per-minute = 10\n\
             [accounts.\"{}\"]\nrequests-per-minute = 5",
            emails[0], emails[1]
        ))
        .start()
        .await;

    for _ in 0..15 {
        assert_eq!(server.chat(MODEL, false).await.status(), 200);
    }
    let refused = server.chat(MODEL, false).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));

    let served = served_by(&fake, &server, &emails);
    assert_eq!(
        served.len(),
        15,
        "nothing past the caps reached the upstream"
    );
    assert!(served[..5].iter().all(|e| *e == emails[0]), "{served:?}");
    assert_eq!(count(&served, &emails[0]), 10);
    assert_eq!(count(&served, &emails[1]), 5);
}

/// An API key the upstream refuses (401) leaves rotation at once, `accounts list` says why,
/// and it comes back on its own when a background probe finds the upstream accepts it again.
#[tokio::test]
async fn a_refused_key_leaves_rotation_and_heals() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let emails = emails(1);
    let mut server = Server::builder(&sandbox)
        .accounts(&fake, &as_strs(&emails))
        .config(&format!(
            "probe-after = \"1s\"\n\
             [[openai-compat]]\nname = \"spare\"\nbase-url = \"{}\"\n\
             api-keys = [\"sk-not-yet\"]\nmodels = [\"{MODEL}\"]",
            fake.chat_base_url()
        ))
        .start()
        .await;

    for _ in 0..4 {
        assert_eq!(server.chat(MODEL, false).await.status(), 200);
    }
    let served = served_by(&fake, &server, &emails);
    assert_eq!(
        count(&served, "sk-not-yet"),
        1,
        "refused once, then out of rotation: {served:?}"
    );
    let listed = sandbox.run(&["accounts", "list"], "").await.success();
    let row = listed
        .lines()
        .find(|line| line.starts_with("spare#1"))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(
        row.contains("refused since") && row.contains("the upstream answered 401"),
        "{row}"
    );

    fake.add_api_key("sk-not-yet");
    server
        .wait_for_log("the upstream accepts the refused credential again")
        .await;
    fake.forget_requests();
    for _ in 0..4 {
        assert_eq!(server.chat(MODEL, false).await.status(), 200);
    }
    let served = served_by(&fake, &server, &emails);
    assert_eq!(
        count(&served, "sk-not-yet"),
        2,
        "back in rotation: {served:?}"
    );
}

/// A daily quota answer with `Retry-After` takes the account out until then, without probes:
/// the client learns when, and nothing reaches the upstream until the time has passed. Without
/// `Retry-After`, the account waits for `quota-reset`.
#[tokio::test]
async fn an_exhausted_account_waits_for_its_reset() {
    let fake = FakeQwen::start().await;
    let sandbox = Sandbox::new(&fake);
    let emails = emails(2);
    let reset = time::OffsetDateTime::now_utc() + time::Duration::minutes(90);
    let server = Server::builder(&sandbox)
        .accounts(&fake, &as_strs(&emails))
        .config(&format!(
            "quota-reset = \"{:02}:{:02}+00:00\"",
            reset.hour(),
            reset.minute()
        ))
        .start()
        .await;

    // The second account's daily quota ends without Retry-After: out until quota-reset.
    fake.script_chat(
        &server.account(&emails[1]).tokens.access_token,
        vec![ChatStep::QuotaExceeded],
    );
    assert_eq!(server.chat(MODEL, false).await.status(), 200);
    assert_eq!(server.chat(MODEL, false).await.status(), 200);
    let listed = sandbox.run(&["accounts", "list"], "").await.success();
    let row = listed
        .lines()
        .find(|line| line.starts_with(emails[1].as_str()))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(
        row.contains("exhausted until in 1h 29m") || row.contains("exhausted until in 1h 28m"),
        "{row}"
    );

    // The first one's quota ends with Retry-After: 2 s; after that it answers again.
    fake.set_quota_retry_after(Some(2));
    fake.script_chat(
        &server.account(&emails[0]).tokens.access_token,
        vec![ChatStep::QuotaExceeded, ChatStep::Answer],
    );
    let answer = server.chat(MODEL, false).await;
    assert_eq!(answer.status(), 429);
    let wait: u64 = answer.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    let seen = fake.chat_requests().len();

    // A client that honours Retry-After is served once it has passed; until then nothing
    // reaches the upstream.
    let served = guarded("the quota reset", async {
        loop {
            let answer = server.chat(MODEL, false).await;
            if answer.status() == 200 {
                return;
            }
            assert_eq!(answer.status(), 429);
            assert_eq!(
                fake.chat_requests().len(),
                seen,
                "a request reached the upstream"
            );
            let wait: u64 = answer.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            tokio::time::sleep(Duration::from_secs(wait)).await;
        }
    });
    served.await;
    let served = served_by(&fake, &server, &emails);
    assert_eq!(served.last(), Some(&emails[0]), "{served:?}");
}

/// `accounts disable` takes an account out of a running server's rotation and `enable` puts it
/// back, for a Qwen account (a flag in its token file) and for an API key.
#[tokio::test]
async fn disable_and_enable_act_on_a_running_server() {
    let fake = FakeQwen::start().await;
    fake.add_api_key("sk-team");
    let sandbox = Sandbox::new(&fake);
    let emails = emails(2);
    let mut server = Server::builder(&sandbox)
        .accounts(&fake, &as_strs(&emails))
        .config(&format!(
            "[[openai-compat]]\nname = \"team\"\nbase-url = \"{}\"\n\
             api-keys = [\"sk-team\"]\nmodels = [\"{MODEL}\"]",
            fake.chat_base_url()
        ))
        .start()
        .await;

    sandbox
        .run(&["accounts", "disable", &emails[0]], "")
        .await
        .success();
    server.next_log_containing("taken out of rotation").await;
    sandbox
        .run(&["accounts", "disable", "team#1"], "")
        .await
        .success();
    server.next_log_containing("taken out of rotation").await;
    let listed = sandbox.run(&["accounts", "list"], "").await.success();
    for name in [emails[0].as_str(), "team#1"] {
        let row = listed
            .lines()
            .find(|line| line.starts_with(name))
            .unwrap_or_else(|| panic!("{listed}"));
        assert!(row.contains("disabled"), "{row}");
    }
    for _ in 0..4 {
        assert_eq!(server.chat(MODEL, false).await.status(), 200);
    }
    let served = served_by(&fake, &server, &emails);
    assert!(served.iter().all(|e| *e == emails[1]), "{served:?}");

    sandbox
        .run(&["accounts", "enable", &emails[0]], "")
        .await
        .success();
    server.next_log_containing("back in rotation").await;
    sandbox
        .run(&["accounts", "enable", "team#1"], "")
        .await
        .success();
    server.next_log_containing("back in rotation").await;
    fake.forget_requests();
    for _ in 0..6 {
        assert_eq!(server.chat(MODEL, false).await.status(), 200);
    }
    let served = served_by(&fake, &server, &emails);
    assert_eq!(count(&served, &emails[0]), 2, "{served:?}");
    assert_eq!(count(&served, &emails[1]), 2, "{served:?}");
    assert_eq!(count(&served, "sk-team"), 2, "{served:?}");

    let unknown = sandbox.run(&["accounts", "disable", "nobody"], "").await;
    assert!(
        unknown.failure(1).contains("nobody"),
        "{}",
        unknown.stderr()
    );
}

/// POSTs a chat completion for `model` with client key `key`.
async fn chat_as(server: &Server, key: &str, model: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .expect("request reaches the server")
}

/// Client keys: one limited to a group never reaches another group's credentials and gets 429
/// in its API's shape past its requests a minute; one limited to an upstream's keys, a model
/// and a day's tokens sees only that model, gets 403 for others and 429 once its tokens are
/// used; neither limit sends anything upstream, and logs name the keys, never show them.
#[tokio::test]
async fn client_keys_keep_to_their_credentials_models_and_limits() {
    let fake = FakeQwen::start().await;
    fake.add_api_key("sk-a");
    fake.add_api_key("sk-b");
    let sandbox = Sandbox::new(&fake);
    let emails = emails(1);
    let base = fake.chat_base_url();
    let mut server = Server::builder(&sandbox)
        .accounts(&fake, &as_strs(&emails))
        .config(&format!(
            "[[openai-compat]]\nname = \"team-a\"\nbase-url = \"{base}\"\napi-keys = [\"sk-a\"]\n\
             models = [\"{MODEL}\"]\ngroup = \"a\"\n\
             [[openai-compat]]\nname = \"team-b\"\nbase-url = \"{base}\"\napi-keys = [\"sk-b\"]\n\
             models = [\"{MODEL}\", \"qwen3-coder-plus\"]\n\
             [[client-keys]]\nname = \"alice\"\nkey = \"alice-key-0123456789\"\ngroups = [\"a\"]\n\
             requests-per-minute = 3\n\
             [[client-keys]]\nname = \"bob\"\nkey = \"bob-key-0123456789\"\ncredentials = [\"team-b\"]\n\
             models = [\"{MODEL}\"]\ntokens-per-day = 1\n"
        ))
        .start()
        .await;

    for _ in 0..3 {
        let response = chat_as(&server, "alice-key-0123456789", MODEL).await;
        assert_eq!(response.status(), 200);
    }
    let served = served_by(&fake, &server, &emails);
    assert_eq!(served, ["sk-a", "sk-a", "sk-a"], "alice keeps to group a");
    let limited = reqwest::Client::new()
        .post(server.url("/v1/messages"))
        .header("x-api-key", "alice-key-0123456789")
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": MODEL, "max_tokens": 16,
            "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    let wait: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let error: Value = limited.json().await.unwrap();
    assert_eq!(error["type"], "error", "Anthropic's shape: {error}");
    assert_eq!(error["error"]["type"], "rate_limit_error", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("alice"),
        "{error}"
    );
    assert_eq!(
        fake.chat_requests().len(),
        3,
        "nothing past the limit went upstream"
    );

    let models: Value = reqwest::Client::new()
        .get(server.url("/v1/models"))
        .bearer_auth("bob-key-0123456789")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [MODEL], "bob sees only his model");
    let refused = chat_as(&server, "bob-key-0123456789", "qwen3-coder-plus").await;
    assert_eq!(refused.status(), 403);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "model_not_allowed", "{error}");
    assert_eq!(
        chat_as(&server, "bob-key-0123456789", MODEL).await.status(),
        200
    );
    assert_eq!(
        served_by(&fake, &server, &emails)
            .last()
            .map(String::as_str),
        Some("sk-b")
    );
    let spent = chat_as(&server, "bob-key-0123456789", MODEL).await;
    assert_eq!(
        spent.status(),
        429,
        "one token a day is used by the first answer"
    );
    let wait: u64 = spent.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=24 * 3600).contains(&wait), "{wait}");
    let error: Value = spent.json().await.unwrap();
    assert_eq!(error["error"]["code"], "client_limit_exceeded", "{error}");
    assert_eq!(fake.chat_requests().len(), 4);

    // The plain key has no limits and reaches every credential.
    fake.forget_requests();
    for _ in 0..3 {
        assert_eq!(server.chat(MODEL, false).await.status(), 200);
    }
    let mut served = served_by(&fake, &server, &emails);
    served.sort();
    assert_eq!(served, ["sk-a", "sk-b", "user0@example.com"]);

    let unknown = chat_as(&server, "mallory-key", MODEL).await;
    assert_eq!(unknown.status(), 401);
    server.wait_for_log("client_limit_exceeded").await;
    let log = server.seen.join("\n");
    assert!(
        !log.contains("alice-key-0123456789") && !log.contains("bob-key-0123456789"),
        "{log}"
    );
}
