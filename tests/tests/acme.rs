//! The ACME server end to end (issue 15) with real clients: Debian's
//! `lego` (4.9) and `certbot` (2.1), against the real daemon. An asset is
//! registered (`idsync enroll acme`), the client makes its account with
//! the external account binding, orders, answers http-01 on a loopback
//! port (`[acme] resolve` sends the validator there), finalizes and
//! downloads; `openssl verify` checks the certificate against the CA.
//! Refusals end as RFC 8555 says: a wrong HMAC `unauthorized`, a name
//! outside the registration `rejectedIdentifier`, a used binding
//! `unauthorized`; with approval the order waits in `processing` until an
//! approver decides.

mod pki;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use idsync_tests::{free_port, wait_until};
use pki::*;

/// The lego (http-01) port each name is validated on.
struct Ports {
    acme: u16,
    web1: u16,
    app: u16,
}

/// The profile most tests enroll with.
const DEVICE_ACME: &str = r#"
[[profiles]]
name = "Device ACME"
protocol = "acme"
key_types = ["ecdsa-p256", "rsa-2048"]
[profiles.domain_policy]
names = ["*.example.org"]
"#;

fn profiles(p: &Ports) -> String {
    format!(
        r#"{DEVICE_ACME}
[[profiles]]
name = "Approved ACME"
protocol = "acme"
requires_approval = true

[[profiles]]
name = "Trusted ACME"
protocol = "acme"
preauthorized = true

[acme]
enabled = true
listen = "127.0.0.1:{acme}"
[acme.resolve]
"web1.example.org" = "127.0.0.1:{web1}"
"www.example.org" = "127.0.0.1:{web1}"
"app.example.org" = "127.0.0.1:{app}"
"#,
        acme = p.acme,
        web1 = p.web1,
        app = p.app
    )
}

/// `idsync enroll acme`: the registration's id and HMAC key.
fn register(pki: &Pki, asset: &str, profile: &str, dns: Option<&str>) -> (String, String) {
    let mut args = vec!["enroll", "acme", "--asset", asset, "--profile", profile];
    if let Some(d) = dns {
        args.extend(["--dns", d]);
    }
    let o = pki.cli(OPS, &args);
    assert!(o.status.success(), "{}", text(&o));
    let shown = out(&o);
    (field(&shown, "key id"), field(&shown, "HMAC key"))
}

/// The CA's root, as clients are told to trust it.
fn root_file(pki: &Pki) -> PathBuf {
    let root = pki.get(OPS, "/ca");
    assert_eq!(root.status, 200);
    let f = pki.dir().join("acme-root.pem");
    std::fs::write(&f, &root.body).unwrap();
    f
}

struct Lego<'a> {
    pki: &'a Pki,
    dir: PathBuf,
    port: u16,
    acme: u16,
}

impl Lego<'_> {
    /// lego with its account's binding, before its solver and command.
    fn base(&self, kid: &str, hmac: &str) -> Command {
        let mut cmd = Command::new("lego");
        cmd.env("LEGO_CA_CERTIFICATES", root_file(self.pki)).args([
            "--server",
            &format!("https://127.0.0.1:{}/acme/directory", self.acme),
            "--accept-tos",
            "--email",
            "ops@example.org",
            "--eab",
            "--kid",
            kid,
            &format!("--hmac={hmac}"),
            "--path",
            self.dir.to_str().unwrap(),
            "--cert.timeout",
            "60",
        ]);
        cmd
    }

    /// `lego run` (or `revoke`, in `extra`) answering http-01.
    fn run(&self, kid: &str, hmac: &str, domains: &[&str], extra: &[&str]) -> Output {
        let mut cmd = self.base(kid, hmac);
        cmd.args(["--http", "--http.port", &format!("127.0.0.1:{}", self.port)]);
        for d in domains {
            cmd.args(["--domains", d]);
        }
        cmd.args(extra);
        if !extra.contains(&"revoke") {
            cmd.arg("run");
        }
        timed(cmd, Duration::from_secs(120))
    }

    fn certificate(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join("certificates").join(format!("{name}.crt")))
            .unwrap_or_else(|e| panic!("lego's certificate of {name}: {e}"))
    }
}

