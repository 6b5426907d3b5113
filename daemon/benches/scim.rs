//! The SCIM benchmark: the release `idsync serve` with a million users,
//! driven by `wrk` (Debian's package, installed here when missing) over
//! keep-alive connections.
//!
//! `cargo bench -p idsync --bench scim [-- --users 1000000 --runs 3 --seconds 10 --connections 64 --threads 2 --cache-mb 1024 --keep DIR --only NAME --reference BIN]`
//!
//! It loads the users with `idsync import` (a CSV file, once; `--keep DIR`
//! reuses a loaded data dir across invocations; `--only` runs the cases
//! whose name contains NAME, and may be repeated), starts the daemon with
//! the SCIM listener and `store.cache_mb` (1024 by default: a million
//! users take about 1 GB of store), then measures each request `--runs`
//! times after a short warm-up, and prints the medians of req/s and p99.
//! `--reference BIN` measures another build (an earlier commit's
//! `target/release/idsync`) the same way in the same run, on its own copy
//! of the users, both daemons running and their runs taken in turn (run 1
//! of this build, run 1 of the reference, run 2, …), so that the
//! machine's drift falls on both alike. The requests:
//! GET `/Users/{id}`, GET `/Users?filter=userName eq "…"`, pages of 100
//! users at any depth (GET `/Users?startIndex=N&count=100` with N anywhere
//! in the million, and the cursor variant `cursor=<id>`, each also over
//! 16 connections, as an identity provider's import pages), and last (it
//! adds users) POST `/Users` (durable creates: each 201 follows its group
//! commit). `--threads` is wrk's thread count: client and daemon share
//! the machine's cores, and on two cores a second wrk thread competes with
//! the daemon's workers, so p99 then includes the client's time slices.

mod common;

use std::path::{Path, PathBuf};

use common::{
    by_id_script, ensure_wrk, list, lua_strings, median, post_script, script, some_ids, start,
    stop, wrk, Figures, Flags,
};

struct Args {
    users: usize,
    runs: usize,
    seconds: u64,
    connections: usize,
    /// wrk's threads (`-t`).
    threads: usize,
    cache_mb: usize,
    keep: Option<PathBuf>,
    /// Only the cases whose name contains one of these.
    only: Vec<String>,
    /// Another build of idsync (an earlier commit) measured in the same
    /// run, on its own copy of the users.
    reference: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        users: 1_000_000,
        runs: 3,
        seconds: 10,
        connections: 64,
        threads: 2,
        cache_mb: 1024,
        keep: None,
        only: Vec::new(),
        reference: None,
    };
    let mut flags = Flags::new();
    while let Some(flag) = flags.next() {
        match flag.as_str() {
            "--users" => a.users = flags.number(),
            "--runs" => a.runs = flags.number(),
            "--seconds" => a.seconds = flags.number() as u64,
            "--connections" => a.connections = flags.number(),
            "--threads" => a.threads = flags.number(),
            "--cache-mb" => a.cache_mb = flags.number(),
            "--keep" => a.keep = Some(PathBuf::from(flags.value())),
            "--only" => a.only.push(flags.value()),
            "--reference" => a.reference = Some(PathBuf::from(flags.value())),
            _ => {} // cargo bench passes `--bench`
        }
    }
    a
}

