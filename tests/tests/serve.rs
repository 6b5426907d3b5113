//! End-to-end tests of `idsync serve`: the real binary watching real folders.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use idsync_schema::{Kind, User};
use idsync_store::ChangeEvent;
use idsync_tests::{free_port, wait_until, Env};

const WAIT: Duration = Duration::from_secs(60);

fn daemon_env(extra: &str) -> (Env, u16) {
    let port = free_port();
    let env = Env::with_config(&format!(
        "[admin]\nlisten = \"127.0.0.1:{port}\"\n[folders]\nstable_ms = 400\n{extra}"
    ));
    (env, port)
}

fn users_csv(from: usize, to: usize) -> String {
    let mut s = String::from("status,loginName,mail,lastName\n");
    for i in from..to {
        s.push_str(&format!("active,user{i},user{i}@example.org,Last{i}\n"));
    }
    s
}

/// The daemon has finished starting (its signal handlers are in place).
fn watching(d: &idsync_tests::Daemon) -> bool {
    d.log().contains("is watching its drop folders")
}

#[test]
fn a_renamed_in_file_is_imported_and_moved_with_its_reports() {
    let (env, _) = daemon_env("");
    let mut d = env.serve(&[]);
    wait_until("the daemon is ready", WAIT, || watching(&d));
    env.drop_file("users", "roster.csv", users_csv(0, 3));
    env.drop_file("assets", "bad.csv", "not,an,asset\n");
    wait_until("users processed", WAIT, || {
        env.finished("users", "processed").len() == 1
    });
    wait_until("assets rejected", WAIT, || {
        env.finished("assets", "rejected").len() == 1
    });
    let done = &env.finished("users", "processed")[0];
    let name = done.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with("-roster.csv"), "{name}: stamped");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{}.report.json", done.display())).unwrap())
            .unwrap();
    assert_eq!(report["summary"]["created"], 3);
    // The report names the file as dropped and where it went, not the
    // `.work/` path that was read.
    let dropped = env.inbox().join("users").join("roster.csv");
    assert_eq!(report["file"], dropped.display().to_string(), "{report}");
    assert_eq!(report["movedTo"], done.display().to_string(), "{report}");
    let bad = &env.finished("assets", "rejected")[0];
    let refused: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{}.report.json", bad.display())).unwrap())
            .unwrap();
    assert_eq!(refused["movedTo"], bad.display().to_string(), "{refused}");
    assert!(std::path::Path::new(&format!("{}.report.csv", done.display())).exists());
    assert!(
        std::fs::read_dir(env.inbox().join("users"))
            .unwrap()
            .flatten()
            .all(|e| e.path().is_dir()),
        "inbox empty"
    );
    d.signal("TERM");
    let status = d
        .wait(Duration::from_secs(20))
        .expect("exits after SIGTERM");
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
    assert!(
        d.log().contains("outcome=Accepted"),
        "one summary line per file: {}",
        d.log()
    );
    assert_eq!(env.list("users").len(), 3);
}

#[test]
fn a_half_written_file_is_not_read_early() {
    let (env, _) = daemon_env("");
    let _d = env.serve(&[]);
    wait_until("the daemon is ready", WAIT, || watching(&_d));
    let path = env.inbox().join("users/slow.csv");
    let mut f = std::fs::File::create(&path).unwrap();
    let all = users_csv(0, 200);
    let (head, tail) = all.split_at(all.len() / 2);
    f.write_all(head.as_bytes()).unwrap();
    f.flush().unwrap();
    // Pauses shorter than stable_ms (400 ms) while the writer goes on.
    for chunk in tail.as_bytes().chunks(tail.len() / 3 + 1) {
        std::thread::sleep(Duration::from_millis(250));
        assert!(
            env.finished("users", "processed").is_empty(),
            "read before the writer finished"
        );
        f.write_all(chunk).unwrap();
        f.flush().unwrap();
    }
    drop(f);
    wait_until("processed", WAIT, || {
        env.finished("users", "processed").len() == 1
    });
    let done = &env.finished("users", "processed")[0];
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{}.report.json", done.display())).unwrap())
            .unwrap();
    assert_eq!(
        report["summary"]["created"], 200,
        "the whole file, read once: {report}"
    );
}

