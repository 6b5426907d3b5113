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
//! - It delivers only while this process leads the processes sharing the
//!   store (`idsync_store::leadership`): it waits as a follower, starts
//!   from the stored cursor when this process wins, and stops between two
//!   batches when it loses. Every save carries the epoch it leads in, so a
//!   save made after another process took over is refused
//!   ([`StoreError::Deposed`]); the runner then stops delivering under
//!   that epoch even before the process learns it lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use idsync_connectors::{Connector, DeliveryConfig};
use idsync_store::delivery::DeliverySave;
use idsync_store::leadership::{Epoch, Role};
use idsync_store::StoreError;
use tokio::sync::{mpsc, watch};

use super::backoff::Backoff;
use super::deliver::Streamed;
use super::error::RunnerError;
use super::operate::Command;
use crate::infra::connector_stats::ConnectorStats;
use idsync_store::reconcile::Reconciler;

/// One connector's delivery loop.
pub struct Runner {
    pub(super) name: String,
    pub(super) connector: Arc<dyn Connector>,
    /// Only its store is used (reads, and this connector's own keys).
    pub(super) rec: Arc<Reconciler>,
    pub(super) stats: Arc<ConnectorStats>,
    /// When the last full reconcile ended (Unix seconds), as the store
    /// records it: read at start, then kept by [`Runner::reconcile`], so
    /// the schedule needs no read per turn of the loop. [`NEVER`]: none yet.
    pub(super) last_reconcile: AtomicI64,
    /// The number of the epoch a save of this runner found deposed (0:
    /// none): no more delivering under it, whatever the role says.
    pub(super) deposed: Arc<AtomicU64>,
}

/// [`Runner::last_reconcile`] before the first reconcile.
pub(super) const NEVER: i64 = i64::MIN;

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
            deposed: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// Save `save` (a blocking write); a save refused because another
/// process leads now marks its epoch in `deposed`.
pub(super) fn save(
    store: &idsync_store::Store,
    deposed: &AtomicU64,
    save: DeliverySave,
) -> Result<(), StoreError> {
    let saved = store.save_delivery(save);
    if let Err(StoreError::Deposed { epoch }) = &saved {
        deposed.store(*epoch, Relaxed);
    }
    saved
}

/// Sleep until `at`; never, without one.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Until `role` changes; never once nothing can change it (an embedded
/// store's leadership, dropped).
async fn role_changed(role: &mut watch::Receiver<Role>) {
    if role.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// What wakes a runner: the change log's head moving, a stop, a command,
/// this process's role changing.
pub(super) struct Wakers {
    pub(super) head: watch::Receiver<u64>,
    pub(super) stop: watch::Receiver<bool>,
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) role: watch::Receiver<Role>,
}

impl Runner {
    /// Run until `stop` turns true: deliver while this process leads,
    /// wait while another one does.
    pub async fn run(
        self,
        head: watch::Receiver<u64>,
        stop: watch::Receiver<bool>,
        role: watch::Receiver<Role>,
        commands: mpsc::Receiver<Command>,
    ) {
        let mut w = Wakers {
            head,
            stop,
            commands,
            role,
        };
        let d = self.connector.delivery().clone();
        while let Some(epoch) = self.follow(&mut w).await {
            tracing::info!(connector = %self.name, epoch = epoch.number, "this process leads: delivering");
            if !self.lead(&epoch, &mut w, &d).await {
                break;
            }
            if *w.stop.borrow() {
                break;
            }
            tracing::warn!(connector = %self.name, epoch = epoch.number, "no longer the leader: delivery stopped here");
        }
    }

    /// Whether this runner may still deliver under `epoch`: the process
    /// leads in it, and no save found it deposed.
    pub(super) fn leads(&self, w: &Wakers, epoch: &Epoch) -> bool {
        w.role.borrow().epoch() == Some(epoch) && self.deposed.load(Relaxed) != epoch.number
    }

