//! The daemon on `store.engine = "postgres"`, against a real PostgreSQL
//! (Debian's, a throwaway cluster started by the test): SCIM writes and
//! reads, a drop-folder import and the change log go through the same
//! reconciler as on redb; a SIGKILL, or the database going away for 10 s
//! under load on two replicas, loses nothing acknowledged; another
//! process (the CLI) reads the database while the daemon runs
//! (docs/operations.md). Two daemons on one database: SCIM writes to both
//! at once (a gap-free log, 412 across replicas), one leading the
//! connectors and a failover when it is killed (to a webhook, and amid a
//! backlog of 10,000 users to a real slapd), one shared drop folder.

mod scim_env;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use idsync_store::test_postgres::TestPostgres;
use idsync_tests::{free_port, wait_until, Env};
use scim_env::{encode, sha, user, Scim, WAIT};
use serde_json::json;

fn on_postgres(pg: &TestPostgres) -> String {
    format!(
        "[store]\nengine = \"postgres\"\n[store.postgres]\nurl = \"{}\"\npool_size = 4\n",
        pg.url()
    )
}

/// A token for `idsync status` (the monitor role).
const MONITOR: &str = "idsync_monitor-token-for-the-postgres-test";

/// The `[[tokens]]` entry of [`MONITOR`].
fn monitor_token() -> String {
    format!(
        "[[tokens]]\nname = \"monitor\"\nsha256 = \"{}\"\nroles = [\"monitor\"]\n",
        sha(MONITOR)
    )
}

