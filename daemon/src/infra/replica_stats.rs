//! This process's place among the replicas on one store, as `/metrics`,
//! `/status` and `idsync status` show it: its node name, whether it leads,
//! and who does (with the epoch the leader won).
//!
//! Why a copy here rather than the store's `Leadership` itself: infra
//! imports no store type, and the role changes seldom (an election), so
//! the daemon copies each change in ([`ReplicaStats::set`]) and readers
//! take the small lock for a clone.

use std::fmt::Write as _;
use std::sync::Mutex;

/// The role as last published.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaRole {
    /// Whether this process leads.
    pub leader: bool,
    /// Who leads (this process's node name when it leads; `None` when no
    /// election was seen yet or the database is away).
    pub leader_name: Option<String>,
    /// The epoch the leader won.
    pub epoch: Option<u64>,
}

/// The replica's figures, set by the daemon.
#[derive(Debug, Default)]
pub struct ReplicaStats {
    /// This process's node name (`replicas.node_name`, or host, pid and
    /// admin address).
    node: Mutex<String>,
    role: Mutex<Option<ReplicaRole>>,
}

impl ReplicaStats {
    /// Name this process (once, at start).
    pub fn set_node(&self, node: &str) {
        *self.node.lock().unwrap_or_else(|p| p.into_inner()) = node.to_owned();
    }

    /// The role as it changed.
    pub fn set(&self, role: ReplicaRole) {
        *self.role.lock().unwrap_or_else(|p| p.into_inner()) = Some(role);
    }

    fn node(&self) -> String {
        self.node.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn role(&self) -> Option<ReplicaRole> {
        self.role.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `/status`'s `replica`: `null` before the daemon took part in an
    /// election (a one-shot command's metrics).
    pub fn json(&self) -> serde_json::Value {
        let Some(role) = self.role() else {
            return serde_json::Value::Null;
        };
        serde_json::json!({
            "node": self.node(),
            "role": if role.leader { "leader" } else { "follower" },
            "leader": role.leader_name,
            "epoch": role.epoch,
        })
    }

    /// `idsync_replica_leader` (1 leading, 0 following) and
    /// `idsync_replica_info` (labels: node, role, leader), nothing before
    /// an election.
    pub fn write_prometheus(&self, out: &mut String) {
        let Some(role) = self.role() else {
            return;
        };
        let _ = writeln!(
            out,
            "# HELP idsync_replica_leader 1 when this process leads the replicas (runs the connectors), 0 when it follows.\n\
             # TYPE idsync_replica_leader gauge\n\
             idsync_replica_leader {}",
            u64::from(role.leader)
        );
        let _ = writeln!(
            out,
            "# HELP idsync_replica_info This process's node name, role and the leader's node name.\n\
             # TYPE idsync_replica_info gauge\n\
             idsync_replica_info{{node=\"{}\",role=\"{}\",leader=\"{}\"}} 1",
            label(&self.node()),
            if role.leader { "leader" } else { "follower" },
            label(role.leader_name.as_deref().unwrap_or("")),
        );
        let _ = writeln!(
            out,
            "# HELP idsync_replica_leader_epoch The epoch the leader won (0: none seen).\n\
             # TYPE idsync_replica_leader_epoch gauge\n\
             idsync_replica_leader_epoch {}",
            role.epoch.unwrap_or(0)
        );
    }
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_is_shown_once_known_and_labels_are_escaped() {
        let stats = ReplicaStats::default();
        let mut out = String::new();
        stats.write_prometheus(&mut out);
        assert_eq!(out, "", "nothing before an election");
        assert!(stats.json().is_null());
        stats.set_node("node \"a\"");
        stats.set(ReplicaRole {
            leader: false,
            leader_name: Some("b\\c".into()),
            epoch: Some(3),
        });
        stats.write_prometheus(&mut out);
        assert!(out.contains("idsync_replica_leader 0\n"), "{out}");
        assert!(
            out.contains(
                "idsync_replica_info{node=\"node \\\"a\\\"\",role=\"follower\",leader=\"b\\\\c\"} 1"
            ),
            "{out}"
        );
        assert!(out.contains("idsync_replica_leader_epoch 3\n"), "{out}");
        assert_eq!(stats.json()["role"], "follower");
        assert_eq!(stats.json()["leader"], "b\\c");
    }
}
