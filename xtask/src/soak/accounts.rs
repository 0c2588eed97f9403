//! The soak's accounts: the token files it writes, the accounts it expects
//! to exist, what the auth dir holds at the end, and which accounts were lost.
//!
//! An account is lost when the user would have to log it in again:
//! - its token file is marked `relogin-required` (the server saw its refresh
//!   token refused);
//! - the fake refused one of its refresh tokens as already spent: a client
//!   sent it again after a rotation, so the rotated pair never reached (or
//!   never stayed in) the file;
//! - after the server has shut down, its file holds a refresh token the fake
//!   no longer accepts (the next refresh would be refused);
//! - its file is gone although nobody logged it out.
//!
//! The fake names a refresh token's chain by its *root*, the refresh token
//! of the login it descends from. The soak records a token of every login
//! it makes, so a root leads back to an email.

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    path::Path,
};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::bench::fake_qwen::{DeadRefresh, Lookup};

/// The `cliproxy_status` value of an account whose refresh token was refused.
const RELOGIN_REQUIRED: &str = "relogin-required";

/// One account the soak made.
#[derive(Debug, Clone)]
pub(crate) struct Account {
    pub(crate) email: String,
    /// Refresh tokens the soak saw for it (one per login; later ones are
    /// descendants of these).
    pub(crate) seen: Vec<String>,
    /// False once logged out.
    pub(crate) active: bool,
}

/// Every account the soak made, in the order it made them.
#[derive(Debug, Default)]
pub(crate) struct Accounts {
    list: Vec<Account>,
}

impl Accounts {
    /// Records a login of `email` (new or again) with `refresh_token`.
    pub(crate) fn logged_in(&mut self, email: &str, refresh_token: String) {
        match self.list.iter_mut().find(|a| a.email == email) {
            Some(account) => {
                account.seen.push(refresh_token);
                account.active = true;
            }
            None => self.list.push(Account {
                email: email.to_owned(),
                seen: vec![refresh_token],
                active: true,
            }),
        }
    }

    pub(crate) fn logged_out(&mut self, email: &str) {
        if let Some(account) = self.list.iter_mut().find(|a| a.email == email) {
            account.active = false;
        }
    }

    /// Emails of the accounts not logged out, oldest first.
    pub(crate) fn active(&self) -> Vec<&str> {
        self.list
            .iter()
            .filter(|a| a.active)
            .map(|a| a.email.as_str())
            .collect()
    }

    pub(crate) fn all(&self) -> &[Account] {
        &self.list
    }
}

/// One token file as found at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileState {
    pub(crate) name: String,
    pub(crate) email: Option<String>,
    pub(crate) status: Option<String>,
    pub(crate) refresh_token: Option<String>,
}

/// An account the user would have to log in again, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lost {
    /// The email, or a description when no account matches.
    pub(crate) account: String,
    pub(crate) reasons: Vec<String>,
}

