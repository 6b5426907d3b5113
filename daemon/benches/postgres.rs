//! The PostgreSQL benchmark (issue 18): the release `idsync` on its
//! embedded store (redb) and on PostgreSQL, side by side in one run, with
//! PostgreSQL's own ceiling for the same rows as the reference.
//!
//! `cargo bench -p idsync --bench postgres [-- --users 1000000 --runs 3 --seconds 10 --connections 64 --pool 16]`
//!
//! `--pool` is each daemon's `store.postgres.pool_size` (the default, 16,
//! when not given).
//!
//! It starts a throwaway PostgreSQL cluster (Debian's `postgresql`, as the
//! tests do, but with the default durability: a commit waits for the
//! disk) and measures, `--runs` times each, medians printed:
//! - **import**: `idsync import users` of `--users` users into a fresh
//!   redb store, then into a fresh database;
//! - **COPY**: PostgreSQL's `COPY` of the very keys and values the first
//!   import wrote (dumped from its table) into a fresh table with the same
//!   primary key: what PostgreSQL itself does with those rows at best;
//! - **SCIM** on the daemon over each store: GET `/Users/{id}` (ids spread
//!   over all users) and POST `/Users` (durable creates), with wrk; on
//!   postgres also over two replicas on the one database, the connections
//!   dealt round-robin between them (two wrk processes at once, half the
//!   connections each: the req/s add up, the p99 is the worse one's), run
//!   for run in turn with one replica, and each pair's ratio printed;
//! - **pgbench**: PostgreSQL's own rate for the transaction a SCIM POST
//!   makes (the batch's advisory lock and head read, one multi-row upsert
//!   of the object, its indexes, the event and the head, the notify), at
//!   as many clients as wrk has connections.
//!
//! PostgreSQL, idsync and wrk share the machine's cores.

mod common;

use std::path::Path;
use std::time::Instant;

use common::{by_id_script, ensure_wrk, list, measure, median, post_script, some_ids, start, stop};
use idsync_store::test_postgres::TestPostgres;

struct Args {
    users: usize,
    runs: usize,
    seconds: u64,
    connections: usize,
    /// Each daemon's `store.postgres.pool_size` (None: the default).
    pool: Option<usize>,
}

fn args() -> Args {
    let mut a = Args {
        users: 1_000_000,
        runs: 3,
        seconds: 10,
        connections: 64,
        pool: None,
    };
    let argv: Vec<String> = std::env::args().collect();
    for (i, flag) in argv.iter().enumerate() {
        let number = || {
            argv.get(i + 1)
                .and_then(|v| v.parse::<usize>().ok())
                .expect("a number after the flag")
        };
        match flag.as_str() {
            "--users" => a.users = number(),
            "--runs" => a.runs = number(),
            "--seconds" => a.seconds = number() as u64,
            "--connections" => a.connections = number(),
            "--pool" => a.pool = Some(number()),
            _ => {} // cargo bench passes `--bench`
        }
    }
    a
}

/// `sql` on `database` through psql.
fn psql(pg: &TestPostgres, database: &str, sql: &str) {
    let ok = pg
        .psql(database)
        .args(["-c", sql])
        .status()
        .expect("run psql")
        .success();
    assert!(ok, "psql failed: {sql}");
}

/// One line of figures: the median of `seconds` and its rows per second.
fn report_import(label: &str, users: usize, seconds: &[f64]) -> f64 {
    let m = median(seconds.to_vec());
    let runs: Vec<String> = seconds.iter().map(|s| format!("{s:.1}")).collect();
    println!(
        "{label:<34} {m:>7.1} s  {:>9.0} rows/s   (runs: {} s)",
        users as f64 / m,
        runs.join(", ")
    );
    m
}

