//! The transaction machinery: what a [`Tx`] queues, what it reads, and how
//! it commits.
//!
//! Everything a write queues waits in an overlay (key → value or delete)
//! that reads consult before the store, so a check later in the same
//! transaction sees the writes before it. Savepoints record what each key
//! held before so one request of a shared batch can be forgotten alone;
//! [`Tx::commit_pipelined`] hands a batch to a thread and keeps its overlay
//! readable until it is durable. The per-kind rules never touch the engine:
//! they go through `queue`, `queue_event` and the reads here.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, MutexGuard};
use std::thread::JoinHandle;

use idsync_schema::{Kind, Source};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::stored::Stored;
use super::Settings;
use crate::engine::{Batch, Reader};
use crate::keys::{self, Index};
use crate::{Actor, ChangeEvent, EngineError, Operation, Store, StoreError};

/// One queued write: the value (`None`: delete).
type Queued = Option<Vec<u8>>;

/// Queued writes: key → value (`None`: delete).
type Overlay = HashMap<Vec<u8>, Queued>;

/// A batch handed to the committer thread and not yet known to be durable.
struct Inflight {
    overlay: Arc<Overlay>,
    /// The next sequence number once this batch is durable.
    next_seq: u64,
    handle: JoinHandle<Result<(), EngineError>>,
}

/// An open write transaction. Dropping it without [`Tx::commit`] discards
/// everything it queued (but a batch already handed over by
/// [`Tx::commit_pipelined`] still lands).
pub struct Tx<'r> {
    guard: MutexGuard<'r, u64>,
    store: &'r Arc<Store>,
    pub(super) settings: Arc<Settings>,
    /// Queued writes. Reads see them first, then the in-flight batch, then
    /// the store.
    overlay: Overlay,
    inflight: Option<Inflight>,
    /// A snapshot of the store for look-ups, opened on first use and
    /// dropped when a commit lands (it would not see it).
    reader: RefCell<Option<Box<dyn Reader + 'r>>>,
    /// What [`Tx::read_ahead`](super::read_ahead) fetched: the store's
    /// answer for these keys, until a batch of this Tx writes one of them.
    fetched: HashMap<Vec<u8>, Option<Vec<u8>>>,
    next_seq: u64,
    events: u64,
    pub(super) source: Source,
    actor: Actor,
    /// The time every change queued until the next commit is stamped with.
    pub(super) now: OffsetDateTime,
    /// Previous overlay entries of the keys queued since the first
    /// [`Tx::savepoint`], newest last (empty until one is taken).
    undo: Vec<(Vec<u8>, Option<Queued>)>,
    recording: bool,
    /// Why the change log's head could not be read after a failed write:
    /// this transaction's numbers are unknown, so it commits nothing.
    unknown_head: Option<String>,
    /// What every batch of this transaction expects besides the head: the
    /// drop-folder claim it works under ([`Tx::fence`]).
    fences: Vec<(Vec<u8>, Vec<u8>)>,
    /// This process's turn among the processes writing the store (none
    /// on an embedded engine), held until the transaction ends: dropped
    /// after `Drop` has waited for the batch in flight.
    turn: Option<crate::engine::WriterTurn>,
}

/// The writer lock's value after a write that failed without saying
/// whether it landed (a lost connection during a commit): the next
/// transaction reads the head from the store. Sequence numbers start at 1.
const HEAD_UNKNOWN: u64 = 0;

/// A point a [`Tx`] can roll back to: everything queued after it is
/// forgotten, what was queued before stays (one request of a shared batch
/// failing leaves the others intact).
#[derive(Debug, Clone, Copy)]
pub struct Savepoint {
    next_seq: u64,
    events: u64,
    undo_len: usize,
}

/// What a commit wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    /// Change events written.
    pub events: u64,
    /// The change log's head after the commit.
    pub head: u64,
}

