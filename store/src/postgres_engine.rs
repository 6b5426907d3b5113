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

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::SslMode;
use tokio_postgres::NoTls;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::engine::{Batch, Engine, EngineError, Op, Reader};

/// Name reported by [`Engine::name`] and used in error messages.
const NAME: &str = "postgres";

/// The table holding idsync's keyspace, and the statements on it: written
/// out once, not formatted per call (they are the prepared-statement
/// cache's keys, on every read).
const CREATE: &str = "CREATE TABLE IF NOT EXISTS idsync_kv (k bytea PRIMARY KEY, v bytea NOT NULL)";
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
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            url: String::new(),
            password: None,
            pool_size: 16,
            statement_timeout: Duration::from_secs(30),
            ca_file: None,
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

/// The session advisory lock one idsync holds on its database: until
/// several replicas share one (a gap-free change log across writers), a
/// second process on the same database is refused at start.
const SOLE_WRITER_LOCK: i64 = 0x6964_7379_6e63; // "idsync"

/// The transaction advisory lock a batch with expectations holds while it
/// checks and writes ([`Batch::expect`]).
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

/// How long a start waits for [`SOLE_WRITER_LOCK`].
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// An [`Engine`] on one table of a PostgreSQL database.
pub struct PostgresEngine {
    runtime: OwnRuntime,
    pool: Pool,
    durable: bool,
    /// Whether this process holds [`SOLE_WRITER_LOCK`] now: a connection
    /// kept for it holds it, and takes it back when the database comes
    /// back after losing it (see [`keep_sole_writer`]); writes wait for
    /// it.
    lock_held: Arc<AtomicBool>,
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
        let lock_config = config.clone();
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
        let lock_held = sole_writer(&runtime, lock_config, tls).map_err(open_err)?;
        let engine = Self {
            runtime,
            pool,
            durable,
            lock_held,
        };
        let pool = engine.pool.clone();
        engine
            .run(async move {
                let client = pool.get().await.map_err(io_err)?;
                client.batch_execute(CREATE).await.map_err(io_err)
            })
            .map_err(|e| open_err(e.to_string()))?;
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

/// A connection of its own that holds [`SOLE_WRITER_LOCK`], kept by a
/// task on `runtime` for the engine's life; the flag says whether the lock
/// is held now. Fails when another process holds it.
fn sole_writer(
    runtime: &tokio::runtime::Runtime,
    config: tokio_postgres::Config,
    tls: Tls,
) -> Result<Arc<AtomicBool>, String> {
    let (first, first_tls) = (config.clone(), tls.clone());
    // A process killed a moment ago still holds it until its server
    // process notices the closed connection: wait a little.
    let locked = run_on(runtime, async move {
        take_sole_writer(&first, &first_tls, LOCK_WAIT).await
    })
    .map_err(|e| e.to_string())?;
    let Some(held) = locked else {
        return Err("another idsync process uses this database \
             (one process per database until replicas are supported: docs/operations.md)"
            .into());
    };
    let flag = Arc::new(AtomicBool::new(true));
    runtime.spawn(keep_sole_writer(config, tls, held, Arc::clone(&flag)));
    Ok(flag)
}

/// A connection: its client, and the task driving it, which ends when the
/// connection does.
type LockConnection = (tokio_postgres::Client, tokio::task::JoinHandle<()>);

/// How connections are made: plain TCP, or TLS with the server's
/// certificate verified against `store.postgres.ca_file`.
#[derive(Clone)]
enum Tls {
    Off,
    Verified(MakeRustlsConnect),
}

impl Tls {
    /// From the options; `config` is told to require TLS when it is on.
    fn from_options(
        opts: &PostgresOptions,
        config: &mut tokio_postgres::Config,
    ) -> Result<Self, String> {
        let Some(path) = &opts.ca_file else {
            if config.get_ssl_mode() == SslMode::Require {
                return Err("sslmode=require needs store.postgres.ca_file \
                            (the CA certificate that signed the server's)"
                    .into());
            }
            return Ok(Tls::Off);
        };
        config.ssl_mode(SslMode::Require);
        Ok(Tls::Verified(MakeRustlsConnect::new(client_tls(path)?)))
    }