#[test]
fn a_thousand_files_dropped_at_once_are_all_imported_in_order() {
    let (env, _) = daemon_env("");
    let _d = env.serve(&[]);
    wait_until("the daemon is ready", WAIT, || watching(&_d));
    for i in 0..1000 {
        env.drop_file("users", &format!("f{i:04}.csv"), users_csv(i, i + 1));
    }
    wait_until("1000 files processed", Duration::from_secs(300), || {
        env.finished("users", "processed").len() == 1000
    });
    drop(_d);
    let store = env.store();
    let events: Vec<ChangeEvent> = store.changes(0, 2000).unwrap();
    assert_eq!(events.len(), 1000, "one change per file, none lost");
    let order: Vec<usize> = events
        .iter()
        .map(|e| {
            let u: User = store.object(Kind::User, e.id).unwrap().unwrap();
            u.login_name.unwrap()["user".len()..].parse().unwrap()
        })
        .collect();
    assert_eq!(
        order,
        (0..1000).collect::<Vec<_>>(),
        "arrival order per folder"
    );
}

#[test]
fn files_waiting_at_start_and_symlinks() {
    let (env, _) = daemon_env("");
    // Before the daemon runs: one file waiting, one symlink to outside.
    env.drop_file("users", "early.csv", users_csv(0, 2));
    let outside = env.file("secret.csv", users_csv(5, 6));
    std::os::unix::fs::symlink(&outside, env.inbox().join("users/link.csv")).unwrap();
    let _d = env.serve(&[]);
    wait_until("early file processed", WAIT, || {
        env.finished("users", "processed").len() == 1
    });
    wait_until("symlink refused", WAIT, || {
        env.finished("users", "rejected").len() == 1
    });
    let refused = &env.finished("users", "rejected")[0];
    assert!(
        refused.symlink_metadata().unwrap().file_type().is_symlink(),
        "the link itself is moved"
    );
    let report = std::fs::read_to_string(format!("{}.report.json", refused.display())).unwrap();
    assert!(report.contains("symbolic link"), "{report}");
    drop(_d);
    let mails: Vec<String> = env
        .list("users")
        .iter()
        .map(|u| u["mail"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        mails,
        ["user0@example.org", "user1@example.org"],
        "the link's target was never read"
    );
}

#[test]
fn an_application_folder_records_the_application() {
    let (env, _) = daemon_env("[folders.options.\"users/portal\"]\nend_state = \"inactive\"\n");
    let _d = env.serve(&[]);
    wait_until("the daemon is ready", WAIT, || watching(&_d));
    std::fs::create_dir_all(env.inbox().join("users/portal")).unwrap();
    wait_until("the new folder is watched", WAIT, || {
        _d.log().contains("watching a new folder")
    });
    env.drop_file("users/portal", "p.csv", users_csv(0, 1));
    wait_until("processed", WAIT, || {
        env.finished("users/portal", "processed").len() == 1
    });
    drop(_d);
    let u = env.show("users", "user0").unwrap();
    assert_eq!(u["applications"], serde_json::json!(["portal"]));
    assert_eq!(u["status"], "inactive", "the folder's end_state option");
}

#[test]
fn sigkill_during_a_large_file_then_restart_gives_the_exact_store() {
    let (env, _) = daemon_env("");
    let rows = 20_000;
    let mut d = env.serve(&[]);
    wait_until("the daemon is ready", WAIT, || watching(&d));
    env.drop_file("users", "big.csv", users_csv(0, rows));
    // Kill once the import is well under way (its spool has grown).
    wait_until("import under way", WAIT, || env.spooled() > 300_000);
    d.signal("KILL");
    d.wait(Duration::from_secs(10)).expect("killed");
    assert!(
        env.finished("users", "processed").is_empty(),
        "killed mid-import"
    );

    let d2 = env.serve(&[]);
    wait_until("resumed and processed", Duration::from_secs(120), || {
        env.finished("users", "processed").len() == 1
    });
    drop(d2);
    let store = env.store();
    assert_eq!(store.count(Kind::User).unwrap(), rows as u64);
    assert_eq!(
        store.head().unwrap(),
        rows as u64,
        "each change logged exactly once"
    );
    let events = store.changes(0, rows + 5).unwrap();
    let ids: std::collections::HashSet<_> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), rows);
    let done = &env.finished("users", "processed")[0];
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{}.report.json", done.display())).unwrap())
            .unwrap();
    assert_eq!(report["summary"]["created"], rows, "{}", report["summary"]);
    assert!(report["resumedAfterLine"].as_u64().is_some());
}