    /// Wait while another process leads, answering commands with who
    /// does; the epoch this process leads in once it does, `None` on a
    /// stop.
    async fn follow(&self, w: &mut Wakers) -> Option<Epoch> {
        let mut said = false;
        loop {
            if *w.stop.borrow() {
                return None;
            }
            let role = w.role.borrow_and_update().clone();
            let leader = match role {
                Role::Leader { epoch } if self.deposed.load(Relaxed) != epoch.number => {
                    return Some(epoch)
                }
                // Deposed while the process still thinks it leads: it
                // learns otherwise when its lock connection fails.
                Role::Leader { .. } => None,
                Role::Follower { leader } => leader,
            };
            let named = leader.map_or_else(|| "another process".to_owned(), |l| l.to_string());
            if !said {
                tracing::info!(connector = %self.name, leader = %named, "a follower: the leader delivers");
                said = true;
            }
            tokio::select! {
                () = role_changed(&mut w.role) => said = false,
                _ = w.stop.changed() => {}
                Some(cmd) = w.commands.recv() => cmd.refuse(RunnerError::NotLeader(named)),
            }
        }
    }

    /// Deliver as the leader of `epoch` until a stop (false: the runner
    /// ends) or the leadership is lost (true).
    async fn lead(&self, epoch: &Epoch, w: &mut Wakers, d: &DeliveryConfig) -> bool {
        let mut backoff = Backoff::new(
            Duration::from_millis(d.backoff_initial_ms),
            Duration::from_millis(d.backoff_max_ms),
        );
        let mut attempts: HashMap<u64, u32> = HashMap::new();
        let Some((mut cursor, mut need_reconcile)) = self.load_state() else {
            return false;
        };
        tracing::info!(connector = %self.name, cursor, "connector started");
        self.healthcheck();
        // After a scheduled reconcile failed: when to try again.
        let mut retry_reconcile_at: Option<tokio::time::Instant> = None;
        loop {
            if *w.stop.borrow() {
                break;
            }
            if !self.leads(w, epoch) {
                tracing::info!(connector = %self.name, cursor, "connector stopped: another process leads");
                return true;
            }
            while let Ok(cmd) = w.commands.try_recv() {
                self.command(cmd, &mut cursor, epoch).await;
            }
            if need_reconcile {
                match self.first_reconcile(&mut cursor, w, epoch).await {
                    Ok(()) => need_reconcile = false,
                    Err(e) if e.transient() => {
                        self.pause(backoff.next_delay(), w, &mut cursor, epoch)
                            .await;
                        continue;
                    }
                    Err(_) => need_reconcile = false,
                }
            }
            let due_in = self.reconcile_due_in(d.reconcile_every_s, retry_reconcile_at);
            if due_in == Some(Duration::ZERO) {
                retry_reconcile_at = self
                    .scheduled_reconcile(&mut cursor, d.reconcile_every_s, epoch)
                    .await;
                continue;
            }
            let head_now = *w.head.borrow_and_update();
            self.stats.head.store(head_now, Relaxed);
            if cursor >= head_now {
                let next_reconcile = due_in.map(|d| tokio::time::Instant::now() + d);
                tokio::select! {
                    changed = w.head.changed() => if changed.is_err() { break },
                    _ = w.stop.changed() => {}
                    () = role_changed(&mut w.role) => {}
                    Some(cmd) = w.commands.recv() => self.obey(cmd, &mut cursor, w, epoch).await,
                    () = sleep_until_some(next_reconcile) => {}
                }
                continue;
            }
            match self.stream(&mut cursor, w, &mut attempts, d, epoch).await {
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
            if !self.leads(w, epoch) {
                continue;
            }
            // Something was not delivered: back off before the next try.
            self.pause(backoff.next_delay(), w, &mut cursor, epoch)
                .await;
        }
        tracing::info!(connector = %self.name, cursor, "connector stopped");
        false
    }

    /// The cursor, and whether the first full reconcile is still to run,
    /// from the store; `None` (logged) when the state cannot be read.
    fn load_state(&self) -> Option<(u64, bool)> {
        let state = self.rec.store().delivery(&self.name);
        match (state.cursor(), state.last_reconcile(), state.dead_letters()) {
            (Ok(c), Ok(last), Ok(dead)) => {
                self.stats.parked.store(dead.len() as u64, Relaxed);
                self.stats.cursor.store(c, Relaxed);
                self.last_reconcile.store(last.unwrap_or(NEVER), Relaxed);
                Some((c, last.is_none()))
            }
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                tracing::error!(connector = %self.name, "cannot read the delivery state: {e}");
                self.stats.set_error(e.to_string());
                None
            }
        }
    }

