//! The writers' turn across the replicas on one database: a transaction
//! holds a session advisory lock ([`WRITER_TURN`]) from before it reads
//! the change log's head to after its last commit, so two replicas never
//! number changes from the same head.
//!
//! Why a lock rather than the head check alone: every batch that adds
//! events still expects the head it numbered from (the check stays, as the
//! fence against a lost answer), but two replicas writing at once, each
//! reading objects between its head read and its commit, lost that race
//! to each other nearly every time: eight retries of a SCIM batch were
//! not enough at 64 connections, and the writers outside the group commit
//! (imports, activation mails, enrollment upkeep) did not retry at all.
//! Taking turns costs one round trip a transaction: the lock and the
//! head's read go out together (the server runs them in order, so the
//! head is read once the lock is granted), and the unlock is sent without
//! waiting for its answer. A transaction in one process already excludes
//! the others of that process, so at most one connection per replica
//! waits here.
//!
//! The lock is held on a pooled connection and given back with it once
//! the unlock is done. A connection whose unlock fails is taken out of the
//! pool and closed, so that the server releases the lock with the
//! session; a crashed replica's session ends, and with it its turn.
//!
//! A replica that stalls while it holds the turn (paused, frozen, its
//! machine swapping) is not crashed: its session lives on, and every other
//! replica's writes would wait for it, then fail. So while the turn is
//! held its session has an `idle_session_timeout` (twice
//! `replicas.failover_ms`, the time after which the other replicas count a
//! silent one gone): a session that sends nothing for that long is ended
//! by the server, and the turn goes with it. A holder that is only busy
//! sends on it at every batch ([`Turn::wanted_elsewhere`]), which starts
//! the idle time afresh. Should a stalled holder wake and commit, its
//! batch still expects the head it numbered from: refused if another
//! replica wrote meanwhile, as any lost race. The limit is lifted before
//! the unlock, so pooled connections never carry it.

use std::sync::Mutex;

use deadpool_postgres::{Object, Pool};

use super::{io_err, run_on, EngineError, GET};
use crate::keys;

/// The session advisory lock a writing transaction holds ("idsynf", after
/// the leader's "idsync" and the expecting batches' "idsynd").
const WRITER_TURN: i64 = 0x6964_7379_6e66;
const LOCK: &str = "SELECT pg_advisory_lock($1)";
const UNLOCK: &str = "SELECT pg_advisory_unlock($1)";
/// The session's idle limit, in milliseconds ('0': none).
const IDLE_LIMIT: &str = "SELECT set_config('idle_session_timeout', $1, false)";
/// Whether a session waits for the lock (`pg_locks` shows a bigint key
/// as its high and low 32 bits).
const WAITED_FOR: &str = "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
     AND classid = ($1::int8 >> 32)::oid AND objid = ($1::int8 & 4294967295)::oid \
     AND objsubid = 1 AND NOT granted)";

/// A turn held: released (the connection back to the pool) when dropped.
pub(super) struct Turn {
    /// The connection holding the lock; lent to the runtime for the length
    /// of a [`Turn::wanted_elsewhere`] query, and always given back.
    client: Mutex<Option<Object>>,
    runtime: tokio::runtime::Handle,
    /// The change log's head once the lock was granted.
    head: u64,
    /// Whether the session has an idle limit to lift before the unlock.
    limited: bool,
}

/// Wait for the turn (at most the statement timeout: the lock waits like
/// a statement), and read the head once it is this process's. With
/// `idle_limit`, the session is ended should it hold the turn that long
/// without sending anything.
pub(super) fn take(
    runtime: &tokio::runtime::Runtime,
    pool: &Pool,
    idle_limit: Option<std::time::Duration>,
) -> Result<Turn, EngineError> {
    let pool = pool.clone();
    let (client, head) = run_on(runtime, async move {
        let client = pool.get().await.map_err(io_err)?;
        // All prepared first (then cached), so that each is sent whole
        // when polled: the lock, then the limit (not while the lock is
        // waited for: a wait is no idleness), then the read.
        let lock = client.prepare_cached(LOCK).await.map_err(io_err)?;
        let limit = client.prepare_cached(IDLE_LIMIT).await.map_err(io_err)?;
        let get = client.prepare_cached(GET).await.map_err(io_err)?;
        // For the release (`Drop`), which cannot wait for a round trip.
        client.prepare_cached(UNLOCK).await.map_err(io_err)?;
        let limit_ms = idle_limit.map_or(0, |d| d.as_millis()).to_string();
        let set_limit = async {
            match idle_limit {
                Some(_) => client.execute(&limit, &[&limit_ms]).await.map(|_| ()),
                None => Ok(()),
            }
        };
        let (_, (), row) = futures_util::future::try_join3(
            client.execute(&lock, &[&WRITER_TURN]),
            set_limit,
            client.query_opt(&get, &[&keys::HEAD]),
        )
        .await
        .map_err(io_err)?;
        let head = keys::head_or_zero(row.as_ref().map(|r| r.get::<_, &[u8]>(0)));
        Ok((client, head))
    })?;
    Ok(Turn {
        client: Mutex::new(Some(client)),
        runtime: runtime.handle().clone(),
        head,
        limited: idle_limit.is_some(),
    })
}

impl crate::engine::Turn for Turn {
    fn head(&self) -> u64 {
        self.head
    }

    fn wanted_elsewhere(&self) -> bool {
        let mut held = self.client.lock().unwrap_or_else(|p| p.into_inner());
        let Some(client) = held.take() else {
            return false;
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let waited = client.query_one(WAITED_FOR, &[&WRITER_TURN]).await;
            let _ = tx.send((client, waited.map(|row| row.get::<_, bool>(0))));
        });
        match rx.recv() {
            Ok((client, waited)) => {
                *held = Some(client);
                // Not known: keep the turn; the other waits one batch more.
                matches!(waited, Ok(true))
            }
            // The runtime is gone, and the connection with it (which
            // ends the session and its lock).
            Err(_) => false,
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let held = self.client.get_mut().unwrap_or_else(|p| p.into_inner());
        let Some(client) = held.take() else {
            return;
        };
        // Not waited for: the next turn, this process's or another's,
        // begins when the server has run it, whoever hears the answer
        // first; the connection goes back to the pool after it. Should
        // the runtime be gone, so is the connection, and with it the
        // session and its lock.
        let limited = self.limited;
        self.runtime.spawn(async move {
            // The limit lifted and the lock released in one round trip
            // (both prepared when the turn was taken, so cached).
            let released = async {
                let lift = client.prepare_cached(IDLE_LIMIT).await?;
                let unlock = client.prepare_cached(UNLOCK).await?;
                let lift = async {
                    match limited {
                        true => client.execute(&lift, &[&"0"]).await.map(|_| ()),
                        false => Ok(()),
                    }
                };
                futures_util::future::try_join(lift, client.execute(&unlock, &[&WRITER_TURN]))
                    .await
            }
            .await;
            if let Err(e) = &released {
                tracing::warn!(error = %e, "releasing the writers' turn failed; closing its connection");
                // Closing the session releases its locks.
                drop(Object::take(client));
            }
        });
    }
}
