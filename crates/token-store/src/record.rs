//! The token record: what one token file holds, how it maps to JSON, and
//! what makes it valid.
//!
//! The JSON mapping is written by hand rather than derived so that empty
//! strings written by the Go CLIProxyAPI read as "absent", unknown keys are
//! kept in their original order, and no error message can quote a value.

use std::fmt;

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::bad_file::BadFileReason;

/// Providers whose token files this store accepts (the JSON `type`).
pub const KNOWN_PROVIDERS: &[&str] = &["qwen"];

/// The provider of Qwen OAuth accounts.
pub const QWEN: &str = "qwen";

/// Extra key where the server records why an account left rotation
/// (e.g. `"relogin-required"`); a fresh login clears it.
pub const STATUS_KEY: &str = "cliproxy_status";

/// [`STATUS_KEY`] value of an account whose refresh token was rejected.
pub const STATUS_RELOGIN_REQUIRED: &str = "relogin-required";

/// JSON key that takes an account out of rotation on purpose (`cliproxy accounts disable`):
/// `true` while disabled, absent otherwise.
pub const DISABLED_KEY: &str = "cliproxy_disabled";

const TYPE: &str = "type";
const EMAIL: &str = "email";
const ACCESS_TOKEN: &str = "access_token";
const REFRESH_TOKEN: &str = "refresh_token";
const TOKEN_TYPE: &str = "token_type";
const RESOURCE_URL: &str = "resource_url";
const EXPIRED: &str = "expired";
const LAST_REFRESH: &str = "last_refresh";

/// Keys with a typed field; everything else goes to [`TokenRecord::extra`].
const KNOWN_KEYS: [&str; 8] = [
    TYPE,
    EMAIL,
    ACCESS_TOKEN,
    REFRESH_TOKEN,
    TOKEN_TYPE,
    RESOURCE_URL,
    EXPIRED,
    LAST_REFRESH,
];

/// Longest `type` value quoted back in [`BadFileReason::UnknownType`].
const MAX_QUOTED_TYPE: usize = 64;

/// One account's credentials, as stored in one token file.
///
/// `Debug` never shows token values; see the module docs of the crate.
#[derive(Clone, PartialEq)]
pub struct TokenRecord {
    /// JSON `type`, e.g. `"qwen"`.
    pub provider: String,
    /// The account's email; absent for web logins.
    pub email: Option<String>,
    /// May be empty when only a refresh token exists.
    pub access_token: String,
    /// The OAuth refresh token.
    pub refresh_token: Option<String>,
    /// Usually `"Bearer"`.
    pub token_type: Option<String>,
    /// The API host the provider assigned to this account.
    pub resource_url: Option<String>,
    /// When the access token expires (RFC 3339 in JSON).
    pub expired: Option<OffsetDateTime>,
    /// When the token was last refreshed (RFC 3339 in JSON).
    pub last_refresh: Option<OffsetDateTime>,
    /// Every unknown key, kept verbatim and in order on rewrite.
    pub extra: Map<String, Value>,
}

impl TokenRecord {
    /// A record with only a provider and an access token; set the other fields as needed.
    pub fn new(provider: impl Into<String>, access_token: impl Into<String>) -> TokenRecord {
        TokenRecord {
            provider: provider.into(),
            email: None,
            access_token: access_token.into(),
            refresh_token: None,
            token_type: None,
            resource_url: None,
            expired: None,
            last_refresh: None,
            extra: Map::new(),
        }
    }

    /// The status the server recorded ([`STATUS_KEY`]), if any.
    pub fn status(&self) -> Option<&str> {
        self.extra.get(STATUS_KEY).and_then(Value::as_str)
    }

    /// Whether the account was taken out of rotation on purpose ([`DISABLED_KEY`]).
    pub fn is_disabled(&self) -> bool {
        self.extra.get(DISABLED_KEY).and_then(Value::as_bool) == Some(true)
    }

    /// Takes the account out of rotation (`true`) or puts it back (`false`).
    pub fn set_disabled(&mut self, disabled: bool) {
        if disabled {
            self.extra
                .insert(DISABLED_KEY.to_owned(), Value::Bool(true));
        } else {
            self.extra.remove(DISABLED_KEY);
        }
    }

