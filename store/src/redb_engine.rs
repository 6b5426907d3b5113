//! The redb engine, idsync's default store.
//!
//! Why redb: its page cache is bounded (`Builder::set_cache_size`), so the
//! daemon's memory stays flat however many rows it holds, and its
//! copy-on-write B-tree commits a whole write transaction atomically with a
//! single header swap, which is exactly the guarantee [`Engine::write`] needs.
//!
//! The whole keyspace lives in one table: the key layout (objects, indexes,
//! change log) is encoded in the keys themselves, and a single table keeps
//! every batch inside one B-tree commit.

use std::ops::Bound;
use std::path::Path;

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};

use super::engine::{
    scan_start, visit_range, Batch, Engine, EngineError, EngineOptions, Op, Reader,
};

/// The single table holding idsync's keyspace.
const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");

/// Name reported by [`Engine::name`] and used in error messages.
const NAME: &str = "redb";

/// An [`Engine`] backed by one redb database file.
///
/// Thread-safe: redb serialises write transactions internally (a second
/// `write` waits for the first to commit) and read transactions run
/// concurrently with a writer on their own snapshot.
pub struct RedbEngine {
    db: Database,
    durable: bool,
}

impl std::fmt::Debug for RedbEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `redb::Database` has no useful Debug output; the durability mode is
        // what matters when reading logs.
        f.debug_struct("RedbEngine")
            .field("durable", &self.durable)
            .finish_non_exhaustive()
    }
}

/// Wrap any redb error, keeping redb's own message.
fn io_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Io {
        engine: NAME,
        message: e.to_string(),
    }
}

impl RedbEngine {
    /// Open the database file at `path`, creating it (but not its parent
    /// directory) when missing.
    ///
    /// The page cache is capped at `opts.cache_bytes`. With `opts.durable`
    /// every [`Engine::write`] is fsynced before it returns; without it,
    /// commits stay in memory until [`Engine::flush`] (or a later durable
    /// commit), and a crash rolls back to the last durable state — still a
    /// consistent one, never a partial batch.
    ///
    /// # Errors
    ///
    /// [`EngineError::Open`] when the file cannot be opened or created, is
    /// not a redb database, or is already open (redb locks the file, so a
    /// second daemon on the same store fails here instead of corrupting it).
    pub fn open(path: &Path, opts: &EngineOptions) -> Result<Self, EngineError> {
        let open_err = |e: &dyn std::fmt::Display| EngineError::Open {
            engine: NAME,
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let db = Database::builder()
            .set_cache_size(opts.cache_bytes)
            .create(path)
            .map_err(|e| open_err(&e))?;
        // Create the table up front, durably, so read transactions can
        // always open it: otherwise a `get` on a fresh store would have to
        // tell "no table yet" apart from a real error.
        let txn = db.begin_write().map_err(|e| open_err(&e))?;
        txn.open_table(KV).map_err(|e| open_err(&e))?;
        txn.commit().map_err(|e| open_err(&e))?;
        Ok(Self {
            db,
            durable: opts.durable,
        })
    }

    /// Begin a write transaction with the configured durability.
    fn begin_write(&self, durable: bool) -> Result<WriteTransaction, EngineError> {
        let mut txn = self.db.begin_write().map_err(io_err)?;
        // `Durability::None` still commits atomically; it only skips the
        // fsync, so a crash loses whole trailing batches, never half of one.
        let durability = if durable {
            Durability::Immediate
        } else {
            Durability::None
        };
        txn.set_durability(durability).map_err(io_err)?;
        Ok(txn)
    }
}

impl Engine for RedbEngine {
    fn name(&self) -> &'static str {
        NAME
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let txn = self.db.begin_read().map_err(io_err)?;
        let table = txn.open_table(KV).map_err(io_err)?;
        let value = table.get(key).map_err(io_err)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>, EngineError> {
        let txn = self.db.begin_read().map_err(io_err)?;
        Ok(Box::new(RedbReader(txn.open_table(KV).map_err(io_err)?)))
    }

    fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, EngineError> {
        // One read transaction: every key is read from the same snapshot, and
        // the per-transaction setup is paid once per batch instead of per key.
        let txn = self.db.begin_read().map_err(io_err)?;
        let table = txn.open_table(KV).map_err(io_err)?;
        keys.iter()
            .map(|key| {
                let value = table.get(*key).map_err(io_err)?;
                Ok(value.map(|v| v.value().to_vec()))
            })
            .collect()
    }

    fn write(&self, batch: Batch) -> Result<(), EngineError> {
        if batch.is_empty() {
            // Nothing to make atomic; skipping saves an fsync.
            return Ok(());
        }
        let txn = self.begin_write(self.durable)?;
        {
            let mut table = txn.open_table(KV).map_err(io_err)?;
            let unmet = batch
                .unmet(|key| Ok(table.get(key).map_err(io_err)?.map(|v| v.value().to_vec())))?;
            if let Some(key) = unmet {
                return Err(EngineError::conflict("redb", key));
            }
            for op in &batch.ops {
                match op {
                    Op::Put(key, value) => {
                        table
                            .insert(key.as_slice(), value.as_slice())
                            .map_err(io_err)?;
                    }
                    Op::Delete(key) => {
                        table.remove(key.as_slice()).map_err(io_err)?;
                    }
                }
            }
            // The table borrows the transaction and must be dropped before
            // commit (redb refuses to commit with a table still open).
        }
        // On any error above, dropping `txn` aborts it: nothing of the batch
        // is applied.
        txn.commit().map_err(io_err)
    }

    fn visit_prefix(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<usize, EngineError> {
        let txn = self.db.begin_read().map_err(io_err)?;
        let table = txn.open_table(KV).map_err(io_err)?;
        let range = table
            .range::<&[u8]>((scan_start(prefix, start_after), Bound::Unbounded))
            .map_err(io_err)?;
        visit_range(
            range,
            prefix,
            limit,
            |k| k.value(),
            |v| v.value(),
            io_err,
            visit,
        )
    }

    fn writer_turn(&self) -> Result<Option<crate::engine::WriterTurn>, EngineError> {
        // The only process that opens the store: no turns to take.
        Ok(None)
    }

    fn flush(&self) -> Result<(), EngineError> {
        // redb persists non-durable commits only when a durable commit
        // follows; an empty one is the cheapest such commit.
        let txn = self.begin_write(true)?;
        txn.commit().map_err(io_err)
    }
}

/// An open read transaction's table: a snapshot, cheap to read many times.
struct RedbReader(redb::ReadOnlyTable<&'static [u8], &'static [u8]>);

impl Reader for RedbReader {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let value = self.0.get(key).map_err(io_err)?;
        Ok(value.map(|v| v.value().to_vec()))
    }
}
