//! A small pool of PostgreSQL connections: at most `max` at once, idle ones reused, broken
//! ones dropped. A connection handed out in a transaction that was never finished is closed
//! rather than reused, so the server rolls the transaction back and frees its row locks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, Config, NoTls};

/// How long connecting may take before the store counts as unreachable.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections to one database.
pub(crate) struct Pool {
    config: Config,
    idle: Mutex<Vec<Client>>,
    permits: Arc<Semaphore>,
}

/// A connection taken from the pool; it goes back when dropped, unless it was [`discard`]ed
/// or broke.
///
/// [`discard`]: Pooled::discard
pub(crate) struct Pooled {
    client: Option<Client>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl Pool {
    pub(crate) fn new(mut config: Config, max: usize) -> Arc<Pool> {
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .application_name("cliproxy");
        Arc::new(Pool {
            config,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max.max(1))),
        })
    }

    /// The connection settings, for connections of their own (the listener).
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// An idle connection, or a new one; waits while `max` are out.
    pub(crate) async fn get(self: &Arc<Self>) -> Result<Pooled, tokio_postgres::Error> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .expect("the pool's semaphore is never closed");
        let reused = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                match idle.pop() {
                    Some(client) if client.is_closed() => {}
                    other => break other,
                }
            }
        };
        let client = match reused {
            Some(client) => client,
            None => connect(&self.config).await?,
        };
        Ok(Pooled {
            client: Some(client),
            pool: Arc::clone(self),
            _permit: permit,
        })
    }

    /// Drops every idle connection (after the database restarted, they are all dead).
    pub(crate) fn clear(&self) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// Opens a connection and drives it in a task of its own.
pub(crate) async fn connect(config: &Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!("a connection to the PostgreSQL store ended: {error}");
        }
    });
    Ok(client)
}

impl Pooled {
    /// The connection.
    pub(crate) fn client(&self) -> &Client {
        self.client
            .as_ref()
            .expect("present until dropped or discarded")
    }

    /// Closes the connection instead of returning it (its state is unknown).
    pub(crate) fn discard(mut self) {
        self.client = None;
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
            && !client.is_closed()
        {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(client);
        }
    }
}