    /// Records a status, or clears it with `None`.
    pub fn set_status(&mut self, status: Option<&str>) {
        match status {
            Some(status) => {
                self.extra
                    .insert(STATUS_KEY.to_owned(), Value::from(status));
            }
            None => {
                self.extra.remove(STATUS_KEY);
            }
        }
    }

    /// True when the access token cannot be used at `now`: its expiry is at
    /// or before `now`, or there is no access token at all. A token without
    /// a known expiry is assumed valid.
    pub fn is_expired_at(&self, now: OffsetDateTime) -> bool {
        self.access_token.is_empty() || self.expired.is_some_and(|expired| expired <= now)
    }

    /// Checks what every stored file must satisfy: a known `type` and at
    /// least one non-empty token.
    pub fn validate(&self) -> Result<(), BadFileReason> {
        check_provider(&self.provider)?;
        let has_refresh = self.refresh_token.as_deref().is_some_and(|t| !t.is_empty());
        if self.access_token.is_empty() && !has_refresh {
            return Err(BadFileReason::MissingToken);
        }
        Ok(())
    }

    /// Parses and validates the content of a token file.
    pub fn from_json(bytes: &[u8]) -> Result<TokenRecord, BadFileReason> {
        TokenRecord::from_map(parse_object(bytes)?)
    }

    /// Builds a record from a JSON object and validates it.
    pub fn from_map(mut map: Map<String, Value>) -> Result<TokenRecord, BadFileReason> {
        let provider = take_string(&mut map, TYPE)?.ok_or(BadFileReason::MissingType)?;
        check_provider(&provider)?;
        let record = TokenRecord {
            provider,
            email: take_string(&mut map, EMAIL)?,
            access_token: take_string(&mut map, ACCESS_TOKEN)?.unwrap_or_default(),
            refresh_token: take_string(&mut map, REFRESH_TOKEN)?,
            token_type: take_string(&mut map, TOKEN_TYPE)?,
            resource_url: take_string(&mut map, RESOURCE_URL)?,
            expired: take_time(&mut map, EXPIRED)?,
            last_refresh: take_time(&mut map, LAST_REFRESH)?,
            extra: map,
        };
        record.validate()?;
        Ok(record)
    }

    /// The JSON object of this record: known keys first, then `extra`
    /// (minus any entry that would shadow a known key).
    pub fn to_map(&self) -> Result<Map<String, Value>, BadFileReason> {
        let mut map = Map::new();
        map.insert(TYPE.into(), self.provider.clone().into());
        put_string(&mut map, EMAIL, self.email.as_deref());
        map.insert(ACCESS_TOKEN.into(), self.access_token.clone().into());
        put_string(&mut map, REFRESH_TOKEN, self.refresh_token.as_deref());
        put_string(&mut map, TOKEN_TYPE, self.token_type.as_deref());
        put_string(&mut map, RESOURCE_URL, self.resource_url.as_deref());
        put_time(&mut map, EXPIRED, self.expired)?;
        put_time(&mut map, LAST_REFRESH, self.last_refresh)?;
        for (key, value) in &self.extra {
            if !KNOWN_KEYS.contains(&key.as_str()) {
                map.insert(key.clone(), value.clone());
            }
        }
        Ok(map)
    }

    /// Pretty JSON for a token file, ending in a newline.
    pub fn to_json_pretty(&self) -> Result<Vec<u8>, BadFileReason> {
        let map = self.to_map()?;
        let mut bytes = serde_json::to_vec_pretty(&map)
            .map_err(|_| BadFileReason::InvalidJson("the record could not be encoded".into()))?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}

impl fmt::Debug for TokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let extra_keys: Vec<&str> = self.extra.keys().map(String::as_str).collect();
        f.debug_struct("TokenRecord")
            .field("provider", &self.provider)
            .field("email", &self.email)
            .field("access_token", &Redacted::of(&self.access_token))
            .field(
                "refresh_token",
                &self.refresh_token.as_deref().map(Redacted::of),
            )
            .field("token_type", &self.token_type)
            .field("resource_url", &self.resource_url)
            .field("expired", &self.expired)
            .field("last_refresh", &self.last_refresh)
            .field("extra_keys", &extra_keys)
            .finish()
    }
}

/// Debug stand-in for a secret: shows only whether it is empty.
struct Redacted {
    empty: bool,
}

