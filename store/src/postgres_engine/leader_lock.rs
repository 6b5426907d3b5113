//! Electing the leader of the replicas on one database: whoever holds a
//! session advisory lock ([`LEADER_LOCK`]) on a connection of its own
//! leads, and bumps the epoch in `s/leader` as it wins (`leadership.rs`
//! says why both).
//!
//! Why a session lock on a dedicated connection: PostgreSQL releases it
//! when that connection ends, whatever ended it (a crash of the leader,
//! `pg_terminate_backend`, a database restart), so a follower can take
//! over without anyone cleaning up. The other side of that coin is that a
//! leader whose connection ended may not know yet: it drops to follower
//! the moment its connection errors, pings it every quarter of
//! `replicas.failover_ms` to notice a silent one, and asks the server to
//! give up on a silent client within about `failover_ms` (TCP keepalives
//! and `tcp_user_timeout` on that session), and on a stalled one (paused:
//! its kernel still answers) after two `failover_ms` of silence
//! (`idle_session_timeout`). What is left of the race (a save already
//! sent) the epoch fences.
//!
//! A follower tries the lock every `failover_ms` on a connection it keeps.

use std::time::Duration;

use super::tls::{Connection, Tls};
use super::{io_err, run_on, EngineError, EXPECTING, EXPECTING_LOCK, GET};
use crate::keys;
use crate::leadership::{Epoch, Role, RoleSender};

/// The session advisory lock the leader holds. The same key as the
/// one-process lock of the versions before replicas: one of those still
/// running keeps this version a follower, and refuses to start beside
/// this version's leader.
const LEADER_LOCK: i64 = 0x6964_7379_6e63; // "idsync"

const TRY_LOCK: &str = "SELECT pg_try_advisory_lock($1)";
const PUT_ONE: &str =
    "INSERT INTO idsync_kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v";

/// How an attempt at the lock ended.
enum Attempt {
    /// Won: the connection holding the lock, and the epoch taken.
    Won(Connection, Epoch),
    /// Another session holds it; the epoch the store shows (its leader's).
    Lost(Option<Epoch>),
}

/// Take part in the election as `identity` for the life of `runtime`,
/// publishing this process's role on `role`. The first attempt is made
/// before this returns (so the role is known at start); a database that
/// cannot be reached then is an error.
pub(super) fn campaign(
    runtime: &tokio::runtime::Runtime,
    mut config: tokio_postgres::Config,
    tls: Tls,
    identity: String,
    retry: Duration,
    role: RoleSender,
) -> Result<(), EngineError> {
    config.application_name("idsync-leader");
    let mut kept = None;
    let first = {
        let (config, tls, identity) = (config.clone(), tls.clone(), identity.clone());
        run_on(runtime, async move {
            let attempt = attempt(&mut kept, &config, &tls, &identity, retry).await?;
            Ok((attempt, kept))
        })
    };
    let (first, kept) = first?;
    let held = publish(&role, first);
    runtime.spawn(async move {
        let mut kept = kept;
        let mut held = held;
        loop {
            if let Some((connection, epoch)) = held.take() {
                let why = hold(connection, retry).await;
                // At once, before anything else: the runners stop on it.
                role.send_replace(Role::Follower { leader: None });
                tracing::warn!(
                    epoch = epoch.number,
                    "no longer the leader: {why}; the connectors stop here"
                );
            }
            tokio::time::sleep(retry).await;
            match attempt(&mut kept, &config, &tls, &identity, retry).await {
                Ok(a) => held = publish(&role, a),
                Err(e) => {
                    kept = None;
                    tracing::debug!(error = %e, "cannot try for the leadership now");
                }
            }
        }
    });
    Ok(())
}

/// Publish what an attempt came to; the lock's connection and epoch when
/// it was won.
fn publish(role: &RoleSender, attempt: Attempt) -> Option<(Connection, Epoch)> {
    match attempt {
        Attempt::Won(connection, epoch) => {
            tracing::info!(
                epoch = epoch.number,
                "this process leads the replicas: the connectors run here"
            );
            role.send_replace(Role::Leader {
                epoch: epoch.clone(),
            });
            Some((connection, epoch))
        }
        Attempt::Lost(leader) => {
            let named = leader
                .as_ref()
                .map_or_else(|| "unknown".to_owned(), Epoch::to_string);
            let follower = Role::Follower { leader };
            role.send_if_modified(|now| {
                let changed = *now != follower;
                if changed {
                    tracing::info!(leader = %named, "a follower: another process leads");
                    *now = follower;
                }
                changed
            });
            None
        }
    }
}

