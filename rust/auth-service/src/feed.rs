//! The revocations of the shared table, followed: this replica's in-memory set
//! ([`Revocations`]) is kept up to date with the rows other replicas commit.
//!
//! The table `revocations` is the source of truth, shared by replicas. Each replica loads it
//! at start, applies its own revocations at once, and reads the rows committed after the
//! highest one it has (`seq`) every `AUTH_REVOCATION_SYNC_INTERVAL`. Rows become visible in
//! `seq` order (the store serializes their inserts), so "after the highest seen" skips none.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use grimos_token::Revocations;

use crate::error::Result;
use crate::store::Store;

/// The table's revocations, followed into this replica's set.
pub struct RevocationFeed {
    store: Arc<dyn Store>,
    revocations: Arc<Revocations>,
    /// The highest row applied.
    last_seq: AtomicI64,
}

impl RevocationFeed {
    /// Follows `store`'s table into `revocations`, from the start.
    pub fn new(store: Arc<dyn Store>, revocations: Arc<Revocations>) -> Self {
        Self {
            store,
            revocations,
            last_seq: AtomicI64::new(0),
        }
    }

    /// Applies the rows committed since the last sync.
    pub async fn sync(&self) -> Result<()> {
        let rows = self.store.revocations_after(self.last_seq()).await?;
        if let Some((seq, _)) = rows.last() {
            let seq = *seq;
            let list: Vec<_> = rows.into_iter().map(|(_, r)| r).collect();
            self.revocations.apply(&list);
            self.last_seq.fetch_max(seq, Ordering::AcqRel);
        }
        Ok(())
    }

    /// The highest table row applied so far.
    pub fn last_seq(&self) -> i64 {
        self.last_seq.load(Ordering::Acquire)
    }

    /// The set it keeps.
    pub fn revocations(&self) -> &Arc<Revocations> {
        &self.revocations
    }
}