impl Redacted {
    fn of(secret: &str) -> Redacted {
        Redacted {
            empty: secret.is_empty(),
        }
    }
}

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.empty { "\"\"" } else { "\"<redacted>\"" })
    }
}

fn check_provider(provider: &str) -> Result<(), BadFileReason> {
    if provider.is_empty() {
        return Err(BadFileReason::MissingType);
    }
    if KNOWN_PROVIDERS.contains(&provider) {
        return Ok(());
    }
    Err(BadFileReason::UnknownType(
        provider.chars().take(MAX_QUOTED_TYPE).collect(),
    ))
}

/// Parses bytes as a JSON object, describing failures by position only.
pub(crate) fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, BadFileReason> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(BadFileReason::InvalidJson(
            "the top level is not a JSON object".into(),
        )),
        Err(error) => Err(BadFileReason::InvalidJson(describe_json_error(&error))),
    }
}

/// serde_json's syntax and end-of-file messages are fixed texts plus a
/// position; any other category could quote a value, so it gets a generic text.
fn describe_json_error(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match error.classify() {
        Category::Syntax | Category::Eof => error.to_string(),
        Category::Io | Category::Data => format!(
            "unexpected content at line {} column {}",
            error.line(),
            error.column()
        ),
    }
}

/// Removes `key`; null, missing and `""` all mean absent.
pub(crate) fn take_string(
    map: &mut Map<String, Value>,
    key: &'static str,
) -> Result<Option<String>, BadFileReason> {
    match map.shift_remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(BadFileReason::InvalidField {
            field: key,
            expected: "a string",
        }),
    }
}

fn take_time(
    map: &mut Map<String, Value>,
    key: &'static str,
) -> Result<Option<OffsetDateTime>, BadFileReason> {
    take_string(map, key)?
        .map(|s| {
            OffsetDateTime::parse(&s, &Rfc3339).map_err(|_| BadFileReason::InvalidField {
                field: key,
                expected: "an RFC 3339 time",
            })
        })
        .transpose()
}

fn put_string(map: &mut Map<String, Value>, key: &str, value: Option<&str>) {
    if let Some(value) = value {
        map.insert(key.into(), value.into());
    }
}

