//! Approval notifications by e-mail (issue 16, seed 002), end to end: the
//! real daemon and a real SMTP server (aiosmtpd, see `mail_env`).
//!
//! A P10 request on a profile that requires approval mails the configured
//! approver address and every user holding the `Approval` role (in that
//! user's language); approving it (issued at once) mails the requester at
//! their token's address; rejecting another mails the reason. A request on
//! a profile without approval mails nobody.

mod mail_env;

use std::time::Duration;

use idsync_tests::{free_port, openssl_csr, sha256_hex, wait_until, Env};
use mail_env::{received, Sink};
use serde_json::{json, Value};

const OPS: &str = "idsync_test-approval-mail-operator";
const BOSS: &str = "idsync_test-approval-mail-approver";

const PROFILES: &str = r#"
[[profiles]]
name = "Gate P10"
protocol = "p10"
requires_approval = true

[[profiles]]
name = "Open P10"
protocol = "p10"
"#;

const ASSETS: &str = "\
id,name,description,type,owner,certificateProfile,organization,country,dnsNames,ipAddresses,sid
,gate.example.org,,Server,,Gate P10,,,gate.example.org,,
,open.example.org,,Server,,Open P10,,,open.example.org,,
";

/// Users holding the `Approval` role (users.default_roles) with their
/// languages; one without a mail address.
const USERS: &str = "\
status,loginName,mail,firstName,lastName,language
active,vera,vera@example.org,Vera,Vogt,de
active,walt,walt@example.org,Walt,White,en
";

fn post(admin: u16, token: &str, path: &str, body: Value) -> Value {
    let r = ureq::post(&format!("http://127.0.0.1:{admin}/api/v1{path}"))
        .set("Authorization", &format!("Bearer {token}"))
        .set("Content-Type", "application/json")
        .send_string(&body.to_string());
    let r = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("POST {path}: {e}"),
    };
    let status = r.status();
    let v: Value = serde_json::from_str(&r.into_string().unwrap()).unwrap();
    assert!(status < 300, "POST {path}: {status} {v}");
    v
}

fn to(mail: &Value) -> String {
    mail["rcpt"][0].as_str().unwrap().to_owned()
}

