//! `accounts list`, `logout` and `import`: the saved accounts as the user manages them.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use account_runtime::status::{self, CredentialKind, LiveCredential, LiveState};
use account_store::{AccountStore, Problem, Stored};
use time::OffsetDateTime;

use crate::email::{EmailFor, validate_email};
use crate::error::CliError;
use crate::output::{format_relative, render_table};
use crate::prompt::prompt_email;

/// What `accounts list` says of a credential a running server reports.
fn live_status(live: &LiveCredential, now: OffsetDateTime) -> String {
    let at = |unix: i64| {
        OffsetDateTime::from_unix_timestamp(unix)
            .map(|moment| format_relative(moment, now))
            .unwrap_or_else(|_| "?".to_owned())
    };
    match &live.state {
        LiveState::Ok => "ok".to_owned(),
        LiveState::TokenNotSaved { reason } => format!("token not saved: {reason}"),
        LiveState::ReloginRequired => "re-login required".to_owned(),
        LiveState::Disabled { reason } => format!("disabled: {reason}"),
        LiveState::Refused {
            status,
            since,
            next_probe,
        } => format!(
            "refused since {}: the upstream answered {status}; next probe {}",
            at(*since),
            at(*next_probe)
        ),
        LiveState::Exhausted { until } => format!("exhausted until {}", at(*until)),
        LiveState::Capped { used, cap, until } => {
            format!("capped {used}/{cap}, a slot frees {}", at(*until))
        }
        LiveState::Cooling { model, until } => {
            format!("cooling until {} ({model})", at(*until))
        }
    }
}

/// What `accounts list` says of an account no running server reports: what its file (or row)
/// says.
fn file_status(account: &Stored, now: OffsetDateTime) -> String {
    let record = &account.record;
    if record.status() == Some(token_store::STATUS_RELOGIN_REQUIRED) {
        return "re-login required".to_owned();
    }
    if record.is_disabled() {
        return "disabled".to_owned();
    }
    let has_refresh = record
        .refresh_token
        .as_deref()
        .is_some_and(|t| !t.is_empty());
    match (record.is_expired_at(now), has_refresh) {
        (false, _) => "ok",
        (true, true) => "expired (refreshed by the server)",
        (true, false) => "expired: log in again",
    }
    .to_owned()
}

/// The routing columns of a credential a server reports: weight, priority, group, requests in
/// the current minute.
fn routing_cells(live: Option<&LiveCredential>) -> [String; 4] {
    let Some(live) = live else {
        return [
            "-".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
        ];
    };
    [
        live.weight.to_string(),
        live.priority.to_string(),
        live.group.clone().unwrap_or_else(|| "-".to_owned()),
        live.requests_per_minute.map_or_else(
            || "-".to_owned(),
            |cap| format!("{}/{cap}", live.requests_in_window),
        ),
    ]
}

/// Renders the credential table: every account (with what a running server knows of it),
/// then the API keys a running server reports, then one line per file or row that could not
/// be loaded. `live` holds what running servers report, by pool key; `no_server` is the note
/// shown when none does.
pub fn render_account_table(
    accounts: &[Stored],
    problems: &[Problem],
    live: &HashMap<String, LiveCredential>,
    now: OffsetDateTime,
    no_server: &str,
) -> String {
    const COLUMNS: usize = 9;
    let mut rows: Vec<[String; COLUMNS]> = vec![
        [
            "NAME",
            "STATUS",
            "WEIGHT",
            "PRIORITY",
            "GROUP",
            "WINDOW",
            "EXPIRES",
            "LAST REFRESH",
            "FILE",
        ]
        .map(str::to_owned),
    ];
    for account in accounts {
        let record = &account.record;
        let file = account.place();
        let reported = live.get(account.key.as_str());
        let [weight, priority, group, window] = routing_cells(reported);
        rows.push([
            record
                .email
                .clone()
                .unwrap_or_else(|| "(no email)".to_owned()),
            reported.map_or_else(|| file_status(account, now), |live| live_status(live, now)),
            weight,
            priority,
            group,
            window,
            record
                .expired
                .map(|at| format_relative(at, now))
                .unwrap_or_else(|| "unknown".to_owned()),
            record
                .last_refresh
                .map(|at| format_relative(at, now))
                .unwrap_or_else(|| "never".to_owned()),
            file,
        ]);
    }
    let mut keys: Vec<&LiveCredential> = live
        .values()
        .filter(|live| live.kind == CredentialKind::ApiKey)
        .collect();
    keys.sort_by(|a, b| a.label.cmp(&b.label));
    for key in keys {
        let [weight, priority, group, window] = routing_cells(Some(key));
        rows.push([
            key.label.clone(),
            live_status(key, now),
            weight,
            priority,
            group,
            window,
            "-".to_owned(),
            "-".to_owned(),
            "(config)".to_owned(),
        ]);
    }
    let mut table = render_table(&rows, &[]);
    if live.is_empty() {
        table.push_str(no_server);
    }
    for problem in problems {
        let _ = writeln!(table, "skipped {problem}");
    }
    table
}

