//! `kill -9` in the middle of a large import, then re-runs: the store ends
//! exactly as after one clean run, and every change is in the log once.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use idsync_schema::{Kind, User};
use idsync_store::{ChangeEvent, Operation};
use idsync_tests::{summary, Env};

const ROWS: usize = 30_000;

fn write_users(path: &Path) {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(w, "status,loginName,mail,firstName,lastName,language").unwrap();
    for i in 0..ROWS {
        writeln!(
            w,
            "active,user{i},user{i}@example.org,First{i},Last{i},de-DE"
        )
        .unwrap();
    }
}

#[test]
fn sigkill_during_a_large_import_then_rerun_gives_the_exact_store() {
    let env = Env::new();
    let file = env.dir.path().join("users.csv");
    write_users(&file);
    // A spooled created row is about 100 bytes.
    let full = ROWS as u64 * 100;

    let mut kills = 0;
    for fraction in [0.2, 0.5, 0.8] {
        let mut child = env
            .command()
            .args(["import", "users"])
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if child.try_wait().unwrap().is_some() {
                break; // finished before we could kill it
            }
            if env.spooled() as f64 >= full as f64 * fraction {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                break;
            }
            assert!(Instant::now() < deadline, "import made no progress");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert!(
        kills >= 2,
        "the import was killed mid-way at least twice ({kills})"
    );

    let (code, report) = env.import("users", &file, &[]);
    assert_eq!(code, 0, "{report}");
    assert!(report["resumedAfterLine"].as_u64().is_some(), "{report}");
    // Counted over all runs: every row created once.
    assert_eq!(summary(&report), (ROWS as u64, 0, 0, 0));
    let lines: HashSet<u64> = report["created"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines.len(), ROWS, "the report lists every row exactly once");

    let store = env.store();
    let mut users = Vec::new();
    store
        .for_each::<User>(Kind::User, |u| {
            users.push(u);
            Ok(true)
        })
        .unwrap();
    assert_eq!(users.len(), ROWS);
    let mut mails = HashSet::new();
    for u in &users {
        let i: usize = u.login_name.as_deref().unwrap()["user".len()..]
            .parse()
            .unwrap();
        assert_eq!(u.mail, Some(format!("user{i}@example.org")));
        assert_eq!(u.last_name, Some(format!("Last{i}")));
        assert_eq!(u.meta.version, 1, "no row applied twice");
        assert!(mails.insert(u.mail.clone()));
    }

    let head = store.head().unwrap();
    assert_eq!(head, ROWS as u64, "one change per row");
    let events: Vec<ChangeEvent> = store.changes(0, ROWS + 10).unwrap();
    assert_eq!(events.len(), ROWS);
    let ids: HashSet<_> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), ROWS, "each user's creation logged exactly once");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "gap-free sequence");
        assert_eq!(e.operation, Operation::Created);
    }
    drop(store);

    // Nothing is left of the interrupted runs.
    let leftovers: Vec<_> = std::fs::read_dir(env.data_dir().join("imports"))
        .unwrap()
        .collect();
    assert!(leftovers.is_empty(), "import work files are cleaned up");

    // And the file once more: all unchanged.
    let (_, again) = env.import("users", &file, &[]);
    assert_eq!(summary(&again), (0, 0, ROWS as u64, 0));
}
