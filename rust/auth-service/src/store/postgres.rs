//! [`Store`](super::Store) on PostgreSQL, migrations embedded in the binary: the statements
//! and locks [`SqlStore`] needs of this backend.
//!
//! The decisions are [`SqlStore`]'s, the same as on SQLite. SQLite serializes every writer
//! (`BEGIN IMMEDIATE`); here transactions run at READ COMMITTED and serialize where it
//! matters:
//!
//! - a refresh token is only changed (rotated, its session ended or deleted) by a transaction
//!   holding its session's row lock (`SELECT ... FOR UPDATE`), taken before anything else of
//!   the session is read, so a rotation, a logout, a reuse and a credential deletion of one
//!   session happen one after the other;
//! - login attempts are counted by one `INSERT ... ON CONFLICT DO UPDATE`;
//! - revocations are inserted under a transaction-scoped advisory lock, so their `seq`
//!   values become visible in order and a replica polling "after seq N" never skips a row
//!   committed late with a smaller `seq`;
//! - a credential deletion racing a login is settled by the foreign key, as in SQLite;
//! - a revocation's insert also `NOTIFY`s, in its transaction, so that every replica
//!   `LISTEN`ing (one connection each, apart from the pool) reads it as soon as it commits.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{PgConnection, Pool, Postgres};
use tokio::sync::Notify;

use super::Task;
use super::sql::{Backend, SqlStore};

/// The embedded migrations of `migrations-postgres/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations-postgres");

/// Connections per replica, as for SQLite.
const MAX_CONNECTIONS: u32 = 8;
/// auth-service's schema: its tables and migration records, apart from user-service's when
/// both use one database.
pub const SCHEMA: &str = "auth_service";
/// How long opening the database (and later, waiting for a pooled connection) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Advisory lock key held, to the end of its transaction, by every insert into
/// `revocations` ("grimosrv").
const REVOCATIONS_LOCK: i64 = 0x6772_696d_6f73_7276;
/// How long the listener waits before connecting again after a failed attempt, at first;
/// doubled on each failure up to [`LISTEN_RETRY_MAX`].
const LISTEN_RETRY: Duration = Duration::from_millis(100);
/// The longest wait between attempts to listen again.
const LISTEN_RETRY_MAX: Duration = Duration::from_secs(5);

/// Advisory lock key a purge holds, so replicas never purge at once ("grimospg").
const PURGE_LOCK: i64 = 0x6772_696d_6f73_7067;

/// auth-service's tables in one PostgreSQL database, shared by replicas.
pub type PostgresStore = SqlStore<Postgres>;

impl PostgresStore {
    /// Connects to the database at `url` and runs the migrations (under sqlx's advisory
    /// lock, so replicas starting together do not race). Fails within a few seconds when
    /// the server does not answer; errors never show the password.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let pool = grimos_common::db::open_postgres_migrated(
            url,
            SCHEMA,
            MAX_CONNECTIONS,
            CONNECT_TIMEOUT,
            &MIGRATOR,
        )
        .await?;
        Ok(Self::new(pool))
    }
}

impl Backend for Postgres {
    // The session's row lock, held to the end of the transaction.
    const LOCK_SESSION: &'static str = "SELECT id, user_id, create_time, expire_time, revoke_time \
         FROM sessions WHERE id = $1 FOR UPDATE";

    // Sessions locked by a rotation, logout or deletion in progress are left for the next
    // purge rather than waited for (waiting could deadlock with a deletion that locks a user's
    // sessions in another order).
    const PURGE_SESSIONS: &'static str = "DELETE FROM sessions WHERE id IN (
           SELECT id FROM sessions WHERE expire_time < $1 FOR UPDATE SKIP LOCKED)";

    /// Takes [`REVOCATIONS_LOCK`] to the end of the transaction, so concurrent inserts
    /// commit in `seq` order.
    async fn lock_revocations(tx: &mut PgConnection) -> sqlx::Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(REVOCATIONS_LOCK)
            .execute(tx)
            .await?;
        Ok(())
    }

    async fn announce(tx: &mut PgConnection, channel: &'static str) -> sqlx::Result<()> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(channel)
            .execute(tx)
            .await?;
        Ok(())
    }

    /// `LISTEN`s on a connection of its own (a pool of one with the store's settings, so the
    /// store's pool keeps all its connections), made before this returns: the task then
    /// wakes `on_announcement` for each notification, and after its connection was lost and
    /// made again, since notifications sent meanwhile are gone.
    async fn follow(
        pool: &Pool<Self>,
        channel: &'static str,
        on_announcement: Arc<Notify>,
    ) -> sqlx::Result<Option<Task>> {
        let own = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(pool.connect_options().as_ref().clone())
            .await?;
        let mut listener = PgListener::connect_with(&own).await?;
        listener.listen(channel).await?;
        metrics::gauge!("auth_revocation_listening").set(1.0);
        let task: Task = Box::pin(keep_listening(listener, on_announcement));
        Ok(Some(task))
    }

    /// One replica purges at a time ([`PURGE_LOCK`]); the others skip this round.
    async fn claim_purge(tx: &mut PgConnection) -> sqlx::Result<bool> {
        sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(PURGE_LOCK)
            .fetch_one(tx)
            .await
    }
}

