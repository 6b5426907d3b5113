//! A connector's delivery state: its cursor, its dead-letter list, the
//! remote entries it manages and when it last reconciled.
//!
//! Why here and typed: none of this is a change of an object, so it is not
//! written through the reconciler and never enters the change log; but it
//! is a write, and only the store writes the engine. A [`DeliverySave`] can
//! hold nothing but keys under its own connector's prefix (`s/conn/NAME/`),
//! so a connector runner cannot touch an object, an index or the log.
//!
//! And only the leader's: a save is made for the epoch its runner's
//! process won ([`crate::leadership`]) and lands only while `s/leader`
//! still holds that epoch, checked in the save's own transaction.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::engine::{Batch, EngineError};
use crate::leadership::Epoch;
use crate::{decode, keys, Store, StoreError};

/// A change parked after failing `attempts` times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub seq: u64,
    pub kind: idsync_schema::Kind,
    pub id: Uuid,
    pub attempts: u32,
    pub error: String,
    #[serde(with = "time::serde::rfc3339")]
    pub parked_at: time::OffsetDateTime,
}

/// The delivery state of connector `name`, read side.
pub struct Delivery<'s> {
    store: &'s Store,
    name: &'s str,
}

impl Store {
    /// The delivery state of connector `name`.
    pub fn delivery<'s>(&'s self, name: &'s str) -> Delivery<'s> {
        Delivery { store: self, name }
    }

    /// Write a connector's delivery state, atomically (fsync'd when the
    /// store is durable), if its epoch still leads: otherwise nothing is
    /// written and the error is [`StoreError::Deposed`]. An empty save
    /// writes nothing.
    pub fn save_delivery(&self, save: DeliverySave) -> Result<(), StoreError> {
        if save.batch.is_empty() {
            return Ok(());
        }
        match self.engine().write(save.batch) {
            // Its one expectation is the epoch.
            Err(EngineError::Conflict { .. }) => Err(StoreError::Deposed { epoch: save.epoch }),
            written => Ok(written?),
        }
    }
}

impl Delivery<'_> {
    /// The last change delivered (0: none).
    pub fn cursor(&self) -> Result<u64, StoreError> {
        Ok(self
            .store
            .engine()
            .get(&keys::connector_cursor(self.name))?
            .and_then(|v| v.try_into().ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }

    /// When the last full reconcile ended (Unix seconds; 0 when a version
    /// that did not record it ran it); `None` before the first.
    pub fn last_reconcile(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .store
            .engine()
            .get(&keys::connector_reconciled(self.name))?
            .map(|v| v.try_into().map(i64::from_be_bytes).unwrap_or(0)))
    }

    /// The dead-letter list, oldest first.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError> {
        let mut out = Vec::new();
        self.store
            .scan(&keys::connector_dead_prefix(self.name), |k, v| {
                out.push(decode(k, v)?);
                Ok(true)
            })?;
        Ok(out)
    }

    /// What the connector recorded of the remote entry of object `id`.
    pub fn remote<R: DeserializeOwned>(&self, id: Uuid) -> Result<Option<R>, StoreError> {
        self.store.get(&keys::connector_remote(self.name, id))
    }

    /// Visit every remote entry recorded, in object-id order; `visit`
    /// returns false to stop. A record that does not decode is skipped.
    pub fn remotes<R: DeserializeOwned>(
        &self,
        mut visit: impl FnMut(Uuid, R) -> bool,
    ) -> Result<(), StoreError> {
        self.store
            .scan(&keys::connector_remote_prefix(self.name), |k, v| {
                let (Some(id), Ok(r)) = (keys::trailing_id(k), serde_json::from_slice(v)) else {
                    return Ok(true);
                };
                Ok(visit(id, r))
            })
    }
}

/// Writes of one connector's delivery state, saved together by
/// [`Store::save_delivery`]. Every key it can hold is under the
/// connector's own prefix, and it expects `s/leader` to hold its epoch.
pub struct DeliverySave {
    name: String,
    /// The number of the epoch it expects.
    epoch: u64,
    batch: Batch,
}

