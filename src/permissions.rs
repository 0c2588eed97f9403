//! The auth dir's permission policy: token-store tells whether others can write the dir, and
//! `strict-permissions` decides whether that stops `serve`, `login` and `import` (the commands
//! that trust or write its token files) or only warns, for volumes whose group the platform
//! manages (Kubernetes `fsGroup` makes them group-writable).

use token_store::{AuthDir, StoreError};

/// Refuses an auth dir its group or others can write when `strict`, and warns about it
/// otherwise.
pub fn enforce_private_auth_dir(store: &AuthDir, strict: bool) -> anyhow::Result<()> {
    match store.check_private() {
        Ok(()) => Ok(()),
        Err(error @ StoreError::WritableByOthers { .. }) if strict => Err(anyhow::anyhow!(
            "{error} If the platform manages its group (Kubernetes fsGroup), set \
             strict-permissions = false (or CLIPROXY_STRICT_PERMISSIONS=false) instead."
        )),
        Err(error @ StoreError::WritableByOthers { .. }) => {
            tracing::warn!("{error} Using it anyway, because strict-permissions = false.");
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}
