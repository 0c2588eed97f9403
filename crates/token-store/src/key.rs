//! Account identity: the key of the account a token file belongs to, read
//! from the email in its JSON or in its name, and which files belong to one
//! account.

use std::fmt;
use std::fmt::Write as _;
use std::path::Path;

use crate::record::TokenRecord;

/// Identity of an account: `<type>-<email lowercased>` (e.g. `qwen-a@b.com`) when the record
/// has an email, or else when its file name has one ([`email_in_file_name`]: Go CLIProxyAPI's
/// `qwen-<email>.json`, this store's `qwen-<email>-<unix secs>.json`); otherwise the lowercased
/// stem of its file name (web logins, e.g. `qwen-1724150000000`).
///
/// All writers of one account serialize on the lock named after this key, so every file that
/// [`crate::AuthDir::remove_account`] or [`crate::AuthDir::save_login`] takes as the account's
/// has the key of [`AccountKey::for_email`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountKey(String);

impl AccountKey {
    /// The key of the account that `record`, stored at `path`, belongs to.
    pub fn for_record(record: &TokenRecord, path: &Path) -> AccountKey {
        if let Some(email) = record.email.as_deref().filter(|e| !e.is_empty()) {
            return AccountKey::for_email(&record.provider, email);
        }
        if let Some(email) = email_in_file_name(path, &record.provider) {
            return AccountKey::for_email(&record.provider, &email);
        }
        AccountKey(
            path.file_stem()
                .map(|stem| stem.to_string_lossy().to_lowercase())
                .unwrap_or_default(),
        )
    }

    /// A key as another store keeps it (the primary key of a PostgreSQL row): the text that
    /// [`AccountKey::as_str`] gave.
    pub fn from_stored(text: impl Into<String>) -> AccountKey {
        AccountKey(text.into())
    }

    /// The key of the account with this provider and email.
    pub fn for_email(provider: &str, email: &str) -> AccountKey {
        AccountKey(format!("{provider}-{}", email.to_lowercase()))
    }

    /// The key of a shared file of the auth dir that is not an account's (its writers
    /// serialise on this lock): `cliproxy-<name>`, which no account key can be.
    pub(crate) fn for_shared_file(name: &str) -> AccountKey {
        AccountKey(format!("cliproxy-{name}"))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// File name of this account's lock file. Bytes outside a safe set are
    /// percent-encoded (and `%` itself), so distinct keys never share a lock
    /// file and no key can name a path outside `.locks`.
    pub(crate) fn lock_file_name(&self) -> String {
        let mut name = String::with_capacity(self.0.len() + 5);
        for byte in self.0.bytes() {
            if byte.is_ascii_alphanumeric() || b"@._+-".contains(&byte) {
                name.push(char::from(byte));
            } else {
                let _ = write!(name, "%{byte:02X}");
            }
        }
        name.push_str(".lock");
        name
    }
}

impl fmt::Display for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The email in a token file's name, lowercased: `<provider>-<email>.json` (Go CLIProxyAPI) or
/// `<provider>-<email>-<digits>.json` (this store, digits being the save time). `None` unless
/// what follows `<provider>-` holds an `@`, so web logins (`qwen-1724150000000.json`) and other
/// names have none.
///
/// A name such as `qwen-a@host-1.json` reads as email `a@host` saved at time 1: a domain whose
/// last label ends in `-<digits>` is no public domain.
pub(crate) fn email_in_file_name(path: &Path, provider: &str) -> Option<String> {
    let stem = path.file_stem()?.to_string_lossy().to_lowercase();
    let rest = stem
        .strip_prefix(&provider.to_lowercase())?
        .strip_prefix('-')?;
    let email = match rest.rsplit_once('-') {
        Some((email, digits))
            if email.contains('@')
                && !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit()) =>
        {
            email
        }
        _ => rest,
    };
    email.contains('@').then(|| email.to_owned())
}

