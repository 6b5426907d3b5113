//! The storage engine trait: the narrow waist between idsync and its embedded
//! key-value store.
//!
//! Why so narrow: the reconciler needs only an atomic batch write, a point
//! read and an ordered prefix scan. Keeping the trait this small is what lets
//! `redb` (the default), `sled` (the user's original choice) and, later, a
//! PostgreSQL backend for several replicas sit behind it interchangeably.
//! Everything lives in one keyspace; the key layout is `keys.rs`'s business,
//! not the engine's.

use std::ops::Bound;
use std::path::PathBuf;

use crate::leadership::{take_epoch, Role, RoleSender};

/// A key and its value, as scans return them.
pub type Entry = (Vec<u8>, Vec<u8>);

/// One write in a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Insert or overwrite `key` with `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Remove `key` (a missing key is not an error).
    Delete(Vec<u8>),
}

/// A set of writes applied all together or not at all.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    /// The writes, applied in order (a later op on the same key wins).
    pub ops: Vec<Op>,
    /// What keys must hold when the batch applies (`None`: be absent),
    /// checked in the batch's own transaction: when one does not, nothing
    /// is written and `write` answers [`EngineError::Conflict`]. The
    /// change log's head is one: a batch numbered from a head that moved
    /// meanwhile (a commit whose answer was lost, another writer) must
    /// not land, or it would overwrite events under the same numbers.
    pub expect: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }
    /// Queue a put.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op::Put(key.into(), value.into()));
    }
    /// Queue a delete.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete(key.into()));
    }
    /// Apply only while `key` holds `value` (`None`: is absent).
    pub fn expect(&mut self, key: impl Into<Vec<u8>>, value: Option<Vec<u8>>) {
        self.expect.push((key.into(), value));
    }
    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The first expectation `current` (a key's value now) does not meet.
    pub(crate) fn unmet(
        &self,
        mut current: impl FnMut(&[u8]) -> Result<Option<Vec<u8>>, EngineError>,
    ) -> Result<Option<&[u8]>, EngineError> {
        for (key, wanted) in &self.expect {
            if current(key)? != *wanted {
                return Ok(Some(key));
            }
        }
        Ok(None)
    }
}

/// Errors from an engine. The message keeps the engine's own words.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine could not open its files (locked by another process,
    /// corrupt, permission denied, …).
    #[error("cannot open the {engine} store at {path}: {message}")]
    Open {
        engine: &'static str,
        path: PathBuf,
        message: String,
    },
    /// A read, write or commit failed.
    #[error("{engine} store: {message}")]
    Io {
        engine: &'static str,
        message: String,
    },
    /// A batch's expectation did not hold (see [`Batch::expect`]): the
    /// store moved under the writer; nothing of the batch was written.
    #[error("{engine} store: {key} changed under this writer (another writer, or a commit whose answer was lost); nothing written")]
    Conflict { engine: &'static str, key: String },
}

impl EngineError {
    /// The conflict error of `engine` on `key`.
    pub(crate) fn conflict(engine: &'static str, key: &[u8]) -> Self {
        EngineError::Conflict {
            engine,
            key: String::from_utf8_lossy(key).into_owned(),
        }
    }
}

/// Which engine to use (`store.engine` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// redb: bounded memory, fast lookups. The default.
    #[default]
    Redb,
    /// sled 0.34: selectable; slower, and its memory is not bounded by the
    /// cache setting (see docs/configuration.md).
    Sled,
    /// One table of a PostgreSQL database (`[store.postgres]`), for
    /// several replicas on one database.
    Postgres,
}

impl EngineKind {
    /// The name as the configuration writes it (`redb`, `sled`).
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Redb => "redb",
            EngineKind::Sled => "sled",
            EngineKind::Postgres => "postgres",
        }
    }
}

/// Engine options from the config's `[store]` table.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Upper bound of the engine's page cache, in bytes.
    pub cache_bytes: usize,
    /// When true every committed batch is on disk (fsync) before `write`
    /// returns. Only benchmarks and throwaway tests turn it off.
    pub durable: bool,
    /// Where the PostgreSQL engine finds its database (only it reads this).
    pub postgres: Option<crate::postgres_engine::PostgresOptions>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            cache_bytes: 64 * 1024 * 1024,
            durable: true,
            postgres: None,
        }
    }
}

/// Point reads from one snapshot, kept open: what a write transaction uses
/// for its many look-ups between two commits (opening a read transaction per
/// look-up was a third of a re-import's time with redb).
pub trait Reader {
    /// Read one key.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError>;

    /// Read several keys, in order. An engine that answers a read in
    /// process loops over [`Reader::get`]; a networked one asks once.
    fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, EngineError> {
        keys.iter().map(|k| self.get(k)).collect()
    }
}

/// A key-value engine. Keys and values are opaque bytes; keys sort bytewise.
///
/// Implementations must be safe to share between threads. `write` is atomic
/// and, with `durable`, crash-safe: after it returns `Ok`, a `kill -9` or a
/// power loss never loses the batch, and never leaves part of it.
pub trait Engine: Send + Sync {
    /// Short engine name for logs and metrics ("redb", "sled").
    fn name(&self) -> &'static str;

