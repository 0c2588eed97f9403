//! Requests as the fake received them, for tests to inspect.

/// One request the fake answered (requests refused while [`crate::FakeQwen::set_down`] is on are
/// not recorded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `POST`, `GET`, ...
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// Header names are lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body decoded as `application/x-www-form-urlencoded` (empty when it is not a form).
    pub form: Vec<(String, String)>,
    /// The raw body, decoded as UTF-8 with replacement characters.
    pub body: String,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The first value of form field `name`.
    pub fn form_value(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The token of an `Authorization: Bearer <token>` header.
    pub fn bearer(&self) -> Option<&str> {
        let value = self.header("authorization")?;
        let (scheme, token) = value.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim())
    }

    /// The body parsed as JSON; `Value::Null` when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The form field names in the order sent.
    pub fn form_names(&self) -> Vec<&str> {
        self.form.iter().map(|(key, _)| key.as_str()).collect()
    }
}

/// A token pair the fake handed out (by a device-code approval, a refresh or
/// [`crate::FakeQwen::mint_tokens`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The access token, valid for the fake's chat API once that exists.
    pub access_token: String,
    /// The refresh token that goes with it (the old one when the refresh kept it).
    pub refresh_token: String,
    /// The `expires_in` that was answered.
    pub expires_in: crate::ExpiresIn,
}

/// One refresh request (`grant_type=refresh_token` with a `refresh_token`) and what the fake
/// answered, in the order the answers were decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    /// The refresh token the request carried.
    pub refresh_token: String,
    /// What the fake answered.
    pub outcome: RefreshOutcome,
}

/// What one refresh request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// 200 with this token pair; its `refresh_token` is a new one after a rotation, or the one
    /// sent when the fake kept it ([`crate::RefreshBehaviour::KeepRefresh`]).
    Issued(IssuedToken),
    /// 400 because the refresh token is dead. `spent` when this fake issued it and a rotation
    /// has used it up (a client sent it again, as after losing the rotated answer); false when
    /// the fake never issued it.
    Dead {
        /// Whether the token was issued here and already used up.
        spent: bool,
    },
    /// Any other refusal or failure: a wrong `client_id`, or what the [`crate::RefreshBehaviour`]
    /// scripted (`Invalid`, a 5xx, a WAF page).
    Failed,
}
