//! Who sent a request: the client key it presented, by name, and the credentials that key may
//! use. The auth layer attaches one to every request it lets through (an anonymous one when the
//! server has no keys), and every later step reads it from there: routing limits selection to
//! its scope, and logs name the key by its name, never the key.

use std::sync::{Arc, LazyLock};

use credential_pool::Scope;

/// A client key's identity and what it may use.
#[derive(Debug)]
pub(crate) struct Client {
    /// The key's name (from the config), as logs and usage show it.
    pub(crate) name: Arc<str>,
    /// The credentials it may use.
    pub(crate) scope: Arc<Scope>,
}

/// Requests to a server without client keys (loopback only): no name, no limits.
static ANONYMOUS: LazyLock<Arc<Client>> = LazyLock::new(|| {
    Arc::new(Client {
        name: "".into(),
        scope: Arc::new(Scope::all()),
    })
});

impl Client {
    /// The client of a request the auth layer let through without a key.
    pub(crate) fn anonymous() -> Arc<Client> {
        Arc::clone(&ANONYMOUS)
    }

    /// The client the auth layer attached to `request`, else the anonymous one.
    pub(crate) fn of<B>(request: &http::Request<B>) -> Arc<Client> {
        request
            .extensions()
            .get::<Arc<Client>>()
            .map_or_else(Self::anonymous, Arc::clone)
    }
}
