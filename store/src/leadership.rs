//! Which process runs what must run once (connector runners and their
//! scheduled reconciles): the leader of the processes sharing one store.
//!
//! Why a role and an epoch, both: the role ([`Role`], on a
//! `tokio::sync::watch`) is what starts and stops the runners; but a
//! leader learns of its loss only when its connection to the database
//! errors, and a runner may be saving a batch at that moment. So every
//! election also bumps an epoch in the store (`s/leader`, see
//! [`keys::LEADER`]), and every connector save expects the value its
//! leader wrote ([`crate::delivery::DeliverySave::new`]), checked in the
//! save's own transaction: a former leader's save can never land after
//! another process won.
//!
//! The embedded engines have one process: it takes an epoch when it starts
//! to lead ([`take_epoch`]) and stays leader. The PostgreSQL engine elects
//! with a session advisory lock (`postgres_engine/leader_lock.rs`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::engine::{Batch, Engine, EngineError};
use crate::{keys, Store, StoreError};

/// One election's outcome as `s/leader` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Epoch {
    /// One more at every election.
    pub number: u64,
    /// Who won it (`replicas.node_name`, or host, pid and admin address).
    pub leader: String,
}

impl Epoch {
    /// What `s/leader` holds for this epoch.
    pub(crate) fn value(&self) -> Vec<u8> {
        keys::leader_value(self.number, &self.leader)
    }

    /// The epoch an `s/leader` value holds.
    pub(crate) fn decode(v: &[u8]) -> Option<Self> {
        keys::leader_of(v).map(|(number, leader)| Self { number, leader })
    }
}

impl std::fmt::Display for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (epoch {})", self.leader, self.number)
    }
}

/// This process's part now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// It won `epoch`, and holds it still.
    Leader { epoch: Epoch },
    /// Another process leads (the last epoch the store showed it, `None`
    /// when none was read: no election yet, or the database away).
    Follower { leader: Option<Epoch> },
}

impl Role {
    /// The epoch this process leads in, if it leads.
    pub fn epoch(&self) -> Option<&Epoch> {
        match self {
            Role::Leader { epoch } => Some(epoch),
            Role::Follower { .. } => None,
        }
    }
}

/// What [`Engine::elect`] publishes the role on.
pub(crate) type RoleSender = Arc<watch::Sender<Role>>;

/// This process's place in the election, for as long as the store is
/// open: the role now, and a channel that says when it changes.
pub struct Leadership {
    role: RoleSender,
}

impl Leadership {
    /// The role now.
    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// A receiver that sees every change of role.
    pub fn subscribe(&self) -> watch::Receiver<Role> {
        self.role.subscribe()
    }
}

impl Store {
    /// Take part in electing the leader, as `identity`: at once for an
    /// embedded store (its one process leads), and for PostgreSQL every
    /// `retry` while another process leads. Called once, by the process
    /// that runs connectors (`idsync serve`); other commands never lead.
    pub fn lead(&self, identity: &str, retry: Duration) -> Result<Leadership, StoreError> {
        let role = Arc::new(watch::channel(Role::Follower { leader: None }).0);
        self.engine()
            .elect(identity.to_owned(), retry, Arc::clone(&role))?;
        Ok(Leadership { role })
    }

    /// The epoch `s/leader` holds now (`None` before any election).
    pub fn leader(&self) -> Result<Option<Epoch>, StoreError> {
        Ok(self
            .engine()
            .get(keys::LEADER)?
            .as_deref()
            .and_then(Epoch::decode))
    }
}

