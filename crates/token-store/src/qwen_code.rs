//! Import of Qwen Code's own credentials (`~/.qwen/oauth_creds.json`), so a
//! user already logged in there need not log in again.

use std::path::{Path, PathBuf};

use serde_json::Value;
use time::OffsetDateTime;
use time::macros::datetime;

use crate::bad_file::{BadFile, BadFileReason};
use crate::error::{Operation, StoreError};
use crate::read::read_limited;
use crate::record::{QWEN, TokenRecord, parse_object, take_string};

const NANOS_PER_MILLI: i128 = 1_000_000;

/// Where Qwen Code keeps its credentials: `$HOME/.qwen/oauth_creds.json`.
/// `None` when `HOME` is unset or empty.
pub fn default_qwen_code_creds_path() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(|home| PathBuf::from(home).join(".qwen").join("oauth_creds.json"))
}

/// Reads Qwen Code's credentials file (`access_token`, `token_type`,
/// `refresh_token`, `resource_url`, `expiry_date` in epoch milliseconds)
/// into a record with provider `qwen` and no email. Other keys are not
/// imported. The caller asks for the email, then calls
/// [`crate::AuthDir::save_login`].
pub fn read_qwen_code_creds(path: &Path) -> Result<TokenRecord, StoreError> {
    let bytes = read_limited(path)
        .map_err(|error| StoreError::io(Operation::ReadQwenCodeCreds, path, error))?;
    parse(&bytes).map_err(|reason| {
        StoreError::InvalidQwenCodeCreds(BadFile {
            path: path.to_path_buf(),
            reason,
        })
    })
}

fn parse(bytes: &[u8]) -> Result<TokenRecord, BadFileReason> {
    let mut map = parse_object(bytes)?;
    let mut record = TokenRecord::new(
        QWEN,
        take_string(&mut map, "access_token")?.unwrap_or_default(),
    );
    record.refresh_token = take_string(&mut map, "refresh_token")?;
    record.token_type = take_string(&mut map, "token_type")?;
    record.resource_url = take_string(&mut map, "resource_url")?;
    record.expired = expiry(map.get("expiry_date"))?;
    record.validate()?;
    Ok(record)
}

/// `expiry_date` (epoch milliseconds, integer or float) as a time. A number past what a
/// token file can hold (RFC 3339: years 0000 to 9999) is taken as the nearest end of that range:
/// Qwen Code computes the field from the server's `expires_in`, which can be absurd, and the
/// refresh token is still good. The importer clamps a far future to a sane lifetime.
fn expiry(value: Option<&Value>) -> Result<Option<OffsetDateTime>, BadFileReason> {
    let invalid = BadFileReason::InvalidField {
        field: "expiry_date",
        expected: "a time in epoch milliseconds",
    };
    let earliest = datetime!(0000-01-01 00:00 UTC);
    let latest = datetime!(9999-12-31 23:59:59.999 UTC);
    let millis = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(millis), _) => i128::from(millis),
            // `as` saturates, and the clamp below takes over from there.
            (None, Some(millis)) if millis.is_finite() => millis.round() as i128,
            _ => return Err(invalid),
        },
        Some(_) => return Err(invalid),
    };
    let bounds = (
        earliest.unix_timestamp_nanos() / NANOS_PER_MILLI,
        latest.unix_timestamp_nanos() / NANOS_PER_MILLI,
    );
    let millis = millis.clamp(bounds.0, bounds.1);
    OffsetDateTime::from_unix_timestamp_nanos(millis * NANOS_PER_MILLI)
        .map(Some)
        .map_err(|_| invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_milliseconds() {
        let record = parse(
            br#"{"access_token":"a","token_type":"Bearer","refresh_token":"r",
                "resource_url":"portal.qwen.ai","expiry_date":1755673445123,"id_token":"x"}"#,
        )
        .expect("valid");
        assert_eq!(record.expired, Some(datetime!(2025-08-20 07:04:05.123 UTC)));
        assert_eq!(record.provider, "qwen");
        assert_eq!(record.email, None);
        assert_eq!(record.token_type.as_deref(), Some("Bearer"));
        assert_eq!(record.resource_url.as_deref(), Some("portal.qwen.ai"));
        assert!(record.extra.is_empty());
    }

    #[test]
    fn float_and_missing_expiry() {
        let record =
            parse(br#"{"access_token":"a","expiry_date":1755673445123.0}"#).expect("valid");
        assert_eq!(record.expired, Some(datetime!(2025-08-20 07:04:05.123 UTC)));
        let record = parse(br#"{"refresh_token":"r"}"#).expect("valid");
        assert_eq!(record.expired, None);
    }

    #[test]
    fn rejects_bad_content() {
        assert_eq!(
            parse(br#"{"expiry_date":1}"#),
            Err(BadFileReason::MissingToken)
        );
        assert!(matches!(
            parse(br#"{"access_token":"a","expiry_date":"soon"}"#),
            Err(BadFileReason::InvalidField {
                field: "expiry_date",
                ..
            })
        ));
    }

    #[test]
    fn absurd_expiry_dates_are_held_to_what_a_token_file_can_store() {
        for (raw, expected) in [
            ("1e300", datetime!(9999-12-31 23:59:59.999 UTC)),
            ("10000000000000000", datetime!(9999-12-31 23:59:59.999 UTC)),
            (
                "18446744073709551615",
                datetime!(9999-12-31 23:59:59.999 UTC),
            ),
            ("-1e300", datetime!(0000-01-01 00:00 UTC)),
            ("-9223372036854775808", datetime!(0000-01-01 00:00 UTC)),
            ("-5", datetime!(1969-12-31 23:59:59.995 UTC)),
        ] {
            let json = format!(r#"{{"access_token":"a","refresh_token":"r","expiry_date":{raw}}}"#);
            let record = parse(json.as_bytes()).expect(raw);
            assert_eq!(record.expired, Some(expected), "{raw}");
            record.to_json_pretty().expect("storable");
        }
    }
}