fn main() {
    let a = args();
    ensure_wrk();
    let idsync = Path::new(env!("CARGO_BIN_EXE_idsync"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pg = TestPostgres::start_durable();
    let pg_pid = pg.pid().expect("the cluster runs");
    let csv = dir.join("users.csv");
    common::write_users_csv(&csv, a.users);
    println!(
        "{} users, {} runs each (medians); SCIM: wrk -t2 -c{} -d{}s",
        a.users, a.runs, a.connections, a.seconds
    );

    let mut redb = Vec::new();
    let mut postgres = Vec::new();
    for run in 0..a.runs {
        let data = dir.join(format!("redb-{run}/data"));
        redb.push(common::import(idsync, &data, &csv, &[]));
        psql(&pg, "postgres", &format!("CREATE DATABASE run{run}"));
        let env = [
            ("IDSYNC_STORE__ENGINE", "postgres".to_string()),
            (
                "IDSYNC_STORE__POSTGRES__URL",
                pg.url_of(&format!("run{run}")),
            ),
        ];
        let data = dir.join(format!("pg-{run}/data"));
        postgres.push(common::import(idsync, &data, &csv, &env));
    }
    report_import("import, redb", a.users, &redb);
    let on_postgres = report_import("import, postgres", a.users, &postgres);

    // PostgreSQL's ceiling: the same keys and values, by COPY.
    let dump = dir.join("kv.copy");
    psql(
        &pg,
        "run0",
        &format!("\\copy idsync_kv TO '{}'", dump.display()),
    );
    let mut copy = Vec::new();
    for run in 0..a.runs {
        let db = format!("copy{run}");
        psql(&pg, "postgres", &format!("CREATE DATABASE {db}"));
        psql(
            &pg,
            &db,
            "CREATE TABLE idsync_kv (k bytea PRIMARY KEY, v bytea NOT NULL)",
        );
        let started = Instant::now();
        psql(
            &pg,
            &db,
            &format!("\\copy idsync_kv FROM '{}'", dump.display()),
        );
        copy.push(started.elapsed().as_secs_f64());
    }
    let by_copy = report_import("COPY of the same rows, postgres", a.users, &copy);
    println!(
        "import on postgres at {:.0}% of COPY's rate",
        100.0 * by_copy / on_postgres
    );

    // SCIM over each store: the last run's redb store and database.
    let last = a.runs - 1;
    let stores = [
        (
            "redb",
            dir.join(format!("redb-{last}")),
            "[store]".to_string(),
        ),
        (
            "postgres",
            dir.join(format!("pg-{last}")),
            format!(
                "[store]\nengine = \"postgres\"\n[store.postgres]\nurl = \"{}\"\n{}",
                pg.url_of(&format!("run{last}")),
                a.pool
                    .map_or(String::new(), |n| format!("pool_size = {n}\n"))
            ),
        ),
    ];
    for (label, dir, store) in &stores {
        let (child, port) = start(dir, idsync, store, a.connections);
        let ids = some_ids(port, a.users);
        if *label == "postgres" {
            let first = Replica {
                dir,
                port,
                pid: child.id(),
            };
            one_and_two_replicas(&first, pg_pid, idsync, store, &ids, &a);
            stop(child);
            continue;
        }
        for (name, script) in [
            ("GET /Users/{id}", by_id_script(dir, &ids)),
            ("POST /Users (durable)", post_script(dir)),
        ] {
            let ((rps, p99, runs, errors), cores) = where_time_goes(pg_pid, &[child.id()], || {
                measure(port, &script, a.seconds, (a.connections, 2), a.runs)
            });
            report_scim(label, name, (rps, p99, &runs, errors));
            println!("{cores}");
        }
        stop(child);
    }
    head_row_reference(&pg, &a);
}

/// CPU seconds (user and system, all threads) the processes `pids` and
/// the children of `parents` have used so far, from `/proc`.
fn cpu_seconds(pids: &[u32], parents: &[u32]) -> f64 {
    const TICKS: f64 = 100.0; // USER_HZ on Linux
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // After the command name: state, ppid, …, utime (14th), stime (15th).
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let number = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let ppid = number(1) as u32;
        if pids.contains(&pid) || parents.contains(&ppid) {
            ticks += number(11) + number(12);
        }
    }
    ticks as f64 / TICKS
}

/// Run `measure` and say where the machine's two cores went meanwhile:
/// the share of PostgreSQL (the postmaster `pg` and its backends), of the
/// idsync processes `idsync`, and of the rest (wrk, the kernel's network
/// work, idle).
fn where_time_goes<T>(pg: u32, idsync: &[u32], measure: impl FnOnce() -> T) -> (T, String) {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
    let (pg0, id0) = (cpu_seconds(&[pg], &[pg]), cpu_seconds(idsync, &[]));
    let started = Instant::now();
    let out = measure();
    let capacity = started.elapsed().as_secs_f64() * cores;
    let postgres = 100.0 * (cpu_seconds(&[pg], &[pg]) - pg0) / capacity;
    let ours = 100.0 * (cpu_seconds(idsync, &[]) - id0) / capacity;
    let rest = (100.0 - postgres - ours).max(0.0);
    let shares = format!(
        "     cores: postgres {postgres:.0}%, idsync {ours:.0}%, wrk and the rest {rest:.0}%"
    );
    (out, shares)
}

fn report_scim(label: &str, name: &str, (rps, p99, runs, errors): (f64, f64, &[f64], u64)) {
    println!(
        "SCIM {label:<13} {name:<24} {rps:>9.0} req/s   p99 {p99:>8.2} ms   (runs: {}; non-2xx: {errors})",
        list(runs)
    );
}

/// A daemon running for the benchmark: its directory, SCIM port, pid.
struct Replica<'a> {
    dir: &'a Path,
    port: u16,
    pid: u32,
}