impl<'r> Tx<'r> {
    /// A transaction holding the writer lock `guard` (its value: the next
    /// sequence number).
    pub(super) fn new(
        guard: MutexGuard<'r, u64>,
        store: &'r Arc<Store>,
        settings: Arc<Settings>,
        source: Source,
        actor: Actor,
    ) -> Self {
        let mut guard = guard;
        let mut unknown_head = None;
        // Other processes writing the store wait for this one's turn to
        // end; what they wrote before it began is read from the store.
        let turn = store.engine().writer_turn().unwrap_or_else(|e| {
            unknown_head = Some(format!("waiting for the writers' turn: {e}"));
            None
        });
        if let Some(turn) = &turn {
            // Another replica may have written: number from the head the
            // turn began at, not from memory.
            *guard = turn.head() + 1;
        } else if unknown_head.is_none() && *guard == HEAD_UNKNOWN {
            // A write failed without saying whether it landed: number from
            // the store's head.
            match store.head() {
                Ok(head) => *guard = head + 1,
                Err(e) => unknown_head = Some(e.to_string()),
            }
        }
        let next_seq = *guard;
        Tx {
            guard,
            store,
            settings,
            overlay: HashMap::new(),
            inflight: None,
            reader: RefCell::new(None),
            fetched: HashMap::new(),
            next_seq,
            events: 0,
            source,
            actor,
            now: OffsetDateTime::now_utc(),
            undo: Vec::new(),
            recording: false,
            unknown_head,
            fences: Vec::new(),
            turn,
        }
    }

    /// Whether another process sharing the store waits for this
    /// transaction's turn to write: a long writer then commits and begins
    /// anew at its next batch boundary, as for a writer of this process
    /// ([`Reconciler::others_waiting`](super::Reconciler::others_waiting)).
    pub fn turn_wanted_elsewhere(&self) -> bool {
        self.turn.as_ref().is_some_and(|t| t.wanted_elsewhere())
    }

    /// Work under `claim`: every batch from now on lands only while the
    /// claim still holds the value this process wrote (another process
    /// that took it over, believing this one gone, fences it out).
    pub fn fence(&mut self, claim: &crate::claims::Claim) {
        self.fences.push(claim.fence());
    }

    /// Set the file line recorded in the events that follow.
    pub fn set_line(&mut self, line: Option<u64>) {
        self.actor.line = line;
    }

    /// Change events queued so far.
    pub fn pending_events(&self) -> u64 {
        self.events
    }

    /// Queue the progress record of the import of the file with `digest`
    /// (hex), committed with the rows it counts: that is what lets a
    /// crashed import resume at its first uncommitted row.
    pub fn save_import_progress<P: Serialize>(&mut self, digest: &str, progress: &P) {
        let value = serde_json::to_vec(progress).expect("progress records serialise");
        self.queue(keys::import_progress(digest), Some(value));
    }

    /// Free the digest lock of `digest` ([`Store::lock_digest`](crate::Store::lock_digest)): its
    /// import is done. Safe without a check of its holder under
    /// [`Tx::fence`]: the lock is this claim's while the claim holds.
    pub fn release_digest(&mut self, digest: &str) {
        self.queue(keys::claimed_digest(digest), None);
    }

    /// Queue forgetting the progress record of the file with `digest`.
    pub fn forget_import_progress(&mut self, digest: &str) {
        self.queue(keys::import_progress(digest), None);
    }

    /// Queue one write, remembering what it replaces once a savepoint
    /// exists.
    pub(super) fn queue(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        if self.recording {
            let previous = self.overlay.insert(key.clone(), value);
            self.undo.push((key, previous));
        } else {
            self.overlay.insert(key, value);
        }
    }

    /// The number the next queued event takes.
    pub(super) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Queue the change event of `operation` on object `id` of `kind` under
    /// the next sequence number: the one place the change log grows, so
    /// numbers stay gap-free (a rollback takes the counter back with it).
    pub(super) fn queue_event(
        &mut self,
        kind: Kind,
        id: Uuid,
        operation: Operation,
        version: u64,
        changed: Vec<String>,
    ) {
        let event = ChangeEvent {
            seq: self.next_seq,
            at: self.now,
            kind,
            id,
            operation,
            version,
            source: self.source,
            actor: self.actor.clone(),
            changed,
            // Not the object again: it is stored once, under its key, and a
            // connector delivers its current state (idempotent, and half the
            // bytes an import writes).
            object: None,
        };
        let event_json = serde_json::to_vec(&event).expect("events serialise");
        self.queue(keys::change(self.next_seq), Some(event_json));
        self.next_seq += 1;
        self.events += 1;
    }

    /// How many keys the queue holds (tests: "nothing written" means none).
    #[cfg(test)]
    pub(super) fn queued_writes(&self) -> usize {
        self.overlay.len()
    }

