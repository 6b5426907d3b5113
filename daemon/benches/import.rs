//! Import throughput, end to end, next to its two ceilings.
//!
//! Why this bench exists: the import promises ≥ 50,000 rows/s into a fresh
//! store, ≥ 150,000 rows/s for an unchanged re-import and a peak RSS under
//! 150 MiB with redb, the default engine. A single rows/s figure says little
//! on its own, so it is printed beside what bounds it from above: how fast
//! the `csv` crate alone reads the same file (the parsing ceiling) and how
//! fast the storage engine alone takes the same number of rows in atomic
//! 1,000-row batches (the store's ceiling, `store::engine_bench`).
//!
//! The import runs as the real release `idsync` binary in a child process,
//! so start-up, the report files and the fsyncs are all counted, and its
//! peak RSS is its own (read with `/usr/bin/time`), not the bench's.
//!
//! Run: `cargo bench -p idsync --bench import [-- --rows N --sled-rows M
//! --runs K --engines redb,sled]`. Each figure is the median of K runs
//! (min and max beside it). A missed target is reported, never an error: a
//! failed import is. Without cargo's `--bench` flag (`cargo test
//! --all-targets`) it runs as a quick smoke test on a few thousand rows.
//!
//! The child inherits `IDSYNC_*` variables (e.g. `IDSYNC_STORE__CACHE_MB`),
//! and the in-process engine figures use the same engine options.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use idsync::config::Config;
use idsync_store::engine_bench::{bench_lookups, bench_raw_batch_writes, BenchEngine, KeyOrder};
use idsync_store::{EngineKind, EngineOptions};

/// The release `idsync` binary, built by cargo for this bench. It is copied
/// to the temp dir first: a concurrent `cargo build --release` must not swap
/// it between runs.
const IDSYNC: &str = env!("CARGO_BIN_EXE_idsync");

/// GNU time, for the child's peak RSS (Debian/Ubuntu package `time`).
const GNU_TIME: &str = "/usr/bin/time";

/// Rows per atomic batch in the raw engine figures (the importer's default).
const BATCH_ROWS: usize = 1_000;

const HEADER: &str = "status,loginName,mail,firstName,lastName,displayName,language,validFrom,validTo,spCustomAttribute1";

// The targets.
const IMPORT_MIN_ROWS_PER_SEC: f64 = 50_000.0;
const IMPORT_MIN_SHARE_OF_RAW: f64 = 0.60;
const REIMPORT_MIN_ROWS_PER_SEC: f64 = 150_000.0;
const PEAK_RSS_MAX_MIB: f64 = 150.0;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nbench import FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args = Args::parse(std::env::args().skip(1))?;
    let opts = Config::load(None)
        .context("configuration from IDSYNC_* variables")?
        .engine_options()?;
    let tmp = tempfile::Builder::new()
        .prefix("idsync-bench-import-")
        .tempdir()
        .context("creating the temp dir")?;
    if args.smoke {
        println!("smoke mode (no --bench flag): tiny sizes, figures are meaningless");
    }
    if !Path::new(GNU_TIME).exists() {
        println!("note: {GNU_TIME} not found, peak RSS not measured (apt-get install time)");
    }

    let idsync = tmp.path().join("idsync");
    std::fs::copy(IDSYNC, &idsync).with_context(|| format!("copying {IDSYNC}"))?;
    let bench = Bench {
        args,
        opts,
        tmp: tmp.path().to_owned(),
        idsync,
    };

    let mut rows_out = Vec::new();
    let main_csv = UsersCsv::generate(&bench.tmp, bench.args.rows)?;
    rows_out.push(parse_ceiling(&main_csv, bench.args.runs)?);
    for &engine in &bench.args.engines {
        let n = bench.args.rows_for(engine);
        let csv = if n == main_csv.rows {
            main_csv.clone()
        } else {
            UsersCsv::generate(&bench.tmp, n)?
        };
        rows_out.extend(engine_section(&bench, engine, &csv)?);
    }

    print_report(&bench.args, &main_csv, &bench.opts, &rows_out);
    // `tmp` is removed when dropped, on success and on `?` alike.
    Ok(())
}

/// What every measurement needs.
struct Bench {
    args: Args,
    /// The engines' options, from the same `IDSYNC_*` variables the child sees.
    opts: EngineOptions,
    /// Inside the temp dir: data dirs, CSV files, the binary.
    tmp: PathBuf,
    /// The copy of the `idsync` binary that runs the imports.
    idsync: PathBuf,
}

