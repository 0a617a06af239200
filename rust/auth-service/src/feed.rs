//! The revocations of the shared table, followed into this replica's in-memory set
//! ([`Revocations`]) and streamed to the services that verify tokens themselves
//! (`WatchRevocations`).
//!
//! The table `revocations` is the source of truth, shared by replicas. Each replica loads it
//! at start and then reads the rows committed after the highest one it has (`seq`): at once
//! when one of its own revocations commits (in-process), at once when another replica's
//! commits (PostgreSQL `NOTIFY`, or SQLite's `data_version` changing, followed by
//! [`Store::follow_revocations`]), and every `AUTH_REVOCATION_SYNC_INTERVAL` whatever happens
//! (the safety net). Rows become visible in `seq` order (the store
//! serializes their inserts), so "after the highest seen" skips none. One sync runs at a time
//! and publishes what it read, in `seq` order, to the streams.
//!
//! A stream starts with the whole current set (`reset`), or with the rows after the client's
//! cursor when the cursor is one of this database's and the rows after it are still in the
//! table; then every batch the syncs publish, and a heartbeat whenever nothing was sent for
//! `AUTH_REVOCATION_HEARTBEAT`. A stream that falls more than
//! `AUTH_REVOCATION_WATCH_BACKLOG` batches behind (its client reads too slowly) is sent the
//! whole set again rather than silently missing entries. Streams end, cleanly, when the
//! server stops; at most `AUTH_MAX_REVOCATION_WATCHERS` run at once.
//!
//! A cursor is `<database id>.<seq>`: opaque to clients, and meaningless to another database.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use grimos_proto::auth::v1 as pb;
use grimos_token::{Revocation, Revocations};
use tokio::sync::{Mutex, Notify, OwnedSemaphorePermit, Semaphore, broadcast, watch};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::store::{Store, Task};

/// The shortest `AUTH_REVOCATION_SYNC_INTERVAL`: a sync is one indexed read of the rows after
/// the last one seen, so even this keeps the database's load small.
pub const MIN_SYNC_INTERVAL: Duration = Duration::from_millis(10);

/// How a stream of revocations behaves: the settings of `WatchRevocations`.
#[derive(Debug, Clone, Copy)]
pub struct WatchSettings {
    /// A message is sent at least this often.
    pub heartbeat: Duration,
    /// Batches a stream may fall behind before it is sent the whole set again.
    pub backlog: usize,
    /// Streams served at once.
    pub max_watchers: usize,
}

/// A batch of table rows, read by one sync, in `seq` order.
type Batch = Arc<Vec<(i64, Revocation)>>;

/// The table's revocations, followed into this replica's set and out to the streams.
pub struct RevocationFeed {
    store: Arc<dyn Store>,
    revocations: Arc<Revocations>,
    database_id: String,
    /// The highest row applied to `revocations` and published.
    last_seq: AtomicI64,
    /// Held by the one sync running, so batches are read and published in order.
    syncing: Mutex<()>,
    batches: broadcast::Sender<Batch>,
    /// Asks the sync task for a sync now.
    nudge: Arc<Notify>,
    settings: WatchSettings,
    watchers: Arc<Semaphore>,
    /// True once the server stops: the streams end.
    stopped: watch::Receiver<bool>,
}

impl RevocationFeed {
    /// Follows `store`'s table into `revocations`, from the start (nothing is read until the
    /// first [`RevocationFeed::sync`]). Streams end when `stopped` turns true or its sender
    /// is dropped.
    pub async fn new(
        store: Arc<dyn Store>,
        revocations: Arc<Revocations>,
        settings: WatchSettings,
        stopped: watch::Receiver<bool>,
    ) -> Result<Self> {
        let database_id = store.database_id().await?;
        let (batches, _) = broadcast::channel(settings.backlog.max(1));
        Ok(Self {
            store,
            revocations,
            database_id,
            last_seq: AtomicI64::new(0),
            syncing: Mutex::new(()),
            batches,
            nudge: Arc::new(Notify::new()),
            watchers: Arc::new(Semaphore::new(settings.max_watchers)),
            settings,
            stopped,
        })
    }

