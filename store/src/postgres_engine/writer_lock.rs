//! The one-process lock: a session advisory lock on a connection of its
//! own, taken at start and kept (taken back after the database restarts),
//! so that only one idsync writes a database until replicas exist.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::tls::{Connection, Tls};
use super::{io_err, run_on, EngineError};

/// The session advisory lock one idsync holds on its database: until
/// several replicas share one (a gap-free change log across writers), a
/// second process on the same database is refused at start.
const SOLE_WRITER_LOCK: i64 = 0x6964_7379_6e63; // "idsync"

/// How long a start waits for [`SOLE_WRITER_LOCK`].
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// A connection of its own that holds [`SOLE_WRITER_LOCK`], kept by a
/// task on `runtime` for the engine's life; the flag says whether the lock
/// is held now. Fails when another process holds it.
pub(super) fn sole_writer(
    runtime: &tokio::runtime::Runtime,
    config: tokio_postgres::Config,
    tls: Tls,
) -> Result<Arc<AtomicBool>, String> {
    let (first, first_tls) = (config.clone(), tls.clone());
    // A process killed a moment ago still holds it until its server
    // process notices the closed connection: wait a little.
    let locked = run_on(runtime, async move {
        take_sole_writer(&first, &first_tls, LOCK_WAIT).await
    })
    .map_err(|e| e.to_string())?;
    let Some(held) = locked else {
        return Err("another idsync process uses this database \
             (one process per database until replicas are supported: docs/operations.md)"
            .into());
    };
    let flag = Arc::new(AtomicBool::new(true));
    runtime.spawn(keep_sole_writer(config, tls, held, Arc::clone(&flag)));
    Ok(flag)
}

/// Connect and try for [`SOLE_WRITER_LOCK`] until `wait` has passed;
/// `None` when another session holds it.
async fn take_sole_writer(
    config: &tokio_postgres::Config,
    tls: &Tls,
    wait: Duration,
) -> Result<Option<Connection>, EngineError> {
    let (client, driver) = tls.connect(config).await?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let row = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&SOLE_WRITER_LOCK])
            .await
            .map_err(io_err)?;
        if row.get::<_, bool>(0) {
            return Ok(Some((client, driver)));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Hold the lock for the engine's life. A session lock ends with its
/// connection: when the database restarts, another idsync could take it.
/// So when the connection ends, writes stop (`held` false) until this
/// task has taken the lock again, every second; while another process
/// holds it, they stay stopped (and say so).
async fn keep_sole_writer(
    config: tokio_postgres::Config,
    tls: Tls,
    mut held: Connection,
    flag: Arc<AtomicBool>,
) {
    loop {
        let _ = (&mut held.1).await;
        flag.store(false, Ordering::SeqCst);
        tracing::warn!("lost the connection holding the database's writer lock: writes wait until it is taken again");
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            match take_sole_writer(&config, &tls, Duration::ZERO).await {
                Ok(Some(again)) => {
                    held = again;
                    flag.store(true, Ordering::SeqCst);
                    tracing::info!("the database's writer lock is held again");
                    break;
                }
                Ok(None) => tracing::error!(
                    "another idsync process took this database's writer lock: this one writes nothing until it can take it back"
                ),
                Err(_) => {} // the database is not back yet
            }
        }
    }
}
