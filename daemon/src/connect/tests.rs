//! The runner against an in-memory fake connector: at-least-once delivery,
//! cursor durability, backoff on transient failures, parking after
//! `max_attempts`, and the dead-letter replay.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use idsync_connectors::{
    Applied, BoxFuture, Connector, ConnectorError, Delivery, DeliveryConfig, Event, Outcome, Plan,
    View,
};
use idsync_schema::{Kind, Source};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::*;
use crate::reconcile::Settings;
use crate::store::{keys, Actor, Batch, ChangeEvent, EngineKind, EngineOptions, Operation, Store};

struct Fake {
    delivery: DeliveryConfig,
    /// Every sequence number handed to `deliver`, in order.
    seen: Mutex<Vec<u64>>,
    /// The first this-many `deliver` calls find the peer down.
    down_for: AtomicU32,
    /// Objects the peer refuses (until `refuse` is emptied).
    refuse: Mutex<HashSet<Uuid>>,
}

impl Connector for Fake {
    fn name(&self) -> &str {
        "fake"
    }
    fn delivery(&self) -> &DeliveryConfig {
        &self.delivery
    }
    fn healthcheck(&self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(async { Ok(()) })
    }
    fn deliver<'a>(&'a self, batch: &'a [Event], _view: &'a dyn View) -> BoxFuture<'a, Delivery> {
        Box::pin(async move {
            if self
                .down_for
                .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                return Delivery {
                    outcomes: vec![Outcome::Retry("peer down".into()); batch.len()],
                    learned: Vec::new(),
                };
            }
            let refuse = self.refuse.lock().unwrap().clone();
            let mut seen = self.seen.lock().unwrap();
            let outcomes = batch
                .iter()
                .map(|e| {
                    seen.push(e.seq);
                    if refuse.contains(&e.id) {
                        Outcome::Failed("refused".into())
                    } else {
                        Outcome::Delivered
                    }
                })
                .collect();
            Delivery {
                outcomes,
                learned: Vec::new(),
            }
        })
    }
    fn plan<'a>(&'a self, _view: &'a dyn View) -> BoxFuture<'a, Result<Plan, ConnectorError>> {
        Box::pin(async { Ok(Plan::default()) })
    }
    fn apply<'a>(&'a self, _plan: &'a Plan) -> BoxFuture<'a, Result<Applied, ConnectorError>> {
        Box::pin(async { Ok(Applied::default()) })
    }
}

fn fake(down_for: u32, refuse: &[Uuid]) -> Arc<Fake> {
    Arc::new(Fake {
        delivery: DeliveryConfig {
            batch_size: 7,
            max_attempts: 3,
            backoff_initial_ms: 5,
            backoff_max_ms: 20,
        },
        seen: Mutex::new(Vec::new()),
        down_for: AtomicU32::new(down_for),
        refuse: Mutex::new(refuse.iter().copied().collect()),
    })
}

/// Append `ids.len()` events to the change log, as the reconciler would.
fn append(store: &Store, ids: &[Uuid]) {
    let mut head = store.head().unwrap();
    let mut batch = Batch::new();
    for id in ids {
        head += 1;
        let e = ChangeEvent {
            seq: head,
            at: time::OffsetDateTime::now_utc(),
            kind: Kind::User,
            id: *id,
            operation: Operation::Created,
            version: 1,
            source: Source::Csv,
            actor: Actor::default(),
            changed: Vec::new(),
            object: Some(RawValue::from_string("{}".into()).unwrap()),
        };
        batch.put(keys::change(head), serde_json::to_vec(&e).unwrap());
    }
    batch.put(keys::HEAD.to_vec(), head.to_be_bytes().to_vec());
    store.engine().write(batch).unwrap();
}

fn open(dir: &std::path::Path) -> Arc<Reconciler> {
    let store = Store::open(EngineKind::Redb, dir, &EngineOptions::default()).unwrap();
    Arc::new(Reconciler::new(Arc::new(store), Settings::default()).unwrap())
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_everything_through_outages_and_parks_what_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rec = open(dir.path());
    let bad = Uuid::now_v7();
    let f = fake(3, &[bad]);
    let running = start(vec![f.clone() as Arc<dyn Connector>], &rec);
    let stats = running.connectors.stats()[0].clone();

    // A new connector first reconciles, which moves its cursor to the head:
    // append only after that, or the changes are covered by the reconcile
    // and never delivered one by one.
    until("the first reconcile", || {
        state::reconciled(rec.store(), "fake").unwrap()
    })
    .await;
    let mut ids: Vec<Uuid> = (0..40).map(|_| Uuid::now_v7()).collect();
    ids[17] = bad;
    append(rec.store(), &ids[..20]);
    append(rec.store(), &ids[20..]);
    until("the cursor reaches the head", || {
        stats.cursor.load(Relaxed) == 40
    })
    .await;

    let seen = f.seen.lock().unwrap().clone();
    let distinct: HashSet<u64> = seen.iter().copied().collect();
    assert_eq!(distinct.len(), 40, "every change reached the peer");
    assert_eq!(stats.parked.load(Relaxed), 1);
    let dead = state::dead_letters(rec.store(), "fake").unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].seq, dead[0].attempts), (18, 3));
    assert!(stats.failed.load(Relaxed) >= 3 + 2);
    assert_eq!(state::cursor(rec.store(), "fake").unwrap(), 40);

    // The peer accepts it now: a retry empties the list.
    f.refuse.lock().unwrap().clear();
    let r = running.connectors.retry("fake").await.unwrap().unwrap();
    assert_eq!(r, "1 replayed, 0 still parked");
    assert!(state::dead_letters(rec.store(), "fake").unwrap().is_empty());
    assert_eq!(stats.parked.load(Relaxed), 0);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cursor_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<Uuid> = (0..10).map(|_| Uuid::now_v7()).collect();
    {
        let rec = open(dir.path());
        let f = fake(0, &[]);
        let running = start(vec![f.clone() as Arc<dyn Connector>], &rec);
        append(rec.store(), &ids);
        let stats = running.connectors.stats()[0].clone();
        until("delivered", || stats.cursor.load(Relaxed) == 10).await;
        running.stop().await;
    }
    let rec = open(dir.path());
    append(rec.store(), &ids[..3]);
    let f = fake(0, &[]);
    let running = start(vec![f.clone() as Arc<dyn Connector>], &rec);
    let stats = running.connectors.stats()[0].clone();
    until("delivered", || stats.cursor.load(Relaxed) == 13).await;
    assert_eq!(
        *f.seen.lock().unwrap(),
        vec![11, 12, 13],
        "only the new changes"
    );
    running.stop().await;
}
