//! A connector's delivery state in the store: its cursor, its dead-letter
//! list and the remote entries it manages. Written directly with engine
//! batches, never through the reconciler: none of this is a change of an
//! object, so none of it belongs in the change log.

use std::collections::HashMap;

use idsync_connectors::{Remote, View, ViewError};
use idsync_schema::Kind;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::{keys, Batch, Store, StoreError};

/// A change parked after failing `attempts` times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub seq: u64,
    pub kind: Kind,
    pub id: Uuid,
    pub attempts: u32,
    pub error: String,
    #[serde(with = "time::serde::rfc3339")]
    pub parked_at: time::OffsetDateTime,
}

/// The last change delivered (0: none).
pub fn cursor(store: &Store, name: &str) -> Result<u64, StoreError> {
    Ok(store
        .engine()
        .get(&keys::connector_cursor(name))?
        .and_then(|v| v.try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0))
}

/// When the last full reconcile ended (Unix seconds; 0 when a version
/// that did not record it ran it); `None` before the first.
pub fn last_reconcile(store: &Store, name: &str) -> Result<Option<i64>, StoreError> {
    Ok(store
        .engine()
        .get(&keys::connector_reconciled(name))?
        .map(|v| v.try_into().map(i64::from_be_bytes).unwrap_or(0)))
}

/// Whether the first full reconcile ran (the runner keeps
/// [`last_reconcile`] itself; the tests ask this).
#[cfg(test)]
pub fn reconciled(store: &Store, name: &str) -> Result<bool, StoreError> {
    Ok(last_reconcile(store, name)?.is_some())
}

/// The dead-letter list, oldest first.
pub fn dead_letters(store: &Store, name: &str) -> Result<Vec<DeadLetter>, StoreError> {
    let mut out = Vec::new();
    store.scan(&keys::connector_dead_prefix(name), |k, v| {
        out.push(serde_json::from_slice(v).map_err(|e| StoreError::Corrupt {
            key: String::from_utf8_lossy(k).into_owned(),
            message: e.to_string(),
        })?);
        Ok(true)
    })?;
    Ok(out)
}

/// Queue remembering (or forgetting) the remote entries learned.
pub fn queue_learned(batch: &mut Batch, name: &str, learned: &[(Uuid, Option<Remote>)]) {
    for (id, remote) in learned {
        let key = keys::connector_remote(name, *id);
        match remote {
            Some(r) => batch.put(key, serde_json::to_vec(r).expect("remotes serialise")),
            None => batch.delete(key),
        }
    }
}

/// Queue a new cursor.
pub fn queue_cursor(batch: &mut Batch, name: &str, seq: u64) {
    batch.put(keys::connector_cursor(name), seq.to_be_bytes().to_vec());
}

/// Queue parking `letter`.
pub fn queue_dead(batch: &mut Batch, name: &str, letter: &DeadLetter) {
    batch.put(
        keys::connector_dead(name, letter.seq),
        serde_json::to_vec(letter).expect("dead letters serialise"),
    );
}

/// The store as connector `name` may see it: objects read-only, and its own
/// remote entries.
pub struct StoreView<'a> {
    pub store: &'a Store,
    pub name: &'a str,
}

fn view_err(e: StoreError) -> ViewError {
    ViewError(e.to_string())
}

impl View for StoreView<'_> {
    fn object(&self, kind: Kind, id: Uuid) -> Result<Option<serde_json::Value>, ViewError> {
        self.store.object(kind, id).map_err(view_err)
    }

    fn members(&self, group: Uuid) -> Result<Vec<Uuid>, ViewError> {
        self.store.members(group).map_err(view_err)
    }

    fn for_each(
        &self,
        kind: Kind,
        visit: &mut dyn FnMut(serde_json::Value) -> bool,
    ) -> Result<(), ViewError> {
        self.store
            .for_each::<serde_json::Value>(kind, |v| Ok(visit(v)))
            .map_err(view_err)
    }

    fn remote(&self, id: Uuid) -> Result<Option<Remote>, ViewError> {
        self.store
            .get(&keys::connector_remote(self.name, id))
            .map_err(view_err)
    }

    fn remotes(&self, visit: &mut dyn FnMut(Uuid, Remote) -> bool) -> Result<(), ViewError> {
        self.store
            .scan(&keys::connector_remote_prefix(self.name), |k, v| {
                let (Some(id), Ok(r)) = (keys::trailing_id(k), serde_json::from_slice(v)) else {
                    return Ok(true);
                };
                Ok(visit(id, r))
            })
            .map_err(view_err)
    }
}

/// A [`StoreView`] plus the remote ids learned by a batch whose save is
/// still being written: the runner delivers the next batch meanwhile, and
/// that batch may touch the same objects (an entry added, then deleted).
/// `None` in `unsaved`: the entry was forgotten.
pub struct UnsavedView<'a> {
    pub view: StoreView<'a>,
    pub unsaved: &'a HashMap<Uuid, Option<Remote>>,
}

impl View for UnsavedView<'_> {
    fn object(&self, kind: Kind, id: Uuid) -> Result<Option<serde_json::Value>, ViewError> {
        self.view.object(kind, id)
    }

    fn members(&self, group: Uuid) -> Result<Vec<Uuid>, ViewError> {
        self.view.members(group)
    }

    fn for_each(
        &self,
        kind: Kind,
        visit: &mut dyn FnMut(serde_json::Value) -> bool,
    ) -> Result<(), ViewError> {
        self.view.for_each(kind, visit)
    }

    fn remote(&self, id: Uuid) -> Result<Option<Remote>, ViewError> {
        match self.unsaved.get(&id) {
            Some(r) => Ok(r.clone()),
            None => self.view.remote(id),
        }
    }

    fn remotes(&self, visit: &mut dyn FnMut(Uuid, Remote) -> bool) -> Result<(), ViewError> {
        let mut go_on = true;
        self.view.remotes(&mut |id, r| {
            if !self.unsaved.contains_key(&id) {
                go_on = visit(id, r);
            }
            go_on
        })?;
        for (id, r) in self.unsaved {
            if !go_on {
                break;
            }
            if let Some(r) = r {
                go_on = visit(*id, r.clone());
            }
        }
        Ok(())
    }
}