impl DeliverySave {
    /// An empty save for connector `name`, by the leader of `epoch`.
    pub fn new(name: &str, epoch: &Epoch) -> Self {
        let mut batch = Batch::new();
        batch.expect(keys::LEADER, Some(epoch.value()));
        Self {
            name: name.to_owned(),
            epoch: epoch.number,
            batch,
        }
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// Remember (`Some`) or forget (`None`) the remote entry of object `id`.
    pub fn remote<R: Serialize>(&mut self, id: Uuid, remote: Option<&R>) {
        let key = keys::connector_remote(&self.name, id);
        match remote {
            Some(r) => self
                .batch
                .put(key, serde_json::to_vec(r).expect("remotes serialise")),
            None => self.batch.delete(key),
        }
    }

    /// Move the cursor to `seq`.
    pub fn cursor(&mut self, seq: u64) {
        self.batch.put(
            keys::connector_cursor(&self.name),
            seq.to_be_bytes().to_vec(),
        );
    }

    /// Park (or re-park, with new figures) `letter`.
    pub fn park(&mut self, letter: &DeadLetter) {
        self.batch.put(
            keys::connector_dead(&self.name, letter.seq),
            serde_json::to_vec(letter).expect("dead letters serialise"),
        );
    }

    /// Take the dead letter of change `seq` off the list (delivered).
    pub fn unpark(&mut self, seq: u64) {
        self.batch.delete(keys::connector_dead(&self.name, seq));
    }

    /// Record that a full reconcile ended at `unix_seconds`.
    pub fn reconciled_at(&mut self, unix_seconds: i64) {
        self.batch.put(
            keys::connector_reconciled(&self.name),
            unix_seconds.to_be_bytes().to_vec(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EngineKind, EngineOptions};

    #[test]
    fn a_save_stays_under_its_connector_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(EngineKind::Redb, dir.path(), &EngineOptions::default()).unwrap();
        let leadership = store
            .lead("test", std::time::Duration::from_secs(5))
            .unwrap();
        let epoch = leadership.role().epoch().cloned().unwrap();
        let id = Uuid::now_v7();
        let mut save = DeliverySave::new("ldap", &epoch);
        save.cursor(7);
        save.remote(id, Some(&serde_json::json!({"dn": "uid=a"})));
        save.reconciled_at(42);
        save.park(&DeadLetter {
            seq: 3,
            kind: idsync_schema::Kind::User,
            id,
            attempts: 1,
            error: "down".into(),
            parked_at: time::OffsetDateTime::UNIX_EPOCH,
        });
        assert_eq!(
            save.batch.expect,
            vec![(keys::LEADER.to_vec(), Some(epoch.value()))],
            "a save is fenced with its leader's epoch"
        );
        for op in &save.batch.ops {
            let (crate::engine::Op::Put(k, _) | crate::engine::Op::Delete(k)) = op;
            assert!(k.starts_with(&keys::connector_prefix("ldap")));
        }
        store.save_delivery(save).unwrap();

        let d = store.delivery("ldap");
        assert_eq!(d.cursor().unwrap(), 7);
        assert_eq!(d.last_reconcile().unwrap(), Some(42));
        assert_eq!(d.dead_letters().unwrap().len(), 1);
        let r: serde_json::Value = d.remote(id).unwrap().unwrap();
        assert_eq!(r["dn"], "uid=a");
        assert_eq!(store.delivery("webhook").cursor().unwrap(), 0);

        let mut save = DeliverySave::new("ldap", &epoch);
        save.unpark(3);
        save.remote::<serde_json::Value>(id, None);
        store.save_delivery(save).unwrap();
        assert!(d.dead_letters().unwrap().is_empty());
        let mut n = 0;
        d.remotes::<serde_json::Value>(|_, _| {
            n += 1;
            true
        })
        .unwrap();
        assert_eq!(n, 0);
        assert_eq!(store.head().unwrap(), 0, "delivery state is not a change");
    }
}
