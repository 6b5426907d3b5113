//! Delivering the change log to a connector, as a pipeline: read batch
//! N+1 and save batch N−1's delivery state while the connector delivers
//! batch N (the rules that keep it lossless are on [`Runner::stream`]).

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use idsync_connectors::{Delivery, DeliveryConfig, Event, Outcome, Remote};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::runner::{save, Runner, Wakers};
use super::view::{save_learned, StoreView, UnsavedView};
use idsync_store::delivery::{DeadLetter, DeliverySave};
use idsync_store::leadership::Epoch;
use idsync_store::{ChangeEvent, Store, StoreError};

/// How a [`Runner::stream`] of batches ended.
pub(super) enum Streamed {
    /// Nothing left to deliver (true), or a batch not delivered whole:
    /// back off and try again from the cursor (false).
    Done(bool),
    /// The store could not be read or written: back off and try again.
    Failed(String),
    /// A blocking task panicked: the runner stops.
    Broken(String),
}

/// What a delivered batch came to, shown once it is saved.
struct Settled {
    /// The end of the prefix delivered or parked.
    cursor: u64,
    /// The whole batch was delivered or parked.
    complete: bool,
    delivered: u64,
    failed: u64,
    parked: u64,
}

/// A save being written.
struct Saving {
    write: JoinHandle<Result<(), StoreError>>,
    settled: Settled,
}

/// A change as the connector sees it, with the object's current state: the
/// log names the object, the store holds it (gone: `null`, which the
/// connector treats as a deletion). Delivering the latest state is what
/// makes redelivery after a crash harmless.
pub(super) fn to_event(e: ChangeEvent, store: &Store) -> Result<Event, StoreError> {
    let object = match &e.object {
        Some(raw) => serde_json::from_str(raw.get()).unwrap_or(serde_json::Value::Null),
        None => store
            .object::<serde_json::Value>(e.kind, e.id)?
            .unwrap_or(serde_json::Value::Null),
    };
    Ok(Event {
        seq: e.seq,
        kind: e.kind,
        id: e.id,
        operation: e.operation,
        changed: e.changed,
        object,
    })
}

impl Runner {
    /// Read up to `limit` events after `after`, off the async threads.
    fn read(&self, after: u64, limit: usize) -> JoinHandle<Result<Vec<Event>, StoreError>> {
        let rec = Arc::clone(&self.rec);
        tokio::task::spawn_blocking(move || {
            let store = rec.store();
            store
                .changes(after, limit)?
                .into_iter()
                .map(|e| to_event(e, store))
                .collect()
        })
    }

    /// Deliver from `cursor` for as long as there is something to deliver,
    /// as a pipeline: while the connector delivers batch N, batch N+1 is
    /// read and batch N−1's delivery state is saved, both off the async
    /// threads, so the peer is not kept waiting between batches.
    ///
    /// What keeps "nothing lost" true:
    /// - batch N+1 is read ahead from the end of batch N, so it is only
    ///   delivered if batch N was delivered (or parked) whole; otherwise it
    ///   is dropped, and the next call reads again from the cursor;
    /// - saves run one at a time and in order, each with its batch's cursor
    ///   and remote ids in one engine batch, and `cursor` moves only once
    ///   its save is durable;
    /// - batch N+1 is delivered before batch N's remote ids are in the
    ///   store, so it sees them through an [`UnsavedView`];
    /// - it returns with nothing in flight (the last save awaited), so that
    ///   `cursor` is then what the store holds, and commands (reconcile,
    ///   retry) see the store as it is;
    /// - no batch is handed to the connector once this process no longer
    ///   leads in `epoch`, and every save expects `epoch`.
    pub(super) async fn stream(
        &self,
        cursor: &mut u64,
        w: &Wakers,
        attempts: &mut HashMap<u64, u32>,
        d: &DeliveryConfig,
        epoch: &Epoch,
    ) -> Streamed {
        let mut reading = Some(self.read(*cursor, d.batch_size));
        // The save in flight, and the remote ids it writes.
        let mut saving: Option<Saving> = None;
        let mut unsaved: HashMap<Uuid, Option<Remote>> = HashMap::new();
        // The end of what was delivered (or parked), saved or not.
        let mut delivered_to = *cursor;
        let streamed = loop {
            let Some(read) = reading.take() else {
                break Streamed::Done(true);
            };
            let events = match read.await {
                Ok(Ok(events)) => events,
                Ok(Err(e)) => break Streamed::Failed(format!("reading the change log: {e}")),
                Err(e) => break Streamed::Broken(format!("reading the change log: {e}")),
            };
            let Some(last) = events.last().map(|e| e.seq) else {
                break Streamed::Done(true);
            };
            // Read ahead, unless this batch reaches the head or the runner
            // is wanted elsewhere (a stop, a command): then this is the
            // last batch of the stream.
            let head_now = *w.head.borrow();
            self.stats.head.store(head_now, Relaxed);
            if last < head_now && !*w.stop.borrow() && w.commands.is_empty() {
                reading = Some(self.read(last, d.batch_size));
            }
            // Not delivered (the next leader delivers it); the runner's
            // loop then sees that it no longer leads.
            if !self.leads(w, epoch) {
                break Streamed::Failed(
                    "no longer the leader: the batch is left to the next one".into(),
                );
            }
            let view = UnsavedView {
                view: StoreView {
                    store: self.rec.store(),
                    name: &self.name,
                },
                unsaved: &unsaved,
            };
            let mut delivery = self.connector.deliver(&events, &view).await;
            // Activation states before the cursor: a batch delivered
            // again finds them (the mail connector's at-least-once window
            // is the time this write takes).
            let reports = std::mem::take(&mut delivery.activations);
            if let Err(e) = super::activations::record(&self.rec, &self.name, reports).await {
                // Delivered again from the cursor, as after a crash.
                break Streamed::Failed(e);
            }
            // Saves in order: batch N−1's is durable before batch N's is
            // written, and its figures are shown before batch N's errors.
            if let Some(s) = saving.take() {
                if let Err(e) = self.saved(s, cursor).await {
                    // Batch N is delivered but not saved: delivered again
                    // from the (durable) cursor, as after a crash.
                    break e;
                }
            }
            let (batch, settled) = self.settle(
                &events,
                &delivery,
                delivered_to,
                attempts,
                d.max_attempts,
                epoch,
            );
            delivered_to = settled.cursor;
            let complete = settled.complete;
            unsaved = delivery.learned.into_iter().collect();
            saving = Some(Saving {
                write: self.write(batch),
                settled,
            });
            if !complete {
                // `reading` (batch N+1) is dropped with the stream.
                break Streamed::Done(false);
            }
        };
        if let Some(s) = saving.take() {
            if let Err(e) = self.saved(s, cursor).await {
                return e;
            }
        }
        streamed
    }

