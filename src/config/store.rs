//! `[store]`: where accounts live. The auth dir (`kind = "dir"`, the default), or a PostgreSQL
//! database several servers share (`kind = "postgres"` with `url`, or just `CLIPROXY_STORE_URL`).

use std::fmt;

use account_store::postgres::DEFAULT_MAX_CONNECTIONS;
use proxy_server::redact_url;
use serde::Deserialize;

use super::env::{env_parsed, env_value};

/// `[store]` as written. `Debug` hides the URL's password and the encryption key.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StoreSection {
    pub kind: Option<String>,
    pub url: Option<String>,
    pub encryption_key: Option<String>,
    pub max_connections: Option<usize>,
}

impl fmt::Debug for StoreSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreSection")
            .field("kind", &self.kind)
            .field("url", &self.url.as_deref().map(redact_url))
            .field(
                "encryption_key",
                &self.encryption_key.as_ref().map(|_| "<set>"),
            )
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// Where accounts live, resolved. `Debug` hides the URL's password and the encryption key.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreSettings {
    /// Token files in the auth dir. The encryption key, when set, seals the tokens that
    /// `cliproxy store migrate` writes into a database.
    Dir { encryption_key: Option<String> },
    /// A PostgreSQL database.
    Postgres {
        url: String,
        /// Seals the token columns when set (32 bytes, base64 or hex).
        encryption_key: Option<String>,
        max_connections: usize,
    },
}

impl fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSettings::Dir { encryption_key } => f
                .debug_struct("Dir")
                .field("encryption_key", &encryption_key.as_ref().map(|_| "<set>"))
                .finish(),
            StoreSettings::Postgres {
                url,
                encryption_key,
                max_connections,
            } => f
                .debug_struct("Postgres")
                .field("url", &redact_url(url))
                .field("encryption_key", &encryption_key.as_ref().map(|_| "<set>"))
                .field("max_connections", max_connections)
                .finish(),
        }
    }
}

impl StoreSettings {
    /// Environment (`CLIPROXY_STORE_KIND`, `CLIPROXY_STORE_URL`,
    /// `CLIPROXY_STORE_ENCRYPTION_KEY`, `CLIPROXY_STORE_MAX_CONNECTIONS`) over `[store]`.
    pub(super) fn resolve(file: StoreSection) -> anyhow::Result<StoreSettings> {
        let max_connections = env_parsed::<usize>(
            "CLIPROXY_STORE_MAX_CONNECTIONS",
            "a whole number of connections such as 8",
        )?
        .or(file.max_connections);
        StoreSettings::from_parts(StoreSection {
            kind: env_value("CLIPROXY_STORE_KIND").or(file.kind),
            url: env_value("CLIPROXY_STORE_URL").or(file.url),
            encryption_key: env_value("CLIPROXY_STORE_ENCRYPTION_KEY").or(file.encryption_key),
            max_connections,
        })
    }

    /// The settings from values already merged: a URL alone means PostgreSQL.
    pub(super) fn from_parts(merged: StoreSection) -> anyhow::Result<StoreSettings> {
        let kind = merged
            .kind
            .as_deref()
            .map(str::trim)
            .unwrap_or(if merged.url.is_some() {
                "postgres"
            } else {
                "dir"
            });
        match kind {
            "dir" => {
                anyhow::ensure!(
                    merged.url.is_none(),
                    "store.kind is \"dir\" but a store URL is set (store.url or CLIPROXY_STORE_URL): remove the URL, or set kind = \"postgres\""
                );
                Ok(StoreSettings::Dir {
                    encryption_key: merged.encryption_key,
                })
            }
            "postgres" => {
                let url = merged.url.filter(|url| !url.trim().is_empty()).ok_or_else(|| {
                    anyhow::anyhow!(
                        "store.kind is \"postgres\" but no URL is set: add url = \"postgres://USER:PASSWORD@HOST:5432/DATABASE\" to [store], or set CLIPROXY_STORE_URL"
                    )
                })?;
                let max_connections = merged.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
                anyhow::ensure!(
                    max_connections > 0,
                    "store.max-connections is 0: give at least 1 (the default is {DEFAULT_MAX_CONNECTIONS})"
                );
                Ok(StoreSettings::Postgres {
                    url,
                    encryption_key: merged.encryption_key,
                    max_connections,
                })
            }
            other => anyhow::bail!(
                "store.kind {other:?} is not known; use \"dir\" (token files in the auth dir, the default) or \"postgres\""
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(kind: Option<&str>, url: Option<&str>, key: Option<&str>) -> StoreSection {
        StoreSection {
            kind: kind.map(str::to_owned),
            url: url.map(str::to_owned),
            encryption_key: key.map(str::to_owned),
            max_connections: None,
        }
    }

    #[test]
    fn the_auth_dir_is_the_default_and_a_url_alone_means_postgres() {
        assert_eq!(
            StoreSettings::from_parts(parts(None, None, None)).unwrap(),
            StoreSettings::Dir {
                encryption_key: None
            }
        );
        assert_eq!(
            StoreSettings::from_parts(parts(None, Some("postgres://h/db"), Some("k"))).unwrap(),
            StoreSettings::Postgres {
                url: "postgres://h/db".to_owned(),
                encryption_key: Some("k".to_owned()),
                max_connections: DEFAULT_MAX_CONNECTIONS,
            }
        );
    }

    #[test]
    fn contradictions_and_unknown_kinds_are_refused_with_the_fix() {
        for (section, expected) in [
            (parts(Some("postgres"), None, None), "no URL is set"),
            (
                parts(Some("dir"), Some("postgres://h/db"), None),
                "remove the URL",
            ),
            (parts(Some("redis"), None, None), "is not known"),
        ] {
            let error = StoreSettings::from_parts(section).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn debug_hides_the_password_and_the_key() {
        let settings = StoreSettings::from_parts(parts(
            None,
            Some("postgres://u:hunter2@h/db"),
            Some("secret-key"),
        ))
        .unwrap();
        let shown = format!("{settings:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("secret-key"),
            "{shown}"
        );
        let section = parts(None, Some("postgres://u:hunter2@h/db"), Some("secret-key"));
        let shown = format!("{section:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("secret-key"),
            "{shown}"
        );
    }
}
