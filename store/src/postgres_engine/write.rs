//! A batch's statements, sent to the server at once.
//!
//! Why: a batch is one transaction of up to six statements (the
//! settings, the expecting batches' lock, the expected keys'
//! reads, the delete, the upsert, the notify). Sent one after the other,
//! each waits for the answer to the one before: six round trips, and on a
//! loaded machine six waits for the engine's thread and the server's
//! backend to be scheduled, all of it while the writers' turn
//! (`writer_turn.rs`) keeps every other replica waiting. tokio-postgres
//! pipelines the requests of futures polled together, and the server runs
//! a connection's statements in the order they came, so the reads still
//! follow the lock. The expected values are compared once they are all
//! in, before the commit; a mismatch rolls everything back.

use deadpool_postgres::Transaction;
use futures_util::future::{try_join_all, BoxFuture};
use futures_util::FutureExt;

use super::{heads, io_err, FinalOps, DELETE_MANY, EXPECTING, EXPECTING_LOCK, GET, PUT_MANY};
use crate::engine::EngineError;

type Step<'a> = BoxFuture<'a, Result<Option<Vec<u8>>, tokio_postgres::Error>>;

/// The `SET LOCAL`s a batch's transaction starts with (empty: none).
/// Not durable: the commit does not wait for the WAL's flush. With an idle
/// limit: a transaction its process stops sending to (a replica stalled
/// mid-batch) is ended by the server after that long, with the locks it
/// holds (the expecting batches' lock, rows), as `writer_turn.rs` ends a
/// stalled holder's turn.
pub(super) fn local_settings(durable: bool, idle_limit: Option<std::time::Duration>) -> String {
    let mut sql = String::new();
    if !durable {
        sql.push_str("SET LOCAL synchronous_commit = off;");
    }
    if let Some(limit) = idle_limit {
        sql.push_str(&format!(
            "SET LOCAL idle_in_transaction_session_timeout = {};",
            limit.as_millis()
        ));
    }
    sql
}

/// Run the batch's statements in `tx`, up to the commit, after
/// `settings` (from [`local_settings`]); returns what the expected keys
/// hold, in the order of `expect`.
pub(super) async fn pipelined(
    tx: &Transaction<'_>,
    settings: &str,
    expect: &[(Vec<u8>, Option<Vec<u8>>)],
    ops: &FinalOps,
    new_head: Option<&str>,
) -> Result<Vec<Option<Vec<u8>>>, EngineError> {
    // Prepared before anything is sent (once per connection, then from
    // the cache): a statement that still needed its own preparing would
    // be sent after the ones behind it.
    let get = tx.prepare_cached(GET).await.map_err(io_err)?;
    let lock = tx.prepare_cached(EXPECTING_LOCK).await.map_err(io_err)?;
    let delete = tx.prepare_cached(DELETE_MANY).await.map_err(io_err)?;
    let put = tx.prepare_cached(PUT_MANY).await.map_err(io_err)?;
    let notify = tx.prepare_cached(heads::NOTIFY).await.map_err(io_err)?;

    let (get, lock, delete, put, notify) = (&get, &lock, &delete, &put, &notify);
    let mut steps: Vec<Step<'_>> = Vec::new();
    if !settings.is_empty() {
        steps.push(async move { tx.batch_execute(settings).await.map(|()| None) }.boxed());
    }
    let reads_from = if expect.is_empty() {
        steps.len()
    } else {
        // Batches with expectations take turns (until the commit): two
        // cannot both see the same head, even when it is still absent (a
        // row lock cannot lock a missing row).
        steps.push(async move { tx.execute(lock, &[&EXPECTING]).await.map(|_| None) }.boxed());
        let reads_from = steps.len();
        for (key, _) in expect {
            steps.push(
                async move {
                    let row = tx.query_opt(get, &[key]).await?;
                    Ok(row.map(|row| row.get(0)))
                }
                .boxed(),
            );
        }
        reads_from
    };
    if !ops.deletes.is_empty() {
        steps.push(async move { tx.execute(delete, &[&ops.deletes]).await.map(|_| None) }.boxed());
    }
    if !ops.put_keys.is_empty() {
        steps.push(
            async move {
                tx.execute(put, &[&ops.put_keys, &ops.put_values])
                    .await
                    .map(|_| None)
            }
            .boxed(),
        );
    }
    if let Some(head) = new_head {
        steps.push(async move { tx.execute(notify, &[&head]).await.map(|_| None) }.boxed());
    }
    // `try_join_all` polls the steps in order, so they are sent in order.
    let mut out = try_join_all(steps).await.map_err(io_err)?;
    Ok(out.drain(reads_from..reads_from + expect.len()).collect())
}
