//! Drop folders shared by replicas: who may import a file in `.work/`.
//!
//! On an embedded store one process owns the folders, and a file in
//! `.work/` after a start is a crash's leftover, its own. On a store
//! several daemons share (PostgreSQL), they may watch one folder: then a
//! file is claimed in the store before it is renamed into `.work/`
//! (`idsync_store::claims`), and what is in `.work/` is taken again only
//! when its claim's holder is gone: this process before its restart (the
//! same node, another process id), or a node whose heartbeat stood still
//! for two `replicas.failover_ms`, as this process measures it. Every
//! batch of an import under a claim expects the claim, so a holder
//! wrongly taken for gone writes nothing once its claim moved.
//!
//! Why heartbeats and not the leader's lock: the leader may be the one
//! that is gone, and imports run on every replica, leader or not.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use idsync_store::claims::{Claim, Held, Holder};
use idsync_store::{Store, StoreError};

use super::inbox::{Folder, WORK};

/// This process's side of the claims.
#[derive(Debug)]
pub struct Claims {
    node: String,
    /// Drawn at start: this process's claims, told from its node's older
    /// ones.
    process: String,
    /// A heartbeat that stood still this long is a gone node's.
    gone_after: Duration,
    /// Each node's last heartbeat value seen, and since when it is that.
    seen: Mutex<HashMap<String, Seen>>,
}

/// A node's heartbeat value as last seen (`None`: never seen), and since
/// when it has been that.
type Seen = (Option<Vec<u8>>, Instant);

impl Claims {
    /// Claims of node `node`; its heartbeat every half `failover`.
    pub fn new(node: &str, failover: Duration) -> Self {
        Self {
            node: node.to_owned(),
            process: uuid::Uuid::now_v7().simple().to_string(),
            gone_after: failover * 2,
            seen: Mutex::default(),
        }
    }

    /// How often to beat and look at the others' beats.
    pub fn beat_every(&self) -> Duration {
        self.gone_after / 4
    }

    /// The claim name of the file `claimed` in `folder`'s `.work/`.
    pub fn name(folder: &Folder, claimed: &Path) -> String {
        let file = claimed
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("{}/{WORK} {file}", folder.name)
    }

    /// Beat, then note every node's beat as it stands now.
    pub fn beat_and_look(&self, store: &Store) -> Result<(), StoreError> {
        store.beat(&self.node)?;
        let beats = store.beats()?;
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        for (node, beat) in beats {
            let entry = seen.entry(node).or_insert((None, now));
            if entry.0.as_ref() != Some(&beat) {
                *entry = (Some(beat), now);
            }
        }
        Ok(())
    }

    /// Whether the process holding a claim is gone.
    pub fn gone(&self, holder: &Holder) -> bool {
        if holder.node == self.node {
            return holder.process != self.process;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        // A node never seen beating counts from the first look at it.
        let (_, since) = seen
            .entry(holder.node.clone())
            .or_insert((None, Instant::now()));
        since.elapsed() >= self.gone_after
    }

    /// Whether this process holds the claim.
    pub fn mine(&self, holder: &Holder) -> bool {
        holder.node == self.node && holder.process == self.process
    }

    /// Claim a file about to be renamed to `name`; `None` when another
    /// process claimed that very name first.
    pub fn claim(&self, store: &Store, name: &str) -> Result<Option<Claim>, StoreError> {
        store.claim(name, &self.node, &self.process)
    }

    /// Take the file `name` found in `.work/`: unclaimed (claimed by a
    /// version before claims), claimed by a gone process, or kept by this
    /// one after a failed import. `None` when another live process holds
    /// it, or another took it first.
    pub fn take(&self, store: &Store, name: &str) -> Result<Option<Claim>, StoreError> {
        let held = store.claim_holder(name)?;
        match &held {
            Some(h) if !self.mine(&h.holder) && !self.gone(&h.holder) => Ok(None),
            _ => store.take_over(name, &self.node, &self.process, held.as_ref()),
        }
    }

    /// Whether a file in `.work/` claimed as `held` is for this process to
    /// take (no claim, or a gone holder's).
    pub fn may_take(&self, held: Option<&Held>) -> bool {
        held.is_none_or(|h| self.gone(&h.holder))
    }
}
