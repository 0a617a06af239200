//! Opening a PostgreSQL pool in a service's own schema, migrated.

use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::url::redact_password;

/// Opens a pool of at most `max_connections` to the PostgreSQL database at `url`, in the
/// service's own `schema` (created if missing; every connection's `search_path`), and applies
/// `migrator` there. With a schema each, both services (and their migration records) can
/// share one database as well as use one each. sqlx holds a PostgreSQL advisory lock while
/// migrating, so replicas starting together on a new database do not race. Fails within
/// `connect_timeout` when the server does not answer. The password in `url` never appears in
/// an error.
pub async fn open_postgres_migrated(
    url: &str,
    schema: &str,
    max_connections: u32,
    connect_timeout: Duration,
    migrator: &sqlx::migrate::Migrator,
) -> anyhow::Result<PgPool> {
    if schema.is_empty()
        || !schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
    {
        bail!("invalid schema name {schema:?}");
    }
    let shown = redact_password(url);
    let options = sqlx::postgres::PgConnectOptions::from_str(url)
        .with_context(|| format!("invalid PostgreSQL URL {shown}"))?
        .options([("search_path", schema)]);
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(connect_timeout)
        .connect_with(options)
        .await
        .with_context(|| format!("cannot connect to the PostgreSQL database {shown}"))?;
    create_schema(&pool, schema)
        .await
        .with_context(|| format!("cannot create the schema {schema} in {shown}"))?;
    migrator
        .run(&pool)
        .await
        .with_context(|| format!("cannot migrate the PostgreSQL database {shown}"))?;
    Ok(pool)
}

/// Creates `schema` unless it exists (a role without CREATE on the database can use one an
/// administrator made); replicas starting together serialize on an advisory lock.
async fn create_schema(pool: &PgPool, schema: &str) -> Result<(), sqlx::Error> {
    let exists = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)";
    if sqlx::query_scalar::<_, bool>(exists)
        .bind(schema)
        .fetch_one(pool)
        .await?
    {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('grimos schema ' || $1))")
        .bind(schema)
        .execute(&mut *tx)
        .await?;
    // The name was checked to be [a-z0-9_]+: safe to splice, as identifiers cannot be bound.
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}
