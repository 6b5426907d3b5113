//! The activation page end to end (issue 16, seed 003): users imported
//! for an application, their activation mails through a real SMTP server
//! (aiosmtpd), the link opened and a password set on the daemon's
//! activation listener, and the password checked by binding to the real
//! slapd with `ldapwhoami`.
//!
//! - opening the link uses nothing up; the page speaks the user's
//!   language and forbids scripts, framing and referrers;
//! - passwords that break the policy are refused with the rule named;
//! - a good one is set in the directory (Password Modify), the state
//!   becomes `activated`, the link is used up;
//! - a resend voids the old link; a made-up token is refused;
//! - the password is nowhere in the data directory or the daemon's log.

mod mail_env;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use idsync_tests::ldap::{Slapd, BASE};
use idsync_tests::{free_port, wait_until, Daemon, Env};
use mail_env::{received, Sink};
use serde_json::Value;
use sha2::{Digest, Sha256};

const OPS: &str = "idsync_test-activation-operator";
const PASSWORD: &str = "correct horse battery staple";

const USERS: &str = "\
status,loginName,mail,firstName,lastName,language
active,ann,ann@example.org,Ann,Arbor,en
active,jorg,jorg@example.org,Jörg,Müller,de_DE
";

/// An answer of the activation page: status, body, headers we look at.
struct Answer {
    status: u16,
    body: String,
    csp: String,
    referrer: String,
}

fn answer(r: Result<ureq::Response, ureq::Error>) -> Answer {
    let r = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("activation page: {e}"),
    };
    let header = |n: &str| r.header(n).unwrap_or_default().to_owned();
    Answer {
        status: r.status(),
        csp: header("Content-Security-Policy"),
        referrer: header("Referrer-Policy"),
        body: r.into_string().unwrap(),
    }
}

fn open(link: &str) -> Answer {
    answer(ureq::get(link).call())
}

fn submit(link: &str, password: &str, confirm: &str) -> Answer {
    answer(ureq::post(link).send_form(&[("password", password), ("confirm", confirm)]))
}

/// The link of the latest mail to `rcpt`.
fn link_for(inbox: &Path, rcpt: &str) -> String {
    let mails: Vec<Value> = received(inbox)
        .into_iter()
        .filter(|m| m["rcpt"][0] == rcpt)
        .collect();
    let text = mails.last().expect("a mail")["text"]
        .as_str()
        .unwrap()
        .to_owned();
    let at = text.find("http://").expect("a link");
    text[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches(['.', ',', '>'])
        .to_owned()
}

fn cli(env: &Env, daemon: &Daemon, args: &[&str]) -> String {
    let out = env
        .command()
        .args(args)
        .env("IDSYNC_TOKEN", OPS)
        .output()
        .expect("run idsync");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "idsync {args:?}: {stdout}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.log()
    );
    stdout
}

