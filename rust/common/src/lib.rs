//! What both services share and nothing else: tracing set-up, the shutdown signal, the
//! contract's input rules and the status they produce, and opening a crash-safe SQLite
//! database from a `sqlite://` URL, or a PostgreSQL one from a `postgres://` URL.
//!
//! This crate never knows about either service's API or tables; each service owns its own
//! schema, errors and status mapping.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::SqlitePool;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tracing_subscriber::EnvFilter;

pub mod validate;

/// The longest token either service accepts, in bytes. Access tokens (Ed25519 JWTs with a
/// user id, roles and a session id) are about 400 bytes and refresh tokens 47; anything much
/// longer is refused as invalid without further work.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// The token of an `authorization: Bearer <token>` header value: the scheme matched without
/// regard to case (RFC 7235), the token trimmed; `None` for another scheme or no token.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// `INVALID_ARGUMENT` carrying the violations as `google.rpc.BadRequest` details, with a
/// message that lists them: the one shape both services give bad input.
pub fn invalid_argument_status(violations: Vec<tonic_types::FieldViolation>) -> tonic::Status {
    use tonic_types::StatusExt as _;
    let summary = violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ");
    tonic::Status::with_error_details(
        tonic::Code::InvalidArgument,
        format!("invalid argument: {summary}"),
        tonic_types::ErrorDetails::with_bad_request(violations),
    )
}

/// Installs the global `tracing` subscriber: `RUST_LOG` filters (default `info`), output
/// goes to stderr, coloured only on a terminal (log collectors get plain `key=value` text).
/// Safe to call more than once (later calls do nothing), so tests and an embedding process
/// can all call it.
pub fn init_tracing() {
    use std::io::IsTerminal as _;
    // PostgreSQL's notices (such as "relation ... already exists, skipping" from the
    // migrator at every start) are not news at info.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx::postgres::notice=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Resolves when the process receives Ctrl-C (SIGINT) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// The file a `sqlite://` URL names: `sqlite://data/x.db` is relative to the working
/// directory, `sqlite:///tmp/x.db` is absolute. Query parameters are ignored here.
pub fn sqlite_path(url: &str) -> anyhow::Result<PathBuf> {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        bail!("not a sqlite URL: {url:?} (expected sqlite://PATH)");
    };
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        bail!("{url:?} names no database file; data must live on disk");
    }
    Ok(PathBuf::from(path))
}

/// Opens (creating the file and its folder if missing) a SQLite database for a service:
/// WAL journal, `synchronous = FULL` (a committed transaction survives a crash or power
/// loss), foreign keys on, and a busy timeout so that writers from several processes (replicas
/// sharing one file) wait for each other instead of failing.
pub async fn open_sqlite(url: &str, max_connections: u32) -> anyhow::Result<SqlitePool> {
    let path = sqlite_path(url)?;
    create_parent(&path)?;
    let options = SqliteConnectOptions::from_str(url)
        .with_context(|| format!("invalid database URL {url:?}"))?
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    SqlitePoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(Duration::from_secs(5))
        // A SQLite connection is a local file handle, not a socket that can go stale; pinging
        // it before every query cost a second trip to its worker thread per query.
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .with_context(|| format!("cannot open the database {}", display(&path)))
}

/// Opens the SQLite database at `url` like [`open_sqlite`] and applies `migrator`, holding an
/// exclusive lock on a file beside the database (`<file>.migrate-lock`) meanwhile, so that
/// replicas starting together on a new shared database do not race: without it, two of them
/// could both see a migration as pending and one would fail (`table ... already exists`), or
/// both switch a new file to WAL at once (`database is locked`).
pub async fn open_sqlite_migrated(
    url: &str,
    max_connections: u32,
    migrator: &sqlx::migrate::Migrator,
) -> anyhow::Result<SqlitePool> {
    let path = sqlite_path(url)?;
    create_parent(&path)?;
    let mut lock_path = path.clone().into_os_string();
    lock_path.push(".migrate-lock");
    let lock_path = PathBuf::from(lock_path);
    let lock = tokio::task::spawn_blocking(move || -> anyhow::Result<std::fs::File> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open the lock file {}", lock_path.display()))?;
        file.lock()
            .with_context(|| format!("cannot lock {}", lock_path.display()))?;
        Ok(file)
    })
    .await
    .context("the migration lock task failed")??;
    let pool = open_sqlite(url, max_connections).await?;
    migrator
        .run(&pool)
        .await
        .with_context(|| format!("cannot migrate the database {}", display(&path)))?;
    // Closing the file releases the lock.
    drop(lock);
    Ok(pool)
}

/// Whether `url` names a PostgreSQL database (`postgres://` or `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    let lower = url.get(..13).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

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

