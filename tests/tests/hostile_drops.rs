//! The drop folders under hostile or careless writers (issue 13): a crash
//! while the reports are written, links and FIFOs left in `.work/` by a
//! crash, files still being written when they look finished, quotes that
//! never close, and entries the daemon passes over.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use idsync_tests::{free_port, wait_until, Daemon, Env};

const WAIT: Duration = Duration::from_secs(60);

fn daemon_env() -> Env {
    let port = free_port();
    Env::with_config(&format!(
        "[admin]\nlisten = \"127.0.0.1:{port}\"\n[folders]\nstable_ms = 400\n"
    ))
}

fn users_csv(from: usize, to: usize) -> String {
    let mut s = String::from("status,loginName,mail,lastName\n");
    for i in from..to {
        s.push_str(&format!("active,user{i},user{i}@example.org,Last{i}\n"));
    }
    s
}

fn started(env: &Env) -> Daemon {
    let d = env.serve(&[]);
    wait_until("the daemon is ready", WAIT, || {
        d.log().contains("is watching its drop folders")
    });
    d
}

fn report_of(file: &Path) -> serde_json::Value {
    let mut name = file.as_os_str().to_owned();
    name.push(".report.json");
    let text = std::fs::read(name).unwrap();
    serde_json::from_slice(&text).unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

/// Item 1: `kill -9` while the reports are being written (a report's
/// `.tmp` exists in `.work/`). After a restart the file is finished with
/// both reports complete, and nothing is left in `.work/` or the spools.
#[test]
fn a_crash_while_the_reports_are_written_leaves_both_reports_and_no_leftovers() {
    const ROWS: usize = 60_000;
    let env = daemon_env();
    let work = env.inbox().join("users/.work");
    let mut hit = false;
    for attempt in 0..6 {
        let mut d = started(&env);
        let from = attempt * ROWS;
        env.drop_file(
            "users",
            &format!("big{attempt}.csv"),
            users_csv(from, from + ROWS),
        );
        // Poll for a report being written; kill the daemon there.
        let deadline = Instant::now() + WAIT;
        loop {
            if entries(&work)
                .iter()
                .any(|n| n.ends_with(".report.csv.tmp"))
            {
                d.signal("KILL");
                d.wait(Duration::from_secs(10)).expect("killed");
                hit = true;
                break;
            }
            if env.finished("users", "processed").len() > attempt {
                break; // the reports were written between two looks
            }
            assert!(Instant::now() < deadline, "the import never finished");
            std::thread::sleep(Duration::from_micros(200));
        }
        drop(d);
        if hit {
            break;
        }
    }
    assert!(hit, "never caught the daemon writing a report");

    let _d = started(&env);
    let done = env.inbox().join("users/processed");
    wait_until("every file finished", WAIT, || {
        entries(&work).is_empty() && !env.finished("users", "processed").is_empty()
    });
    let finished = env.finished("users", "processed");
    let last = finished.last().unwrap();
    let report = report_of(last);
    assert_eq!(report["summary"]["created"], ROWS, "{}", report["summary"]);
    let csv = std::fs::read_to_string(format!("{}.report.csv", last.display()))
        .expect("the CSV report is there");
    assert_eq!(
        csv.lines().count(),
        ROWS + 1,
        "every created row and a header"
    );
    assert!(
        entries(&done).iter().all(|n| !n.ends_with(".tmp")),
        "{:?}",
        entries(&done)
    );
    assert_eq!(
        entries(&work),
        Vec::<String>::new(),
        "nothing left in .work"
    );
    let spools = env.data_dir().join("imports");
    assert_eq!(entries(&spools), Vec::<String>::new(), "no spool left");
}

/// Item 2: what a crash left in `.work/` is checked like a fresh drop: a
/// symbolic link is refused (its target never read), a FIFO is refused
/// without blocking the daemon, and later drops go on.
#[test]
fn links_and_fifos_left_in_work_by_a_crash_are_refused_without_blocking() {
    let env = daemon_env();
    let work = env.inbox().join("users/.work");
    std::fs::create_dir_all(&work).unwrap();
    let outside = env.file("outside.csv", users_csv(100, 101));
    std::os::unix::fs::symlink(&outside, work.join("20261203T000000.000000Z-link.csv")).unwrap();
    let fifo = work.join("20261203T000000.000001Z-pipe.csv");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");

    let mut d = started(&env);
    env.drop_file("users", "after.csv", users_csv(0, 1));
    wait_until(
        "the later drop is imported",
        Duration::from_secs(20),
        || env.finished("users", "processed").len() == 1,
    );
    wait_until("both refused", Duration::from_secs(20), || {
        env.finished("users", "rejected").len() == 2
    });
    for refused in env.finished("users", "rejected") {
        let report = report_of(&refused);
        let error = report["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("a symbolic link") || error.contains("a FIFO"),
            "{report}"
        );
    }
    d.signal("TERM");
    assert!(
        d.wait(Duration::from_secs(20)).is_some(),
        "SIGTERM stops it"
    );
    assert!(
        env.show("users", "user100").is_none(),
        "the link's target was read"
    );
    assert!(env.show("users", "user0").is_some());
}

/// Item 3: a file written in place whose writer pauses longer than
/// `folders.stable_ms` in the middle of a value is not read until the
/// writer closes it: no half value is ever stored or logged.
#[test]
fn a_writer_that_pauses_mid_value_is_waited_for_until_it_closes() {
    let env = daemon_env();
    let d = started(&env);
    let path = env.inbox().join("users/slow.csv");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(b"status,loginName,mail,lastName\nactive,a,a@example.org,Able\nactive,b,b@example.org,Baker\nactive,c,c@example.org,Lon")
        .unwrap();
    f.flush().unwrap();
    std::thread::sleep(Duration::from_millis(1500)); // > stable_ms (400)
    assert!(
        env.finished("users", "processed").is_empty(),
        "read while its writer still had it open"
    );
    f.write_all(b"gbottom\nactive,d,d@example.org,Dunn\n")
        .unwrap();
    drop(f);
    wait_until("processed", WAIT, || {
        env.finished("users", "processed").len() == 1
    });
    let done = &env.finished("users", "processed")[0];
    let report = report_of(done);
    assert_eq!(report["outcome"], "accepted", "{report}");
    assert_eq!(report["summary"]["created"], 4, "{report}");
    assert_eq!(report["digest"], sha256_hex(&std::fs::read(done).unwrap()));
    drop(d);
    assert_eq!(env.show("users", "c").unwrap()["lastName"], "Longbottom");
    let changes = serde_json::to_string(&env.changes()).unwrap();
    assert!(
        !changes.contains("\"Lon\""),
        "a half value reached the change log"
    );
}

/// Item 3: a file renamed in while its writer still appends to it is
/// imported again once the writer is done: the report's digest is the
/// digest of the file that ends in `processed/`, and every row is in.
#[test]
fn a_file_appended_to_after_its_rename_is_reported_with_its_final_bytes() {
    let env = daemon_env();
    let d = started(&env);
    let staging = env.dir.path().join("staging.csv");
    let mut f = std::fs::File::create(&staging).unwrap();
    f.write_all(users_csv(0, 20_000).as_bytes()).unwrap();
    f.flush().unwrap();
    std::fs::rename(&staging, env.inbox().join("users/growing.csv")).unwrap();
    for i in 20_000..20_040 {
        std::thread::sleep(Duration::from_millis(25));
        writeln!(f, "active,user{i},user{i}@example.org,Last{i}").unwrap();
        f.flush().unwrap();
    }
    drop(f);
    wait_until("finished", WAIT, || {
        env.finished("users", "processed").len() + env.finished("users", "rejected").len() == 1
    });
    let done = env.finished("users", "processed");
    assert_eq!(done.len(), 1, "{}", d.log());
    let report = report_of(&done[0]);
    assert_eq!(
        report["digest"],
        sha256_hex(&std::fs::read(&done[0]).unwrap()),
        "the report describes other bytes than the processed file's"
    );
    drop(d);
    assert!(
        env.show("users", "user20039").is_some(),
        "the last row appended"
    );
}

/// Item 4: a quote that never closes refuses the file, naming the line
/// where it opened; no row of it is applied.
#[test]
fn an_unclosed_quote_refuses_the_file_naming_its_line() {
    let env = Env::new();
    let groups = env.file(
        "groups.csv",
        "name,description\nops,\"Operations\nsec,Security\ndev,Development\nqa,Quality\n",
    );
    let (code, report) = env.import("groups", &groups, &[]);
    assert_eq!(report["outcome"], "rejected", "{report}");
    assert_ne!(code, 0);
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("line 2, column 2"), "{error}");
    assert!(error.contains("never closed"), "{error}");
    assert!(env.list("groups").is_empty());

    let mut users = users_csv(0, 10);
    users = users.replace(
        "active,user2,user2@example.org,Last2",
        "active,user2,user2@example.org,\"Smith",
    );
    let users = env.file("users.csv", users);
    let (_, report) = env.import("users", &users, &[]);
    assert_eq!(report["outcome"], "rejected", "{report}");
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("line 4, column 4"),
        "{report}"
    );
    assert!(env.list("users").is_empty());
}

