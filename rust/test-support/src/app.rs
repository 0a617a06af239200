//! What a service's `spawn_app()` needs besides the service itself: the data an app keeps
//! ([`TestData`]: a folder, and its databases on the suite's backend), the running app
//! ([`Running`]: stopped gracefully when the test says so), and a way into its database
//! ([`Direct`]) for the tests that write what a crash or another process would leave.

use std::fmt::Display;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use grimos_common::db::sql::{Columns as _, Sql};
use grimos_common::shutdown::Stop;
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tempfile::TempDir;
use tokio::sync::{OnceCell, oneshot};
use tokio::task::JoinHandle;

use crate::backend::Backend;
use crate::postgres::PgDatabase;

/// What a test app keeps across a restart and shares with a replica started on it: a folder
/// (key files, and the SQLite files when the suite runs on SQLite) and, when it runs on
/// PostgreSQL ([`Backend::from_env`]), one database in which each service has its own schema.
/// Dropped (folder and database) with the last app holding it.
pub struct TestData {
    dir: TempDir,
    backend: Backend,
    postgres: OnceCell<PgDatabase>,
}

impl TestData {
    /// New, empty data on the suite's backend.
    pub fn new() -> Arc<Self> {
        Self::on(Backend::from_env())
    }

    /// New, empty data on `backend`, whatever the suite's: for a test about that backend.
    pub fn on(backend: Backend) -> Arc<Self> {
        Arc::new(TestData {
            dir: tempfile::tempdir().unwrap(),
            backend,
            postgres: OnceCell::new(),
        })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The backend its databases are on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL of a service's database, `file` on SQLite (`auth.db`, `user.db`, in the
    /// folder; the service creates it). On PostgreSQL every service of this data gets the same
    /// new database, made on first use: each keeps to its own schema there.
    pub async fn database_url(&self, file: &str) -> String {
        match self.backend {
            Backend::Sqlite => format!("sqlite://{}", self.path().join(file).display()),
            Backend::Postgres => self.postgres().await.url.clone(),
        }
    }

    /// A connection to the database of [`TestData::database_url`]`(file)`, in the service's
    /// `schema` on PostgreSQL, for reading and writing its tables directly.
    pub async fn connect(&self, file: &str, schema: &str) -> Direct {
        match self.backend {
            Backend::Sqlite => {
                let options = SqliteConnectOptions::new()
                    .filename(self.path().join(file))
                    .busy_timeout(std::time::Duration::from_secs(5));
                Direct::Sqlite(SqliteConnection::connect_with(&options).await.unwrap())
            }
            Backend::Postgres => Direct::Postgres(self.postgres().await.connect_in(schema).await),
        }
    }

    async fn postgres(&self) -> &PgDatabase {
        self.postgres.get_or_init(crate::postgres::database).await
    }
}

/// The error of a service's start that must fail ([`crate::start_error`]), `build` building
/// the app on new data on the suite's backend, which lives until it returns.
pub async fn build_error<F, T, E>(build: impl FnOnce(Arc<TestData>) -> F, what: &str) -> String
where
    F: Future<Output = Result<T, E>>,
    E: Display,
{
    let data = TestData::new();
    crate::start_error(build(data.clone()).await, what)
}

/// A value bound to a statement run with [`Direct`].
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    /// An integer.
    Int(i64),
    /// Text.
    Text(&'a str),
}

impl From<i64> for Value<'_> {
    fn from(value: i64) -> Self {
        Value::Int(value)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(value: &'a str) -> Self {
        Value::Text(value)
    }
}

/// A connection straight to a service's database ([`TestData::connect`]); statements use
/// `$1`, `$2`, ... on either backend.
pub enum Direct {
    /// The SQLite file.
    Sqlite(SqliteConnection),
    /// The PostgreSQL database.
    Postgres(PgConnection),
}

impl Direct {
    /// Runs `sql` with `values`; the number of rows it changed.
    pub async fn execute(&mut self, sql: &str, values: &[Value<'_>]) -> u64 {
        match self {
            Direct::Sqlite(connection) => execute::<sqlx::Sqlite>(connection, sql, values).await,
            Direct::Postgres(connection) => {
                execute::<sqlx::Postgres>(connection, sql, values).await
            }
        }
    }

    /// Runs `sql` with `values`; the integer in the first column of its first row, if any.
    pub async fn fetch_i64(&mut self, sql: &str, values: &[Value<'_>]) -> Option<i64> {
        match self {
            Direct::Sqlite(connection) => fetch_i64::<sqlx::Sqlite>(connection, sql, values).await,
            Direct::Postgres(connection) => {
                fetch_i64::<sqlx::Postgres>(connection, sql, values).await
            }
        }
    }
}

/// `sql` with `values` bound in order.
fn statement<'q, DB: Sql>(
    sql: &'q str,
    values: &[Value<'q>],
) -> grimos_common::db::sql::Statement<'q, DB> {
    values
        .iter()
        .fold(DB::query(sql), |statement, value| match *value {
            Value::Int(int) => statement.bind(int),
            Value::Text(text) => statement.bind(text),
        })
}

async fn execute<DB: Sql>(connection: &mut DB::Connection, sql: &str, values: &[Value<'_>]) -> u64 {
    statement::<DB>(sql, values)
        .execute(connection)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
}

async fn fetch_i64<DB: Sql>(
    connection: &mut DB::Connection,
    sql: &str,
    values: &[Value<'_>],
) -> Option<i64> {
    let row = statement::<DB>(sql, values)
        .fetch_optional(connection)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))?;
    Some(row.column(0).unwrap())
}

/// A service's app running in the test's runtime, until [`Running::stop`].
pub struct Running {
    stop: Option<oneshot::Sender<Stop>>,
    task: Option<JoinHandle<Result<(), String>>>,
}

/// The future an app's `run_until_stopped` is given: it completes, with how to stop, when the
/// test stops it.
pub type StopSignal = std::pin::Pin<Box<dyn Future<Output = Stop> + Send>>;

impl Running {
    /// Spawns `run` (an app's `run_until_stopped`) with the signal [`Running::stop`] gives.
    pub fn spawn<F, E>(run: impl FnOnce(StopSignal) -> F) -> Self
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Display,
    {
        let (stop, stopped) = oneshot::channel::<Stop>();
        let run = run(Box::pin(async { stopped.await.unwrap_or(Stop::Now) }));
        let task = tokio::spawn(async move { run.await.map_err(|error| format!("{error:#}")) });
        Running {
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Asks the app to stop as `how` says ([`Stop::Drain`]: NOT_SERVING for its drain grace
    /// first), without waiting; [`Running::stop`] then waits until it has.
    pub fn begin_stop(&mut self, how: Stop) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(how);
        }
    }

    /// Stops the app gracefully (at once, unless [`Running::begin_stop`] asked for a drain)
    /// and waits until it has; panics if it failed.
    pub async fn stop(&mut self) {
        self.begin_stop(Stop::Now);
        if let Some(task) = self.task.take()
            && let Err(error) = task.await.unwrap()
        {
            panic!("the app failed: {error}");
        }
    }
}
