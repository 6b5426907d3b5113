//! Group commit for writes that come one request at a time (SCIM, the
//! enrollment API).
//!
//! One thread owns the write side: it takes every request waiting in its
//! queue, applies them in one reconciler transaction (each behind a
//! savepoint, so a refused request leaves no trace and does not spoil the
//! others), commits once — one fsync for the lot — and only then answers
//! each request. Concurrent writers thus share commits instead of paying an
//! fsync each, and a success is never sent for a change that is not durable.
//!
//! A dedicated thread, not a task: `Reconciler::begin` blocks while a CSV
//! import holds the writer lock, and must not stall the async runtime.
//!
//! A batch the engine refuses because another writer moved the change
//! log's head first ([`EngineError::Conflict`]: another reconciler on the
//! same store, another replica on the same database) wrote nothing, so
//! its requests are applied again on a fresh transaction, which reads
//! what the other writer committed (a uniqueness check may now refuse).
//! That is why a job is `FnMut`: it may run more than once, and only its
//! last run counts. Any other failure of a commit is not retried: it may
//! have landed, and applying a create twice would make two objects.

use std::any::Any;
use std::sync::Arc;
use std::thread::JoinHandle;

use idsync_schema::Source;
use tokio::sync::{mpsc, oneshot};

use crate::reconcile::{Reconciler, Tx};
use crate::{Actor, EngineError, StoreError};

/// Why a job got no answer of its own: the error type of a job says how
/// each reads to its client.
#[derive(Debug, Clone)]
pub enum WriteFailed {
    /// The daemon is stopping.
    Stopping,
    /// The job panicked, or the shared commit failed.
    Internal(String),
}

type Boxed = Box<dyn Any + Send>;
/// A job's own error is boxed too: the thread only needs to know it failed.
enum Failure {
    Job(Boxed),
    Writer(WriteFailed),
}
type Output = Result<Boxed, Failure>;
type Job = Box<dyn FnMut(&mut Tx<'_>) -> Result<Boxed, Boxed> + Send>;

/// Times a batch is applied again after losing the head to another
/// writer, before its requests are refused.
const CONFLICT_RETRIES: usize = 8;

struct Request {
    source: Source,
    actor: Actor,
    job: Job,
    reply: oneshot::Sender<Output>,
}

/// The handle requests are sent through. Dropping every clone stops the
/// thread once the queue is empty.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Request>,
}

impl Writer {
    /// Start the writer thread (`name` shows in `top -H`). At most
    /// `max_batch` requests share a commit; `on_commit` hears the change
    /// log's head after each commit that added events (for the metrics).
    pub fn start(
        name: &str,
        rec: Arc<Reconciler>,
        on_commit: impl Fn(u64) + Send + 'static,
        max_batch: usize,
    ) -> std::io::Result<(Self, JoinHandle<()>)> {
        let (queue, rx) = mpsc::channel(max_batch.max(1) * 4);
        let handle = std::thread::Builder::new()
            .name(format!("idsync-{name}-writer"))
            .spawn(move || run(rec, on_commit, rx, max_batch.max(1)))?;
        Ok((Self { queue }, handle))
    }

    /// Apply `job` in the next shared transaction as `actor` from
    /// `source`; returns once its commit is durable (or the job or the
    /// commit failed). The job may run more than once (see the module
    /// docs); what it returns from its last run is the answer.
    pub async fn run<T, E, F>(&self, source: Source, actor: Actor, mut job: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<WriteFailed> + Send + 'static,
        F: FnMut(&mut Tx<'_>) -> Result<T, E> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |tx| {
            job(tx)
                .map(|t| Box::new(t) as Boxed)
                .map_err(|e| Box::new(e) as Boxed)
        });
        let stopped = || E::from(WriteFailed::Stopping);
        self.queue
            .send(Request {
                source,
                actor,
                job,
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        match answer.await.map_err(|_| stopped())? {
            Ok(out) => Ok(*out.downcast::<T>().expect("the job's own type")),
            Err(Failure::Job(e)) => Err(*e.downcast::<E>().expect("the job's own error type")),
            Err(Failure::Writer(w)) => Err(E::from(w)),
        }
    }
}

fn run(
    rec: Arc<Reconciler>,
    on_commit: impl Fn(u64),
    mut rx: mpsc::Receiver<Request>,
    max_batch: usize,
) {
    let mut batch = Vec::with_capacity(max_batch);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        let mut queue = Queue {
            rx: &mut rx,
            max_batch,
        };
        queue.top_up(&mut batch);
        commit_batch(&rec, &on_commit, &mut batch, &mut queue);
    }
}