// ---------------------------------------------------------------- arguments

/// Rows sled is measured on unless `--sled-rows` says otherwise (capped at
/// `--rows`): sled 0.34's memory grows by some KB with every row written.
const SLED_DEFAULT_ROWS: u64 = 200_000;

#[derive(Debug)]
struct Args {
    rows: u64,
    sled_rows: u64,
    runs: usize,
    engines: Vec<EngineKind>,
    /// Run by `cargo test`, not `cargo bench`.
    smoke: bool,
}

impl Args {
    fn parse(mut it: impl Iterator<Item = String>) -> Result<Self> {
        let (mut rows, mut sled_rows, mut runs) = (None, None, None);
        let mut engines = vec![EngineKind::Redb, EngineKind::Sled];
        let mut smoke = true;
        while let Some(flag) = it.next() {
            let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--bench" => smoke = false,
                "--rows" => rows = Some(parse_count(&value()?)?),
                "--sled-rows" => sled_rows = Some(parse_count(&value()?)?),
                "--runs" => runs = Some(parse_count(&value()?)? as usize),
                "--engines" => engines = parse_engines(&value()?)?,
                "-h" | "--help" => {
                    println!("usage: cargo bench -p idsync --bench import -- [--rows N] [--sled-rows N] [--runs K] [--engines redb,sled]");
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other:?} (try --help)"),
            }
        }
        // `cargo test --all-targets` runs benches without `--bench`: keep
        // that quick.
        let (default_rows, default_runs) = if smoke { (2_000, 1) } else { (1_000_000, 3) };
        let rows = rows.unwrap_or(default_rows);
        let args = Args {
            rows,
            sled_rows: sled_rows.unwrap_or(rows.min(SLED_DEFAULT_ROWS)),
            runs: runs.unwrap_or(default_runs),
            engines,
            smoke,
        };
        ensure!(
            args.rows > 0 && args.sled_rows > 0,
            "row counts must be > 0"
        );
        ensure!(args.runs > 0, "--runs must be > 0");
        Ok(args)
    }

    fn rows_for(&self, engine: EngineKind) -> u64 {
        match engine {
            EngineKind::Redb | EngineKind::Postgres => self.rows,
            EngineKind::Sled => self.sled_rows,
        }
    }
}

/// `1000000`, `1_000_000` or `1,000,000`.
fn parse_count(s: &str) -> Result<u64> {
    s.replace(['_', ','], "")
        .parse()
        .with_context(|| format!("{s:?} is not a count"))
}

fn parse_engines(s: &str) -> Result<Vec<EngineKind>> {
    s.split(',')
        .map(|name| match name.trim() {
            "redb" => Ok(EngineKind::Redb),
            "sled" => Ok(EngineKind::Sled),
            // Needs IDSYNC_STORE__POSTGRES__URL (docs/operations.md).
            "postgres" => Ok(EngineKind::Postgres),
            other => bail!("unknown engine {other:?} (redb, sled or postgres)"),
        })
        .collect()
}

// ---------------------------------------------------------------- the file

/// A generated users file.
#[derive(Debug, Clone)]
struct UsersCsv {
    path: PathBuf,
    rows: u64,
    bytes: u64,
}

const FIRST_NAMES: [&str; 8] = [
    "Anna", "Lukas", "Marie", "Jonas", "Sophie", "Felix", "Lea", "Paul",
];
const LAST_NAMES: [&str; 8] = [
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
];

impl UsersCsv {
    /// Write `rows` valid users with unique mails and logins, streamed.
    fn generate(dir: &Path, rows: u64) -> Result<Self> {
        let path = dir.join(format!("users-{rows}.csv"));
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        writeln!(out, "{HEADER}")?;
        for i in 0..rows {
            write_user_row(&mut out, i)?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        let bytes = std::fs::metadata(&path)?.len();
        Ok(Self { path, rows, bytes })
    }
}

fn write_user_row(out: &mut impl Write, i: u64) -> std::io::Result<()> {
    let status = if i % 20 == 19 { "inactive" } else { "active" };
    let first = FIRST_NAMES[(i % 8) as usize];
    let last = LAST_NAMES[(i / 8 % 8) as usize];
    let cost_center = 4000 + i % 500;
    writeln!(
        out,
        "{status},user{i},user{i}@example.org,{first},{last},{first} {last} ({i}),de-DE,\
         20240101000000Z,20341231235959Z,CC-{cost_center}"
    )
}

/// The `csv` crate alone over the file: the ceiling for parsing.
fn parse_ceiling(csv: &UsersCsv, runs: usize) -> Result<Row> {
    let mut rates = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let mut reader = csv::Reader::from_path(&csv.path)?;
        let mut record = csv::StringRecord::new();
        let mut n = 0u64;
        while reader.read_record(&mut record)? {
            n += 1;
        }
        ensure!(
            n == csv.rows,
            "csv parse read {n} records, expected {}",
            csv.rows
        );
        rates.push(per_sec(n, start.elapsed().as_secs_f64()));
    }
    Ok(Row::new(
        "csv crate parse (ceiling)",
        csv.rows,
        Unit::RowsPerSec,
        &rates,
    ))
}

