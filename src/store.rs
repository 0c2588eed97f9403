//! Opens the account store the settings name (the auth dir, or the shared PostgreSQL
//! database), and the two ends of `cliproxy store migrate`.

use account_store::{AccountStore, EncryptionKey, PgStore};
use token_store::AuthDir;

use crate::config::{Settings, StoreSettings};

/// Whether a command trusts or writes token files (`serve`, `login`, `import`), so an auth dir
/// others can write is refused (or warned about, see `strict-permissions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    TokenFiles,
    ReadOnly,
}

/// The store of `settings`: opens the auth dir (checking its permissions for `trust`), or
/// connects to the database and brings its schema up to date.
pub async fn open(settings: &Settings, trust: Trust) -> anyhow::Result<AccountStore> {
    match &settings.store {
        StoreSettings::Dir { .. } => {
            let dir = AuthDir::open(&settings.auth_dir)?;
            if trust == Trust::TokenFiles {
                crate::permissions::enforce_private_auth_dir(&dir, settings.strict_permissions)?;
            }
            Ok(AccountStore::Dir(dir))
        }
        StoreSettings::Postgres {
            url,
            encryption_key,
            max_connections,
        } => Ok(AccountStore::Postgres(
            open_postgres(url, encryption_key.as_deref(), *max_connections).await?,
        )),
    }
}

/// One end of `store migrate`: a `postgres://` (or `postgresql://`) URL, sealing tokens with
/// the settings' encryption key; anything else is an auth dir.
pub async fn open_end(spec: &str, settings: &Settings) -> anyhow::Result<AccountStore> {
    if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
        let (StoreSettings::Dir { encryption_key }
        | StoreSettings::Postgres { encryption_key, .. }) = &settings.store;
        return Ok(AccountStore::Postgres(
            open_postgres(spec, encryption_key.as_deref(), 2).await?,
        ));
    }
    let dir = AuthDir::open(crate::config::expand_home(spec))?;
    Ok(AccountStore::Dir(dir))
}

async fn open_postgres(
    url: &str,
    encryption_key: Option<&str>,
    max_connections: usize,
) -> anyhow::Result<PgStore> {
    let key = encryption_key.map(EncryptionKey::parse).transpose()?;
    Ok(PgStore::open(url, key, max_connections).await?)
}
