//! The replica's role, copied into the metrics as it changes, so that
//! `/metrics`, `/status` and `idsync status` say whether this process
//! leads and who does. A task of its own: the role changes on the
//! election's schedule, not the loop's.

use std::sync::Arc;

use idsync_store::leadership::Role;
use tokio::sync::watch;

use crate::infra::metrics::Metrics;
use crate::infra::replica_stats::ReplicaRole;

/// Show `node`'s role in `metrics` now and after every change on `roles`,
/// for as long as the election runs.
pub(super) fn follow(node: &str, mut roles: watch::Receiver<Role>, metrics: Arc<Metrics>) {
    metrics.replica.set_node(node);
    metrics.replica.set(shown(&roles.borrow_and_update()));
    tokio::spawn(async move {
        while roles.changed().await.is_ok() {
            let role = shown(&roles.borrow_and_update());
            metrics.replica.set(role);
        }
    });
}

/// What the metrics show of `role`.
fn shown(role: &Role) -> ReplicaRole {
    match role {
        Role::Leader { epoch } => ReplicaRole {
            leader: true,
            leader_name: Some(epoch.leader.clone()),
            epoch: Some(epoch.number),
        },
        Role::Follower { leader } => ReplicaRole {
            leader: false,
            leader_name: leader.as_ref().map(|e| e.leader.clone()),
            epoch: leader.as_ref().map(|e| e.number),
        },
    }
}
