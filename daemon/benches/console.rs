//! The console benchmark (issue 17): its heaviest pages with a million
//! users and ten thousand enrollment requests loaded, at 50 concurrent
//! sessions, driven by `wrk` (Debian's package, installed here when
//! missing).
//!
//! `cargo bench -p idsync --bench console [-- --users 1000000 --requests 10000 --runs 3 --seconds 10 --sessions 50 --cache-mb 1024 --keep DIR]`
//!
//! It loads the users with `idsync import` (once; `--keep DIR` reuses a
//! loaded data dir), starts the release daemon, signs in `--sessions`
//! sessions through the sign-in form, and measures each page `--runs`
//! times with one connection per session, each request on a session's
//! cookie: the medians of req/s and p99. wrk runs one thread: on two
//! cores a second client thread takes the daemon's other core, and the
//! p99 becomes the scheduler's time slice (50 ms against 5 ms for the
//! requests page, same req/s). The pages: the users search
//! (mail or login name prefix, a page of 50), a deep page of the user
//! list (anchored after a random user), a user's page, and the requests
//! list, all of them and those pending approval (the requests are P12
//! requests of a profile that needs approval, made through the admin
//! API before the runs).

mod common;

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use common::{
    ensure_wrk, list, lua_strings, measure, some_ids, start_with_admin, stop, Flags, TOKEN,
};

struct Args {
    users: usize,
    requests: usize,
    runs: usize,
    seconds: u64,
    sessions: usize,
    cache_mb: usize,
    keep: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        users: 1_000_000,
        requests: 10_000,
        runs: 3,
        seconds: 10,
        sessions: 50,
        cache_mb: 1024,
        keep: None,
    };
    let mut flags = Flags::new();
    while let Some(flag) = flags.next() {
        match flag.as_str() {
            "--users" => a.users = flags.number(),
            "--requests" => a.requests = flags.number(),
            "--runs" => a.runs = flags.number(),
            "--seconds" => a.seconds = flags.number() as u64,
            "--sessions" => a.sessions = flags.number(),
            "--cache-mb" => a.cache_mb = flags.number(),
            "--keep" => a.keep = Some(PathBuf::from(flags.value())),
            _ => {} // cargo bench passes `--bench`
        }
    }
    a
}

/// Sign in through the form: the session cookie (`name=value`).
fn sign_in(admin: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", admin)).unwrap();
    let body = format!("token={TOKEN}");
    write!(
        s,
        "POST /ui/signin HTTP/1.1\r\nHost: bench\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no session cookie in:\n{text}"))
        .to_owned()
}

/// A wrk script: every request on one of `cookies` at random, to a path
/// `path` (a Lua expression) makes.
fn page_script(dir: &Path, name: &str, cookies: &[String], prelude: &str, path: &str) -> PathBuf {
    let p = dir.join(format!("console-{name}.lua"));
    std::fs::write(
        &p,
        format!(
            "local cookies = {{{}}}\n{prelude}\nrequest = function()\n  \
             return wrk.format(\"GET\", {path}, {{[\"Cookie\"] = cookies[math.random(#cookies)]}})\nend\n",
            lua_strings(cookies)
        ),
    )
    .unwrap();
    p
}

/// The profile the requests are made for: P12, approval needed, so a
/// request waits (no key is made) until an approver decides.
const PROFILE: &str =
    "[[profiles]]\nname = \"Bench P12\"\nprotocol = \"p12\"\nrequires_approval = true\n";
const ASSET: &str = "bench.example.org";

/// Import the asset the requests are for (idempotent: a second import
/// changes nothing).
fn load_asset(dir: &Path, idsync: &Path) {
    let csv = dir.join("asset.csv");
    std::fs::write(
        &csv,
        format!("name,type,certificateProfile,dnsNames\n{ASSET},Server,Bench P12,{ASSET}\n"),
    )
    .unwrap();
    let status = std::process::Command::new(idsync)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["import", "assets"])
        .arg(&csv)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run idsync import assets");
    assert!(status.success(), "importing the asset failed");
}

