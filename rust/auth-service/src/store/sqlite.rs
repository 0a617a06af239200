//! [`Store`] on SQLite (sqlx): WAL, `synchronous = FULL`, migrations embedded in the binary.

use async_trait::async_trait;
use sqlx::{Row, SqlitePool};

use super::{Credential, RefreshOutcome, Session, Store};
use crate::error::{Error, Result};
use crate::revocation::{Kind, Revocation};

/// The embedded migrations of `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// auth-service's tables in one SQLite database.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens the database at `url` (creating it) and runs the migrations.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let pool = grimos_common::db::open_sqlite_migrated(url, 8, &MIGRATOR).await?;
        Ok(Self { pool })
    }

    /// Starts a transaction that holds the write lock from its first statement, so a read
    /// followed by a write cannot interleave with another writer.
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

fn join_roles(roles: &[String]) -> String {
    roles.join(",")
}

fn split_roles(roles: &str) -> Vec<String> {
    roles
        .split(',')
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect()
}

async fn insert_revocation_in(
    tx: &mut sqlx::SqliteConnection,
    revocation: &Revocation,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO revocations (kind, subject, revoke_time, expire_time) VALUES (?1, ?2, ?3, ?4)",
    )
    .bind(revocation.kind.as_str())
    .bind(&revocation.subject)
    .bind(revocation.revoke_time)
    .bind(revocation.expire_time)
    .execute(tx)
    .await?;
    Ok(())
}

/// Looks a refresh token up with its session, inside a write transaction.
async fn find_refresh_token(
    tx: &mut sqlx::SqliteConnection,
    digest: &[u8],
) -> Result<Option<(Session, Option<i64>, Option<i64>)>> {
    let row = sqlx::query(
        "SELECT s.id, s.user_id, s.create_time, s.expire_time, s.revoke_time, t.use_time
         FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
         WHERE t.token_hash = ?1",
    )
    .bind(digest)
    .fetch_optional(tx)
    .await?;
    Ok(row.map(|row| {
        (
            Session {
                id: row.get(0),
                user_id: row.get(1),
                create_time: row.get(2),
                expire_time: row.get(3),
            },
            row.get::<Option<i64>, _>(4),
            row.get::<Option<i64>, _>(5),
        )
    }))
}