/// The note of `accounts list` when no server on this machine reports live states.
fn no_server_note(store: &AccountStore) -> &'static str {
    match store {
        AccountStore::Dir(_) => {
            "(no server runs on this auth dir: states are the files'; start `cliproxy serve` for live states and API keys)\n"
        }
        AccountStore::Postgres(_) => {
            "(no server runs here on this auth dir: states are the store's; start `cliproxy serve` for live states and API keys)\n"
        }
    }
}

/// `cliproxy accounts list`: the store's accounts, with what servers running on the auth dir
/// (which holds their status sockets) report.
pub async fn list_accounts(store: &AccountStore, auth_dir: &Path) -> Result<String, CliError> {
    let listing = store.list().await?;
    if listing.accounts.is_empty() && listing.problems.is_empty() {
        return Ok(format!(
            "No accounts in {}. Add one with `cliproxy login qwen`.\n",
            store.describe()
        ));
    }
    let live = status::query(auth_dir);
    let mut out = render_account_table(
        &listing.accounts,
        &listing.problems,
        &live,
        OffsetDateTime::now_utc(),
        no_server_note(store),
    );
    for path in &listing.tightened {
        let _ = writeln!(
            out,
            "tightened {} to mode 0600 (it was readable by others)",
            path.display()
        );
    }
    Ok(out)
}

/// `cliproxy logout EMAIL`: removes the account's files (or row), returning them.
pub async fn logout(store: &AccountStore, email: &str) -> Result<Vec<String>, CliError> {
    let removed = store.remove_account(email).await?;
    if removed.is_empty() {
        return Err(CliError::AccountNotFound {
            email: email.to_owned(),
            place: store.describe(),
        });
    }
    Ok(removed)
}

/// `cliproxy accounts disable|enable NAME`: takes a credential out of rotation (`disabled`)
/// or puts it back, in the store, where running servers pick it up: an account (NAME is its
/// email) in its token file or row, an API key (NAME is its label: one of `api_keys`, from the
/// config, or one a server running on `auth_dir` reports) in the store's list. Returns what
/// to tell the user.
pub async fn set_disabled(
    store: &AccountStore,
    auth_dir: &Path,
    name: &str,
    disabled: bool,
    api_keys: &[String],
) -> Result<String, CliError> {
    let mut known: Vec<String> = api_keys.to_vec();
    known.extend(
        status::query(auth_dir)
            .into_values()
            .filter(|live| live.kind == CredentialKind::ApiKey)
            .map(|live| live.label),
    );
    known.sort();
    known.dedup();
    let (what, changed) = if known.iter().any(|label| label == name) {
        (
            "API key",
            store.set_credential_disabled(name, disabled).await?,
        )
    } else if name.contains('@') {
        let found = store.set_account_disabled(name, disabled).await?;
        if found == 0 {
            return Err(CliError::AccountNotFound {
                email: name.to_owned(),
                place: store.describe(),
            });
        }
        ("account", true)
    } else {
        return Err(CliError::CredentialNotFound {
            name: name.to_owned(),
            known,
        });
    };
    let (done, place) = if disabled {
        ("Disabled", "takes it out of rotation")
    } else {
        ("Enabled", "puts it back into rotation")
    };
    Ok(if changed {
        format!("{done} {what} {name}; a running server {place} within a second.")
    } else {
        format!("{what} {name} already was {}.", done.to_lowercase())
    })
}