/// Item 5: every entry the daemon passes over gets a log line, and what a
/// report repeats of a file is bounded and escaped.
#[test]
fn passed_over_entries_are_logged_and_report_values_are_bounded() {
    use std::os::unix::ffi::OsStrExt as _;
    let env = daemon_env();
    let d = started(&env);
    let groups = env.inbox().join("groups");
    std::fs::create_dir(groups.join("subdir")).unwrap();
    env.drop_file("groups", "quarterly.report.csv", "name\nx\n");
    let latin1 = std::ffi::OsStr::from_bytes(b"caf\xe9.csv");
    let staging = env.dir.path().join("latin1");
    std::fs::write(&staging, users_csv(0, 1)).unwrap();
    std::fs::rename(&staging, env.inbox().join("users").join(latin1)).unwrap();
    let huge_column = "x".repeat(10 << 20);
    env.drop_file(
        "groups",
        "odd.csv",
        format!("name,description,{huge_column}\nnul\0name,desc,1\n"),
    );
    wait_until("the odd file finished", WAIT, || {
        env.finished("groups", "processed").len() + env.finished("groups", "rejected").len() == 1
    });
    wait_until("the non-UTF-8 name refused", WAIT, || {
        env.finished("users", "rejected").len() == 1
    });
    wait_until(
        "the directory and the report-like name logged",
        WAIT,
        || {
            let log = d.log();
            log.contains("subdir") && log.contains("quarterly.report.csv")
        },
    );
    let log = d.log();
    assert!(log.contains("not an inbox"), "{log}");
    assert!(log.contains("reserved for import reports"), "{log}");

    let odd = env
        .finished("groups", "processed")
        .into_iter()
        .chain(env.finished("groups", "rejected"))
        .next()
        .unwrap();
    for ext in ["json", "csv"] {
        let report = std::fs::read(format!("{}.report.{ext}", odd.display())).unwrap();
        assert!(report.len() < 64 * 1024, "a {} byte report", report.len());
        assert!(!report.contains(&0), "a raw NUL in the {ext} report");
    }
    let refused = &env.finished("users", "rejected")[0];
    assert!(report_of(refused)["error"]
        .as_str()
        .unwrap()
        .contains("not UTF-8"));
}

