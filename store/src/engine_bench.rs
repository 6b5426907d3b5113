//! Raw engine throughput, measured with idsync's key layout but without the
//! reconciler on top.
//!
//! Why it exists: the engine choice (and the default cache size) was made
//! on these figures, so they must be reproducible on the target machine.
//! These are plain functions, not a benchmark harness: a bench binary calls
//! them with the sizes it wants and prints the [`BenchFigure`]s.
//!
//! Each "row" is one account as idsync stores it: four keys written in the
//! same atomic batch.
//!
//! | key                         | value                      |
//! |-----------------------------|----------------------------|
//! | `o/u/<16-byte id>`          | the object, ~300 bytes     |
//! | `i/mail/<mail>`             | the 16-byte id             |
//! | `i/login/<login>`           | the 16-byte id             |
//! | `c/<8-byte big-endian seq>` | the change record, ~300 B  |

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use std::path::Path;

use super::engine::{Batch, Engine, EngineError, EngineKind, EngineOptions};

/// Prefix of object keys; [`bench_lookups`] reads these.
const OBJECT_PREFIX: &[u8] = b"o/u/";

/// Approximate size of object and change-record values.
const VALUE_BYTES: usize = 300;

/// Upper bound on the object keys [`bench_lookups`] keeps in memory to pick
/// from, so that measuring a large store does not inflate the process's
/// peak RSS (which is measured alongside).
const LOOKUP_SAMPLE: usize = 100_000;

/// How row ids are generated, which decides where in the B-tree each object
/// key lands.
///
/// Only the ids vary: mails and logins are numbered in write order in both
/// cases (`u<call>-<seq>`), so the difference between the two figures is
/// the cost of the id order alone. Real mails arrive in no particular
/// order, so a real import pays the random-order cost on both of those
/// index keys too, whatever the id order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrder {
    /// UUIDv7 ids (idsync's own): each new object key sorts after the
    /// previous ones, so writes append to the right edge of the tree.
    TimeOrdered,
    /// UUIDv4-shaped random ids, as when ids come from another system: every
    /// object key lands on a random leaf, dirtying a page per row.
    Random,
}

/// An engine of its own for a benchmark, in a directory of its own: the
/// raw figures are the store's ceiling, measured without the reconciler.
/// It offers nothing but the benchmark functions of this module, so it is
/// no way around the reconciler for idsync's own data.
pub struct BenchEngine(Box<dyn Engine>);

impl BenchEngine {
    /// Open (or create) an engine of `kind` in `dir`.
    pub fn open(kind: EngineKind, dir: &Path, opts: &EngineOptions) -> Result<Self, EngineError> {
        Ok(Self(crate::engines::open_engine(kind, dir, opts)?))
    }
}

/// One measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchFigure {
    /// Rows written (or, for [`bench_lookups`], lookups done).
    pub rows: u64,
    /// Wall-clock time of the measured loop.
    pub seconds: f64,
    /// `rows / seconds`.
    pub rows_per_sec: f64,
}

impl BenchFigure {
    fn new(rows: u64, start: Instant) -> Self {
        let seconds = start.elapsed().as_secs_f64();
        Self {
            rows,
            seconds,
            rows_per_sec: if seconds > 0.0 {
                rows as f64 / seconds
            } else {
                f64::INFINITY
            },
        }
    }
}

/// xorshift64*: good enough to scatter keys, and avoids a `rand` dependency
/// (uuid's `v4` feature is not enabled in the workspace).
struct XorShift(u64);