/// Bump the epoch in `engine` for `identity`, in one batch that expects
/// the value it read (what an embedded engine's election is: its one
/// process wins). Tried again if the value moved meanwhile.
pub(crate) fn take_epoch<E: Engine + ?Sized>(
    engine: &E,
    identity: &str,
) -> Result<Epoch, EngineError> {
    loop {
        let stored = engine.get(keys::LEADER)?;
        let number = stored
            .as_deref()
            .and_then(Epoch::decode)
            .map_or(0, |e| e.number)
            + 1;
        let epoch = Epoch {
            number,
            leader: identity.to_owned(),
        };
        let mut batch = Batch::new();
        batch.expect(keys::LEADER, stored);
        batch.put(keys::LEADER, epoch.value());
        match engine.write(batch) {
            Err(EngineError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
            Ok(()) => return Ok(epoch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::DeliverySave;
    use crate::{EngineKind, EngineOptions};

    /// An embedded store's one process leads from its first election on,
    /// each start one epoch further; its saves carry the epoch and pass,
    /// one with an older epoch is refused and writes nothing.
    fn embedded_always_leads(kind: EngineKind) {
        let dir = tempfile::tempdir().unwrap();
        let open = || Store::open(kind, dir.path(), &EngineOptions::default()).unwrap();
        let store = open();
        assert_eq!(store.leader().unwrap(), None, "no election yet");
        let first = store.lead("host-a pid 1", Duration::from_secs(5)).unwrap();
        let Role::Leader { epoch } = first.role() else {
            panic!("an embedded store's process must lead: {:?}", first.role());
        };
        assert_eq!(epoch.number, 1);
        assert_eq!(store.leader().unwrap(), Some(epoch.clone()));
        let mut save = DeliverySave::new("ldap", &epoch);
        save.cursor(5);
        store.save_delivery(save).unwrap();
        assert_eq!(store.delivery("ldap").cursor().unwrap(), 5);
        drop(first);
        drop(store);

        let store = open();
        let again = store.lead("host-a pid 2", Duration::from_secs(5)).unwrap();
        let now = again.role().epoch().cloned().expect("leads again");
        assert_eq!(now.number, 2);
        assert_eq!(now.leader, "host-a pid 2");
        // A save from the first run's epoch: refused, nothing written.
        let mut stale = DeliverySave::new("ldap", &epoch);
        stale.cursor(9);
        let e = store.save_delivery(stale).unwrap_err();
        assert!(matches!(e, StoreError::Deposed { epoch: 1 }), "{e}");
        assert_eq!(store.delivery("ldap").cursor().unwrap(), 5);
        let mut save = DeliverySave::new("ldap", &now);
        save.cursor(9);
        store.save_delivery(save).unwrap();
        assert_eq!(store.delivery("ldap").cursor().unwrap(), 9);
        assert_eq!(store.head().unwrap(), 0, "an election is not a change");
    }

    #[test]
    fn redb_always_leads() {
        embedded_always_leads(EngineKind::Redb);
    }

    #[test]
    fn sled_always_leads() {
        embedded_always_leads(EngineKind::Sled);
    }

    /// Wait up to `within` for `role` to satisfy `want`; how long it took.
    fn wait_for(
        leadership: &Leadership,
        within: Duration,
        want: impl Fn(&Role) -> bool,
    ) -> Duration {
        let started = std::time::Instant::now();
        loop {
            let role = leadership.role();
            if want(&role) {
                return started.elapsed();
            }
            assert!(started.elapsed() < within, "still {role:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Two processes on one PostgreSQL database: exactly one leads; when
    /// the connection holding its lock is killed, it is a follower at
    /// once, the other leads within the failover time with a higher
    /// epoch, and a save the former leader makes with its epoch is
    /// refused.
    #[test]
    fn postgres_elects_one_leader_and_fences_the_former_one() {
        const FAILOVER: Duration = Duration::from_millis(2000);
        let cluster = crate::test_postgres::TestPostgres::start();
        let dir = tempfile::tempdir().unwrap();
        let opts = cluster.engine_options(EngineOptions::default());
        let open = || Store::open(EngineKind::Postgres, dir.path(), &opts).unwrap();
        let (a, b) = (open(), open());
        let lead_a = a.lead("replica-a", FAILOVER).unwrap();
        let lead_b = b.lead("replica-b", FAILOVER).unwrap();
        let Role::Leader { epoch: first } = lead_a.role() else {
            panic!("the first to try must lead: {:?}", lead_a.role());
        };
        assert_eq!(first.leader, "replica-a");
        assert_eq!(
            lead_b.role(),
            Role::Follower {
                leader: Some(first.clone())
            }
        );
        let mut save = DeliverySave::new("ldap", &first);
        save.cursor(10);
        a.save_delivery(save).unwrap();
        // The follower's tries fail while the leader holds on.
        std::thread::sleep(FAILOVER * 2 + FAILOVER / 2);
        assert_eq!(lead_a.role().epoch(), Some(&first));
        assert!(lead_b.role().epoch().is_none(), "{:?}", lead_b.role());

        // The connection holding the leader lock (a's: b's connection
        // holds none), killed.
        let killed = cluster
            .psql("postgres")
            .args(["-t", "-A", "-c"])
            .arg(
                "SELECT count(pg_terminate_backend(a.pid)) FROM pg_stat_activity a \
                 JOIN pg_locks l ON l.pid = a.pid \
                 WHERE a.application_name = 'idsync-leader' AND l.locktype = 'advisory' \
                 AND l.granted AND l.classid = 26980 AND l.objid = 1937337955",
            )
            .output()
            .unwrap();
        assert!(killed.status.success());
        assert_eq!(String::from_utf8_lossy(&killed.stdout).trim(), "1");
        let dropped = wait_for(&lead_a, FAILOVER, |r| r.epoch().is_none());
        let took = wait_for(&lead_b, FAILOVER * 3, |r| r.epoch().is_some());
        eprintln!(
            "the leader was a follower after {dropped:?}, the other led after {took:?} (failover {FAILOVER:?})"
        );
        assert!(
            took <= FAILOVER + Duration::from_millis(1500),
            "took over after {took:?}"
        );
        let second = lead_b.role().epoch().cloned().unwrap();
        assert!(second.number > first.number, "{second} after {first}");
        assert_eq!(second.leader, "replica-b");
        assert_eq!(b.leader().unwrap(), Some(second.clone()));

        // The former leader's save, with its epoch: refused, nothing
        // written; the new leader's lands.
        let mut stale = DeliverySave::new("ldap", &first);
        stale.cursor(99);
        let e = a.save_delivery(stale).unwrap_err();
        assert!(
            matches!(e, StoreError::Deposed { epoch } if epoch == first.number),
            "{e}"
        );
        assert_eq!(b.delivery("ldap").cursor().unwrap(), 10);
        let mut save = DeliverySave::new("ldap", &second);
        save.cursor(11);
        b.save_delivery(save).unwrap();
        assert_eq!(a.delivery("ldap").cursor().unwrap(), 11);

        // The former leader follows, and names the new one.
        wait_for(&lead_a, FAILOVER * 3, |r| {
            *r == Role::Follower {
                leader: Some(second.clone()),
            }
        });
    }
}