/// Wakes `on_announcement` for each notification `listener` receives, and each time it has
/// made its lost connection again; after a failed attempt it waits, longer each time up to
/// [`LISTEN_RETRY_MAX`], and tries again.
async fn keep_listening(mut listener: PgListener, on_announcement: Arc<Notify>) {
    let mut retry = LISTEN_RETRY;
    loop {
        match listener.try_recv().await {
            Ok(notification) => {
                if notification.is_none() {
                    // The connection was lost and is made again (listening again): what was
                    // announced in between is read now.
                    tracing::info!("listening for revocations again");
                }
                metrics::gauge!("auth_revocation_listening").set(1.0);
                retry = LISTEN_RETRY;
                on_announcement.notify_one();
            }
            Err(error) => {
                metrics::gauge!("auth_revocation_listening").set(0.0);
                tracing::warn!(%error, ?retry, "cannot listen for revocations; retrying");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(LISTEN_RETRY_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! What only PostgreSQL has: writers that block on its row and advisory locks, on a real
    //! server (`GRIMOS_TEST_POSTGRES_URL`; they fail without one). The behaviour both backends
    //! share is tested on both, in `store/mod.rs`.

    use super::*;
    use crate::error::Error;
    use crate::store::Store as _;
    use crate::store::tests::{credential, postgres_store, revocation, session};

    /// Waits (at most 5 s) until some session of this database waits for a lock another one
    /// holds: the condition, as the server sees it, that a test of blocking is about.
    async fn until_a_session_waits_for_a_lock(store: &PostgresStore) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let waiting: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
                 WHERE NOT l.granted AND a.datname = current_database())",
            )
            .fetch_one(&store.pool)
            .await
            .unwrap();
            if waiting {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nothing waits for a lock"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_login_racing_a_deletion_gets_invalid_credentials() {
        let fixture = postgres_store().await;
        let store = &fixture.store;
        store
            .insert_credential(&credential("u1", "ada@example.com"))
            .await
            .unwrap();
        // The deletion is in progress (uncommitted) when the login stores its session.
        let mut deleting = store.pool.begin().await.unwrap();
        sqlx::query("DELETE FROM credentials WHERE user_id = 'u1'")
            .execute(&mut *deleting)
            .await
            .unwrap();
        let login = tokio::spawn({
            let store = std::sync::Arc::clone(store);
            async move { store.create_session(&session("s1", "u1"), b"t1").await }
        });
        until_a_session_waits_for_a_lock(store).await;
        assert!(!login.is_finished(), "the login waits for the deletion");
        deleting.commit().await.unwrap();
        assert!(matches!(
            login.await.unwrap(),
            Err(Error::InvalidCredentials)
        ));
        // And once it is gone, plainly.
        assert!(matches!(
            store.create_session(&session("s2", "u1"), b"t2").await,
            Err(Error::InvalidCredentials)
        ));
    }

    #[tokio::test]
    async fn revocations_become_visible_in_seq_order() {
        let fixture = postgres_store().await;
        let store = &fixture.store;
        // A revocation written but not yet committed...
        let mut first = store.pool.begin().await.unwrap();
        PostgresStore::insert_revocation_in(&mut first, &revocation("a"))
            .await
            .unwrap();
        // ...holds back the next one, which would otherwise commit first with a higher seq
        // and let a poller move past the lower one for good.
        let second = tokio::spawn({
            let store = std::sync::Arc::clone(store);
            async move { store.insert_revocation(&revocation("b")).await }
        });
        until_a_session_waits_for_a_lock(store).await;
        assert!(!second.is_finished(), "the second insert waits");
        assert!(store.revocations_after(0).await.unwrap().is_empty());
        first.commit().await.unwrap();
        second.await.unwrap().unwrap();
        let rows = store.revocations_after(0).await.unwrap();
        let subjects: Vec<_> = rows.iter().map(|(_, r)| r.subject.as_str()).collect();
        assert_eq!(subjects, ["a", "b"]);
        assert!(rows[0].0 < rows[1].0);
        let after_first = store.revocations_after(rows[0].0).await.unwrap();
        assert_eq!(after_first.len(), 1);
        assert_eq!(after_first[0].1, revocation("b"));
    }

    #[tokio::test]
    async fn a_purge_skips_its_round_while_another_replica_purges() {
        let fixture = postgres_store().await;
        let store = &fixture.store;
        let mut expired = revocation("expired");
        expired.expire_time = 1_500;
        store.insert_revocation(&expired).await.unwrap();
        // Another replica purging meanwhile: this one skips its round, without waiting.
        let mut other = store.pool.begin().await.unwrap();
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PURGE_LOCK)
            .execute(&mut *other)
            .await
            .unwrap();
        store.purge(2_000, 60).await.unwrap();
        assert_eq!(store.revocations_after(0).await.unwrap().len(), 1);
        other.rollback().await.unwrap();
        store.purge(2_000, 60).await.unwrap();
        assert!(store.revocations_after(0).await.unwrap().is_empty());
    }
}