/// The writer's side of the queue, and how many requests a commit takes.
struct Queue<'a> {
    rx: &'a mut mpsc::Receiver<Request>,
    max_batch: usize,
}

impl Queue<'_> {
    /// Add what waits in the queue to `batch`, up to the batch's size.
    fn top_up(&mut self, batch: &mut Vec<Request>) {
        while batch.len() < self.max_batch {
            match self.rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
    }
}

/// Apply every request of `batch` in one transaction and commit it (again
/// after a lost race for the head), then answer each.
fn commit_batch(
    rec: &Reconciler,
    on_commit: &impl Fn(u64),
    batch: &mut Vec<Request>,
    queue: &mut Queue<'_>,
) {
    let mut retries = 0;
    let (outputs, committed) = loop {
        let mut tx = rec.begin(batch[0].source, Actor::default());
        // `begin` may have waited (for an import's batch, or for another
        // replica's turn to write): what came meanwhile joins this commit
        // instead of waiting for the next one. With two replicas, half
        // the requests came while the other held the turn.
        queue.top_up(batch);
        let outputs: Vec<Output> = batch.iter_mut().map(|req| apply(&mut tx, req)).collect();
        let started = std::time::Instant::now();
        match tx.commit() {
            Err(StoreError::Engine(e @ EngineError::Conflict { .. }))
                if retries < CONFLICT_RETRIES =>
            {
                retries += 1;
                tracing::debug!(error = %e, retries, "another writer moved the head; applying the batch again");
            }
            result => {
                if let Ok(c) = &result {
                    tracing::debug!(
                        requests = outputs.len(),
                        events = c.events,
                        retries,
                        micros = started.elapsed().as_micros() as u64,
                        "group commit"
                    );
                }
                break (outputs, result);
            }
        }
    };
    match committed {
        Ok(c) => {
            if c.events > 0 {
                on_commit(c.head);
            }
            for (req, out) in batch.drain(..).zip(outputs) {
                let _ = req.reply.send(out);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "a group commit failed; its requests are refused");
            for req in batch.drain(..) {
                let failed = WriteFailed::Internal(e.to_string());
                let _ = req.reply.send(Err(Failure::Writer(failed)));
            }
        }
    }
}

