//! The webhook connector end to end (issue 6, approvers' notification): the
//! real daemon with a `type = "webhook"` connector, a P12 enrollment on a
//! profile that needs approval made through the API, and a receiver in this
//! test (a hand-written HTTP/1.1 server on std) that records what it gets,
//! goes away and comes back.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use idsync_tests::{free_port, sha256_hex, wait_until, Daemon, Env};
use serde_json::{json, Value};

const OPS: &str = "idsync_test-webhook-operator";
const BOSS: &str = "idsync_test-webhook-approver";
const ADMIN: &str = "idsync_test-webhook-admin";
const HOOK_TOKEN: &str = "hook-secret-4f1c9a";
const PASSWORD: &str = "Correct-Horse-Battery-7431";

/// One POST the receiver got.
#[derive(Debug, Clone)]
struct Seen {
    request_line: String,
    headers: HashMap<String, String>,
    body: Value,
}

/// A minimal HTTP/1.1 receiver on 127.0.0.1:PORT: one request per
/// connection, answered `200` with `Connection: close`. Stopping it closes
/// the listening socket, so the daemon finds the port refused.
struct Receiver {
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn read_request(stream: &mut TcpStream) -> Option<Seen> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?.to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Seen {
        request_line,
        headers,
        body: serde_json::from_slice(&body[..len]).unwrap_or(Value::Null),
    })
}

