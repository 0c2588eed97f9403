//! Versioned schema migrations, kept in `crates/account-store/migrations/` and compiled in.
//! Each server applies the missing ones at start, one server at a time (an advisory lock),
//! in one transaction, and refuses a database whose schema is newer than it knows.

use tokio_postgres::Client;

use crate::error::StoreError;

/// The migrations, in order: version, name, SQL. Never change one that was released: add one.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "accounts",
        include_str!("../../migrations/0001_accounts.sql"),
    ),
    (
        2,
        "shared_limits",
        include_str!("../../migrations/0002_shared_limits.sql"),
    ),
    (3, "usage", include_str!("../../migrations/0003_usage.sql")),
];

/// The advisory lock migrations run under (any fixed number: "cliproxy" in ASCII).
const MIGRATION_LOCK: i64 = 0x636c_6970_726f_7879;

/// The newest schema version this binary knows.
pub fn known_version() -> i32 {
    MIGRATIONS.last().map_or(0, |(version, _, _)| *version)
}

/// The schema version of the database: 0 before any migration. Reads only.
pub(crate) async fn version(client: &Client, target: &str) -> Result<i32, StoreError> {
    let fail = |error: tokio_postgres::Error| {
        StoreError::postgres("read the schema version", target, &error)
    };
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('cliproxy_schema_migrations') IS NOT NULL",
            &[],
        )
        .await
        .map_err(fail)?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM cliproxy_schema_migrations",
            &[],
        )
        .await
        .map_err(fail)?
        .get(0))
}

/// Applies the missing migrations; refuses a newer schema. Returns the versions applied.
pub(crate) async fn migrate(client: &mut Client, target: &str) -> Result<Vec<i32>, StoreError> {
    let fail = |op| move |error: tokio_postgres::Error| StoreError::postgres(op, target, &error);
    let transaction = client
        .transaction()
        .await
        .map_err(fail("start the schema migration"))?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(fail("lock the schema for migration"))?;
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS cliproxy_schema_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(fail("create the migrations table"))?;
    let found: i32 = transaction
        .query_one(
            "SELECT coalesce(max(version), 0) FROM cliproxy_schema_migrations",
            &[],
        )
        .await
        .map_err(fail("read the schema version"))?
        .get(0);
    let known = known_version();
    if found > known {
        return Err(StoreError::SchemaTooNew {
            target: target.to_owned(),
            found,
            known,
        });
    }
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS.iter().filter(|(v, _, _)| *v > found) {
        transaction
            .batch_execute(sql)
            .await
            .map_err(fail("apply a schema migration"))?;
        transaction
            .execute(
                "INSERT INTO cliproxy_schema_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .await
            .map_err(fail("record a schema migration"))?;
        applied.push(*version);
    }
    transaction
        .commit()
        .await
        .map_err(fail("commit the schema migration"))?;
    Ok(applied)
}