    /// Whether each read is a round trip to another process (PostgreSQL):
    /// a writer then reads ahead what it will look up, in one
    /// [`Reader::get_many`], and a server lets other requests run while one
    /// waits for its answer.
    fn is_remote(&self) -> bool {
        false
    }

    /// One round trip to the database (`SELECT 1` on a pooled connection),
    /// timed; `None` for an embedded engine, which has no database to reach.
    fn round_trip(&self) -> Result<Option<std::time::Duration>, EngineError> {
        Ok(None)
    }

    /// Read one key.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError>;

    /// Read several keys from one consistent snapshot, in order: a batch of
    /// look-ups in one read transaction (one round trip for a networked
    /// engine). Only the engine suite calls it today.
    #[allow(dead_code)]
    fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, EngineError>;

    /// A reader over everything committed so far. Later commits are not
    /// seen by it: take a new one after each commit.
    fn reader(&self) -> Result<Box<dyn Reader + '_>, EngineError>;

    /// Apply every op of `batch` atomically.
    fn write(&self, batch: Batch) -> Result<(), EngineError>;

    /// Hand up to `limit` entries whose key starts with `prefix` to
    /// `visit`, in key order, starting strictly after `start_after` when
    /// given (for paging), until `visit` returns false. The key and value
    /// are borrowed from the engine: a reader that skips entries, or
    /// decodes them in place, copies nothing (a deep SCIM page walks past
    /// entries it only counts). Returns how many entries were visited.
    fn visit_prefix(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<usize, EngineError>;

    /// Up to `limit` entries whose key starts with `prefix`, in key order,
    /// starting strictly after `start_after` when given (for paging).
    fn scan_prefix(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, EngineError> {
        let mut out = Vec::with_capacity(limit.min(1024));
        self.visit_prefix(prefix, start_after, limit, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            true
        })?;
        Ok(out)
    }

    /// Make everything written so far durable (used at shutdown when
    /// `durable` is off).
    fn flush(&self) -> Result<(), EngineError>;

    /// Tell `on_head` of every change-log head other processes commit to
    /// the same store (replicas on one database), for as long as the
    /// engine lives. An embedded engine has no other writer: nothing to
    /// follow.
    fn follow_heads(&self, on_head: HeadCallback) {
        let _ = on_head;
    }

    /// Wait for this process's turn among the processes writing this store
    /// (replicas on one database); the turn lasts until the value returned
    /// drops. A transaction holds it from before it reads the change log's
    /// head to after its last commit, so no two processes number changes
    /// from the same head. An embedded engine has no other writer: none.
    /// No default, so that no engine (or wrapper) forgets it.
    fn writer_turn(&self) -> Result<Option<WriterTurn>, EngineError>;

    /// Take part in electing the leader of the processes sharing this
    /// store, as `identity`, and publish this process's role on `role`
    /// for as long as the engine lives (see `leadership.rs`). An embedded
    /// engine has one process: it takes the next epoch and leads; `retry`
    /// is for engines where another process may lead.
    fn elect(
        &self,
        identity: String,
        retry: std::time::Duration,
        role: RoleSender,
    ) -> Result<(), EngineError> {
        let _ = retry;
        let epoch = take_epoch(self, &identity)?;
        role.send_replace(Role::Leader { epoch });
        Ok(())
    }
}

/// What [`Engine::follow_heads`] calls with each head it learns.
pub type HeadCallback = std::sync::Arc<dyn Fn(u64) + Send + Sync>;

/// A process's turn to write ([`Engine::writer_turn`]), released when
/// dropped.
pub trait Turn: Send {
    /// Whether another process waits for the turn: a long writer (an
    /// import) gives it up at its next batch boundary.
    fn wanted_elsewhere(&self) -> bool;

    /// The change log's head as it stood once the turn began: read with
    /// the turn, in the same round trip, so that the transaction need not
    /// ask for it again while every other process waits.
    fn head(&self) -> u64;
}

/// A turn held, as engines hand it out.
pub type WriterTurn = Box<dyn Turn>;

/// Where a prefix scan starts. A `start_after` below the prefix would start
/// the range on keys outside it and the scan would stop at once, so it only
/// counts when it is inside (or past) the prefix's range.
pub(crate) fn scan_start<'k>(prefix: &'k [u8], start_after: Option<&'k [u8]>) -> Bound<&'k [u8]> {
    match start_after {
        Some(after) if after >= prefix => Bound::Excluded(after),
        _ => Bound::Included(prefix),
    }
}

/// Hand the first `limit` entries of an ordered range that starts at
/// [`scan_start`] to `visit`, up to the first key outside `prefix` (keys
/// are sorted, so the first one outside ends it) or until `visit` returns
/// false; how many it was handed.
pub(crate) fn visit_range<K, V, E>(
    range: impl Iterator<Item = Result<(K, V), E>>,
    prefix: &[u8],
    limit: usize,
    key: impl Fn(&K) -> &[u8],
    value: impl Fn(&V) -> &[u8],
    err: impl Fn(E) -> EngineError,
    visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
) -> Result<usize, EngineError> {
    let mut visited = 0;
    for entry in range {
        if visited >= limit {
            break;
        }
        let (k, v) = entry.map_err(&err)?;
        let k = key(&k);
        if !k.starts_with(prefix) {
            break;
        }
        visited += 1;
        if !visit(k, value(&v)) {
            break;
        }
    }
    Ok(visited)
}