    /// Reads the rows committed since the last sync, applies them and publishes them.
    pub async fn sync(&self) -> Result<()> {
        let _one_at_a_time = self.syncing.lock().await;
        let rows = self.store.revocations_after(self.last_seq()).await?;
        let Some(&(seq, _)) = rows.last() else {
            return Ok(());
        };
        let list: Vec<Revocation> = rows.iter().map(|(_, r)| r.clone()).collect();
        // Applied before `last_seq` moves: whoever reads `last_seq` and then the set finds
        // every row up to it in the set (a stream's reset relies on it).
        self.revocations.apply(&list);
        self.last_seq.store(seq, Ordering::Release);
        // No stream open is no error.
        let _ = self.batches.send(Arc::new(rows));
        Ok(())
    }

    /// Revocations this replica has just committed: they count here at once, and the sync
    /// task reads them from the table for the streams without waiting for its next round.
    pub fn committed(&self, revocations: &[Revocation]) {
        self.revocations.apply(revocations);
        self.nudge.notify_one();
    }

    /// Revocations this replica has just committed, for a caller that needs every stream of
    /// this replica to have them before it answers: they count here at once, and a sync reads
    /// them from the table and publishes them now. The cursor the streams reached with them,
    /// or `None` when the sync failed (the sync task then publishes them on its next round).
    pub async fn committed_and_published(&self, revocations: &[Revocation]) -> Option<String> {
        self.revocations.apply(revocations);
        match self.sync().await {
            Ok(()) => Some(self.cursor(self.last_seq())),
            Err(error) => {
                tracing::warn!(%error, "revocation sync failed; the sync task retries");
                self.nudge.notify_one();
                None
            }
        }
    }

    /// The highest table row applied so far.
    pub fn last_seq(&self) -> i64 {
        self.last_seq.load(Ordering::Acquire)
    }

    /// The set it keeps.
    pub fn revocations(&self) -> &Arc<Revocations> {
        &self.revocations
    }

    /// Starts listening for the revocations other replicas commit, where the database tells
    /// (PostgreSQL): the task that goes on listening and asks [`RevocationFeed::run`] for a
    /// sync on each. Started before the server serves, so that it is listening by then.
    pub async fn listen(&self) -> Result<Option<Task>> {
        self.store.follow_revocations(self.nudge.clone()).await
    }