fn put_time(
    map: &mut Map<String, Value>,
    key: &'static str,
    value: Option<OffsetDateTime>,
) -> Result<(), BadFileReason> {
    if let Some(value) = value {
        let text = value
            .format(&Rfc3339)
            .map_err(|_| BadFileReason::InvalidField {
                field: key,
                expected: "a time in years 0 to 9999 with a whole-minute UTC offset",
            })?;
        map.insert(key.into(), text.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn record() -> TokenRecord {
        let mut r = TokenRecord::new(QWEN, "access-secret-123");
        r.refresh_token = Some("refresh-secret-456".into());
        r.email = Some("a@b.com".into());
        r.extra.insert("id_token".into(), "extra-secret-789".into());
        r
    }

    #[test]
    fn debug_hides_tokens() {
        let text = format!("{:?}", record());
        assert!(!text.contains("access-secret-123"), "{text}");
        assert!(!text.contains("refresh-secret-456"), "{text}");
        assert!(!text.contains("extra-secret-789"), "{text}");
        assert!(text.contains("access_token: \"<redacted>\""), "{text}");
        assert!(text.contains("a@b.com"), "{text}");
        assert!(text.contains("id_token"), "{text}");
        let pretty = format!("{:#?}", record());
        assert!(!pretty.contains("secret"), "{pretty}");
    }

    #[test]
    fn expiry() {
        let now = datetime!(2025-01-01 12:00 UTC);
        let mut r = record();
        assert!(!r.is_expired_at(now), "no expiry means usable");
        r.expired = Some(datetime!(2025-01-01 12:00:01 UTC));
        assert!(!r.is_expired_at(now));
        r.expired = Some(now);
        assert!(r.is_expired_at(now));
        r.expired = Some(datetime!(2025-01-01 13:00 +02:00));
        assert!(r.is_expired_at(now), "offsets are compared as instants");
        r.expired = None;
        r.access_token.clear();
        assert!(
            r.is_expired_at(now),
            "no access token is as good as expired"
        );
    }

    /// The extremes RFC 3339 allows, some of them a year out of range once taken to UTC, go
    /// through everything callers do with a record's times without a panic.
    #[test]
    fn extreme_times_never_panic() {
        let now = OffsetDateTime::now_utc();
        for (text, past) in [
            ("9999-12-31T23:59:59.999999999-23:59", false),
            ("9999-12-31T23:59:59Z", false),
            ("0000-01-01T00:00:00+23:59", true),
            ("0000-01-01T00:00:00Z", true),
        ] {
            let json = format!(
                r#"{{"type":"qwen","access_token":"a","expired":"{text}","last_refresh":"{text}"}}"#
            );
            let record = TokenRecord::from_json(json.as_bytes()).expect(text);
            let expired = record.expired.expect(text);
            assert_eq!(record.is_expired_at(now), past, "{text}");
            assert_eq!(expired < now, past, "{text}");
            let _ = expired - now;
            let _ = std::time::SystemTime::from(expired);
            let again = TokenRecord::from_json(&record.to_json_pretty().expect(text)).expect(text);
            assert_eq!(again, record, "{text}");
        }
    }

    #[test]
    fn round_trip_keeps_unknown_keys_in_order() {
        let json = br#"{"zeta":1,"type":"qwen","alpha":{"x":[1,2]},"access_token":"t","mid":null}"#;
        let r = TokenRecord::from_json(json).expect("valid");
        let keys: Vec<&str> = r.extra.keys().map(String::as_str).collect();
        assert_eq!(keys, ["zeta", "alpha", "mid"]);
        let again = TokenRecord::from_json(&r.to_json_pretty().expect("encodes")).expect("valid");
        assert_eq!(again, r);
    }

    #[test]
    fn empty_strings_are_absent() {
        let json = br#"{"type":"qwen","access_token":"","refresh_token":"r","email":"","expired":"","last_refresh":"","resource_url":""}"#;
        let r = TokenRecord::from_json(json).expect("valid");
        assert_eq!(r.email, None);
        assert_eq!(r.expired, None);
        assert_eq!(r.last_refresh, None);
        assert_eq!(r.resource_url, None);
        assert!(r.access_token.is_empty());
    }

    #[test]
    fn validity() {
        assert_eq!(
            TokenRecord::from_json(br#"{"access_token":"t"}"#),
            Err(BadFileReason::MissingType)
        );
        assert_eq!(
            TokenRecord::from_json(br#"{"type":"gemini","access_token":"t"}"#),
            Err(BadFileReason::UnknownType("gemini".into()))
        );
        assert_eq!(
            TokenRecord::from_json(br#"{"type":"qwen","access_token":"","refresh_token":""}"#),
            Err(BadFileReason::MissingToken)
        );
        assert_eq!(
            TokenRecord::from_json(br#"{"type":"qwen","access_token":7}"#),
            Err(BadFileReason::InvalidField {
                field: "access_token",
                expected: "a string"
            })
        );
        assert!(matches!(
            TokenRecord::from_json(br#"{"type":"qwen","access_token":"t","expired":"tomorrow"}"#),
            Err(BadFileReason::InvalidField {
                field: "expired",
                ..
            })
        ));
        assert!(matches!(
            TokenRecord::from_json(b"[1]"),
            Err(BadFileReason::InvalidJson(_))
        ));
    }

    #[test]
    fn json_errors_do_not_quote_content() {
        let Err(BadFileReason::InvalidJson(message)) =
            TokenRecord::from_json(br#"{"type":"qwen","access_token":"secret-xyz" "#)
        else {
            panic!("expected invalid JSON");
        };
        assert!(!message.contains("secret-xyz"), "{message}");
        assert!(message.contains("line 1"), "{message}");
    }

    #[test]
    fn map_round_trip_matches_the_file_format() {
        let r = record();
        let map = r.to_map().expect("encodes");
        assert_eq!(map["type"], "qwen");
        assert_eq!(map["id_token"], "extra-secret-789");
        assert_eq!(TokenRecord::from_map(map).expect("decodes"), r);
    }

    #[test]
    fn extra_cannot_shadow_known_keys() {
        let mut r = record();
        r.extra.insert("type".into(), "other".into());
        r.extra.insert("access_token".into(), "shadow".into());
        let map = r.to_map().expect("encodes");
        assert_eq!(map["type"], "qwen");
        assert_eq!(map["access_token"], "access-secret-123");
    }
}