/// True when the file at `path` holding `record` belongs to the account
/// `<provider>-<email_lower>`: same type and same email ignoring case, or, for a file without
/// an email, that email in its name ([`email_in_file_name`]). Whenever this holds,
/// [`AccountKey::for_record`] is [`AccountKey::for_email`] of that email: one lock.
pub(crate) fn belongs_to(
    record: &TokenRecord,
    path: &Path,
    provider: &str,
    email_lower: &str,
) -> bool {
    if record.provider != provider {
        return false;
    }
    if let Some(email) = record.email.as_deref().filter(|e| !e.is_empty()) {
        return email.to_lowercase() == email_lower;
    }
    email_in_file_name(path, provider).as_deref() == Some(email_lower)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::QWEN;

    #[test]
    fn keys() {
        let mut record = TokenRecord::new(QWEN, "t");
        let path = Path::new("/auth/qwen-1724150000000.json");
        assert_eq!(
            AccountKey::for_record(&record, path).as_str(),
            "qwen-1724150000000"
        );
        record.email = Some("Bob@X.org".into());
        assert_eq!(
            AccountKey::for_record(&record, path).to_string(),
            "qwen-bob@x.org"
        );
    }

    /// A file without an email in its JSON locks under its name's email, as `logout` and
    /// `login` of that email do; names without one keep their stem.
    #[test]
    fn a_file_without_an_email_takes_the_key_of_the_email_in_its_name() {
        let record = TokenRecord::new(QWEN, "t");
        let by_email = AccountKey::for_email(QWEN, "Dev@Example.com");
        for name in [
            "qwen-dev@example.com-1755673445.json",
            "qwen-Dev@Example.com.json",
            "QWEN-dev@example.com.json",
        ] {
            let key = AccountKey::for_record(&record, &Path::new("/auth").join(name));
            assert_eq!(key, by_email, "{name}");
            assert_eq!(key.lock_file_name(), "qwen-dev@example.com.lock", "{name}");
        }
        for name in [
            "qwen-1724150000000.json",
            "qwen-web-login-7.json",
            "mine.json",
        ] {
            let path = Path::new("/auth").join(name);
            let stem = name.trim_end_matches(".json");
            assert_eq!(AccountKey::for_record(&record, &path).as_str(), stem);
        }
        // No timestamp after the last `-`: the whole rest is the email, as the Go tool names it.
        assert_eq!(
            AccountKey::for_record(&record, Path::new("/auth/qwen-a@b.com-x.json")),
            AccountKey::for_email(QWEN, "a@b.com-x")
        );
    }

    #[test]
    fn lock_file_names_are_safe_and_distinct() {
        let a = AccountKey("qwen-a/../b".into()).lock_file_name();
        assert!(!a.contains('/'), "{a}");
        assert_eq!(a, "qwen-a%2F..%2Fb.lock");
        let b = AccountKey("qwen-a%2F..%2Fb".into()).lock_file_name();
        assert_ne!(a, b);
        assert_eq!(
            AccountKey::for_email(QWEN, "a@b.com").lock_file_name(),
            "qwen-a@b.com.lock"
        );
    }

    #[test]
    fn membership() {
        let mut no_email = TokenRecord::new(QWEN, "t");
        let check = |r: &TokenRecord, p: &str| belongs_to(r, Path::new(p), QWEN, "a@b.com");
        assert!(check(&no_email, "/d/qwen-A@B.com.json"));
        assert!(check(&no_email, "/d/qwen-a@b.com-1700000000.json"));
        assert!(!check(&no_email, "/d/qwen-a@b.com-x.json"));
        assert!(!check(&no_email, "/d/qwen-a@b.community.json"));
        assert!(!check(&no_email, "/d/qwen-1700000000.json"));
        assert!(
            !check(&no_email, "/d/qwen-a@b.com-17-18.json"),
            "one timestamp at most"
        );
        no_email.email = Some("A@b.COM".into());
        assert!(check(&no_email, "/d/whatever.json"));
        no_email.email = Some("c@b.com".into());
        assert!(!check(&no_email, "/d/qwen-a@b.com.json"));
    }
}