impl Receiver {
    fn start(port: u16, seen: Arc<Mutex<Vec<Seen>>>) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the receiver");
        listener.set_nonblocking(true).expect("non-blocking");
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&seen), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let mut stream = match listener.accept() {
                    Ok((stream, _)) => stream,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    Err(e) => panic!("accept: {e}"),
                };
                stream.set_nonblocking(false).expect("blocking stream");
                if let Some(req) = read_request(&mut stream) {
                    s.lock().unwrap().push(req);
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                }
            }
            // The listener is dropped here: the port refuses connections.
        });
        Self {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("receiver thread");
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

const PROFILES: &str = r#"
[[profiles]]
name = "Approved P12"
protocol = "p12"
requires_approval = true
"#;

const ASSETS: &str = "\
id,name,description,type,owner,certificateProfile,organization,country,dnsNames,ipAddresses,sid
,vault.example.org,,Server,,Approved P12,,,vault.example.org,,
";

/// The daemon's admin API over ureq.
struct Api {
    base: String,
    agent: ureq::Agent,
}

impl Api {
    fn call(&self, method: &str, token: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let req = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {token}"));
        let resp = match body {
            Some(b) => req
                .set("Content-Type", "application/json")
                .send_bytes(b.to_string().as_bytes()),
            None => req.call(),
        };
        let resp = match resp {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = resp.status();
        let text = resp.into_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A P12 enrollment on the approval profile; the request's id.
    fn enroll(&self) -> String {
        let (status, v) = self.call(
            "POST",
            OPS,
            "/api/v1/enroll/p12",
            Some(json!({"asset": "vault.example.org", "password": PASSWORD})),
        );
        assert_eq!(status, 202, "{v}");
        assert_eq!(v["request"]["status"], "pending_approval", "{v}");
        v["request"]["id"].as_str().expect("request id").to_owned()
    }

    /// The webhook connector's figures.
    fn figures(&self) -> Value {
        let (status, v) = self.call("GET", ADMIN, "/connectors", None);
        assert_eq!(status, 200, "{v}");
        v.as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == "approvers"))
            .cloned()
            .unwrap_or_else(|| panic!("no approvers connector in {v}"))
    }
}

fn posts_for(seen: &[Seen], id: &str) -> Vec<Seen> {
    seen.iter()
        .filter(|s| s.body["id"] == id)
        .cloned()
        .collect()
}

#[test]
fn webhook_notifies_approvers_and_retries_until_the_receiver_is_back() {
    let admin = free_port();
    let hook = free_port();
    let token = |name: &str, t: &str, roles: &str| {
        format!(
            "[[tokens]]\nname = \"{name}\"\nsha256 = \"{}\"\nroles = [{roles}]\n",
            sha256_hex(t)
        )
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let token_file = dir.path().join("hook.token");
    std::fs::write(&token_file, format!("{HOOK_TOKEN}\n")).expect("token file");
    let env = Env::with_config(&format!(
        "[admin]\nlisten = \"127.0.0.1:{admin}\"\n{PROFILES}\n{}{}{}\n\
         [[connectors]]\ntype = \"webhook\"\nname = \"approvers\"\n\
         url = \"http://127.0.0.1:{hook}/hooks/approvals\"\n\
         bearer_token_file = \"{}\"\ntimeout_ms = 2000\n\
         [connectors.delivery]\nbackoff_initial_ms = 50\nbackoff_max_ms = 300\n",
        token("ops", OPS, "\"operator\""),
        token("boss", BOSS, "\"approver\""),
        token("root", ADMIN, "\"admin\""),
        token_file.display(),
    ));
    let assets = env.file("assets.csv", ASSETS);
    let (code, report) = env.import("assets", &assets, &[]);
    assert_eq!(code, 0, "{report}");

    let seen = Arc::new(Mutex::new(Vec::new()));
    let receiver = Receiver::start(hook, Arc::clone(&seen));
    let mut daemon: Daemon = env.serve(&[]);
    wait_until(
        "the webhook connector's first reconcile",
        Duration::from_secs(60),
        || {
            if let Some(status) = daemon.child.try_wait().expect("try_wait") {
                panic!("idsync serve exited ({status}): {}", daemon.log());
            }
            let log = daemon.log();
            log.contains("first full reconcile done")
                && std::net::TcpStream::connect(("127.0.0.1", admin)).is_ok()
        },
    );
    let api = Api {
        base: format!("http://127.0.0.1:{admin}"),
        agent: ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .build(),
    };

    // A request waiting for approval: the approvers' receiver hears of it.
    let first = api.enroll();
    wait_until("the first notification", Duration::from_secs(30), || {
        !posts_for(&receiver.seen(), &first).is_empty()
    });
    let got = posts_for(&receiver.seen(), &first);
    assert_eq!(got.len(), 1, "{got:?}");
    let post = &got[0];
    assert_eq!(post.request_line, "POST /hooks/approvals HTTP/1.1");
    assert_eq!(post.headers["content-type"], "application/json");
    assert_eq!(
        post.headers["authorization"],
        format!("Bearer {HOOK_TOKEN}")
    );
    let b = &post.body;
    assert_eq!(b["event"], "approval_needed", "{b}");
    assert_eq!(b["kind"], "request");
    assert_eq!(b["operation"], "created");
    assert_eq!(b["object"]["id"], first.as_str());
    assert_eq!(b["object"]["status"], "pending_approval");
    assert_eq!(b["object"]["profile"], "Approved P12");
    let first_seq = b["seq"].as_u64().expect("seq");
    assert_eq!(post.headers["idempotency-key"], first_seq.to_string());

    // An approval is not for the approvers (request_statuses defaults to
    // pending_approval only): no POST for it.
    let (status, v) = api.call(
        "POST",
        BOSS,
        &format!("/api/v1/requests/{first}/approve"),
        Some(json!({})),
    );
    assert!((200..300).contains(&status), "{status} {v}");
    assert_eq!(v["request"]["status"], "approved", "{v}");

    // The receiver goes away; a second request waits, and the runner keeps
    // trying.
    receiver.stop();
    let second = api.enroll();
    wait_until(
        "failed attempts while the receiver is away",
        Duration::from_secs(30),
        || api.figures()["failed"].as_u64().unwrap_or(0) >= 2,
    );
    let figures = api.figures();
    let last_error = figures["last_error"].as_str().unwrap_or("").to_owned();
    assert!(
        last_error.contains(&format!("127.0.0.1:{hook}")),
        "{figures}"
    );
    assert!(!last_error.contains(HOOK_TOKEN), "{figures}");
    assert!(figures["lag"].as_u64().unwrap_or(0) >= 1, "{figures}");
    assert!(posts_for(&seen.lock().unwrap(), &second).is_empty());

    // Back on the same port: the second notification arrives.
    let receiver = Receiver::start(hook, Arc::clone(&seen));
    wait_until("the second notification", Duration::from_secs(30), || {
        !posts_for(&receiver.seen(), &second).is_empty()
    });
    wait_until("the runner caught up", Duration::from_secs(30), || {
        api.figures()["lag"] == 0
    });
    let figures = api.figures();
    assert_eq!(figures["parked"], 0, "{figures}");
    assert_eq!(figures["last_error"], "", "{figures}");
    let got = posts_for(&receiver.seen(), &second);
    let b = &got[0].body;
    assert_eq!(b["event"], "approval_needed", "{b}");
    assert_eq!(b["object"]["status"], "pending_approval");
    receiver.stop();
    daemon.signal("TERM");
    assert!(daemon.wait(Duration::from_secs(30)).is_some(), "stopped");
    let log = daemon.log();
    assert!(!log.contains(HOOK_TOKEN), "the token is never logged");

    // What was sent: one POST per seq (the first, delivered, is never sent
    // again), each seq a request event, the key always the body's seq.
    let changes = env.changes();
    let kind_of: HashMap<u64, String> = changes
        .iter()
        .map(|e| {
            (
                e["seq"].as_u64().expect("seq"),
                e["kind"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let all = seen.lock().unwrap().clone();
    let mut per_seq: HashMap<u64, usize> = HashMap::new();
    for s in &all {
        let seq = s.body["seq"].as_u64().expect("seq");
        assert_eq!(s.headers["idempotency-key"], seq.to_string());
        assert_eq!(
            kind_of.get(&seq).map(String::as_str),
            Some("request"),
            "seq {seq} is not a request event: {:?}",
            s.body
        );
        *per_seq.entry(seq).or_default() += 1;
    }
    assert_eq!(per_seq.get(&first_seq), Some(&1), "{per_seq:?}");
    assert_eq!(posts_for(&all, &first).len(), 1, "{all:?}");
    assert!(!posts_for(&all, &second).is_empty());
    assert_eq!(
        per_seq.len(),
        2,
        "only the two pending requests were sent: {all:?}"
    );
}