impl XorShift {
    /// Seeded from the clock, so two runs on the same store write different
    /// ids instead of overwriting the first run's.
    fn from_clock() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self(nanos | 1)
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough in `0..n` for picking keys (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn uuid_v4(&mut self) -> uuid::Uuid {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}

/// A value of about [`VALUE_BYTES`] that looks like a serialised record
/// (engines that compress or prefix-share would flatter an all-zero one).
fn record(kind: &str, id: &uuid::Uuid, seq: u64) -> Vec<u8> {
    let mut value = format!(
        r#"{{"kind":"{kind}","id":"{id}","seq":{seq},"given_name":"Given{seq}","family_name":"Family{seq}","attrs":""#
    )
    .into_bytes();
    let pad = VALUE_BYTES.saturating_sub(value.len() + 2);
    value.extend(std::iter::repeat_n(b'x', pad));
    value.extend_from_slice(b"\"}");
    value
}

/// Append the four keys of one row to `batch`. `run` keeps the index keys
/// of separate calls apart, so a second call adds rows instead of
/// overwriting the first call's.
fn push_row(batch: &mut Batch, id: &uuid::Uuid, seq: u64, run: u32) {
    let mut object_key = OBJECT_PREFIX.to_vec();
    object_key.extend_from_slice(id.as_bytes());
    batch.put(object_key, record("user", id, seq));
    batch.put(
        format!("i/mail/u{run:08x}-{seq:010}@example.org").into_bytes(),
        id.as_bytes().to_vec(),
    );
    batch.put(
        format!("i/login/u{run:08x}-{seq:010}").into_bytes(),
        id.as_bytes().to_vec(),
    );
    let mut change_key = b"c/".to_vec();
    change_key.extend_from_slice(&seq.to_be_bytes());
    batch.put(change_key, record("change", id, seq));
}

/// Write `rows` rows of four keys each, in atomic batches of `batch_rows`
/// rows, and time it.
///
/// The engine's own options apply: open it with `durable: true` to measure
/// what the daemon does (one fsync per batch). The measured time includes
/// building the batches, as an import would. Change-log sequence numbers
/// start at 1 on every call, so a second call overwrites the first call's
/// `c/` keys (but adds new objects and index entries).
///
/// # Panics
///
/// When `batch_rows` is 0 or a write fails: a benchmark has no sensible way
/// to carry on.
pub fn bench_raw_batch_writes(
    engine: &BenchEngine,
    rows: u64,
    batch_rows: usize,
    key_order: KeyOrder,
) -> BenchFigure {
    assert!(batch_rows > 0, "batch_rows must be at least 1");
    let engine = &*engine.0;
    let mut rng = XorShift::from_clock();
    let run = rng.next_u64() as u32;
    let start = Instant::now();
    let mut seq = 0u64;
    while seq < rows {
        let in_batch = (rows - seq).min(batch_rows as u64);
        let mut batch = Batch {
            ops: Vec::with_capacity(in_batch as usize * 4),
            expect: Vec::new(),
        };
        for _ in 0..in_batch {
            seq += 1;
            let id = match key_order {
                KeyOrder::TimeOrdered => uuid::Uuid::now_v7(),
                KeyOrder::Random => rng.uuid_v4(),
            };
            push_row(&mut batch, &id, seq, run);
        }
        if let Err(e) = engine.write(batch) {
            panic!("{} write failed after {seq} rows: {e}", engine.name());
        }
    }
    BenchFigure::new(rows, start)
}

/// Do `n` point reads of object keys picked at random among those already
/// in the store (written by [`bench_raw_batch_writes`]), and time them.
///
/// The keys are sampled first, untimed, by one pass over the `o/u/` range
/// (reservoir sampling, at most 100,000 kept), so the reads spread over the
/// whole store without holding every key in memory. In the returned figure,
/// `rows` is `n` and `rows_per_sec` is lookups per second.
///
/// # Panics
///
/// When the store holds no object key, a read fails, or a sampled key is
/// missing.
pub fn bench_lookups(engine: &BenchEngine, n: u64) -> BenchFigure {
    let engine = &*engine.0;
    let mut rng = XorShift::from_clock();
    let cap = usize::try_from(n)
        .unwrap_or(usize::MAX)
        .clamp(1, LOOKUP_SAMPLE);
    let mut sample: Vec<Vec<u8>> = Vec::with_capacity(cap);
    let mut seen = 0usize;
    let mut cursor: Option<Vec<u8>> = None;
    loop {
        let page = engine
            .scan_prefix(OBJECT_PREFIX, cursor.as_deref(), 10_000)
            .unwrap_or_else(|e| panic!("{} scan failed: {e}", engine.name()));
        let Some((last, _)) = page.last() else { break };
        cursor = Some(last.clone());
        for (key, _) in page {
            seen += 1;
            if sample.len() < cap {
                sample.push(key);
            } else {
                let slot = rng.below(seen);
                if slot < cap {
                    sample[slot] = key;
                }
            }
        }
    }
    assert!(
        !sample.is_empty(),
        "no object keys to look up: write rows first"
    );

    let start = Instant::now();
    for _ in 0..n {
        let key = &sample[rng.below(sample.len())];
        match engine.get(key) {
            Ok(Some(_)) => {}
            Ok(None) => panic!("{}: sampled key vanished", engine.name()),
            Err(e) => panic!("{} read failed: {e}", engine.name()),
        }
    }
    BenchFigure::new(n, start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redb(dir: &tempfile::TempDir) -> BenchEngine {
        BenchEngine::open(EngineKind::Redb, dir.path(), &EngineOptions::default()).unwrap()
    }

    #[test]
    fn writes_and_lookups_on_redb() {
        let dir = tempfile::tempdir().unwrap();
        let engine = redb(&dir);
        for order in [KeyOrder::TimeOrdered, KeyOrder::Random] {
            let figure = bench_raw_batch_writes(&engine, 2_000, 300, order);
            assert_eq!(figure.rows, 2_000);
            assert!(figure.seconds > 0.0 && figure.rows_per_sec > 0.0);
        }
        // Two calls: 4,000 objects, but change-log keys restart at 1.
        let count = |prefix: &[u8]| {
            engine
                .0
                .scan_prefix(prefix, None, usize::MAX)
                .unwrap()
                .len()
        };
        assert_eq!(count(OBJECT_PREFIX), 4_000);
        assert_eq!(count(b"i/mail/"), 4_000);
        assert_eq!(count(b"i/login/"), 4_000);
        assert_eq!(count(b"c/"), 2_000);
        let (_, value) = &engine.0.scan_prefix(OBJECT_PREFIX, None, 1).unwrap()[0];
        assert!((VALUE_BYTES - 10..=VALUE_BYTES + 10).contains(&value.len()));

        let figure = bench_lookups(&engine, 2_000);
        assert_eq!(figure.rows, 2_000);
        assert!(figure.rows_per_sec > 0.0);
    }

    #[test]
    fn time_ordered_ids_sort_in_write_order() {
        let dir = tempfile::tempdir().unwrap();
        let engine = redb(&dir);
        bench_raw_batch_writes(&engine, 2_000, 1_000, KeyOrder::TimeOrdered);
        // Each object's value carries its seq: in key order they must be
        // increasing, which is what makes this the append-only best case.
        let seqs: Vec<u64> = engine
            .0
            .scan_prefix(OBJECT_PREFIX, None, usize::MAX)
            .unwrap()
            .iter()
            .map(|(_, v)| {
                let text = String::from_utf8_lossy(v);
                let rest = text.split_once(r#""seq":"#).unwrap().1;
                rest.split(',').next().unwrap().parse().unwrap()
            })
            .collect();
        assert_eq!(seqs, (1..=2_000).collect::<Vec<u64>>());
    }
}
