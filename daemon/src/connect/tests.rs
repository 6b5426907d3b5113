//! The runner against an in-memory fake connector: at-least-once delivery,
//! cursor durability, backoff on transient failures, parking after
//! `max_attempts`, the dead-letter replay, and delivering only while this
//! process leads.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use idsync_connectors::{
    Applied, BoxFuture, Connector, ConnectorError, Delivery, DeliveryConfig, Event, Outcome, Plan,
    Remote, View,
};
use idsync_schema::{Field, Source, Status, UserInput};
use uuid::Uuid;

use super::*;
use idsync_store::leadership::Role;
use idsync_store::reconcile::{Settings, UserWrite};
use idsync_store::{Actor, EngineKind, EngineOptions, Store};

struct Fake {
    delivery: DeliveryConfig,
    /// Every sequence number handed to `deliver`, in order.
    seen: Mutex<Vec<u64>>,
    /// The first this-many `deliver` calls find the peer down.
    down_for: AtomicU32,
    /// Objects the peer refuses (until `refuse` is emptied).
    refuse: Mutex<HashSet<Uuid>>,
    /// Per sequence number handed to `deliver`: whether the remote id of
    /// its object was known then (the fake learns one per delivery).
    known: Mutex<Vec<(u64, bool)>>,
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
    fn deliver<'a>(&'a self, batch: &'a [Event], view: &'a dyn View) -> BoxFuture<'a, Delivery> {
        Box::pin(async move {
            if self
                .down_for
                .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                return Delivery {
                    outcomes: vec![Outcome::Retry("peer down".into()); batch.len()],
                    ..Delivery::default()
                };
            }
            let refuse = self.refuse.lock().unwrap().clone();
            let mut seen = self.seen.lock().unwrap();
            let mut known = self.known.lock().unwrap();
            let mut learned = Vec::new();
            let outcomes = batch
                .iter()
                .map(|e| {
                    seen.push(e.seq);
                    known.push((e.seq, view.remote(e.id).unwrap().is_some()));
                    if refuse.contains(&test_id(e)) {
                        Outcome::Failed("refused".into())
                    } else {
                        learned.push((
                            e.id,
                            Some(Remote {
                                kind: e.kind,
                                dn: format!("id={}", e.id),
                                entry_uuid: e.id.to_string(),
                                disabled_at: None,
                            }),
                        ));
                        Outcome::Delivered
                    }
                })
                .collect();
            Delivery {
                outcomes,
                learned,
                ..Delivery::default()
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

/// The id the test gave the object of `e` ([`append`] keeps it as the
/// user's externalId; the reconciler gives the object an id of its own).
fn test_id(e: &Event) -> Uuid {
    e.object["externalId"]
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
        .unwrap_or(e.id)
}

fn fake(down_for: u32, refuse: &[Uuid]) -> Arc<Fake> {
    Arc::new(Fake {
        delivery: DeliveryConfig {
            batch_size: 7,
            max_attempts: 3,
            backoff_initial_ms: 5,
            backoff_max_ms: 20,
            reconcile_every_s: 0,
        },
        seen: Mutex::new(Vec::new()),
        down_for: AtomicU32::new(down_for),
        refuse: Mutex::new(refuse.iter().copied().collect()),
        known: Mutex::new(Vec::new()),
    })
}

/// Append `ids.len()` events to the change log through the reconciler: a
/// user per test id (kept as its externalId), created at its first
/// appearance and changed at each later one.
fn append(rec: &Reconciler, ids: &[Uuid]) {
    let mut tx = rec.begin(Source::Csv, Actor::default());
    let version = tx.pending_events() + rec.store().head().unwrap();
    for (n, id) in ids.iter().enumerate() {
        let mut input = UserInput::new(
            Status::Active,
            format!("{id}@t.org"),
            format!("v{version}-{n}"),
        );
        input.external_id = Field::Set(id.to_string());
        tx.upsert_user(input, &UserWrite::default()).unwrap();
    }
    tx.commit().unwrap();
}

fn open(dir: &std::path::Path) -> Arc<Reconciler> {
    let store = Store::open(EngineKind::Redb, dir, &EngineOptions::default()).unwrap();
    Arc::new(Reconciler::new(Arc::new(store), Settings::default()).unwrap())
}

/// The role of the store's one process: it leads (an embedded store).
fn leading(rec: &Reconciler) -> watch::Receiver<Role> {
    rec.store()
        .lead("test", Duration::from_secs(5))
        .unwrap()
        .subscribe()
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
    let running = start(vec![f.clone() as Arc<dyn Connector>], &rec, &leading(&rec));
    let stats = running.connectors.stats()[0].clone();

    // A new connector first reconciles, which moves its cursor to the head:
    // append only after that, or the changes are covered by the reconcile
    // and never delivered one by one.
    until("the first reconcile", || {
        rec.store()
            .delivery("fake")
            .last_reconcile()
            .unwrap()
            .is_some()
    })
    .await;
    let mut ids: Vec<Uuid> = (0..40).map(|_| Uuid::now_v7()).collect();
    ids[17] = bad;
    append(&rec, &ids[..20]);
    append(&rec, &ids[20..]);
    until("the cursor reaches the head", || {
        stats.cursor.load(Relaxed) == 40
    })
    .await;

    let seen = f.seen.lock().unwrap().clone();
    let distinct: HashSet<u64> = seen.iter().copied().collect();
    assert_eq!(distinct.len(), 40, "every change reached the peer");
    assert_eq!(stats.parked.load(Relaxed), 1);
    let dead = rec.store().delivery("fake").dead_letters().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].seq, dead[0].attempts), (18, 3));
    assert!(stats.failed.load(Relaxed) >= 3 + 2);
    assert_eq!(rec.store().delivery("fake").cursor().unwrap(), 40);

    // The peer accepts it now: a retry empties the list.
    f.refuse.lock().unwrap().clear();
    let r = running.connectors.retry("fake").await.unwrap().unwrap();
    assert_eq!(r, "1 replayed, 0 still parked");
    assert!(rec
        .store()
        .delivery("fake")
        .dead_letters()
        .unwrap()
        .is_empty());
    assert_eq!(stats.parked.load(Relaxed), 0);
    running.stop().await;
}

