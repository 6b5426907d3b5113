//! The sled 0.34 engine, kept selectable (`store.engine = "sled"`) because
//! it was the original choice and existing stores may use it.
//!
//! Why it is not the default: sled 0.34's memory is not bounded by
//! `cache_capacity`. The cap counts the on-disk size of cached pages, and
//! sled's per-page bookkeeping comes on top, so users report resident memory
//! of several times, up to ten times, the cap (spacejam/sled#986,
//! spacejam/sled#1309). An earlier measurement in this project saw RSS grow
//! by about 7 KB per row written, whatever the cap; `engine_bench`'s raw
//! batch writes (64 MiB cap, 1,000-row batches) instead levelled off near
//! 300 MB, at 200,000 rows as at 1,000,000. So how far it grows depends on
//! the write pattern: measure with the real workload before trusting sled
//! with a large store on a small machine. Writes also run several times
//! slower than redb's.

use std::convert::Infallible;
use std::ops::Bound;
use std::path::Path;

use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::engine::{
    scan_start, visit_range, Batch, Engine, EngineError, EngineOptions, Op, Reader,
};

/// Name reported by [`Engine::name`] and used in error messages.
const NAME: &str = "sled";

/// An [`Engine`] backed by a sled 0.34 database directory.
///
/// Everything goes to sled's default tree: one keyspace, as the trait wants.
#[derive(Debug)]
pub struct SledEngine {
    db: sled::Db,
    durable: bool,
}

/// Wrap any sled error, keeping sled's own message.
fn io_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Io {
        engine: NAME,
        message: e.to_string(),
    }
}

impl SledEngine {
    /// Open (creating when missing) the sled database directory at `path`.
    ///
    /// `opts.cache_bytes` becomes sled's `cache_capacity`, which bounds its
    /// page cache only: see the module comment for the memory that it does
    /// not bound. With `opts.durable` every [`Engine::write`] is flushed to
    /// disk before it returns; without it sled's background flusher persists
    /// writes within about half a second, and [`Engine::flush`] forces it.
    ///
    /// # Errors
    ///
    /// [`EngineError::Open`] when the directory cannot be created or read,
    /// holds no sled database, or is locked by another process.
    pub fn open(path: &Path, opts: &EngineOptions) -> Result<Self, EngineError> {
        let config = sled::Config::new()
            .path(path)
            .cache_capacity(opts.cache_bytes as u64);
        // sled releases its file lock from a background thread after the
        // last handle drops, so opening right after a close (a quick
        // restart) can find it still held for a moment: retry briefly. A
        // lock held by another live process still fails, after the wait.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                // sled reports a held lock as `ErrorKind::Other` with this
                // text (sled 0.34.7 config.rs), not as `WouldBlock`.
                Err(sled::Error::Io(e))
                    if (e.kind() == std::io::ErrorKind::WouldBlock
                        || e.to_string().contains("could not acquire lock"))
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => {
                    return Err(EngineError::Open {
                        engine: NAME,
                        path: path.to_path_buf(),
                        message: e.to_string(),
                    })
                }
            }
        };
        Ok(Self {
            db,
            durable: opts.durable,
        })
    }
}

impl Engine for SledEngine {
    fn name(&self) -> &'static str {
        NAME
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let value = self.db.get(key).map_err(io_err)?;
        Ok(value.map(|v| v.to_vec()))
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>, EngineError> {
        // sled has no snapshots: the reader reads the live tree, which is
        // what a single writer between its own commits needs.
        Ok(Box::new(SledReader(&self.db)))
    }

    fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, EngineError> {
        // sled has no read snapshots; a (read-only) transaction is its only
        // way to read several keys without a concurrent batch landing
        // between two of them. sled retries the closure on conflict.
        let result: Result<Vec<Option<Vec<u8>>>, TransactionError<Infallible>> =
            self.db.transaction(|tx| {
                keys.iter()
                    .map(|key| {
                        let value = tx.get(key)?;
                        Ok::<_, ConflictableTransactionError<Infallible>>(value.map(|v| v.to_vec()))
                    })
                    .collect()
            });
        result.map_err(io_err)
    }

    fn write(&self, batch: Batch) -> Result<(), EngineError> {
        if batch.is_empty() {
            // Nothing to make atomic; skipping saves a flush.
            return Ok(());
        }
        // Checked before the batch, not in it: the keys expected are the
        // reconciler's (the head), which only its writer lock writes.
        let unmet = batch.unmet(|key| Ok(self.db.get(key).map_err(io_err)?.map(|v| v.to_vec())))?;
        if let Some(key) = unmet {
            return Err(EngineError::conflict("sled", key));
        }
        // `sled::Batch` keeps one entry per key, so replaying the ops in
        // order gives "a later op on the same key wins" for free.
        let mut sled_batch = sled::Batch::default();
        for op in batch.ops {
            match op {
                Op::Put(key, value) => sled_batch.insert(key, value),
                Op::Delete(key) => sled_batch.remove(key),
            }
        }
        self.db.apply_batch(sled_batch).map_err(io_err)?;
        if self.durable {
            // `apply_batch` is atomic but only in memory until sled's log is
            // flushed; the trait promises durability when `write` returns.
            self.db.flush().map_err(io_err)?;
        }
        Ok(())
    }

    fn visit_prefix(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<usize, EngineError> {
        let range = self
            .db
            .range::<&[u8], _>((scan_start(prefix, start_after), Bound::Unbounded));
        visit_range(range, prefix, limit, |k| k, |v| v, io_err, visit)
    }

    fn writer_turn(&self) -> Result<Option<crate::engine::WriterTurn>, EngineError> {
        // The only process that opens the store: no turns to take.
        Ok(None)
    }

    fn flush(&self) -> Result<(), EngineError> {
        self.db.flush().map(drop).map_err(io_err)
    }
}

/// Reads of the live tree (sled has no snapshots).
struct SledReader<'a>(&'a sled::Db);

impl Reader for SledReader<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.0.get(key).map_err(io_err)?.map(|v| v.to_vec()))
    }
}
