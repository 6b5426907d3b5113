//! Choosing and opening the configured engine, and the storage test suite
//! every engine must pass.
//!
//! The suite is written once against `&dyn Engine` and instantiated for each
//! [`EngineKind`], so an engine added later gets the same checks — in
//! particular the crash test, which is what the trait's atomicity promise
//! rests on.

use std::path::Path;

use super::engine::{Engine, EngineError, EngineKind, EngineOptions};
use super::postgres_engine::PostgresEngine;
use super::redb_engine::RedbEngine;
use super::sled_engine::SledEngine;

/// File name of the redb store inside the data directory.
pub const REDB_FILE: &str = "idsync.redb";

/// Directory name of the sled store inside the data directory.
pub const SLED_DIR: &str = "idsync.sled";

/// Open (creating when missing) the store of kind `kind` inside the data
/// directory `dir`: `dir/idsync.redb` for redb, `dir/idsync.sled` for sled.
///
/// The two engines use different names so that switching `store.engine`
/// never makes one engine try to read the other's files; the old store
/// simply stays where it was.
///
/// # Errors
///
/// [`EngineError::Open`] when `dir` cannot be created or the engine refuses
/// to open its files (locked by another process, corrupt, …).
pub fn open_engine(
    kind: EngineKind,
    dir: &Path,
    opts: &EngineOptions,
) -> Result<Box<dyn Engine>, EngineError> {
    std::fs::create_dir_all(dir).map_err(|e| EngineError::Open {
        engine: kind.as_str(),
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(match kind {
        EngineKind::Redb => Box::new(RedbEngine::open(&dir.join(REDB_FILE), opts)?),
        EngineKind::Sled => Box::new(SledEngine::open(&dir.join(SLED_DIR), opts)?),
        EngineKind::Postgres => {
            let Some(pg) = &opts.postgres else {
                return Err(EngineError::Open {
                    engine: kind.as_str(),
                    path: dir.to_path_buf(),
                    message: "store.postgres.url is not set".into(),
                });
            };
            Box::new(PostgresEngine::open(pg, opts.durable)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::open_engine;
    use crate::engine::{Batch, Engine, EngineError, EngineKind, EngineOptions};

    /// Small cache: the tests touch little data, and a small cache makes the
    /// engines actually read pages back from disk.
    fn opts() -> EngineOptions {
        EngineOptions {
            cache_bytes: 4 * 1024 * 1024,
            ..EngineOptions::default()
        }
    }

    fn open(kind: EngineKind, dir: &Path) -> Box<dyn Engine> {
        open_engine(kind, dir, &opts()).expect("open engine")
    }

    /// Run `test` on a fresh engine of `kind` in a temporary directory (a
    /// throwaway cluster of its own for PostgreSQL).
    fn with_engine(kind: EngineKind, test: fn(&dyn Engine)) {
        let dir = tempfile::tempdir().expect("tempdir");
        if kind == EngineKind::Postgres {
            let cluster = crate::test_postgres::TestPostgres::start();
            let opts = cluster.engine_options(opts());
            let engine = open_engine(kind, dir.path(), &opts).expect("open postgres");
            test(&*engine);
            drop(engine);
            return;
        }
        let engine = open(kind, dir.path());
        test(&*engine);
    }

    /// Run `test`, which opens engines itself, in a temporary directory.
    fn with_dir(kind: EngineKind, test: fn(EngineKind, &Path)) {
        let dir = tempfile::tempdir().expect("tempdir");
        test(kind, dir.path());
    }

    fn put_all(engine: &dyn Engine, keys: &[&[u8]]) {
        let mut batch = Batch::new();
        for key in keys {
            batch.put(*key, *key);
        }
        engine.write(batch).expect("write");
    }

    fn keys_of(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<&[u8]> {
        entries.iter().map(|(k, _)| k.as_slice()).collect()
    }

    // ---- the suite: each function is run against every engine ----

    fn atomic_batch(engine: &dyn Engine) {
        put_all(engine, &[b"gone", b"kept"]);
        let mut batch = Batch::new();
        batch.put(b"new".as_slice(), b"1".as_slice());
        batch.delete(b"gone".as_slice());
        // Later ops on the same key win, in both directions.
        batch.put(b"twice".as_slice(), b"first".as_slice());
        batch.put(b"twice".as_slice(), b"second".as_slice());
        batch.put(b"put-then-delete".as_slice(), b"x".as_slice());
        batch.delete(b"put-then-delete".as_slice());
        batch.delete(b"kept".as_slice());
        batch.put(b"kept".as_slice(), b"back".as_slice());
        engine.write(batch).expect("write");

        assert_eq!(engine.get(b"new").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(engine.get(b"gone").unwrap(), None);
        assert_eq!(
            engine.get(b"twice").unwrap().as_deref(),
            Some(&b"second"[..])
        );
        assert_eq!(engine.get(b"put-then-delete").unwrap(), None);
        assert_eq!(engine.get(b"kept").unwrap().as_deref(), Some(&b"back"[..]));
    }

    fn get_missing(engine: &dyn Engine) {
        // On an empty store, then next to an existing key.
        assert_eq!(engine.get(b"nope").unwrap(), None);
        put_all(engine, &[b"nop"]);
        assert_eq!(engine.get(b"nope").unwrap(), None);
        assert_eq!(engine.get(b"no").unwrap(), None);
        // Deleting a missing key is not an error.
        let mut batch = Batch::new();
        batch.delete(b"nope".as_slice());
        engine.write(batch).expect("delete missing key");
    }

    fn get_many_order_and_missing(engine: &dyn Engine) {
        put_all(engine, &[b"a", b"b", b"c"]);
        let got = engine
            .get_many(&[b"c", b"missing", b"a", b"a", b"b"])
            .unwrap();
        assert_eq!(
            got,
            vec![
                Some(b"c".to_vec()),
                None,
                Some(b"a".to_vec()),
                Some(b"a".to_vec()),
                Some(b"b".to_vec()),
            ]
        );
        assert!(engine.get_many(&[]).unwrap().is_empty());
    }

    /// A batch lands only while its expectations hold, checked with it:
    /// otherwise nothing of it is written.
    fn expectations_guard_a_batch(engine: &dyn Engine) {
        let batch = |expect: Option<&[u8]>, value: &[u8]| {
            let mut b = Batch::new();
            b.expect(b"h".as_slice(), expect.map(<[u8]>::to_vec));
            b.put(b"h".as_slice(), value);
            b.put(value, value);
            b
        };
        // Absent, as expected.
        engine.write(batch(None, b"1")).unwrap();
        // Expected absent, but present: nothing written.
        let e = engine.write(batch(None, b"x")).unwrap_err();
        assert!(
            matches!(e, EngineError::Conflict { ref key, .. } if key == "h"),
            "{e}"
        );
        // Expected another value: nothing written.
        let e = engine.write(batch(Some(b"0"), b"y")).unwrap_err();
        assert!(matches!(e, EngineError::Conflict { .. }), "{e}");
        // The value it holds.
        engine.write(batch(Some(b"1"), b"2")).unwrap();
        assert_eq!(engine.get(b"h").unwrap(), Some(b"2".to_vec()));
        assert_eq!(engine.get(b"x").unwrap(), None);
        assert_eq!(engine.get(b"y").unwrap(), None);
        assert_eq!(engine.get(b"1").unwrap(), Some(b"1".to_vec()));
        assert_eq!(engine.get(b"2").unwrap(), Some(b"2".to_vec()));
    }

    fn scan_prefix_ordering(engine: &dyn Engine) {
        // Written out of order, in two batches.
        put_all(engine, &[b"p/m", b"p/b", b"p/z"]);
        put_all(engine, &[b"p/a", b"p/y", b"p/c", b"q", b"o"]);
        let entries = engine.scan_prefix(b"p/", None, usize::MAX).unwrap();
        assert_eq!(
            keys_of(&entries),
            vec![&b"p/a"[..], b"p/b", b"p/c", b"p/m", b"p/y", b"p/z"]
        );
        // Values come with their keys.
        assert!(entries.iter().all(|(k, v)| k == v));
        // The empty prefix is the whole store.
        assert_eq!(engine.scan_prefix(b"", None, usize::MAX).unwrap().len(), 8);
        assert!(engine
            .scan_prefix(b"r", None, usize::MAX)
            .unwrap()
            .is_empty());
    }

    fn prefix_boundary(engine: &dyn Engine) {
        // '0' (0x30) sorts right after '/' (0x2F): `a0` directly follows the
        // `a/` range and must not leak into it, nor `b`.
        put_all(engine, &[b"a", b"a/", b"a/x", b"a0", b"b"]);
        let entries = engine.scan_prefix(b"a/", None, usize::MAX).unwrap();
        assert_eq!(keys_of(&entries), vec![&b"a/"[..], b"a/x"]);
        let entries = engine.scan_prefix(b"a", None, usize::MAX).unwrap();
        assert_eq!(keys_of(&entries), vec![&b"a"[..], b"a/", b"a/x", b"a0"]);
        let entries = engine.scan_prefix(b"a0", None, usize::MAX).unwrap();
        assert_eq!(keys_of(&entries), vec![&b"a0"[..]]);
    }

    fn paging(engine: &dyn Engine) {
        let keys: Vec<Vec<u8>> = (0..25).map(|i| format!("p/{i:03}").into_bytes()).collect();
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        put_all(engine, &refs);
        put_all(engine, &[b"o/before", b"q/after"]);

        let mut seen = Vec::new();
        let mut cursor: Option<Vec<u8>> = None;
        let mut pages = 0;
        loop {
            let page = engine.scan_prefix(b"p/", cursor.as_deref(), 10).unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 10);
            pages += 1;
            cursor = Some(page.last().unwrap().0.clone());
            seen.extend(page.into_iter().map(|(k, _)| k));
        }
        assert_eq!(pages, 3);
        assert_eq!(seen, keys);

        // A cursor that is not itself a key, one before the prefix and one
        // past it.
        let page = engine.scan_prefix(b"p/", Some(b"p/0105"), 2).unwrap();
        assert_eq!(keys_of(&page), vec![&b"p/011"[..], b"p/012"]);
        let page = engine.scan_prefix(b"p/", Some(b"o"), 1).unwrap();
        assert_eq!(keys_of(&page), vec![&b"p/000"[..]]);
        assert!(engine
            .scan_prefix(b"p/", Some(b"p0"), 5)
            .unwrap()
            .is_empty());
        assert!(engine.scan_prefix(b"p/", None, 0).unwrap().is_empty());

        // Visiting borrows what a scan copies, and stops where told.
        let mut visited = Vec::new();
        let n = engine
            .visit_prefix(b"p/", Some(b"p/004"), 100, &mut |k, v| {
                visited.push((k.to_vec(), v.to_vec()));
                visited.len() < 3
            })
            .unwrap();
        assert_eq!(n, 3, "the entry that said stop was visited");
        assert_eq!(
            visited,
            engine.scan_prefix(b"p/", Some(b"p/004"), 3).unwrap()
        );
        let n = engine
            .visit_prefix(b"p/", Some(b"p/020"), 100, &mut |_, _| true)
            .unwrap();
        assert_eq!(n, 4, "up to the prefix's end");
        let n = engine
            .visit_prefix(b"p/", None, 7, &mut |_, _| true)
            .unwrap();
        assert_eq!(n, 7, "up to the limit");
    }

    fn batch_of_10000(engine: &dyn Engine) {
        let mut batch = Batch::new();
        for i in 0..10_000u32 {
            batch.put(format!("k/{i:05}").into_bytes(), i.to_be_bytes().to_vec());
        }
        assert_eq!(batch.ops.len(), 10_000);
        engine.write(batch).expect("write 10,000 ops");
        let all = engine.scan_prefix(b"k/", None, usize::MAX).unwrap();
        assert_eq!(all.len(), 10_000);
        for (i, (key, value)) in (0..10_000u32).zip(&all) {
            assert_eq!(key, format!("k/{i:05}").as_bytes());
            assert_eq!(value, &i.to_be_bytes());
        }
    }

    fn empty_batch(engine: &dyn Engine) {
        engine.write(Batch::new()).expect("empty batch");
        assert!(engine
            .scan_prefix(b"", None, usize::MAX)
            .unwrap()
            .is_empty());
        put_all(engine, &[b"x"]);
        engine.write(Batch::new()).expect("empty batch");
        assert_eq!(engine.get(b"x").unwrap().as_deref(), Some(&b"x"[..]));
    }

    fn binary_keys(engine: &dyn Engine) {
        let keys: [&[u8]; 8] = [
            &[0x00],
            &[0x00, 0x00],
            &[0x00, 0xFF],
            &[0x01],
            &[0x7F, 0x00, 0x80],
            &[0xFF],
            &[0xFF, 0x00],
            &[0xFF, 0xFF, 0xFF],
        ];
        // Reversed, so the engine has to sort them.
        let reversed: Vec<&[u8]> = keys.iter().rev().copied().collect();
        put_all(engine, &reversed);

        let all = engine.scan_prefix(b"", None, usize::MAX).unwrap();
        assert_eq!(keys_of(&all), keys.to_vec());
        let zero = engine.scan_prefix(&[0x00], None, usize::MAX).unwrap();
        assert_eq!(keys_of(&zero), keys[..3].to_vec());
        let ff = engine.scan_prefix(&[0xFF], None, usize::MAX).unwrap();
        assert_eq!(keys_of(&ff), keys[5..].to_vec());
        let after = engine
            .scan_prefix(&[0xFF], Some(&[0xFF]), usize::MAX)
            .unwrap();
        assert_eq!(keys_of(&after), keys[6..].to_vec());
        for key in keys {
            assert_eq!(engine.get(key).unwrap().as_deref(), Some(key));
        }
        assert_eq!(engine.get(&[0x00, 0x00, 0x00]).unwrap(), None);
    }

    fn flush_persists_non_durable_writes(kind: EngineKind, dir: &Path) {
        let lazy = EngineOptions {
            durable: false,
            ..opts()
        };
        {
            let engine = open_engine(kind, dir, &lazy).unwrap();
            put_all(&*engine, &[b"lazy"]);
            engine.flush().expect("flush");
        }
        let engine = open(kind, dir);
        assert_eq!(engine.get(b"lazy").unwrap().as_deref(), Some(&b"lazy"[..]));
    }

    fn reopen_persistence(kind: EngineKind, dir: &Path) {
        {
            let engine = open(kind, dir);
            put_all(&*engine, &[b"one", b"two", b"three"]);
            let mut batch = Batch::new();
            batch.delete(b"two".as_slice());
            engine.write(batch).unwrap();
        }
        // The first engine is dropped: its lock on the files must be gone.
        let engine = open(kind, dir);
        let entries = engine.scan_prefix(b"", None, usize::MAX).unwrap();
        assert_eq!(keys_of(&entries), vec![&b"one"[..], b"three"]);
        put_all(&*engine, &[b"four"]);
        drop(engine);
        let engine = open(kind, dir);
        assert_eq!(engine.get(b"four").unwrap().as_deref(), Some(&b"four"[..]));
    }

    // ---- crash atomicity ----

    /// Set in the child process: the data directory it writes into.
    const CRASH_DIR_VAR: &str = "IDSYNC_TEST_CRASH_CHILD_DIR";
    /// Set in the child process: the engine it writes with.
    const CRASH_ENGINE_VAR: &str = "IDSYNC_TEST_CRASH_CHILD_ENGINE";
    /// Data keys per batch (plus the counter key).
    const CRASH_BATCH_KEYS: u64 = 100;
    /// The counter key: the number of the last committed batch.
    const COUNTER_KEY: &[u8] = b"counter";

    fn data_key(batch: u64, i: u64) -> Vec<u8> {
        format!("d/{batch:08}/{i:03}").into_bytes()
    }

    /// Child side of [`crash_atomicity`]: commit numbered batches until
    /// killed, printing the number of each batch once `write` returned.
    ///
    /// Ignored so a normal run skips it; the parent runs it with `--ignored`.
    /// Without the environment variables it does nothing.
    #[test]
    #[ignore = "the child process of the crash-atomicity tests"]
    fn crash_child() {
        let (Ok(dir), Ok(kind)) = (
            std::env::var(CRASH_DIR_VAR),
            std::env::var(CRASH_ENGINE_VAR),
        ) else {
            return;
        };
        let kind = match kind.as_str() {
            "redb" => EngineKind::Redb,
            "sled" => EngineKind::Sled,
            other => panic!("unknown engine {other}"),
        };
        let engine = open(kind, Path::new(&dir));
        // Bounded, so an orphaned child (parent killed) does not write
        // forever.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut n = 0u64;
        while Instant::now() < deadline {
            n += 1;
            let mut batch = Batch::new();
            batch.put(COUNTER_KEY, n.to_be_bytes().to_vec());
            for i in 0..CRASH_BATCH_KEYS {
                batch.put(data_key(n, i), n.to_be_bytes().to_vec());
            }
            engine.write(batch).expect("child write");
            println!("committed {n}");
        }
    }

    /// Kill a writer with SIGKILL mid-stream, then check that every batch
    /// is all there or not there at all, that the counter agrees with the
    /// data, and that every batch acknowledged before the kill survived.
    fn crash_atomicity(kind: EngineKind, dir: &Path) {
        let exe = std::env::current_exe().expect("current_exe");
        // The test's path as libtest names it: the module path minus the
        // crate name.
        let module = module_path!().split_once("::").expect("crate::module").1;
        let mut child = Command::new(exe)
            .args([
                &format!("{module}::crash_child"),
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_DIR_VAR, dir)
            .env(CRASH_ENGINE_VAR, kind.as_str())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");

        // Read acknowledgements on a thread so the pipe never fills up and
        // the last one written before the kill is not missed.
        let acked = Arc::new(AtomicU64::new(0));
        let stdout = child.stdout.take().expect("child stdout");
        let reader = {
            let acked = Arc::clone(&acked);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(n) = line.strip_prefix("committed ") {
                        acked.store(n.trim().parse().expect("batch number"), Ordering::SeqCst);
                    }
                }
            })
        };

        // Start the clock once the child is writing, not while it loads.
        let start = Instant::now();
        while acked.load(Ordering::SeqCst) == 0 {
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!("child exited before writing: {status}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "child never wrote"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(300));
        child.kill().expect("SIGKILL the child");
        child.wait().expect("reap the child");
        reader.join().expect("reader thread");
        let acked = acked.load(Ordering::SeqCst);

        let engine = open(kind, dir);
        let counter = engine.get(COUNTER_KEY).unwrap().expect("counter present");
        let counter = u64::from_be_bytes(counter.try_into().expect("8-byte counter"));
        assert!(
            counter >= acked,
            "batch {acked} was acknowledged but the store stops at {counter}"
        );

        // Every batch 1..=counter complete, nothing after it.
        let data = engine.scan_prefix(b"d/", None, usize::MAX).unwrap();
        assert_eq!(data.len() as u64, counter * CRASH_BATCH_KEYS);
        let mut expected = (1..=counter).flat_map(|n| (0..CRASH_BATCH_KEYS).map(move |i| (n, i)));
        for (key, value) in &data {
            let (n, i) = expected.next().expect("no more data than batches");
            assert_eq!(key, &data_key(n, i), "batch {n} is incomplete");
            assert_eq!(value, &n.to_be_bytes());
        }
        eprintln!(
            "{}: killed after {acked} acknowledged batches, {counter} recovered",
            engine.name()
        );
    }

    /// Instantiate every suite function for one engine kind, as a module of
    /// tests named after the engine.
    macro_rules! engine_suite {
        ($module:ident, $kind:expr) => {
            mod $module {
                use super::*;

                #[test]
                fn atomic_batch() {
                    with_engine($kind, super::atomic_batch);
                }
                #[test]
                fn get_missing() {
                    with_engine($kind, super::get_missing);
                }
                #[test]
                fn get_many_order_and_missing() {
                    with_engine($kind, super::get_many_order_and_missing);
                }
                #[test]
                fn expectations_guard_a_batch() {
                    with_engine($kind, super::expectations_guard_a_batch);
                }
                #[test]
                fn scan_prefix_ordering() {
                    with_engine($kind, super::scan_prefix_ordering);
                }
                #[test]
                fn prefix_boundary() {
                    with_engine($kind, super::prefix_boundary);
                }
                #[test]
                fn paging() {
                    with_engine($kind, super::paging);
                }
                #[test]
                fn batch_of_10000() {
                    with_engine($kind, super::batch_of_10000);
                }
                #[test]
                fn empty_batch() {
                    with_engine($kind, super::empty_batch);
                }
                #[test]
                fn binary_keys() {
                    with_engine($kind, super::binary_keys);
                }
            }
        };
    }

    /// The suite of an embedded engine: the same, then what a data dir of
    /// its own promises (reopening, flushing, a SIGKILL mid-write).
    macro_rules! embedded_suite {
        ($module:ident, $kind:expr) => {
            mod $module {
                use super::*;

                engine_suite!(common, $kind);

                #[test]
                fn reopen_persistence() {
                    with_dir($kind, super::reopen_persistence);
                }
                #[test]
                fn flush_persists_non_durable_writes() {
                    with_dir($kind, super::flush_persists_non_durable_writes);
                }
                #[test]
                fn crash_atomicity() {
                    with_dir($kind, super::crash_atomicity);
                }
            }
        };
    }

    embedded_suite!(redb, EngineKind::Redb);
    embedded_suite!(sled, EngineKind::Sled);
    // Against a real PostgreSQL (Debian's, a throwaway cluster per test).
    engine_suite!(postgres, EngineKind::Postgres);

    /// A reader sees the store as it was when it was taken (sled has no
    /// snapshots: its reader reads the live tree).
    fn reader_is_a_snapshot(engine: &dyn Engine) {
        put_all(engine, &[b"s/1"]);
        let reader = engine.reader().unwrap();
        assert_eq!(reader.get(b"s/1").unwrap(), Some(b"s/1".to_vec()));
        let mut batch = Batch::new();
        batch.put(b"s/1".to_vec(), b"changed".to_vec());
        batch.put(b"s/2".to_vec(), b"new".to_vec());
        engine.write(batch).unwrap();
        assert_eq!(reader.get(b"s/1").unwrap(), Some(b"s/1".to_vec()));
        assert_eq!(reader.get(b"s/2").unwrap(), None);
        // Several at once, from the same snapshot, in the order asked.
        assert_eq!(
            reader.get_many(&[b"s/2", b"s/1", b"s/1"]).unwrap(),
            vec![None, Some(b"s/1".to_vec()), Some(b"s/1".to_vec())]
        );
        assert!(reader.get_many(&[]).unwrap().is_empty());
        drop(reader);
        let reader = engine.reader().unwrap();
        assert_eq!(reader.get(b"s/1").unwrap(), Some(b"changed".to_vec()));
    }

    #[test]
    fn redb_readers_are_snapshots() {
        with_engine(EngineKind::Redb, reader_is_a_snapshot);
    }

    #[test]
    fn postgres_readers_are_snapshots() {
        with_engine(EngineKind::Postgres, reader_is_a_snapshot);
    }

    /// With `ca_file`, connections use TLS and verify the server: a
    /// cluster that rejects plain connections is used; one whose
    /// certificate another CA signed is refused, and so is `sslmode=require`
    /// without a CA to verify with.
    #[test]
    fn postgres_over_tls_verifies_the_server() {
        let cluster = crate::test_postgres::TestPostgres::start_tls();
        let dir = tempfile::tempdir().unwrap();
        let open = |url: String, ca_file: Option<std::path::PathBuf>| {
            let opts = EngineOptions {
                postgres: Some(crate::PostgresOptions {
                    url,
                    ca_file,
                    ..Default::default()
                }),
                ..opts()
            };
            open_engine(EngineKind::Postgres, dir.path(), &opts)
        };
        let engine = open(cluster.url(), Some(cluster.ca_file())).expect("TLS, verified");
        put_all(&*engine, &[b"over-tls"]);
        assert_eq!(engine.get(b"over-tls").unwrap(), Some(b"over-tls".to_vec()));
        drop(engine);

        let refused = |result: Result<Box<dyn Engine>, EngineError>| match result {
            Ok(_) => panic!("opened"),
            Err(e) => e.to_string(),
        };
        let plain = refused(open(cluster.url(), None));
        assert!(
            plain.contains("rejects connection") && plain.contains("no encryption"),
            "{plain}"
        );

        let other = dir.path().join("other-ca.pem");
        let made = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "1", "-subj", "/CN=another CA"])
            .arg("-keyout")
            .arg(dir.path().join("other.key"))
            .arg("-out")
            .arg(&other)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(made.success());
        let untrusted = refused(open(cluster.url(), Some(other)));
        assert!(untrusted.contains("certificate"), "{untrusted}");

        let url = format!("{}?sslmode=require", cluster.url());
        let no_ca = refused(open(url, None));
        assert!(
            no_ca.contains("sslmode=require needs store.postgres.ca_file"),
            "{no_ca}"
        );
    }

    /// The change log's head across processes on one database: a batch
    /// that moves the head announces it when it commits; heads another
    /// process commits reach the store's head channel, announced ones at
    /// once, and one committed while the listening connection was cut (its
    /// announcement lost) when it connects again.
    #[test]
    fn postgres_heads_are_announced_and_followed() {
        let cluster = crate::test_postgres::TestPostgres::start();
        let dir = tempfile::tempdir().unwrap();
        let opts = cluster.engine_options(opts());
        let store = crate::Store::open(EngineKind::Postgres, dir.path(), &opts).unwrap();
        let mut heads = store.subscribe_head();
        let wait_for = |heads: &mut tokio::sync::watch::Receiver<u64>, want: u64| {
            let deadline = Instant::now() + Duration::from_secs(15);
            while *heads.borrow_and_update() != want {
                assert!(Instant::now() < deadline, "head {want} never came");
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        let psql = |sql: &str| {
            let ok = cluster.psql("postgres").args(["-c", sql]).status().unwrap();
            assert!(ok.success(), "{sql}");
        };
        // What another replica's batch writes: the head row, and (in the
        // same transaction) its announcement.
        let commit_head = |h: u64, announced: bool| {
            let notify = match announced {
                true => format!("SELECT pg_notify('idsync_head', '{h}');"),
                false => String::new(),
            };
            psql(&format!(
                "INSERT INTO idsync_kv VALUES ('\\x732f68656164', '\\x{h:016x}') \
                 ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v; {notify}"
            ));
        };
        commit_head(41, true);
        wait_for(&mut heads, 41);
        // The listener's connection cut; meanwhile a commit whose
        // announcement nobody hears.
        psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'idsync-heads'");
        commit_head(57, false);
        wait_for(&mut heads, 57);

        // This engine's own batches announce their head.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let heard = rt.block_on(async {
            let (client, mut connection) =
                tokio_postgres::connect(&cluster.url(), tokio_postgres::NoTls)
                    .await
                    .unwrap();
            let (notes, mut heard) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(async move {
                while let Some(Ok(m)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await
                {
                    if let tokio_postgres::AsyncMessage::Notification(n) = m {
                        let _ = notes.send(n.payload().to_owned());
                    }
                }
            });
            client.batch_execute("LISTEN idsync_head").await.unwrap();
            let mut batch = Batch::new();
            batch.put(crate::keys::HEAD, 58u64.to_be_bytes());
            store.engine().write(batch).unwrap();
            tokio::time::timeout(Duration::from_secs(10), heard.recv())
                .await
                .expect("an announcement")
        });
        assert_eq!(heard.as_deref(), Some("58"));
    }

    #[test]
    fn engine_files_are_named_per_engine() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("not/yet/there");
        for kind in [EngineKind::Redb, EngineKind::Sled] {
            let engine = open(kind, &data);
            assert_eq!(engine.name(), kind.as_str());
        }
        assert!(data.join(super::REDB_FILE).is_file());
        assert!(data.join(super::SLED_DIR).is_dir());
    }
}
