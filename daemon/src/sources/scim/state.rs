//! What every SCIM operation shares: the configuration, the reconciler
//! (its store for reads), the group-commit writer, and the caches that
//! keep listing cheap. One per listener, behind an `Arc`.

use std::sync::Arc;

use idsync_store::reconcile::Reconciler;
use idsync_store::writer::Writer;
use idsync_store::Store;

use super::list_cache::ListCache;
use super::ScimConfig;

/// What the operations work with.
pub(crate) struct State {
    pub(crate) cfg: ScimConfig,
    pub(crate) rec: Arc<Reconciler>,
    pub(crate) writer: Writer,
    /// Totals and page anchors, kept by the change log.
    pub(crate) lists: Arc<ListCache>,
    /// [`ScimConfig::url_base`], computed once.
    url_base: String,
}

impl State {
    pub(crate) fn new(cfg: ScimConfig, rec: Arc<Reconciler>, writer: Writer) -> Self {
        Self {
            url_base: cfg.url_base(),
            cfg,
            rec,
            writer,
            lists: Arc::default(),
        }
    }

    /// Reads go straight to the store: a write is answered only after its
    /// commit, so a client reads its own writes.
    pub(crate) fn store(&self) -> &Store {
        self.rec.store()
    }

    /// Run `read`, which reads the store, in a request's task. On a store
    /// across the network each read waits for a round trip: the worker
    /// hands its other tasks over for that long
    /// ([`tokio::task::block_in_place`]), so one waiting request does not
    /// hold up the others (with two workers, two reads in flight were
    /// the whole server's). An embedded store answers faster than the hand-over
    /// costs.
    pub(crate) fn reading<T>(&self, read: impl FnOnce() -> T) -> T {
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_thread && self.store().is_remote() {
            tokio::task::block_in_place(read)
        } else {
            read()
        }
    }

    /// The absolute URL locations and references start with.
    pub(crate) fn base(&self) -> &str {
        &self.url_base
    }

    /// What discovery documents advertise.
    pub(crate) fn advertised(&self) -> idsync_schema::scim::Advertised<'_> {
        self.cfg.advertised(&self.url_base)
    }
}
