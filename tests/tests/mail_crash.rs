//! Activation mails through a crash (issue 16): `kill -9` in the middle of
//! a send to 10,000 users of one application, then a restart. Every user
//! is mailed; the duplicates are counted and must stay within the window
//! docs/mail.md states (the mails of the batch being sent and of the one
//! whose outcome is being saved: two `mail.delivery.batch_size`), each
//! duplicate with the same `Message-ID` as its first copy.

mod mail_env;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use idsync_tests::{free_port, wait_until, Daemon, Env};
use mail_env::{received, Sink};
use sha2::{Digest, Sha256};

const OPS: &str = "idsync_test-mail-crash-operator";
const USERS: usize = 10_000;
const BATCH: usize = 100;

/// Messages the sink has written so far (without reading them).
fn count(inbox: &Path) -> usize {
    std::fs::read_dir(inbox)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .unwrap_or(0)
}

fn ready(env: &Env) -> Daemon {
    let mut d = env.serve(&[]);
    wait_until("the daemon is ready", Duration::from_secs(120), || {
        if let Some(status) = d.child.try_wait().expect("try_wait") {
            panic!("idsync serve exited ({status}): {}", d.log());
        }
        d.log().contains("is watching its drop folders")
    });
    d
}

#[test]
fn a_kill_during_a_ten_thousand_user_send_mails_everyone_with_bounded_duplicates() {
    let (admin, smtp) = (free_port(), free_port());
    let env = Env::with_config(&format!(
        "[admin]\nlisten = \"127.0.0.1:{admin}\"\n\
         [[tokens]]\nname = \"ops\"\nsha256 = \"{}\"\nroles = [\"operator\"]\n\
         [[applications]]\nname = \"crm\"\n\n\
         [mail]\nrelay = \"127.0.0.1\"\nport = {smtp}\ntls = \"none\"\n\
         from = \"idsync <noreply@example.com>\"\npublic_url = \"https://id.example.com\"\n\
         timeout_ms = 5000\n\
         [mail.delivery]\nbatch_size = {BATCH}\nbackoff_initial_ms = 50\nbackoff_max_ms = 300\n",
        hex::encode(Sha256::digest(OPS.as_bytes())),
    ));
    let mut csv = String::from("status,loginName,mail,lastName\n");
    for i in 0..USERS {
        csv.push_str(&format!("active,u{i},u{i}@example.org,Last{i}\n"));
    }
    let file = env.file("crm.csv", csv);
    let (code, report) = env.import("users", &file, &["--application", "crm"]);
    assert_eq!(code, 0, "{report}");

    let inbox = env.dir.path().join("sink");
    let sink = Sink::start(smtp, &inbox);
    let daemon = ready(&env);
    let out = env
        .command()
        .args(["mail", "send-activation", "--application", "crm"])
        .env("IDSYNC_TOKEN", OPS)
        .output()
        .expect("run idsync mail");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with(&USERS.to_string()),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("a quarter of the mails", Duration::from_secs(300), || {
        count(&inbox) >= USERS / 4
    });
    daemon.signal("KILL");
    drop(daemon);
    let at_kill = count(&inbox);
    assert!(at_kill < USERS, "the kill came after the last mail");

    let daemon = ready(&env);
    // Until every user has a mail (duplicates count in the sink's files,
    // so the recipients are counted once the sink has been quiet a while).
    let mut last = (count(&inbox), std::time::Instant::now());
    wait_until("every user mailed", Duration::from_secs(600), || {
        let n = count(&inbox);
        if n != last.0 {
            last = (n, std::time::Instant::now());
            return false;
        }
        let quiet = last.1.elapsed();
        assert!(
            quiet < Duration::from_secs(60),
            "no mail for a minute at {n}: {}",
            daemon.log()
        );
        if n < USERS || quiet < Duration::from_secs(2) {
            return false;
        }
        let rcpts: std::collections::HashSet<String> = received(&inbox)
            .iter()
            .map(|m| m["rcpt"][0].as_str().unwrap_or_default().to_owned())
            .collect();
        last.1 = std::time::Instant::now();
        rcpts.len() >= USERS
    });
    drop(daemon);
    sink.stop();

    let mails = received(&inbox);
    let mut per: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in &mails {
        per.entry(m["rcpt"][0].as_str().unwrap().to_owned())
            .or_default()
            .push(m["message_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(per.len(), USERS, "every user mailed");
    let duplicates = mails.len() - per.len();
    eprintln!(
        "kill -9 after {at_kill} of {USERS} mails: {} mails in all, {duplicates} duplicates (window: 2 x {BATCH})",
        mails.len()
    );
    assert!(
        duplicates <= 2 * BATCH,
        "{duplicates} duplicates, more than two batches ({BATCH} each)"
    );
    for (rcpt, ids) in per.iter().filter(|(_, ids)| ids.len() > 1) {
        assert!(
            ids.iter().all(|id| id == &ids[0]),
            "{rcpt}: a duplicate with another Message-ID: {ids:?}"
        );
    }
}