#[test]
fn sigterm_stops_within_a_batch_and_the_file_resumes() {
    let (env, _) = daemon_env("");
    let rows = 20_000;
    let mut d = env.serve(&[]);
    wait_until("the daemon is ready", WAIT, || watching(&d));
    env.drop_file("users", "big.csv", users_csv(0, rows));
    wait_until("import under way", WAIT, || env.spooled() > 300_000);
    let asked = Instant::now();
    d.signal("TERM");
    let status = d
        .wait(Duration::from_secs(10))
        .expect("stops in bounded time");
    assert!(status.success(), "{status:?}");
    println!("SIGTERM to exit: {:?}", asked.elapsed());
    assert!(
        d.log().contains("import interrupted"),
        "stopped mid-file: {}",
        d.log()
    );
    assert!(env.finished("users", "processed").is_empty());
    let d2 = env.serve(&[]);
    wait_until("finished after restart", Duration::from_secs(120), || {
        env.finished("users", "processed").len() == 1
    });
    drop(d2);
    let store = env.store();
    assert_eq!(store.count(Kind::User).unwrap(), rows as u64);
    assert_eq!(store.head().unwrap(), rows as u64);
}

#[test]
fn sighup_with_a_broken_config_keeps_the_running_one() {
    let (env, port) = daemon_env("");
    let mut d = env.serve(&[]);
    wait_until("the daemon is ready", WAIT, || watching(&d));
    let cfg = env.config.clone().unwrap();
    std::fs::write(&cfg, "[admin\nlisten = ").unwrap();
    d.signal("HUP");
    wait_until("reload refused", WAIT, || {
        d.log().contains("reload refused")
    });
    env.drop_file("users", "after.csv", users_csv(0, 1));
    wait_until("still importing", WAIT, || {
        env.finished("users", "processed").len() == 1
    });

    // A good config with a new option is taken.
    std::fs::write(
        &cfg,
        format!("[admin]\nlisten = \"127.0.0.1:{port}\"\n[folders]\nstable_ms = 400\n[import]\nend_state = \"inactive\"\n"),
    )
    .unwrap();
    d.signal("HUP");
    wait_until("reloaded", WAIT, || {
        d.log().contains("configuration reloaded")
    });
    env.drop_file("users", "later.csv", users_csv(1, 2));
    wait_until("second file", WAIT, || {
        env.finished("users", "processed").len() == 2
    });
    assert!(d.child.try_wait().unwrap().is_none(), "still running");
    drop(d);
    assert_eq!(env.show("users", "user1").unwrap()["status"], "inactive");
    assert_eq!(env.show("users", "user0").unwrap()["status"], "active");
}

/// A dropped file's name cannot forge a log line or reach the terminal
/// raw: newlines and escape sequences are written escaped.
#[test]
fn file_names_cannot_forge_log_lines() {
    let (env, _) = daemon_env("");
    let d = env.serve(&[]);
    wait_until("the daemon is ready", WAIT, || watching(&d));
    let forged =
        "2026-12-03T00:00:00.000000Z  INFO idsync::serve: imported file=payroll.csv created=5000";
    env.drop_file("users", &format!("x\n{forged}\n.csv"), users_csv(0, 1));
    env.drop_file("users", "esc\u{1b}[2J.csv", users_csv(1, 2));
    wait_until("both taken", Duration::from_secs(20), || {
        env.finished("users", "processed").len() + env.finished("users", "rejected").len() == 2
    });
    let log = d.log();
    assert!(
        !log.lines().any(|l| l.starts_with(forged)),
        "a forged line:\n{log}"
    );
    assert!(log.contains("\\n2026-12-03T00:00:00.000000Z"), "{log}");
    assert!(!log.contains('\u{1b}'), "a raw escape sequence:\n{log}");
    assert!(log.contains("\\u{1b}[2J"), "{log}");
}

