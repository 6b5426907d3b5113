//! The daemon benchmark: how fast a dropped file is committed, and how
//! quiet `idsync serve` is when there is nothing to do.
//!
//! `cargo bench -p idsync --bench daemon [-- --drops 200 --runs 3 --idle-seconds 30]`
//!
//! It starts the release binary on a throwaway data dir, drops one-row files
//! the way tools should (write elsewhere, rename in) and times each from the
//! rename to the moment the file lands in `processed/` (committed and
//! reported). Then it leaves the daemon idle and reads the kernel's own
//! accounting of its CPU time, context switches (wake-ups) and memory.
//! Figures are medians over the runs; nothing here is a pass/fail test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Args {
    drops: usize,
    runs: usize,
    idle_seconds: u64,
}

fn args() -> Args {
    let mut a = Args {
        drops: 200,
        runs: 3,
        idle_seconds: 30,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let value = || {
            argv.get(i + 1)
                .and_then(|v| v.parse().ok())
                .expect("a number after the flag")
        };
        match argv[i].as_str() {
            "--drops" => a.drops = value(),
            "--runs" => a.runs = value(),
            "--idle-seconds" => a.idle_seconds = value() as u64,
            _ => {} // cargo bench passes `--bench`
        }
        i += 1;
    }
    a
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Context switches (voluntary and not) per thread id.
fn switches_by_thread(pid: u32) -> std::collections::HashMap<String, u64> {
    let mut by_thread = std::collections::HashMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let n: u64 = status
            .lines()
            .filter_map(|l| {
                l.strip_prefix("voluntary_ctxt_switches:")
                    .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
            })
            .filter_map(|v| v.trim().parse::<u64>().ok())
            .sum();
        by_thread.insert(task.file_name().to_string_lossy().into_owned(), n);
    }
    by_thread
}

/// Wake-ups between two snapshots: growth of the threads that lived
/// through, plus everything of threads born meanwhile. (Threads of the
/// blocking pool exit while idle; their counts leave with them.)
fn wakeups(
    before: &std::collections::HashMap<String, u64>,
    after: &std::collections::HashMap<String, u64>,
) -> u64 {
    after
        .iter()
        .map(|(tid, n)| n - before.get(tid).copied().unwrap_or(0).min(*n))
        .sum()
}

/// User + system CPU seconds of the process (all threads).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    let after_name = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0 // USER_HZ is 100 on Linux
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn start(dir: &Path) -> Child {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("idsync.toml");
    std::fs::write(&config, format!("[admin]\nlisten = \"127.0.0.1:{port}\"\n")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_idsync"))
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start idsync serve");
    let processed = dir.join("data/inbox/users/processed");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !processed.exists() {
        assert!(Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

/// Drop one file and wait until it is in `processed/`.
fn drop_one(dir: &Path, i: usize) -> Duration {
    let staging = dir.join(format!("staging-{i}.csv"));
    std::fs::write(
        &staging,
        format!("status,mail,lastName\nactive,u{i}@example.org,L{i}\n"),
    )
    .unwrap();
    let inbox: PathBuf = dir.join("data/inbox/users");
    let processed = inbox.join("processed");
    let name = format!("drop-{i}.csv");
    let before = std::fs::read_dir(&processed).unwrap().count();
    let started = Instant::now();
    std::fs::rename(&staging, inbox.join(&name)).unwrap();
    // Each finished file adds three entries (file, JSON and CSV report).
    let deadline = started + Duration::from_secs(30);
    loop {
        if std::fs::read_dir(&processed).unwrap().count() >= before + 3 {
            return started.elapsed();
        }
        assert!(Instant::now() < deadline, "drop {i} was not processed");
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn main() {
    let a = args();
    let dir = tempfile::tempdir().unwrap();
    let mut child = start(dir.path());
    let pid = child.id();

    let (mut p50s, mut p99s, mut maxes) = (Vec::new(), Vec::new(), Vec::new());
    let mut n = 0;
    for run in 0..a.runs {
        let mut ms: Vec<f64> = (0..a.drops)
            .map(|_| {
                n += 1;
                drop_one(dir.path(), n).as_secs_f64() * 1000.0
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        let (p50, p99, max) = (
            percentile(&ms, 0.5),
            percentile(&ms, 0.99),
            ms[ms.len() - 1],
        );
        println!(
            "run {}: {} drops, drop-to-committed p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms",
            run + 1,
            a.drops
        );
        p50s.push(p50);
        p99s.push(p99);
        maxes.push(max);
    }

    // Let the last report writes settle, then watch the idle daemon.
    std::thread::sleep(Duration::from_secs(2));
    let (cpu0, switches0) = (cpu_seconds(pid), switches_by_thread(pid));
    std::thread::sleep(Duration::from_secs(a.idle_seconds));
    let (cpu1, switches1) = (cpu_seconds(pid), switches_by_thread(pid));
    let rss = rss_kib(pid);
    let _ = child.kill();
    let _ = child.wait();

    let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
    let (p50, p99) = (median(p50s), median(p99s));
    println!();
    println!(
        "drop-to-committed, one-row file (median of {} runs x {} drops):",
        a.runs, a.drops
    );
    println!(
        "  p50 {p50:7.1} ms   target < 50 ms   {}",
        verdict(p50 < 50.0)
    );
    println!(
        "  p99 {p99:7.1} ms   target < 200 ms  {}",
        verdict(p99 < 200.0)
    );
    println!("  max {:7.1} ms", median(maxes));
    println!("idle over {} s:", a.idle_seconds);
    println!("  CPU time   {:.2} s", cpu1 - cpu0);
    println!(
        "  wake-ups   {} context switches (no systemd watchdog here: the loop's only timer is its 30 s heartbeat)",
        wakeups(&switches0, &switches1)
    );
    println!(
        "  RSS        {:.1} MiB   target < 30 MiB  {}",
        rss as f64 / 1024.0,
        verdict(rss < 30 * 1024)
    );
}
