//! The runner of one connector: it follows the change log from its durable
//! cursor and delivers at least once.
//!
//! - It sleeps on the store's head watch (no polling) and wakes when the
//!   change log grows, when asked something, or when told to stop.
//! - The cursor only moves over a prefix of events that were delivered (or
//!   parked), in the same engine batch as the remote ids learned, so a crash
//!   at any point re-delivers, never skips. Connectors are idempotent.
//! - A transient failure (peer down, busy) retries with capped exponential
//!   backoff and jitter, for as long as it takes; a refused change is tried
//!   `max_attempts` times and then parked in the dead-letter list.
//! - It reads the store (never blocking writers: redb reads are snapshots)
//!   and writes only its own `s/conn/NAME/` keys; each connector has its own
//!   task, so one connector's trouble never holds up another or the imports.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use idsync_connectors::{Connector, Event, Operation, Outcome};
use tokio::sync::{mpsc, oneshot, watch};

use super::state::{self, DeadLetter, StoreView};
use super::stats::ConnectorStats;
use crate::reconcile::Reconciler;
use crate::store::{Batch, ChangeEvent, StoreError};

/// What an operator can ask a running connector (through the admin API).
#[derive(Debug)]
pub enum Command {
    /// Deliver the parked changes again.
    Retry(oneshot::Sender<Result<String, String>>),
    /// Run a full reconcile; `force` ignores the deletion threshold.
    Reconcile {
        force: bool,
        reply: oneshot::Sender<Result<Report, String>>,
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

/// Delay before the next try: doubles from `initial` up to `max`, with
/// jitter (a random 50–100 % of the step) so that connectors that failed
/// together do not retry together.
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            step: initial,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let mut b = [0u8; 8];
        let r = if getrandom::fill(&mut b).is_ok() {
            u64::from_le_bytes(b)
        } else {
            0
        };
        let fraction = 0.5 + (r % 1000) as f64 / 2000.0;
        let d = self.step.mul_f64(fraction);
        self.step = (self.step * 2).min(self.max);
        d
    }

    pub fn reset(&mut self) {
        self.step = self.initial;
    }
}

/// One connector's delivery loop.
pub struct Runner {
    pub name: String,
    pub connector: Arc<dyn Connector>,
    /// Only its store is used (reads, and this connector's own keys).
    pub rec: Arc<Reconciler>,
    pub stats: Arc<ConnectorStats>,
}

/// A change as the connector sees it, with the object's current state: the
/// log names the object, the store holds it (gone: `null`, which the
/// connector treats as a deletion). Delivering the latest state is what
/// makes redelivery after a crash harmless.
fn to_event(
    e: ChangeEvent,
    store: &crate::store::Store,
) -> Result<Event, crate::store::StoreError> {
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
        operation: match e.operation {
            crate::store::Operation::Created => Operation::Created,
            crate::store::Operation::Updated => Operation::Updated,
            crate::store::Operation::Deleted => Operation::Deleted,
        },
        changed: e.changed,
        object,
    })
}

