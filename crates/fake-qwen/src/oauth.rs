//! The OAuth endpoints: device authorization and the token endpoint (device-code polls and
//! refreshes), checking requests the way Qwen does and answering from the test's script.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

use crate::record::{IssuedToken, RecordedRequest, RefreshOutcome, RefreshRecord};
use crate::reply::{self, Reply};
use crate::script::{ExpiresIn, PollStep, RefreshBehaviour};
use crate::state::World;

/// Path of the device authorization endpoint, as on chat.qwen.ai.
pub const DEVICE_CODE_PATH: &str = "/api/v1/oauth2/device/code";
/// Path of the token endpoint, as on chat.qwen.ai.
pub const TOKEN_PATH: &str = "/api/v1/oauth2/token";
/// The public client id Qwen Code uses; any other is refused.
pub const CLIENT_ID: &str = "f0304373b74a44d2b584a3fb70ca9e56";
/// The scope the device request must ask for, exactly.
pub const SCOPE: &str = "openid profile email model.completion";

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
const BAD_REFRESH: &str = "Invalid refresh token or client_id";

/// `POST /api/v1/oauth2/device/code`.
pub(crate) fn device_code(world: &mut World, request: &RecordedRequest) -> Reply {
    if let Some(refusal) = refuse_unless_form_accepting_json(request) {
        return refusal;
    }
    if request.form_value("client_id") != Some(CLIENT_ID) {
        return invalid_request("Invalid client_id");
    }
    if request.form_value("scope") != Some(SCOPE) {
        return invalid_request("Invalid scope");
    }
    if request.form_value("code_challenge_method") != Some("S256") {
        return invalid_request("code_challenge_method must be S256");
    }
    let Some(challenge) = request
        .form_value("code_challenge")
        .filter(|challenge| is_s256_challenge(challenge))
    else {
        return invalid_request("code_challenge must be a base64url SHA-256 digest");
    };

    let device_code = world.open_device(challenge);
    let answer = world.device_answer.clone();
    let verification_uri = format!("{}/authorize", world.base_url);
    let mut body = serde_json::json!({
        "device_code": device_code,
        "user_code": answer.user_code,
        "verification_uri": verification_uri,
        "expires_in": answer.expires_in,
    });
    if answer.include_verification_uri_complete {
        let mut complete = url::Url::parse(&verification_uri).ok();
        if let Some(url) = complete.as_mut() {
            url.query_pairs_mut()
                .append_pair("user_code", &answer.user_code);
        }
        body["verification_uri_complete"] = complete.map(String::from).into();
    }
    if let Some(interval) = answer.interval {
        body["interval"] = interval.into();
    }
    reply::json(200, &body)
}

/// `POST /api/v1/oauth2/token`.
pub(crate) fn token(world: &mut World, request: &RecordedRequest) -> Reply {
    if let Some(refusal) = refuse_unless_form_accepting_json(request) {
        return refusal;
    }
    match request.form_value("grant_type") {
        Some(DEVICE_GRANT) => device_poll(world, request),
        Some("refresh_token") => refresh(world, request),
        Some(_) => reply::oauth_error(
            400,
            "unsupported_grant_type",
            "grant_type must be the device_code grant or refresh_token",
        ),
        None => invalid_request("grant_type is required"),
    }
}

fn device_poll(world: &mut World, request: &RecordedRequest) -> Reply {
    if request.form_value("client_id") != Some(CLIENT_ID) {
        return invalid_request("Invalid client_id");
    }
    let Some(device_code) = request.form_value("device_code") else {
        return invalid_request("device_code is required");
    };
    let Some(challenge) = world.device_challenge(device_code) else {
        return reply::oauth_error(400, "invalid_grant", "Invalid device_code");
    };
    let Some(verifier) = request.form_value("code_verifier") else {
        return invalid_request("code_verifier is required");
    };
    if !(43..=128).contains(&verifier.len()) {
        return invalid_request("code_verifier must be 43 to 128 characters");
    }
    if s256(verifier) != challenge {
        return reply::oauth_error(400, "invalid_grant", "PKCE verification failed");
    }

    match world.take_step() {
        PollStep::Pending => reply::oauth_error(
            400,
            "authorization_pending",
            "The authorization request is still pending",
        ),
        PollStep::SlowDown400 => slow_down(400),
        PollStep::SlowDown429 => slow_down(429),
        PollStep::Denied => reply::oauth_error(
            400,
            "access_denied",
            "The user denied the authorization request",
        ),
        PollStep::Expired => {
            reply::oauth_error(400, "expired_token", "The device code has expired")
        }
        PollStep::Html { status } => reply::waf_page(status),
        PollStep::ServerError(status) => reply::server_error(status),
        PollStep::Approve => {
            let device_code = device_code.to_owned();
            world.close_device(&device_code);
            let issued = world.mint_pair();
            token_answer(world, &issued, true)
        }
    }
}

fn refresh(world: &mut World, request: &RecordedRequest) -> Reply {
    let refresh_token = request.form_value("refresh_token");
    let (reply, outcome) = refresh_answer(world, request, refresh_token);
    if let (Some(refresh_token), Some(outcome)) = (refresh_token, outcome) {
        world.refreshes.push(RefreshRecord {
            refresh_token: refresh_token.to_owned(),
            outcome,
        });
    }
    reply
}