/// While the runner backs off from a peer that is down, the head (and so
/// the lag) it reports follows the change log, not its next try.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lag_grows_while_the_peer_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let rec = open(dir.path());
    let mut f = fake(u32::MAX, &[]);
    // A first back-off of 30–60 s: far longer than this test waits.
    Arc::get_mut(&mut f).unwrap().delivery.backoff_initial_ms = 60_000;
    Arc::get_mut(&mut f).unwrap().delivery.backoff_max_ms = 60_000;
    let running = start(vec![f.clone() as Arc<dyn Connector>], &rec, &leading(&rec));
    let stats = running.connectors.stats()[0].clone();
    until("the first reconcile", || {
        rec.store()
            .delivery("fake")
            .last_reconcile()
            .unwrap()
            .is_some()
    })
    .await;
    append(&rec, &[Uuid::now_v7()]);
    until("a failed delivery", || stats.failed.load(Relaxed) >= 1).await;
    let ids: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
    append(&rec, &ids);
    until("the head followed", || stats.head.load(Relaxed) == 6).await;
    assert_eq!(stats.cursor.load(Relaxed), 0, "nothing delivered");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cursor_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<Uuid> = (0..10).map(|_| Uuid::now_v7()).collect();
    {
        let rec = open(dir.path());
        let f = fake(0, &[]);
        let running = start(vec![f.clone() as Arc<dyn Connector>], &rec, &leading(&rec));
        append(&rec, &ids);
        let stats = running.connectors.stats()[0].clone();
        until("delivered", || stats.cursor.load(Relaxed) == 10).await;
        running.stop().await;
    }
    let rec = open(dir.path());
    append(&rec, &ids[..3]);
    let f = fake(0, &[]);
    let running = start(vec![f.clone() as Arc<dyn Connector>], &rec, &leading(&rec));
    let stats = running.connectors.stats()[0].clone();
    until("delivered", || stats.cursor.load(Relaxed) == 13).await;
    assert_eq!(
        *f.seen.lock().unwrap(),
        vec![11, 12, 13],
        "only the new changes"
    );
    running.stop().await;
}

/// Pipelining: while batch 2 (seq 8–14) is delivered, batch 3 (15–21) is
/// read ahead. Batch 2 fails on seq 10, so batch 3 must be dropped and the
/// cursor must stay at 9: until seq 10 goes through, every try is the
/// batch from the cursor (10–16), never the one read ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_drops_the_batch_read_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let rec = open(dir.path());
    let ids: Vec<Uuid> = (0..21).map(|_| Uuid::now_v7()).collect();
    let f = Arc::new(Fake {
        delivery: DeliveryConfig {
            batch_size: 7,
            // Never parked while this test looks.
            max_attempts: 1000,
            backoff_initial_ms: 1,
            backoff_max_ms: 2,
            reconcile_every_s: 0,
        },
        seen: Mutex::new(Vec::new()),
        down_for: AtomicU32::new(0),
        refuse: Mutex::new([ids[9]].into_iter().collect()),
        known: Mutex::new(Vec::new()),
    });
    let running = start(vec![f.clone() as Arc<dyn Connector>], &rec, &leading(&rec));
    let stats = running.connectors.stats()[0].clone();
    until("the first reconcile", || {
        rec.store()
            .delivery("fake")
            .last_reconcile()
            .unwrap()
            .is_some()
    })
    .await;
    append(&rec, &ids);
    until("batch 2 failed a few times", || {
        stats.failed.load(Relaxed) >= 5
    })
    .await;
    {
        let seen = f.seen.lock().unwrap();
        assert!(
            seen.iter().all(|s| *s <= 16),
            "the batch read ahead was delivered: {seen:?}"
        );
        assert!(seen.iter().filter(|s| **s == 10).count() >= 5);
    }
    assert_eq!(rec.store().delivery("fake").cursor().unwrap(), 9);
    assert_eq!(stats.cursor.load(Relaxed), 9);

    // The peer takes it now: everything goes through, in order.
    f.refuse.lock().unwrap().clear();
    until("the cursor reaches the head", || {
        stats.cursor.load(Relaxed) == 21
    })
    .await;
    assert_eq!(rec.store().delivery("fake").cursor().unwrap(), 21);
    let seen = f.seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter().copied().collect::<HashSet<u64>>().len(),
        21,
        "every change reached the peer"
    );
    assert!(rec
        .store()
        .delivery("fake")
        .dead_letters()
        .unwrap()
        .is_empty());
    running.stop().await;
}

