//! idsync's store: the only code that writes an engine.
//!
//! Why a crate of its own: the one write path of the architecture
//! (`docs/architecture.md`, invariant 1) is a wall the compiler keeps. The
//! engines and their batches are private to this crate; what it offers the
//! rest of idsync is
//!
//! - [`Store`], the typed read side (objects, indexes, the change log);
//! - [`reconcile`], the reconciler: every change of an object goes through
//!   a [`reconcile::Tx`], which writes the object, its indexes and its
//!   change event in one atomic batch;
//! - [`writer`], group commit for request-at-a-time sources (SCIM, the
//!   admin API) on top of the reconciler;
//! - [`delivery`], the typed delivery state of a connector (cursor, dead
//!   letters, remote ids), the only other thing anybody may write, under
//!   that connector's own prefix, and only by the leader;
//! - [`leadership`], which process leads (runs the connectors), and the
//!   epoch every delivery save is fenced with;
//! - [`engine_bench`], raw engine figures for the benchmarks, on an engine
//!   of their own.
//!
//! Code outside this crate reads freely and writes only through the typed
//! APIs:
//!
//! ```no_run
//! # fn f(store: &idsync_store::Store) -> Result<(), idsync_store::StoreError> {
//! let leadership = store.lead("host-a", std::time::Duration::from_secs(5))?;
//! let epoch = leadership.role().epoch().cloned().expect("an embedded store's process leads");
//! let cursor = store.delivery("ldap").cursor()?;
//! let mut save = idsync_store::delivery::DeliverySave::new("ldap", &epoch);
//! save.cursor(cursor + 1);
//! store.save_delivery(save)?;
//! # Ok(()) }
//! ```
//!
//! and cannot reach an engine write (each of these fails to compile):
//!
//! ```compile_fail
//! # fn f(store: &idsync_store::Store) {
//! store.engine(); // private: only the store writes the engine
//! # }
//! ```
//!
//! ```compile_fail
//! let mut batch = idsync_store::engine::Batch::new(); // the engine module is private
//! ```
//!
//! ```compile_fail
//! # fn f(tx: &mut idsync_store::reconcile::Tx<'_>) {
//! tx.put_raw(b"o/u/x".to_vec(), Vec::new()); // no raw writes: typed ones only
//! # }
//! ```

mod changelog;
pub mod claims;
pub mod copy;
pub mod delivery;
mod engine;
pub mod engine_bench;
mod engines;
mod head_watch;
pub mod keys;
pub mod leadership;
mod postgres_engine;
pub mod reconcile;
mod redb_engine;
mod sled_engine;
#[cfg(any(test, feature = "test-postgres"))]
pub mod test_postgres;
pub mod writer;

use std::path::Path;

use idsync_schema::{Kind, User};
use serde::de::DeserializeOwned;
use uuid::Uuid;

pub use changelog::{Actor, ChangeEvent};
use engine::Engine;
pub use engine::{EngineError, EngineKind, EngineOptions, Entry};
pub use idsync_schema::Operation;
use keys::Index;
pub use postgres_engine::{url_has_password, PostgresOptions};

/// Errors reading the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A stored value does not decode: the data dir was written by an
    /// incompatible version, or damaged.
    #[error("corrupt value under key {key}: {message}")]
    Corrupt { key: String, message: String },
    /// A connector save made by the leader of `epoch` found another
    /// epoch in `s/leader`: another process leads now; nothing was saved.
    #[error("nothing saved: epoch {epoch} no longer leads (another process took over)")]
    Deposed { epoch: u64 },
}

impl StoreError {
    /// Whether a write found the store moved under it and wrote nothing
    /// ([`EngineError::Conflict`]): another writer committed first, or a
    /// claim the write expected was taken over.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Engine(EngineError::Conflict { .. }))
    }
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        message: e.to_string(),
    })
}

/// The store: one engine and the typed views over its keyspace.
pub struct Store {
    engine: head_watch::HeadWatch,
    /// The writer lock of every reconciler over this store: two of them
    /// (tests make two, as two replicas) take turns as one reconciler's
    /// writers do, instead of racing for the head.
    pub(crate) writers: reconcile::WriterLock,
}

