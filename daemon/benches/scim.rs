//! The SCIM benchmark: the release `idsync serve` with a million users,
//! driven by `wrk` (Debian's package, installed here when missing) over
//! keep-alive connections.
//!
//! `cargo bench -p idsync --bench scim [-- --users 1000000 --runs 3 --seconds 10 --connections 64 --cache-mb 1024 --keep DIR --only NAME --reference BIN]`
//!
//! It loads the users with `idsync import` (a CSV file, once; `--keep DIR`
//! reuses a loaded data dir across invocations; `--only` runs the cases
//! whose name contains NAME, and may be repeated), starts the daemon with
//! the SCIM listener and `store.cache_mb` (1024 by default: a million
//! users take about 1 GB of store), then measures each request `--runs`
//! times after a short warm-up, and prints the medians of req/s and p99.
//! `--reference BIN` measures another build (an earlier commit's
//! `target/release/idsync`) the same way in the same run, after this one,
//! on its own copy of the users. The requests:
//! GET `/Users/{id}`, GET `/Users?filter=userName eq "…"`, pages of 100
//! users at any depth (GET `/Users?startIndex=N&count=100` with N anywhere
//! in the million, and the cursor variant `cursor=<id>`, each also over
//! 16 connections, as an identity provider's import pages), and last (it
//! adds users) POST `/Users` (durable creates: each 201 follows its group
//! commit).

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

const TOKEN: &str = "idsync_bench-token";

struct Args {
    users: usize,
    runs: usize,
    seconds: u64,
    connections: usize,
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
        cache_mb: 1024,
        keep: None,
        only: Vec::new(),
        reference: None,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let value = || argv.get(i + 1).cloned().expect("a value after the flag");
        let number = || value().parse::<usize>().expect("a number after the flag");
        match argv[i].as_str() {
            "--users" => a.users = number(),
            "--runs" => a.runs = number(),
            "--seconds" => a.seconds = number() as u64,
            "--connections" => a.connections = number(),
            "--cache-mb" => a.cache_mb = number(),
            "--keep" => a.keep = Some(PathBuf::from(value())),
            "--only" => a.only.push(value()),
            "--reference" => a.reference = Some(PathBuf::from(value())),
            _ => {} // cargo bench passes `--bench`
        }
        i += 1;
    }
    a
}

fn ensure_wrk() {
    if Command::new("wrk").arg("--version").output().is_ok() {
        return;
    }
    eprintln!("installing wrk (Debian package)");
    let sudo = if unsafe_is_root() { "" } else { "sudo " };
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{sudo}apt-get update -qq && DEBIAN_FRONTEND=noninteractive {sudo}apt-get install -y -qq wrk"
        ))
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "could not install wrk");
}

fn unsafe_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// Load `users` users into `data` with `idsync import`, unless done.
fn load(dir: &Path, users: usize, idsync: &Path) {
    let marker = dir.join(format!("loaded-{users}"));
    if marker.exists() {
        println!("reusing the {users} users loaded in {}", dir.display());
        return;
    }
    let csv = dir.join("users.csv");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&csv).unwrap());
        writeln!(f, "status,loginName,mail,lastName,firstName").unwrap();
        for i in 0..users {
            writeln!(f, "active,user{i},user{i}@example.org,Last{i},First{i}").unwrap();
        }
    }
    let started = Instant::now();
    let out = Command::new(idsync)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["import", "users"])
        .arg(&csv)
        .args(["--format", "json"])
        .stdout(Stdio::null())
        .status()
        .expect("run idsync import");
    assert!(out.success(), "the import failed");
    let took = started.elapsed().as_secs_f64();
    println!(
        "loaded {users} users in {took:.1} s ({:.0} rows/s)",
        users as f64 / took
    );
    std::fs::remove_file(&csv).ok();
    std::fs::write(marker, "").unwrap();
}