fn start() -> (Pki, Ports) {
    let ports = Ports {
        acme: free_port(),
        web1: free_port(),
        app: free_port(),
    };
    let pki = Pki::start_with(&profiles(&ports));
    wait_until("the ACME listener", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", ports.acme)).is_ok()
    });
    (pki, ports)
}

fn lego_at<'a>(pki: &'a Pki, ports: &Ports, name: &str, port: u16) -> Lego<'a> {
    Lego {
        pki,
        dir: pki.dir().join(format!("lego-{name}")),
        port,
        acme: ports.acme,
    }
}

fn registration(pki: &Pki, id: &str) -> serde_json::Value {
    let r = pki.get(OPS, &format!("/registrations/{id}"));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

#[test]
fn lego_enrolls_with_its_registration_and_is_refused_outside_it() {
    let (pki, ports) = start();
    let (kid, hmac) = register(&pki, "web1.example.org", "Device ACME", None);

    // A wrong HMAC: unauthorized, and the registration stays unused.
    let wrong = lego_at(&pki, &ports, "wrong", ports.web1);
    let bad_hmac = "A".repeat(43);
    let o = wrong.run(&kid, &bad_hmac, &["web1.example.org"], &[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("urn:ietf:params:acme:error:unauthorized"),
        "{}",
        text(&o)
    );
    assert_eq!(registration(&pki, &kid)["status"], "active");

    // The right one: account, order, http-01, finalize, download.
    let lego = lego_at(&pki, &ports, "web1", ports.web1);
    let o = lego.run(&kid, &hmac, &["web1.example.org", "www.example.org"], &[]);
    assert!(o.status.success(), "lego run: {}", text(&o));
    let pem = lego.certificate("web1.example.org");
    let shown = verify(&pki, "acme-web1", &pem);
    assert!(shown.contains("DNS:web1.example.org"), "{shown}");
    assert!(shown.contains("DNS:www.example.org"), "{shown}");
    let r = registration(&pki, &kid);
    assert_eq!(r["status"], "used", "{r}");

    // The certificate is the asset's, with its request, in the change log.
    let o = pki.cli(OPS, &["assets", "certificates", "web1.example.org"]);
    assert!(o.status.success(), "{}", text(&o));
    let leaf = pki.dir().join("acme-web1.leaf.pem");
    let serial = out(&openssl(&[
        "x509",
        "-noout",
        "-serial",
        "-in",
        leaf.to_str().unwrap(),
    ]));
    let serial = serial.trim().trim_start_matches("serial=");
    assert!(out(&o).contains(serial), "{serial} in {}", out(&o));
    let requests = pki.get(OPS, "/requests?profile=Device%20ACME").json();
    let listed = requests.as_array().cloned().unwrap_or_default();
    assert!(
        listed
            .iter()
            .any(|q| q["protocol"] == "acme" && q["status"] == "issued"),
        "{requests}"
    );

    // The same account orders again (a name it may have, a renewal).
    let o = lego.run(&kid, &hmac, &["www.example.org"], &[]);
    assert!(o.status.success(), "second order: {}", text(&o));

    // A name outside the registration: rejectedIdentifier.
    let o = lego.run(&kid, &hmac, &["other.example.org"], &[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("rejectedIdentifier"),
        "outside the registration: {}",
        text(&o)
    );

    // The binding was used: a second account with it is refused.
    let again = lego_at(&pki, &ports, "again", ports.web1);
    let o = again.run(&kid, &hmac, &["web1.example.org"], &[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("unauthorized") && text(&o).contains("used"),
        "{}",
        text(&o)
    );

    // revokeCert by the account: the CRL lists it.
    let o = lego.run(&kid, &hmac, &["web1.example.org"], &["revoke"]);
    assert!(o.status.success(), "lego revoke: {}", text(&o));
    let certs = pki.get(OPS, "/assets/web1.example.org/certificates").json();
    let revoked = certs
        .as_array()
        .or_else(|| certs["certificates"].as_array())
        .into_iter()
        .flatten()
        .filter(|c| !c["revoked"].is_null())
        .count();
    assert_eq!(revoked, 1, "{certs}");
}

/// `certbot certonly` against the daemon's ACME listener on `acme` with
/// the binding `kid`/`hmac`, its state under `dir`; `how` says how it
/// answers challenges and which names it asks for.
fn certbot(pki: &Pki, acme: u16, kid: &str, hmac: &str, dir: &Path, how: &[&str]) -> Command {
    let mut cmd = Command::new("certbot");
    cmd.env("REQUESTS_CA_BUNDLE", root_file(pki))
        .arg("certonly")
        .args(how)
        .args([
            "--non-interactive",
            "--agree-tos",
            "--no-eff-email",
            "-m",
            "ops@example.org",
            "--server",
            &format!("https://127.0.0.1:{acme}/acme/directory"),
            "--eab-kid",
            kid,
            // `=`: a base64url key may start with `-`, which a separate
            // argument would make an option.
            &format!("--eab-hmac-key={hmac}"),
            "--config-dir",
            &dir.join("config").display().to_string(),
            "--work-dir",
            &dir.join("work").display().to_string(),
            "--logs-dir",
            &dir.join("logs").display().to_string(),
        ]);
    cmd
}

#[test]
fn certbot_standalone_gets_a_certificate() {
    let (pki, ports) = start();
    let (kid, hmac) = register(&pki, "app.example.org", "Device ACME", None);
    let dir = pki.dir().join("certbot");
    let how = [
        "--standalone",
        "-d",
        "app.example.org",
        "--http-01-address",
        "127.0.0.1",
        "--http-01-port",
        &ports.app.to_string(),
    ];
    let cmd = certbot(&pki, ports.acme, &kid, &hmac, &dir, &how);
    let o = timed(cmd, Duration::from_secs(180));
    assert!(o.status.success(), "certbot: {}", text(&o));
    let live = dir.join("config/live/app.example.org/fullchain.pem");
    let pem = std::fs::read_to_string(&live).expect("certbot's fullchain.pem");
    let shown = verify(&pki, "acme-certbot", &pem);
    assert!(shown.contains("DNS:app.example.org"), "{shown}");
}

#[test]
fn an_order_waits_for_approval_then_is_issued() {
    let (pki, ports) = start();
    // The registration itself is approved first (who may enroll, which
    // names); each certificate then waits for an approver (which key).
    let (kid, hmac) = register(&pki, "web1.example.org", "Approved ACME", None);
    let o = pki.cli(BOSS, &["registrations", "approve", &kid]);
    assert!(o.status.success(), "{}", text(&o));

    let lego = lego_at(&pki, &ports, "approved", ports.web1);
    std::thread::scope(|s| {
        let client = s.spawn(|| lego.run(&kid, &hmac, &["web1.example.org"], &[]));
        // The order is processing: its request waits for an approver.
        let pending = pending_request(&pki, "Approved ACME");
        let o = pki.cli(BOSS, &["requests", "approve", &pending]);
        assert!(o.status.success(), "{}", text(&o));
        let o = client.join().unwrap();
        assert!(o.status.success(), "lego after approval: {}", text(&o));
    });
    verify(&pki, "acme-approved", &lego.certificate("web1.example.org"));

    // A rejected one ends the order invalid.
    std::thread::scope(|s| {
        let client = s.spawn(|| lego.run(&kid, &hmac, &["web1.example.org"], &[]));
        let pending = pending_request(&pki, "Approved ACME");
        let o = pki.cli(
            BOSS,
            &["requests", "reject", &pending, "--comment", "not now"],
        );
        assert!(o.status.success(), "{}", text(&o));
        let o = client.join().unwrap();
        assert!(!o.status.success(), "lego after rejection: {}", text(&o));
        assert!(
            text(&o).contains("invalid") || text(&o).contains("rejected"),
            "{}",
            text(&o)
        );
    });
}

#[test]
fn a_preauthorized_profile_needs_no_challenge() {
    let (pki, ports) = start();
    let (kid, hmac) = register(&pki, "app.example.org", "Trusted ACME", None);
    // Nothing answers on this port: a challenge would fail.
    let closed = free_port();
    let lego = lego_at(&pki, &ports, "trusted", closed);
    // lego still needs a solver configured; with the authorization valid
    // already, it is never started.
    let o = lego.run(&kid, &hmac, &["app.example.org"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    verify(&pki, "acme-trusted", &lego.certificate("app.example.org"));
    let _: &Path = pki.dir();
}

/// Each peer address gets `requests_per_minute_per_peer`; past it, RFC
/// 8555 §6.6's `rateLimited` with `Retry-After` (and a fresh nonce, as on
/// every answer). Python's urllib is the client: a plain HTTPS GET that
/// trusts the CA, nothing ACME-specific.
#[test]
fn a_peer_over_its_request_rate_is_rate_limited() {
    let port = free_port();
    let pki = Pki::start_with(&format!(
        "[acme]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\nrequests_per_minute_per_peer = 5\n"
    ));
    wait_until("the ACME listener", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let script = r#"
import json, ssl, sys, urllib.request, urllib.error
ctx = ssl.create_default_context(cafile=sys.argv[1])
for _ in range(7):
    try:
        r = urllib.request.urlopen(sys.argv[2], context=ctx)
        print(r.status)
    except urllib.error.HTTPError as e:
        body = json.loads(e.read())
        print(e.code, e.headers.get("Retry-After"), bool(e.headers.get("Replay-Nonce")), body["type"])
"#;
    let o = Command::new("python3")
        .args([
            "-c",
            script,
            root_file(&pki).to_str().unwrap(),
            &format!("https://127.0.0.1:{port}/acme/directory"),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let lines: Vec<String> = out(&o).lines().map(str::to_owned).collect();
    assert_eq!(lines[..5], ["200"; 5], "{lines:?}");
    for refused in &lines[5..] {
        let f: Vec<&str> = refused.split(' ').collect();
        assert_eq!(f[0], "429", "{lines:?}");
        let wait: u64 = f[1].parse().unwrap();
        assert!((1..=60).contains(&wait), "{lines:?}");
        assert_eq!(f[2], "True", "a nonce on the refusal: {lines:?}");
        assert_eq!(f[3], "urn:ietf:params:acme:error:rateLimited", "{lines:?}");
    }
}

/// The TSIG key the throwaway DNS server takes updates with (base64 of 32
/// bytes; a test secret, nothing else knows it).
const TSIG: (&str, &str) = (
    "idsync-test",
    "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ=",
);

/// A throwaway BIND (Debian's `bind9`) on 127.0.0.1: the primary of
/// `example.org`, taking RFC 2136 updates signed with [`TSIG`], as a
/// zone an ACME client places its dns-01 records in. Stopped on drop.
struct Named {
    dir: tempfile::TempDir,
    port: u16,
    child: std::process::Child,
}

impl Named {
    /// named on a free port; a port another server holds (for UDP or
    /// TCP: named starts anyway and shares it) is given up for another.
    fn start() -> Named {
        for _ in 0..5 {
            let named = Named::start_on(free_port());
            if !named.log().contains("address in use") {
                return named;
            }
        }
        panic!("no free port for named");
    }

    fn start_on(port: u16) -> Named {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let (key, secret) = TSIG;
        std::fs::write(
            dir.path().join("named.conf"),
            format!(
                r#"options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    managed-keys-directory "{d}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    allow-query {{ 127.0.0.1; }};
}};
key "{key}" {{ algorithm hmac-sha256; secret "{secret}"; }};
controls {{ }};
zone "example.org" {{
    type primary;
    file "{d}/example.org.zone";
    allow-update {{ key "{key}"; }};
}};
"#
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("example.org.zone"),
            "$TTL 60\n@ IN SOA ns.example.org. hostmaster.example.org. 1 60 60 600 60\n\
             @ IN NS ns.example.org.\nns IN A 127.0.0.1\n",
        )
        .unwrap();
        let mut cmd = Command::new("/usr/sbin/named");
        cmd.args(["-g", "-4", "-c"])
            .arg(dir.path().join("named.conf"));
        // As root, named would switch to the package's `bind` user, who
        // cannot write the temp dir; it stays who it is.
        if idsync_store::test_postgres::is_root() {
            cmd.args(["-u", "root"]);
        }
        let log = std::fs::File::create(dir.path().join("named.log")).unwrap();
        let child = cmd
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("named (Debian's bind9) runs");
        let named = Named { dir, port, child };
        // The SOA itself: `dig +short` prints its errors on stdout too,
        // and nothing for REFUSED while the zone loads.
        wait_until("named answering", Duration::from_secs(30), || {
            Command::new("dig")
                .args(["@127.0.0.1", "-p", &port.to_string()])
                .args([
                    "+norec",
                    "+short",
                    "+time=1",
                    "+tries=1",
                    "SOA",
                    "example.org",
                ])
                .output()
                .is_ok_and(|o| o.stdout.starts_with(b"ns.example.org. "))
        });
        named
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The daemon with `[acme] dns_resolver` pointing at `named`.
fn start_with_dns(named: &Named) -> (Pki, u16) {
    let acme = free_port();
    let pki = Pki::start_with(&format!(
        r#"{DEVICE_ACME}
[acme]
enabled = true
listen = "127.0.0.1:{acme}"
dns_resolver = "{}"
"#,
        named.address()
    ));
    wait_until("the ACME listener", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", acme)).is_ok()
    });
    (pki, acme)
}

/// lego places its record in a real zone with RFC 2136 (TSIG-signed
/// updates to BIND); idsync finds it asking that server, and issues.
#[test]
fn lego_proves_a_name_with_dns01() {
    let named = Named::start();
    let (pki, acme) = start_with_dns(&named);
    let (kid, hmac) = register(&pki, "web1.example.org", "Device ACME", None);
    let lego = Lego {
        pki: &pki,
        dir: pki.dir().join("lego-dns"),
        port: 0,
        acme,
    };
    let (key, secret) = TSIG;
    let mut cmd = lego.base(&kid, &hmac);
    cmd.env("RFC2136_NAMESERVER", named.address())
        .env("RFC2136_TSIG_ALGORITHM", "hmac-sha256.")
        .env("RFC2136_TSIG_KEY", key)
        .env("RFC2136_TSIG_SECRET", secret)
        .env("RFC2136_PROPAGATION_TIMEOUT", "30")
        .env("RFC2136_POLLING_INTERVAL", "1")
        .args([
            "--dns",
            "rfc2136",
            "--dns.resolvers",
            &named.address(),
            // Its propagation check asks the zone's NS on port 53; this
            // one listens elsewhere (idsync asks it where it is).
            "--dns.disable-cp",
            "--domains",
            "web1.example.org",
            "run",
        ]);
    let o = timed(cmd, Duration::from_secs(120));
    assert!(
        o.status.success(),
        "lego: {}\nnamed: {}",
        text(&o),
        named.log()
    );
    assert!(text(&o).contains("DNS-01"), "{}", text(&o));
    let shown = verify(&pki, "acme-dns", &lego.certificate("web1.example.org"));
    assert!(shown.contains("DNS:web1.example.org"), "{shown}");
    let log = pki.daemon.as_ref().unwrap().log();
    assert!(log.contains("dns-01"), "the daemon checked dns-01: {log}");
}

/// A TXT record that is not the key authorization's digest: certbot's
/// manual hook places a wrong one in the real zone, idsync finds it and
/// refuses (`incorrectResponse`), and nothing is issued.
#[test]
fn a_wrong_dns01_record_is_refused() {
    let named = Named::start();
    let (pki, acme) = start_with_dns(&named);
    let (kid, hmac) = register(&pki, "web1.example.org", "Device ACME", None);
    let (key, secret) = TSIG;
    let hook = pki.dir().join("wrong-record.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nprintf 'server 127.0.0.1 {}\\nzone example.org\\n\
             update add _acme-challenge.%s. 60 IN TXT \"not-%s\"\\nsend\\n' \
             \"$CERTBOT_DOMAIN\" \"$CERTBOT_VALIDATION\" | nsupdate -y hmac-sha256:{key}:{secret}\n",
            named.port
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let dir = pki.dir().join("certbot-dns");
    let how = [
        "--manual",
        "--preferred-challenges",
        "dns",
        "--manual-auth-hook",
        hook.to_str().unwrap(),
        "-d",
        "web1.example.org",
    ];
    let cmd = certbot(&pki, acme, &kid, &hmac, &dir, &how);
    let o = timed(cmd, Duration::from_secs(120));
    assert!(!o.status.success(), "certbot: {}", text(&o));
    let said = format!(
        "{}{}",
        text(&o),
        std::fs::read_to_string(dir.join("logs/letsencrypt.log")).unwrap_or_default()
    );
    assert!(said.contains("incorrectResponse"), "{said}");
    let certs = pki.cli(OPS, &["assets", "certificates", "web1.example.org"]);
    assert!(
        !out(&certs).contains("BEGIN CERTIFICATE"),
        "{}",
        out(&certs)
    );
}
