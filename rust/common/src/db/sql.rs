//! Store code written once for both backends: [`Sql`], implemented for [`sqlx::Sqlite`] and
//! [`sqlx::Postgres`], and [`Statement`], a query that a function generic over `DB: Sql` can
//! bind, run and read without naming a driver.
//!
//! sqlx's `Database` trait leaves what a driver can bind, decode and run to each driver, so
//! code generic over it would restate a dozen bounds (`for<'q> i64: Encode<'q, DB>`, an
//! `Executor` for `&mut DB::Connection`, ...) on every function and impl. Here they are stated
//! once: a value is a [`Param`] (or a [`Column`]) when both drivers take it, and the statement
//! methods are implemented for each driver by [`sql_for`]. Statements name their parameters
//! `$1`, `$2`, ..., which SQLite reads as well as PostgreSQL, so one text serves both
//! backends wherever their dialects agree.
//!
//! This module holds no statement of either service, and no rule about their data; the one
//! difference between the backends that both services' stores rely on lives here too: how a
//! write transaction starts ([`Sql::begin_write`]).

use std::future::Future;
use std::ops::{Deref, DerefMut};

use tracing::Instrument as _;

use sqlx::pool::PoolConnection;
use sqlx::query::Query;
use sqlx::{Database, Decode, Encode, Pool, Postgres, Sqlite, Transaction, Type};

/// A value a [`Statement`] can bind: one both drivers encode (`i64`, `Option<i64>`, `&str`,
/// `String`, `&[u8]`, ...).
pub trait Param<'q>:
    'q + Send + Encode<'q, Sqlite> + Type<Sqlite> + Encode<'q, Postgres> + Type<Postgres>
{
}

impl<'q, T> Param<'q> for T where
    T: 'q + Send + Encode<'q, Sqlite> + Type<Sqlite> + Encode<'q, Postgres> + Type<Postgres>
{
}

/// A value a row's column can be read as ([`Columns::column`]): one both drivers decode.
pub trait Column<'r>:
    Decode<'r, Sqlite> + Type<Sqlite> + Decode<'r, Postgres> + Type<Postgres>
{
}

impl<'r, T> Column<'r> for T where
    T: Decode<'r, Sqlite> + Type<Sqlite> + Decode<'r, Postgres> + Type<Postgres>
{
}

/// Reading a row of either driver by column index.
pub trait Columns {
    /// Column `index` (from 0) as a `T`; an error if it is missing or of another type.
    fn column<'r, T: Column<'r>>(&'r self, index: usize) -> sqlx::Result<T>;
}

/// Where a statement runs: on a connection (a transaction's, `&mut *tx`, or one taken from
/// the pool, `&mut *connection`) or on the pool (`&pool`), as with sqlx's executors.
pub enum On<'e, DB: Database> {
    /// One connection, for statements that must share it (a transaction).
    Connection(&'e mut DB::Connection),
    /// Any connection of the pool.
    Pool(&'e Pool<DB>),
}

impl<'e, DB: Database> From<&'e mut DB::Connection> for On<'e, DB> {
    fn from(connection: &'e mut DB::Connection) -> Self {
        On::Connection(connection)
    }
}

impl<'e, DB: Database> From<&'e Pool<DB>> for On<'e, DB> {
    fn from(pool: &'e Pool<DB>) -> Self {
        On::Pool(pool)
    }
}

impl<'e, DB: Database> On<'e, DB> {
    /// The connection to run on: the one given, or one taken from the pool (returned to it
    /// when dropped), which is what sqlx does for a query run on a pool.
    async fn connection(self) -> sqlx::Result<Held<'e, DB>> {
        Ok(match self {
            On::Connection(connection) => Held::Borrowed(connection),
            On::Pool(pool) => Held::Pooled(pool.acquire().await?),
        })
    }
}

/// A connection a statement runs on ([`On::connection`]).
enum Held<'e, DB: Database> {
    Borrowed(&'e mut DB::Connection),
    Pooled(PoolConnection<DB>),
}

impl<DB: Database> Deref for Held<'_, DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        match self {
            Held::Borrowed(connection) => connection,
            Held::Pooled(connection) => connection,
        }
    }
}

impl<DB: Database> DerefMut for Held<'_, DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        match self {
            Held::Borrowed(connection) => connection,
            Held::Pooled(connection) => connection,
        }
    }
}

/// A query with its arguments, as sqlx builds it for `DB`.
type Built<'q, DB> = Query<'q, DB, <DB as Database>::Arguments<'q>>;

/// A database the services' stores are written for: SQLite or PostgreSQL. Store code generic
/// over `DB: Sql` builds statements with [`Sql::query`] and reads rows with
/// [`Columns::column`]; the other methods are what those run on.
pub trait Sql: Database<Row: Columns> {
    /// A statement that succeeds only while the database can be read: PostgreSQL's `SELECT 1`;
    /// on SQLite one that reads the schema, so that the file itself must be readable
    /// (`SELECT 1` touches nothing).
    const PING: &'static str;

    /// The backend's name in OpenTelemetry's `db.system.name`: `sqlite`, `postgresql`.
    const SYSTEM: &'static str;

    /// Starts a transaction for a read followed by writes that must not interleave with
    /// another writer's. SQLite takes the database's write lock at once (`BEGIN IMMEDIATE`),
    /// which is all it has: a deferred transaction that reads first would fail, not wait, when
    /// another writer got in between. PostgreSQL starts an ordinary transaction: the store
    /// takes the row and advisory locks it needs.
    fn begin_write(
        pool: &Pool<Self>,
    ) -> impl Future<Output = sqlx::Result<Transaction<'static, Self>>> + Send + '_;