    /// A pool manager making connections this way.
    fn manager(&self, config: tokio_postgres::Config) -> Manager {
        let recycling = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        match self {
            Tls::Off => Manager::from_config(config, NoTls, recycling),
            Tls::Verified(tls) => Manager::from_config(config, tls.clone(), recycling),
        }
    }

    /// One connection made this way, its driver spawned.
    async fn connect(
        &self,
        config: &tokio_postgres::Config,
    ) -> Result<LockConnection, EngineError> {
        fn drive<F: Future + Send + 'static>(connection: F) -> tokio::task::JoinHandle<()>
        where
            F::Output: Send,
        {
            tokio::spawn(async move {
                let _ = connection.await;
            })
        }
        match self {
            Tls::Off => {
                let (client, connection) = config.connect(NoTls).await.map_err(io_err)?;
                Ok((client, drive(connection)))
            }
            Tls::Verified(tls) => {
                let (client, connection) = config.connect(tls.clone()).await.map_err(io_err)?;
                Ok((client, drive(connection)))
            }
        }
    }
}

/// A rustls client configuration (ring provider) trusting only the CA
/// certificates of `path`.
fn client_tls(path: &std::path::Path) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let shown =
        |e: &dyn std::fmt::Display| format!("store.postgres.ca_file {}: {e}", path.display());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| shown(&e))? {
        roots
            .add(cert.map_err(|e| shown(&e))?)
            .map_err(|e| shown(&e))?;
    }
    if roots.is_empty() {
        return Err(shown(&"no certificate in it"));
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| shown(&e))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// Connect and try for [`SOLE_WRITER_LOCK`] until `wait` has passed;
/// `None` when another session holds it.
async fn take_sole_writer(
    config: &tokio_postgres::Config,
    tls: &Tls,
    wait: Duration,
) -> Result<Option<LockConnection>, EngineError> {
    let (client, driver) = tls.connect(config).await?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let row = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&SOLE_WRITER_LOCK])
            .await
            .map_err(io_err)?;
        if row.get::<_, bool>(0) {
            return Ok(Some((client, driver)));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Hold the lock for the engine's life. A session lock ends with its
/// connection: when the database restarts, another idsync could take it.
/// So when the connection ends, writes stop (`held` false) until this
/// task has taken the lock again, every second; while another process
/// holds it, they stay stopped (and say so).
async fn keep_sole_writer(
    config: tokio_postgres::Config,
    tls: Tls,
    mut held: LockConnection,
    flag: Arc<AtomicBool>,
) {
    loop {
        let _ = (&mut held.1).await;
        flag.store(false, Ordering::SeqCst);
        tracing::warn!("lost the connection holding the database's writer lock: writes wait until it is taken again");
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            match take_sole_writer(&config, &tls, Duration::ZERO).await {
                Ok(Some(again)) => {
                    held = again;
                    flag.store(true, Ordering::SeqCst);
                    tracing::info!("the database's writer lock is held again");
                    break;
                }
                Ok(None) => tracing::error!(
                    "another idsync process took this database's writer lock: this one writes nothing until it can take it back"
                ),
                Err(_) => {} // the database is not back yet
            }
        }
    }
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

/// A URL's scheme (with `://`), its user, its password when it has one,
/// and what follows the `@`; `None` when it has no user part.
fn userinfo(url: &str) -> Option<(&str, &str, Option<&str>, &str)> {
    let scheme = url.find("://")? + 3;
    let at = url.rfind('@').filter(|at| *at > scheme)?;
    let (user, password) = match url[scheme..at].split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (&url[scheme..at], None),
    };
    Some((&url[..scheme], user, password, &url[at..]))
}

/// Whether a `postgres://` URL carries a password (the configuration
/// refuses one: it belongs in `password_file`).
pub fn url_has_password(url: &str) -> bool {
    userinfo(url).is_some_and(|(_, _, password, _)| password.is_some())
}

/// The URL without a password, for messages.
fn redacted(url: &str) -> String {
    match userinfo(url) {
        Some((scheme, user, _, rest)) => format!("{scheme}{user}{rest}"),
        None => url.to_owned(),
    }
}