/// A file renamed into an application folder just after the folder is
/// made. The watcher hands out every event it has read before it watches
/// inside a new folder (notify's inotify backend), so while events keep
/// coming, the new folder is seen (and scanned) but a file renamed into
/// it raises no event of its own. Noise from a hidden file keeps the
/// watcher busy; the file is renamed in once the daemon has prepared the
/// folder (its `.work/` exists, so its first scan is done).
#[test]
fn a_file_renamed_into_a_folder_made_that_instant_is_taken() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let env = daemon_env();
    let d = started(&env);
    let users = env.inbox().join("users");
    let stop = Arc::new(AtomicBool::new(false));
    let noise = {
        let (stop, users) = (Arc::clone(&stop), users.clone());
        std::thread::spawn(move || {
            // Two files in turn: inotify merges an event identical to the
            // last one queued.
            let files = [users.join(".noise-a"), users.join(".noise-b")];
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                std::fs::write(&files[(n % 2) as usize], n.to_string()).unwrap();
                n += 1;
            }
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let staging = env.dir.path().join("staging.csv");
    std::fs::write(&staging, users_csv(0, 1)).unwrap();
    let dir = users.join("late");
    std::fs::create_dir(&dir).unwrap();
    wait_until("the new folder prepared", WAIT, || {
        dir.join(".work").exists()
    });
    std::fs::rename(&staging, dir.join("u.csv")).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    noise.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && env.finished("users/late", "processed").is_empty() {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        env.finished("users/late", "processed").len(),
        1,
        "the file renamed into the new folder was never taken\n{}",
        d.log()
    );
}

/// A file whose import fails for a reason outside it (here the data
/// dir's `imports/` cannot hold its spool) stays in `.work/` and is tried
/// again after a pause, not at once and not only at the next start: once
/// the cause is gone, it is imported, once.
#[test]
fn a_file_whose_import_fails_is_tried_again_after_a_pause() {
    let env = daemon_env();
    let mut d = started(&env);
    let imports = env.data_dir().join("imports");
    let _ = std::fs::remove_dir_all(&imports);
    std::fs::write(&imports, "not a directory").unwrap();
    let staging = env.dir.path().join("staging.csv");
    std::fs::write(&staging, users_csv(0, 3)).unwrap();
    let users = env.inbox().join("users");
    std::fs::rename(&staging, users.join("u.csv")).unwrap();
    let failed = "the import failed; trying it again later";
    wait_until("the import fails", WAIT, || d.log().contains(failed));
    let work: Vec<String> = entries(&users.join(".work"))
        .into_iter()
        .filter(|n| !n.contains(".report."))
        .collect();
    assert_eq!(work.len(), 1, "the file waits in .work: {work:?}");
    assert!(env.finished("users", "processed").is_empty());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        d.log().matches(failed).count(),
        1,
        "no try before the pause"
    );

    std::fs::remove_file(&imports).unwrap();
    wait_until("the file is imported on its next try", WAIT, || {
        env.finished("users", "processed").len() == 1
    });
    d.signal("TERM");
    d.wait(WAIT).expect("stopped");
    let created = env
        .changes()
        .iter()
        .filter(|c| c["operation"] == "created")
        .count();
    assert_eq!(created, 3, "{}", d.log());
    assert_eq!(d.log().matches(failed).count(), 1, "{}", d.log());
}