    /// The statement `sql`, to bind and run.
    fn query(sql: &str) -> Statement<'_, Self> {
        Statement(sqlx::query(sql), sql)
    }

    /// `query` with `value` bound to its next parameter.
    fn bind<'q, T: Param<'q>>(query: Built<'q, Self>, value: T) -> Built<'q, Self>;

    /// Runs `query` on `connection`; the number of rows it changed.
    fn execute<'e, 'q: 'e>(
        query: Built<'q, Self>,
        connection: &'e mut Self::Connection,
    ) -> impl Future<Output = sqlx::Result<u64>> + Send + 'e;

    /// Runs `query` on `connection`; its first row, if any.
    fn fetch_optional<'e, 'q: 'e>(
        query: Built<'q, Self>,
        connection: &'e mut Self::Connection,
    ) -> impl Future<Output = sqlx::Result<Option<Self::Row>>> + Send + 'e;

    /// Runs `query` on `connection`; all its rows.
    fn fetch_all<'e, 'q: 'e>(
        query: Built<'q, Self>,
        connection: &'e mut Self::Connection,
    ) -> impl Future<Output = sqlx::Result<Vec<Self::Row>>> + Send + 'e;
}

/// A statement for `DB` ([`Sql::query`]): bind its parameters in order, then run it on a
/// connection or a pool, like a sqlx query.
#[must_use = "a statement does nothing until it is run"]
pub struct Statement<'q, DB: Database>(Built<'q, DB>, &'q str);

impl<'q, DB: Sql> Statement<'q, DB> {
    /// Binds `value` to the next parameter.
    pub fn bind<T: Param<'q>>(self, value: T) -> Self {
        Self(DB::bind(self.0, value), self.1)
    }

    /// The span the statement runs in (taking its connection included): its text, never
    /// its values.
    fn span(&self) -> tracing::Span {
        crate::telemetry::db_span(DB::SYSTEM, self.1)
    }

    /// Runs the statement; the number of rows it changed.
    pub async fn execute<'e>(self, on: impl Into<On<'e, DB>>) -> sqlx::Result<u64>
    where
        'q: 'e,
    {
        let span = self.span();
        async move { DB::execute(self.0, &mut *on.into().connection().await?).await }
            .instrument(span)
            .await
    }

    /// Runs the statement; its first row, if any.
    pub async fn fetch_optional<'e>(
        self,
        on: impl Into<On<'e, DB>>,
    ) -> sqlx::Result<Option<DB::Row>>
    where
        'q: 'e,
    {
        let span = self.span();
        async move { DB::fetch_optional(self.0, &mut *on.into().connection().await?).await }
            .instrument(span)
            .await
    }

    /// Runs the statement; its first row, or [`sqlx::Error::RowNotFound`].
    pub async fn fetch_one<'e>(self, on: impl Into<On<'e, DB>>) -> sqlx::Result<DB::Row>
    where
        'q: 'e,
    {
        self.fetch_optional(on)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }

    /// Runs the statement; all its rows.
    pub async fn fetch_all<'e>(self, on: impl Into<On<'e, DB>>) -> sqlx::Result<Vec<DB::Row>>
    where
        'q: 'e,
    {
        let span = self.span();
        async move { DB::fetch_all(self.0, &mut *on.into().connection().await?).await }
            .instrument(span)
            .await
    }
}

/// [`Sql`] and the row reader for one driver: its `PING` statement and how it begins a write
/// transaction, and the statement methods, whose text is the same for both drivers (the
/// bounds of each driver's own impls do the work).
macro_rules! sql_for {
    ($db:ty, $row:ty, system: $system:literal, ping: $ping:literal, begin_write($pool:ident) => $begin:expr $(,)?) => {
        impl Columns for $row {
            fn column<'r, T: Column<'r>>(&'r self, index: usize) -> sqlx::Result<T> {
                sqlx::Row::try_get(self, index)
            }
        }

        impl Sql for $db {
            const PING: &'static str = $ping;
            const SYSTEM: &'static str = $system;

            fn begin_write(
                $pool: &Pool<Self>,
            ) -> impl Future<Output = sqlx::Result<Transaction<'static, Self>>> + Send + '_ {
                $begin
            }

            fn bind<'q, T: Param<'q>>(query: Built<'q, Self>, value: T) -> Built<'q, Self> {
                query.bind(value)
            }

            async fn execute<'e, 'q: 'e>(
                query: Built<'q, Self>,
                connection: &'e mut Self::Connection,
            ) -> sqlx::Result<u64> {
                Ok(query.execute(connection).await?.rows_affected())
            }

            fn fetch_optional<'e, 'q: 'e>(
                query: Built<'q, Self>,
                connection: &'e mut Self::Connection,
            ) -> impl Future<Output = sqlx::Result<Option<Self::Row>>> + Send + 'e {
                query.fetch_optional(connection)
            }

            fn fetch_all<'e, 'q: 'e>(
                query: Built<'q, Self>,
                connection: &'e mut Self::Connection,
            ) -> impl Future<Output = sqlx::Result<Vec<Self::Row>>> + Send + 'e {
                query.fetch_all(connection)
            }
        }
    };
}

sql_for!(
    Sqlite,
    sqlx::sqlite::SqliteRow,
    system: "sqlite",
    ping: "SELECT count(*) FROM sqlite_master",
    begin_write(pool) => pool.begin_with("BEGIN IMMEDIATE"),
);
sql_for!(
    Postgres,
    sqlx::postgres::PgRow,
    system: "postgresql",
    ping: "SELECT 1",
    begin_write(pool) => pool.begin(),
);