/// The remote ids learned by batch N are in the store only once its save
/// is written, which runs while batch N+1 is delivered: batch N+1 must see
/// them all the same (an entry added by N and deleted by N+1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_batch_sees_the_remote_ids_the_last_one_learned() {
    let dir = tempfile::tempdir().unwrap();
    let rec = open(dir.path());
    let f = fake(0, &[]);
    let running = start(vec![f.clone() as Arc<dyn Connector>], &rec, &leading(&rec));
    let stats = running.connectors.stats()[0].clone();
    until("the first reconcile", || {
        rec.store()
            .delivery("fake")
            .last_reconcile()
            .unwrap()
            .is_some()
    })
    .await;
    // The same 7 objects, three times over: one batch each.
    let ids: Vec<Uuid> = (0..7).map(|_| Uuid::now_v7()).collect();
    let mut all = ids.clone();
    all.extend(&ids);
    all.extend(&ids);
    append(&rec, &all);
    until("the cursor reaches the head", || {
        stats.cursor.load(Relaxed) == 21
    })
    .await;
    let known = f.known.lock().unwrap().clone();
    assert_eq!(known.len(), 21);
    for (seq, known) in known {
        assert_eq!(known, seq > 7, "seq {seq}: remote id known");
    }
    running.stop().await;
}

/// The runner delivers only while this process leads: nothing as a
/// follower (a command is answered with who leads), everything once it
/// leads, nothing more once it follows again. A save under an epoch that
/// a later election replaced is refused, and the runner delivers nothing
/// more under it (one batch at most reaches the peer, and is delivered
/// again by the new leader).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_only_while_leading_and_stops_when_deposed() {
    let dir = tempfile::tempdir().unwrap();
    let rec = open(dir.path());
    let take = |who: &str| {
        rec.store()
            .lead(who, Duration::from_secs(5))
            .unwrap()
            .role()
            .epoch()
            .cloned()
            .unwrap()
    };
    let first = take("a");
    let (role, role_rx) = watch::channel(Role::Follower { leader: None });
    let f = fake(0, &[]);
    let running = start(vec![f.clone() as Arc<dyn Connector>], &rec, &role_rx);
    let stats = running.connectors.stats()[0].clone();
    let ids: Vec<Uuid> = (0..20).map(|_| Uuid::now_v7()).collect();
    append(&rec, &ids[..5]);
    let refused = running.connectors.retry("fake").await.unwrap().unwrap_err();
    assert!(matches!(refused, RunnerError::NotLeader(_)), "{refused}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let last_reconcile = || rec.store().delivery("fake").last_reconcile().unwrap();
    assert_eq!(last_reconcile(), None, "a follower reconciled");
    assert!(f.seen.lock().unwrap().is_empty(), "a follower delivered");

    role.send_replace(Role::Leader {
        epoch: first.clone(),
    });
    until("the first reconcile", || last_reconcile().is_some()).await;
    append(&rec, &ids[5..10]);
    until("delivered", || stats.cursor.load(Relaxed) == 10).await;
    assert_eq!(*f.seen.lock().unwrap(), (6..=10).collect::<Vec<u64>>());

    let other = first.clone();
    role.send_replace(Role::Follower {
        leader: Some(other),
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    append(&rec, &ids[10..15]);
    let refused = running.connectors.retry("fake").await.unwrap().unwrap_err();
    assert!(refused.to_string().contains("epoch 1"), "{refused}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(f.seen.lock().unwrap().len(), 5, "a follower delivered");
    assert_eq!(rec.store().delivery("fake").cursor().unwrap(), 10);

    // Another election meanwhile: this process still believes it leads
    // in the first epoch. Its save is refused; it stops there.
    let second = take("b");
    role.send_replace(Role::Leader {
        epoch: first.clone(),
    });
    until("the save refused", || {
        stats.last_error().contains("epoch 1 no longer leads")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = f.seen.lock().unwrap().clone();
    assert_eq!(
        seen[5..],
        (11..=15).collect::<Vec<u64>>(),
        "one batch, once"
    );
    assert_eq!(rec.store().delivery("fake").cursor().unwrap(), 10);

    // Leading in the new epoch: from the stored cursor on.
    role.send_replace(Role::Leader { epoch: second });
    append(&rec, &ids[15..]);
    until("delivered", || stats.cursor.load(Relaxed) == 20).await;
    assert_eq!(rec.store().delivery("fake").cursor().unwrap(), 20);
    let seen = f.seen.lock().unwrap().clone();
    assert_eq!(seen[10..], (11..=20).collect::<Vec<u64>>());
    running.stop().await;
}