    /// A new connector starts with a full reconcile. A failure shows as
    /// what it is: nothing delivered yet, the whole log behind, one more
    /// failed attempt.
    async fn first_reconcile(
        &self,
        cursor: &mut u64,
        w: &Wakers,
        epoch: &Epoch,
    ) -> Result<(), RunnerError> {
        match self.reconcile(false, cursor, true, epoch).await {
            Ok(r) => {
                tracing::info!(connector = %self.name, creates = r.creates, updates = r.updates, deletions = r.deletions, "first full reconcile done");
                Ok(())
            }
            Err(e) => {
                tracing::error!(connector = %self.name, "first full reconcile: {e}");
                self.stats.head.store(*w.head.borrow(), Relaxed);
                self.stats.failed.fetch_add(1, Relaxed);
                self.stats.set_error(e.to_string());
                Err(e)
            }
        }
    }

    /// The reconcile `delivery.reconcile_every_s` asks for; when it failed,
    /// when to try again: not before a while, as a refusal (threshold)
    /// stands until someone looks, a peer down until delivery's retries
    /// find it back.
    async fn scheduled_reconcile(
        &self,
        cursor: &mut u64,
        every_s: u64,
        epoch: &Epoch,
    ) -> Option<tokio::time::Instant> {
        match self.reconcile(false, cursor, false, epoch).await {
            Ok(r) => {
                tracing::info!(connector = %self.name, creates = r.creates, updates = r.updates, deletions = r.deletions, errors = r.errors.len(), "scheduled reconcile done");
                None
            }
            Err(e) => {
                let wait = Duration::from_secs(every_s.min(600));
                tracing::error!(connector = %self.name, "scheduled reconcile: {e} (next try in {} s)", wait.as_secs());
                self.stats.set_error(e.to_string());
                Some(tokio::time::Instant::now() + wait)
            }
        }
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

    pub(super) fn fail(&self, e: &str) {
        tracing::warn!(connector = %self.name, "{e}");
        self.stats.set_error(e);
    }

    /// Wait `delay`, answering commands meanwhile; a stop ends it early.
    /// The head is followed meanwhile, so the lag `idsync status` and
    /// `/metrics` show grows while a peer is down instead of waiting for
    /// the next try.
    /// A change of role ends it too.
    async fn pause(&self, delay: Duration, w: &mut Wakers, cursor: &mut u64, epoch: &Epoch) {
        let until = tokio::time::Instant::now() + delay;
        let mut head_open = true;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => return,
                _ = w.stop.changed() => return,
                () = role_changed(&mut w.role) => return,
                changed = w.head.changed(), if head_open => match changed {
                    Ok(()) => self.stats.head.store(*w.head.borrow_and_update(), Relaxed),
                    Err(_) => head_open = false,
                },
                Some(cmd) = w.commands.recv() => self.obey(cmd, cursor, w, epoch).await,
            }
        }
    }

    /// Run `cmd` if this runner still leads in `epoch` (the role may have
    /// changed while it waited), else answer that another process leads.
    async fn obey(&self, cmd: Command, cursor: &mut u64, w: &Wakers, epoch: &Epoch) {
        if self.leads(w, epoch) {
            self.command(cmd, cursor, epoch).await;
        } else {
            cmd.refuse(RunnerError::NotLeader("another process".into()));
        }
    }
}
