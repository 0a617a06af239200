//! Profile storage behind one trait ([`UserStore`]), so handlers never see SQL, with two
//! backends: [`SqliteUserStore`] (`sqlite://` URLs) and [`PostgresUserStore`] (`postgres://`
//! URLs). Both are [`sql::SqlUserStore`], the one implementation, so they behave the same by
//! construction; each backend's file holds only its SQL where the dialects differ and how it
//! serves the hot reads. Every conditional write is one statement or one transaction, so
//! among concurrent requests exactly one wins each state change.
//!
//! This module never talks to auth-service: keeping the two databases consistent is
//! `service.rs`'s job, through the `state` and `lease_until` columns.

use async_trait::async_trait;

use crate::error::Result;

mod postgres;
pub mod sql;
mod sqlite;

pub use postgres::{MIGRATOR as POSTGRES_MIGRATOR, PostgresUserStore};
pub use sqlite::{MIGRATOR, SqliteUserStore};

/// Where a profile is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Sign-up in flight: not visible.
    Pending,
    /// Visible.
    Active,
    /// Deletion in flight: not visible.
    Deleting,
}

impl State {
    /// The `state` column's value; anything unknown is treated as `deleting` (invisible).
    fn parse(s: &str) -> Self {
        match s {
            "active" => State::Active,
            "pending" => State::Pending,
            _ => State::Deleting,
        }
    }
}

/// A stored profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// User id (a UUID).
    pub id: String,
    /// Lower-cased email.
    pub email: String,
    /// Trimmed display name.
    pub display_name: String,
    /// Roles granted by auth-service.
    pub roles: Vec<String>,
    /// Life-cycle state.
    pub state: State,
    /// Unix microseconds.
    pub create_time: i64,
    /// Unix microseconds.
    pub update_time: i64,
    /// For pending rows: until when the sign-up that made it owns it (Unix microseconds).
    pub lease_until: Option<i64>,
}

/// What trying to reserve an email for a sign-up found.
#[derive(Debug)]
pub enum Reservation {
    /// A pending row was inserted for this sign-up.
    Reserved,
    /// An active (or deleting) user has the email.
    Taken,
    /// Another sign-up for the email is in flight and owns its row.
    InFlight,
    /// An abandoned sign-up holds the email: its credential must be cleaned up first.
    Abandoned {
        /// The abandoned row's id.
        id: String,
    },
}

/// The persistence user-service needs.
#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// Checks that the database answers.
    async fn ping(&self) -> Result<()>;
    /// The connections of the store's pools now (for `/metrics`; costs no query).
    fn pools(&self) -> Vec<grimos_common::db::PoolStats>;
    /// The page-token key, created on first use and shared by replicas.
    async fn page_key(&self) -> Result<Vec<u8>>;
    /// Reserves `profile.email` with a pending row leased until `lease_until`.
    async fn reserve(&self, profile: &Profile) -> Result<Reservation>;
    /// Replaces the abandoned pending row `old_id` with `profile`; false if it is no longer
    /// abandoned (another request got there first).
    async fn replace_abandoned(&self, old_id: &str, profile: &Profile, now: i64) -> Result<bool>;
    /// Makes a pending profile active with its roles (its times stay those of the sign-up);
    /// `None` if it is not pending any more.
    async fn activate(&self, id: &str, roles: &[String]) -> Result<Option<Profile>>;
    /// Ends the lease of a pending row, so a retry may clean it up at once.
    async fn release(&self, id: &str) -> Result<()>;
    /// Deletes a row if it is pending.
    async fn delete_pending(&self, id: &str) -> Result<()>;
    /// A profile in any state.
    async fn get(&self, id: &str) -> Result<Option<Profile>>;
    /// Sets the display name of an active profile; `None` if there is none.
    async fn update_display_name(
        &self,
        id: &str,
        display_name: &str,
        now: i64,
    ) -> Result<Option<Profile>>;
    /// Marks an active profile (or, with `pending_expired_before`, an abandoned pending one)
    /// as deleting; false if it was neither.
    async fn mark_deleting(&self, id: &str, pending_expired_before: Option<i64>) -> Result<bool>;
    /// Deletes a row whatever its state.
    async fn delete(&self, id: &str) -> Result<()>;
    /// Active profiles after `after` (create time, id), in that order, at most `limit`.
    async fn list(&self, after: Option<(i64, String)>, limit: i64) -> Result<Vec<Profile>>;
    /// Ids of rows the reconciler must finish: deleting rows, and pending rows whose lease
    /// ended before `now`.
    async fn unfinished(&self, now: i64) -> Result<Vec<(String, State)>>;
}

