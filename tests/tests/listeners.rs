//! End-to-end tests of the listeners' connection limits (issue 13, item 7):
//! clients that connect and send nothing must not shut out the clients
//! that send a request with a token, nor fill the log.
//!
//! Two peers on one machine: 127.0.0.1 (the one holding idle connections)
//! and 127.0.0.2 (Linux routes all of 127.0.0.0/8 to the loopback device;
//! the client socket is bound to it before connecting).

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use idsync_tests::{free_port, wait_until, Env};
use sha2::{Digest as _, Sha256};

const TOKEN: &str = "idsync_listeners-test-token";
const IDLER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const OTHER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const SCIM_GET: &str = "/scim/v2/Users?count=1";
/// A generous liveness bound for one request on loopback.
const PROMPT: Duration = Duration::from_secs(2);

/// A TCP connection from `local` to the listener on `port`.
fn connect_from(local: Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.bind(&SocketAddr::from((local, 0)).into())?;
    s.connect_timeout(&SocketAddr::from((IDLER, port)).into(), PROMPT)?;
    Ok(s.into())
}

/// Why a request got no 200.
#[derive(Debug)]
enum Failure {
    Connect(std::io::Error),
    /// The request could not be sent: the server had closed the connection.
    Write(std::io::Error),
    Read(std::io::Error),
    Answer(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "connect: {e}"),
            Failure::Write(e) => write!(f, "write: {e}"),
            Failure::Read(e) => write!(f, "read: {e}"),
            Failure::Answer(a) => write!(f, "answer: {a:?}"),
        }
    }
}

/// GET `path` with the token from `local`, on a new connection: the answer,
/// or why there is none. Answers other than 200 are failures too.
fn get(local: Ipv4Addr, port: u16, path: &str) -> Result<String, Failure> {
    let mut s = connect_from(local, port).map_err(Failure::Connect)?;
    s.set_read_timeout(Some(PROMPT)).unwrap();
    s.set_write_timeout(Some(PROMPT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    )
    .map_err(Failure::Write)?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).map_err(Failure::Read)?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    if answer.starts_with("HTTP/1.1 200") {
        Ok(answer)
    } else {
        Err(Failure::Answer(answer))
    }
}

/// Keep `n` connections from 127.0.0.1 to `port` open without sending a
/// byte, opening a new one for each the server closes, until `stop`.
fn hold_idle(port: u16, n: usize, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut conns: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
        let mut opened = 0;
        while !stop.load(Ordering::Relaxed) {
            for conn in &mut conns {
                let alive = conn.as_ref().is_some_and(|s| match s.peek(&mut [0u8; 1]) {
                    Ok(n) => n > 0,
                    Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
                });
                if !alive {
                    *conn = connect_from(IDLER, port).ok();
                    if let Some(s) = conn {
                        s.set_nonblocking(true).unwrap();
                        opened += 1;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        opened
    })
}

/// 200 idle connections from one peer to each listener, re-opened as they
/// close: requests with a token, from that peer and from another, are all
/// answered at once; the log holds a few summary lines, not one line per
/// refused connection; the metrics count what was closed.
#[test]
fn idle_connections_do_not_shut_out_clients_with_a_token() {
    let (admin, scim) = (free_port(), free_port());
    let env = Env::with_config(&format!(
        "[admin]\nlisten = \"127.0.0.1:{admin}\"\n\
         [scim]\nenabled = true\nlisten = \"127.0.0.1:{scim}\"\nmax_connections = 100\n\
         [[tokens]]\nname = \"probe\"\nsha256 = \"{}\"\nroles = [\"monitor\", \"read\"]\n",
        hex::encode(Sha256::digest(TOKEN.as_bytes()))
    ));
    let d = env.serve(&[]);
    wait_until("both listeners answer", Duration::from_secs(60), || {
        get(OTHER, admin, "/healthz").is_ok() && get(OTHER, scim, SCIM_GET).is_ok()
    });

    let stop = Arc::new(AtomicBool::new(false));
    let idlers = [admin, scim].map(|port| hold_idle(port, 200, stop.clone()));
    // Let them take what they can.
    std::thread::sleep(Duration::from_secs(1));
    let mut failures = Vec::new();
    let (mut tries, mut retried) = (0, 0);
    for round in 0..20 {
        for (from, port, path) in [
            (OTHER, admin, "/healthz"),
            (IDLER, admin, "/healthz"),
            (OTHER, scim, SCIM_GET),
            (IDLER, scim, SCIM_GET),
        ] {
            tries += 1;
            let mut answer = get(from, port, path);
            // From the idler's own address, a connection the server closed
            // before the request's first byte reached it is, to the server,
            // one more idle connection of that peer, and gives way to its
            // newcomers like them (a client descheduled between connect and
            // write, on a busy machine). HTTP clients retry an idempotent
            // request on a connection closed before any answer (RFC 9110,
            // section 9.2.2); so does this one, once.
            if from == IDLER && matches!(answer, Err(Failure::Write(_))) {
                retried += 1;
                answer = get(from, port, path);
            }
            if let Err(e) = answer {
                failures.push(format!("round {round}, from {from} to :{port}{path}: {e}"));
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    let opened: u64 = idlers.map(|t| t.join().unwrap()).iter().sum();
    assert!(
        failures.is_empty(),
        "{} of {tries} requests failed ({retried} retried once) while {opened} idle connections were opened:\n{}",
        failures.len(),
        failures.join("\n")
    );

    let metrics = get(OTHER, admin, "/metrics").unwrap();
    let closed = |listener: &str| {
        let key = format!("idsync_listener_connections_closed_total{{listener=\"{listener}\",reason=\"evicted\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {key} in:\n{metrics}"))
    };
    assert!(closed("admin") > 0, "{metrics}");
    assert!(closed("scim") > 0, "{metrics}");

    let log = d.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("too many connections") || l.contains("connections refused"))
        .collect();
    assert!(
        (1..20).contains(&lines.len()),
        "{} log lines about refused connections for {opened} connections opened; the first: {:?}",
        lines.len(),
        &lines[..lines.len().min(5)]
    );
}