/// wrk is one peer: the per-peer connection cap (32 by default, against
/// idle-connection floods) is raised to let all its connections in.
fn start(dir: &Path, idsync: &Path, cache_mb: usize, connections: usize) -> (Child, u16) {
    let port = free_port();
    let admin = free_port();
    let sha = hex::encode(Sha256::digest(TOKEN.as_bytes()));
    let config = dir.join("idsync.toml");
    let per_peer = connections + 16;
    std::fs::write(
        &config,
        format!(
            "[store]\ncache_mb = {cache_mb}\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[scim]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\nmax_connections_per_peer = {per_peer}\n\
             [[tokens]]\nname = \"bench\"\nsha256 = \"{sha}\"\nroles = [\"read\", \"write\"]\n"
        ),
    )
    .unwrap();
    let child = Command::new(idsync)
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("serve")
        .env("IDSYNC_LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start idsync serve");
    let deadline = Instant::now() + Duration::from_secs(120);
    while get(port, "/scim/v2/ServiceProviderConfig").is_none() {
        assert!(Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, port)
}

/// A plain GET with the token; the body when the status is 200.
fn get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// The ids of 1,000 users spread over the whole store, found through the
/// userName index (so GET by id reads cold pages too, not a hot corner).
fn some_ids(port: u16, users: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let step = (users / 1000).max(1);
    for k in (0..users).step_by(step).take(1000) {
        let body = get(
            port,
            &format!("/scim/v2/Users?filter=userName%20eq%20%22user{k}%22&attributes=id"),
        )
        .expect("a user by userName");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if let Some(id) = v["Resources"][0]["id"].as_str() {
            ids.push(id.to_owned());
        }
    }
    assert!(!ids.is_empty(), "no users found");
    ids
}

const AUTH: &str = r#"wrk.headers["Authorization"] = "Bearer idsync_bench-token"
wrk.headers["Content-Type"] = "application/scim+json"
"#;

fn script(dir: &Path, name: &str, body: String) -> PathBuf {
    let p = dir.join(format!("{name}.lua"));
    std::fs::write(&p, format!("{AUTH}{body}")).unwrap();
    p
}

struct Figures {
    rps: f64,
    p99_ms: f64,
    errors: u64,
}

fn wrk(port: u16, script: &Path, seconds: u64, connections: usize) -> Figures {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(script)
        .arg(format!("http://127.0.0.1:{port}"))
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output:\n{text}"));
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| parse_duration_ms(v.trim()))
        .unwrap_or(f64::NAN);
    let errors = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Figures {
        rps,
        p99_ms: p99,
        errors,
    }
}

fn parse_duration_ms(v: &str) -> f64 {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => f64::NAN,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let a = args();
    ensure_wrk();
    let tmp = tempfile::tempdir().unwrap();
    let dir = a.keep.clone().unwrap_or_else(|| tmp.path().to_owned());
    let mut builds = vec![("idsync", PathBuf::from(env!("CARGO_BIN_EXE_idsync")))];
    builds.extend(a.reference.clone().map(|r| ("reference", r)));
    println!(
        "{} users, wrk -t2 -c{} -d{}s, {} runs each (medians):",
        a.users, a.connections, a.seconds, a.runs
    );
    for (label, idsync) in &builds {
        let dir = dir.join(label);
        std::fs::create_dir_all(&dir).unwrap();
        load(&dir, a.users, idsync);
        let (mut child, port) = start(&dir, idsync, a.cache_mb, a.connections);
        let ids = some_ids(port, a.users);
        let chosen =
            |name: &str| a.only.is_empty() || a.only.iter().any(|o| name.contains(o.as_str()));
        for (name, s, conns) in cases(&dir, &ids, a.users)
            .iter()
            .filter(|(name, _, _)| chosen(name))
        {
            let connections = conns.unwrap_or(a.connections);
            wrk(port, s, 2, connections); // warm-up
            let mut rps = Vec::new();
            let mut p99 = Vec::new();
            let mut errors = 0;
            for _ in 0..a.runs {
                let f = wrk(port, s, a.seconds, connections);
                rps.push(f.rps);
                p99.push(f.p99_ms);
                errors += f.errors;
            }
            println!(
                "{label:<9} {name:<48} {:>9.0} req/s   p99 {:>8.2} ms   (runs: {}; non-2xx: {errors})",
                median(rps.clone()),
                median(p99),
                rps.iter()
                    .map(|r| format!("{r:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        let _ = child.wait();
    }
}

/// Connections of the paging cases measured a second time: an identity
/// provider's import pages through the users over a few connections (Okta
/// and Entra ID page one request after another), and with wrk's 64
/// requests always in flight p99 is 64 queued pages whatever a page costs.
const IMPORT_CONNECTIONS: usize = 16;

/// The requests measured, as wrk scripts written into `dir`, each with its
/// own number of connections when it is not `--connections`.
fn cases(dir: &Path, ids: &[String], users: usize) -> Vec<(&'static str, PathBuf, Option<usize>)> {
    let id_table = ids
        .iter()
        .map(|i| format!("\"{i}\""))
        .collect::<Vec<_>>()
        .join(",");
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
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
            script(dir, "by_id", format!(
                "local ids = {{{id_table}}}\nrequest = function()\n  return wrk.format(\"GET\", \"/scim/v2/Users/\" .. ids[math.random(#ids)])\nend\n"
            )),
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
            script(dir, "post", format!(
                "local counter = 0\nlocal threads = 0\nlocal prefix\nsetup = function(thread)\n  threads = threads + 1\n  thread:set(\"tid\", threads)\nend\n\
                 init = function(args)\n  prefix = \"bench-{stamp}-\" .. os.time() .. \"-\" .. tid\nend\n\
                 request = function()\n  counter = counter + 1\n  local name = prefix .. \"-\" .. counter\n  \
                 local body = '{{\"schemas\":[\"urn:ietf:params:scim:schemas:core:2.0:User\"],\"userName\":\"' .. name .. '\",\"name\":{{\"familyName\":\"Bench\"}},\"emails\":[{{\"value\":\"' .. name .. '@example.org\",\"primary\":true}}]}}'\n  \
                 return wrk.format(\"POST\", \"/scim/v2/Users\", nil, body)\nend\n"
            )),
            None,
        ),
    ]
}
