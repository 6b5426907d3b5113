//! What the benchmarks that drive a running `idsync serve` over HTTP share
//! (`scim`, `postgres`): the users file and its import, the daemon started
//! with a bench token, `wrk` and its figures; the enrollment benches'
//! daemon (`enrollment`) and the servers and watchdog of all (`process`).
//!
//! Each bench is a crate of its own; not every one uses every item.
#![allow(dead_code)]

pub mod enrollment;
pub mod process;

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

pub const TOKEN: &str = "idsync_bench-token";

/// A bench's command line, a word at a time, for its `--flag value`
/// options: [`Flags::next`] gives each word (cargo bench's own `--bench`
/// among them, which the benches ignore), [`Flags::value`] the word after
/// the one it gave.
pub struct Flags {
    argv: Vec<String>,
    at: usize,
}

impl Flags {
    pub fn new() -> Self {
        Self {
            argv: std::env::args().collect(),
            at: 1,
        }
    }

    pub fn next(&mut self) -> Option<String> {
        let word = self.argv.get(self.at).cloned();
        self.at += 1;
        word
    }

    /// The value after the flag [`Flags::next`] gave.
    pub fn value(&self) -> String {
        self.argv
            .get(self.at)
            .cloned()
            .expect("a value after the flag")
    }

    pub fn number(&self) -> usize {
        self.value().parse().expect("a number after the flag")
    }
}

/// Install Debian's `wrk` when it is missing.
pub fn ensure_wrk() {
    if Command::new("wrk").arg("--version").output().is_ok() {
        return;
    }
    eprintln!("installing wrk (Debian package)");
    let sudo = if is_root() { "" } else { "sudo " };
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

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// A users file of `users` rows (`user{i}`, `user{i}@example.org`), the
/// same in every bench.
pub fn write_users_csv(path: &Path, users: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "status,loginName,mail,lastName,firstName").unwrap();
    for i in 0..users {
        writeln!(f, "active,user{i},user{i}@example.org,Last{i},First{i}").unwrap();
    }
    f.flush().unwrap();
}

/// Load `users` users into `dir/data` with `idsync import`, unless a
/// marker says an earlier run did (`--keep DIR`).
pub fn load_users(dir: &Path, users: usize, idsync: &Path) {
    let marker = dir.join(format!("loaded-{users}"));
    if marker.exists() {
        println!("reusing the {users} users loaded in {}", dir.display());
        return;
    }
    let csv = dir.join("users.csv");
    write_users_csv(&csv, users);
    let took = import(idsync, &dir.join("data"), &csv, &[]);
    println!(
        "loaded {users} users in {took:.1} s ({:.0} rows/s)",
        users as f64 / took
    );
    std::fs::remove_file(&csv).ok();
    std::fs::write(marker, "").unwrap();
}

/// `idsync import users csv` into `data` (with `env` set), in seconds.
pub fn import(idsync: &Path, data: &Path, csv: &Path, env: &[(&str, String)]) -> f64 {
    let started = Instant::now();
    let out = Command::new(idsync)
        .arg("--data-dir")
        .arg(data)
        .args(["import", "users"])
        .arg(csv)
        .args(["--format", "json"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .status()
        .expect("run idsync import");
    assert!(out.success(), "the import failed");
    started.elapsed().as_secs_f64()
}

/// Start `idsync serve` on `dir/data` with the SCIM listener, the bench
/// token and `store` (the `[store]` section); wait until it answers.
///
/// wrk is one peer: the per-peer connection cap (32 by default, against
/// idle-connection floods) is raised to let all its connections in.
pub fn start(dir: &Path, idsync: &Path, store: &str, connections: usize) -> (Child, u16) {
    let (child, port, _) = start_with_admin(dir, idsync, store, connections);
    (child, port)
}

/// [`start`], also giving the admin listener's port (whose per-peer cap
/// is raised as the SCIM listener's).
pub fn start_with_admin(
    dir: &Path,
    idsync: &Path,
    store: &str,
    connections: usize,
) -> (Child, u16, u16) {
    let port = free_port();
    let admin = free_port();
    let sha = hex::encode(Sha256::digest(TOKEN.as_bytes()));
    let config = dir.join("idsync.toml");
    let per_peer = connections + 16;
    std::fs::write(
        &config,
        format!(
            "{store}\n[admin]\nlisten = \"127.0.0.1:{admin}\"\nmax_connections = {}\nmax_connections_per_peer = {per_peer}\n[scim]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\nmax_connections_per_peer = {per_peer}\n\
             [[tokens]]\nname = \"bench\"\nsha256 = \"{sha}\"\nroles = [\"read\", \"write\", \"operator\"]\n",
            // Room for a run's connections while the last run's close.
            per_peer * 4,
        ),
    )
    .unwrap();
    let mut child = Command::new(idsync)
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
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{} serve ended before it listened: {status}",
                idsync.display()
            );
        }
        assert!(Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, port, admin)
}

