//! The operator console in a real browser (issue 17): Debian's headless
//! Chromium driven over WebDriver against the real daemon, walking the
//! screens as an operator and an approver would, and the refusals: a
//! wrong token, a forged or cross-site form, a signed-out session, a role
//! that may not see a screen, one's own request, too many sign-ins.
//! And the console on a listener of its own, over TLS.
//!
//! Each screen is saved as a PNG under `target/console-screenshots/`
//! (`docs/console.md` shows copies of them).

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use idsync_tests::webdriver::Browser;
use idsync_tests::{free_port, openssl_csr, sha256_hex, wait_until, Env};
use serde_json::{json, Value};

const OPS: &str = "idsync_test-console-operator";
const BOSS: &str = "idsync_test-console-approver";
const WATCH: &str = "idsync_test-console-monitor";
const BOTH: &str = "idsync_test-console-operator-and-approver";
const ROOT: &str = "idsync_test-console-admin";
/// WebDriver's keys.
const TAB: &str = "\u{E004}";
const ENTER: &str = "\u{E007}";

const PASSWORD: &str = "Correct-Horse-Battery-7431";

const PROFILES: &str = r#"
[[profiles]]
name = "Approved P12"
protocol = "p12"
requires_approval = true

[[profiles]]
name = "Web P10"
protocol = "p10"
validity_days = 20

[[profiles]]
name = "Direct P12"
protocol = "p12"

[[profiles]]
name = "Devices SCEP"
protocol = "scep"
"#;

const ASSETS: &str = "\
id,name,description,type,owner,certificateProfile,organization,country,dnsNames,ipAddresses,sid
,vault.example.org,,Server,,Approved P12,,,vault.example.org,,
,printer-7,,Printer,,Not Yet Defined,,,printer-7.example.org,,
";

const CRM_USERS: &str = "\
status,loginName,mail,firstName,lastName,language
active,cara,cara@example.org,Cara,Crm,en
";

/// Seed 001 through the console: one new user, one update, one bad mail.
const UPLOAD: &str = "\
status,loginName,mail,firstName,lastName,language
active,nina,nina@example.org,Nina,New,en
active,bob,bob@example.org,Bob,Browne,en
active,zed,zed@example,Zed,Bad,en
";

const USERS: &str = "\
status,loginName,mail,firstName,lastName,language,groups
active,eve,eve@example.org,<b>Eve</b>,Evans,en,staff
active,evan,evan@example.org,Evan,Ng,en,
active,bob,bob@example.org,Bob,Brown,en,staff
";

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots")
}

/// axe-core, the accessibility checker (`AXE_CORE_JS`, which the test
/// command installs from npm).
fn axe_core() -> &'static str {
    static AXE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    AXE.get_or_init(|| {
        let path = std::env::var("AXE_CORE_JS")
            .expect("AXE_CORE_JS: run the tests with scripts/test, which installs axe-core");
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    })
}

/// Save the screen shown as `name.png`, and check it with axe-core: no
/// violation of its WCAG 2.0 and 2.1 A and AA rules (labels, contrast,
/// landmarks, names of links and buttons, valid ARIA, …).
fn look(b: &Browser, name: &str) {
    b.screenshot(&screenshots().join(format!("{name}.png")));
    let violations = accessibility_violations(b);
    assert!(
        violations.is_empty(),
        "{name}: {}",
        serde_json::to_string_pretty(&violations).unwrap()
    );
}

/// What axe-core finds wrong with the page shown, a line per rule broken
/// (its id, what it asks for, where). Panics when axe-core checked
/// nothing, so a page it could not run on never passes.
fn accessibility_violations(b: &Browser) -> Vec<Value> {
    b.execute(&format!("{}\nreturn true;", axe_core()), json!([]));
    let found = b.execute(
        "return axe.run(document, {runOnly: {type: 'tag', values: \
         ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}}).then(r => ({ \
         passes: r.passes.length, violations: r.violations.map(v => \
         v.id + ': ' + v.help + ' at ' + v.nodes.map(n => n.target.join(' ')).join(', ')) }))",
        json!([]),
    );
    assert!(
        found["passes"].as_u64().unwrap_or(0) > 0,
        "axe-core checked nothing: {found}"
    );
    found["violations"]
        .as_array()
        .expect("axe-core's answer")
        .clone()
}

