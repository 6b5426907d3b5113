//! What an operator asks a running connector through the admin API:
//! replay the dead letters, run a full reconcile. Both run on the
//! connector's own task, between two batches, so they see the store as
//! delivery left it.

use std::sync::atomic::Ordering::Relaxed;

use idsync_connectors::{Event, Operation, Outcome};
use tokio::sync::oneshot;

use super::deliver::to_event;
use super::error::RunnerError;
use super::runner::{save, Runner};
use super::view::{save_learned, StoreView};
use idsync_store::delivery::DeliverySave;
use idsync_store::leadership::Epoch;
use idsync_store::ChangeEvent;

/// What an operator can ask a running connector (through the admin API).
#[derive(Debug)]
pub enum Command {
    /// Deliver the parked changes again.
    Retry(oneshot::Sender<Result<String, RunnerError>>),
    /// Run a full reconcile; `force` ignores the deletion threshold.
    Reconcile {
        force: bool,
        reply: oneshot::Sender<Result<Report, RunnerError>>,
    },
}

/// What a reconcile did.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// The operations executed (LDIF for LDAP).
    pub text: String,
    pub creates: usize,
    pub updates: usize,
    pub deletions: usize,
    pub skipped: usize,
    pub errors: Vec<String>,
}

impl Command {
    /// Answer with `error` instead of running it.
    pub(super) fn refuse(self, error: RunnerError) {
        // Nobody waiting for the answer is no error.
        match self {
            Command::Retry(reply) => {
                let _ = reply.send(Err(error));
            }
            Command::Reconcile { reply, .. } => {
                let _ = reply.send(Err(error));
            }
        }
    }
}

impl Runner {
    /// Run `cmd` as the leader of `epoch`.
    pub(super) async fn command(&self, cmd: Command, cursor: &mut u64, epoch: &Epoch) {
        match cmd {
            Command::Retry(reply) => {
                let _ = reply.send(self.retry(epoch).await);
            }
            Command::Reconcile { force, reply } => {
                let _ = reply.send(self.reconcile(force, cursor, false, epoch).await);
            }
        }
    }

    /// Deliver the parked changes again, as the objects are now (a parked
    /// event's own object may be stale by now).
    async fn retry(&self, epoch: &Epoch) -> Result<String, RunnerError> {
        let store = self.rec.store();
        let letters = store.delivery(&self.name).dead_letters()?;
        if letters.is_empty() {
            return Ok("the dead-letter list is empty".into());
        }
        // Each parked change as the log has it (its operation and changed
        // attributes), with the object's current state.
        let mut events = Vec::new();
        for l in &letters {
            let logged: Option<ChangeEvent> = store.change(l.seq)?;
            let event = match logged {
                Some(e) => to_event(e, store)?,
                // The log never loses an event; this only guards a store
                // edited by hand.
                None => {
                    let obj: Option<serde_json::Value> = store.object(l.kind, l.id)?;
                    Event {
                        seq: l.seq,
                        kind: l.kind,
                        id: l.id,
                        operation: if obj.is_some() {
                            Operation::Updated
                        } else {
                            Operation::Deleted
                        },
                        changed: Vec::new(),
                        object: obj.unwrap_or(serde_json::Value::Null),
                    }
                }
            };
            events.push(event);
        }
        let view = StoreView {
            store,
            name: &self.name,
        };
        let delivery = self.connector.deliver(&events, &view).await;
        let mut replay = DeliverySave::new(&self.name, epoch);
        let mut replayed = 0u64;
        for (l, outcome) in letters.iter().zip(&delivery.outcomes) {
            match outcome {
                Outcome::Delivered => {
                    replay.unpark(l.seq);
                    replayed += 1;
                }
                Outcome::Retry(m) | Outcome::Failed(m) => {
                    let mut l = l.clone();
                    l.attempts += 1;
                    l.error = m.clone();
                    replay.park(&l);
                }
            }
        }
        save_learned(&mut replay, &delivery.learned);
        save(store, &self.deposed, replay)?;
        let left = letters.len() as u64 - replayed;
        self.stats.parked.store(left, Relaxed);
        self.stats.delivered.fetch_add(replayed, Relaxed);
        Ok(format!("{replayed} replayed, {left} still parked"))
    }

    /// Plan, check the threshold, apply, remember. The error says whether
    /// it is worth trying again (peer unreachable).
    pub(super) async fn reconcile(
        &self,
        force: bool,
        cursor: &mut u64,
        first: bool,
        epoch: &Epoch,
    ) -> Result<Report, RunnerError> {
        let store = self.rec.store();
        let head_before = store.head()?;
        let view = StoreView {
            store,
            name: &self.name,
        };
        let plan = self.connector.plan(&view).await?;
        if let (Some(refusal), false) = (&plan.refusal, force) {
            return Err(RunnerError::Refused(refusal.clone()));
        }
        let mut applied = self
            .connector
            .apply(&plan)
            .await
            .map_err(|e| RunnerError::Apply(e.to_string()))?;
        let reports = std::mem::take(&mut applied.activations);
        super::activations::record(&self.rec, &self.name, reports)
            .await
            .map_err(RunnerError::Apply)?;
        let mut reconciled = DeliverySave::new(&self.name, epoch);
        save_learned(&mut reconciled, &applied.learned);
        let ended = time::OffsetDateTime::now_utc().unix_timestamp();
        reconciled.reconciled_at(ended);
        // A new connector: the reconcile brought the peer to (at least) the
        // head it saw before planning; what came after is delivered next.
        if first && *cursor < head_before {
            reconciled.cursor(head_before);
        }
        save(store, &self.deposed, reconciled)?;
        self.last_reconcile.store(ended, Relaxed);
        if first && *cursor < head_before {
            *cursor = head_before;
            self.stats.cursor.store(head_before, Relaxed);
        }
        for e in &applied.errors {
            tracing::warn!(connector = %self.name, "reconcile: {e}");
        }
        Ok(Report {
            text: applied.text,
            creates: plan.creates,
            updates: plan.updates,
            deletions: plan.deletions,
            skipped: plan.skipped,
            errors: applied.errors,
        })
    }
}