/// Stop a daemon started with [`start`] (SIGTERM) and wait for it.
pub fn stop(mut child: Child) {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
}

/// A plain GET with the token; the body when the status is 200.
pub fn get(port: u16, path: &str) -> Option<String> {
    let (status, body) = send(port, "GET", path, None)?;
    (status == 200).then_some(body)
}

/// One request with the token (and a JSON body), on a connection of its
/// own: the status and the body; none when nobody answered.
pub fn send(port: u16, method: &str, path: &str, json: Option<&str>) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    let body = json.unwrap_or("");
    let content_type = match json {
        Some(_) => "Content-Type: application/json\r\n",
        None => "",
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {TOKEN}\r\n\
         {content_type}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.get(9..12)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// The ids of 1,000 users spread over the whole store, found through the
/// userName index (so GET by id reads cold pages too, not a hot corner).
pub fn some_ids(port: u16, users: usize) -> Vec<String> {
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

/// A wrk script `dir/name.lua`: the bench token's headers, then `body`.
pub fn script(dir: &Path, name: &str, body: String) -> PathBuf {
    let p = dir.join(format!("{name}.lua"));
    std::fs::write(&p, format!("{AUTH}{body}")).unwrap();
    p
}

/// GET /Users/{id} over `ids`, at random.
pub fn by_id_script(dir: &Path, ids: &[String]) -> PathBuf {
    script(
        dir,
        "by_id",
        format!(
            "local ids = {{{}}}\nrequest = function()\n  return wrk.format(\"GET\", \"/scim/v2/Users/\" .. ids[math.random(#ids)])\nend\n",
            lua_strings(ids)
        ),
    )
}

/// POST /Users of new users (names unique per run and thread).
pub fn post_script(dir: &Path) -> PathBuf {
    post_script_tagged(dir, "bench")
}

/// [`post_script`] whose names start with `tag` (so that two wrk
/// processes at once never post the same name).
pub fn post_script_tagged(dir: &Path, tag: &str) -> PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    script(dir, &format!("post-{tag}"), format!(
        "local counter = 0\nlocal threads = 0\nlocal prefix\nsetup = function(thread)\n  threads = threads + 1\n  thread:set(\"tid\", threads)\nend\n\
         init = function(args)\n  prefix = \"{tag}-{stamp}-\" .. os.time() .. \"-\" .. tid\nend\n\
         request = function()\n  counter = counter + 1\n  local name = prefix .. \"-\" .. counter\n  \
         local body = '{{\"schemas\":[\"urn:ietf:params:scim:schemas:core:2.0:User\"],\"userName\":\"' .. name .. '\",\"name\":{{\"familyName\":\"Bench\"}},\"emails\":[{{\"value\":\"' .. name .. '@example.org\",\"primary\":true}}]}}'\n  \
         return wrk.format(\"POST\", \"/scim/v2/Users\", nil, body)\nend\n"
    ))
}

/// `ids` as the items of a Lua table.
pub fn lua_strings(ids: &[String]) -> String {
    ids.iter()
        .map(|i| format!("\"{i}\""))
        .collect::<Vec<_>>()
        .join(",")
}

#[derive(Debug, Clone)]
pub struct Figures {
    pub rps: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

/// One wrk run of `threads` client threads over `connections`.
pub fn wrk(port: u16, script: &Path, seconds: u64, connections: usize, threads: usize) -> Figures {
    let out = Command::new("wrk")
        .args([
            &format!("-t{threads}"),
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

/// A short warm-up, then `runs` measurements: the medians of req/s and
/// p99, the req/s of each run, and the non-2xx answers of all.
pub fn measure(
    port: u16,
    script: &Path,
    seconds: u64,
    (connections, threads): (usize, usize),
    runs: usize,
) -> (f64, f64, Vec<f64>, u64) {
    wrk(port, script, 2, connections, threads);
    let (mut rps, mut p99, mut errors) = (Vec::new(), Vec::new(), 0);
    for _ in 0..runs {
        let f = wrk(port, script, seconds, connections, threads);
        rps.push(f.rps);
        p99.push(f.p99_ms);
        errors += f.errors;
    }
    (median(rps.clone()), median(p99), rps, errors)
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

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `values` as `a, b, c` with no decimals.
pub fn list(values: &[f64]) -> String {
    values
        .iter()
        .map(|r| format!("{r:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}