impl Runner {
    /// Run until `stop` turns true.
    pub async fn run(
        self,
        mut head: watch::Receiver<u64>,
        mut stop: watch::Receiver<bool>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        let d = self.connector.delivery().clone();
        let mut backoff = Backoff::new(
            Duration::from_millis(d.backoff_initial_ms),
            Duration::from_millis(d.backoff_max_ms),
        );
        let mut attempts: HashMap<u64, u32> = HashMap::new();
        let store = self.rec.store();
        let (mut cursor, mut need_reconcile) = match (
            state::cursor(store, &self.name),
            state::reconciled(store, &self.name),
            state::dead_letters(store, &self.name),
        ) {
            (Ok(c), Ok(r), Ok(dead)) => {
                self.stats.parked.store(dead.len() as u64, Relaxed);
                (c, !r)
            }
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                tracing::error!(connector = %self.name, "cannot read the delivery state: {e}");
                self.stats.set_error(e.to_string());
                return;
            }
        };
        self.stats.cursor.store(cursor, Relaxed);
        tracing::info!(connector = %self.name, cursor, "connector started");
        loop {
            if *stop.borrow() {
                break;
            }
            while let Ok(cmd) = commands.try_recv() {
                self.command(cmd, &mut cursor).await;
            }
            if need_reconcile {
                // A new connector starts with a full reconcile.
                match self.reconcile(false, &mut cursor, true).await {
                    Ok(r) => {
                        need_reconcile = false;
                        tracing::info!(connector = %self.name, creates = r.creates, updates = r.updates, deletions = r.deletions, "first full reconcile done");
                    }
                    Err((e, transient)) => {
                        tracing::error!(connector = %self.name, "first full reconcile: {e}");
                        // Show it as what it is: nothing delivered yet,
                        // the whole log behind, one more failed attempt.
                        self.stats.head.store(*head.borrow(), Relaxed);
                        self.stats.failed.fetch_add(1, Relaxed);
                        self.stats.set_error(e);
                        if transient {
                            self.pause(backoff.next_delay(), &mut stop, &mut commands, &mut cursor)
                                .await;
                            continue;
                        }
                        need_reconcile = false;
                    }
                }
            }
            let head_now = *head.borrow_and_update();
            self.stats.head.store(head_now, Relaxed);
            if cursor >= head_now {
                tokio::select! {
                    changed = head.changed() => if changed.is_err() { break },
                    _ = stop.changed() => {}
                    Some(cmd) = commands.recv() => self.command(cmd, &mut cursor).await,
                }
                continue;
            }
            let rec = Arc::clone(&self.rec);
            let (after, limit) = (cursor, d.batch_size);
            let events = match tokio::task::spawn_blocking(move || {
                let store = rec.store();
                store
                    .changes(after, limit)?
                    .into_iter()
                    .map(|e| to_event(e, store))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await
            {
                Ok(Ok(ev)) => ev,
                Ok(Err(e)) => {
                    self.fail(&e.to_string());
                    self.pause(backoff.next_delay(), &mut stop, &mut commands, &mut cursor)
                        .await;
                    continue;
                }
                Err(e) => {
                    tracing::error!(connector = %self.name, "reading the change log: {e}");
                    break;
                }
            };
            if events.is_empty() {
                continue;
            }
            match self
                .deliver(&events, &mut cursor, &mut attempts, d.max_attempts)
                .await
            {
                Ok(true) => backoff.reset(),
                Ok(false) => {
                    self.pause(backoff.next_delay(), &mut stop, &mut commands, &mut cursor)
                        .await
                }
                Err(e) => {
                    self.fail(&format!("saving the delivery state: {e}"));
                    self.pause(backoff.next_delay(), &mut stop, &mut commands, &mut cursor)
                        .await;
                }
            }
        }
        tracing::info!(connector = %self.name, cursor, "connector stopped");
    }

    fn fail(&self, e: &str) {
        tracing::warn!(connector = %self.name, "{e}");
        self.stats.set_error(e);
    }

    /// Wait `delay`, answering commands meanwhile; a stop ends it early.
    async fn pause(
        &self,
        delay: Duration,
        stop: &mut watch::Receiver<bool>,
        commands: &mut mpsc::Receiver<Command>,
        cursor: &mut u64,
    ) {
        let until = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => return,
                _ = stop.changed() => return,
                Some(cmd) = commands.recv() => self.command(cmd, cursor).await,
            }
        }
    }

    /// Deliver one batch and save what came of it. True when the whole
    /// batch is done (delivered or parked).
    async fn deliver(
        &self,
        events: &[Event],
        cursor: &mut u64,
        attempts: &mut HashMap<u64, u32>,
        max_attempts: u32,
    ) -> Result<bool, StoreError> {
        let store = self.rec.store();
        let view = StoreView {
            store,
            name: &self.name,
        };
        let delivery = self.connector.deliver(events, &view).await;
        let mut batch = Batch::new();
        let mut advance = *cursor;
        let mut delivered = 0u64;
        let mut parked = 0u64;
        let mut failed = 0u64;
        let mut complete = true;
        for (e, outcome) in events.iter().zip(&delivery.outcomes) {
            match outcome {
                Outcome::Delivered => {
                    attempts.remove(&e.seq);
                    advance = e.seq;
                    delivered += 1;
                }
                Outcome::Retry(m) => {
                    failed += 1;
                    self.fail(m);
                    complete = false;
                    break;
                }
                Outcome::Failed(m) => {
                    failed += 1;
                    let n = attempts.entry(e.seq).or_insert(0);
                    *n += 1;
                    if *n < max_attempts {
                        self.fail(m);
                        complete = false;
                        break;
                    }
                    tracing::error!(connector = %self.name, seq = e.seq, attempts = *n, "parked: {m}");
                    state::queue_dead(
                        &mut batch,
                        &self.name,
                        &DeadLetter {
                            seq: e.seq,
                            kind: e.kind,
                            id: e.id,
                            attempts: *n,
                            error: m.clone(),
                            parked_at: time::OffsetDateTime::now_utc(),
                        },
                    );
                    attempts.remove(&e.seq);
                    advance = e.seq;
                    parked += 1;
                }
            }
        }
        if delivery.outcomes.len() < events.len() {
            complete = false;
        }
        state::queue_learned(&mut batch, &self.name, &delivery.learned);
        if advance != *cursor {
            state::queue_cursor(&mut batch, &self.name, advance);
        }
        if !batch.is_empty() {
            store.engine().write(batch)?;
        }
        *cursor = advance;
        let s = &self.stats;
        s.cursor.store(advance, Relaxed);
        s.delivered.fetch_add(delivered, Relaxed);
        s.failed.fetch_add(failed, Relaxed);
        s.parked.fetch_add(parked, Relaxed);
        if complete {
            s.set_error("");
        }
        Ok(complete)
    }

    async fn command(&self, cmd: Command, cursor: &mut u64) {
        match cmd {
            Command::Retry(reply) => {
                let _ = reply.send(self.retry().await);
            }
            Command::Reconcile { force, reply } => {
                let r = self.reconcile(force, cursor, false).await;
                let _ = reply.send(r.map_err(|(e, _)| e));
            }
        }
    }

    /// Deliver the parked changes again, as the objects are now (a parked
    /// event's own object may be stale by now).
    async fn retry(&self) -> Result<String, String> {
        let store = self.rec.store();
        let letters = state::dead_letters(store, &self.name).map_err(|e| e.to_string())?;
        if letters.is_empty() {
            return Ok("the dead-letter list is empty".into());
        }
        // Each parked change as the log has it (its operation and changed
        // attributes), with the object's current state.
        let mut events = Vec::new();
        for l in &letters {
            let logged: Option<ChangeEvent> = store
                .get(&crate::store::keys::change(l.seq))
                .map_err(|e| e.to_string())?;
            let event = match logged {
                Some(e) => to_event(e, store).map_err(|e| e.to_string())?,
                // The log never loses an event; this only guards a store
                // edited by hand.
                None => {
                    let obj: Option<serde_json::Value> =
                        store.object(l.kind, l.id).map_err(|e| e.to_string())?;
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
        let mut batch = Batch::new();
        let mut replayed = 0u64;
        for (l, outcome) in letters.iter().zip(&delivery.outcomes) {
            match outcome {
                Outcome::Delivered => {
                    batch.delete(crate::store::keys::connector_dead(&self.name, l.seq));
                    replayed += 1;
                }
                Outcome::Retry(m) | Outcome::Failed(m) => {
                    let mut l = l.clone();
                    l.attempts += 1;
                    l.error = m.clone();
                    state::queue_dead(&mut batch, &self.name, &l);
                }
            }
        }
        state::queue_learned(&mut batch, &self.name, &delivery.learned);
        store.engine().write(batch).map_err(|e| e.to_string())?;
        let left = letters.len() as u64 - replayed;
        self.stats.parked.store(left, Relaxed);
        self.stats.delivered.fetch_add(replayed, Relaxed);
        Ok(format!("{replayed} replayed, {left} still parked"))
    }

    /// Plan, check the threshold, apply, remember. The error says whether
    /// it is worth trying again (peer unreachable).
    async fn reconcile(
        &self,
        force: bool,
        cursor: &mut u64,
        first: bool,
    ) -> Result<Report, (String, bool)> {
        let store = self.rec.store();
        let head_before = store.head().map_err(|e| (e.to_string(), true))?;
        let view = StoreView {
            store,
            name: &self.name,
        };
        let plan = self.connector.plan(&view).await.map_err(|e| {
            let transient = matches!(e, idsync_connectors::ConnectorError::Unavailable(_));
            (e.to_string(), transient)
        })?;
        if let (Some(refusal), false) = (&plan.refusal, force) {
            return Err((format!("reconcile refused: {refusal}"), false));
        }
        let applied = self
            .connector
            .apply(&plan)
            .await
            .map_err(|e| (e.to_string(), true))?;
        let mut batch = Batch::new();
        state::queue_learned(&mut batch, &self.name, &applied.learned);
        batch.put(
            crate::store::keys::connector_reconciled(&self.name),
            Vec::new(),
        );
        // A new connector: the reconcile brought the peer to (at least) the
        // head it saw before planning; what came after is delivered next.
        if first && *cursor < head_before {
            state::queue_cursor(&mut batch, &self.name, head_before);
        }
        store
            .engine()
            .write(batch)
            .map_err(|e| (e.to_string(), true))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        let d: Vec<Duration> = (0..5).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(50) && d[0] <= Duration::from_millis(100));
        assert!(d[1] >= Duration::from_millis(100) && d[1] <= Duration::from_millis(200));
        assert!(d[4] >= Duration::from_millis(200) && d[4] <= Duration::from_millis(400));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