/// The admin API and the console's pages over plain HTTP (ureq), for what
/// the browser cannot show: headers, and requests a browser would not send.
struct Http {
    base: String,
    agent: ureq::Agent,
}

impl Http {
    fn new(port: u16) -> Self {
        Self {
            base: format!("http://127.0.0.1:{port}"),
            // Redirects are looked at, not followed.
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(60))
                .redirects(0)
                .build(),
        }
    }

    fn send(&self, req: ureq::Request, body: Option<&str>) -> ureq::Response {
        let resp = match body {
            Some(b) => req
                .set("Content-Type", "application/x-www-form-urlencoded")
                .send_string(b),
            None => req.call(),
        };
        match resp {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{e}"),
        }
    }

    fn api(&self, method: &str, token: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let req = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {token}"));
        let resp = match body {
            Some(b) => req
                .set("Content-Type", "application/json")
                .send_string(&b.to_string()),
            None => req.call(),
        };
        let resp = match resp {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = resp.status();
        let text = resp.into_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A console page with `cookie` (a `name=value` pair) and extra headers.
    fn page(
        &self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        headers: &[(&str, &str)],
        form: Option<&str>,
    ) -> ureq::Response {
        let mut req = self.agent.request(method, &format!("{}{path}", self.base));
        if let Some(c) = cookie {
            req = req.set("Cookie", c);
        }
        for (k, v) in headers {
            req = req.set(k, v);
        }
        self.send(req, form)
    }

    fn enroll(&self, token: &str) -> String {
        let (status, v) = self.api(
            "POST",
            token,
            "/api/v1/enroll/p12",
            Some(json!({"asset": "vault.example.org", "password": PASSWORD})),
        );
        assert_eq!(status, 202, "{v}");
        v["request"]["id"].as_str().expect("request id").to_owned()
    }
}

/// Sign in through the form; the page the browser lands on.
fn sign_in(b: &Browser, base: &str, token: &str) -> String {
    b.goto(&format!("{base}/ui/signin"));
    let field = b.find("#token");
    b.type_into(&field, token);
    b.click_through(&b.find("form[action='/ui/signin'] button[type=submit]"));
    b.url()
}

/// The session cookie the browser holds, as `name=value`.
fn session_cookie(b: &Browser) -> (String, Value) {
    let c = b
        .cookies()
        .into_iter()
        .find(|c| c["name"] == "idsync_session")
        .expect("a session cookie");
    (
        format!("idsync_session={}", c["value"].as_str().unwrap()),
        c,
    )
}

/// The CSRF token of the page shown (every signed-in page has one in its
/// sign-out form).
fn csrf_of(b: &Browser) -> String {
    b.execute(
        "return document.querySelector('input[name=csrf]').value",
        json!([]),
    )
    .as_str()
    .expect("a csrf field")
    .to_owned()
}

#[test]
fn operators_and_approvers_work_through_the_console_in_a_browser() {
    let admin = free_port();
    let token = |name: &str, t: &str, roles: &str| {
        format!(
            "[[tokens]]\nname = \"{name}\"\nsha256 = \"{}\"\nroles = [{roles}]\n",
            sha256_hex(t)
        )
    };
    // Mail goes to a port nobody listens on: sending is queued (what the
    // console does) and the mail connector retries meanwhile.
    let smtp = free_port();
    let env = Env::with_config(&format!(
        "[admin]\nlisten = \"127.0.0.1:{admin}\"\n{PROFILES}\n\
         [[applications]]\nname = \"crm\"\ndisplay_name = \"The <CRM>\"\n\n\
         [mail]\nrelay = \"127.0.0.1\"\nport = {smtp}\ntls = \"none\"\n\
         from = \"idsync <noreply@example.com>\"\npublic_url = \"https://id.example.com/\"\n\n\
         {}{}{}{}{}",
        token("ops", OPS, "\"operator\", \"write\", \"read\""),
        token("boss", BOSS, "\"approver\", \"read\""),
        token("watch", WATCH, "\"monitor\""),
        token("both", BOTH, "\"operator\", \"approver\""),
        token("root", ROOT, "\"admin\""),
    ));
    for (kind, name, csv, args) in [
        ("groups", "groups.csv", "displayName\nstaff\n", &[][..]),
        ("users", "users.csv", USERS, &[]),
        ("users", "crm.csv", CRM_USERS, &["--application", "crm"]),
        ("assets", "assets.csv", ASSETS, &[]),
    ] {
        let file = env.file(name, csv);
        let (code, report) = env.import(kind, &file, args);
        assert_eq!(code, 0, "{kind}: {report}");
    }
    let daemon = env.serve(&[]);
    let base = format!("http://127.0.0.1:{admin}");
    let http = Http::new(admin);
    wait_until("the admin listener", Duration::from_secs(60), || {
        std::net::TcpStream::connect(("127.0.0.1", admin)).is_ok()
    });
    let pending = http.enroll(OPS);

    // Without a session every page leads to the sign-in form, which
    // carries the headers that keep other sites and scripts out.
    let r = http.page("GET", "/ui/users", None, &[], None);
    assert_eq!(r.status(), 303);
    assert_eq!(r.header("location"), Some("/ui/signin"));
    let r = http.page("GET", "/ui/signin", None, &[], None);
    assert_eq!(r.status(), 200);
    let csp = r
        .header("content-security-policy")
        .unwrap_or_default()
        .to_owned();
    for directive in [
        "script-src 'self'",
        "frame-ancestors 'none'",
        "default-src 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert_eq!(r.header("x-frame-options"), Some("DENY"));

    let b = Browser::start(1280, 900);
    b.goto(&format!("{base}/ui/"));
    assert!(b.url().ends_with("/ui/signin"), "{}", b.url());
    look(&b, "signin");
    // The checker sees what it should: a field without a label.
    b.execute(
        "document.querySelector('main').insertAdjacentHTML('beforeend', '<input id=unlabelled>')",
        json!([]),
    );
    let found = accessibility_violations(&b);
    assert!(
        found
            .iter()
            .any(|v| v.as_str().unwrap_or("").starts_with("label:")),
        "{found:?}"
    );

    // A wrong token is refused, and says so.
    sign_in(&b, &base, "idsync_not-a-token");
    assert_eq!(b.text(&b.find(".error")), "This token is not accepted.");

    // The approver signs in with the keyboard alone (the token field has
    // the focus; Enter sends the form): a session cookie that scripts
    // cannot read and other sites do not get, holding no token.
    b.goto(&format!("{base}/ui/signin"));
    assert_eq!(b.focused(), "token");
    b.press(&format!("{BOSS}{ENTER}"));
    wait_until("the overview", Duration::from_secs(30), || {
        b.url().ends_with("/ui/")
    });
    let (cookie, raw) = session_cookie(&b);
    assert_eq!(raw["httpOnly"], true, "{raw}");
    assert_eq!(raw["sameSite"], "Strict", "{raw}");
    assert!(!cookie.contains(BOSS));
    assert!(b.text(&b.find(".who")).contains("boss"));
    let nav: Vec<String> = b.find_all("nav a").iter().map(|a| b.text(a)).collect();
    assert_eq!(
        nav,
        [
            "Overview",
            "Users",
            "Groups",
            "Assets",
            "Certificates",
            "Requests"
        ]
    );
    assert!(!b.text(&b.find("#daemon-status")).is_empty());
    look(&b, "overview");
    // Keyboard order: the skip link first, then the screens in the order
    // shown; the skip link takes the focus to the page's content.
    b.press(TAB);
    assert_eq!(b.focused(), "Skip to content");
    b.press(TAB);
    assert_eq!(b.focused(), "Overview");
    b.press(TAB);
    assert_eq!(b.focused(), "Users");
    b.goto(&format!("{base}/ui/"));
    b.press(TAB);
    b.press(ENTER);
    assert_eq!(
        b.execute("return document.activeElement.id", json!([])),
        "main"
    );

    // Users: search by the start of the login name; markup in a name is
    // shown as text.
    b.click_through(&b.find("nav a[href='/ui/users']"));
    b.type_into(&b.find("#q"), "ev");
    b.click_through(&b.find("form[role=search] button"));
    wait_until("the search's page", Duration::from_secs(10), || {
        b.url().contains("q=ev")
    });
    let rows: Vec<String> = b.find_all("tbody tr").iter().map(|r| b.text(r)).collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    // In login name order: evan, eve.
    assert!(rows[0].starts_with("evan@example.org"), "{rows:?}");
    assert!(rows[1].contains("<b>Eve</b> Evans"), "{rows:?}");
    assert!(
        b.try_find("tbody b").is_none(),
        "markup from the store rendered"
    );
    look(&b, "users");
    b.click_through(&b.find("tbody tr:nth-child(2) a"));
    assert!(b.text(&b.find("main")).contains("staff"));
    assert!(b.text(&b.find("main")).contains("eve@example.org"));
    look(&b, "user");
    // The user's group, with its members and history.
    b.click_through(&b.find("main li a"));
    assert_eq!(b.text(&b.find("h1")), "staff");
    let members: Vec<String> = b
        .find_all("#members tbody tr")
        .iter()
        .map(|r| b.text(r))
        .collect();
    assert!(
        members.iter().any(|m| m.starts_with("eve@example.org")),
        "{members:?}"
    );
    let history = b.text(&b.find("#history"));
    assert!(history.contains("created"), "{history}");
    look(&b, "group");
    b.goto(&format!("{base}/ui/groups?q=nomatch"));
    assert!(b.try_find("#no-groups").is_some());
    b.goto(&format!("{base}/ui/users?q=nobody"));
    assert!(b.try_find("#no-users").is_some());

    // Requests: the pending one, found by status.
    b.goto(&format!("{base}/ui/requests"));
    b.execute(
        "document.getElementById('status').value = 'pending_approval'",
        json!([]),
    );
    b.click_through(&b.find("form[role=search] button"));
    wait_until("the filtered requests", Duration::from_secs(10), || {
        b.url().contains("status=pending_approval")
    });
    let rows = b.find_all("tbody tr");
    assert_eq!(rows.len(), 1, "{}", b.source());
    look(&b, "requests");
    b.click_through(&b.find("tbody tr a"));
    assert!(b.url().ends_with(&pending), "{}", b.url());
    look(&b, "request");

    // A form whose CSRF token is not the session's is refused, and
    // changes nothing.
    b.execute(
        "document.querySelector('main input[name=csrf]').value = 'forged'",
        json!([]),
    );
    b.click_through(&b.find("button[value=approve]"));
    assert!(
        b.text(&b.find(".error"))
            .contains("security token does not match"),
        "{}",
        b.source()
    );
    let (_, r) = http.api("GET", OPS, &format!("/api/v1/requests/{pending}"), None);
    assert_eq!(r["status"], "pending_approval", "{r}");

    // A form with the right token, sent from another site, is refused too.
    let csrf = csrf_of(&b);
    let path = format!("/ui/requests/{pending}/decide");
    let form = format!("csrf={csrf}&decision=approve");
    for header in [
        ("Origin", "http://evil.example"),
        ("Sec-Fetch-Site", "cross-site"),
    ] {
        let r = http.page("POST", &path, Some(&cookie), &[header], Some(&form));
        assert_eq!(r.status(), 403, "{header:?}");
    }
    let (_, r) = http.api("GET", OPS, &format!("/api/v1/requests/{pending}"), None);
    assert_eq!(r["status"], "pending_approval", "{r}");

    // Approved with a comment, decided by the session's token (a P12
    // request is issued when its requester downloads the file).
    b.goto(&format!("{base}/ui/requests/{pending}"));
    b.type_into(&b.find("#comment"), "known server, ok");
    b.click_through(&b.find("button[value=approve]"));
    assert_eq!(
        b.text(&b.find("#request-status")),
        "approved",
        "{}",
        b.source()
    );
    assert_eq!(b.text(&b.find(".notice")), "approved by boss.");
    let (_, r) = http.api("GET", OPS, &format!("/api/v1/requests/{pending}"), None);
    assert_eq!(r["status"], "approved", "{r}");
    assert_eq!(r["decidedBy"], "boss", "{r}");
    assert_eq!(r["comment"], "known server, ok", "{r}");
    assert!(b.try_find("button[value=approve]").is_none());

    // A phone's width: the same page, readable.
    b.resize(390, 844);
    b.goto(&format!("{base}/ui/requests"));
    look(&b, "requests-phone");
    b.resize(1280, 900);

    // Signing out ends the session on the server: the old cookie leads to
    // the sign-in form, and a form sent with it changes nothing.
    b.click_through(&b.find(".signout button"));
    assert!(b.url().ends_with("/ui/signin"), "{}", b.url());
    let r = http.page("GET", "/ui/", Some(&cookie), &[], None);
    assert_eq!(r.status(), 303);
    let r = http.page("POST", &path, Some(&cookie), &[], Some(&form));
    assert_eq!(r.status(), 401);

    // A monitor token sees the overview only.
    sign_in(&b, &base, WATCH);
    let nav: Vec<String> = b.find_all("nav a").iter().map(|a| b.text(a)).collect();
    assert_eq!(nav, ["Overview"]);
    b.goto(&format!("{base}/ui/users"));
    assert_eq!(b.text(&b.find("h1")), "Not allowed");
    look(&b, "not-allowed");
    b.click_through(&b.find(".signout button"));

    // One's own request shows no decision, and a decision sent anyway is
    // refused by the enrollment service.
    let own = http.enroll(BOTH);
    sign_in(&b, &base, BOTH);
    b.goto(&format!("{base}/ui/requests/{own}"));
    assert!(b.try_find("button[value=approve]").is_none());
    assert!(b.text(&b.find("main")).contains("You made this request"));
    let (cookie, _) = session_cookie(&b);
    let form = format!("csrf={}&decision=approve", csrf_of(&b));
    let r = http.page(
        "POST",
        &format!("/ui/requests/{own}/decide"),
        Some(&cookie),
        &[],
        Some(&form),
    );
    assert_eq!(r.status(), 403);
    let (_, r) = http.api("GET", OPS, &format!("/api/v1/requests/{own}"), None);
    assert_eq!(r["status"], "pending_approval", "{r}");
    b.click_through(&b.find(".signout button"));

    // Seed 001 as an operator: upload, look at the dry run, import.
    sign_in(&b, &base, OPS);
    b.click_through(&b.find("nav a[href='/ui/import']"));
    look(&b, "import");
    let csv = env.file("new-staff.csv", UPLOAD);
    b.execute(
        "document.getElementById('end_state').value = 'inactive'",
        json!([]),
    );
    b.type_into(&b.find("#file"), &csv.display().to_string());
    b.click_through(&b.find("#upload button[type=submit]"));
    let outcome = b.text(&b.find("#outcome"));
    assert!(
        outcome.starts_with("partial") && outcome.contains("dry run"),
        "{outcome}"
    );
    let table = |id: &str| -> Vec<String> {
        b.find_all(&format!("#{id} tbody tr"))
            .iter()
            .map(|r| b.text(r))
            .collect()
    };
    assert_eq!(table("created").len(), 1, "{}", b.source());
    assert!(table("created")[0].contains("nina@example.org"));
    assert!(table("updated")[0].contains("bob@example.org"));
    let rejected = table("rejected");
    assert!(rejected[0].starts_with('4'), "{rejected:?}");
    assert!(rejected[0].contains("mail"), "{rejected:?}");
    look(&b, "import-preview");
    let preview = b.url();
    b.click_through(&b.find("#do-import"));
    assert!(
        b.text(&b.find("h1")).starts_with("Imported"),
        "{}",
        b.source()
    );
    assert!(b.text(&b.find("#outcome")).starts_with("partial"));
    assert!(b.try_find("#do-import").is_none(), "imported twice?");
    look(&b, "import-result");
    let (cookie, _) = session_cookie(&b);
    let path = preview.trim_start_matches(&base).to_owned();
    let r = http.page(
        "GET",
        &format!("{path}/report.csv"),
        Some(&cookie),
        &[],
        None,
    );
    assert_eq!(r.status(), 200);
    assert!(r
        .header("content-disposition")
        .is_some_and(|d| d.starts_with("attachment")));
    let report = r.into_string().unwrap();
    assert!(report.contains("created,2,nina@example.org"), "{report}");
    assert!(report.contains("rejected,4,zed@example"), "{report}");
    // Without a session the upload is not there; an upload without the
    // form's security token is refused before anything is written.
    let r = http.page("GET", &path, None, &[], None);
    assert_eq!(r.status(), 303);
    let boundary = "idsyncboundary";
    let forged = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"kind\"\r\n\r\nusers\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.csv\"\r\n\
         Content-Type: text/csv\r\n\r\n{UPLOAD}\r\n--{boundary}--\r\n"
    );
    let r = http
        .agent
        .post(&format!("{base}/ui/import"))
        .set("Cookie", &cookie)
        .set(
            "Content-Type",
            &format!("multipart/form-data; boundary={boundary}"),
        )
        .send_string(&forged);
    let status = match r {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(s, _)) => s,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(status, 403);

    // Seed 000: a pending asset (its profile did not exist) gets one.
    b.click_through(&b.find("nav a[href='/ui/assets']"));
    b.type_into(&b.find("#q"), "print");
    b.click_through(&b.find("form[role=search] button"));
    look(&b, "assets");
    b.click_through(&b.find("tbody tr a"));
    assert_eq!(b.text(&b.find("#asset-state")), "pending");
    b.execute(
        "document.getElementById('profile').value = 'Approved P12'",
        json!([]),
    );
    look(&b, "asset");
    b.click_through(&b.find("#assign"));
    assert_eq!(b.text(&b.find("#asset-state")), "active", "{}", b.source());
    // The assignment is the asset's newest change, by the operator.
    let newest = b.text(&b.find("#history tbody tr"));
    assert!(
        newest.contains("updated") && newest.contains("token ops"),
        "{newest}"
    );

    // Seed 003: "Send E-Mails" for an application, then a resend.
    b.click_through(&b.find("nav a[href='/ui/applications']"));
    assert!(b.text(&b.find("main")).contains("The <CRM>"));
    b.click_through(&b.find("#send-crm"));
    assert_eq!(
        b.text(&b.find(".notice")),
        "crm: 1 activation mails queued."
    );
    look(&b, "applications");
    b.goto(&format!("{base}/ui/users?q=cara"));
    b.click_through(&b.find("tbody tr a"));
    let activation = b.text(&b.find("main table tbody tr"));
    assert!(activation.starts_with("crm queued"), "{activation}");
    b.click_through(&b.find("main table button"));
    assert_eq!(
        b.text(&b.find(".notice")),
        "A new activation mail for crm is queued."
    );
    // The user's history, newest first: the resend, the sending, the
    // import that created her.
    let history: Vec<String> = b
        .find_all("#history tbody tr")
        .iter()
        .map(|r| b.text(r))
        .collect();
    assert_eq!(history.len(), 3, "{history:?}");
    assert!(
        history[0].contains("updated") && history[0].contains("token ops"),
        "{history:?}"
    );
    assert!(
        history[2].contains("created") && history[2].contains("line 2"),
        "{history:?}"
    );
    assert!(
        b.try_find("#older-history").is_none(),
        "her creation is in the window"
    );
    look(&b, "user-history");

    // Seed 002: enroll profiles. P10: the CSR's PEM, the certificate,
    // "Confirm installation".
    b.click_through(&b.find("nav a[href='/ui/profiles']"));
    look(&b, "profiles");
    b.click_through(&b.find("a[href='/ui/profiles/Web%20P10']"));
    let csr = openssl_csr(env.dir.path(), "vault");
    b.type_into(&b.find("#asset"), "vault.example.org");
    b.execute(
        "document.getElementById('csr').value = arguments[0]",
        json!([csr]),
    );
    b.click_through(&b.find("#do-enroll"));
    assert!(b.url().contains("/ui/certificates/"), "{}", b.source());
    assert_eq!(b.text(&b.find("#installed")), "no");
    look(&b, "certificate");
    let (cookie, _) = session_cookie(&b);
    let cert_path = b.url().trim_start_matches(&base).to_owned();
    let r = http.page("GET", &format!("{cert_path}/pem"), Some(&cookie), &[], None);
    assert_eq!(r.status(), 200);
    assert!(r
        .into_string()
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
    b.click_through(&b.find("#confirm-installed"));
    assert_ne!(b.text(&b.find("#installed")), "no", "{}", b.source());

    // The overview: the certificate (20 days) among those expiring within
    // 30, and a file dropped meanwhile among the recent files.
    env.drop_file(
        "users",
        "late.csv",
        "status,mail,lastName\nactive,late@example.org,Late\n",
    );
    wait_until("the dropped file is done", Duration::from_secs(60), || {
        env.finished("users", "processed").len() == 1
    });
    b.click_through(&b.find("nav a[href='/ui/']"));
    let expiring = b.text(&b.find("#expiring"));
    assert!(expiring.contains("vault.example.org"), "{expiring}");
    let recent = b.text(&b.find("#recent-files tbody tr"));
    assert!(
        recent.contains("late.csv") && recent.contains("accepted"),
        "{recent}"
    );
    look(&b, "overview-operator");

    // P12 with the displayed password: without "Confirm displayed
    // password" it is refused; with it, the answer is the file, which
    // opens with that password.
    b.goto(&format!("{base}/ui/profiles/Direct%20P12"));
    look(&b, "profile-p12");
    let generated = b.text(&b.find("#generated-shown"));
    assert_eq!(generated.len(), 20);
    let csrf = csrf_of(&b);
    let p12_form = |confirm: bool| {
        format!(
            "csrf={csrf}&asset=vault.example.org&generated={generated}&use_generated=on{}",
            if confirm { "&confirm_displayed=on" } else { "" }
        )
    };
    let r = http.page(
        "POST",
        "/ui/profiles/Direct%20P12/enroll",
        Some(&cookie),
        &[],
        Some(&p12_form(false)),
    );
    assert_eq!(r.status(), 422);
    assert!(r
        .into_string()
        .unwrap()
        .contains("Confirm displayed password"));
    let r = http.page(
        "POST",
        "/ui/profiles/Direct%20P12/enroll",
        Some(&cookie),
        &[],
        Some(&p12_form(true)),
    );
    assert_eq!(r.status(), 200);
    assert_eq!(r.header("content-type"), Some("application/x-pkcs12"));
    let mut p12 = Vec::new();
    std::io::Read::read_to_end(&mut r.into_reader(), &mut p12).unwrap();
    let file = env.file("vault.p12", &p12);
    let opened = std::process::Command::new("openssl")
        .args(["pkcs12", "-noout", "-passin"])
        .arg(format!("pass:{generated}"))
        .arg("-in")
        .arg(&file)
        .output()
        .expect("run openssl");
    assert!(
        opened.status.success(),
        "{}",
        String::from_utf8_lossy(&opened.stderr)
    );

    // SCEP: the asset registered, its challenge shown once.
    b.goto(&format!("{base}/ui/profiles/Devices%20SCEP"));
    b.type_into(&b.find("#asset"), "vault.example.org");
    b.click_through(&b.find("#do-enroll"));
    assert!(
        !b.text(&b.find("#scep-challenge")).is_empty(),
        "{}",
        b.source()
    );
    look(&b, "registered");

    b.click_through(&b.find(".signout button"));

    // An admin creates a profile from the TOML of `idsync profiles put`,
    // then edits it; a profile of the configuration file is refused.
    sign_in(&b, &base, ROOT);
    b.goto(&format!("{base}/ui/profiles"));
    b.click_through(&b.find("#save-profile"));
    assert_eq!(b.text(&b.find("h1")), "Web servers", "{}", b.source());
    assert!(b.text(&b.find("main dl")).contains("90 days"));
    b.click(&b.find("details summary"));
    b.execute(
        "document.getElementById('toml').value = document.getElementById('toml').value.replace('validity_days = 90', 'validity_days = 30')",
        json!([]),
    );
    b.click_through(&b.find("#save-profile"));
    assert!(
        b.text(&b.find("main dl")).contains("30 days"),
        "{}",
        b.source()
    );
    look(&b, "profile-edit");
    b.goto(&format!("{base}/ui/profiles/Web%20P10"));
    b.click(&b.find("details summary"));
    b.click_through(&b.find("#save-profile"));
    assert!(
        b.text(&b.find(".error")).contains("configuration file"),
        "{}",
        b.source()
    );
    drop(b);

    // Guessing tokens is slowed down: 10 attempts a minute per address,
    // of which the browser made 6 above.
    let answers: Vec<(u16, Option<String>)> = (0..7)
        .map(|_| {
            let r = http.page("POST", "/ui/signin", None, &[], Some("token=idsync_guess"));
            (r.status(), r.header("retry-after").map(str::to_owned))
        })
        .collect();
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(statuses, [401, 401, 401, 401, 429, 429, 429]);
    assert!(answers[6]
        .1
        .as_deref()
        .is_some_and(|s| s.parse::<u64>().is_ok_and(|n| (1..=60).contains(&n))));
    let log = daemon.log();
    assert!(
        !log.contains(BOSS) && !log.contains(WATCH),
        "a token reached the log"
    );

    // The import's changes are recorded with the signed-in token as actor,
    // and its end state applied.
    drop(daemon);
    let nina = env
        .show("users", "nina@example.org")
        .expect("nina imported");
    assert_eq!(nina["status"], "inactive", "{nina}");
    let by_ops: Vec<Value> = env
        .changes()
        .into_iter()
        .filter(|e| {
            e["actor"]["kind"] == "token" && e["actor"]["name"] == "ops" && e["source"] == "CSV"
        })
        .collect();
    assert_eq!(by_ops.len(), 2, "{by_ops:?}");
    assert!(
        by_ops.iter().all(|e| e["actor"]["digest"].is_string()),
        "{by_ops:?}"
    );
}

/// `[console] listen` with a certificate: the console on a listener of
/// its own over HTTPS, its session cookie `Secure`; the admin listener
/// serves it no more, and the console's port speaks no plain HTTP.
#[test]
fn the_console_on_its_own_listener_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = idsync_tests::self_signed_loopback(dir.path());
    let (admin, console) = (free_port(), free_port());
    let env = Env::with_config(&format!(
        "[admin]\nlisten = \"127.0.0.1:{admin}\"\n\
         [console]\nlisten = \"127.0.0.1:{console}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\
         [[tokens]]\nname = \"ops\"\nsha256 = \"{}\"\nroles = [\"read\"]\n",
        cert.display(),
        key.display(),
        sha256_hex(OPS)
    ));
    let daemon = env.serve(&[]);
    wait_until("the console listener", Duration::from_secs(60), || {
        daemon.log().contains("console listener started")
    });
    assert!(daemon.log().contains("tls=true"), "{}", daemon.log());
    wait_until("the admin listener", Duration::from_secs(60), || {
        std::net::TcpStream::connect(("127.0.0.1", admin)).is_ok()
    });
    let r = Http::new(admin).page("GET", "/ui/signin", None, &[], None);
    assert_eq!(r.status(), 404, "the console is on its own listener");

    let mut plain = std::net::TcpStream::connect(("127.0.0.1", console)).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain
        .write_all(b"GET /ui/signin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP answered: {}",
        String::from_utf8_lossy(&answer)
    );

    let b = Browser::start_accepting_any_certificate(1280, 900);
    let base = format!("https://127.0.0.1:{console}");
    b.goto(&format!("{base}/"));
    assert!(b.url().ends_with("/ui/signin"), "{}", b.url());
    let landed = sign_in(&b, &base, OPS);
    assert!(landed.ends_with("/ui/"), "{landed}");
    let (_, raw) = session_cookie(&b);
    assert_eq!(raw["secure"], true, "{raw}");
    assert_eq!(raw["httpOnly"], true, "{raw}");
    b.click_through(&b.find("nav a[href='/ui/users']"));
    assert_eq!(b.text(&b.find("h1")), "Users");
}

/// A session left idle past `session_idle_minutes` ends: the form the
/// browser still shows is refused when sent (and changes nothing), and
/// every page leads to the sign-in form again. (A minute is the shortest
/// idle time the configuration takes, so this test waits that long,
/// beside the others.)
#[test]
fn an_idle_session_expires() {
    let admin = free_port();
    let env = Env::with_config(&format!(
        "[admin]\nlisten = \"127.0.0.1:{admin}\"\n[console]\nsession_idle_minutes = 1\n\
         [[tokens]]\nname = \"ops\"\nsha256 = \"{}\"\nroles = [\"read\"]\n",
        sha256_hex(OPS)
    ));
    let _daemon = env.serve(&[]);
    wait_until("the admin listener", Duration::from_secs(60), || {
        std::net::TcpStream::connect(("127.0.0.1", admin)).is_ok()
    });
    let base = format!("http://127.0.0.1:{admin}");
    let b = Browser::start(1280, 900);
    let landed = sign_in(&b, &base, OPS);
    assert!(landed.ends_with("/ui/"), "{landed}");
    b.goto(&format!("{base}/ui/users"));
    assert_eq!(b.text(&b.find("h1")), "Users");
    std::thread::sleep(Duration::from_secs(65));
    // The sign-out form on the page, sent with the expired session.
    b.click_through(&b.find(".signout button"));
    assert_eq!(b.text(&b.find("h1")), "Signed out", "{}", b.source());
    b.goto(&format!("{base}/ui/users"));
    assert!(b.url().ends_with("/ui/signin"), "{}", b.url());
    look(&b, "session-expired");
}
