//! openraft's log storage over [`pincluster_state::LogStore`]: entries, vote,
//! committed and purge point, postcard-encoded. Read [`LogStorage`] first.
//!
//! Every call that must be durable (append, truncate, vote) fsyncs before it
//! answers; it runs on tokio's blocking pool, never on the Raft core's task.

use std::fmt::Debug;
use std::ops::RangeBounds;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, ErrorSubject, ErrorVerb, LogId, RaftLogId, Vote};
use pincluster_state::LogStore;

use crate::{decode, encode, storage_error, NodeId, StorageError, TypeConfig};

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "purged";

/// The Raft log and vote of one peer. Cheap to clone.
#[derive(Clone, Debug)]
pub struct LogStorage {
    store: LogStore,
}

impl LogStorage {
    /// The log kept in `store` (from [`pincluster_state::Pinset::log_store`]).
    pub fn new(store: LogStore) -> LogStorage {
        LogStorage { store }
    }

    /// Runs `work` on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        subject: ErrorSubject<NodeId>,
        verb: ErrorVerb,
        work: impl FnOnce(&LogStore) -> Result<T, pincluster_state::StateError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || work(&store)).await {
            Ok(result) => result.map_err(|e| storage_error(subject, verb, &e)),
            Err(join) => Err(storage_error(subject, verb, &join)),
        }
    }

    fn get_meta<T: for<'de> serde::Deserialize<'de>>(&self, name: &str) -> Result<Option<T>, StorageError> {
        let subject = ErrorSubject::Store;
        match self.store.get(name).map_err(|e| storage_error(subject.clone(), ErrorVerb::Read, &e))? {
            Some(bytes) => decode(&bytes).map(Some).map_err(|e| storage_error(subject, ErrorVerb::Read, &e)),
            None => Ok(None),
        }
    }

    async fn set_meta<T: serde::Serialize>(
        &self,
        subject: ErrorSubject<NodeId>,
        name: &'static str,
        value: &T,
        durable: bool,
    ) -> Result<(), StorageError> {
        let bytes = encode(value).map_err(|e| storage_error(subject.clone(), ErrorVerb::Write, &e))?;
        self.blocking(subject, ErrorVerb::Write, move |s| s.set(name, bytes, durable)).await
    }
}

fn decode_entry(index: u64, bytes: &[u8]) -> Result<Entry<TypeConfig>, StorageError> {
    decode(bytes).map_err(|e| storage_error(ErrorSubject::LogIndex(index), ErrorVerb::Read, &e))
}

impl RaftLogReader<TypeConfig> for LogStorage {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let start = range.start_bound().cloned();
        let end = range.end_bound().cloned();
        let raw =
            self.blocking(ErrorSubject::Logs, ErrorVerb::Read, move |s| s.entries((start, end), usize::MAX)).await?;
        raw.iter().map(|(index, bytes)| decode_entry(*index, bytes)).collect()
    }
}

impl RaftLogStorage<TypeConfig> for LogStorage {
    type LogReader = LogStorage;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let purged: Option<LogId<NodeId>> = self.get_meta(PURGED)?;
        let last = self.blocking(ErrorSubject::Logs, ErrorVerb::Read, |s| s.last()).await?;
        let last = match last {
            Some((index, bytes)) => Some(*decode_entry(index, &bytes)?.get_log_id()),
            None => purged,
        };
        Ok(LogState { last_purged_log_id: purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.set_meta(ErrorSubject::Vote, VOTE, vote, true).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_meta(VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError> {
        // Not fsynced: a lost one is learnt again from the leader.
        self.set_meta(ErrorSubject::Store, COMMITTED, &committed, false).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError> {
        Ok(self.get_meta::<Option<LogId<NodeId>>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut raw = Vec::new();
        for entry in entries {
            let index = entry.get_log_id().index;
            let bytes =
                encode(&entry).map_err(|e| storage_error(ErrorSubject::LogIndex(index), ErrorVerb::Write, &e))?;
            raw.push((index, bytes));
        }
        let result = self.blocking(ErrorSubject::Logs, ErrorVerb::Write, move |s| s.append(raw)).await;
        match &result {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(error) => callback.log_io_completed(Err(std::io::Error::other(error.to_string()))),
        }
        result
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        let index = log_id.index;
        self.blocking(ErrorSubject::Logs, ErrorVerb::Delete, move |s| s.truncate(index)).await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        let marker = encode(&log_id).map_err(|e| storage_error(ErrorSubject::Logs, ErrorVerb::Delete, &e))?;
        self.blocking(ErrorSubject::Logs, ErrorVerb::Delete, move |s| s.purge(log_id.index, PURGED, marker)).await
    }
}