/// The answer to a refresh, and what it was for the refresh log (`None` when the request
/// carried no refresh token).
fn refresh_answer(
    world: &mut World,
    request: &RecordedRequest,
    refresh_token: Option<&str>,
) -> (Reply, Option<RefreshOutcome>) {
    if request.form_value("client_id") != Some(CLIENT_ID) {
        return (invalid_request(BAD_REFRESH), Some(RefreshOutcome::Failed));
    }
    let Some(refresh_token) = refresh_token else {
        return (invalid_request("refresh_token is required"), None);
    };
    let (reply, outcome) = answer_refresh(world, refresh_token);
    (reply, Some(outcome))
}

/// The answer to a well-formed refresh with `refresh_token`, as the behaviour says.
fn answer_refresh(world: &mut World, refresh_token: &str) -> (Reply, RefreshOutcome) {
    let behaviour = world.refresh.clone();
    match behaviour {
        RefreshBehaviour::Invalid => (invalid_request(BAD_REFRESH), RefreshOutcome::Failed),
        RefreshBehaviour::ServerError(status) => {
            (reply::server_error(status), RefreshOutcome::Failed)
        }
        RefreshBehaviour::Html { status } => (reply::waf_page(status), RefreshOutcome::Failed),
        RefreshBehaviour::Redirect { status, location } => {
            (reply::redirect(status, &location), RefreshOutcome::Failed)
        }
        RefreshBehaviour::Rotate
        | RefreshBehaviour::KeepRefresh
        | RefreshBehaviour::Oversized { .. }
            if !world.refresh_token_is_live(refresh_token) =>
        {
            let spent = world.refresh_token_was_issued(refresh_token);
            (invalid_request(BAD_REFRESH), RefreshOutcome::Dead { spent })
        }
        RefreshBehaviour::Rotate => {
            world.retire_refresh_token(refresh_token);
            let issued = world.mint_pair();
            world.inherit_refusal(refresh_token, &issued);
            (
                token_answer(world, &issued, true),
                RefreshOutcome::Issued(issued),
            )
        }
        RefreshBehaviour::Oversized { bytes, chunked } => {
            world.retire_refresh_token(refresh_token);
            let issued = world.mint_pair();
            let mut body = token_body(world, &issued, true);
            body["padding"] = "x".repeat(bytes).into();
            let text = body.to_string();
            let reply = if chunked {
                reply::chunked_json(200, text.into_bytes(), 64 * 1024)
            } else {
                reply::json_text(200, text)
            };
            (reply, RefreshOutcome::Issued(issued))
        }
        RefreshBehaviour::KeepRefresh => {
            let issued = world.mint_access(refresh_token);
            world.inherit_refusal(refresh_token, &issued);
            (
                token_answer(world, &issued, false),
                RefreshOutcome::Issued(issued),
            )
        }
    }
}

/// A 200 token answer; `full` adds `refresh_token` and `resource_url`.
fn token_answer(world: &World, issued: &IssuedToken, full: bool) -> Reply {
    let body = token_body(world, issued, full).to_string();
    match &issued.expires_in {
        ExpiresIn::Json(raw) => {
            // Spliced in as text: the value may be no number serde_json can hold.
            let open = body.strip_suffix('}').unwrap_or(&body);
            let separator = if open.ends_with('{') { "" } else { "," };
            reply::json_text(200, format!(r#"{open}{separator}"expires_in":{raw}}}"#))
        }
        ExpiresIn::Seconds(_) | ExpiresIn::Missing => reply::json_text(200, body),
    }
}

/// The JSON of a 200 token answer, with `expires_in` only when it is a number of seconds.
fn token_body(world: &World, issued: &IssuedToken, full: bool) -> serde_json::Value {
    let mut body = serde_json::json!({
        "access_token": issued.access_token,
        "token_type": "Bearer",
    });
    if let ExpiresIn::Seconds(seconds) = issued.expires_in {
        body["expires_in"] = seconds.into();
    }
    if full {
        body["refresh_token"] = issued.refresh_token.clone().into();
        if let Some(resource_url) = &world.answered_resource_url {
            body["resource_url"] = resource_url.clone().into();
        }
    }
    body
}

/// Both endpoints take a form body and answer JSON only to clients that accept it; the
/// refusal to send otherwise.
fn refuse_unless_form_accepting_json(request: &RecordedRequest) -> Option<Reply> {
    let is_form = request.header("content-type").is_some_and(|value| {
        value
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    if !is_form {
        return Some(invalid_request(
            "Content-Type must be application/x-www-form-urlencoded",
        ));
    }
    let accepts_json = request
        .header("accept")
        .is_some_and(|value| value.to_ascii_lowercase().contains("application/json"));
    if !accepts_json {
        return Some(invalid_request("Accept must include application/json"));
    }
    None
}

fn slow_down(status: u16) -> Reply {
    reply::oauth_error(
        status,
        "slow_down",
        "Polling too frequently; increase the interval by 5 seconds",
    )
}

fn invalid_request(description: &str) -> Reply {
    reply::oauth_error(400, "invalid_request", description)
}

/// BASE64URL-NOPAD(SHA256(verifier)), the RFC 7636 S256 transform.
fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A SHA-256 digest in base64url without padding is exactly 43 characters of that alphabet.
fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && URL_SAFE_NO_PAD
            .decode(challenge)
            .is_ok_and(|digest| digest.len() == 32)
}