/// An imported account.
#[derive(Debug)]
pub struct Imported {
    pub email: String,
    /// The new token file (or row).
    pub saved_to: String,
    /// The account's older files (or row) that the new one replaced.
    pub replaced: Vec<String>,
}

/// Qwen Code's `expiry_date`, held to the longest lifetime a token answer may give
/// ([`auth_core::TokenSet::MAX_LIFETIME`]) from `now`: Qwen Code computed it from the server's
/// `expires_in`, which can be absurd, and a far-future expiry would keep the server from ever
/// refreshing the token ahead of time. A lowered expiry is logged.
fn imported_expiry(at: OffsetDateTime, now: OffsetDateTime) -> OffsetDateTime {
    let latest = now + auth_core::TokenSet::MAX_LIFETIME;
    if at <= latest {
        return at;
    }
    tracing::warn!(
        "Qwen Code's expiry_date ({at}) is further away than an access token lives; taking the \
         token to expire in {} s",
        auth_core::TokenSet::MAX_LIFETIME.as_secs()
    );
    latest
}

/// `cliproxy import qwen-code [PATH]`: saves Qwen Code's login as a cliproxy account.
pub async fn import_qwen_code(
    store: &AccountStore,
    source: Option<PathBuf>,
    email: Option<&str>,
) -> Result<Imported, CliError> {
    let source = source
        .or_else(token_store::default_qwen_code_creds_path)
        .ok_or_else(|| CliError::ImportSourceMissing {
            path: PathBuf::from("~/.qwen/oauth_creds.json"),
        })?;
    if !source.is_file() {
        return Err(CliError::ImportSourceMissing { path: source });
    }
    let mut record = token_store::read_qwen_code_creds(&source)?;
    let email = match email {
        Some(given) => validate_email(given).map_err(|problem| CliError::InvalidEmail {
            problem,
            purpose: EmailFor::Import,
        })?,
        None => {
            let stdin = std::io::stdin();
            prompt_email(&mut stdin.lock(), &mut std::io::stderr(), EmailFor::Import)?
        }
    };
    record.email = Some(email.clone());
    let now = OffsetDateTime::now_utc();
    record.expired = record.expired.map(|at| imported_expiry(at, now));
    let saved = store.save_login(&record, now).await?;
    Ok(Imported {
        email,
        saved_to: saved.saved_to,
        replaced: saved.replaced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

    #[test]
    fn imported_expiries_are_held_to_a_tokens_longest_life() {
        let soon = datetime!(2026-03-01 14:00 UTC);
        assert_eq!(imported_expiry(soon, NOW), soon);
        let past = datetime!(2020-01-01 00:00 UTC);
        assert_eq!(
            imported_expiry(past, NOW),
            past,
            "an expired token stays expired"
        );
        let latest = NOW + auth_core::TokenSet::MAX_LIFETIME;
        assert_eq!(imported_expiry(latest, NOW), latest);
        for absurd in [
            datetime!(2100-01-01 00:00 UTC),
            datetime!(9999-12-31 23:59:59.999 -23:59),
        ] {
            assert_eq!(imported_expiry(absurd, NOW), latest, "{absurd}");
        }
    }

    /// Times at the ends of what a token file can hold are shown, not panicked on.
    #[test]
    fn the_table_shows_any_storable_time() {
        let mut accounts = Vec::new();
        for (name, at) in [
            ("late", datetime!(9999-12-31 23:59:59.999999999 -23:59)),
            ("early", datetime!(0000-01-01 00:00 +23:59)),
        ] {
            let mut record = token_store::TokenRecord::new(token_store::QWEN, "t");
            record.email = Some(format!("{name}@example.com"));
            record.expired = Some(at);
            record.last_refresh = Some(at);
            accounts.push(Stored::from_file(token_store::StoredAccount {
                path: PathBuf::from(format!("/auth/qwen-{name}@example.com.json")),
                record,
            }));
        }
        let table = render_account_table(&accounts, &[], &HashMap::new(), NOW, "");
        let late = table.lines().find(|l| l.contains("late@")).expect(&table);
        assert!(late.contains(" ok"), "{table}");
        assert!(late.contains("in "), "{table}");
        let early = table.lines().find(|l| l.contains("early@")).expect(&table);
        assert!(early.contains("ago"), "{table}");
        assert!(early.contains("expired"), "{table}");
    }
}
