//! The generic write path: how a new version of any [`Stored`] object
//! becomes queued writes.
//!
//! Every kind's rules end in one of these few calls, so what a write means
//! is the same for all of them: nothing at all when the object did not
//! change; otherwise the object under its key, its index and marker entries
//! moved from the old version's to the new one's, its version bumped and one
//! change event.

use std::collections::BTreeSet;

use idsync_schema::{Meta, Rule, Violation};
use serde::Serialize;

use super::stored::{InputDigest, Stored};
use super::{Outcome, Tx, WriteError};
use crate::keys::{self, Index};
use crate::{Operation, StoreError};

impl Tx<'_> {
    /// Refuse `value` for `index` when another object than `id` holds it.
    pub(super) fn check_unique(
        &self,
        index: Index,
        value: &str,
        id: uuid::Uuid,
    ) -> Result<(), WriteError> {
        match self.lookup(index, value)? {
            Some(other) if other != id => {
                Err(Violation::new(index.attribute(), value, Rule::NotUnique).into())
            }
            _ => Ok(()),
        }
    }

    /// Queue `new` (replacing `old`) with its indexes and a change event;
    /// nothing at all when it equals `old`.
    pub(super) fn write<T: Stored>(
        &mut self,
        old: Option<&T>,
        new: T,
    ) -> Result<Outcome, StoreError> {
        self.write_digested(old, new, None)
    }

    /// [`Tx::write`] of the result of an input with `digest`.
    pub(super) fn write_digested<T: Stored>(
        &mut self,
        old: Option<&T>,
        new: T,
        digest: Option<&InputDigest>,
    ) -> Result<Outcome, StoreError> {
        if old == Some(&new) {
            return Ok(Outcome::Unchanged(new.id()));
        }
        self.emit_digested(old, new, &[], digest)
    }

    /// Queue `new` and its event even when only `extra` changed (a group
    /// whose members, kept on the users, changed: its version moves).
    pub(super) fn emit<T: Stored>(
        &mut self,
        old: Option<&T>,
        new: T,
        extra: &[&str],
    ) -> Result<Outcome, StoreError> {
        self.emit_digested(old, new, extra, None)
    }

    fn emit_digested<T: Stored>(
        &mut self,
        old: Option<&T>,
        mut new: T,
        extra: &[&str],
        digest: Option<&InputDigest>,
    ) -> Result<Outcome, StoreError> {
        let id = new.id();
        let (operation, changed) = match old {
            Some(old) => {
                new.meta_mut().bump(self.now);
                let mut changed = changed_fields(old, &new);
                changed.extend(extra.iter().map(|s| s.to_string()));
                (Operation::Updated, changed)
            }
            None => {
                *new.meta_mut() = Meta::new(self.now);
                (Operation::Created, Vec::new())
            }
        };
        // The event queued below takes the next number.
        new.meta_mut().record_change(self.next_seq());
        let version = new.meta_mut().version;
        let json = serde_json::to_string(&new).expect("domain objects serialise");
        self.queue_entries(old, &new, digest);
        self.queue(keys::object(T::KIND, id), Some(json.into_bytes()));
        self.queue_event(T::KIND, id, operation, version, changed.clone());
        Ok(match operation {
            Operation::Created => Outcome::Created(id),
            _ => Outcome::Updated(id, changed),
        })
    }

    /// Queue the index and marker entries that differ between `old` and
    /// `new`, and `new`'s digest entry.
    fn queue_entries<T: Stored>(&mut self, old: Option<&T>, new: &T, digest: Option<&InputDigest>) {
        let id = new.id();
        // Entries the old version already had point here already, but the
        // digest entry is rewritten on every write (see `InputDigest`).
        let digest_key = new.digest_key();
        let old_index = old.map(Stored::index_keys).unwrap_or_default();
        self.queue_moved(
            &old_index,
            new.index_keys(),
            id.as_bytes(),
            digest_key.as_deref(),
        );
        if let Some(k) = digest_key {
            let mut value = digest.map_or_else(Vec::new, |d| d.to_vec());
            value.extend_from_slice(id.as_bytes());
            self.queue(k, Some(value));
        }
        let old_markers = old.map(Stored::marker_keys).unwrap_or_default();
        self.queue_moved(&old_markers, new.marker_keys(), &[], None);
    }

    /// Queue deleting the keys of `old` that `new` lacks and writing `value`
    /// under the keys of `new` that `old` lacks (but `skip`, which the caller
    /// writes itself).
    fn queue_moved(
        &mut self,
        old: &[Vec<u8>],
        new: Vec<Vec<u8>>,
        value: &[u8],
        skip: Option<&[u8]>,
    ) {
        for k in old.iter().filter(|k| !new.contains(k)) {
            self.queue(k.clone(), None);
        }
        for k in new.into_iter().filter(|k| !old.contains(k)) {
            if Some(k.as_slice()) != skip {
                self.queue(k, Some(value.to_vec()));
            }
        }
    }

    /// Queue the removal of `old`: object, index and marker entries, and a
    /// `deleted` event.
    pub(super) fn remove<T: Stored>(&mut self, old: &T) {
        let id = old.id();
        for k in old.index_keys().into_iter().chain(old.marker_keys()) {
            self.queue(k, None);
        }
        self.queue(keys::object(T::KIND, id), None);
        let mut gone = old.clone();
        gone.meta_mut().bump(self.now);
        let version = gone.meta_mut().version;
        self.queue_event(T::KIND, id, Operation::Deleted, version, Vec::new());
    }
}

/// The attributes whose serialised value differs (meta aside).
fn changed_fields<T: Serialize>(old: &T, new: &T) -> Vec<String> {
    let (Ok(serde_json::Value::Object(old)), Ok(serde_json::Value::Object(new))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return Vec::new();
    };
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    names
        .into_iter()
        .filter(|k| k.as_str() != "meta" && old.get(*k) != new.get(*k))
        .cloned()
        .collect()
}