/// Try the lock once on the connection kept in `kept` (made when there is
/// none, or it ended). Won, the connection moves into the answer; lost,
/// it is kept for the next attempt; failed, it is dropped.
async fn attempt(
    kept: &mut Option<Connection>,
    config: &tokio_postgres::Config,
    tls: &Tls,
    identity: &str,
    retry: Duration,
) -> Result<Attempt, EngineError> {
    let (mut client, driver) = match kept.take() {
        Some(connection) if !connection.1.is_finished() => connection,
        _ => {
            let connection = tls.connect(config).await?;
            keep_alive(&connection.0, retry).await;
            connection
        }
    };
    let row = client
        .query_one(TRY_LOCK, &[&LEADER_LOCK])
        .await
        .map_err(io_err)?;
    if row.get::<_, bool>(0) {
        // A failed bump drops the connection, and the lock with it.
        let epoch = bump(&mut client, identity).await?;
        return Ok(Attempt::Won((client, driver), epoch));
    }
    let stored = client
        .query_opt(GET, &[&keys::LEADER])
        .await
        .map_err(io_err)?;
    let leader = stored.and_then(|r| Epoch::decode(r.get::<_, &[u8]>(0)));
    *kept = Some((client, driver));
    Ok(Attempt::Lost(leader))
}

/// The next epoch, won by `identity`, in one transaction that takes the
/// lock every batch with expectations takes: a save that expects the
/// former epoch either committed before this one or sees the new one.
async fn bump(client: &mut tokio_postgres::Client, identity: &str) -> Result<Epoch, EngineError> {
    let tx = client.transaction().await.map_err(io_err)?;
    tx.execute(EXPECTING_LOCK, &[&EXPECTING])
        .await
        .map_err(io_err)?;
    let stored = tx.query_opt(GET, &[&keys::LEADER]).await.map_err(io_err)?;
    let number = stored
        .and_then(|r| Epoch::decode(r.get::<_, &[u8]>(0)))
        .map_or(0, |e| e.number)
        + 1;
    let epoch = Epoch {
        number,
        leader: identity.to_owned(),
    };
    tx.execute(PUT_ONE, &[&keys::LEADER, &epoch.value()])
        .await
        .map_err(io_err)?;
    tx.commit().await.map_err(io_err)?;
    Ok(epoch)
}

/// Ask the server to end this session within about `failover` when its
/// client goes silent (no keepalive answered, data unacknowledged), so a
/// leader cut off by the network frees the lock instead of holding it
/// until the kernel's defaults (hours). Over a Unix socket PostgreSQL
/// ignores these; a server that refuses them keeps its defaults (logged).
async fn keep_alive(client: &tokio_postgres::Client, failover: Duration) {
    let idle = (failover / 2).as_secs().max(1);
    let interval = (failover / 4).as_secs().max(1);
    let user_timeout = failover.as_millis();
    let set = format!(
        "SET tcp_keepalives_idle = {idle}; SET tcp_keepalives_interval = {interval}; \
         SET tcp_keepalives_count = 2; SET tcp_user_timeout = {user_timeout}"
    );
    if let Err(e) = client.batch_execute(&set).await {
        tracing::warn!(error = %e, "the leader lock's connection keeps the server's keepalive settings");
    }
    // A leader that stalls (paused, frozen) still answers keepalives from
    // its kernel, so the above never frees its lock: the server ends a
    // session that sends nothing for two `failover` instead. The leader
    // pings every quarter and a follower tries every `failover`, so a
    // running process never comes near it. Apart from the above: servers
    // before PostgreSQL 14 refuse it (logged).
    let idle = format!("SET idle_session_timeout = {}", (2 * failover).as_millis());
    if let Err(e) = client.batch_execute(&idle).await {
        tracing::warn!(error = %e, "a stalled leader keeps the leader lock until its connection ends");
    }
}

/// Hold the lock until its connection ends or stops answering (a ping
/// every quarter of `failover`, each given as long); why it was lost.
async fn hold(connection: Connection, failover: Duration) -> String {
    let (client, mut driver) = connection;
    let every = failover / 4;
    loop {
        tokio::select! {
            _ = &mut driver => return "the connection holding the leader lock ended".into(),
            () = tokio::time::sleep(every) => {
                match tokio::time::timeout(every, client.batch_execute("SELECT 1")).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return format!("the connection holding the leader lock failed: {e}"),
                    Err(_) => return format!(
                        "the connection holding the leader lock did not answer within {} ms",
                        every.as_millis()
                    ),
                }
            }
        }
    }
}
