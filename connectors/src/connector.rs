//! The one shape every change-log consumer has: a config, a healthcheck,
//! delivery of a batch of change events with an outcome per event, and a
//! full reconcile split in two (`plan`, then `apply` of that very plan) so
//! that a dry run prints exactly what the real run executes.
//!
//! This module names no concrete connector: which ones exist, and how a
//! configuration entry becomes one, is [`crate::registry`]'s business. The
//! CA backends ([`crate::ca`]) have another shape and do not implement
//! this trait.
//!
//! Futures are boxed by hand ([`BoxFuture`]) so that the daemon can hold
//! every connector as `Arc<dyn Connector>` without an extra macro crate.

use std::future::Future;
use std::pin::Pin;

use idsync_schema::Kind;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::Event;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A store read failed (the daemon's error, as text: this crate does not
/// know the store's types).
#[derive(Debug, Clone, thiserror::Error)]
#[error("reading the store: {0}")]
pub struct ViewError(pub String);

/// What a remote entry idsync manages is known by: the peer's own stable
/// id (LDAP `entryUUID`), so that a rename on either side keeps ownership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Remote {
    pub kind: Kind,
    /// Where the entry was last seen or written.
    pub dn: String,
    /// The peer's stable id of the entry.
    pub entry_uuid: String,
    /// Unix seconds when idsync disabled the entry because its object was
    /// deleted (the `disable` policy); it is deleted after the grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<i64>,
}

/// The read-only view of idsync's store a connector works from. The daemon
/// implements it; a connector never writes through it.
pub trait View: Send + Sync {
    /// One object as JSON (the change log's object form).
    fn object(&self, kind: Kind, id: Uuid) -> Result<Option<serde_json::Value>, ViewError>;
    /// The ids of the users in `group`.
    fn members(&self, group: Uuid) -> Result<Vec<Uuid>, ViewError>;
    /// Every object of `kind`; `visit` returns false to stop.
    fn for_each(
        &self,
        kind: Kind,
        visit: &mut dyn FnMut(serde_json::Value) -> bool,
    ) -> Result<(), ViewError>;
    /// The remote entry this connector manages for object `id`.
    fn remote(&self, id: Uuid) -> Result<Option<Remote>, ViewError>;
    /// Every remote entry this connector manages.
    fn remotes(&self, visit: &mut dyn FnMut(Uuid, Remote) -> bool) -> Result<(), ViewError>;
}

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The peer has the change (or already had it).
    Delivered,
    /// The peer could not be reached, or said it is busy, unavailable or
    /// unwilling: retry later, as long as it takes.
    Retry(String),
    /// The peer refused the change: retried a few times, then parked.
    Failed(String),
}

/// The result of one [`Connector::deliver`] call.
#[derive(Debug, Default)]
pub struct Delivery {
    /// One outcome per event, in the order of the batch.
    pub outcomes: Vec<Outcome>,
    /// Remote ids learned (`Some`) or forgotten (`None`) per object: the
    /// runner stores them with the cursor, atomically.
    pub learned: Vec<(Uuid, Option<Remote>)>,
    /// Activation states to record (the mail connector): the runner writes
    /// them through the reconciler before it moves the cursor past their
    /// events, so a redelivered event sees them.
    pub activations: Vec<ActivationReport>,
}

/// What became of one activation mail, for the daemon to record as a
/// change of the user (a connector never writes an object itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivationReport {
    pub user: Uuid,
    pub application: String,
    /// The sending reported on: recorded only while the user's state is
    /// still `queued` with this nonce (a resend in between wins).
    pub nonce: String,
    /// The new state (`sent` or `failed`).
    pub activation: idsync_schema::Activation,
}

/// The operations a full reconcile would run, computed without changing
/// anything. `apply` runs exactly these.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Plan {
    /// The operations for people (LDIF for LDAP), one block per operation.
    pub text: String,
    pub creates: usize,
    pub updates: usize,
    /// Deletions and disables: what the deletion threshold counts.
    pub deletions: usize,
    /// Entries found and left alone (not owned, or in conflict).
    pub skipped: usize,
    /// Why the plan must not run (the deletion threshold), if so.
    pub refusal: Option<String>,
    /// The connector's own operations, serialised.
    pub ops: Vec<serde_json::Value>,
}

/// What `apply` did.
#[derive(Debug, Default)]
pub struct Applied {
    /// The operations executed, in the plan's text form.
    pub text: String,
    pub done: usize,
    /// Operations that failed, with the reason.
    pub errors: Vec<String>,
    pub learned: Vec<(Uuid, Option<Remote>)>,
    /// Activation states to record, as in [`Delivery::activations`].
    pub activations: Vec<ActivationReport>,
}

/// Why a connector call failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The peer is unreachable or refused the bind.
    #[error("{0}")]
    Unavailable(String),
    /// The peer answered with an error.
    #[error("{0}")]
    Peer(String),
    #[error(transparent)]
    View(#[from] ViewError),
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// The whole error chain as one line (top-level errors of hyper and
/// lettre say little; their sources say why).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// A peer idsync pushes changes to.
pub trait Connector: Send + Sync {
    /// The name from the configuration.
    fn name(&self) -> &str;
    /// The delivery settings of this connector.
    fn delivery(&self) -> &DeliveryConfig;
    /// Can the peer be reached and bound to?
    fn healthcheck(&self) -> BoxFuture<'_, Result<(), ConnectorError>>;
    /// Deliver `batch` (in change-log order); one outcome per event.
    /// Must be idempotent: the runner delivers at least once.
    fn deliver<'a>(&'a self, batch: &'a [Event], view: &'a dyn View) -> BoxFuture<'a, Delivery>;
    /// Compare the peer with the store; change nothing.
    fn plan<'a>(&'a self, view: &'a dyn View) -> BoxFuture<'a, Result<Plan, ConnectorError>>;
    /// Run the operations of `plan` (made by this connector's `plan`).
    fn apply<'a>(&'a self, plan: &'a Plan) -> BoxFuture<'a, Result<Applied, ConnectorError>>;
    /// Whether the peer keeps users' passwords, so that the activation
    /// page sets them there ([`Connector::set_password`]).
    fn keeps_passwords(&self) -> bool {
        false
    }
    /// Set the password of the user this connector recorded as `remote`.
    /// The password must reach no log line and no error.
    fn set_password<'a>(
        &'a self,
        remote: &'a Remote,
        password: &'a str,
    ) -> BoxFuture<'a, Result<(), ConnectorError>> {
        let _ = (remote, password);
        Box::pin(async move {
            Err(ConnectorError::Config(format!(
                "connector {} keeps no passwords",
                self.name()
            )))
        })
    }
}

/// How the runner drives a connector (`[connectors.delivery]`), the same
/// for every peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Events handed to one `deliver` call.
    pub batch_size: usize,
    /// A refused change is tried this many times, then parked.
    pub max_attempts: u32,
    /// First retry delay, in milliseconds; doubles up to `backoff_max_ms`.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Seconds between full reconciles run on their own (drift repaired,
    /// the deleted-object grace period ended); 0: only the first one and
    /// those asked for. Counted from the last reconcile, across restarts.
    pub reconcile_every_s: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            max_attempts: 5,
            backoff_initial_ms: 200,
            backoff_max_ms: 30_000,
            reconcile_every_s: 86_400,
        }
    }
}