/// Run one request's job behind a savepoint: refused, it leaves no trace.
fn apply(tx: &mut Tx<'_>, req: &mut Request) -> Output {
    tx.set_source(req.source);
    tx.set_actor(req.actor.clone());
    let sp = tx.savepoint();
    let job = &mut req.job;
    let out = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(tx))) {
        Ok(out) => out.map_err(Failure::Job),
        Err(_) => {
            tracing::error!("a write panicked; it is refused");
            Err(Failure::Writer(WriteFailed::Internal(
                "internal error".into(),
            )))
        }
    };
    if out.is_err() {
        tx.rollback_to(sp);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::{Settings, UserWrite, WriteError};
    use crate::{EngineKind, EngineOptions, Store};
    use idsync_schema::{Kind, Status, User, UserInput};

    fn user(mail: &str) -> UserInput {
        UserInput::new(Status::Active, mail, "L")
    }

    /// A job's error as a source would type it: its own refusal, or the
    /// writer's.
    #[derive(Debug)]
    enum JobError {
        Write(WriteError),
        Writer(#[allow(dead_code)] WriteFailed), // read through Debug
    }
    impl From<WriteError> for JobError {
        fn from(e: WriteError) -> Self {
            Self::Write(e)
        }
    }
    impl From<WriteFailed> for JobError {
        fn from(e: WriteFailed) -> Self {
            Self::Writer(e)
        }
    }

    fn reconciler(dir: &std::path::Path) -> Arc<Reconciler> {
        let store =
            Arc::new(Store::open(EngineKind::Redb, dir, &EngineOptions::default()).unwrap());
        Arc::new(Reconciler::new(store, Settings::default()).unwrap())
    }

    /// A refused request in a shared batch leaves no trace, the others
    /// land, and the change log stays gap-free.
    #[test]
    fn a_rolled_back_request_leaves_the_batch_intact() {
        let dir = tempfile::tempdir().unwrap();
        let rec = reconciler(dir.path());
        let how = UserWrite::default();
        let mut tx = rec.begin(Source::Scim, Actor::default());
        let a = tx.create_user(user("a@x.org"), &how).unwrap().id();
        let sp = tx.savepoint();
        let b = tx.create_user(user("b@x.org"), &how).unwrap().id();
        let existing = tx.user(a).unwrap().unwrap();
        let mut renamed = user("b@x.org");
        renamed.last_name = idsync_schema::Field::Set("Clash".into());
        assert!(
            tx.update_user(existing, renamed, &how).is_err(),
            "b's mail is taken"
        );
        tx.rollback_to(sp);
        let sp = tx.savepoint();
        let c = tx.create_user(user("c@x.org"), &how).unwrap().id();
        assert!(tx.delete_user(a).unwrap());
        tx.rollback_to(sp);
        let d = tx.create_user(user("b@x.org"), &how).unwrap().id();
        tx.commit().unwrap();

        let store = rec.store();
        let found = |id| store.object::<User>(Kind::User, id).unwrap().is_some();
        assert!(found(a) && found(d));
        assert!(!found(b) && !found(c));
        let events = store.changes(0, 100).unwrap();
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2]);
        assert_eq!((events[0].id, events[1].id), (a, d));
        assert_eq!(store.head().unwrap(), 2);
    }

    /// Requests sent together share one commit and each gets its answer.
    #[test]
    fn concurrent_requests_share_commits() {
        let dir = tempfile::tempdir().unwrap();
        let rec = reconciler(dir.path());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (writer, thread) = Writer::start("test", Arc::clone(&rec), |_| {}, 64).unwrap();
        rt.block_on(async {
            let mut tasks = Vec::new();
            for i in 0..200 {
                let w = writer.clone();
                tasks.push(tokio::spawn(async move {
                    w.run(Source::Scim, Actor::default(), move |tx| {
                        Ok::<_, JobError>(
                            tx.create_user(user(&format!("u{i}@x.org")), &UserWrite::default())?
                                .id(),
                        )
                    })
                    .await
                }));
            }
            // A refused one in the middle does not disturb the others.
            let refused = writer
                .run(Source::Scim, Actor::default(), |tx| {
                    tx.create_user(user("u0@x.org"), &UserWrite::default())?;
                    tx.create_user(user("u0@x.org"), &UserWrite::default())?;
                    Ok::<_, JobError>(())
                })
                .await;
            assert!(
                matches!(
                    refused,
                    Err(JobError::Write(WriteError::Rejected(ref v))) if v.rule == idsync_schema::Rule::NotUnique
                ),
                "{refused:?}"
            );
            for t in tasks {
                let id = t.await.unwrap().unwrap();
                assert!(
                    rec.store()
                        .object::<User>(Kind::User, id)
                        .unwrap()
                        .is_some(),
                    "answered after its commit"
                );
            }
        });
        drop(writer);
        thread.join().unwrap();
        assert_eq!(rec.store().head().unwrap(), 200);
    }

    /// Two group-commit writers on one store, each with its reconciler (as
    /// two replicas on one database): they take turns at the store's
    /// writer lock, so every request lands once (before the lock was the
    /// store's, one of them could lose the head nine times running and
    /// refuse its batch), the log stays gap-free, and a uniqueness race
    /// between them ends in a refusal, not a duplicate.
    #[test]
    fn two_writers_on_one_store_take_turns() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(Store::open(EngineKind::Redb, dir.path(), &EngineOptions::default()).unwrap());
        let rec = |_| Arc::new(Reconciler::new(Arc::clone(&store), Settings::default()).unwrap());
        let (recs, mut threads) = (vec![rec(0), rec(1)], Vec::new());
        let writers: Vec<Writer> = recs
            .iter()
            .map(|r| {
                let (w, t) = Writer::start("test", Arc::clone(r), |_| {}, 16).unwrap();
                threads.push(t);
                w
            })
            .collect();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let create = |w: &Writer, mail: String| {
            let w = w.clone();
            tokio::spawn(async move {
                w.run(Source::Scim, Actor::default(), move |tx| {
                    let made = tx.create_user(user(&mail), &UserWrite::default())?;
                    Ok::<_, JobError>(made.id())
                })
                .await
            })
        };
        let (ids, contested) = rt.block_on(async {
            let mut tasks = Vec::new();
            for i in 0..300 {
                tasks.push(create(&writers[i % 2], format!("u{i}@x.org")));
            }
            // The same mail on both writers at once, ten times over.
            let mut races = Vec::new();
            for i in 0..10 {
                let mail = format!("both{i}@x.org");
                races.push((create(&writers[0], mail.clone()), create(&writers[1], mail)));
            }
            let mut ids = Vec::new();
            for t in tasks {
                ids.push(t.await.unwrap().expect("every request lands"));
            }
            let mut contested = Vec::new();
            for (a, b) in races {
                contested.push((a.await.unwrap(), b.await.unwrap()));
            }
            (ids, contested)
        });
        for (a, b) in &contested {
            assert_eq!(
                [a, b].iter().filter(|r| r.is_ok()).count(),
                1,
                "one of two creates of one mail: {a:?} {b:?}"
            );
            let lost = if a.is_err() { a } else { b };
            assert!(
                matches!(lost, Err(JobError::Write(WriteError::Rejected(v))) if v.rule == idsync_schema::Rule::NotUnique),
                "{lost:?}"
            );
        }
        drop(writers);
        for t in threads {
            t.join().unwrap();
        }
        let events = store.changes(0, 1000).unwrap();
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=310).collect::<Vec<u64>>(), "gap-free, each once");
        let mut created: Vec<uuid::Uuid> = events.iter().map(|e| e.id).collect();
        created.sort();
        created.dedup();
        assert_eq!(created.len(), 310, "one event per user");
        for id in ids {
            assert!(store.object::<User>(Kind::User, id).unwrap().is_some());
        }
    }

    /// Two reconcilers on one throwaway PostgreSQL database, as two
    /// replicas have (with the cluster and the data dir they live on).
    fn two_replicas_on_postgres() -> (
        crate::test_postgres::TestPostgres,
        tempfile::TempDir,
        [Reconciler; 2],
    ) {
        let cluster = crate::test_postgres::TestPostgres::start();
        let dir = tempfile::tempdir().unwrap();
        let opts = cluster.engine_options(EngineOptions::default());
        let open = || {
            let store = Arc::new(Store::open(EngineKind::Postgres, dir.path(), &opts).unwrap());
            Reconciler::new(store, Settings::default()).unwrap()
        };
        let replicas = [open(), open()];
        (cluster, dir, replicas)
    }

    /// Two processes on one PostgreSQL database, writing at once through
    /// plain transactions (as imports, activation mails and enrollment
    /// upkeep do, none of which retries): they take turns, so every
    /// transaction commits at its first attempt and the log is gap-free.
    #[test]
    fn replicas_on_postgres_take_turns_and_never_conflict() {
        let (_cluster, _dir, replicas) = two_replicas_on_postgres();
        const EACH: usize = 150;
        std::thread::scope(|s| {
            for (r, rec) in replicas.iter().enumerate() {
                s.spawn(move || {
                    for i in 0..EACH {
                        let mut tx = rec.begin(Source::Api, Actor::default());
                        tx.create_user(user(&format!("r{r}-{i}@x.org")), &UserWrite::default())
                            .unwrap();
                        tx.commit().expect("a turn's commit never conflicts");
                    }
                });
            }
        });
        let events = replicas[0].store().changes(0, 1000).unwrap();
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=2 * EACH as u64).collect::<Vec<u64>>());
    }

    /// A transaction sees another process wait for its turn (a long
    /// import then lets it through), and not before.
    #[test]
    fn a_turn_knows_when_another_replica_waits() {
        let (_cluster, _dir, [a, b]) = two_replicas_on_postgres();
        let long = a.begin(Source::Csv, Actor::default());
        assert!(!long.turn_wanted_elsewhere(), "nobody waits yet");
        std::thread::scope(|s| {
            let waiting = s.spawn(|| {
                let mut tx = b.begin(Source::Scim, Actor::default());
                tx.create_user(user("b@x.org"), &UserWrite::default())
                    .unwrap();
                tx.commit().unwrap().head
            });
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
            while !long.turn_wanted_elsewhere() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the waiter never showed"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            drop(long);
            assert_eq!(waiting.join().unwrap(), 1);
        });
    }
}
