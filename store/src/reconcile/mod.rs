//! The reconciler: the one write path of idsync.
//!
//! A CSV row, a SCIM request and an API call all end here as an upsert of a
//! [`UserInput`](idsync_schema::UserInput), [`GroupInput`](idsync_schema::GroupInput)
//! or [`AssetInput`](idsync_schema::AssetInput). The reconciler matches
//! the existing object, checks what needs the store (uniqueness, groups that
//! must exist, profiles), builds the new version and, when something really
//! changed, queues the object, its index entries and a change-log event.
//! [`Tx::commit`] writes everything queued as one atomic engine batch.
//!
//! Writers are serialised by one lock held for the life of a [`Tx`]: that is
//! what makes the change log gap-free and the read-check-write of uniqueness
//! safe. Batching many rows into one `Tx` is how imports amortise the commit.
//!
//! This module owns the public vocabulary (settings, outcomes, errors) and
//! the [`Reconciler`] that hands out the lock. The rest lives beside it:
//!
//! - `tx`: the transaction machinery (queue, overlay, savepoints, reads,
//!   commits);
//! - `stored`: what each stored kind contributes (id, meta, index and marker
//!   keys, the input digest);
//! - `write`: how a new version becomes queued writes and a change event;
//! - `users`, `groups`, `assets`, `certs`: the rules of each kind;
//! - `activation`: the activation e-mail's state per user and application;
//! - `read_ahead`: a chunk of rows' look-ups in two round trips, for an
//!   engine across the network;
//! - `upgrade`: index entries a later version added, written once for the
//!   objects stored before it.

mod activation;
mod assets;
mod certs;
mod groups;
mod read_ahead;
mod stored;
#[cfg(test)]
mod tests;
mod tx;
mod upgrade;
mod users;
mod write;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use idsync_schema::{Source, Status, UserRules, Violation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Actor, Store, StoreError};

pub use activation::never_sent;
pub use read_ahead::Planned;
pub use tx::{Committed, Savepoint, Tx};

/// Which attribute identifies an existing user (seed 001: the mail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum UserMatch {
    #[default]
    #[serde(rename = "mail")]
    Mail,
    #[serde(rename = "loginName")]
    LoginName,
    #[serde(rename = "externalId")]
    ExternalId,
}

/// What the reconciler needs to know of the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub user_match: UserMatch,
    /// Roles every new user gets (seed 001).
    pub default_roles: Vec<String>,
    pub rules: UserRules,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            user_match: UserMatch::Mail,
            default_roles: ["Self-Service", "Operator", "Approval"]
                .map(String::from)
                .to_vec(),
            rules: UserRules::default(),
        }
    }
}

/// Options of one user write that depend on where it came from.
#[derive(Debug, Clone, Default)]
pub struct UserWrite {
    /// The application the user is imported for (seed 003); added to the
    /// user's applications.
    pub application: Option<String>,
    /// Forces the end state (seed 001's option) instead of the `status` given.
    pub end_state: Option<Status>,
    /// Overrides the configured match key (a folder's option).
    pub match_key: Option<UserMatch>,
}

/// What an upsert did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created(Uuid),
    /// The id and the attributes that changed.
    Updated(Uuid, Vec<String>),
    Unchanged(Uuid),
}

impl Outcome {
    /// The object's id.
    pub fn id(&self) -> Uuid {
        match self {
            Outcome::Created(id) | Outcome::Updated(id, _) | Outcome::Unchanged(id) => *id,
        }
    }
}

/// Why an upsert did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The input broke a rule: refuse this object, carry on with others.
    #[error(transparent)]
    Rejected(#[from] Violation),
    /// The store failed: stop.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The single writer. Share it as `Arc<Reconciler>`.
pub struct Reconciler {
    store: Arc<Store>,
    /// Swapped whole on a configuration reload; a transaction keeps the
    /// settings it started with.
    settings: RwLock<Arc<Settings>>,
}

/// The writer lock (kept by the store, so that every reconciler over it
/// shares it), and what it guards.
pub(crate) struct WriterLock {
    /// The next sequence number; the mutex is the writer lock.
    next_seq: Mutex<u64>,
    /// Writers blocked in [`Reconciler::begin`]: a long import gives way to
    /// them between batches (see [`Reconciler::give_way`]).
    waiting: AtomicUsize,
}

impl WriterLock {
    /// The lock of a store whose next change is numbered `next`.
    pub(crate) fn new(next: u64) -> Self {
        Self {
            next_seq: Mutex::new(next),
            waiting: AtomicUsize::new(0),
        }
    }
}

impl Reconciler {
    /// A reconciler over `store`, continuing its change log.
    pub fn new(store: Arc<Store>, settings: Settings) -> Result<Self, StoreError> {
        let reconciler = Self {
            store,
            settings: RwLock::new(Arc::new(settings)),
        };
        reconciler.upgrade_indexes()?;
        Ok(reconciler)
    }

    /// The store it writes to (for reads).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Its current settings.
    pub fn settings(&self) -> Arc<Settings> {
        Arc::clone(&self.settings.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Replace the settings (a configuration reload). Transactions already
    /// open keep the old ones.
    pub fn set_settings(&self, settings: Settings) {
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(settings);
    }

    /// Whether another writer waits for the lock.
    pub fn others_waiting(&self) -> bool {
        self.store.writers.waiting.load(Ordering::SeqCst) > 0
    }

    /// Let the writers waiting now go first. Called by a long writer (an
    /// import) between two of its transactions, with no transaction open:
    /// the mutex is not fair, so without this the import would take it back
    /// at once and a SCIM request could wait for a whole file.
    pub fn give_way(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while self.others_waiting() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
    }

    /// Start a transaction: everything it queues commits together or not at
    /// all. Blocks while another transaction is open.
    pub fn begin(&self, source: Source, actor: Actor) -> Tx<'_> {
        // A panic in another writer cannot leave a half-written batch (the
        // engine batch is atomic), so a poisoned lock is safe to take over;
        // the sequence number it guards only moves after a commit.
        let writers = &self.store.writers;
        writers.waiting.fetch_add(1, Ordering::SeqCst);
        let guard = writers.next_seq.lock().unwrap_or_else(|p| p.into_inner());
        writers.waiting.fetch_sub(1, Ordering::SeqCst);
        Tx::new(guard, &self.store, self.settings(), source, actor)
    }
}

/// Convenience for callers that hold the reconciler in an `Arc`.
pub type SharedReconciler = Arc<Reconciler>;