/// `[[tokens]]` follow SIGHUP: a removed token is refused at once, an
/// added one accepted, without a restart.
#[test]
fn sighup_reloads_the_tokens() {
    let token = |name: &str, secret: &str| {
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(secret.as_bytes()));
        format!("[[tokens]]\nname = \"{name}\"\nsha256 = \"{digest}\"\nroles = [\"monitor\"]\n")
    };
    let (env, port) = daemon_env(&token("old", "idsync_old"));
    let mut d = env.serve(&[]);
    wait_until("the daemon is ready", WAIT, || watching(&d));
    let status = |secret: &str| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            s,
            "GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut s, &mut out).unwrap();
        out[9..12].to_owned()
    };
    assert_eq!(status("idsync_old"), "200");
    assert_eq!(status("idsync_new"), "401");

    let cfg = env.config.clone().unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[admin]\nlisten = \"127.0.0.1:{port}\"\n[folders]\nstable_ms = 400\n{}",
            token("new", "idsync_new")
        ),
    )
    .unwrap();
    d.signal("HUP");
    wait_until("reloaded", WAIT, || {
        d.log().contains("configuration reloaded")
    });
    assert_eq!(status("idsync_old"), "401", "a removed token stops working");
    assert_eq!(status("idsync_new"), "200", "an added token works");
    assert!(d.child.try_wait().unwrap().is_none(), "still running");
}

#[test]
fn systemd_hears_ready_watchdog_and_status() {
    let (env, _) = daemon_env("");
    let sock_path = env.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let d = env.serve(&[
        ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
        ("WATCHDOG_USEC", "400000"),
    ]);
    let mut heard = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            heard.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        let has = |p: &str| heard.iter().any(|m| m.lines().any(|l| l.starts_with(p)));
        if has("READY=1")
            && heard.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2
            && has("STATUS=")
        {
            break;
        }
    }
    drop(d);
    let all = heard.join("\n");
    assert!(all.contains("READY=1"), "{all}");
    assert!(all.matches("WATCHDOG=1").count() >= 2, "{all}");
    assert!(all.contains("STATUS=watching"), "{all}");
}

#[test]
fn the_admin_listener_needs_a_token() {
    let (env, port) = daemon_env("");
    let _d = env.serve(&[]);
    wait_until("the daemon is ready", WAIT, || watching(&_d));
    let token_file = env.data_dir().join("admin.token");
    wait_until("token written", WAIT, || token_file.exists());
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&token_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the token file is private");
    let get = |auth: Option<&str>| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let auth = auth
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut s, &mut out).unwrap();
        out
    };
    assert!(get(None).starts_with("HTTP/1.1 401"));
    let token = std::fs::read_to_string(&token_file).unwrap();
    let ok = get(Some(token.trim()));
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("idsync_files_total"));
    let status = env.run(&["status"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(String::from_utf8_lossy(&status.stdout).contains("ready:"));
}

#[test]
fn the_default_relative_data_dir_works() {
    // The README's quick start: `idsync serve` in a directory, no flags.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join("idsync.toml"),
        format!("[admin]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let log = dir.path().join("serve.log");
    let mut child = std::process::Command::new(idsync_tests::idsync_bin())
        .current_dir(dir.path())
        .args(["--config", "idsync.toml", "serve"])
        .env("IDSYNC_LOG", "info")
        .env_remove("IDSYNC_CONFIG")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until("watching", WAIT, || read_log().contains("is watching"));
    let inbox = dir.path().join("idsync-data/inbox/users");
    std::fs::write(dir.path().join("u.tmp"), users_csv(0, 1)).unwrap();
    std::fs::rename(dir.path().join("u.tmp"), inbox.join("u.csv")).unwrap();
    wait_until("processed", WAIT, || {
        std::fs::read_dir(inbox.join("processed"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 3
    });
    let _ = child.kill();
    let _ = child.wait();
}