async fn revoke_session_in(
    tx: &mut sqlx::SqliteConnection,
    session_id: &str,
    now: i64,
    revocation_ttl: i64,
) -> Result<Revocation> {
    sqlx::query("UPDATE sessions SET revoke_time = ?2 WHERE id = ?1 AND revoke_time IS NULL")
        .bind(session_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let revocation = Revocation {
        kind: Kind::Session,
        subject: session_id.to_owned(),
        revoke_time: now,
        expire_time: now + revocation_ttl,
    };
    insert_revocation_in(tx, &revocation).await?;
    Ok(revocation)
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        // Reads the schema, so the file itself must be readable (`SELECT 1` touches nothing).
        sqlx::query("SELECT count(*) FROM sqlite_master")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert_credential(&self, c: &Credential) -> Result<()> {
        let result = sqlx::query(
            "INSERT INTO credentials (user_id, email, password_hash, roles, create_time)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(&c.user_id)
        .bind(&c.email)
        .bind(&c.password_hash)
        .bind(join_roles(&c.roles))
        .bind(c.create_time)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(Error::AlreadyExists),
            Err(e) => Err(e.into()),
        }
    }

    async fn credential_by_email(&self, email: &str) -> Result<Option<Credential>> {
        let row = sqlx::query(
            "SELECT user_id, email, password_hash, roles, create_time FROM credentials WHERE email = ?1",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| Credential {
            user_id: row.get(0),
            email: row.get(1),
            password_hash: row.get(2),
            roles: split_roles(row.get::<&str, _>(3)),
            create_time: row.get(4),
        }))
    }

    async fn delete_credential(&self, user_id: &str, revocation: &Revocation) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let deleted = sqlx::query("DELETE FROM credentials WHERE user_id = ?1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted > 0 {
            insert_revocation_in(&mut tx, revocation).await?;
        }
        tx.commit().await?;
        Ok(deleted > 0)
    }

    async fn count_login_attempt(
        &self,
        email: &str,
        now: i64,
        window_secs: i64,
    ) -> Result<(i64, i64)> {
        let row = sqlx::query(
            "INSERT INTO login_attempts (email, attempts, window_start) VALUES (?1, 1, ?2)
             ON CONFLICT (email) DO UPDATE SET
               attempts = CASE WHEN window_start <= ?3 THEN 1 ELSE attempts + 1 END,
               window_start = CASE WHEN window_start <= ?3 THEN ?2 ELSE window_start END
             RETURNING attempts, window_start",
        )
        .bind(email)
        .bind(now)
        .bind(now - window_secs)
        .fetch_one(&self.pool)
        .await?;
        Ok((row.get(0), row.get(1)))
    }

    async fn clear_login_attempts(&self, email: &str) -> Result<()> {
        sqlx::query("DELETE FROM login_attempts WHERE email = ?1")
            .bind(email)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn create_session(&self, session: &Session, token_digest: &[u8]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO sessions (id, user_id, create_time, expire_time) VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(&session.id)
        .bind(&session.user_id)
        .bind(session.create_time)
        .bind(session.expire_time)
        .execute(&mut *tx)
        .await
        .map_err(|e| match e {
            // The credential was deleted while this login checked its password.
            sqlx::Error::Database(ref db) if db.is_foreign_key_violation() => {
                Error::InvalidCredentials
            }
            e => e.into(),
        })?;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, issue_time) VALUES (?1, ?2, ?3)",
        )
        .bind(token_digest)
        .bind(&session.id)
        .bind(session.create_time)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn rotate_refresh_token(
        &self,
        old_digest: &[u8],
        new_digest: &[u8],
        now: i64,
        revocation_ttl: i64,
    ) -> Result<RefreshOutcome> {
        let mut tx = self.write_tx().await?;
        let Some((session, revoke_time, use_time)) =
            find_refresh_token(&mut tx, old_digest).await?
        else {
            return Ok(RefreshOutcome::Invalid);
        };
        if revoke_time.is_some() || session.expire_time <= now {
            return Ok(RefreshOutcome::Invalid);
        }
        if use_time.is_some() {
            let revocation = revoke_session_in(&mut tx, &session.id, now, revocation_ttl).await?;
            tx.commit().await?;
            return Ok(RefreshOutcome::Ended {
                revocation,
                reused: true,
            });
        }
        sqlx::query("UPDATE refresh_tokens SET use_time = ?2 WHERE token_hash = ?1")
            .bind(old_digest)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, issue_time) VALUES (?1, ?2, ?3)",
        )
        .bind(new_digest)
        .bind(&session.id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let roles: Option<String> =
            sqlx::query_scalar("SELECT roles FROM credentials WHERE user_id = ?1")
                .bind(&session.user_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(roles) = roles else {
            return Ok(RefreshOutcome::Invalid);
        };
        tx.commit().await?;
        Ok(RefreshOutcome::Rotated {
            session,
            roles: split_roles(&roles),
        })
    }

    async fn end_session(
        &self,
        digest: &[u8],
        now: i64,
        revocation_ttl: i64,
    ) -> Result<RefreshOutcome> {
        let mut tx = self.write_tx().await?;
        let Some((session, revoke_time, use_time)) = find_refresh_token(&mut tx, digest).await?
        else {
            return Ok(RefreshOutcome::Invalid);
        };
        if revoke_time.is_some() || session.expire_time <= now {
            return Ok(RefreshOutcome::Invalid);
        }
        let revocation = revoke_session_in(&mut tx, &session.id, now, revocation_ttl).await?;
        tx.commit().await?;
        Ok(RefreshOutcome::Ended {
            revocation,
            reused: use_time.is_some(),
        })
    }

    async fn end_session_by_id(
        &self,
        session_id: &str,
        now: i64,
        revocation_ttl: i64,
    ) -> Result<RefreshOutcome> {
        let mut tx = self.write_tx().await?;
        let revoke_time: Option<Option<i64>> =
            sqlx::query_scalar("SELECT revoke_time FROM sessions WHERE id = ?1")
                .bind(session_id)
                .fetch_optional(&mut *tx)
                .await?;
        if matches!(revoke_time, Some(Some(_))) {
            return Ok(RefreshOutcome::Invalid);
        }
        let revocation = revoke_session_in(&mut tx, session_id, now, revocation_ttl).await?;
        tx.commit().await?;
        Ok(RefreshOutcome::Ended {
            revocation,
            reused: false,
        })
    }

    async fn insert_revocation(&self, revocation: &Revocation) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        insert_revocation_in(&mut conn, revocation).await
    }

    async fn revocations_after(&self, seq: i64) -> Result<Vec<(i64, Revocation)>> {
        let rows = sqlx::query(
            "SELECT seq, kind, subject, revoke_time, expire_time FROM revocations
             WHERE seq > ?1 ORDER BY seq",
        )
        .bind(seq)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let kind = Kind::parse(row.get::<&str, _>(1))?;
                Some((
                    row.get(0),
                    Revocation {
                        kind,
                        subject: row.get(2),
                        revoke_time: row.get(3),
                        expire_time: row.get(4),
                    },
                ))
            })
            .collect())
    }

    async fn purge(&self, now: i64, login_window_secs: i64) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM revocations WHERE expire_time < ?1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE expire_time < ?1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM login_attempts WHERE window_start <= ?1")
            .bind(now - login_window_secs)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