fn bind_works(slapd: &Slapd, dn: &str, password: &str) -> bool {
    Command::new("ldapwhoami")
        .args(["-x", "-H", &slapd.url(), "-D", dn, "-w", password])
        .output()
        .expect("run ldapwhoami")
        .status
        .success()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Move the expiry of `mail`'s current `crm` sending (state `sent`) an
/// hour into the past, keeping its link: queued again under a new nonce,
/// then recorded `sent` with the same token hash.
fn expire_current_sending(env: &Env, mail: &str) {
    use idsync_schema::{Activation, ActivationState, Kind, Source, User};
    idsync_tests::ldap::with_reconciler(env, |rec| {
        let id = idsync_tests::ldap::user_id(rec.store(), mail);
        let user: User = rec.store().object(Kind::User, id).unwrap().unwrap();
        let mut sent = user.activations["crm"].clone();
        assert_eq!(sent.state, ActivationState::Sent);
        let now = time::OffsetDateTime::now_utc();
        let nonce = "expired-in-the-test".to_owned();
        let mut tx = rec.begin(Source::Api, idsync_store::Actor::token("test"));
        tx.set_activation(id, "crm", Activation::queued(nonce.clone(), now))
            .unwrap();
        sent.nonce = Some(nonce.clone());
        sent.expires = Some(now - time::Duration::hours(1));
        assert!(tx.record_activation(id, "crm", &nonce, sent).unwrap());
        tx.commit().unwrap();
    });
}

fn alive(daemon: &mut Daemon) {
    if let Some(status) = daemon.child.try_wait().expect("try_wait") {
        panic!("idsync serve exited ({status}): {}", daemon.log());
    }
}

#[test]
fn a_user_sets_a_password_through_the_link_and_binds_to_the_directory() {
    let slapd = Slapd::start(false);
    let (admin, smtp, page) = (free_port(), free_port(), free_port());
    let env = Env::with_config(&format!(
        "[admin]\nlisten = \"127.0.0.1:{admin}\"\n[folders]\nstable_ms = 50\n\
         [[tokens]]\nname = \"ops\"\nsha256 = \"{ops}\"\nroles = [\"operator\"]\n\
         {ldap}\
         [connectors.delivery]\nbackoff_initial_ms = 20\nbackoff_max_ms = 300\n\
         [[applications]]\nname = \"crm\"\ndisplay_name = \"The <CRM>\"\n\n\
         [mail]\nrelay = \"127.0.0.1\"\nport = {smtp}\ntls = \"none\"\n\
         from = \"idsync <noreply@example.com>\"\npublic_url = \"http://127.0.0.1:{page}\"\n\
         timeout_ms = 2000\n\
         [mail.delivery]\nbackoff_initial_ms = 50\nbackoff_max_ms = 300\n\
         [activation]\nenabled = true\nlisten = \"127.0.0.1:{page}\"\n\
         attempts_per_link_per_hour = 8\n",
        ops = hex::encode(Sha256::digest(OPS.as_bytes())),
        ldap = slapd.connector_toml("corp"),
    ));
    let file = env.file("crm.csv", USERS);
    let (code, report) = env.import("users", &file, &["--application", "crm"]);
    assert_eq!(code, 0, "{report}");
    let inbox = env.dir.path().join("sink");
    let sink = Sink::start(smtp, &inbox);
    let mut daemon = env.serve(&[]);
    wait_until(
        "both users in the directory",
        Duration::from_secs(60),
        || {
            alive(&mut daemon);
            daemon.log().contains("is watching its drop folders")
                && slapd.count(BASE, "(|(uid=ann)(uid=jorg))") == 2
        },
    );
    let ann_dn = slapd.search(BASE, "(uid=ann)")[0].dn.clone();
    assert!(!bind_works(&slapd, &ann_dn, PASSWORD), "no password yet");

    assert!(cli(
        &env,
        &daemon,
        &["mail", "send-activation", "--application", "crm"]
    )
    .starts_with('2'));
    wait_until("two activation mails", Duration::from_secs(60), || {
        alive(&mut daemon);
        received(&inbox).len() >= 2
    });
    let ann = link_for(&inbox, "ann@example.org");
    let jorg = link_for(&inbox, "jorg@example.org");
    // Until the mail connector has recorded `sent`, the page asks to come
    // back in a moment.
    wait_until("the sendings recorded", Duration::from_secs(60), || {
        [&ann, &jorg].iter().all(|l| open(l).status != 503)
    });
    assert!(
        ann.starts_with(&format!("http://127.0.0.1:{page}/activate/")),
        "{ann}"
    );

    // Opening the link (twice, as a mail scanner and then the user would)
    // uses nothing up.
    for _ in 0..2 {
        let a = open(&ann);
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(a.body.contains("<form method=\"post\""), "{}", a.body);
        assert!(a.body.contains("The &lt;CRM&gt;"), "escaped: {}", a.body);
        assert!(a.csp.contains("default-src 'none'"), "{}", a.csp);
        assert_eq!(a.referrer, "no-referrer");
    }
    let de = open(&jorg);
    assert!(
        de.body.contains("Kontoaktivierung"),
        "de_DE → de: {}",
        de.body
    );

    // Passwords that break the policy: refused, each with its rule.
    for (password, confirm, says) in [
        ("short", "short", "at least 10 characters"),
        (PASSWORD, "correct horse battery stapler", "differ"),
        ("password123", "password123", "too common"),
        ("ann-is-my-name-here", "ann-is-my-name-here", "login name"),
    ] {
        let a = submit(&ann, password, confirm);
        assert_eq!(a.status, 422, "{password}: {}", a.body);
        assert!(a.body.contains(says), "{password}: {}", a.body);
    }
    assert!(!bind_works(&slapd, &ann_dn, "password123"));

    // A good one: set in the directory, the link used up.
    let a = submit(&ann, PASSWORD, PASSWORD);
    assert_eq!(a.status, 200, "{}\n{}", a.body, daemon.log());
    assert!(a.body.contains("is active"), "{}", a.body);
    assert!(
        bind_works(&slapd, &ann_dn, PASSWORD),
        "ldapwhoami as {ann_dn}"
    );
    let again = submit(&ann, "another good passphrase", "another good passphrase");
    assert_eq!(again.status, 410, "{}", again.body);
    assert!(again.body.contains("activated with this link already"));
    assert_eq!(open(&ann).status, 410);
    assert!(
        bind_works(&slapd, &ann_dn, PASSWORD),
        "the reuse changed nothing"
    );

    // A resend voids jorg's old link; the new one works.
    cli(
        &env,
        &daemon,
        &[
            "mail",
            "send-activation",
            "--application",
            "crm",
            "--resend",
            "jorg",
        ],
    );
    wait_until("the new mail to jorg", Duration::from_secs(60), || {
        alive(&mut daemon);
        link_for(&inbox, "jorg@example.org") != jorg
    });
    let new = link_for(&inbox, "jorg@example.org");
    wait_until("the resending recorded", Duration::from_secs(60), || {
        open(&new).status != 503
    });
    // A void link names no user any more: the browser's language is used.
    let old = answer(
        ureq::get(&jorg)
            .set("Accept-Language", "de-DE,de;q=0.9")
            .call(),
    );
    assert_eq!(old.status, 404, "{}", old.body);
    assert!(old.body.contains("ungültig"), "{}", old.body);
    assert_eq!(open(&new).status, 200);

    // Made-up tokens.
    let base = format!("http://127.0.0.1:{page}/activate/");
    assert_eq!(open(&format!("{base}{}", "0".repeat(96))).status, 404);
    assert_eq!(open(&format!("{base}../admin")).status, 404);

    drop(daemon);
    sink.stop();
    let shown = env.show("users", "ann").expect("ann");
    assert_eq!(shown["activations"]["crm"]["state"], "activated", "{shown}");

    // An expired link: jorg's current sending, its expiry moved an hour
    // into the past with the daemon stopped (`link_lifetime_days` is at
    // least one day), through the reconciler as a resend would.
    expire_current_sending(&env, "jorg@example.org");
    let mut daemon = env.serve(&[]);
    wait_until("the daemon is back", Duration::from_secs(60), || {
        alive(&mut daemon);
        daemon.log().contains("is watching its drop folders")
    });
    let expired = open(&new);
    assert_eq!(expired.status, 410, "{}", expired.body);
    assert!(expired.body.contains("abgelaufen"), "{}", expired.body);
    let tried = submit(&new, PASSWORD, PASSWORD);
    assert_eq!(tried.status, 410, "{}", tried.body);
    drop(daemon);

    // The password is nowhere on disk (data dir, daemon log).
    let mut files = Vec::new();
    files_under(&env.data_dir(), &mut files);
    files_under(env.dir.path(), &mut files);
    for f in files {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !contains(&bytes, PASSWORD.as_bytes()),
            "the password is in {}",
            f.display()
        );
    }
}
