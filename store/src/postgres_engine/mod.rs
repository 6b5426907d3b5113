//! The PostgreSQL engine (`store.engine = "postgres"`): idsync's keyspace in
//! one table of a PostgreSQL database, for those who run idsync on more than
//! one machine (docs/operations.md).
//!
//! Why one table of `bytea` pairs: the keys already encode the layout
//! (objects, indexes, change log; `keys.rs`), `bytea` compares byte-wise, so
//! a prefix scan is a range on the primary key, exactly as in redb. A batch
//! is one transaction; a snapshot reader is a `REPEATABLE READ` transaction
//! kept open on a connection of its own.
//!
//! Why a runtime of its own: [`Engine`] is synchronous (the reconciler and
//! the embedded engines block), and `tokio-postgres` is not. The engine owns
//! a small tokio runtime that drives the connections; a call hands its query
//! to that runtime and waits on a channel, which is safe from any thread,
//! a tokio worker included (blocking it as a disk read would).
//!
//! Beside the pool, two connections of its own: the one that listens for
//! the change log's head other processes commit (`heads`), and, in the
//! daemon, the one that tries for or holds the leader lock
//! (`leader_lock`). Several processes may open one database: their change
//! log numbers cannot collide (every batch that moves the head expects the
//! head it moves from), and only the leader runs the connectors.

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::{Object, Pool, Runtime};

use super::engine::{Batch, Engine, EngineError, HeadCallback, Op, Reader, WriterTurn};
use super::keys;

mod heads;
mod leader_lock;
mod reader;
mod tls;
mod url;
mod write;
mod writer_turn;

use reader::PostgresReader;
use tls::Tls;
use url::redacted;
pub use url::url_has_password;

/// Name reported by [`Engine::name`] and used in error messages.
const NAME: &str = "postgres";

/// The table holding idsync's keyspace, and the statements on it: written
/// out once, not formatted per call (they are the prepared-statement
/// cache's keys, on every read).
///
/// The table is made under a transaction lock of its own (key "idsynt"):
/// two `CREATE TABLE IF NOT EXISTS` at once (replicas starting together
/// on an empty database) make one of them fail on PostgreSQL's catalog (a
/// unique violation on `pg_type`); one after the other, the second finds
/// the table.
const CREATE: &str = "BEGIN; SELECT pg_advisory_xact_lock(115880154984052); \
     CREATE TABLE IF NOT EXISTS idsync_kv (k bytea PRIMARY KEY, v bytea NOT NULL); COMMIT";
const GET: &str = "SELECT v FROM idsync_kv WHERE k = $1";
const GET_MANY: &str = "SELECT k, v FROM idsync_kv WHERE k = ANY($1)";
const DELETE_MANY: &str = "DELETE FROM idsync_kv WHERE k = ANY($1)";
const PUT_MANY: &str =
    "INSERT INTO idsync_kv (k, v) SELECT * FROM UNNEST($1::bytea[], $2::bytea[]) \
     ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v";
/// Scans by their bounds: after or from a key, up to a prefix's end or not.
const SCAN_AFTER_TO: &str =
    "SELECT k, v FROM idsync_kv WHERE k > $1 AND k < $3 ORDER BY k LIMIT $2";
const SCAN_FROM_TO: &str =
    "SELECT k, v FROM idsync_kv WHERE k >= $1 AND k < $3 ORDER BY k LIMIT $2";
const SCAN_AFTER: &str = "SELECT k, v FROM idsync_kv WHERE k > $1 ORDER BY k LIMIT $2";
const SCAN_FROM: &str = "SELECT k, v FROM idsync_kv WHERE k >= $1 ORDER BY k LIMIT $2";

/// `server_version_num` of the first release with `idle_session_timeout`.
const IDLE_SESSION_TIMEOUT_SINCE: u32 = 140_000;

/// Where and how to reach the database (`[store.postgres]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// A libpq connection string or `postgres://` URL, without the password.
    pub url: String,
    /// The password, read from `password_file` by the configuration (never
    /// written in the config itself).
    pub password: Option<String>,
    /// Connections in the pool (a snapshot reader holds one while it lives).
    pub pool_size: usize,
    /// Longest a statement may run before PostgreSQL cancels it.
    pub statement_timeout: Duration,
    /// TLS to the database, its certificate verified (chain and host name)
    /// against the CA certificates (PEM) in this file; plain TCP without.
    pub ca_file: Option<std::path::PathBuf>,
    /// Longest the writers' turn stays held by a session that sends
    /// nothing: the server then ends the session, and the turn with it
    /// (`writer_turn.rs` says why). The daemon sets twice
    /// `replicas.failover_ms`.
    pub turn_idle_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            url: String::new(),
            password: None,
            pool_size: 16,
            statement_timeout: Duration::from_secs(30),
            ca_file: None,
            turn_idle_timeout: Duration::from_secs(10),
        }
    }
}

