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
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use idsync_connectors::{Connector, Delivery, DeliveryConfig, Event, Operation, Outcome, Remote};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::error::RunnerError;
use crate::infra::connector_stats::ConnectorStats;
use super::view::{save_learned, StoreView, UnsavedView};
use idsync_store::delivery::{DeadLetter, DeliverySave};
use idsync_store::reconcile::Reconciler;
use idsync_store::{ChangeEvent, StoreError};

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

/// How a [`Runner::stream`] of batches ended.
enum Streamed {
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

/// One connector's delivery loop.
pub struct Runner {
    name: String,
    connector: Arc<dyn Connector>,
    /// Only its store is used (reads, and this connector's own keys).
    rec: Arc<Reconciler>,
    stats: Arc<ConnectorStats>,
    /// When the last full reconcile ended (Unix seconds), as the store
    /// records it: read at start, then kept by [`Runner::reconcile`], so
    /// the schedule needs no read per turn of the loop. [`NEVER`]: none yet.
    last_reconcile: AtomicI64,
}

/// [`Runner::last_reconcile`] before the first reconcile.
const NEVER: i64 = i64::MIN;

impl Runner {
    pub fn new(
        name: String,
        connector: Arc<dyn Connector>,
        rec: Arc<Reconciler>,
        stats: Arc<ConnectorStats>,
    ) -> Self {
        Self {
            name,
            connector,
            rec,
            stats,
            last_reconcile: AtomicI64::new(NEVER),
        }
    }
}

/// A change as the connector sees it, with the object's current state: the
/// log names the object, the store holds it (gone: `null`, which the
/// connector treats as a deletion). Delivering the latest state is what
/// makes redelivery after a crash harmless.
fn to_event(
    e: ChangeEvent,
    store: &idsync_store::Store,
) -> Result<Event, idsync_store::StoreError> {
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
            idsync_store::Operation::Created => Operation::Created,
            idsync_store::Operation::Updated => Operation::Updated,
            idsync_store::Operation::Deleted => Operation::Deleted,
        },
        changed: e.changed,
        object,
    })
}

/// Sleep until `at`; never, without one.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What wakes a runner: the change log's head moving, a stop, a command.
struct Wakers {
    head: watch::Receiver<u64>,
    stop: watch::Receiver<bool>,
    commands: mpsc::Receiver<Command>,
}