/// Make `n` P12 enrollment requests through the admin API, from 8
/// clients at once, unless a marker says an earlier run did (`--keep`).
fn make_requests(dir: &Path, admin: u16, n: usize) {
    let marker = dir.join(format!("requests-{n}"));
    if marker.exists() {
        println!("reusing the {n} requests made in {}", dir.display());
        return;
    }
    // The profile is in the configuration the daemon read; the asset,
    // imported before, gets it now (pending until then).
    let body = "{\"profile\": \"Bench P12\"}";
    let path = format!("/api/v1/assets/{ASSET}/profile");
    assert_eq!(
        call(admin, "PUT", &path, body),
        200,
        "assigning the profile"
    );
    let started = std::time::Instant::now();
    let body = format!("{{\"asset\": \"{ASSET}\", \"password\": \"Correct-Horse-Battery-7431\"}}");
    std::thread::scope(|s| {
        for client in 0..8 {
            let body = &body;
            s.spawn(move || {
                for _ in (client..n).step_by(8) {
                    assert_eq!(call(admin, "POST", "/api/v1/enroll/p12", body), 202);
                }
            });
        }
    });
    let took = started.elapsed().as_secs_f64();
    println!(
        "made {n} requests in {took:.1} s ({:.0}/s)",
        n as f64 / took
    );
    std::fs::write(marker, "").unwrap();
}

/// One JSON request to the admin API with the bench token: its status.
fn call(admin: u16, method: &str, path: &str, body: &str) -> u16 {
    common::send(admin, method, path, Some(body))
        .unwrap_or_else(|| panic!("no answer to {method} {path}"))
        .0
}

fn main() {
    let a = args();
    ensure_wrk();
    let tmp = tempfile::tempdir().unwrap();
    let dir = a.keep.clone().unwrap_or_else(|| tmp.path().to_owned());
    let idsync = PathBuf::from(env!("CARGO_BIN_EXE_idsync"));
    std::fs::create_dir_all(&dir).unwrap();
    common::load_users(&dir, a.users, &idsync);
    load_asset(&dir, &idsync);
    let store = format!(
        "[store]\ncache_mb = {}\n[console]\nsign_ins_per_minute_per_peer = {}\n{PROFILE}",
        a.cache_mb,
        a.sessions + 10
    );
    let (child, scim, admin) = start_with_admin(&dir, &idsync, &store, a.sessions);
    make_requests(&dir, admin, a.requests);
    let ids = some_ids(scim, a.users);
    let cookies: Vec<String> = (0..a.sessions).map(|_| sign_in(admin)).collect();
    let id_table = format!("local ids = {{{}}}", lua_strings(&ids));
    let users = a.users;
    let cases = [
        (
            "GET /ui/users?q=userN (login prefix, 50 a page)",
            page_script(
                &dir,
                "search",
                &cookies,
                "",
                &format!("\"/ui/users?q=user\" .. math.random(0, {})", users / 100),
            ),
        ),
        (
            "GET /ui/users?q=userN@ (mail prefix)",
            page_script(
                &dir,
                "mail",
                &cookies,
                "",
                &format!(
                    "\"/ui/users?q=user\" .. math.random(0, {}) .. \"%40\"",
                    users - 1
                ),
            ),
        ),
        (
            "GET /ui/users/{id}",
            page_script(
                &dir,
                "user",
                &cookies,
                &id_table,
                "\"/ui/users/\" .. ids[math.random(#ids)]",
            ),
        ),
        (
            "GET /ui/users (first page)",
            page_script(&dir, "list", &cookies, "", "\"/ui/users\""),
        ),
        (
            "GET /ui/requests",
            page_script(&dir, "requests", &cookies, "", "\"/ui/requests\""),
        ),
        (
            "GET /ui/requests?status=pending_approval",
            page_script(
                &dir,
                "pending",
                &cookies,
                "",
                "\"/ui/requests?status=pending_approval\"",
            ),
        ),
    ];
    println!(
        "{users} users, {} requests, {} sessions, wrk -t1 -c{} -d{}s, {} runs each (medians):",
        a.requests, a.sessions, a.sessions, a.seconds, a.runs
    );
    for (name, script) in &cases {
        let (rps, p99, runs, errors) = measure(admin, script, a.seconds, (a.sessions, 1), a.runs);
        println!(
            "{name:<50} {rps:>9.0} req/s   p99 {p99:>8.2} ms   (runs: {}; non-2xx: {errors})",
            list(&runs)
        );
    }
    stop(child);
}