/// Reads every token file (`*.json`, not hidden) of `auth_dir`. A file that
/// cannot be read or parsed is listed with nothing known.
pub(crate) fn scan(auth_dir: &Path) -> Result<Vec<FileState>> {
    let mut files = Vec::new();
    let entries =
        fs::read_dir(auth_dir).with_context(|| format!("cannot list {}", auth_dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", auth_dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        let json: Value = fs::read(entry.path())
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or(Value::Null);
        let text = |key: &str| json.get(key).and_then(Value::as_str).map(str::to_owned);
        files.push(FileState {
            email: text("email"),
            status: text("cliproxy_status"),
            refresh_token: text("refresh_token"),
            name,
        });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// The refresh token in the file of `email`, if there is one file for it.
pub(crate) fn refresh_token_of(files: &[FileState], email: &str) -> Option<String> {
    let mut matching = files.iter().filter(|f| {
        f.email
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case(email))
    });
    let file = matching.next()?;
    file.refresh_token.clone()
}

/// What the end of the run shows: files, the fake's view of tokens, and the
/// refreshes it refused.
pub(crate) struct Evidence<'a> {
    pub(crate) accounts: &'a Accounts,
    pub(crate) files: &'a [FileState],
    /// The fake's answer for each refresh token the soak saw or found in a file.
    pub(crate) lookups: &'a HashMap<String, Lookup>,
    pub(crate) dead: &'a [DeadRefresh],
}

/// The accounts lost, each with its reasons, sorted by account.
pub(crate) fn lost_accounts(evidence: &Evidence<'_>) -> Vec<Lost> {
    let mut lost: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut add = |account: String, reason: String| {
        let reasons = lost.entry(account).or_default();
        if !reasons.contains(&reason) {
            reasons.push(reason);
        }
    };
    let mut email_of_root: HashMap<&str, &str> = HashMap::new();
    for account in evidence.accounts.all() {
        for token in &account.seen {
            if let Some(lookup) = evidence.lookups.get(token) {
                email_of_root.insert(&lookup.root, &account.email);
            }
        }
    }
    for dead in evidence.dead {
        let account = email_of_root.get(dead.root.as_str()).map_or_else(
            || "an account the soak did not make".to_owned(),
            |e| (*e).to_owned(),
        );
        let reason = if dead.spent {
            "a refresh token was sent again after its rotation (the rotated pair was lost)"
        } else {
            "a refresh token the fake never issued was sent"
        };
        add(account, reason.to_owned());
    }
    for file in evidence.files {
        let account = file
            .email
            .clone()
            .unwrap_or_else(|| format!("the account in {}", file.name));
        if file.status.as_deref() == Some(RELOGIN_REQUIRED) {
            add(
                account.clone(),
                "its token file is marked relogin-required".to_owned(),
            );
        }
        match &file.refresh_token {
            Some(token) => {
                if evidence.lookups.get(token).is_some_and(|l| !l.live) {
                    add(
                        account,
                        "its token file holds a refresh token that is already spent".to_owned(),
                    );
                }
            }
            None => add(account, "its token file has no refresh token".to_owned()),
        }
    }
    for email in evidence.accounts.active() {
        let has_file = evidence.files.iter().any(|f| {
            f.email
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case(email))
        });
        if !has_file {
            add(
                email.to_owned(),
                "its token file is gone, though it was not logged out".to_owned(),
            );
        }
    }
    lost.into_iter()
        .map(|(account, reasons)| Lost { account, reasons })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{cliproxy::write_token_file, fake_qwen::Pair};

    fn file(name: &str, email: &str, status: Option<&str>, token: &str) -> FileState {
        FileState {
            name: name.to_owned(),
            email: Some(email.to_owned()),
            status: status.map(str::to_owned),
            refresh_token: Some(token.to_owned()),
        }
    }

    fn lookup(root: &str, live: bool) -> Lookup {
        Lookup {
            root: root.to_owned(),
            live,
        }
    }

    #[test]
    fn a_healthy_run_loses_nothing() {
        let mut accounts = Accounts::default();
        accounts.logged_in("a@x", "ra".to_owned());
        accounts.logged_in("b@x", "rb".to_owned());
        accounts.logged_out("b@x");
        let files = [file("qwen-a@x.json", "a@x", None, "ra3")];
        let lookups = HashMap::from([
            ("ra".to_owned(), lookup("ra", false)),
            ("rb".to_owned(), lookup("rb", true)),
            ("ra3".to_owned(), lookup("ra", true)),
        ]);
        let evidence = Evidence {
            accounts: &accounts,
            files: &files,
            lookups: &lookups,
            dead: &[],
        };
        assert_eq!(lost_accounts(&evidence), []);
        assert_eq!(accounts.active(), ["a@x"]);
    }

    #[test]
    fn every_kind_of_loss_is_named_once_per_account() {
        let mut accounts = Accounts::default();
        for (email, token) in [("a@x", "ra"), ("b@x", "rb"), ("c@x", "rc"), ("d@x", "rd")] {
            accounts.logged_in(email, token.to_owned());
        }
        // `a` logged in again: its new chain is rb2's root `ra2`.
        accounts.logged_in("a@x", "ra2".to_owned());
        let files = [
            file("qwen-a@x.json", "a@x", None, "ra2"),
            file("qwen-b@x.json", "b@x", Some(RELOGIN_REQUIRED), "rb5"),
            file("qwen-c@x.json", "c@x", None, "rc2"),
        ];
        let lookups = HashMap::from([
            ("ra".to_owned(), lookup("ra", false)),
            ("ra2".to_owned(), lookup("ra2", true)),
            ("rb".to_owned(), lookup("rb", false)),
            ("rb5".to_owned(), lookup("rb", false)),
            ("rc".to_owned(), lookup("rc", false)),
            ("rc2".to_owned(), lookup("rc", false)),
            ("rd".to_owned(), lookup("rd", true)),
        ]);
        let dead = [
            DeadRefresh {
                root: "rb".to_owned(),
                spent: true,
            },
            DeadRefresh {
                root: "rb".to_owned(),
                spent: true,
            },
            DeadRefresh {
                root: "ra".to_owned(),
                spent: true,
            },
            DeadRefresh {
                root: "zz".to_owned(),
                spent: false,
            },
        ];
        let evidence = Evidence {
            accounts: &accounts,
            files: &files,
            lookups: &lookups,
            dead: &dead,
        };
        let lost = lost_accounts(&evidence);
        let summary: Vec<(&str, usize)> = lost
            .iter()
            .map(|l| (l.account.as_str(), l.reasons.len()))
            .collect();
        assert_eq!(
            summary,
            [
                // `a`'s old chain lost a rotation before the second login.
                ("a@x", 1),
                ("an account the soak did not make", 1),
                ("b@x", 3),
                ("c@x", 1),
                ("d@x", 1),
            ]
        );
        assert!(lost[2].reasons[0].contains("sent again"));
        assert!(lost[2].reasons[1].contains("relogin-required"));
        assert!(lost[2].reasons[2].contains("already spent"));
        assert!(lost[4].reasons[0].contains("gone"));
    }

    #[test]
    fn token_files_are_private_and_readable_back() {
        let dir = std::env::temp_dir().join(format!("xtask-soak-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let pair = Pair {
            access_token: "a1".to_owned(),
            refresh_token: "r1".to_owned(),
        };
        write_token_file(&dir, "u@example.com", &pair, "http://127.0.0.1:1/v1", 0, 60).unwrap();
        let path = dir.join("qwen-u@example.com.json");
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&path).unwrap().permissions());
        let files = scan(&dir).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            files,
            [file("qwen-u@example.com.json", "u@example.com", None, "r1")]
        );
        assert_eq!(
            refresh_token_of(&files, "U@example.com").as_deref(),
            Some("r1")
        );
    }
}