#[test]
fn approvers_and_requesters_are_mailed_about_requests_that_wait_for_approval() {
    let (admin, smtp) = (free_port(), free_port());
    let token = |name: &str, t: &str, role: &str, mail: &str| {
        format!(
            "[[tokens]]\nname = \"{name}\"\nsha256 = \"{}\"\nroles = [\"{role}\"]\n{mail}",
            sha256_hex(t)
        )
    };
    let env = Env::with_config(&format!(
        "[users]\ndefault_roles = [\"Approval\"]\n\
         [admin]\nlisten = \"127.0.0.1:{admin}\"\n{PROFILES}\n{}{}\
         [mail]\nrelay = \"127.0.0.1\"\nport = {smtp}\ntls = \"none\"\n\
         from = \"idsync <noreply@example.com>\"\npublic_url = \"https://id.example.com\"\n\
         approvers = [\"PKI Team <pki@example.org>\", \"walt@example.org\"]\n\
         timeout_ms = 2000\n\
         [mail.delivery]\nbackoff_initial_ms = 50\nbackoff_max_ms = 300\n",
        token("ops", OPS, "operator", "mail = \"ops@example.org\"\n"),
        token("boss", BOSS, "approver", ""),
    ));
    let assets = env.file("assets.csv", ASSETS);
    let (code, report) = env.import("assets", &assets, &[]);
    assert_eq!(code, 0, "{report}");
    let users = env.file("users.csv", USERS);
    let (code, report) = env.import("users", &users, &[]);
    assert_eq!(code, 0, "{report}");
    let inbox = env.dir.path().join("sink");
    let sink = Sink::start(smtp, &inbox);
    let mut daemon = env.serve(&[]);
    wait_until("the admin listener", Duration::from_secs(60), || {
        if let Some(status) = daemon.child.try_wait().expect("try_wait") {
            panic!("idsync serve exited ({status}): {}", daemon.log());
        }
        daemon.log().contains("is watching its drop folders")
    });
    let dir = env.dir.path();

    // Without approval: issued at once, nobody mailed.
    let open = post(
        admin,
        OPS,
        "/enroll/p10",
        json!({"asset": "open.example.org", "csr": openssl_csr(dir, "open")}),
    );
    assert_eq!(open["request"]["status"], "issued", "{open}");

    // With approval: the approvers are mailed, each address once.
    let waiting = post(
        admin,
        OPS,
        "/enroll/p10",
        json!({"asset": "gate.example.org", "csr": openssl_csr(dir, "gate")}),
    );
    let id = waiting["request"]["id"].as_str().unwrap().to_owned();
    assert_eq!(waiting["request"]["status"], "pending_approval");
    wait_until("three approver mails", Duration::from_secs(60), || {
        received(&inbox).len() >= 3
    });
    std::thread::sleep(Duration::from_millis(500));
    let mails = received(&inbox);
    let mut rcpts: Vec<String> = mails.iter().map(to).collect();
    rcpts.sort();
    assert_eq!(
        rcpts,
        ["pki@example.org", "vera@example.org", "walt@example.org"],
        "the configured addresses and the Approval role holders, walt once"
    );
    let vera = mails.iter().find(|m| to(m) == "vera@example.org").unwrap();
    assert!(
        vera["subject"]
            .as_str()
            .unwrap()
            .starts_with("Zertifikatsantrag wartet auf Ihre Freigabe"),
        "{vera}"
    );
    let pki = mails.iter().find(|m| to(m) == "pki@example.org").unwrap();
    let text = pki["text"].as_str().unwrap();
    assert!(
        text.contains(&id) && text.contains("gate.example.org"),
        "{text}"
    );
    assert!(
        text.contains(&format!("idsync requests approve {id}")),
        "{text}"
    );

    // Approved (and issued at once): the requester hears of it.
    post(
        admin,
        BOSS,
        &format!("/requests/{id}/approve"),
        json!({"comment": "fine <ok>"}),
    );
    wait_until("the requester's mail", Duration::from_secs(60), || {
        received(&inbox).iter().any(|m| to(m) == "ops@example.org")
    });
    let mails = received(&inbox);
    let ops: Vec<&Value> = mails
        .iter()
        .filter(|m| to(m) == "ops@example.org")
        .collect();
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert!(
        ops[0]["subject"]
            .as_str()
            .unwrap()
            .starts_with("Your certificate request was issued"),
        "{}",
        ops[0]
    );
    assert!(
        ops[0]["html"].as_str().unwrap().contains("fine &lt;ok&gt;"),
        "{}",
        ops[0]
    );

    // Rejected: the comment reaches the requester.
    let second = post(
        admin,
        OPS,
        "/enroll/p10",
        json!({"asset": "gate.example.org", "csr": openssl_csr(dir, "gate2")}),
    );
    let second = second["request"]["id"].as_str().unwrap().to_owned();
    wait_until(
        "the approvers' mails of the second request",
        Duration::from_secs(60),
        || received(&inbox).len() >= 7,
    );
    post(
        admin,
        BOSS,
        &format!("/requests/{second}/reject"),
        json!({"comment": "wrong host"}),
    );
    wait_until("the rejection mail", Duration::from_secs(60), || {
        received(&inbox).iter().any(|m| {
            to(m) == "ops@example.org" && m["subject"].as_str().unwrap().contains("rejected")
        })
    });
    let rejected = received(&inbox)
        .into_iter()
        .find(|m| to(m) == "ops@example.org" && m["subject"].as_str().unwrap().contains("rejected"))
        .unwrap();
    assert!(rejected["text"].as_str().unwrap().contains("wrong host"));
    // Every Message-ID names the request and its status.
    for m in received(&inbox) {
        let mid = m["message_id"].as_str().unwrap();
        assert!(mid.starts_with("<request."), "{mid}");
    }
    // 3 for the first request, 1 issued, 3 for the second, 1 rejected.
    std::thread::sleep(Duration::from_millis(1000));
    let all: Vec<(String, String)> = received(&inbox)
        .iter()
        .map(|m| (to(m), m["subject"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(all.len(), 8, "{all:#?}\n{}", daemon.log());
    drop(daemon);
    sink.stop();
}
