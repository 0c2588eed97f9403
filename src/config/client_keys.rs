//! `[[client-keys]]`: named client keys as the file writes them, and how each becomes
//! proxy-server's [`ClientKeyConfig`]: its key reduced to a SHA-256 digest, its `credentials`
//! and `groups` to a pool [`Scope`].

use std::collections::HashSet;
use std::fmt;
use std::num::{NonZeroU32, NonZeroU64};

use credential_pool::Scope;
use proxy_server::ClientKeyConfig;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use token_store::AccountKey;

use super::openai_compat::OpenAiCompatEntry;

/// One `[[client-keys]]` entry. `Debug` shows its name, never its key.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClientKeyEntry {
    pub name: String,
    /// The key itself.
    pub key: Option<String>,
    /// Or only its SHA-256, in hex (`printf %s KEY | sha256sum`).
    pub key_sha256: Option<String>,
    /// Models it may use (exact names or `*` globs); missing: all.
    #[serde(default)]
    pub models: Vec<String>,
    /// Credentials it may use: account emails, `[[openai-compat]]` names (all their keys) or
    /// key labels such as `dashscope#2`.
    #[serde(default)]
    pub credentials: Vec<String>,
    /// Groups of credentials it may use (`group` of `[[openai-compat]]` and `[accounts]`).
    #[serde(default)]
    pub groups: Vec<String>,
    pub requests_per_minute: Option<NonZeroU32>,
    pub tokens_per_day: Option<NonZeroU64>,
}

impl fmt::Debug for ClientKeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKeyEntry")
            .field("name", &self.name)
            .field("models", &self.models)
            .field("credentials", &self.credentials)
            .field("groups", &self.groups)
            .field("requests_per_minute", &self.requests_per_minute)
            .field("tokens_per_day", &self.tokens_per_day)
            .finish_non_exhaustive()
    }
}

/// The entries as proxy-server takes them; `compat` are the `[[openai-compat]]` upstreams their
/// `credentials` may name.
pub fn resolve(
    entries: &[ClientKeyEntry],
    compat: &[OpenAiCompatEntry],
) -> anyhow::Result<Vec<ClientKeyConfig>> {
    let mut names = HashSet::new();
    entries
        .iter()
        .map(|entry| {
            let name = entry.name.trim();
            anyhow::ensure!(
                !name.is_empty(),
                "a [[client-keys]] entry has an empty name; give it one, such as name = \"alice\" (logs and usage show it)"
            );
            anyhow::ensure!(
                names.insert(name),
                "[[client-keys]] {name:?} appears more than once; give each client key its own name"
            );
            Ok(ClientKeyConfig {
                name: name.to_owned(),
                key_sha256: digest(entry, name)?,
                models: entry.models.clone(),
                scope: scope(entry, name, compat)?,
                requests_per_minute: entry.requests_per_minute,
                tokens_per_day: entry.tokens_per_day,
            })
        })
        .collect()
}

/// The entry's key as a SHA-256 digest: of `key`, or `key-sha256` decoded.
fn digest(entry: &ClientKeyEntry, name: &str) -> anyhow::Result<[u8; 32]> {
    match (entry.key.as_deref(), entry.key_sha256.as_deref()) {
        (Some(key), None) => {
            let key = key.trim();
            anyhow::ensure!(
                !key.is_empty(),
                "[[client-keys]] {name:?} has an empty key; set key to a long random string (`openssl rand -hex 32` makes one)"
            );
            Ok(Sha256::digest(key.as_bytes()).into())
        }
        (None, Some(hex)) => decode_sha256(hex.trim()).ok_or_else(|| {
            anyhow::anyhow!(
                "[[client-keys]] {name:?}: key-sha256 is not 64 hexadecimal digits; write the output of `printf %s KEY | sha256sum`"
            )
        }),
        (Some(_), Some(_)) => anyhow::bail!(
            "[[client-keys]] {name:?} has both key and key-sha256; keep one of them"
        ),
        (None, None) => anyhow::bail!(
            "[[client-keys]] {name:?} has no key; add key = \"...\" or key-sha256 = \"...\""
        ),
    }
}

fn decode_sha256(hex: &str) -> Option<[u8; 32]> {
    let digits = hex.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut bytes = [0_u8; 32];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(text, 16).ok()?;
    }
    Some(bytes)
}

/// The credentials the entry may use; every credential when it names none.
fn scope(
    entry: &ClientKeyEntry,
    name: &str,
    compat: &[OpenAiCompatEntry],
) -> anyhow::Result<Scope> {
    if entry.credentials.is_empty() && entry.groups.is_empty() {
        return Ok(Scope::all());
    }
    let mut keys = Vec::new();
    for credential in &entry.credentials {
        let credential = credential.trim();
        if credential.contains('@') {
            keys.push(AccountKey::for_email("qwen", credential).as_str().into());
            continue;
        }
        let (upstream, index) = match credential.split_once('#') {
            Some((upstream, index)) => (upstream, Some(index)),
            None => (credential, None),
        };
        let Some(found) = compat.iter().find(|compat| compat.name == upstream) else {
            anyhow::bail!(
                "[[client-keys]] {name:?}: credentials names {credential:?}, which is neither an account email nor an [[openai-compat]] name; use an email, an upstream's name, or a key label such as \"{upstream}#1\""
            );
        };
        let count = found.api_keys.len();
        match index {
            None => {
                keys.extend((1..=count).map(|n| format!("openai-compat:{upstream}#{n}").into()))
            }
            Some(index) => {
                let valid = index
                    .parse::<usize>()
                    .is_ok_and(|n| (1..=count).contains(&n));
                anyhow::ensure!(
                    valid,
                    "[[client-keys]] {name:?}: credentials names {credential:?}, but [[openai-compat]] {upstream:?} has keys #1 to #{count}"
                );
                keys.push(format!("openai-compat:{credential}").into());
            }
        }
    }
    Ok(Scope {
        groups: entry
            .groups
            .iter()
            .map(|group| group.trim().into())
            .collect(),
        keys,
        everything: false,
    })
}