/// What `idsync status` prints for the daemon of `env`.
fn status(env: &Env) -> String {
    let out = env
        .command()
        .arg("status")
        .env("IDSYNC_TOKEN", MONITOR)
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The daemon's `/metrics` (its admin listener from `env`'s configuration).
fn metrics(env: &Env) -> String {
    let config = std::fs::read_to_string(env.config.as_ref().unwrap()).unwrap();
    let listen = config
        .lines()
        .find_map(|l| l.strip_prefix("listen = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("admin.listen in the configuration");
    ureq::get(&format!("http://{listen}/metrics"))
        .set("Authorization", &format!("Bearer {MONITOR}"))
        .call()
        .expect("GET /metrics")
        .into_string()
        .unwrap()
}

#[test]
fn the_daemon_keeps_its_store_in_postgres() {
    let pg = TestPostgres::start();
    let mut s = Scim::start("", &format!("{}{}", on_postgres(&pg), monitor_token()));

    let mut ids = Vec::new();
    for (login, family) in [("ann", "Smith"), ("bob", "Jones"), ("cy", "Lee")] {
        let r = s.post(
            "/Users",
            user(login, &format!("{login}@example.org"), family),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        ids.push(r.body["id"].as_str().unwrap().to_owned());
    }
    let r = s.post(
        "/Groups",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
               "displayName": "staff", "members": [{"value": ids[0]}, {"value": ids[1]}]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = s.filter("Users", "userName eq \"bob\"");
    assert_eq!(r.body["totalResults"], 1, "{}", r.body);
    assert_eq!(r.body["Resources"][0]["groups"][0]["display"], "staff");
    let r = s.patch(
        &format!("/Users/{}", ids[2]),
        json!([{"op": "replace", "path": "displayName", "value": "Cy Lee"}]),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let version = r.body["meta"]["version"].as_str().unwrap().to_owned();
    let r = s.get(&format!(
        "/Users?startIndex=2&count=2&filter={}",
        encode("active eq true")
    ));
    assert_eq!(r.body["totalResults"], 3, "{}", r.body);

    // A CSV drop lands in the same store, through the same reconciler.
    wait_until("the inbox exists", WAIT, || {
        s.env.inbox().join("users/processed").exists()
    });
    s.env.drop_file(
        "users",
        "more.csv",
        "status,mail,lastName\nactive,dee@example.org,Dee\n",
    );
    wait_until("the file is processed", WAIT, || {
        s.env.finished("users", "processed").len() == 1
    });
    let r = s.filter("Users", "userName eq \"dee@example.org\"");
    assert_eq!(r.body["totalResults"], 1, "{}", r.body);

    // Another process on the same database (the CLI) reads it while the
    // daemon runs: processes are no longer refused, only one leads.
    let changes = s.env.changes();
    assert!(changes.len() >= 5, "{changes:?}");
    assert!(
        s.daemon.log().contains("this process leads the replicas"),
        "{}",
        s.daemon.log()
    );

    // SIGKILL, then a restart: every acknowledged write is there.
    s.daemon.signal("KILL");
    s.daemon.wait(Duration::from_secs(10)).expect("killed");
    s.daemon = s.env.serve(&[]);
    wait_until("the SCIM listener answers again", WAIT, || {
        std::net::TcpStream::connect(("127.0.0.1", s.port)).is_ok()
    });
    let r = s.get(&format!("/Users/{}", ids[2]));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["displayName"], "Cy Lee");
    assert_eq!(r.body["meta"]["version"], version.as_str());
    assert_eq!(s.get("/Users").body["totalResults"], 4);
    // `idsync status` (from the admin listener's /status) names the engine.
    let status = s
        .env
        .command()
        .arg("status")
        .env("IDSYNC_TOKEN", MONITOR)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("store:           postgres (a round trip to the database takes "),
        "{text}{}",
        String::from_utf8_lossy(&status.stderr)
    );

    // The change log: every change once, numbered without a gap.
    s.daemon.signal("TERM");
    s.daemon.wait(Duration::from_secs(30)).expect("stopped");
    let changes = s.env.changes();
    let seqs: Vec<u64> = changes.iter().map(|c| c["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert!(seqs.len() >= 6, "{changes:?}");
}

/// The database stops for 10 s while SCIM clients write to two replicas
/// on it: requests in that time are refused (never answered 201 without
/// being stored), both replicas recover on their own when the database is
/// back (one leads again), and every acknowledged user is in the store
/// once, with one `created` event, in a change log without a gap. A batch
/// whose commit answer was lost cannot land under numbers already used
/// (the head it expects has moved).
#[test]
fn a_database_restart_under_load_loses_nothing_acknowledged() {
    let mut pg = TestPostgres::start();
    let replica = |name: &str| {
        Scim::start(
            "",
            &format!(
                "{}[replicas]\nnode_name = \"{name}\"\nfailover_ms = 1000\n",
                on_postgres(&pg)
            ),
        )
    };
    let mut replicas = [replica("replica-a"), replica("replica-b")];
    let stop = AtomicBool::new(false);
    let load = |s: &Scim, prefix: &str| {
        let (mut acked, mut refused) = (Vec::new(), 0);
        for n in 0.. {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let login = format!("{prefix}{n}");
            let r = s.post(
                "/Users",
                user(&login, &format!("{login}@example.org"), "Load"),
            );
            match r.status {
                201 => acked.push(login),
                500..=599 => refused += 1,
                other => panic!("POST {login}: {other} {}", r.body),
            }
        }
        (acked, refused)
    };
    let (acked, refused) = std::thread::scope(|scope| {
        let writers = [("a", &replicas[0]), ("b", &replicas[1])]
            .map(|(prefix, s)| scope.spawn(move || load(s, prefix)));
        std::thread::sleep(Duration::from_secs(2));
        pg.stop();
        std::thread::sleep(Duration::from_secs(10));
        pg.start_again();
        std::thread::sleep(Duration::from_secs(5));
        stop.store(true, Ordering::SeqCst);
        let mut acked = Vec::new();
        let mut refused = 0;
        for w in writers {
            let (a, r) = w.join().expect("a writer thread");
            acked.extend(a);
            refused += r;
        }
        (acked, refused)
    });
    assert!(refused > 0, "the outage refused nothing: it did not happen");
    // Written again after the outage, on both replicas.
    for (n, s) in replicas.iter().enumerate() {
        let login = format!("after{n}");
        let r = s.post(
            "/Users",
            user(&login, &format!("{login}@example.org"), "Load"),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    // The leader lock went with the old connections: its holder was a
    // follower until one of the two took the lock back (within
    // replicas.failover_ms of the database's return).
    let leads = |s: &Scim| {
        s.daemon
            .log()
            .matches("this process leads the replicas")
            .count()
    };
    wait_until("a replica leads again", WAIT, || {
        leads(&replicas[0]) + leads(&replicas[1]) >= 2
    });
    let lost = replicas
        .iter()
        .any(|s| s.daemon.log().contains("no longer the leader"));
    assert!(lost, "{}", replicas[0].daemon.log());
    for login in &acked {
        let r = replicas[1].filter("Users", &format!("userName eq \"{login}\""));
        assert_eq!(r.body["totalResults"], 1, "{login}: {}", r.body);
    }

    for s in &mut replicas {
        s.daemon.signal("TERM");
        s.daemon.wait(Duration::from_secs(30)).expect("stopped");
    }
    let changes = replicas[0].env.changes();
    let seqs: Vec<u64> = changes.iter().map(|c| c["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let created = changes
        .iter()
        .filter(|c| c["operation"] == "created" && c["kind"] == "user")
        .count();
    eprintln!(
        "{} acknowledged, {refused} refused during the outage, {created} created events",
        acked.len()
    );
    // Every acknowledged user once (and the two after); a refused one may
    // have landed (its answer was lost), never twice.
    assert!(
        created >= acked.len() + 2,
        "{created} created events, {} acknowledged (and two after)",
        acked.len()
    );
    assert!(
        created <= acked.len() + 2 + refused,
        "{created} created events"
    );
}

/// `idsync store copy` moves a stopped redb store into PostgreSQL and back,
/// change log included, and `idsync store compare` says so; a copy never
/// merges into a store that holds something, and a difference is named.
#[test]
fn a_store_moves_to_postgres_and_back_exactly() {
    let pg = TestPostgres::start();
    let url = pg.url();
    let redb = Env::new();
    let mut csv = String::from("status,mail,lastName,groups\n");
    for i in 0..300 {
        csv.push_str(&format!("active,u{i}@example.org,L{i},staff\n"));
    }
    let groups = redb.file("groups.csv", "displayName\nstaff\n");
    assert_eq!(redb.import("groups", &groups, &[]).0, 0);
    let users = redb.file("users.csv", csv);
    assert_eq!(redb.import("users", &users, &[]).0, 0);
    let changes = redb.changes();

    let ok = |out: std::process::Output| -> String {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let copied = ok(redb.run(&["store", "copy", "--to", &url]));
    assert!(copied.starts_with("copied "), "{copied}");
    assert!(ok(redb.run(&["store", "compare", "--with", &url])).starts_with("the same: "));
    let again = redb.run(&["store", "copy", "--to", &url]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is not empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // The same installation on PostgreSQL sees the same store.
    let on_pg = Env::with_config(&on_postgres(&pg));
    assert_eq!(on_pg.changes(), changes);
    assert_eq!(on_pg.list("users").len(), 300);
    // And back into an embedded store.
    let back = on_pg.data_dir().join("back");
    let back_name = format!("sled:{}", back.display());
    ok(on_pg.run(&["store", "copy", "--to", &back_name]));
    let original = format!("redb:{}", redb.data_dir().join("store").display());
    assert!(ok(on_pg.run(&["store", "compare", "--with", &back_name])).starts_with("the same"));
    assert!(ok(on_pg.run(&["store", "compare", "--with", &original])).starts_with("the same"));

    // A change on one side is the first difference.
    let one_more = redb.file(
        "more.csv",
        "status,mail,lastName\nactive,new@example.org,N\n",
    );
    assert_eq!(redb.import("users", &one_more, &[]).0, 0);
    let out = redb.run(&["store", "compare", "--with", &url]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("they differ at "),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A webhook receiver on 127.0.0.1:`port` that answers every POST 200
/// and counts the change-log sequence numbers it got (`seq` in the body),
/// until `stop`.
fn count_seqs(
    port: u16,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<HashMap<u64, u32>>>, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the receiver");
    listener.set_nonblocking(true).expect("non-blocking");
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let counts = Arc::clone(&seen);
    let thread = std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            let mut stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                Err(e) => panic!("accept: {e}"),
            };
            stream.set_nonblocking(false).expect("blocking stream");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            // Head, then as much body as Content-Length says.
            let body = loop {
                let Ok(n) = stream.read(&mut chunk) else {
                    break None;
                };
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    break Some(buf[end + 4..end + 4 + len].to_vec());
                }
            };
            let Some(body) = body else { continue };
            let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            if let Some(seq) = event["seq"].as_u64() {
                *counts.lock().unwrap().entry(seq).or_insert(0) += 1;
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (seen, thread)
}

/// Two daemons on one database, with the same webhook connector: one
/// leads and delivers, the other follows and delivers nothing; the CLI
/// imports beside them. SIGKILL of the leader while it delivers: the
/// follower leads within `replicas.failover_ms` (plus the time PostgreSQL
/// takes to see the connection closed), with a higher epoch, and delivers
/// from the stored cursor: every change arrives, and only what the killed
/// leader had delivered but not saved arrives twice.
#[test]
fn two_daemons_one_leader_and_a_failover() {
    let pg = TestPostgres::start();
    let hook = free_port();
    let stop = Arc::new(AtomicBool::new(false));
    let (seen, receiver) = count_seqs(hook, Arc::clone(&stop));
    let replica = |name: &str| {
        Env::with_config(&format!(
            "{}[admin]\nlisten = \"127.0.0.1:{}\"\n\
             [replicas]\nnode_name = \"{name}\"\nfailover_ms = 1000\n\
             [[connectors]]\ntype = \"webhook\"\nname = \"hook\"\n\
             url = \"http://127.0.0.1:{hook}/h\"\nkinds = [\"user\"]\ntimeout_ms = 5000\n\
             [connectors.delivery]\nbatch_size = 50\nbackoff_initial_ms = 50\nbackoff_max_ms = 300\n{}",
            on_postgres(&pg),
            free_port(),
            monitor_token(),
        ))
    };
    let (env_a, env_b) = (replica("replica-a"), replica("replica-b"));
    let a = env_a.serve(&[]);
    wait_until("a leads", WAIT, || {
        a.log().contains("this process leads the replicas")
    });
    let mut b = env_b.serve(&[]);
    wait_until("b follows", WAIT, || {
        b.log().contains("a follower: another process leads")
    });
    assert!(b.log().contains("replica-a (epoch 1)"), "{}", b.log());
    // `idsync status` and /metrics: a leads, b follows and names a.
    wait_until("a's status says it leads", WAIT, || {
        status(&env_a).contains("role:            leader (this node, replica-a; epoch 1)")
    });
    let status_a = status(&env_a);
    assert!(
        status_a.contains("store:           postgres (a round trip to the database takes "),
        "{status_a}"
    );
    wait_until("b's status names the leader", WAIT, || {
        status(&env_b)
            .contains("role:            follower (replica-b); the leader is replica-a (epoch 1)")
    });
    let metrics_a = metrics(&env_a);
    assert!(
        metrics_a.contains("\nidsync_replica_leader 1\n"),
        "{metrics_a}"
    );
    assert!(
        metrics_a.contains(
            "idsync_replica_info{node=\"replica-a\",role=\"leader\",leader=\"replica-a\"} 1"
        ),
        "{metrics_a}"
    );
    let metrics_b = metrics(&env_b);
    assert!(
        metrics_b.contains("\nidsync_replica_leader 0\n"),
        "{metrics_b}"
    );
    assert!(
        metrics_b.contains(
            "idsync_replica_info{node=\"replica-b\",role=\"follower\",leader=\"replica-a\"} 1"
        ),
        "{metrics_b}"
    );
    assert!(
        metrics_b.contains("\nidsync_store_round_trip_seconds "),
        "{metrics_b}"
    );
    assert!(
        metrics_b.contains("idsync_store_info{engine=\"postgres\"} 1"),
        "{metrics_b}"
    );
    // A's first full reconcile (nothing to send) runs before any change.
    wait_until("a's connector delivers", WAIT, || {
        a.log().contains("this process leads: delivering")
    });
    std::thread::sleep(Duration::from_millis(500));

    let users = |from: usize, to: usize| {
        let mut csv = String::from("status,mail,lastName\n");
        for n in from..to {
            csv.push_str(&format!("active,u{n}@example.org,U{n}\n"));
        }
        csv
    };
    let (code, report) = env_a.import("users", &env_a.file("one.csv", users(0, 300)), &[]);
    assert_eq!(code, 0, "{report}");
    wait_until("a delivers", WAIT, || seen.lock().unwrap().len() >= 100);
    let mut a = a;
    a.signal("KILL");
    a.wait(Duration::from_secs(10)).expect("killed");
    let killed = std::time::Instant::now();
    let (code, report) = env_b.import("users", &env_b.file("two.csv", users(300, 400)), &[]);
    assert_eq!(code, 0, "{report}");
    wait_until("b leads", Duration::from_secs(15), || {
        b.log().contains("this process leads the replicas")
    });
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "b led {took:?} after the kill"
    );
    assert!(b.log().contains("epoch=2"), "a higher epoch: {}", b.log());
    wait_until("every change delivered", WAIT, || {
        seen.lock().unwrap().len() == 400
    });
    std::thread::sleep(Duration::from_millis(500));
    let seen = seen.lock().unwrap().clone();
    let twice: Vec<u64> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(
        (1..=400).filter(|s| seen.contains_key(s)).count(),
        400,
        "every change once at least"
    );
    // At most the batch in flight and the one saved late (50 each).
    assert!(twice.len() <= 100, "delivered twice: {twice:?}");
    eprintln!(
        "b led {took:?} after the kill; {} changes delivered twice",
        twice.len()
    );
    b.signal("TERM");
    b.wait(Duration::from_secs(30)).expect("stopped");
    stop.store(true, Ordering::SeqCst);
    receiver.join().expect("the receiver");
}

/// A leader that stalls (SIGSTOP) is not crashed: its kernel still
/// answers the keepalives, and its session would hold the leader lock for
/// ever. The server ends a session silent for two `failover_ms`, so the
/// follower leads within a few seconds, with a higher epoch; woken, the
/// stalled one finds its connection gone and follows.
#[test]
fn a_stalled_leader_is_replaced() {
    let pg = TestPostgres::start();
    let shared = tempfile::tempdir().unwrap();
    let root = shared.path().join("inbox");
    let (env_a, env_b) = (
        folder_replica(&pg, "replica-a", &root),
        folder_replica(&pg, "replica-b", &root),
    );
    let mut a = env_a.serve(&[]);
    wait_until("a leads", WAIT, || {
        a.log().contains("this process leads the replicas")
    });
    let mut b = env_b.serve(&[]);
    wait_until("b follows", WAIT, || {
        b.log().contains("a follower: another process leads")
    });
    a.signal("STOP");
    wait_until("b leads", WAIT, || {
        b.log().contains("this process leads the replicas")
    });
    assert!(b.log().contains("epoch=2"), "a higher epoch: {}", b.log());
    a.signal("CONT");
    wait_until("a follows again", WAIT, || {
        a.log().matches("a follower: another process leads").count() >= 1
    });
    for d in [&mut a, &mut b] {
        d.signal("TERM");
        d.wait(Duration::from_secs(30)).expect("stopped");
    }
}

/// A replica's configuration on `pg` with the drop folders under `root`
/// (shared by the replicas of a test).
fn folder_replica(pg: &TestPostgres, name: &str, root: &std::path::Path) -> Env {
    Env::with_config(&format!(
        "{}[admin]\nlisten = \"127.0.0.1:{}\"\n\
         [replicas]\nnode_name = \"{name}\"\nfailover_ms = 1000\n\
         [folders]\nroot = \"{}\"\n",
        on_postgres(pg),
        free_port(),
        root.display(),
    ))
}

/// The file names (reports left out) in `dir`.
fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.contains(".report."))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The name a file was dropped as, from its claimed name
/// (`STAMP-NAME` or `STAMP.N-NAME`).
fn unstamped(claimed: &str) -> &str {
    claimed.split_once("Z-").map_or(claimed, |(_, name)| name)
}

/// Two daemons on one database watch one shared drop folder, and 1,000
/// files are dropped into it (written elsewhere, then renamed in): every
/// file is imported once, by one of them. Each ends in `processed/` with
/// one report, none is left in `.work/` or the inbox, every user is
/// created once (one `created` event each, a change log without a gap),
/// and the two daemons' "imported" lines add up to the files.
#[test]
fn two_daemons_share_one_drop_folder() {
    const FILES: usize = 1000;
    let pg = TestPostgres::start();
    let shared = tempfile::tempdir().unwrap();
    let root = shared.path().join("inbox");
    let env_a = folder_replica(&pg, "replica-a", &root);
    let env_b = folder_replica(&pg, "replica-b", &root);
    // Both at once, on an empty database: both create its table.
    let watching = |d: &idsync_tests::Daemon| {
        let deadline = std::time::Instant::now() + WAIT;
        while !d.log().contains("idsync is watching its drop folders") {
            assert!(
                std::time::Instant::now() < deadline,
                "the daemon does not watch its folders: {}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut a = env_a.serve(&[]);
    let mut b = env_b.serve(&[]);
    watching(&a);
    watching(&b);
    let started = std::time::Instant::now();
    let staging = shared.path().join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let users = root.join("users");
    for i in 0..FILES {
        let name = format!("f{i:04}.csv");
        let csv = format!(
            "status,mail,lastName\nactive,f{i}a@example.org,A{i}\nactive,f{i}b@example.org,B{i}\n"
        );
        std::fs::write(staging.join(&name), csv).unwrap();
        std::fs::rename(staging.join(&name), users.join(&name)).unwrap();
    }
    let processed = users.join("processed");
    let rejected = users.join("rejected");
    wait_until("every file is finished", Duration::from_secs(300), || {
        files_in(&processed).len() + files_in(&rejected).len() >= FILES
    });
    let took = started.elapsed();
    for d in [&mut a, &mut b] {
        d.signal("TERM");
        d.wait(Duration::from_secs(30)).expect("stopped");
    }

    assert_eq!(files_in(&rejected), Vec::<String>::new());
    assert_eq!(files_in(&users.join(".work")), Vec::<String>::new());
    assert_eq!(
        files_in(&users),
        Vec::<String>::new(),
        "nothing left in the inbox"
    );
    let done = files_in(&processed);
    let mut dropped: Vec<&str> = done.iter().map(|n| unstamped(n)).collect();
    dropped.sort();
    let expected: Vec<String> = (0..FILES).map(|i| format!("f{i:04}.csv")).collect();
    assert_eq!(dropped, expected, "each file once in processed/");
    let mut created = 0;
    for name in &done {
        let report = processed.join(format!("{name}.report.json"));
        let text = std::fs::read_to_string(&report)
            .unwrap_or_else(|e| panic!("{}: {e}", report.display()));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["outcome"], "accepted", "{name}: {text}");
        created += v["summary"]["created"].as_u64().unwrap_or(0);
    }
    let reports = std::fs::read_dir(&processed)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".report.json"))
        .count();
    assert_eq!(reports, FILES, "one report a file");

    let changes = env_a.changes();
    let seqs: Vec<u64> = changes.iter().map(|c| c["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let mut created_ids: Vec<&str> = changes
        .iter()
        .filter(|c| c["operation"] == "created" && c["kind"] == "user")
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(created_ids.len(), 2 * FILES, "one created event a user");
    created_ids.sort();
    created_ids.dedup();
    assert_eq!(created_ids.len(), 2 * FILES, "no user created twice");
    assert_eq!(changes.len(), 2 * FILES, "nothing but the creations");
    assert_eq!(
        created,
        2 * FILES as u64,
        "the reports count each user once"
    );
    assert_eq!(env_b.list("users").len(), 2 * FILES);
    let imported = |d: &idsync_tests::Daemon| d.log().matches(": imported ").count();
    let (by_a, by_b) = (imported(&a), imported(&b));
    eprintln!("{FILES} files in {took:?}: {by_a} imported by replica-a, {by_b} by replica-b");
    assert_eq!(by_a + by_b, FILES);
    // The claims are all given back.
    let dir = tempfile::tempdir().unwrap();
    let opts = pg.engine_options(idsync_store::EngineOptions::default());
    let store =
        idsync_store::Store::open(idsync_store::EngineKind::Postgres, dir.path(), &opts).unwrap();
    assert_eq!(store.claims().unwrap(), Vec::new());
}

/// The recovery rule: a file in the shared `.work/` whose claim's holder
/// is gone (its heartbeat stands still) is finished by another replica; a
/// file whose holder still beats is left alone, and taken once the
/// beating stops.
#[test]
fn a_gone_replicas_claimed_file_is_finished_by_another() {
    let pg = TestPostgres::start();
    let shared = tempfile::tempdir().unwrap();
    let root = shared.path().join("inbox");
    let work = root.join("users").join(".work");
    std::fs::create_dir_all(&work).unwrap();
    let gone = "20261204T100000.000000Z-gone.csv";
    let live = "20261204T100000.000001Z-live.csv";
    std::fs::write(
        work.join(gone),
        "status,mail,lastName\nactive,gone1@example.org,G\nactive,gone2@example.org,G\n",
    )
    .unwrap();
    std::fs::write(
        work.join(live),
        "status,mail,lastName\nactive,live1@example.org,L\n",
    )
    .unwrap();
    // Claims as two other replicas left them: one gone (it never beats
    // again), one alive (this test beats for it).
    let dir = tempfile::tempdir().unwrap();
    let opts = pg.engine_options(idsync_store::EngineOptions::default());
    let store =
        idsync_store::Store::open(idsync_store::EngineKind::Postgres, dir.path(), &opts).unwrap();
    let name = |f: &str| format!("users/.work {f}");
    store.beat("replica-gone").unwrap();
    store
        .claim(&name(gone), "replica-gone", "p-gone")
        .unwrap()
        .expect("claimed");
    store
        .claim(&name(live), "replica-live", "p-live")
        .unwrap()
        .expect("claimed");
    let beating = Arc::new(AtomicBool::new(true));
    let beater = {
        let beating = Arc::clone(&beating);
        let opts = opts.clone();
        let dir = dir.path().to_owned();
        std::thread::spawn(move || {
            let store =
                idsync_store::Store::open(idsync_store::EngineKind::Postgres, &dir, &opts).unwrap();
            while beating.load(Ordering::SeqCst) {
                store.beat("replica-live").unwrap();
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };

    let env = folder_replica(&pg, "replica-b", &root);
    let mut b = env.serve(&[]);
    let processed = root.join("users").join("processed");
    wait_until("the gone replica's file is finished", WAIT, || {
        files_in(&processed).contains(&gone.to_owned())
    });
    assert!(
        b.log()
            .contains("taking over a file in .work whose claim's holder is gone"),
        "{}",
        b.log()
    );
    // The live replica's file stays where it is while it beats: several
    // of b's looks (every half second) see it beat.
    std::thread::sleep(Duration::from_secs(4));
    assert!(work.join(live).exists(), "a live replica's file was taken");
    assert_eq!(
        store
            .claim_holder(&name(live))
            .unwrap()
            .unwrap()
            .holder
            .node,
        "replica-live"
    );
    beating.store(false, Ordering::SeqCst);
    beater.join().unwrap();
    wait_until(
        "the live replica's file is finished once it is gone",
        WAIT,
        || files_in(&processed).contains(&live.to_owned()),
    );
    b.signal("TERM");
    b.wait(Duration::from_secs(30)).expect("stopped");

    let changes = env.changes();
    let created: Vec<&str> = changes
        .iter()
        .filter(|c| c["operation"] == "created")
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(created.len(), 3, "{changes:?}");
    assert_eq!(
        store.claims().unwrap(),
        Vec::new(),
        "the claims are given back"
    );
    assert!(files_in(&work).is_empty());
}

/// A file of `rows` users, `status,mail,lastName`, dropped into `users/`
/// under `root` as `name` (written beside, then renamed in).
fn drop_users(root: &std::path::Path, name: &str, rows: usize) {
    let staging = root.parent().unwrap().join(name);
    let mut w = std::io::BufWriter::new(std::fs::File::create(&staging).unwrap());
    writeln!(w, "status,mail,lastName").unwrap();
    for i in 0..rows {
        writeln!(w, "active,taken{i}@example.org,Last{i}").unwrap();
    }
    drop(w);
    std::fs::create_dir_all(root.join("users")).unwrap();
    std::fs::rename(&staging, root.join("users").join(name)).unwrap();
}

/// Bytes of created rows spooled beside the shared folders.
fn shared_spooled(root: &std::path::Path) -> u64 {
    idsync_tests::spooled_in(&root.join(".spools"))
}

/// The JSON report of the one file in `users/processed`, once it is there.
fn processed_report(root: &std::path::Path) -> serde_json::Value {
    let processed = root.join("users").join("processed");
    wait_until("the file is finished", WAIT, || {
        files_in(&processed).len() == 1
    });
    let name = &files_in(&processed)[0];
    let json = processed.join(format!("{name}.report.json"));
    serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap()
}

/// Start replica A on the shared folder, drop `rows` users and stop A
/// with `signal` once it has spooled a third of them (a batch or more
/// committed).
fn replica_stopped_mid_import(
    pg: &TestPostgres,
    root: &std::path::Path,
    rows: usize,
    signal: &str,
) -> (Env, idsync_tests::Daemon) {
    let env = folder_replica(pg, "replica-a", root);
    let a = env.serve(&[]);
    wait_until("watching", WAIT, || {
        a.log().contains("idsync is watching its drop folders")
    });
    drop_users(root, "big.csv", rows);
    // A spooled created row is about 70 bytes here.
    wait_until("A imports a third of the file", WAIT, || {
        shared_spooled(root) >= rows as u64 * 70 / 3
    });
    a.signal(signal);
    (env, a)
}

/// [`replica_stopped_mid_import`] with SIGKILL, on a database and in a
/// shared folder of its own: the database, the folder (removed when
/// dropped) and the drop folders' root in it.
fn replica_killed_mid_import(rows: usize) -> (TestPostgres, tempfile::TempDir, std::path::PathBuf) {
    let pg = TestPostgres::start();
    let shared = tempfile::tempdir().unwrap();
    let root = shared.path().join("inbox");
    let (_env_a, mut a) = replica_stopped_mid_import(&pg, &root, rows, "KILL");
    a.wait(Duration::from_secs(10)).expect("killed");
    (pg, shared, root)
}

/// The report's created lines, each once.
fn created_lines(report: &serde_json::Value) -> std::collections::HashSet<u64> {
    let created = report["created"].as_array().expect("created rows");
    let lines: std::collections::HashSet<u64> = created
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines.len(), created.len(), "a row listed twice");
    lines
}

/// A replica killed amid an import in a shared folder: another takes the
/// file over and resumes after the last committed batch, and since the
/// spools sit beside the shared folders, it continues them. The report
/// lists every row once, with no warning of rows missing.
#[test]
fn a_file_taken_over_mid_import_keeps_every_row_in_its_report() {
    const ROWS: usize = 20_000;
    let (pg, _shared, root) = replica_killed_mid_import(ROWS);

    let env_b = folder_replica(&pg, "replica-b", &root);
    let mut b = env_b.serve(&[]);
    let report = processed_report(&root);
    assert!(
        b.log()
            .contains("taking over a file in .work whose claim's holder is gone"),
        "{}",
        b.log()
    );
    assert!(report["resumedAfterLine"].as_u64().is_some(), "{report}");
    assert_eq!(report["warnings"], json!([]), "{report}");
    assert_eq!(created_lines(&report).len(), ROWS);
    assert_eq!(report["summary"]["created"], json!(ROWS), "{report}");
    b.signal("TERM");
    b.wait(Duration::from_secs(30)).expect("stopped");
    let created = env_b.created_count();
    assert_eq!(created, ROWS);
    assert_eq!(shared_spooled(&root), 0, "the spools are removed");
}

/// A replica counted gone may still run (paused, not dead) and write its
/// buffered rows into the file's spools: the replica that takes the file
/// over must not cut and continue spools another process has open. Here
/// a `flock` process holds them open after the first replica is killed:
/// the second spools afresh beside them, leaves them as they were, and its
/// report warns that rows are missing. Every user is created once.
#[test]
fn spools_open_in_another_process_are_left_alone() {
    const ROWS: usize = 20_000;
    let (pg, _shared, root) = replica_killed_mid_import(ROWS);
    let spool = std::fs::read_dir(root.join(".spools"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .next()
        .expect("A's spools");
    // A shell holds them open (util-linux `flock` on its descriptor 9)
    // until its standard input closes.
    let mut holder = std::process::Command::new("sh")
        .arg("-c")
        .arg("exec 9>>\"$0\" && flock --shared 9 && echo held && read _")
        .arg(spool.join(".lock"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sh");
    let mut said = [0u8; 5];
    holder
        .stdout
        .take()
        .unwrap()
        .read_exact(&mut said)
        .expect("the lock is held");
    assert_eq!(&said, b"held\n");
    let held = std::fs::read(spool.join("created.jsonl")).unwrap();

    let env_b = folder_replica(&pg, "replica-b", &root);
    let mut b = env_b.serve(&[]);
    let report = processed_report(&root);
    assert!(
        b.log()
            .contains("the file's report spools are still open in another process"),
        "{}",
        b.log()
    );
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains("missing from the row lists"), "{report}");
    let listed = created_lines(&report).len();
    assert!(listed < ROWS, "{listed} rows listed");
    assert_eq!(report["summary"]["created"], json!(ROWS), "{report}");
    assert_eq!(
        std::fs::read(spool.join("created.jsonl")).unwrap(),
        held,
        "the spools held open were changed"
    );
    drop(holder.stdin.take());
    holder.wait().unwrap();
    b.signal("TERM");
    b.wait(Duration::from_secs(30)).expect("stopped");
    let created = env_b.created_count();
    assert_eq!(created, ROWS, "every user created once");
}

/// Sessions holding the writers' turn (the advisory lock
/// `0x6964_7379_6e66`, as `pg_locks` splits it into two 32-bit halves).
fn turn_holders(pg: &TestPostgres) -> u32 {
    let out = pg
        .psql("postgres")
        .args([
            "-At",
            "-c",
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND classid = 26980 AND objid = 1937337958 AND objsubid = 1",
        ])
        .output()
        .expect("psql");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// A replica that stalls (SIGSTOP) amid an import holds the writers'
/// turn (a long import keeps it while no other replica waits). Its
/// session sends nothing while it stalls, so the server ends it after the
/// turn's idle limit (twice `failover_ms`, 2 s here) and the turn with
/// it: another replica's SCIM write waits for that, not for the statement
/// timeout (30 s, then 503). Woken, the stalled replica's next batch
/// finds the head moved and its import goes on from its last committed
/// batch: every user is created once.
#[test]
fn a_stalled_replica_does_not_hold_up_the_others_writes() {
    const ROWS: usize = 20_000;
    let pg = TestPostgres::start();
    let b = Scim::start(
        "",
        &format!(
            "{}[replicas]\nnode_name = \"replica-b\"\nfailover_ms = 1000\n",
            on_postgres(&pg)
        ),
    );
    let shared = tempfile::tempdir().unwrap();
    let root = shared.path().join("inbox");
    let (env_a, mut a) = replica_stopped_mid_import(&pg, &root, ROWS, "STOP");
    assert_eq!(turn_holders(&pg), 1, "the stalled replica holds the turn");

    let started = std::time::Instant::now();
    let r = b.post("/Users", user("stall", "stall@example.org", "Stall"));
    assert_eq!(r.status, 201, "after {:?}: {}", started.elapsed(), r.body);
    assert_eq!(turn_holders(&pg), 0, "the stalled replica's turn is gone");

    a.signal("CONT");
    let report = processed_report(&root);
    assert_eq!(report["summary"]["created"], json!(ROWS), "{report}");
    a.signal("TERM");
    a.wait(Duration::from_secs(30)).expect("stopped");
    let created = env_a.created_count();
    assert_eq!(created, ROWS + 1, "every user created once");
}

/// In a folder two replicas share, a file whose import fails (the spools
/// beside the folders cannot be made) stays with the replica
/// that claimed it, which tries it again after its pause: the other
/// replica does not take it up at each look (every half second here), so
/// the file fails once, not at every look, and is imported once when the
/// cause is gone.
#[test]
fn a_failing_file_in_a_shared_folder_stays_with_its_replica() {
    let pg = TestPostgres::start();
    let shared = tempfile::tempdir().unwrap();
    let root = shared.path().join("inbox");
    let envs = [
        folder_replica(&pg, "replica-a", &root),
        folder_replica(&pg, "replica-b", &root),
    ];
    let mut daemons: Vec<idsync_tests::Daemon> = envs.iter().map(|e| e.serve(&[])).collect();
    for d in &daemons {
        wait_until("watching", WAIT, || {
            d.log().contains("idsync is watching its drop folders")
        });
    }
    // Under a claim the spools sit beside the shared folders.
    let spools = root.join(".spools");
    let _ = std::fs::remove_dir_all(&spools);
    std::fs::write(&spools, "not a directory").unwrap();
    let users = root.join("users");
    let staging = shared.path().join("u.csv");
    std::fs::write(
        &staging,
        "status,mail,lastName\nactive,f1@example.org,F\nactive,f2@example.org,F\n",
    )
    .unwrap();
    std::fs::rename(&staging, users.join("u.csv")).unwrap();
    let failed = "the import failed; trying it again later";
    let failures = |ds: &[idsync_tests::Daemon]| {
        ds.iter()
            .map(|d| d.log().matches(failed).count())
            .sum::<usize>()
    };
    wait_until("the import fails", WAIT, || failures(&daemons) > 0);
    // Several looks of each replica, all inside the first pause (5 s).
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(failures(&daemons), 1, "the file went round the replicas");
    assert_eq!(files_in(&users.join(".work")).len(), 1);

    std::fs::remove_file(&spools).unwrap();
    let processed = users.join("processed");
    wait_until("the file is imported on its next try", WAIT, || {
        files_in(&processed).len() == 1
    });
    for d in &mut daemons {
        d.signal("TERM");
        d.wait(Duration::from_secs(30)).expect("stopped");
    }
    assert_eq!(failures(&daemons), 1);
    let created = envs[0].created_count();
    assert_eq!(created, 2);
    assert!(files_in(&users.join(".work")).is_empty());
}

/// Two daemons on one database take SCIM writes at once, interleaved:
/// every create lands once (on whichever replica took it), each replica
/// reads what the other wrote, the change log has no gap, and a version
/// read on one replica and written on the other is exact: `If-Match`
/// with a version the other replica has moved on is refused with 412.
#[test]
fn scim_writes_to_two_replicas_interleave() {
    let pg = TestPostgres::start();
    let replica = |name: &str| {
        Scim::start(
            "",
            &format!("{}[replicas]\nnode_name = \"{name}\"\n", on_postgres(&pg)),
        )
    };
    let (a, b) = (replica("replica-a"), replica("replica-b"));
    const PER_CLIENT: usize = 50;
    let ids: Vec<String> = std::thread::scope(|s| {
        let clients: Vec<_> = [(&a, "a"), (&b, "b"), (&a, "c"), (&b, "d")]
            .into_iter()
            .map(|(scim, client)| {
                s.spawn(move || {
                    (0..PER_CLIENT)
                        .map(|i| {
                            let login = format!("{client}{i}");
                            let mail = format!("{login}@example.org");
                            let r = scim.post("/Users", user(&login, &mail, "Replica"));
                            assert_eq!(r.status, 201, "{}", r.body);
                            r.body["id"].as_str().unwrap().to_owned()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect()
    });
    for id in ids.iter().step_by(17) {
        assert_eq!(a.get(&format!("/Users/{id}")).status, 200);
        assert_eq!(b.get(&format!("/Users/{id}")).status, 200);
    }

    let path = format!("/Users/{}", ids[0]);
    let rename = |scim: &Scim, etag: &str, name: &str| {
        let ops = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "displayName", "value": name}],
        });
        scim.call_with(
            "PATCH",
            &path,
            Some(&ops),
            Some(scim_env::WRITER),
            &[("If-Match", etag)],
        )
    };
    let read_on_a = a.get(&path).etag.expect("an ETag");
    let on_b = rename(&b, &read_on_a, "Written on b");
    assert_eq!(on_b.status, 200, "{}", on_b.body);
    let stale = rename(&a, &read_on_a, "Written on a");
    assert_eq!(stale.status, 412, "{}", stale.body);
    let fresh = rename(&a, on_b.etag.as_deref().expect("an ETag"), "Written on a");
    assert_eq!(fresh.status, 200, "{}", fresh.body);
    assert_eq!(b.get(&path).body["displayName"], "Written on a");

    let changes = a.env.changes();
    let seqs: Vec<u64> = changes.iter().map(|c| c["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "gap-free"
    );
    let mut created: Vec<&str> = changes
        .iter()
        .filter(|c| c["operation"] == "created" && c["kind"] == "user")
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    created.sort_unstable();
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(created, expected, "each create once");
    let updates = changes
        .iter()
        .filter(|c| c["operation"] == "updated" && c["id"] == ids[0].as_str())
        .count();
    assert_eq!(updates, 2, "the stale write left no trace");
}

/// Two daemons on one database pushing to one real slapd: SIGKILL of the
/// leader while it delivers a backlog of 10,000 users; the follower leads
/// within the failover time and delivers from the stored cursor. Every
/// user ends as one entry, none doubled and none parked.
#[test]
fn the_leader_killed_amid_a_backlog_to_slapd_loses_and_doubles_nothing() {
    const USERS: usize = 10_000;
    let pg = TestPostgres::start();
    let slapd = idsync_tests::ldap::Slapd::start(false);
    let replica = |name: &str| {
        Env::with_config(&format!(
            "{}[admin]\nlisten = \"127.0.0.1:{}\"\n\
             [replicas]\nnode_name = \"{name}\"\nfailover_ms = 1000\n{}\
             [connectors.delivery]\nbatch_size = 200\nbackoff_initial_ms = 50\nbackoff_max_ms = 300\n{}",
            on_postgres(&pg),
            free_port(),
            slapd.connector_toml("directory"),
            monitor_token(),
        ))
    };
    let (env_a, env_b) = (replica("replica-a"), replica("replica-b"));
    let mut a = env_a.serve(&[]);
    wait_until("a delivers", WAIT, || {
        a.log().contains("this process leads: delivering")
    });
    let b = env_b.serve(&[]);
    wait_until("b follows", WAIT, || {
        b.log().contains("a follower: another process leads")
    });

    let mut csv = String::from("status,loginName,mail,lastName\n");
    for n in 0..USERS {
        csv.push_str(&format!("active,u{n:05},u{n:05}@example.org,Backlog\n"));
    }
    let (code, report) = env_a.import("users", &env_a.file("backlog.csv", csv), &[]);
    assert_eq!(code, 0, "{report}");
    let people = format!("ou=people,{}", idsync_tests::ldap::BASE);
    let entries = || slapd.count(&people, "(objectClass=inetOrgPerson)");
    wait_until("a has delivered part of the backlog", WAIT, || {
        entries() >= USERS / 5
    });
    a.signal("KILL");
    a.wait(Duration::from_secs(10)).expect("killed");
    let at_kill = entries();
    assert!(at_kill < USERS, "the backlog was delivered before the kill");
    wait_until("b leads", Duration::from_secs(30), || {
        b.log().contains("this process leads the replicas")
    });
    wait_until(
        "every user in the directory",
        Duration::from_secs(300),
        || entries() == USERS,
    );
    // Once each: by uid, one entry per user with its mail.
    let found = slapd.search(&people, "(objectClass=inetOrgPerson)");
    assert_eq!(found.len(), USERS);
    let mut uids: Vec<String> = found.iter().filter_map(|e| e.one("uid")).collect();
    uids.sort();
    uids.dedup();
    assert_eq!(uids.len(), USERS, "one entry per user");
    assert!(found.iter().all(|e| {
        let uid = e.one("uid").unwrap_or_default();
        e.one("mail") == Some(format!("{uid}@example.org"))
    }));
    let metrics_b = metrics(&env_b);
    assert!(
        metrics_b.contains("idsync_connector_parked{connector=\"directory\"} 0"),
        "{metrics_b}"
    );
    eprintln!("killed the leader at {at_kill} of {USERS} entries; b delivered the rest");
    let mut b = b;
    b.signal("TERM");
    b.wait(Duration::from_secs(30)).expect("stopped");
}