/// Whether `error` means the database could not be reached or could not take the request
/// now (connection lost or refused, pool exhausted, server shutting down or starting, SQLite
/// busy past its timeout), as opposed to a fault in the request or the data. Services answer
/// those with UNAVAILABLE, which callers may retry, instead of INTERNAL.
pub fn database_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let Some(code) = db.code() else {
                return false;
            };
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // SQLITE_BUSY and SQLITE_LOCKED, with their extended codes (the low byte is
                // the primary code).
                return code.parse::<i32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6));
            }
            // PostgreSQL: class 08 (connection exception), 53 (insufficient resources),
            // 57P01-57P03 (administrator or crash shutdown, cannot connect now).
            code.starts_with("08")
                || code.starts_with("53")
                || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")
        }
        _ => false,
    }
}

/// `url` with the password, if any, replaced by `***`.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Creates the folder a database file goes in, if it is missing.
fn create_parent(path: &Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create the database folder {}", parent.display()))?;
    }
    Ok(())
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unreachable_or_busy_databases_are_unavailable_and_faults_are_not() {
        assert!(database_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(database_unavailable(&sqlx::Error::Io(
            std::io::Error::from(std::io::ErrorKind::ConnectionReset)
        )));
        assert!(!database_unavailable(&sqlx::Error::RowNotFound));

        // Real SQLite errors: a write blocked by another connection's write transaction past
        // the busy timeout is unavailable; a constraint violation is not.
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("x.db").display());
        let pool = open_sqlite(&url, 2).await.unwrap();
        sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            .execute(&pool)
            .await
            .unwrap();
        let duplicate = sqlx::query("INSERT INTO t VALUES (1), (1)")
            .execute(&pool)
            .await
            .unwrap_err();
        assert!(!database_unavailable(&duplicate), "{duplicate}");

        let mut holder = pool.acquire().await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *holder)
            .await
            .unwrap();
        let mut other = pool.acquire().await.unwrap();
        sqlx::query("PRAGMA busy_timeout = 10")
            .execute(&mut *other)
            .await
            .unwrap();
        let busy = sqlx::query("INSERT INTO t VALUES (2)")
            .execute(&mut *other)
            .await
            .unwrap_err();
        assert!(database_unavailable(&busy), "{busy}");
    }

    #[test]
    fn server_urls_are_recognised_and_their_passwords_hidden() {
        // (No `postgres` in the name: that marks the tests that need a server, see
        // .config/nextest.toml.)
        assert!(is_postgres_url("postgres://u:p@h/db"));
        assert!(is_postgres_url("PostgreSQL://h/db"));
        assert!(!is_postgres_url("sqlite://data/x.db"));
        assert!(!is_postgres_url("post"));
        assert_eq!(
            redact_password("postgres://u:secret@h:5432/db?sslmode=disable"),
            "postgres://u:***@h:5432/db?sslmode=disable"
        );
        assert_eq!(redact_password("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_password("postgres://h/db"), "postgres://h/db");
        assert_eq!(redact_password("not a url"), "not a url");
    }

    #[test]
    fn bearer_tokens_are_read_from_any_case_of_the_scheme() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("BEARER abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }

    #[test]
    fn sqlite_urls_name_relative_and_absolute_files() {
        assert_eq!(
            sqlite_path("sqlite://data/auth.db").unwrap(),
            PathBuf::from("data/auth.db")
        );
        assert_eq!(
            sqlite_path("sqlite:///tmp/x.db?mode=rwc").unwrap(),
            PathBuf::from("/tmp/x.db")
        );
        assert!(sqlite_path("postgres://localhost/x").is_err());
        assert!(sqlite_path("sqlite::memory:").is_err());
        assert!(sqlite_path("sqlite://").is_err());
    }

    #[tokio::test]
    async fn opening_creates_the_folder_and_a_wal_database() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/nested/db.sqlite", dir.path().display());
        let pool = open_sqlite(&url, 2).await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        assert!(dir.path().join("nested/db.sqlite").exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn replicas_starting_together_on_a_new_database_all_migrate_it_once() {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/test-migrations"));
        let migrator = std::sync::Arc::new(sqlx::migrate::Migrator::new(dir).await.unwrap());
        for round in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}/shared.db", dir.path().display());
            let starts = (0..8).map(|_| {
                let (url, migrator) = (url.clone(), migrator.clone());
                tokio::spawn(async move { open_sqlite_migrated(&url, 2, &migrator).await })
            });
            let pools = futures_join_all(starts).await;
            for pool in &pools {
                let pool = pool
                    .as_ref()
                    .unwrap_or_else(|e| panic!("round {round}: {e:#}"));
                let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM first")
                    .fetch_one(pool)
                    .await
                    .unwrap();
                assert_eq!(rows, 1, "the second migration ran exactly once");
            }
        }
    }

    async fn futures_join_all<T>(
        handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for handle in handles.collect::<Vec<_>>() {
            out.push(handle.await.unwrap());
        }
        out
    }
}