    /// Mark the current point; [`Tx::rollback_to`] forgets what follows.
    pub fn savepoint(&mut self) -> Savepoint {
        self.recording = true;
        Savepoint {
            next_seq: self.next_seq,
            events: self.events,
            undo_len: self.undo.len(),
        }
    }

    /// Forget everything queued since `sp`.
    pub fn rollback_to(&mut self, sp: Savepoint) {
        while self.undo.len() > sp.undo_len {
            let Some((key, previous)) = self.undo.pop() else {
                break;
            };
            match previous {
                Some(v) => self.overlay.insert(key, v),
                None => self.overlay.remove(&key),
            };
        }
        self.next_seq = sp.next_seq;
        self.events = sp.events;
    }

    /// Record the changes that follow as coming from `source` (a shared
    /// batch of the writer mixes sources).
    pub fn set_source(&mut self, source: Source) {
        self.source = source;
    }

    /// Record the changes that follow as made by `actor` (each request of
    /// a shared batch has its own).
    pub fn set_actor(&mut self, actor: Actor) {
        self.actor = actor;
    }

    pub(super) fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.overlay.get(key) {
            return Ok(v.clone());
        }
        if let Some(v) = self.inflight.as_ref().and_then(|i| i.overlay.get(key)) {
            return Ok(v.clone());
        }
        if let Some(v) = self.fetched.get(key) {
            return Ok(v.clone());
        }
        Ok(self.with_reader(|r| r.get(key))?)
    }

    /// Run `read` on the snapshot, opened on first use.
    fn with_reader<T>(
        &self,
        read: impl FnOnce(&dyn Reader) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let mut reader = self.reader.borrow_mut();
        if reader.is_none() {
            *reader = Some(self.store.engine().reader()?);
        }
        read(reader.as_deref().expect("just opened"))
    }

    /// Fetch, in one request, the keys of `wanted` this Tx cannot answer
    /// yet; later reads of them wait for nothing.
    pub(super) fn fetch(&mut self, wanted: &[Vec<u8>]) -> Result<(), StoreError> {
        let inflight = self.inflight.as_ref().map(|i| &i.overlay);
        let mut missing: Vec<&[u8]> = wanted
            .iter()
            .map(Vec::as_slice)
            .filter(|k| {
                !self.overlay.contains_key(*k)
                    && !inflight.is_some_and(|o| o.contains_key(*k))
                    && !self.fetched.contains_key(*k)
            })
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        let values = self.with_reader(|r| r.get_many(&missing))?;
        let found: Vec<_> = missing
            .into_iter()
            .map(<[u8]>::to_vec)
            .zip(values)
            .collect();
        self.fetched.extend(found);
        Ok(())
    }

    /// Drop what was read ahead (keeping the table's room for the next
    /// chunk).
    pub(super) fn forget_read_ahead(&mut self) {
        self.fetched.clear();
    }

    /// The store this transaction writes.
    pub(super) fn store(&self) -> &Store {
        self.store
    }

    pub(super) fn load<T: Stored>(&self, id: Uuid) -> Result<Option<T>, StoreError> {
        let key = keys::object(T::KIND, id);
        match self.read(&key)? {
            Some(bytes) => crate::decode(&key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The id `index` maps `value` to, as this transaction sees it.
    pub fn lookup(&self, index: Index, value: &str) -> Result<Option<Uuid>, StoreError> {
        Ok(self
            .read(&index.key(value))?
            .and_then(|v| keys::trailing_id(&v)))
    }

    /// The object `index` maps `value` to, as this transaction sees it.
    pub(super) fn find<T: Stored>(
        &self,
        index: Index,
        value: &str,
    ) -> Result<Option<T>, StoreError> {
        match self.lookup(index, value)? {
            Some(id) => self.load(id),
            None => Ok(None),
        }
    }

    /// Keys under `prefix`, the store's merged with what this Tx queued.
    pub(super) fn keys_under(&self, prefix: &[u8]) -> Result<BTreeSet<Vec<u8>>, StoreError> {
        let mut found = BTreeSet::new();
        self.store.scan(prefix, |k, _| {
            found.insert(k.to_vec());
            Ok(true)
        })?;
        let inflight = self.inflight.iter().flat_map(|i| i.overlay.iter());
        for (k, v) in inflight.chain(&self.overlay) {
            if k.starts_with(prefix) {
                match v {
                    Some(_) => found.insert(k.clone()),
                    None => found.remove(k),
                };
            }
        }
        Ok(found)
    }

    /// Wait for the batch in flight, if any, and account for it.
    fn settle(&mut self) -> Result<(), StoreError> {
        if let Some(inflight) = self.inflight.take() {
            self.reader.get_mut().take();
            // The store moved at these keys (and only there: the writer
            // lock is ours).
            for key in inflight.overlay.keys() {
                self.fetched.remove(key);
            }
            match inflight.handle.join() {
                Ok(Ok(())) => *self.guard = inflight.next_seq,
                Ok(Err(e)) => {
                    *self.guard = HEAD_UNKNOWN;
                    return Err(e.into());
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok(())
    }

    /// The queued writes (plus the head), the head after them, and the
    /// head they move from when they add events; refused when this
    /// transaction's numbers are unknown.
    fn take_batch(&mut self) -> Result<(Overlay, u64, Option<u64>), StoreError> {
        if let Some(why) = &self.unknown_head {
            return Err(EngineError::Io {
                engine: "store",
                message: format!(
                    "nothing written: the change log's head is unknown after a failed write ({why})"
                ),
            }
            .into());
        }
        // Savepoints do not reach past a commit.
        self.undo.clear();
        let head = self.next_seq - 1;
        let from = (self.events > 0).then(|| *self.guard - 1);
        if from.is_some() {
            self.overlay
                .insert(keys::HEAD.to_vec(), Some(head.to_be_bytes().to_vec()));
        }
        Ok((std::mem::take(&mut self.overlay), head, from))
    }

    /// A sorted engine batch of `overlay`; moving the head from `from`,
    /// it lands only if the head is still there.
    fn to_batch(overlay: &Overlay, from: Option<u64>, fences: &[(Vec<u8>, Vec<u8>)]) -> Batch {
        // Sorted keys let B-tree engines fill pages in order.
        let mut entries: Vec<_> = overlay.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut batch = Batch::new();
        if let Some(from) = from {
            batch.expect(keys::HEAD, (from > 0).then(|| from.to_be_bytes().to_vec()));
        }
        for (k, v) in fences {
            batch.expect(k.clone(), Some(v.clone()));
        }
        for (k, v) in entries {
            match v {
                Some(v) => batch.put(k.clone(), v.clone()),
                None => batch.delete(k.clone()),
            }
        }
        batch
    }

    /// Hand everything queued so far to a committer thread and carry on
    /// queuing: the next batch is checked and built while this one is being
    /// written (the store's commit and the import's parsing then overlap).
    /// Waits first for the previous batch; its failure is returned here.
    /// Once this returns, the previous batch is durable.
    pub fn commit_pipelined(&mut self) -> Result<Committed, StoreError> {
        self.settle()?;
        let durable_head = *self.guard - 1;
        let events = self.events;
        let (overlay, _, from) = self.take_batch()?;
        if !overlay.is_empty() {
            let overlay = Arc::new(overlay);
            let store = Arc::clone(self.store);
            let shared = Arc::clone(&overlay);
            let fences = self.fences.clone();
            let handle = std::thread::Builder::new()
                .name("idsync-commit".into())
                .spawn(move || store.engine().write(Self::to_batch(&shared, from, &fences)))
                .map_err(|e| EngineError::Io {
                    engine: "store",
                    message: format!("cannot start the commit thread: {e}"),
                })?;
            self.inflight = Some(Inflight {
                overlay,
                next_seq: self.next_seq,
                handle,
            });
        }
        self.events = 0;
        self.now = OffsetDateTime::now_utc();
        Ok(Committed {
            events,
            head: durable_head,
        })
    }

    /// Write everything queued as one atomic batch (after the batch in
    /// flight, if any) and wait until it is durable.
    pub fn commit(mut self) -> Result<Committed, StoreError> {
        self.settle()?;
        let events = self.events;
        let (overlay, head, from) = self.take_batch()?;
        if !overlay.is_empty() {
            if let Err(e) = self
                .store
                .engine()
                .write(Self::to_batch(&overlay, from, &self.fences))
            {
                *self.guard = HEAD_UNKNOWN;
                return Err(e.into());
            }
        }
        *self.guard = self.next_seq;
        Ok(Committed { events, head })
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        // A handed-over batch lands or fails on its own; wait for it so the
        // sequence number stays right for the next writer.
        if let Err(e) = self.settle() {
            tracing::error!("a pipelined commit failed: {e}");
        }
    }
}
