//! Index entries a later version added, written once for the objects
//! stored before it.
//!
//! Every write keeps an object's index and marker entries right
//! ([`super::write`]), but only from the version that knows them on: a
//! store written by an older idsync lacks the entries of indexes added
//! since. The reconciler brings the store to [`keys::INDEX_LAYOUT`] before
//! its first transaction, so a lookup by index can trust a miss. The
//! rewrite emits no change events (no object changes) and is idempotent:
//! a crash half-way leaves the layout key unchanged and the next start
//! writes the same entries again.

use std::sync::Arc;

use idsync_schema::{Certificate, EnrollmentRequest, Registration, Source};

use super::stored::Stored;
use super::{Reconciler, Tx};
use crate::keys;
use crate::{Actor, Store, StoreError};

/// Objects rewritten per commit: bounds the batch on a large store.
const CHUNK: usize = 4096;

impl Reconciler {
    /// Write the index entries the store's layout lacks; nothing when it is
    /// current. Returns whether anything was rewritten.
    pub(super) fn upgrade_indexes(&self) -> Result<bool, StoreError> {
        let layout = self
            .store
            .engine()
            .get(keys::INDEX_LAYOUT_KEY)?
            .and_then(|v| <[u8; 4]>::try_from(v.as_slice()).ok())
            .map_or(1, u32::from_be_bytes);
        if layout >= keys::INDEX_LAYOUT {
            return Ok(false);
        }
        // No event is written, so no actor is recorded.
        let mut tx = self.begin(Source::Api, Actor::default());
        let store = &self.store;
        let rewritten = reindex::<Registration>(store, &mut tx)?
            + reindex::<EnrollmentRequest>(store, &mut tx)?
            + reindex::<Certificate>(store, &mut tx)?;
        tx.queue(
            keys::INDEX_LAYOUT_KEY.to_vec(),
            Some(keys::INDEX_LAYOUT.to_be_bytes().to_vec()),
        );
        tx.commit()?;
        tracing::info!(
            from = layout,
            to = keys::INDEX_LAYOUT,
            objects = rewritten,
            "store indexes brought up to date"
        );
        Ok(true)
    }
}

/// Queue the index and marker entries of every object of `T`'s kind.
fn reindex<T: Stored>(store: &Arc<Store>, tx: &mut Tx<'_>) -> Result<usize, StoreError> {
    let mut objects: Vec<T> = Vec::with_capacity(CHUNK);
    let mut done = 0;
    let mut failed = None;
    store.for_each::<T>(T::KIND, |o| {
        objects.push(o);
        if objects.len() == CHUNK {
            done += queue_entries(tx, &mut objects);
            if let Err(e) = tx.commit_pipelined() {
                failed = Some(e);
                return Ok(false);
            }
        }
        Ok(true)
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    done += queue_entries(tx, &mut objects);
    Ok(done)
}

fn queue_entries<T: Stored>(tx: &mut Tx<'_>, objects: &mut Vec<T>) -> usize {
    let n = objects.len();
    for o in objects.drain(..) {
        let id = o.id();
        for k in o.index_keys() {
            tx.queue(k, Some(id.as_bytes().to_vec()));
        }
        for k in o.marker_keys() {
            tx.queue(k, Some(Vec::new()));
        }
    }
    n
}
