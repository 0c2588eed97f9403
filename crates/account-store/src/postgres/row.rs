//! One account as a row of `cliproxy_accounts`: the token file's JSON object split into
//! columns (provider, email, the two tokens, everything else as `fields`), and back.

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use token_store::{AccountKey, TokenRecord};
use tokio_postgres::Row;

use super::seal::{self, EncryptionKey};
use crate::error::StoreError;

/// The columns every read selects, in the order [`record_of`] reads them.
pub(crate) const COLUMNS: &str = "key, provider, email, access_token, refresh_token, fields::text";

/// The columns of one account, ready to write.
pub(crate) struct RowValues {
    pub(crate) key: String,
    pub(crate) provider: String,
    pub(crate) email: Option<String>,
    pub(crate) access_token: String,
    pub(crate) refresh_token: Option<String>,
    /// JSON text of the other keys, in order.
    pub(crate) fields: String,
    /// RFC 3339 expiry, when known.
    pub(crate) expires_at: Option<String>,
}

/// The account key a row of `record` is kept under: `qwen-<email>`, or `fallback` (the key it
/// had in the store it came from) for an account without an email.
pub(crate) fn key_of(record: &TokenRecord, fallback: &AccountKey) -> AccountKey {
    match record.email.as_deref().filter(|email| !email.is_empty()) {
        Some(email) => AccountKey::for_email(&record.provider, email),
        None => fallback.clone(),
    }
}

/// The columns of `record`, kept as account `key`, its tokens sealed when there is a `seal` key.
pub(crate) fn values_of(
    record: &TokenRecord,
    key: &AccountKey,
    seal_key: Option<&EncryptionKey>,
) -> Result<RowValues, StoreError> {
    record.validate().map_err(StoreError::InvalidRecord)?;
    let mut map = record.to_map().map_err(StoreError::InvalidRecord)?;
    for known in ["type", "email", "access_token", "refresh_token"] {
        map.shift_remove(known);
    }
    let fields = serde_json::to_string(&map)
        .map_err(|_| StoreError::Seal("the account's fields could not be encoded".to_owned()))?;
    let sealed = |column: &str, value: &str| match seal_key {
        Some(seal_key) if !value.is_empty() => seal_key.seal(key.as_str(), column, value),
        _ => Ok(value.to_owned()),
    };
    Ok(RowValues {
        key: key.to_string(),
        provider: record.provider.clone(),
        email: record.email.clone(),
        access_token: sealed("access_token", &record.access_token)?,
        refresh_token: record
            .refresh_token
            .as_deref()
            .map(|token| sealed("refresh_token", token))
            .transpose()?,
        fields,
        expires_at: record.expired.and_then(|at| at.format(&Rfc3339).ok()),
    })
}

/// The account key of a row selected with [`COLUMNS`].
pub(crate) fn key_column(row: &Row) -> AccountKey {
    AccountKey::from_stored(row.get::<_, String>(0))
}

/// The record of a row selected with [`COLUMNS`]; the error says why it cannot be used.
pub(crate) fn record_of(
    row: &Row,
    seal_key: Option<&EncryptionKey>,
) -> Result<TokenRecord, String> {
    let key: String = row.get(0);
    let provider: String = row.get(1);
    let email: Option<String> = row.get(2);
    let access_token = seal::open(seal_key, &key, "access_token", row.get(3))?;
    let refresh_token = row
        .get::<_, Option<String>>(4)
        .map(|token| seal::open(seal_key, &key, "refresh_token", token))
        .transpose()?;
    let fields: String = row.get(5);
    let fields: Map<String, Value> = match serde_json::from_str(&fields) {
        Ok(Value::Object(map)) => map,
        _ => return Err("its fields are not a JSON object".to_owned()),
    };
    let mut map = Map::new();
    map.insert("type".into(), provider.into());
    if let Some(email) = email {
        map.insert("email".into(), email.into());
    }
    map.insert("access_token".into(), access_token.into());
    if let Some(refresh_token) = refresh_token {
        map.insert("refresh_token".into(), refresh_token.into());
    }
    for (name, value) in fields {
        map.entry(name).or_insert(value);
    }
    TokenRecord::from_map(map).map_err(|reason| reason.to_string())
}

/// Whether any token of a row selected with [`COLUMNS`] is sealed.
pub(crate) fn is_sealed(row: &Row) -> bool {
    seal::is_sealed(row.get::<_, &str>(3))
        || row.get::<_, Option<&str>>(4).is_some_and(seal::is_sealed)
}