impl Reservation {
    /// What a sign-up starting at `now` finds when the row `id` in `state`, leased until
    /// `lease_until`, holds its email.
    fn of_existing(id: String, state: State, lease_until: Option<i64>, now: i64) -> Self {
        match state {
            State::Pending if lease_until.is_some_and(|l| l > now) => Reservation::InFlight,
            State::Pending => Reservation::Abandoned { id },
            State::Active | State::Deleting => Reservation::Taken,
        }
    }
}

/// The same behaviour checked on both backends: SQLite, and PostgreSQL on the server of
/// `GRIMOS_TEST_POSTGRES_URL`.
#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::error::Error;

    /// A store, and what must live as long as it (its folder or database).
    struct Fixture {
        name: &'static str,
        store: Arc<dyn UserStore>,
        url: String,
        _keep: Box<dyn Send>,
    }

    /// SQLite, in a new folder.
    async fn sqlite_backend() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/user.db", dir.path().display());
        Fixture {
            name: "sqlite",
            store: Arc::new(SqliteUserStore::open(&url).await.unwrap()),
            url,
            _keep: Box::new(dir),
        }
    }

    /// PostgreSQL, in a new database (panics without `GRIMOS_TEST_POSTGRES_URL`).
    async fn postgres_backend() -> Fixture {
        let db = grimos_test_support::postgres::database().await;
        let store = PostgresUserStore::open(&db.url, Duration::from_secs(5))
            .await
            .unwrap();
        Fixture {
            name: "postgres",
            store: Arc::new(store),
            url: db.url.clone(),
            _keep: Box::new(db),
        }
    }

    grimos_test_support::on_both_backends!(
        sqlite_backend,
        postgres_backend;
        the_sign_up_and_deletion_states,
        abandoned_sign_ups_are_taken_over_once_and_claimed_by_the_reconciler,
        updates_keep_update_time_increasing,
        concurrent_claims_have_exactly_one_winner,
        lists_walk_active_rows_by_create_time_then_bytewise_id,
        the_page_key_is_made_once_and_kept,
    );

    fn pending(id: &str, email: &str, now: i64, lease_until: i64) -> Profile {
        Profile {
            id: id.into(),
            email: email.into(),
            display_name: "Name".into(),
            roles: Vec::new(),
            state: State::Pending,
            create_time: now,
            update_time: now,
            lease_until: Some(lease_until),
        }
    }

    fn reserved(r: &Reservation) -> bool {
        matches!(r, Reservation::Reserved)
    }

    async fn the_sign_up_and_deletion_states(b: Fixture) {
        let (s, n) = (&b.store, b.name);
        let ada = pending("id-ada", "ada@x.io", 1_000, 2_000);
        assert!(reserved(&s.reserve(&ada).await.unwrap()), "{n}");
        let got = s.get("id-ada").await.unwrap().unwrap();
        assert_eq!(got, ada, "{n}: stored as given, roles empty");
        // A second sign-up for the email while the lease runs: in flight.
        let again = pending("id-ada2", "ada@x.io", 1_500, 2_500);
        assert!(
            matches!(s.reserve(&again).await.unwrap(), Reservation::InFlight),
            "{n}"
        );
        // The same id with another email breaks the primary key: ALREADY_EXISTS.
        let same_id = pending("id-ada", "other@x.io", 1_500, 2_500);
        assert!(
            matches!(s.reserve(&same_id).await, Err(Error::AlreadyExists)),
            "{n}"
        );
        assert_eq!(s.unfinished(1_999).await.unwrap(), vec![], "{n}: leased");

        let roles = vec!["user".to_owned(), "admin".to_owned()];
        let active = s.activate("id-ada", &roles).await.unwrap().unwrap();
        assert_eq!(active.state, State::Active, "{n}");
        assert_eq!(active.roles, roles, "{n}");
        assert_eq!(active.lease_until, None, "{n}");
        assert_eq!(
            (active.create_time, active.update_time),
            (1_000, 1_000),
            "{n}"
        );
        assert!(s.activate("id-ada", &roles).await.unwrap().is_none(), "{n}");
        assert_eq!(s.get("id-ada").await.unwrap().unwrap(), active, "{n}");
        assert!(
            matches!(s.reserve(&again).await.unwrap(), Reservation::Taken),
            "{n}"
        );
        // Pending-only operations leave an active row alone.
        s.release("id-ada").await.unwrap();
        s.delete_pending("id-ada").await.unwrap();
        assert!(
            !s.mark_deleting("id-ada", Some(i64::MAX)).await.unwrap(),
            "{n}"
        );
        assert_eq!(s.get("id-ada").await.unwrap().unwrap(), active, "{n}");

        assert!(s.mark_deleting("id-ada", None).await.unwrap(), "{n}");
        assert!(!s.mark_deleting("id-ada", None).await.unwrap(), "{n}");
        assert_eq!(
            s.get("id-ada").await.unwrap().unwrap().state,
            State::Deleting,
            "{n}"
        );
        assert!(
            matches!(s.reserve(&again).await.unwrap(), Reservation::Taken),
            "{n}: a deleting row still holds the email"
        );
        assert!(
            s.update_display_name("id-ada", "X", 5_000)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            s.unfinished(0).await.unwrap(),
            vec![("id-ada".to_owned(), State::Deleting)],
            "{n}"
        );
        s.delete("id-ada").await.unwrap();
        assert!(s.get("id-ada").await.unwrap().is_none(), "{n}");
        assert!(
            reserved(&s.reserve(&again).await.unwrap()),
            "{n}: free again"
        );
    }

    async fn abandoned_sign_ups_are_taken_over_once_and_claimed_by_the_reconciler(b: Fixture) {
        let (s, n) = (&b.store, b.name);
        let old = pending("id-old", "bob@x.io", 1_000, 2_000);
        assert!(reserved(&s.reserve(&old).await.unwrap()), "{n}");
        let new = pending("id-new", "bob@x.io", 2_000, 3_000);
        match s.reserve(&new).await.unwrap() {
            Reservation::Abandoned { id } => assert_eq!(id, "id-old", "{n}"),
            other => panic!("{n}: {other:?}"),
        }
        // Not while the old lease runs.
        assert!(
            !s.replace_abandoned("id-old", &new, 1_999).await.unwrap(),
            "{n}"
        );
        assert!(s.get("id-new").await.unwrap().is_none(), "{n}");
        assert!(
            s.replace_abandoned("id-old", &new, 2_000).await.unwrap(),
            "{n}"
        );
        assert!(
            !s.replace_abandoned("id-old", &new, 2_000).await.unwrap(),
            "{n}"
        );
        assert!(s.get("id-old").await.unwrap().is_none(), "{n}");
        assert_eq!(s.get("id-new").await.unwrap().unwrap(), new, "{n}");

        // Released: abandoned at once; the reconciler claims it exactly once.
        s.release("id-new").await.unwrap();
        assert_eq!(s.get("id-new").await.unwrap().unwrap().lease_until, Some(0));
        assert_eq!(
            s.unfinished(1).await.unwrap(),
            vec![("id-new".to_owned(), State::Pending)],
            "{n}"
        );
        assert!(!s.mark_deleting("id-new", None).await.unwrap(), "{n}");
        assert!(s.mark_deleting("id-new", Some(1)).await.unwrap(), "{n}");
        assert!(!s.mark_deleting("id-new", Some(1)).await.unwrap(), "{n}");
        assert!(s.activate("id-new", &[]).await.unwrap().is_none(), "{n}");
        assert_eq!(
            s.unfinished(1).await.unwrap(),
            vec![("id-new".to_owned(), State::Deleting)],
            "{n}"
        );

        // A failed sign-up's row is deleted only while pending.
        let carol = pending("id-carol", "carol@x.io", 1_000, 9_000);
        assert!(reserved(&s.reserve(&carol).await.unwrap()), "{n}");
        s.delete_pending("id-carol").await.unwrap();
        assert!(s.get("id-carol").await.unwrap().is_none(), "{n}");
    }

    async fn updates_keep_update_time_increasing(b: Fixture) {
        let (s, n) = (&b.store, b.name);
        let p = pending("id-1", "u@x.io", 1_000, 2_000);
        s.reserve(&p).await.unwrap();
        assert!(
            s.update_display_name("id-1", "A", 5_000)
                .await
                .unwrap()
                .is_none()
        );
        s.activate("id-1", &["user".into()]).await.unwrap().unwrap();
        let updated = s
            .update_display_name("id-1", "A", 5_000)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (updated.display_name.as_str(), updated.update_time),
            ("A", 5_000)
        );
        assert_eq!(updated.create_time, 1_000, "{n}");
        // A clock behind the last update still moves it forward.
        let updated = s
            .update_display_name("id-1", "B", 10)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(updated.update_time, 5_001, "{n}");
        // Concurrent updates at one instant: none lost, each one later than the last.
        let updates = (0..16).map(|i| {
            let s = s.clone();
            tokio::spawn(
                async move { s.update_display_name("id-1", &format!("N{i}"), 6_000).await },
            )
        });
        let mut times = Vec::new();
        for u in updates {
            times.push(u.await.unwrap().unwrap().unwrap().update_time);
        }
        times.sort_unstable();
        assert_eq!(times, (6_000..6_016).collect::<Vec<_>>(), "{n}");
    }

    async fn concurrent_claims_have_exactly_one_winner(b: Fixture) {
        let (s, n) = (&b.store, b.name);
        for round in 0..5 {
            // One email, many sign-ups at once.
            let email = format!("race{round}@x.io");
            let tries = (0..16).map(|i| {
                let (s, p) = (
                    s.clone(),
                    pending(&format!("r{round}-{i}"), &email, 1_000, i64::MAX),
                );
                tokio::spawn(async move { s.reserve(&p).await })
            });
            let mut won = 0;
            for t in tries {
                match t.await.unwrap() {
                    Ok(Reservation::Reserved) => won += 1,
                    Ok(Reservation::InFlight) | Err(Error::AlreadyExists) => {}
                    other => panic!("{n}: {other:?}"),
                }
            }
            assert_eq!(won, 1, "{n} round {round}");

            // One abandoned row, many takers.
            let old = pending(&format!("old{round}"), &format!("ab{round}@x.io"), 0, 0);
            s.reserve(&old).await.unwrap();
            let takers = (0..8).map(|i| {
                let s = s.clone();
                let p = pending(&format!("new{round}-{i}"), &old.email, 10, 100);
                let old_id = old.id.clone();
                tokio::spawn(async move { s.replace_abandoned(&old_id, &p, 10).await })
            });
            let mut won = 0;
            for t in takers {
                match t.await.unwrap() {
                    Ok(true) => won += 1,
                    Ok(false) | Err(Error::AlreadyExists) => {}
                    Err(e) => panic!("{n}: {e}"),
                }
            }
            assert_eq!(won, 1, "{n} round {round}");

            // Activation racing the reconciler's claim on an expired pending row.
            let id = format!("late{round}");
            s.reserve(&pending(&id, &format!("late{round}@x.io"), 0, 5))
                .await
                .unwrap();
            let (a, m) = tokio::join!(
                {
                    let (s, id) = (s.clone(), id.clone());
                    tokio::spawn(async move { s.activate(&id, &[]).await })
                },
                {
                    let (s, id) = (s.clone(), id.clone());
                    tokio::spawn(async move { s.mark_deleting(&id, Some(10)).await })
                }
            );
            let activated = a.unwrap().unwrap().is_some();
            let claimed = m.unwrap().unwrap();
            assert!(activated != claimed, "{n}: {activated} {claimed}");
        }
    }

    async fn lists_walk_active_rows_by_create_time_then_bytewise_id(b: Fixture) {
        let (s, n) = (&b.store, b.name);
        // Ties on create time, ids whose order differs between byte order and
        // natural-language collations ("B" < "a", "a-c" < "ab" only byte-wise).
        let ids = ["a", "B", "ab", "a-c", "_x", "Z", "0", "é", "e"];
        for (i, id) in ids.iter().enumerate() {
            let time = if i % 2 == 0 { 100 } else { 50 };
            s.reserve(&pending(id, &format!("{i}@x.io"), time, i64::MAX))
                .await
                .unwrap();
            if *id != "Z" {
                s.activate(id, &[]).await.unwrap().unwrap();
            }
        }
        let mut expected: Vec<(i64, String)> = ids
            .iter()
            .enumerate()
            .filter(|(_, id)| **id != "Z")
            .map(|(i, id)| (if i % 2 == 0 { 100 } else { 50 }, (*id).to_owned()))
            .collect();
        expected.sort();
        for limit in [1, 2, 3, 100] {
            let mut seen = Vec::new();
            let mut after = None;
            loop {
                let page = s.list(after.clone(), limit).await.unwrap();
                assert!(page.len() <= usize::try_from(limit).unwrap());
                let Some(last) = page.last() else { break };
                after = Some((last.create_time, last.id.clone()));
                seen.extend(page.iter().map(|p| (p.create_time, p.id.clone())));
            }
            assert_eq!(seen, expected, "{n}, limit {limit}");
        }
        let unique: HashSet<_> = expected.iter().collect();
        assert_eq!(unique.len(), expected.len());
    }

    async fn the_page_key_is_made_once_and_kept(b: Fixture) {
        let key = b.store.page_key().await.unwrap();
        assert_eq!(key.len(), 32, "{}", b.name);
        assert_eq!(b.store.page_key().await.unwrap(), key, "{}", b.name);
        b.store.ping().await.unwrap();
        // Another process on the same database shares it.
        let other: Arc<dyn UserStore> = if b.name == "postgres" {
            Arc::new(
                PostgresUserStore::open(&b.url, Duration::from_secs(5))
                    .await
                    .unwrap(),
            )
        } else {
            Arc::new(SqliteUserStore::open(&b.url).await.unwrap())
        };
        assert_eq!(other.page_key().await.unwrap(), key, "{}", b.name);
    }

    #[tokio::test]
    async fn postgres_pages_are_index_backed_and_ids_bytewise() {
        let db = grimos_test_support::postgres::database().await;
        PostgresUserStore::open(&db.url, Duration::from_secs(5))
            .await
            .unwrap();
        let mut conn = db.connect_in("user_service").await;
        let collation: Option<String> = sqlx::query_scalar(
            "SELECT collation_name FROM information_schema.columns
             WHERE table_schema = 'user_service' AND table_name = 'users' AND column_name = 'id'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(collation.as_deref(), Some("C"));
        // A realistic table (a tenth of it pending), with statistics.
        sqlx::query(
            "INSERT INTO users
             SELECT 'id' || g, 'e' || g || '@x.io', 'N', '',
                    CASE WHEN g % 10 = 0 THEN 'pending' ELSE 'active' END, g, g, NULL
             FROM generate_series(1, 5000) g",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::query("ANALYZE users")
            .execute(&mut conn)
            .await
            .unwrap();
        for (query, params) in [(sql::LIST_FIRST, 1), (sql::LIST_AFTER, 3)] {
            let query = format!("EXPLAIN {query}");
            let mut explain = sqlx::query_scalar::<_, String>(&query);
            if params == 3 {
                explain = explain.bind(2_500_i64).bind("x");
            }
            let plan = explain
                .bind(101_i64)
                .fetch_all(&mut conn)
                .await
                .unwrap()
                .join("\n");
            assert!(plan.contains("users_by_create_time"), "{plan}");
            assert!(!plan.contains("Sort"), "walks the index in order: {plan}");
        }
    }
}
