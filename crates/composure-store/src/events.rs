//! Events: a bounded log of what happened, ordered by revision. Each event is a key of its
//! own under `events/<project>/`; its revision is the key's.

use crate::keys::{self, decode, encode};
use crate::kv::{KeyValue, Op, Txn};
use crate::{Store, StoreError, StoredEvent};

/// How many appends of this process go by between two trims of the log to its bound.
const TRIM_EVERY: u64 = 256;

impl Store {
    /// Appends an event at a new revision (which is returned and replaces
    /// `event.revision`). Now and then, the oldest events beyond
    /// [`MAX_EVENTS`](crate::MAX_EVENTS) are dropped.
    pub async fn append_event(&self, event: &StoredEvent) -> Result<u64, StoreError> {
        let key = keys::event(&event.project, event.time, &keys::nonce());
        let mut stored = event.clone();
        stored.revision = 0;
        let txn = Txn::new().then(Op::put(&key, encode("event", &key, &stored)?));
        let revision = self.commit(txn, "the event log").await?;
        if self.count_append().is_multiple_of(TRIM_EVERY) {
            self.trim_events().await?;
        }
        Ok(revision)
    }

    /// Drops the oldest events beyond the store's bound, in one transaction.
    pub async fn trim_events(&self) -> Result<(), StoreError> {
        let mut all = self.kv().range(keys::EVENTS, 0).await?.kvs;
        let limit = self.limits.events;
        if all.len() <= limit {
            return Ok(());
        }
        all.sort_by_key(|kv| kv.mod_revision);
        let excess = all.len() - limit;
        let txn = all
            .iter()
            .take(excess)
            .fold(Txn::new(), |txn, kv| txn.then(Op::delete(&kv.key)));
        self.commit_chunked(txn, "the event log").await?;
        Ok(())
    }

    /// The events after `revision`, oldest first, of one project or of all.
    pub async fn events_since(
        &self,
        revision: u64,
        project: Option<&str>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let prefix = project.map_or_else(|| keys::EVENTS.to_string(), keys::events_of);
        let range = self.kv().range(&prefix, revision.saturating_add(1)).await?;
        let mut events = range
            .kvs
            .iter()
            .map(read_event)
            .collect::<Result<Vec<_>, _>>()?;
        events.sort_by_key(|event| event.revision);
        Ok(events)
    }

    /// At most `limit` events after `revision`, oldest first, of one project or of all: a
    /// page of the log, for readers that go through it without holding it all.
    pub async fn events_page(
        &self,
        revision: u64,
        project: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let prefix = project.map_or_else(|| keys::EVENTS.to_string(), keys::events_of);
        let range = self
            .kv()
            .range_oldest(&prefix, revision.saturating_add(1), limit)
            .await?;
        range.kvs.iter().map(read_event).collect()
    }
}

pub(crate) fn read_event(kv: &KeyValue) -> Result<StoredEvent, StoreError> {
    let mut event: StoredEvent = decode("event", &kv.key, &kv.value)?;
    event.revision = kv.mod_revision;
    Ok(event)
}