// ---------------------------------------------------------------- one engine

/// Every figure of one engine: the imports, then the raw engine.
fn engine_section(bench: &Bench, engine: EngineKind, csv: &UsersCsv) -> Result<Vec<Row>> {
    let (args, opts, tmp) = (&bench.args, &bench.opts, bench.tmp.as_path());
    let name = engine.as_str();
    let n = csv.rows;
    let mut import = Samples::default();
    let mut reimport = Samples::default();
    for run in 1..=args.runs {
        eprintln!("{name}: import run {run}/{} ({n} rows)", args.runs);
        let data_dir = tmp.join(format!("{name}-data-{run}"));
        let first = run_import(&bench.idsync, engine, &data_dir, csv, Expect::Created)?;
        let second = run_import(&bench.idsync, engine, &data_dir, csv, Expect::Unchanged)?;
        std::fs::remove_dir_all(&data_dir)?;
        import.push(n, &first);
        reimport.push(n, &second);
    }

    eprintln!("{name}: raw engine writes ({n} rows)");
    let raw = raw_write_rates(engine, n, KeyOrder::TimeOrdered, opts, args.runs, tmp)?;
    let lookups = match engine {
        EngineKind::Redb => raw_lookup_rates(engine, n, opts, args.runs, tmp)?,
        EngineKind::Sled | EngineKind::Postgres => Vec::new(),
    };
    let random = match engine {
        EngineKind::Redb => raw_write_rates(engine, n, KeyOrder::Random, opts, args.runs, tmp)?,
        EngineKind::Sled | EngineKind::Postgres => Vec::new(),
    };

    let rss_target = engine == EngineKind::Redb;
    let raw_row = Row::new(
        format!("{name} raw writes, time-ordered"),
        n,
        Unit::RowsPerSec,
        &raw,
    );
    let import_row = Row::new(
        format!("{name} import, fresh store"),
        n,
        Unit::RowsPerSec,
        &import.rates,
    )
    .target_min(IMPORT_MIN_ROWS_PER_SEC);
    let share = import_row.stats.median / raw_row.stats.median;
    let mut rows = vec![
        import_row,
        Row::new(
            format!("{name} import, peak RSS"),
            n,
            Unit::MiB,
            &import.rss_mib,
        )
        .target_max_if(rss_target, PEAK_RSS_MAX_MIB),
        Row::new(
            format!("{name} re-import, unchanged"),
            n,
            Unit::RowsPerSec,
            &reimport.rates,
        )
        .target_min(REIMPORT_MIN_ROWS_PER_SEC),
        Row::new(
            format!("{name} re-import, peak RSS"),
            n,
            Unit::MiB,
            &reimport.rss_mib,
        )
        .target_max_if(rss_target, PEAK_RSS_MAX_MIB),
        raw_row,
        Row::new(
            format!("{name} import / raw writes"),
            n,
            Unit::Percent,
            &[share],
        )
        .target_min(IMPORT_MIN_SHARE_OF_RAW),
    ];
    if !random.is_empty() {
        rows.push(Row::new(
            format!("{name} raw writes, random keys"),
            n,
            Unit::RowsPerSec,
            &random,
        ));
    }
    if !lookups.is_empty() {
        rows.push(Row::new(
            format!("{name} point lookups"),
            n,
            Unit::LookupsPerSec,
            &lookups,
        ));
    }
    Ok(rows)
}

/// Per-run figures of one kind of import.
#[derive(Default)]
struct Samples {
    rates: Vec<f64>,
    rss_mib: Vec<f64>,
}

impl Samples {
    fn push(&mut self, rows: u64, run: &ChildRun) {
        self.rates.push(per_sec(rows, run.seconds));
        if let Some(kib) = run.peak_rss_kib {
            self.rss_mib.push(kib as f64 / 1024.0);
        }
    }
}