/// Wrap any driver or pool error, keeping its own message (the driver's
/// includes the server's: "db error: ERROR: …").
fn io_err(e: impl std::error::Error) -> EngineError {
    // The driver's errors keep their cause apart ("error performing TLS
    // handshake" says nothing of the certificate): name each.
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = cause.source();
    }
    EngineError::Io {
        engine: NAME,
        message,
    }
}

/// The key just past every key that starts with `prefix`: the prefix with
/// its last byte below 0xFF raised by one (none when there is no such
/// byte: the range then runs to the end).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The transaction advisory lock a batch with expectations holds while it
/// checks and writes ([`Batch::expect`]), and an election while it bumps
/// the leader's epoch (`leader_lock`).
const EXPECTING: i64 = 0x6964_7379_6e64;
const EXPECTING_LOCK: &str = "SELECT pg_advisory_xact_lock($1)";

/// The engine's runtime, shut down without waiting when dropped: the
/// store may be dropped (or fail to open) inside the daemon's own runtime,
/// where waiting for another runtime's threads is not allowed.
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl std::ops::Deref for OwnRuntime {
    type Target = tokio::runtime::Runtime;
    fn deref(&self) -> &Self::Target {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// An [`Engine`] on one table of a PostgreSQL database.
pub struct PostgresEngine {
    runtime: OwnRuntime,
    pool: Pool,
    durable: bool,
    /// How the head listener and the leader lock connect
    /// ([`heads::follow`], [`leader_lock::campaign`]).
    connect: (tokio_postgres::Config, Tls),
    /// The writers' turn's idle limit, on servers that have one
    /// (`idle_session_timeout`, PostgreSQL 14 and later).
    turn_idle: Option<Duration>,
    /// What every batch's transaction starts with ([`write::local_settings`]),
    /// made once.
    batch_settings: std::sync::Arc<str>,
}

impl std::fmt::Debug for PostgresEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresEngine")
            .field("durable", &self.durable)
            .field("pool", &self.pool.status())
            .finish_non_exhaustive()
    }
}

impl PostgresEngine {
    /// Connect to the database, check it answers, and create the table when
    /// it is missing.
    pub fn open(opts: &PostgresOptions, durable: bool) -> Result<Self, EngineError> {
        let open_err = |message: String| EngineError::Open {
            engine: NAME,
            path: redacted(&opts.url).into(),
            message,
        };
        let mut config: tokio_postgres::Config = opts
            .url
            .parse()
            .map_err(|e: tokio_postgres::Error| open_err(e.to_string()))?;
        if let Some(password) = &opts.password {
            config.password(password);
        }
        config.application_name("idsync");
        config.connect_timeout(Duration::from_secs(10));
        let timeout_ms = opts.statement_timeout.as_millis();
        config.options(format!("-c statement_timeout={timeout_ms}"));
        let tls = Tls::from_options(opts, &mut config).map_err(open_err)?;
        let connect = (config.clone(), tls.clone());
        let manager = tls.manager(config);
        let pool = Pool::builder(manager)
            .max_size(opts.pool_size.max(2))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(opts.statement_timeout))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| open_err(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("idsync-postgres")
            .enable_all()
            .build()
            .map(|r| OwnRuntime(Some(r)))
            .map_err(|e| open_err(e.to_string()))?;
        let mut engine = Self {
            runtime,
            pool,
            durable,
            connect,
            turn_idle: None,
            batch_settings: "".into(),
        };
        let pool = engine.pool.clone();
        let version = engine
            .run(async move {
                let client = pool.get().await.map_err(io_err)?;
                client.batch_execute(CREATE).await.map_err(io_err)?;
                let row = client
                    .query_one("SHOW server_version_num", &[])
                    .await
                    .map_err(io_err)?;
                Ok(row.get::<_, String>(0).parse::<u32>().unwrap_or(0))
            })
            .map_err(|e| open_err(e.to_string()))?;
        if version >= IDLE_SESSION_TIMEOUT_SINCE {
            engine.turn_idle = Some(opts.turn_idle_timeout);
        } else {
            tracing::warn!(
                version,
                "PostgreSQL before 14 has no idle_session_timeout: a replica that stalls \
                 while it holds the writers' turn holds up the others' writes until its \
                 connection ends"
            );
        }
        engine.batch_settings = write::local_settings(durable, engine.turn_idle).into();
        Ok(engine)
    }