impl Store {
    /// Open (or create) the store of `kind` in `dir`.
    pub fn open(kind: EngineKind, dir: &Path, opts: &EngineOptions) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| EngineError::Open {
            engine: "store",
            path: dir.to_owned(),
            message: e.to_string(),
        })?;
        Self::with_engine(engines::open_engine(kind, dir, opts)?)
    }

    /// A store over an engine opened elsewhere.
    fn with_engine(engine: Box<dyn Engine>) -> Result<Self, StoreError> {
        let engine = head_watch::HeadWatch::new(engine)?;
        // The head the watch read as it started: not read twice.
        let head = *engine.subscribe().borrow();
        Ok(Self {
            engine,
            writers: reconcile::WriterLock::new(head + 1),
        })
    }

    /// The engine: the reconciler's batches and the delivery state's, and
    /// nobody else's.
    pub(crate) fn engine(&self) -> &dyn Engine {
        &self.engine
    }

    /// Whether each read is a round trip to another process (the
    /// PostgreSQL engine).
    pub fn is_remote(&self) -> bool {
        self.engine.is_remote()
    }

    /// Wakes up whenever the change log's head moves (connectors wait on
    /// it instead of polling).
    pub fn subscribe_head(&self) -> tokio::sync::watch::Receiver<u64> {
        self.engine.subscribe()
    }

    /// Read and decode one key.
    pub fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.engine.get(key)? {
            Some(bytes) => decode(key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The progress record of the import of the file with `digest` (hex),
    /// saved by [`reconcile::Tx::save_import_progress`].
    pub fn import_progress<P: DeserializeOwned>(
        &self,
        digest: &str,
    ) -> Result<Option<P>, StoreError> {
        self.get(&keys::import_progress(digest))
    }

    /// One object by id.
    pub fn object<T: DeserializeOwned>(
        &self,
        kind: Kind,
        id: Uuid,
    ) -> Result<Option<T>, StoreError> {
        self.get(&keys::object(kind, id))
    }

    /// The id an index maps `value` to.
    pub fn lookup(&self, index: Index, value: &str) -> Result<Option<Uuid>, StoreError> {
        Ok(self
            .engine
            .get(&index.key(value))?
            .and_then(|v| keys::trailing_id(&v)))
    }

    /// One page of a search by the start of an indexed value (users whose
    /// mail starts with `start`, compared as the index compares): up to
    /// `limit` (index key, id) pairs in value order, strictly after the
    /// index key `after` (the last key of the page before). It reads
    /// only what it returns, so it stays fast on a million objects.
    pub fn index_page(
        &self,
        index: Index,
        start: &str,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Uuid)>, StoreError> {
        let prefix = index.key(start);
        let page = self.engine.scan_prefix(&prefix, after, limit)?;
        Ok(page
            .into_iter()
            .filter_map(|(k, v)| keys::trailing_id(&v).map(|id| (k, id)))
            .collect())
    }

    /// One object by its natural key: users by mail, loginName or id; groups
    /// by displayName or id; assets by name or id; profiles by name or id;
    /// requests and certificates by id.
    pub fn find<T: DeserializeOwned>(
        &self,
        kind: Kind,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        if let Ok(id) = Uuid::parse_str(key) {
            if let Some(obj) = self.object(kind, id)? {
                return Ok(Some(obj));
            }
        }
        let indexes: &[Index] = match kind {
            Kind::User => &[Index::UserMail, Index::UserLogin, Index::UserExternalId],
            Kind::Group => &[Index::GroupName, Index::GroupExternalId],
            Kind::Asset => &[Index::AssetName],
            Kind::Profile => &[Index::ProfileName],
            Kind::Request | Kind::Certificate | Kind::Registration => &[],
        };
        for index in indexes {
            if let Some(id) = self.lookup(*index, key)? {
                return self.object(kind, id);
            }
        }
        Ok(None)
    }

    /// Visit every entry under `prefix` in key order, a page at a time, so a
    /// million objects never sit in memory together. `visit` returns false to
    /// stop.
    pub fn scan(
        &self,
        prefix: &[u8],
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        const PAGE: usize = 1024;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let mut last = Vec::new();
            let mut stopped = false;
            let seen = self.visit_page(
                prefix,
                after.as_deref(),
                PAGE,
                |k, v| -> Result<bool, StoreError> {
                    if visit(k, v)? {
                        last.clear();
                        last.extend_from_slice(k);
                        Ok(true)
                    } else {
                        stopped = true;
                        Ok(false)
                    }
                },
            )?;
            if stopped || seen < PAGE {
                return Ok(());
            }
            after = Some(last);
        }
    }

    /// Hand up to `limit` entries under `prefix`, in key order, strictly
    /// after `after` when given, to `visit` as the engine holds them (no
    /// copy), until it answers `Ok(false)` or an error, which ends the
    /// walk and is returned. How many entries `visit` was handed.
    pub fn visit_page<E: From<StoreError>>(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool, E>,
    ) -> Result<usize, E> {
        let mut failed = None;
        let seen = self
            .engine
            .visit_prefix(prefix, after, limit, &mut |k, v| match visit(k, v) {
                Ok(go_on) => go_on,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            })
            .map_err(StoreError::from)?;
        match failed {
            Some(e) => Err(e),
            None => Ok(seen),
        }
    }

    /// Up to `limit` entries under `prefix`, in key order, strictly after
    /// `after` when given: one page of a scan whose caller keeps its place
    /// (the SCIM listing's anchors).
    pub fn scan_page(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        Ok(self.engine.scan_prefix(prefix, after, limit)?)
    }

    /// Visit every object of `kind`, decoded, in id (creation) order.
    pub fn for_each<T: DeserializeOwned>(
        &self,
        kind: Kind,
        mut visit: impl FnMut(T) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        self.scan(keys::object_prefix(kind), |k, v| visit(decode(k, v)?))
    }

    /// Number of objects of `kind`.
    pub fn count(&self, kind: Kind) -> Result<u64, StoreError> {
        let mut n = 0;
        self.scan(keys::object_prefix(kind), |_, _| {
            n += 1;
            Ok(true)
        })?;
        Ok(n)
    }

    /// The ids of the members of `group`.
    pub fn members(&self, group: Uuid) -> Result<Vec<Uuid>, StoreError> {
        self.marked(&keys::members_prefix(group))
    }

    /// The ids at the end of the marker keys under `prefix` (see
    /// [`keys`]: members of a group, certificates of a serial, requests
    /// of a SCEP transaction, …).
    pub fn marked(&self, prefix: &[u8]) -> Result<Vec<Uuid>, StoreError> {
        let mut ids = Vec::new();
        self.scan(prefix, |k, _| {
            ids.extend(keys::trailing_id(k));
            Ok(true)
        })?;
        Ok(ids)
    }

    /// The members of `group`, as users.
    pub fn member_users(&self, group: Uuid) -> Result<Vec<User>, StoreError> {
        let mut users = Vec::new();
        for id in self.members(group)? {
            users.extend(self.object::<User>(Kind::User, id)?);
        }
        Ok(users)
    }

    /// The engine's name (`redb`, `sled`, `postgres`), for status pages.
    pub fn engine_name(&self) -> &'static str {
        self.engine.name()
    }

    /// How long a round trip to the database takes now (`SELECT 1` for
    /// PostgreSQL); `None` for the embedded engines, which have none.
    pub fn round_trip(&self) -> Result<Option<std::time::Duration>, StoreError> {
        Ok(self.engine.round_trip()?)
    }

    /// The sequence number of the last change (0 for an empty log).
    pub fn head(&self) -> Result<u64, StoreError> {
        Ok(keys::head_or_zero(self.engine.get(keys::HEAD)?.as_deref()))
    }

    /// Up to `limit` change events after `after`, in order.
    pub fn changes(&self, after: u64, limit: usize) -> Result<Vec<ChangeEvent>, StoreError> {
        let start = keys::change(after);
        self.engine
            .scan_prefix(keys::CHANGE_PREFIX, Some(&start), limit)?
            .into_iter()
            .map(|(k, v)| decode(&k, &v))
            .collect()
    }

    /// The changes to object `id` numbered `first..=last`, oldest first:
    /// one window of its history. Every event of the window is read but
    /// only the object's own are decoded (the id is looked for in the raw
    /// bytes first), so a window of thousands costs a few milliseconds;
    /// a caller pages back through the log window by window.
    pub fn object_changes(
        &self,
        id: Uuid,
        first: u64,
        last: u64,
    ) -> Result<Vec<ChangeEvent>, StoreError> {
        if last < first {
            return Ok(Vec::new());
        }
        let needle = id.to_string();
        let finder = memchr::memmem::Finder::new(needle.as_bytes());
        let after = first.checked_sub(1).map(keys::change);
        let limit = usize::try_from(last - first + 1).unwrap_or(usize::MAX);
        let mut found = Vec::new();
        self.visit_page(
            keys::CHANGE_PREFIX,
            after.as_deref(),
            limit,
            |k, v| -> Result<bool, StoreError> {
                if finder.find(v).is_some() {
                    let event: ChangeEvent = decode(k, v)?;
                    if event.id == id {
                        found.push(event);
                    }
                }
                Ok(true)
            },
        )?;
        Ok(found)
    }

    /// The change event numbered `seq`, if the log has it.
    pub fn change(&self, seq: u64) -> Result<Option<ChangeEvent>, StoreError> {
        self.get(&keys::change(seq))
    }

    /// Make everything written so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        Ok(self.engine.flush()?)
    }
}