/// What the summary line of an import must say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Every row new.
    Created,
    /// Every row already there, as it is.
    Unchanged,
}

/// One child process run.
struct ChildRun {
    seconds: f64,
    peak_rss_kib: Option<u64>,
}

/// `idsync --data-dir DIR import users FILE` with `engine`, timed; fails
/// unless it exits 0 with the expected summary.
fn run_import(
    idsync: &Path,
    engine: EngineKind,
    data_dir: &Path,
    csv: &UsersCsv,
    expect: Expect,
) -> Result<ChildRun> {
    let rss_file = data_dir.with_extension("rss");
    let mut cmd = if Path::new(GNU_TIME).exists() {
        let mut c = Command::new(GNU_TIME);
        c.args(["-f", "%M", "-o"]).arg(&rss_file).arg(idsync);
        c
    } else {
        Command::new(idsync)
    };
    cmd.arg("--data-dir")
        .arg(data_dir)
        .args(["import", "users"])
        .arg(&csv.path)
        .env("IDSYNC_STORE__ENGINE", engine.as_str())
        .env_remove("IDSYNC_CONFIG");

    let start = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("running {}", idsync.display()))?;
    let seconds = start.elapsed().as_secs_f64();

    let stdout = String::from_utf8_lossy(&out.stdout);
    let want = match expect {
        Expect::Created => format!(
            ": Accepted: {} created, 0 updated, 0 unchanged, 0 rejected",
            csv.rows
        ),
        Expect::Unchanged => format!(
            ": Accepted: 0 created, 0 updated, {} unchanged, 0 rejected",
            csv.rows
        ),
    };
    if !out.status.success() || !stdout.contains(&want) {
        bail!(
            "{} import ({expect:?}) of {} rows: {}\nexpected a summary containing {want:?}\n--- stdout\n{stdout}--- stderr\n{}",
            engine.as_str(),
            csv.rows,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let peak_rss_kib = read_peak_rss(&rss_file)?;
    Ok(ChildRun {
        seconds,
        peak_rss_kib,
    })
}

/// GNU time's `%M` (KiB); its last line, after any "exited with" notice.
fn read_peak_rss(file: &Path) -> Result<Option<u64>> {
    if !file.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(file)?;
    std::fs::remove_file(file)?;
    let last = text.lines().last().unwrap_or("").trim();
    let kib = last
        .parse()
        .with_context(|| format!("{GNU_TIME} wrote {text:?}, not a peak RSS"))?;
    Ok(Some(kib))
}

/// The engine alone: `rows` rows of four keys in 1,000-row atomic batches,
/// each run on a fresh store.
fn raw_write_rates(
    engine: EngineKind,
    rows: u64,
    order: KeyOrder,
    opts: &EngineOptions,
    runs: usize,
    tmp: &Path,
) -> Result<Vec<f64>> {
    let mut rates = Vec::with_capacity(runs);
    for run in 1..=runs {
        let dir = tmp.join(format!("{}-raw-{order:?}-{run}", engine.as_str()));
        let store = BenchEngine::open(engine, &dir, opts)?;
        rates.push(bench_raw_batch_writes(&store, rows, BATCH_ROWS, order).rows_per_sec);
        drop(store);
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(rates)
}

/// Point lookups of random object keys in a store of `rows` rows
/// (time-ordered, as idsync writes them): `rows` lookups a run.
fn raw_lookup_rates(
    engine: EngineKind,
    rows: u64,
    opts: &EngineOptions,
    runs: usize,
    tmp: &Path,
) -> Result<Vec<f64>> {
    let dir = tmp.join(format!("{}-lookups", engine.as_str()));
    let store = BenchEngine::open(engine, &dir, opts)?;
    bench_raw_batch_writes(&store, rows, BATCH_ROWS, KeyOrder::TimeOrdered);
    let rates = (0..runs)
        .map(|_| bench_lookups(&store, rows).rows_per_sec)
        .collect();
    drop(store);
    std::fs::remove_dir_all(&dir)?;
    Ok(rates)
}

fn per_sec(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        f64::INFINITY
    }
}

// ---------------------------------------------------------------- the table

#[derive(Debug, Clone, Copy)]
enum Unit {
    RowsPerSec,
    LookupsPerSec,
    MiB,
    Percent,
}

impl Unit {
    fn show(self, v: f64) -> String {
        match self {
            Unit::RowsPerSec => format!("{} rows/s", thousands(v)),
            Unit::LookupsPerSec => format!("{} /s", thousands(v)),
            Unit::MiB => format!("{v:.1} MiB"),
            Unit::Percent => format!("{:.0} %", v * 100.0),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Stats {
    median: f64,
    min: f64,
    max: f64,
}

impl Stats {
    /// `None` for no samples (e.g. RSS without GNU time).
    fn of(samples: &[f64]) -> Option<Self> {
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => s[n / 2],
            _ => (s[n / 2 - 1] + s[n / 2]) / 2.0,
        };
        Some(Self {
            median,
            min: s[0],
            max: s[n - 1],
        })
    }
}

/// A target and whether the median meets it.
struct Target {
    text: String,
    pass: bool,
}

/// One line of the table.
struct Row {
    label: String,
    rows: u64,
    unit: Unit,
    runs: usize,
    stats: Stats,
    measured: bool,
    target: Option<Target>,
}

impl Row {
    fn new(label: impl Into<String>, rows: u64, unit: Unit, samples: &[f64]) -> Self {
        let stats = Stats::of(samples);
        Self {
            label: label.into(),
            rows,
            unit,
            runs: samples.len(),
            stats: stats.unwrap_or(Stats {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            }),
            measured: stats.is_some(),
            target: None,
        }
    }

    fn target_min(mut self, min: f64) -> Self {
        self.target = Some(Target {
            text: format!("≥ {}", self.unit.show(min)),
            pass: self.stats.median >= min,
        });
        self
    }

    fn target_max_if(mut self, applies: bool, max: f64) -> Self {
        if applies {
            self.target = Some(Target {
                text: format!("< {}", self.unit.show(max)),
                pass: self.stats.median < max,
            });
        }
        self
    }

    fn print(&self) {
        let cell = |v: f64| {
            if self.measured {
                self.unit.show(v)
            } else {
                "not measured".into()
            }
        };
        let (min, max) = if self.runs > 1 {
            (cell(self.stats.min), cell(self.stats.max))
        } else {
            (String::new(), String::new())
        };
        let (target, verdict) = match &self.target {
            Some(t) if self.measured => (t.text.as_str(), if t.pass { "PASS" } else { "MISS" }),
            Some(t) => (t.text.as_str(), "-"),
            None => ("", ""),
        };
        print_columns([
            &self.label,
            &thousands(self.rows as f64),
            &cell(self.stats.median),
            &min,
            &max,
            target,
            verdict,
        ]);
    }
}

fn print_report(args: &Args, csv: &UsersCsv, opts: &EngineOptions, rows: &[Row]) {
    println!();
    println!(
        "idsync import benchmark: each figure is the median of {} run(s), min and max beside it",
        args.runs
    );
    println!(
        "users CSV: {} rows, {:.1} MiB (the `rows` column says which row count each figure used)",
        thousands(csv.rows as f64),
        csv.bytes as f64 / (1024.0 * 1024.0),
    );
    if args.engines.contains(&EngineKind::Sled) && args.sled_rows != args.rows {
        println!(
            "sled is measured on {} rows only (--sled-rows): its memory grows with every row written",
            thousands(args.sled_rows as f64)
        );
    }
    println!(
        "engines: cache {} MiB, durable; raw writes: 4 keys a row (two ~300-byte values), atomic {}-row batches",
        opts.cache_bytes / (1024 * 1024),
        thousands(BATCH_ROWS as f64),
    );
    println!();
    print_columns([
        "figure", "rows", "median", "min", "max", "target", "verdict",
    ]);
    println!("{}", "-".repeat(129));
    for row in rows {
        row.print();
    }
    println!();
    println!("import = `idsync import users` as a child process, wall time, start-up and report included.");
    println!("import / raw writes is a ratio of medians. Peak RSS is the child's (GNU time %M); its target applies to redb, the default.");
    if !Path::new(GNU_TIME).exists() {
        println!("peak RSS not measured: install GNU time ({GNU_TIME}, apt package `time`).");
    }
}

/// One line of the table: figure, rows, median, min, max, target, verdict.
fn print_columns(c: [&str; 7]) {
    let line = format!(
        "{:<34} {:>10} {:>17} {:>17} {:>17}  {:<17} {}",
        c[0], c[1], c[2], c[3], c[4], c[5], c[6]
    );
    println!("{}", line.trim_end());
}

/// `1234567.8` → `1,234,568`.
fn thousands(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let digits = format!("{:.0}", v.abs());
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 {
        out.insert(0, '-');
    }
    out
}
