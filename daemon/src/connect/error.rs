//! Why an operator's command to a connector (retry, reconcile) failed,
//! typed so that the admin route picks its status from the variant and the
//! runner decides from it whether trying again later is worth it.

use idsync_connectors::ConnectorError;
use idsync_store::StoreError;

/// A refused or failed retry or reconcile.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The deletion threshold stopped a reconcile (`force` overrides it).
    #[error("reconcile refused: {0}")]
    Refused(String),
    /// The peer is unreachable or refused the bind: try again later.
    #[error("{0}")]
    Unavailable(String),
    /// Planning failed for a reason that waiting will not fix (the peer's
    /// answer, the configuration).
    #[error("{0}")]
    Peer(String),
    /// Applying a plan failed part-way: the next try starts again from a
    /// new plan.
    #[error("{0}")]
    Apply(String),
    /// Reading or saving the delivery state failed.
    #[error("the store: {0}")]
    Store(#[from] StoreError),
    /// The runner is not running (or stopped before it answered).
    #[error("the connector is not running")]
    NotRunning,
    /// Another process leads: its runner delivers and takes commands
    /// (the leader, as `s/leader` names it).
    #[error("this process does not lead the replicas: ask the leader, {0}")]
    NotLeader(String),
}

impl RunnerError {
    /// Whether trying again later may succeed without anyone acting.
    pub fn transient(&self) -> bool {
        !matches!(self, RunnerError::Refused(_) | RunnerError::Peer(_))
    }
}

impl From<ConnectorError> for RunnerError {
    fn from(e: ConnectorError) -> Self {
        match e {
            ConnectorError::Unavailable(m) => RunnerError::Unavailable(m),
            other => RunnerError::Peer(other.to_string()),
        }
    }
}
