//! Drop-folder claims shared by the replicas on one store: which process
//! imports a file that sits in a shared drop folder's `.work/`, so that a
//! file is imported by one process at a time and a gone one's files are
//! finished by another.
//!
//! Why rows in the store, beside the rename into `.work/`: the rename is
//! atomic between processes on one file system (one wins, the other finds
//! the name gone), but after a crash a file in `.work/` says nothing of
//! who took it, so another replica could not tell a live import from an
//! abandoned one. A claim row is written (expecting no row) before the
//! rename and names its holder: the node (`replicas.node_name`), the
//! process (an id drawn at each start) and a token of its own.
//!
//! Whether a holder is alive comes from heartbeats ([`Store::beat`]),
//! not from the leader: every daemon on a shared store rewrites its
//! `s/beat/NODE` every half `replicas.failover_ms`, and a node whose beat
//! did not change for two failover times, as the observer measures it, is
//! gone (no clocks compared between machines). A gone holder's claim is
//! taken over by writing a new value expecting the old one, so only one
//! process wins it. And since a holder taken for gone may only be slow,
//! every import batch made under a claim expects the claim's exact value
//! in its own transaction ([`crate::reconcile::Tx::fence`]): once another
//! process took the claim over, the slow one's batches write nothing.
//!
//! The import progress is keyed by the file's digest, so two files of the
//! same content imported at once would share it: a digest lock
//! ([`Store::lock_digest`]) lets one import of a content run at a time.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::engine::{Batch, EngineError};
use crate::{keys, Store, StoreError};

/// Who holds a claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// `replicas.node_name` (or host, pid and admin address).
    pub node: String,
    /// Drawn at each start of the daemon: a node's claims from before its
    /// restart are a gone process's.
    pub process: String,
    /// This claim's own (a claim taken over gets a new one).
    pub token: String,
}

/// A claim row as read, with the exact bytes a takeover must expect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub holder: Holder,
    raw: Vec<u8>,
}

/// A claim this process holds: every import batch made under it expects
/// its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The claimed file's name in the store (`FOLDER/.work NAME`).
    pub name: String,
    pub holder: Holder,
    value: Vec<u8>,
}

impl Claim {
    /// The key and value every batch under this claim expects.
    pub(crate) fn fence(&self) -> (Vec<u8>, Vec<u8>) {
        (keys::claim(&self.name), self.value.clone())
    }
}

/// What [`Store::lock_digest`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestLock {
    /// The lock is this claim's.
    Taken,
    /// Another live claim imports the same content now: wait.
    Busy,
}

/// A digest lock's value: the claim that holds it.
#[derive(Debug, Serialize, Deserialize)]
struct DigestHolder {
    name: String,
    token: String,
}

impl Store {
    /// Claim the file `name` for `node`/`process`, expecting no claim on
    /// it; `None` when another process has it.
    pub fn claim(
        &self,
        name: &str,
        node: &str,
        process: &str,
    ) -> Result<Option<Claim>, StoreError> {
        self.take_over(name, node, process, None)
    }

    /// Take over the claim on `name` from what `from` read (`None`: no
    /// row); `None` when it moved meanwhile (another process took it).
    pub fn take_over(
        &self,
        name: &str,
        node: &str,
        process: &str,
        from: Option<&Held>,
    ) -> Result<Option<Claim>, StoreError> {
        let holder = Holder {
            node: node.to_owned(),
            process: process.to_owned(),
            token: uuid::Uuid::now_v7().simple().to_string(),
        };
        let value = serde_json::to_vec(&holder).expect("a holder serialises");
        let key = keys::claim(name);
        let mut batch = Batch::new();
        batch.expect(key.clone(), from.map(|h| h.raw.clone()));
        batch.put(key, value.clone());
        match written(self.engine().write(batch))? {
            true => Ok(Some(Claim {
                name: name.to_owned(),
                holder,
                value,
            })),
            false => Ok(None),
        }
    }

    /// Who holds the claim on `name`, if anyone.
    pub fn claim_holder(&self, name: &str) -> Result<Option<Held>, StoreError> {
        let key = keys::claim(name);
        self.engine()
            .get(&key)?
            .map(|raw| held(&key, raw))
            .transpose()
    }

    /// Every claim row: the file's name and its holder.
    pub fn claims(&self) -> Result<Vec<(String, Held)>, StoreError> {
        let mut out = Vec::new();
        self.scan(keys::CLAIM_PREFIX, |key, raw| {
            let name = String::from_utf8_lossy(&key[keys::CLAIM_PREFIX.len()..]).into_owned();
            out.push((name, held(key, raw.to_vec())?));
            Ok(true)
        })?;
        Ok(out)
    }

