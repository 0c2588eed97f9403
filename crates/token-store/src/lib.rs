//! The auth dir of cliproxy: one JSON token file per Qwen OAuth account.
//!
//! This crate reads, writes, lists and locks token files. It knows nothing
//! of HTTP or terminals. Its invariants:
//!
//! - **Atomic writes.** A token file is only ever replaced through a temp
//!   file (`.*.tmp`) in the same directory that is written, fsynced and
//!   renamed over the target, after which the directory is fsynced. Readers
//!   see the old file or the new one, never a torn one; a crash leaves the
//!   old file intact and a temp file that listing ignores.
//! - **Private files.** Token and lock files are created 0600, so a token is
//!   never readable by others, even for a moment. A missing auth dir is
//!   created 0700; an existing one is left as it is. Listing tightens token
//!   files that are more open than 0600 and reports them.
//!   [`AuthDir::check_private`] refuses a dir its group or others can write
//!   (they could plant or replace token files); the caller decides whether
//!   that stops it.
//! - **One writer per account.** Writers of an account serialize on the
//!   advisory lock file `.locks/<account key>.lock`, never on the token file
//!   (whose inode each rename replaces). A file's key comes from the email in
//!   its JSON, else the email in its name, so every file `save_login` or
//!   `remove_account` takes as an email's is under that email's lock. The lock excludes other processes
//!   and other threads of this process alike. Lock files are never deleted.
//! - **One file per account.** [`AuthDir::save_login`] removes every other
//!   file of the account it saves, including Go CLIProxyAPI's
//!   `qwen-<email>.json`.
//! - **Nothing is lost on rewrite.** Unknown JSON keys are kept, in order.
//! - **Tolerant listing.** A bad file is reported by name and never stops
//!   the others from loading.
//! - **Secrets stay secret.** Tokens never appear in `Debug` output, error
//!   messages or logs; logs name paths only.

mod atomic;
mod bad_file;
mod dir;
mod disabled;
mod error;
mod key;
mod lock;
mod naming;
mod qwen_code;
mod read;
mod record;

pub use bad_file::{BadFile, BadFileReason};
pub use dir::{AuthDir, Listing, SavedLogin, StoredAccount};
pub use disabled::DISABLED_CREDENTIALS;
pub use error::{Operation, StoreError};
pub use key::AccountKey;
pub use lock::AccountLock;
pub use naming::{email_file_name_problem, login_file_name};
pub use qwen_code::{default_qwen_code_creds_path, read_qwen_code_creds};
pub use record::{
    DISABLED_KEY, KNOWN_PROVIDERS, QWEN, STATUS_KEY, STATUS_RELOGIN_REQUIRED, TokenRecord,
};
