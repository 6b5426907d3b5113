//! The change log's head across processes on one database: each batch
//! that moves the head announces it (`pg_notify` on [`CHANNEL`], sent by
//! PostgreSQL when the batch commits), and every engine listens on a
//! connection of its own, so a replica hears of the others' commits
//! without polling (its connectors wake, its list caches move on).
//!
//! Notifications sent while the listening connection is down are lost:
//! after every (re)connect the head is read once, so a replica that was
//! cut off catches up at once instead of at the next commit.

use std::time::Duration;

use tokio::sync::mpsc;

use super::tls::Tls;
use super::GET;
use crate::engine::HeadCallback;
use crate::keys;

/// The channel heads are announced on.
pub(super) const CHANNEL: &str = "idsync_head";

/// The statement a batch that moves the head adds (its payload: the new
/// head, decimal).
pub(super) const NOTIFY: &str = "SELECT pg_notify('idsync_head', $1)";

/// Wait before connecting again after the listening connection ended.
const RECONNECT: Duration = Duration::from_secs(1);

/// Follow the heads others commit, for the life of `runtime`: connect,
/// `LISTEN`, read the head, then pass on every announced one; again after
/// any loss of the connection.
pub(super) fn follow(
    runtime: &tokio::runtime::Runtime,
    mut config: tokio_postgres::Config,
    tls: Tls,
    on_head: HeadCallback,
) {
    config.application_name("idsync-heads");
    runtime.spawn(async move {
        loop {
            if let Err(e) = listen(&config, &tls, &on_head).await {
                tracing::debug!(error = %e, "the head listener's connection ended; connecting again");
            }
            tokio::time::sleep(RECONNECT).await;
        }
    });
}

/// One connection's life: `LISTEN`, catch up, pass heads on until it ends.
async fn listen(
    config: &tokio_postgres::Config,
    tls: &Tls,
    on_head: &HeadCallback,
) -> Result<(), crate::EngineError> {
    let (notes, mut heard) = mpsc::unbounded_channel();
    let (client, _driver) = tls.connect_notified(config, notes).await?;
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(super::io_err)?;
    // Whatever was announced while no connection listened.
    let stored = client
        .query_opt(GET, &[&keys::HEAD])
        .await
        .map_err(super::io_err)?;
    if let Some(head) = stored.and_then(|row| keys::head_value(row.get::<_, &[u8]>(0))) {
        on_head(head);
    }
    while let Some(payload) = heard.recv().await {
        if let Ok(head) = payload.parse() {
            on_head(head);
        }
    }
    Ok(())
}