    /// Syncs whenever a revocation commits here or, with [`RevocationFeed::listen`]'s task
    /// running, on another replica, and every `interval` whatever happens; runs until
    /// dropped. Calls `after_sync` after each round, with its outcome.
    pub async fn run(&self, interval: Duration, mut after_sync: impl FnMut(Result<()>)) {
        // The setting is at least this (checked as it is read); a `Config` built in code too.
        let mut ticker = tokio::time::interval(interval.max(MIN_SYNC_INTERVAL));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.nudge.notified() => {}
                _ = ticker.tick() => {}
            }
            after_sync(self.sync().await);
        }
    }

    /// The cursor of a message sent after row `seq`.
    fn cursor(&self, seq: i64) -> String {
        grimos_token::cursor(&self.database_id, seq)
    }

    /// The row after which a stream with `cursor` can resume, if it can: a cursor of this
    /// database, at most the highest row read (the caller syncs first, so a cursor another
    /// replica gave out is within it).
    fn resumable(&self, cursor: &str) -> Option<i64> {
        let (id, seq) = grimos_token::parse_cursor(cursor)?;
        (id == self.database_id && seq <= self.last_seq()).then_some(seq)
    }

    /// The first message of a stream that starts over: the whole set, and the cursor every
    /// row of it is at or below.
    fn reset(&self, first: bool) -> (pb::WatchRevocationsResponse, i64) {
        let seq = self.last_seq();
        let entries = self.revocations.entries();
        let reason = if first { "start" } else { "behind" };
        metrics::counter!("auth_revocation_watch_resets_total", "reason" => reason).increment(1);
        let message = pb::WatchRevocationsResponse {
            revocations: entries.iter().map(pb::Revocation::from).collect(),
            cursor: self.cursor(seq),
            reset: true,
            heartbeat_interval: first.then(|| self.settings.heartbeat.into()),
        };
        (message, seq)
    }

    /// Opens a stream for a client that holds `cursor` (empty: none): its first message is
    /// ready (or the call fails) before this returns.
    pub async fn watch(self: &Arc<Self>, cursor: &str) -> Result<Watcher> {
        let permit = self
            .watchers
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::TooManyWatchers)?;
        // Subscribed before the first message is made, so nothing published after it is
        // missed; what both carry is sent once (by `seq`).
        let batches = self.batches.subscribe();
        // Up to date with the table, so the first message's cursor covers what was committed
        // before the call (a revocation of this replica is in the set at once, but in
        // `last_seq` only once the sync task has read it), and a cursor another replica gave
        // out is within reach. Without the database, the set this replica holds is still the
        // best answer.
        if let Err(error) = self.sync().await {
            tracing::warn!(%error, "cannot read the latest revocations for a new stream");
        }
        let (first, sent_seq) = match self.resumable(cursor) {
            Some(seq) => {
                let rows = self.store.revocations_after(seq).await?;
                let sent_seq = rows.last().map_or(seq, |(last, _)| *last);
                let message = pb::WatchRevocationsResponse {
                    revocations: rows.iter().map(|(_, r)| pb::Revocation::from(r)).collect(),
                    cursor: self.cursor(sent_seq),
                    reset: false,
                    heartbeat_interval: Some(self.settings.heartbeat.into()),
                };
                (message, sent_seq)
            }
            None => self.reset(true),
        };
        metrics::gauge!("auth_revocation_watchers").increment(1.0);
        Ok(Watcher {
            feed: self.clone(),
            batches,
            first: Some(first),
            sent_seq,
            stopped: self.stopped.clone(),
            next_heartbeat: Instant::now(),
            _permit: permit,
        })
    }
}

/// One open `WatchRevocations` stream: [`Watcher::next`] gives its messages.
pub struct Watcher {
    feed: Arc<RevocationFeed>,
    batches: broadcast::Receiver<Batch>,
    first: Option<pb::WatchRevocationsResponse>,
    /// The highest row sent.
    sent_seq: i64,
    stopped: watch::Receiver<bool>,
    next_heartbeat: Instant,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        metrics::gauge!("auth_revocation_watchers").decrement(1.0);
    }
}

impl Watcher {
    /// The next message to send, or `None` when the stream ends (the server stops).
    pub async fn next(&mut self) -> Option<pb::WatchRevocationsResponse> {
        let message = match self.first.take() {
            Some(first) => first,
            None => self.wait().await?,
        };
        self.next_heartbeat = Instant::now() + self.feed.settings.heartbeat;
        Some(message)
    }

    async fn wait(&mut self) -> Option<pb::WatchRevocationsResponse> {
        loop {
            tokio::select! {
                biased;
                // A dropped sender (the app is gone) stops the stream too.
                _ = self.stopped.wait_for(|stopped| *stopped) => return None,
                received = self.batches.recv() => match received {
                    Ok(batch) => {
                        let fresh: Vec<pb::Revocation> = batch
                            .iter()
                            .filter(|(seq, _)| *seq > self.sent_seq)
                            .map(|(_, r)| pb::Revocation::from(r))
                            .collect();
                        let Some(&(last, _)) = batch.last() else { continue };
                        if fresh.is_empty() {
                            continue;
                        }
                        self.sent_seq = last;
                        return Some(pb::WatchRevocationsResponse {
                            revocations: fresh,
                            cursor: self.feed.cursor(last),
                            reset: false,
                            heartbeat_interval: None,
                        });
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::info!(missed, "a revocation watcher fell behind; sending the whole set");
                        let (message, seq) = self.feed.reset(false);
                        self.sent_seq = seq;
                        return Some(message);
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                () = tokio::time::sleep_until(self.next_heartbeat) => {
                    return Some(pb::WatchRevocationsResponse {
                        revocations: Vec::new(),
                        cursor: self.feed.cursor(self.sent_seq),
                        reset: false,
                        heartbeat_interval: None,
                    });
                }
            }
        }
    }
}