/// SCIM on one replica and on two of one database, run for run in turn
/// (one, two, one, two…) so that the machine's drift between runs weighs
/// on both alike: the daemon `first` alone (wrk -t2, all connections),
/// then `first` and a second daemon on the same `store`, each script's
/// connections dealt between the two (a wrk -t1 on each, half the
/// connections each: the same client threads and connections in all).
fn one_and_two_replicas(
    first: &Replica<'_>,
    pg_pid: u32,
    idsync: &Path,
    store: &str,
    ids: &[String],
    a: &Args,
) {
    let (dir, first_port) = (first.dir, first.port);
    let second_dir = dir.with_file_name("pg-second");
    std::fs::create_dir_all(&second_dir).unwrap();
    let (second, second_port) = start(&second_dir, idsync, store, a.connections);
    let half = (a.connections / 2).max(1);
    let by_id = by_id_script(dir, ids);
    for (name, scripts) in [
        ("GET /Users/{id}", [by_id.clone(), by_id]),
        (
            "POST /Users (durable)",
            ["one", "two"].map(|tag| common::post_script_tagged(dir, tag)),
        ),
    ] {
        let [one_script, other] = &scripts;
        common::wrk(first_port, one_script, 2, half, 1);
        common::wrk(second_port, other, 2, half, 1);
        let (mut one, mut two) = (Turns::default(), Turns::default());
        for _ in 0..a.runs {
            let ((), cores) = where_time_goes(pg_pid, &[first.pid], || {
                let f = common::wrk(first_port, one_script, a.seconds, a.connections, 2);
                one.add(f.rps, f.p99_ms, f.errors);
            });
            one.cores.push(cores);
            let ((), cores) = where_time_goes(pg_pid, &[first.pid, second.id()], || {
                let (f, g) = std::thread::scope(|s| {
                    let f = s.spawn(|| common::wrk(first_port, one_script, a.seconds, half, 1));
                    let g = s.spawn(|| common::wrk(second_port, other, a.seconds, half, 1));
                    (f.join().unwrap(), g.join().unwrap())
                });
                two.add(f.rps + g.rps, f.p99_ms.max(g.p99_ms), f.errors + g.errors);
            });
            two.cores.push(cores);
        }
        for (label, turns) in [("postgres", &one), ("postgres ×2", &two)] {
            let (m, p) = (median(turns.rps.clone()), median(turns.p99.clone()));
            report_scim(label, name, (m, p, &turns.rps, turns.errors));
            // The middle run's shares (the runs' own are alike).
            println!("{}", turns.cores[turns.cores.len() / 2]);
        }
        let ratios: Vec<String> = two
            .rps
            .iter()
            .zip(&one.rps)
            .map(|(t, o)| format!("{:.2}", t / o))
            .collect();
        println!(
            "     two replicas / one, run by run: {} (median {:.2})",
            ratios.join(", "),
            median(two.rps.iter().zip(&one.rps).map(|(t, o)| t / o).collect())
        );
    }
    stop(second);
}

