//! The mail benchmark (issue 16): activation mails per second from the
//! release `idsync serve` to a local SMTP sink, for 10,000 users of one
//! application, beside a minimal SMTP client that sends as many messages
//! of the same bytes over as many connections to the same sink in the same
//! run: the sink's ceiling. The target: idsync at 80% of it or
//! more.
//!
//! `cargo bench -p idsync --bench mail [-- --users 10000 --runs 3 --connections 4]`
//!
//! The sink is the tests' (aiosmtpd, `tests/tests/mail_env/sink.py`, which
//! decodes each message and writes it to a file before it answers 250);
//! its Python comes from `AIOSMTPD_PYTHON`, else `target/aiosmtpd-venv`
//! (`scripts/test` makes it). Each run starts from a fresh data dir with
//! the users imported for the application, starts the daemon and the sink,
//! and times `idsync mail send-activation` until the sink holds every mail.
//! The minimal client then sends the first mail's bytes as many times,
//! `--connections` connections at once, each command waiting for its
//! answer (no pipelining, as lettre), with `TCP_NODELAY`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

const TOKEN: &str = "idsync_bench-mail-operator";

struct Args {
    users: usize,
    runs: usize,
    connections: usize,
}

fn args() -> Args {
    let mut a = Args {
        users: 10_000,
        runs: 3,
        connections: 4,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().and_then(|v| v.parse().ok()).expect("a number");
        match arg.as_str() {
            "--users" => a.users = value(),
            "--runs" => a.runs = value(),
            "--connections" => a.connections = value(),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The tests' SMTP sink on `port`, writing to `dir`; ready when returned.
fn sink(port: u16, dir: &Path) -> Child {
    std::fs::create_dir_all(dir).unwrap();
    let python = std::env::var_os("AIOSMTPD_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/aiosmtpd-venv/bin/python"));
    assert!(
        python.exists(),
        "aiosmtpd is not installed: run scripts/test once, or set AIOSMTPD_PYTHON"
    );
    let mut child = Command::new(python)
        .arg(workspace().join("tests/tests/mail_env/sink.py"))
        .arg(port.to_string())
        .arg(dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the sink");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    child
}

fn stop(mut child: Child) {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
}

/// Mails the sink has written.
fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .unwrap_or(0)
}

fn wait_for(dir: &Path, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while count(dir) < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} mails",
            count(dir)
        );
        // Reading a folder of 10,000 names costs milliseconds: not so
        // often that the bench takes the sink's and the daemon's CPU.
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One run of idsync: mails per second, and the first mail's bytes.
fn idsync_run(a: &Args, idsync: &Path) -> (f64, String) {
    let tmp = tempfile::tempdir().unwrap();
    let (admin, smtp) = (free_port(), free_port());
    let config = tmp.path().join("idsync.toml");
    std::fs::write(
        &config,
        format!(
            "[admin]\nlisten = \"127.0.0.1:{admin}\"\n\
             [[tokens]]\nname = \"ops\"\nsha256 = \"{}\"\nroles = [\"operator\"]\n\
             [[applications]]\nname = \"crm\"\ndisplay_name = \"The CRM\"\n\n\
             [mail]\nrelay = \"127.0.0.1\"\nport = {smtp}\ntls = \"none\"\n\
             from = \"idsync <noreply@example.com>\"\npublic_url = \"https://id.example.com\"\n\
             max_connections = {}\n",
            hex::encode(Sha256::digest(TOKEN.as_bytes())),
            a.connections
        ),
    )
    .unwrap();
    let csv = tmp.path().join("users.csv");
    let mut rows = String::from("status,loginName,mail,firstName,lastName,language\n");
    for i in 0..a.users {
        let lang = if i % 2 == 0 { "en" } else { "de" };
        rows.push_str(&format!(
            "active,user{i},user{i}@example.org,First{i},Last{i},{lang}\n"
        ));
    }
    std::fs::write(&csv, rows).unwrap();
    let idsync_cmd = || {
        let mut c = Command::new(idsync);
        c.arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(tmp.path().join("data"))
            .env("IDSYNC_LOG__LEVEL", "warn");
        c
    };
    let ok = idsync_cmd()
        .args(["import", "users"])
        .arg(&csv)
        .args(["--application", "crm"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success(), "the import failed");
    let inbox = tmp.path().join("sink");
    let sink = sink(smtp, &inbox);
    let daemon = idsync_cmd()
        .arg("serve")
        .stdout(Stdio::null())
        .spawn()
        .expect("start idsync serve");
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", admin)).is_err() {
        assert!(Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    let out = idsync_cmd()
        .args(["mail", "send-activation", "--application", "crm"])
        .env("IDSYNC_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(out.status.success(), "send-activation failed");
    wait_for(&inbox, a.users, Duration::from_secs(600));
    let rate = a.users as f64 / started.elapsed().as_secs_f64();
    stop(daemon);
    stop(sink);
    let first = std::fs::read_dir(&inbox)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .unwrap();
    let seen: serde_json::Value =
        serde_json::from_slice(&std::fs::read(first.path()).unwrap()).unwrap();
    (rate, seen["raw"].as_str().unwrap().to_owned())
}

/// Read one SMTP reply (all its lines); panics unless it starts with `code`.
fn reply(r: &mut BufReader<TcpStream>, code: &str) {
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(line.starts_with(code), "expected {code}, got {line:?}");
        if line.as_bytes().get(3) != Some(&b'-') {
            return;
        }
    }
}

/// The minimal client: `n` messages of `body` over `connections`
/// connections; messages per second.
fn ceiling_run(a: &Args, body: &str) -> f64 {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let inbox = tmp.path().join("sink");
    let sink = sink(port, &inbox);
    // Dot-stuffed, CRLF line ends, as on the wire.
    let mut data = String::new();
    for line in body.replace("\r\n", "\n").lines() {
        if line.starts_with('.') {
            data.push('.');
        }
        data.push_str(line);
        data.push_str("\r\n");
    }
    data.push_str(".\r\n");
    let started = Instant::now();
    let threads: Vec<_> = (0..a.connections)
        .map(|t| {
            let share = a.users / a.connections + usize::from(t < a.users % a.connections);
            let data = data.clone();
            std::thread::spawn(move || {
                let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_nodelay(true).unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut w = s;
                reply(&mut r, "220");
                w.write_all(b"EHLO bench\r\n").unwrap();
                reply(&mut r, "250");
                for i in 0..share {
                    w.write_all(b"MAIL FROM:<noreply@example.com>\r\n").unwrap();
                    reply(&mut r, "250");
                    w.write_all(format!("RCPT TO:<c{t}-{i}@example.org>\r\n").as_bytes())
                        .unwrap();
                    reply(&mut r, "250");
                    w.write_all(b"DATA\r\n").unwrap();
                    reply(&mut r, "354");
                    w.write_all(data.as_bytes()).unwrap();
                    reply(&mut r, "250");
                }
                w.write_all(b"QUIT\r\n").unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    wait_for(&inbox, a.users, Duration::from_secs(600));
    let rate = a.users as f64 / started.elapsed().as_secs_f64();
    stop(sink);
    rate
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let a = args();
    let idsync = PathBuf::from(env!("CARGO_BIN_EXE_idsync"));
    println!(
        "{} activation mails, {} connections, {} runs each (medians):",
        a.users, a.connections, a.runs
    );
    let (mut ours, mut ceiling) = (Vec::new(), Vec::new());
    for _ in 0..a.runs {
        let (rate, body) = idsync_run(&a, &idsync);
        ours.push(rate);
        ceiling.push(ceiling_run(&a, &body));
    }
    let show = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (m, c) = (median(ours.clone()), median(ceiling.clone()));
    println!(
        "idsync serve      {m:>8.0} mails/s   (runs: {})",
        show(&ours)
    );
    println!(
        "minimal client    {c:>8.0} mails/s   (runs: {})",
        show(&ceiling)
    );
    println!("idsync / ceiling  {:>8.0} %", 100.0 * m / c);
}