    /// Run `work` on the engine's runtime and wait for its answer.
    fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, EngineError>> + Send + 'static,
    ) -> Result<T, EngineError> {
        run_on(&self.runtime, work)
    }
}

/// Run `work` on `runtime` and wait for its answer on a channel: unlike
/// `block_on`, this may be called from inside another runtime (the
/// daemon's, which opens the store).
fn run_on<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    work: impl Future<Output = Result<T, EngineError>> + Send + 'static,
) -> Result<T, EngineError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(work.await);
    });
    rx.recv().unwrap_or_else(|_| {
        Err(EngineError::Io {
            engine: NAME,
            message: "the database task ended without an answer".into(),
        })
    })
}

/// One key's value, on a pooled connection (the engine's own reads and a
/// snapshot reader's).
async fn point_read(client: &Object, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
    let stmt = client.prepare_cached(GET).await.map_err(io_err)?;
    let row = client.query_opt(&stmt, &[&key]).await.map_err(io_err)?;
    Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
}

/// Several keys' values, in the order asked, in one query (the engine's
/// own reads and a snapshot reader's).
async fn many_read(
    client: &Object,
    keys: Vec<Vec<u8>>,
) -> Result<Vec<Option<Vec<u8>>>, EngineError> {
    let stmt = client.prepare_cached(GET_MANY).await.map_err(io_err)?;
    let rows = client.query(&stmt, &[&keys]).await.map_err(io_err)?;
    let found: std::collections::HashMap<Vec<u8>, Vec<u8>> =
        rows.into_iter().map(|r| (r.get(0), r.get(1))).collect();
    Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
}

/// What a batch leaves behind: keys to put with their values, and keys to
/// delete, each in key order.
pub(super) struct FinalOps {
    pub(super) put_keys: Vec<Vec<u8>>,
    pub(super) put_values: Vec<Vec<u8>>,
    pub(super) deletes: Vec<Vec<u8>>,
}

/// The last op on each key, in key order: what the batch leaves behind.
fn final_ops(batch: Batch) -> FinalOps {
    let mut last = std::collections::BTreeMap::new();
    for op in batch.ops {
        match op {
            Op::Put(k, v) => last.insert(k, Some(v)),
            Op::Delete(k) => last.insert(k, None),
        };
    }
    let (mut put_keys, mut put_values, mut deletes) = (Vec::new(), Vec::new(), Vec::new());
    for (k, v) in last {
        match v {
            Some(v) => {
                put_keys.push(k);
                put_values.push(v);
            }
            None => deletes.push(k),
        }
    }
    FinalOps {
        put_keys,
        put_values,
        deletes,
    }
}

impl Engine for PostgresEngine {
    fn name(&self) -> &'static str {
        NAME
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn round_trip(&self) -> Result<Option<std::time::Duration>, EngineError> {
        let pool = self.pool.clone();
        self.run(async move {
            let client = pool.get().await.map_err(io_err)?;
            let started = std::time::Instant::now();
            client.simple_query("SELECT 1").await.map_err(io_err)?;
            Ok(Some(started.elapsed()))
        })
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let (pool, key) = (self.pool.clone(), key.to_vec());
        self.run(async move {
            let client = pool.get().await.map_err(io_err)?;
            point_read(&client, &key).await
        })
    }

    fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, EngineError> {
        let pool = self.pool.clone();
        let wanted: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
        self.run(async move {
            let client = pool.get().await.map_err(io_err)?;
            many_read(&client, wanted).await
        })
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>, EngineError> {
        let pool = self.pool.clone();
        let client = self.run(async move {
            let client = pool.get().await.map_err(io_err)?;
            client
                .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await
                .map_err(io_err)?;
            // The snapshot is taken by the first query, not by BEGIN.
            client.batch_execute("SELECT 1").await.map_err(io_err)?;
            Ok(client)
        })?;
        Ok(Box::new(PostgresReader::new(self, client)))
    }

    fn write(&self, mut batch: Batch) -> Result<(), EngineError> {
        if batch.is_empty() {
            return Ok(());
        }
        let pool = self.pool.clone();
        let settings = std::sync::Arc::clone(&self.batch_settings);
        let expect = std::mem::take(&mut batch.expect);
        let ops = final_ops(batch);
        // The head this batch moves to, announced to the other processes
        // on the database when it commits.
        let new_head = ops
            .put_keys
            .iter()
            .position(|k| k.as_slice() == keys::HEAD)
            .and_then(|i| keys::head_value(&ops.put_values[i]))
            .map(|head| head.to_string());
        self.run(async move {
            let mut client = pool.get().await.map_err(io_err)?;
            let tx = client.transaction().await.map_err(io_err)?;
            let found =
                write::pipelined(&tx, &settings, &expect, &ops, new_head.as_deref()).await?;
            for ((key, wanted), found) in expect.iter().zip(found) {
                if found != *wanted {
                    // Dropping the transaction rolls it back.
                    return Err(EngineError::conflict(NAME, key));
                }
            }
            tx.commit().await.map_err(io_err)
        })
    }

    fn visit_prefix(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<usize, EngineError> {
        if limit == 0 {
            return Ok(0);
        }
        let pool = self.pool.clone();
        // Strictly after `start_after` when it is inside (or past) the
        // prefix's range, else from the prefix itself (engine::scan_start).
        let (from, inclusive) = match start_after {
            Some(after) if after >= prefix => (after.to_vec(), false),
            _ => (prefix.to_vec(), true),
        };
        let end = prefix_end(prefix);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.run(async move {
            let client = pool.get().await.map_err(io_err)?;
            let sql = match (inclusive, end.is_some()) {
                (false, true) => SCAN_AFTER_TO,
                (true, true) => SCAN_FROM_TO,
                (false, false) => SCAN_AFTER,
                (true, false) => SCAN_FROM,
            };
            let stmt = client.prepare_cached(sql).await.map_err(io_err)?;
            let rows = match &end {
                Some(end) => client.query(&stmt, &[&from, &limit, end]).await,
                None => client.query(&stmt, &[&from, &limit]).await,
            };
            rows.map_err(io_err)
        })?;
        let mut visited = 0;
        for row in &rows {
            visited += 1;
            if !visit(row.get::<_, &[u8]>(0), row.get::<_, &[u8]>(1)) {
                break;
            }
        }
        Ok(visited)
    }

    fn flush(&self) -> Result<(), EngineError> {
        // Every commit is the database's: nothing is held back here.
        Ok(())
    }

    fn writer_turn(&self) -> Result<Option<WriterTurn>, EngineError> {
        Ok(Some(Box::new(writer_turn::take(
            &self.runtime,
            &self.pool,
            self.turn_idle,
        )?)))
    }

    fn follow_heads(&self, on_head: HeadCallback) {
        let (config, tls) = self.connect.clone();
        heads::follow(&self.runtime, config, tls, on_head);
    }

    fn elect(
        &self,
        identity: String,
        retry: Duration,
        role: crate::leadership::RoleSender,
    ) -> Result<(), EngineError> {
        let (config, tls) = self.connect.clone();
        leader_lock::campaign(&self.runtime, config, tls, identity, retry, role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replicas starting together on an empty database all open it: the
    /// table is made once, the others find it (without the lock around
    /// `CREATE TABLE IF NOT EXISTS`, some failed on `pg_type`).
    #[test]
    fn stores_opened_at_once_on_an_empty_database_all_open() {
        let cluster = crate::test_postgres::TestPostgres::start();
        let opts = cluster.engine_options(crate::EngineOptions::default());
        let barrier = std::sync::Barrier::new(6);
        std::thread::scope(|scope| {
            let opened: Vec<_> = (0..6)
                .map(|_| {
                    scope.spawn(|| {
                        let dir = tempfile::tempdir().unwrap();
                        barrier.wait();
                        crate::Store::open(crate::EngineKind::Postgres, dir.path(), &opts)
                            .map(|_| ())
                    })
                })
                .collect();
            for o in opened {
                o.join().unwrap().expect("every store opens");
            }
        });
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"o/"), Some(b"o0".to_vec()));
        assert_eq!(prefix_end(&[0x01, 0xFF]), Some(vec![0x02]));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn a_batch_leaves_its_last_op_per_key() {
        let mut b = Batch::new();
        b.put(b"b".to_vec(), b"1".to_vec());
        b.delete(b"a".to_vec());
        b.put(b"a".to_vec(), b"2".to_vec());
        b.delete(b"b".to_vec());
        b.put(b"c".to_vec(), b"3".to_vec());
        let ops = final_ops(b);
        assert_eq!(ops.put_keys, vec![b"a".to_vec(), b"c".to_vec()]);
        assert_eq!(ops.put_values, vec![b"2".to_vec(), b"3".to_vec()]);
        assert_eq!(ops.deletes, vec![b"b".to_vec()]);
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redacted("postgres://idsync:s3cret@db.example.org/idsync"),
            "postgres://idsync@db.example.org/idsync"
        );
        assert_eq!(redacted("host=/run/pg dbname=x"), "host=/run/pg dbname=x");
        assert!(url_has_password("postgres://a:b@h/d"));
        assert!(!url_has_password("postgres://a@h/d"));
        assert!(!url_has_password("host=h user=a"));
    }
}