fn main() {
    let a = args();
    ensure_wrk();
    let tmp = tempfile::tempdir().unwrap();
    let dir = a.keep.clone().unwrap_or_else(|| tmp.path().to_owned());
    let mut builds = vec![("idsync", PathBuf::from(env!("CARGO_BIN_EXE_idsync")))];
    builds.extend(a.reference.clone().map(|r| ("reference", r)));
    println!(
        "{} users, wrk -t{} -c{} -d{}s, {} runs each (medians){}:",
        a.users,
        a.threads,
        a.connections,
        a.seconds,
        a.runs,
        if builds.len() > 1 {
            ", the builds' runs taken in turn"
        } else {
            ""
        }
    );
    let store = format!("[store]\ncache_mb = {}", a.cache_mb);
    let running: Vec<Running> = builds
        .iter()
        .map(|(label, idsync)| {
            let dir = dir.join(label);
            std::fs::create_dir_all(&dir).unwrap();
            common::load_users(&dir, a.users, idsync);
            let (child, port) = start(&dir, idsync, &store, a.connections);
            let ids = some_ids(port, a.users);
            let cases = cases(&dir, &ids, a.users);
            Running {
                label,
                child,
                port,
                cases,
            }
        })
        .collect();
    let chosen = |name: &str| a.only.is_empty() || a.only.iter().any(|o| name.contains(o.as_str()));
    let names: Vec<&'static str> = running[0].cases.iter().map(|c| c.0).collect();
    for (i, name) in names.into_iter().enumerate().filter(|(_, n)| chosen(n)) {
        // Run for run in turn, so that the machine's drift falls on every
        // build alike.
        let mut runs: Vec<Vec<Figures>> = vec![Vec::new(); running.len()];
        for round in 0..=a.runs {
            for (b, r) in running.iter().enumerate() {
                let (_, script, conns) = &r.cases[i];
                let connections = conns.unwrap_or(a.connections);
                // Round 0 is a short warm-up, not counted.
                let seconds = if round == 0 { 2 } else { a.seconds };
                let f = wrk(r.port, script, seconds, connections, a.threads);
                if round > 0 {
                    runs[b].push(f);
                }
            }
        }
        for (r, figures) in running.iter().zip(&runs) {
            let rps: Vec<f64> = figures.iter().map(|f| f.rps).collect();
            let p99 = median(figures.iter().map(|f| f.p99_ms).collect());
            let errors: u64 = figures.iter().map(|f| f.errors).sum();
            println!(
                "{:<9} {name:<48} {:>9.0} req/s   p99 {p99:>8.2} ms   (runs: {}; non-2xx: {errors})",
                r.label,
                median(rps.clone()),
                list(&rps)
            );
        }
    }
    for r in running {
        stop(r.child);
    }
}

/// A build's daemon, started on its own copy of the users, and its cases.
struct Running {
    label: &'static str,
    child: std::process::Child,
    port: u16,
    cases: Vec<(&'static str, PathBuf, Option<usize>)>,
}

/// Connections of the paging cases measured a second time: an identity
/// provider's import pages through the users over a few connections (Okta
/// and Entra ID page one request after another), and with wrk's 64
/// requests always in flight p99 is 64 queued pages whatever a page costs.
const IMPORT_CONNECTIONS: usize = 16;

/// The requests measured, as wrk scripts written into `dir`, each with its
/// own number of connections when it is not `--connections`.
fn cases(dir: &Path, ids: &[String], users: usize) -> Vec<(&'static str, PathBuf, Option<usize>)> {
    let id_table = lua_strings(ids);
    let last_page = users.saturating_sub(99).max(1);
    let page = script(dir, "page", format!(
        "request = function()\n  return wrk.format(\"GET\", \"/scim/v2/Users?count=100&startIndex=\" .. math.random(1, {last_page}))\nend\n"
    ));
    let cursor = script(dir, "cursor", format!(
        "local ids = {{{id_table}}}\nrequest = function()\n  return wrk.format(\"GET\", \"/scim/v2/Users?count=100&cursor=\" .. ids[math.random(#ids)])\nend\n"
    ));
    vec![
        (
            "GET /Users/{id}",
            by_id_script(dir, ids),
            None,
        ),
        (
            "GET /Users?filter=userName eq",
            script(dir, "filter", format!(
                "request = function()\n  return wrk.format(\"GET\", \"/scim/v2/Users?filter=userName%20eq%20%22user\" .. math.random(0, {}) .. \"%22\")\nend\n",
                users - 1
            )),
            None,
        ),
        (
            "GET /Users?startIndex=N&count=100 (N over all)",
            page.clone(),
            None,
        ),
        (
            "GET /Users?cursor=C&count=100 (C over all)",
            cursor.clone(),
            None,
        ),
        (
            "GET /Users?startIndex=N&count=100, 16 connections",
            page,
            Some(IMPORT_CONNECTIONS),
        ),
        (
            "GET /Users?cursor=C&count=100, 16 connections",
            cursor,
            Some(IMPORT_CONNECTIONS),
        ),
        (
            "POST /Users (durable)",
            post_script(dir),
            None,
        ),
    ]
}
