//! Why the pool keeps an account out of rotation, as `accounts list` and the pool show it.

/// Its refresh token is dead: it needs a new login.
pub const RELOGIN_REASON: &str = "re-login required";
/// The operator took it out.
pub const DISABLED_REASON: &str = "taken out with `cliproxy accounts disable`";
