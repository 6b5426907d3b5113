//! The console benchmark (issue 17): its heaviest pages with a million
//! users loaded, at 50 concurrent sessions, driven by `wrk` (Debian's
//! package, installed here when missing).
//!
//! `cargo bench -p idsync --bench console [-- --users 1000000 --runs 3 --seconds 10 --sessions 50 --cache-mb 1024 --keep DIR]`
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
//! list.

mod common;

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use common::{ensure_wrk, list, lua_strings, measure, some_ids, start_with_admin, stop, Flags};

const TOKEN: &str = "idsync_bench-token";

struct Args {
    users: usize,
    runs: usize,
    seconds: u64,
    sessions: usize,
    cache_mb: usize,
    keep: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        users: 1_000_000,
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

fn main() {
    let a = args();
    ensure_wrk();
    let tmp = tempfile::tempdir().unwrap();
    let dir = a.keep.clone().unwrap_or_else(|| tmp.path().to_owned());
    let idsync = PathBuf::from(env!("CARGO_BIN_EXE_idsync"));
    std::fs::create_dir_all(&dir).unwrap();
    common::load_users(&dir, a.users, &idsync);
    let store = format!(
        "[store]\ncache_mb = {}\n[console]\nsign_ins_per_minute_per_peer = {}",
        a.cache_mb,
        a.sessions + 10
    );
    let (child, scim, admin) = start_with_admin(&dir, &idsync, &store, a.sessions);
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
    ];
    println!(
        "{users} users, {} sessions, wrk -t1 -c{} -d{}s, {} runs each (medians):",
        a.sessions, a.sessions, a.seconds, a.runs
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