/// The runs of one setup in [`one_and_two_replicas`].
#[derive(Default)]
struct Turns {
    rps: Vec<f64>,
    p99: Vec<f64>,
    errors: u64,
    cores: Vec<String>,
}

impl Turns {
    fn add(&mut self, rps: f64, p99: f64, errors: u64) {
        self.rps.push(rps);
        self.p99.push(p99);
        self.errors += errors;
    }
}

/// pgbench of the transaction one SCIM POST makes on postgres (see the
/// engine's `write`), on a copy of the table's shape.
fn head_row_reference(pg: &TestPostgres, a: &Args) {
    psql(pg, "postgres", "CREATE DATABASE headrow");
    psql(
        pg,
        "headrow",
        "CREATE TABLE idsync_kv (k bytea PRIMARY KEY, v bytea NOT NULL); \
         INSERT INTO idsync_kv VALUES ('s/head'::bytea, int8send(0))",
    );
    let script = std::env::temp_dir().join(format!("idsync-headrow-{}.sql", std::process::id()));
    std::fs::write(&script, HEAD_ROW).unwrap();
    let clients = a.connections.to_string();
    let seconds = a.seconds.to_string();
    let mut tps = Vec::new();
    for _ in 0..a.runs {
        let out = pg
            .pgbench("headrow")
            .args(["-n", "-j", "2", "-c", &clients, "-T", &seconds, "-f"])
            .arg(&script)
            .output()
            .expect("run pgbench");
        let text = String::from_utf8_lossy(&out.stdout);
        let figure = text
            .lines()
            .find_map(|l| l.strip_prefix("tps = "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| {
                panic!(
                    "no tps in pgbench's output:\n{text}{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        tps.push(figure);
    }
    std::fs::remove_file(&script).ok();
    println!(
        "pgbench, a SCIM POST's transaction, {clients} clients {:>9.0} tps     (runs: {})",
        median(tps.clone()),
        list(&tps)
    );
}

/// The transaction of one SCIM POST on postgres: the lock batches with
/// expectations take, the head read, the upsert of the user, its three
/// index entries, its event and the head, the notify (a user of about
/// 400 bytes, an event of about 300, as the daemon writes).
const HEAD_ROW: &str = "\\set n random(1, 1000000000)
BEGIN;
SELECT pg_advisory_xact_lock(115880154984036);
SELECT v FROM idsync_kv WHERE k = 's/head'::bytea;
INSERT INTO idsync_kv (k, v) SELECT * FROM UNNEST(
  ARRAY[('o/u/' || :n)::bytea, ('i/u/mail/' || :n)::bytea, ('i/u/login/' || :n)::bytea,
        ('i/u/ext/' || :n)::bytea, ('c/' || :n)::bytea, 's/head'::bytea],
  ARRAY[convert_to(repeat('u', 400), 'UTF8'), int8send(:n), int8send(:n), int8send(:n),
        convert_to(repeat('e', 300), 'UTF8'), int8send(:n)])
  ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v;
SELECT pg_notify('idsync_head', :n::text);
COMMIT;
";