    /// What one batch's outcomes come to: the cursor, learned remote ids
    /// and dead letters to write together, and the figures. `cursor` is
    /// where the batch starts.
    fn settle(
        &self,
        events: &[Event],
        delivery: &Delivery,
        cursor: u64,
        attempts: &mut HashMap<u64, u32>,
        max_attempts: u32,
        epoch: &Epoch,
    ) -> (DeliverySave, Settled) {
        let mut save = DeliverySave::new(&self.name, epoch);
        let mut s = Settled {
            cursor,
            complete: delivery.outcomes.len() >= events.len(),
            delivered: 0,
            failed: 0,
            parked: 0,
        };
        for (e, outcome) in events.iter().zip(&delivery.outcomes) {
            match outcome {
                Outcome::Delivered => {
                    attempts.remove(&e.seq);
                    s.cursor = e.seq;
                    s.delivered += 1;
                }
                Outcome::Retry(m) => {
                    s.failed += 1;
                    self.fail(m);
                    s.complete = false;
                    break;
                }
                Outcome::Failed(m) => {
                    s.failed += 1;
                    let n = attempts.entry(e.seq).or_insert(0);
                    *n += 1;
                    if *n < max_attempts {
                        self.fail(m);
                        s.complete = false;
                        break;
                    }
                    tracing::error!(connector = %self.name, seq = e.seq, attempts = *n, "parked: {m}");
                    save.park(&DeadLetter {
                        seq: e.seq,
                        kind: e.kind,
                        id: e.id,
                        attempts: *n,
                        error: m.clone(),
                        parked_at: time::OffsetDateTime::now_utc(),
                    });
                    attempts.remove(&e.seq);
                    s.cursor = e.seq;
                    s.parked += 1;
                }
            }
        }
        save_learned(&mut save, &delivery.learned);
        if s.cursor != cursor {
            save.cursor(s.cursor);
        }
        (save, s)
    }

    /// Write `save` (fsync'd) off the async threads.
    fn write(&self, batch: DeliverySave) -> JoinHandle<Result<(), StoreError>> {
        let (rec, deposed) = (Arc::clone(&self.rec), Arc::clone(&self.deposed));
        tokio::task::spawn_blocking(move || save(rec.store(), &deposed, batch))
    }

    /// Wait for a save; once it is durable, move `cursor` and the figures.
    async fn saved(&self, s: Saving, cursor: &mut u64) -> Result<(), Streamed> {
        match s.write.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Streamed::Failed(format!("saving the delivery state: {e}"))),
            Err(e) => return Err(Streamed::Broken(format!("saving the delivery state: {e}"))),
        }
        let s = s.settled;
        *cursor = s.cursor;
        let stats = &self.stats;
        stats.cursor.store(s.cursor, Relaxed);
        stats.delivered.fetch_add(s.delivered, Relaxed);
        stats.failed.fetch_add(s.failed, Relaxed);
        stats.parked.fetch_add(s.parked, Relaxed);
        if s.complete {
            stats.set_error("");
        }
        Ok(())
    }
}