/// What a batch leaves behind: keys to put with their values, and keys to
/// delete, each in key order.
struct FinalOps {
    put_keys: Vec<Vec<u8>>,
    put_values: Vec<Vec<u8>>,
    deletes: Vec<Vec<u8>>,
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
        Ok(Box::new(PostgresReader {
            engine: self,
            client: std::sync::Mutex::new(Some(client)),
        }))
    }

    fn write(&self, mut batch: Batch) -> Result<(), EngineError> {
        if batch.is_empty() {
            return Ok(());
        }
        if !self.lock_held.load(Ordering::SeqCst) {
            return Err(EngineError::Io {
                engine: NAME,
                message: "nothing written: this process does not hold the database's writer lock \
                          (lost with its connection; taken back once the database answers and no \
                          other idsync holds it)"
                    .into(),
            });
        }
        let (pool, durable) = (self.pool.clone(), self.durable);
        let expect = std::mem::take(&mut batch.expect);
        let FinalOps {
            put_keys,
            put_values,
            deletes,
        } = final_ops(batch);
        self.run(async move {
            let mut client = pool.get().await.map_err(io_err)?;
            let tx = client.transaction().await.map_err(io_err)?;
            if !durable {
                tx.batch_execute("SET LOCAL synchronous_commit = off")
                    .await
                    .map_err(io_err)?;
            }
            if !expect.is_empty() {
                // Batches with expectations take turns (until the commit):
                // two cannot both see the same head, even when it is still
                // absent (a row lock cannot lock a missing row).
                tx.execute(EXPECTING_LOCK, &[&EXPECTING])
                    .await
                    .map_err(io_err)?;
                let stmt = tx.prepare_cached(GET).await.map_err(io_err)?;
                for (key, wanted) in &expect {
                    let row = tx.query_opt(&stmt, &[key]).await.map_err(io_err)?;
                    if row.map(|r| r.get::<_, Vec<u8>>(0)) != *wanted {
                        return Err(EngineError::conflict(NAME, key));
                    }
                }
            }
            if !deletes.is_empty() {
                let stmt = tx.prepare_cached(DELETE_MANY).await.map_err(io_err)?;
                tx.execute(&stmt, &[&deletes]).await.map_err(io_err)?;
            }
            if !put_keys.is_empty() {
                let stmt = tx.prepare_cached(PUT_MANY).await.map_err(io_err)?;
                tx.execute(&stmt, &[&put_keys, &put_values])
                    .await
                    .map_err(io_err)?;
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
}

/// A `REPEATABLE READ` transaction on a pooled connection, rolled back
/// (and the connection returned) when the reader is dropped. The
/// connection travels to the runtime for each query and comes back.
struct PostgresReader<'e> {
    engine: &'e PostgresEngine,
    client: std::sync::Mutex<Option<Object>>,
}

impl PostgresReader<'_> {
    /// Run `read` on the snapshot's connection.
    fn on_snapshot<T: Send + 'static, F>(
        &self,
        read: impl FnOnce(Object) -> F,
    ) -> Result<T, EngineError>
    where
        F: std::future::Future<Output = (Result<T, EngineError>, Object)> + Send + 'static,
    {
        let mut held = self.client.lock().unwrap_or_else(|p| p.into_inner());
        let client = held.take().ok_or_else(|| EngineError::Io {
            engine: NAME,
            message: "the snapshot's connection was lost".into(),
        })?;
        let future = read(client);
        let (answer, client) = self.engine.run(async move { Ok(future.await) })?;
        *held = Some(client);
        answer
    }
}

impl Reader for PostgresReader<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let key = key.to_vec();
        self.on_snapshot(|client| async move { (point_read(&client, &key).await, client) })
    }

    fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, EngineError> {
        let wanted: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
        self.on_snapshot(|client| async move { (many_read(&client, wanted).await, client) })
    }
}

impl Drop for PostgresReader<'_> {
    fn drop(&mut self) {
        let held = self.client.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = held.take() {
            // Back to the pool only once the snapshot has ended; a failed
            // rollback drops the connection instead.
            self.engine.runtime.spawn(async move {
                if client.batch_execute("ROLLBACK").await.is_err() {
                    drop(Object::take(client));
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
