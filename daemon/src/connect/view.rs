//! The store as a connector sees it ([`View`]): objects read-only, and the
//! remote entries it recorded in its delivery state
//! (`idsync_store::delivery`, the only thing the runner writes).

use std::collections::HashMap;

use idsync_connectors::{Remote, View, ViewError};
use idsync_schema::Kind;
use uuid::Uuid;

use idsync_store::delivery::DeliverySave;
use idsync_store::{Store, StoreError};

/// Queue remembering (or forgetting) the remote entries learned.
pub fn save_learned(save: &mut DeliverySave, learned: &[(Uuid, Option<Remote>)]) {
    for (id, remote) in learned {
        save.remote(*id, remote.as_ref());
    }
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
        self.store.delivery(self.name).remote(id).map_err(view_err)
    }

    fn remotes(&self, visit: &mut dyn FnMut(Uuid, Remote) -> bool) -> Result<(), ViewError> {
        self.store
            .delivery(self.name)
            .remotes(visit)
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