    /// Give up `claim` (its file left `.work/`). A claim another process
    /// took over meanwhile is left to it.
    pub fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        self.delete_claim(&claim.name, &claim.value)?;
        Ok(())
    }

    /// Remove the claim row on `name` as `held` read it (a gone holder's,
    /// whose file is no longer in `.work/`); false when it moved.
    pub fn drop_claim(&self, name: &str, held: &Held) -> Result<bool, StoreError> {
        self.delete_claim(name, &held.raw)
    }

    /// Delete the claim row on `name` if it still holds `value`.
    fn delete_claim(&self, name: &str, value: &[u8]) -> Result<bool, StoreError> {
        let key = keys::claim(name);
        let mut batch = Batch::new();
        batch.expect(key.clone(), Some(value.to_vec()));
        batch.delete(key);
        written(self.engine().write(batch))
    }

    /// Take the lock on content `digest` for `claim`: free, already this
    /// claim's, or left by a claim that no longer holds (released, or
    /// taken over from a gone process); otherwise [`DigestLock::Busy`].
    pub fn lock_digest(&self, digest: &str, claim: &Claim) -> Result<DigestLock, StoreError> {
        let key = keys::claimed_digest(digest);
        let mine = serde_json::to_vec(&DigestHolder {
            name: claim.name.clone(),
            token: claim.holder.token.clone(),
        })
        .expect("a digest holder serialises");
        loop {
            let stored = self.engine().get(&key)?;
            if let Some(raw) = &stored {
                if *raw == mine {
                    return Ok(DigestLock::Taken);
                }
                if self.digest_holder_holds(&key, raw)? {
                    return Ok(DigestLock::Busy);
                }
            }
            let mut batch = Batch::new();
            batch.expect(key.clone(), stored);
            batch.put(key.clone(), mine.clone());
            if written(self.engine().write(batch))? {
                return Ok(DigestLock::Taken);
            }
        }
    }

    /// Whether the claim a digest lock names still holds with its token.
    fn digest_holder_holds(&self, key: &[u8], raw: &[u8]) -> Result<bool, StoreError> {
        let them: DigestHolder = crate::decode(key, raw)?;
        Ok(self
            .claim_holder(&them.name)?
            .is_some_and(|h| h.holder.token == them.token))
    }

    /// This node's heartbeat: a new value every time, so that another
    /// process sees it move.
    pub fn beat(&self, node: &str) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        batch.put(keys::beat(node), uuid::Uuid::now_v7().as_bytes().to_vec());
        self.engine().write(batch)?;
        Ok(())
    }

    /// Every node's last heartbeat value.
    pub fn beats(&self) -> Result<HashMap<String, Vec<u8>>, StoreError> {
        let mut beats = HashMap::new();
        self.scan(keys::BEAT_PREFIX, |key, value| {
            let node = String::from_utf8_lossy(&key[keys::BEAT_PREFIX.len()..]).into_owned();
            beats.insert(node, value.to_vec());
            Ok(true)
        })?;
        Ok(beats)
    }
}

/// A claim row's holder.
fn held(key: &[u8], raw: Vec<u8>) -> Result<Held, StoreError> {
    Ok(Held {
        holder: crate::decode(key, &raw)?,
        raw,
    })
}

/// Whether a batch with expectations landed (false: it found another
/// value and wrote nothing).
fn written(result: Result<(), EngineError>) -> Result<bool, StoreError> {
    match result {
        Ok(()) => Ok(true),
        Err(EngineError::Conflict { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EngineKind, EngineOptions};

    /// One claim per file; a takeover expects what it read, so of two
    /// only one wins; a release after a takeover leaves the new holder's
    /// row; a digest lock is held by one live claim at a time and freed
    /// by its claim's release.
    #[test]
    fn claims_are_won_once_and_taken_over_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(EngineKind::Redb, dir.path(), &EngineOptions::default()).unwrap();
        let a = store
            .claim("users/.work a.csv", "node-a", "p1")
            .unwrap()
            .unwrap();
        assert!(store
            .claim("users/.work a.csv", "node-b", "p2")
            .unwrap()
            .is_none());
        let read = store.claim_holder("users/.work a.csv").unwrap().unwrap();
        assert_eq!(read.holder, a.holder);

        assert_eq!(store.lock_digest("d1", &a).unwrap(), DigestLock::Taken);
        assert_eq!(store.lock_digest("d1", &a).unwrap(), DigestLock::Taken);
        let other = store
            .claim("users/.work b.csv", "node-b", "p2")
            .unwrap()
            .unwrap();
        assert_eq!(store.lock_digest("d1", &other).unwrap(), DigestLock::Busy);

        // b takes a's claim over; a second takeover from the same read
        // loses, and a's release leaves b's row alone.
        let b = store
            .take_over("users/.work a.csv", "node-b", "p2", Some(&read))
            .unwrap()
            .unwrap();
        assert!(store
            .take_over("users/.work a.csv", "node-c", "p3", Some(&read))
            .unwrap()
            .is_none());
        store.release(&a).unwrap();
        assert_eq!(
            store
                .claim_holder("users/.work a.csv")
                .unwrap()
                .unwrap()
                .holder,
            b.holder
        );
        // a's digest lock is stale now (its claim moved to b).
        assert_eq!(store.lock_digest("d1", &other).unwrap(), DigestLock::Taken);

        store.release(&b).unwrap();
        assert!(store.claim_holder("users/.work a.csv").unwrap().is_none());
        assert_eq!(store.claims().unwrap().len(), 1, "b.csv's claim is left");

        store.beat("node-a").unwrap();
        let first = store.beats().unwrap()["node-a"].clone();
        store.beat("node-a").unwrap();
        assert_ne!(store.beats().unwrap()["node-a"], first, "every beat moves");
        assert_eq!(store.head().unwrap(), 0, "claims are no changes");
    }
}
