//! `cliproxy store migrate`: copies every account and every disabled API key from one store
//! into another. The source is only read. Running it again changes nothing; an account the
//! destination refreshed after the source's copy is kept, since copying over it would bring
//! back a refresh token Qwen has rotated away.

use time::OffsetDateTime;

use crate::error::StoreError;
use crate::place::{Copied, Problem};
use crate::store::AccountStore;

/// What one migration did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// Accounts the destination did not have.
    pub added: Vec<String>,
    /// Accounts the destination had in an older or different version.
    pub updated: Vec<String>,
    /// Accounts the destination had exactly so.
    pub unchanged: Vec<String>,
    /// Accounts the destination had refreshed later: kept as they were.
    pub kept_newer: Vec<String>,
    /// Accounts of the source that cannot be used, left behind.
    pub skipped: Vec<Problem>,
    /// Disabled API keys added to the destination's list.
    pub disabled_keys_added: usize,
}

/// Copies the accounts and disabled API keys of `from` into `to`.
pub async fn migrate(
    from: &AccountStore,
    to: &AccountStore,
    now: OffsetDateTime,
) -> Result<Migrated, StoreError> {
    let listing = from.list().await?;
    let mut migrated = Migrated {
        skipped: listing.problems,
        ..Migrated::default()
    };
    for stored in &listing.accounts {
        let name = stored
            .record
            .email
            .clone()
            .unwrap_or_else(|| stored.key.to_string());
        let bucket = match to.copy_in(stored, now).await? {
            Copied::Added => &mut migrated.added,
            Copied::Updated => &mut migrated.updated,
            Copied::Unchanged => &mut migrated.unchanged,
            Copied::KeptNewer => &mut migrated.kept_newer,
        };
        bucket.push(name);
    }
    for label in from.disabled_credentials().await? {
        if to.set_credential_disabled(&label, true).await? {
            migrated.disabled_keys_added += 1;
        }
    }
    Ok(migrated)
}