impl Runner {
    /// Run until `stop` turns true.
    pub async fn run(
        self,
        head: watch::Receiver<u64>,
        stop: watch::Receiver<bool>,
        commands: mpsc::Receiver<Command>,
    ) {
        let mut w = Wakers {
            head,
            stop,
            commands,
        };
        let d = self.connector.delivery().clone();
        let mut backoff = Backoff::new(
            Duration::from_millis(d.backoff_initial_ms),
            Duration::from_millis(d.backoff_max_ms),
        );
        let mut attempts: HashMap<u64, u32> = HashMap::new();
        let state = self.rec.store().delivery(&self.name);
        let (mut cursor, mut need_reconcile) =
            match (state.cursor(), state.last_reconcile(), state.dead_letters()) {
                (Ok(c), Ok(last), Ok(dead)) => {
                    self.stats.parked.store(dead.len() as u64, Relaxed);
                    self.last_reconcile.store(last.unwrap_or(NEVER), Relaxed);
                    (c, last.is_none())
                }
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                    tracing::error!(connector = %self.name, "cannot read the delivery state: {e}");
                    self.stats.set_error(e.to_string());
                    return;
                }
            };
        self.stats.cursor.store(cursor, Relaxed);
        tracing::info!(connector = %self.name, cursor, "connector started");
        self.healthcheck();
        // After a scheduled reconcile failed: when to try again.
        let mut retry_reconcile_at: Option<tokio::time::Instant> = None;
        loop {
            if *w.stop.borrow() {
                break;
            }
            while let Ok(cmd) = w.commands.try_recv() {
                self.command(cmd, &mut cursor).await;
            }
            if need_reconcile {
                // A new connector starts with a full reconcile.
                match self.reconcile(false, &mut cursor, true).await {
                    Ok(r) => {
                        need_reconcile = false;
                        tracing::info!(connector = %self.name, creates = r.creates, updates = r.updates, deletions = r.deletions, "first full reconcile done");
                    }
                    Err(e) => {
                        tracing::error!(connector = %self.name, "first full reconcile: {e}");
                        // Show it as what it is: nothing delivered yet,
                        // the whole log behind, one more failed attempt.
                        self.stats.head.store(*w.head.borrow(), Relaxed);
                        self.stats.failed.fetch_add(1, Relaxed);
                        self.stats.set_error(e.to_string());
                        if e.transient() {
                            self.pause(backoff.next_delay(), &mut w, &mut cursor).await;
                            continue;
                        }
                        need_reconcile = false;
                    }
                }
            }
            let due_in = self.reconcile_due_in(d.reconcile_every_s, retry_reconcile_at);
            if due_in == Some(Duration::ZERO) {
                match self.reconcile(false, &mut cursor, false).await {
                    Ok(r) => {
                        retry_reconcile_at = None;
                        tracing::info!(connector = %self.name, creates = r.creates, updates = r.updates, deletions = r.deletions, errors = r.errors.len(), "scheduled reconcile done");
                    }
                    Err(e) => {
                        // Not again before a while: a refusal (threshold)
                        // stands until someone looks, a peer down until
                        // delivery's retries find it back.
                        let wait = Duration::from_secs(d.reconcile_every_s.min(600));
                        retry_reconcile_at = Some(tokio::time::Instant::now() + wait);
                        tracing::error!(connector = %self.name, "scheduled reconcile: {e} (next try in {} s)", wait.as_secs());
                        self.stats.set_error(e.to_string());
                    }
                }
                continue;
            }
            let head_now = *w.head.borrow_and_update();
            self.stats.head.store(head_now, Relaxed);
            if cursor >= head_now {
                let next_reconcile = due_in.map(|d| tokio::time::Instant::now() + d);
                tokio::select! {
                    changed = w.head.changed() => if changed.is_err() { break },
                    _ = w.stop.changed() => {}
                    Some(cmd) = w.commands.recv() => self.command(cmd, &mut cursor).await,
                    () = sleep_until_some(next_reconcile) => {}
                }
                continue;
            }
            match self.stream(&mut cursor, &w, &mut attempts, &d).await {
                Streamed::Done(true) => {
                    backoff.reset();
                    continue;
                }
                Streamed::Done(false) => {}
                Streamed::Failed(e) => self.fail(&e),
                Streamed::Broken(e) => {
                    tracing::error!(connector = %self.name, "{e}");
                    break;
                }
            }
            // Something was not delivered: back off before the next try.
            self.pause(backoff.next_delay(), &mut w, &mut cursor).await;
        }
        tracing::info!(connector = %self.name, cursor, "connector stopped");
    }

    /// How long until the next scheduled reconcile (zero: now); `None`
    /// when none is scheduled (`every_s` 0, or the first one not run yet:
    /// that one is the loop's own).
    fn reconcile_due_in(
        &self,
        every_s: u64,
        retry_at: Option<tokio::time::Instant>,
    ) -> Option<Duration> {
        if every_s == 0 {
            return None;
        }
        if let Some(at) = retry_at {
            return Some(at.saturating_duration_since(tokio::time::Instant::now()));
        }
        let last = self.last_reconcile.load(Relaxed);
        if last == NEVER {
            return None;
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let due = last.saturating_add(i64::try_from(every_s).unwrap_or(i64::MAX));
        Some(Duration::from_secs(
            u64::try_from(due.saturating_sub(now)).unwrap_or(0),
        ))
    }

    /// Check the peer once at start, beside delivery: an unreachable peer
    /// or a refused bind is in the log at once, with what the connector
    /// says is wrong. Never fatal, and it does not hold up delivery: a peer
    /// that comes up later is what the retries are for.
    fn healthcheck(&self) {
        let (connector, name) = (Arc::clone(&self.connector), self.name.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(Duration::from_secs(30), connector.healthcheck()).await {
                Ok(Ok(())) => tracing::info!(connector = %name, "healthcheck passed"),
                Ok(Err(e)) => tracing::warn!(connector = %name, "healthcheck failed: {e}"),
                Err(_) => {
                    tracing::warn!(connector = %name, "healthcheck failed: no answer in 30 s")
                }
            }
        });
    }

    fn fail(&self, e: &str) {
        tracing::warn!(connector = %self.name, "{e}");
        self.stats.set_error(e);
    }

    /// Wait `delay`, answering commands meanwhile; a stop ends it early.
    /// The head is followed meanwhile, so the lag `idsync status` and
    /// `/metrics` show grows while a peer is down instead of waiting for
    /// the next try.
    async fn pause(&self, delay: Duration, w: &mut Wakers, cursor: &mut u64) {
        let until = tokio::time::Instant::now() + delay;
        let mut head_open = true;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => return,
                _ = w.stop.changed() => return,
                changed = w.head.changed(), if head_open => match changed {
                    Ok(()) => self.stats.head.store(*w.head.borrow_and_update(), Relaxed),
                    Err(_) => head_open = false,
                },
                Some(cmd) = w.commands.recv() => self.command(cmd, cursor).await,
            }
        }
    }

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
    ///   retry) see the store as it is.
    async fn stream(
        &self,
        cursor: &mut u64,
        w: &Wakers,
        attempts: &mut HashMap<u64, u32>,
        d: &DeliveryConfig,
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
            let view = UnsavedView {
                view: StoreView {
                    store: self.rec.store(),
                    name: &self.name,
                },
                unsaved: &unsaved,
            };
            let delivery = self.connector.deliver(&events, &view).await;
            // Saves in order: batch N−1's is durable before batch N's is
            // written, and its figures are shown before batch N's errors.
            if let Some(s) = saving.take() {
                if let Err(e) = self.saved(s, cursor).await {
                    // Batch N is delivered but not saved: delivered again
                    // from the (durable) cursor, as after a crash.
                    break e;
                }
            }
            let (batch, settled) =
                self.settle(&events, &delivery, delivered_to, attempts, d.max_attempts);
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
    ) -> (DeliverySave, Settled) {
        let mut save = DeliverySave::new(&self.name);
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
    fn write(&self, save: DeliverySave) -> JoinHandle<Result<(), StoreError>> {
        let rec = Arc::clone(&self.rec);
        tokio::task::spawn_blocking(move || rec.store().save_delivery(save))
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

    async fn command(&self, cmd: Command, cursor: &mut u64) {
        match cmd {
            Command::Retry(reply) => {
                let _ = reply.send(self.retry().await);
            }
            Command::Reconcile { force, reply } => {
                let _ = reply.send(self.reconcile(force, cursor, false).await);
            }
        }
    }

    /// Deliver the parked changes again, as the objects are now (a parked
    /// event's own object may be stale by now).
    async fn retry(&self) -> Result<String, RunnerError> {
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
        let mut save = DeliverySave::new(&self.name);
        let mut replayed = 0u64;
        for (l, outcome) in letters.iter().zip(&delivery.outcomes) {
            match outcome {
                Outcome::Delivered => {
                    save.unpark(l.seq);
                    replayed += 1;
                }
                Outcome::Retry(m) | Outcome::Failed(m) => {
                    let mut l = l.clone();
                    l.attempts += 1;
                    l.error = m.clone();
                    save.park(&l);
                }
            }
        }
        save_learned(&mut save, &delivery.learned);
        store.save_delivery(save)?;
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
        let applied = self
            .connector
            .apply(&plan)
            .await
            .map_err(|e| RunnerError::Apply(e.to_string()))?;
        let mut save = DeliverySave::new(&self.name);
        save_learned(&mut save, &applied.learned);
        let ended = time::OffsetDateTime::now_utc().unix_timestamp();
        save.reconciled_at(ended);
        // A new connector: the reconcile brought the peer to (at least) the
        // head it saw before planning; what came after is delivered next.
        if first && *cursor < head_before {
            save.cursor(head_before);
        }
        store.save_delivery(save)?;
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
