//! The SCEP server end to end (issue 15) with real clients: the `scep`
//! package's `scepclient` (micromdm; CN only) and strongSwan's `pki
//! --scep` (SANs, polling), against the real daemon. An asset is
//! registered (`idsync enroll scep`), the client enrolls with the
//! challenge password; `openssl verify` checks the certificate against the
//! CA. A wrong or used-up challenge gets `badRequest`; with approval the
//! request is PENDING and polled to success.

mod pki;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use idsync_tests::{free_port, wait_until};
use pki::*;

fn profiles(port: u16) -> String {
    format!(
        r#"
[[profiles]]
name = "Device SCEP"
protocol = "scep"
key_types = ["rsa-2048"]
usages = ["clientAuth"]

[[profiles]]
name = "Approved SCEP"
protocol = "scep"
requires_approval = true

[scep]
enabled = true
listen = "127.0.0.1:{port}"

# scepclient (micromdm 2.1) encrypts to every certificate GetCACert
# returns, and takes each for RSA: an RSA CA (docs/certificates.md).
[ca]
key_type = "rsa-2048"
"#
    )
}

/// `idsync enroll scep`: the registration's id and challenge password.
fn register(pki: &Pki, profile: &str, dns: &str) -> (String, String) {
    let args = [
        "enroll",
        "scep",
        "--asset",
        "web1.example.org",
        "--profile",
        profile,
        "--dns",
        dns,
    ];
    let o = pki.cli(OPS, &args);
    assert!(o.status.success(), "{}", text(&o));
    let shown = out(&o);
    let id = shown
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_owned();
    let challenge = shown
        .lines()
        .skip_while(|l| !l.contains("challenge password"))
        .nth(1)
        .unwrap_or_else(|| panic!("a challenge in {shown}"))
        .trim()
        .to_owned();
    (id, challenge)
}

fn start() -> (Pki, String) {
    let port = free_port();
    let pki = Pki::start_with(&profiles(port));
    wait_until("the SCEP listener", Duration::from_secs(60), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (pki, format!("http://127.0.0.1:{port}/scep"))
}

/// `scepclient` in a fresh directory (it reuses files left there).
fn scepclient(pki: &Pki, url: &str, name: &str, challenge: &str) -> (Output, PathBuf) {
    let dir = pki.dir().join(format!("scepclient-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = dir.join("cert.pem");
    let mut cmd = Command::new("scepclient");
    cmd.current_dir(&dir).args([
        "-server-url",
        url,
        "-challenge",
        challenge,
        "-cn",
        "web1.example.org",
        "-organization",
        "Nexus",
        "-country",
        "SE",
        "-private-key",
        dir.join("key.pem").to_str().unwrap(),
        "-certificate",
        cert.to_str().unwrap(),
    ]);
    (timed(cmd, Duration::from_secs(60)), cert)
}

/// The certificate and the CA's root, for `verify`.
fn with_root(pki: &Pki, leaf: &str) -> String {
    let root = pki.get(OPS, "/ca");
    format!("{leaf}{}", String::from_utf8_lossy(&root.body))
}

#[test]
fn scepclient_enrolls_once_with_its_challenge() {
    let (pki, url) = start();
    let (id, challenge) = register(&pki, "Device SCEP", "web1.example.org");

    // A wrong challenge: badRequest, nothing issued, the registration unused.
    let (o, cert) = scepclient(&pki, &url, "wrong", "not-the-challenge");
    assert!(!o.status.success() && !cert.exists(), "{}", text(&o));
    assert!(
        text(&o).contains("badRequest") || text(&o).contains("failure"),
        "{}",
        text(&o)
    );

    let (o, cert) = scepclient(&pki, &url, "right", &challenge);
    assert!(o.status.success(), "scepclient: {}", text(&o));
    let pem = std::fs::read_to_string(&cert).expect("scepclient wrote the certificate");
    let shown = verify(&pki, "scep-client", &with_root(&pki, &pem));
    assert!(shown.contains("CN = web1.example.org"), "{shown}");
    assert!(shown.contains("DNS:web1.example.org"), "{shown}");
    let r = pki.get(OPS, &format!("/registrations/{id}")).json();
    assert_eq!(r["status"], "used", "{r}");

    // Used up: a second enrollment with it is refused.
    let (o, cert) = scepclient(&pki, &url, "again", &challenge);
    assert!(!o.status.success() && !cert.exists(), "{}", text(&o));

    // The certificate is the asset's, with a SCEP request.
    let requests = pki.get(OPS, "/requests?profile=Device%20SCEP").json();
    let listed = requests.as_array().cloned().unwrap_or_default();
    assert!(
        listed
            .iter()
            .any(|q| q["protocol"] == "scep" && q["status"] == "issued"),
        "{requests}"
    );
}

/// strongSwan's `pki`: the CA and RA certificates, a key, then `--scep`.
struct Strongswan {
    dir: PathBuf,
    url: String,
}

impl Strongswan {
    fn new(pki: &Pki, url: &str, name: &str) -> Strongswan {
        let dir = pki.dir().join(format!("strongswan-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let s = Strongswan {
            dir,
            url: url.to_owned(),
        };
        let o = s.run(&[
            "--scepca",
            "--url",
            url,
            "--caout",
            "ca.pem",
            "--raout",
            "ra.pem",
            "--outform",
            "pem",
        ]);
        assert!(o.status.success(), "pki --scepca: {}", text(&o));
        let o = s.run(&[
            "--gen",
            "--type",
            "rsa",
            "--size",
            "2048",
            "--outform",
            "pem",
        ]);
        assert!(o.status.success(), "pki --gen: {}", text(&o));
        std::fs::write(s.dir.join("key.pem"), &o.stdout).unwrap();
        s
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("pki");
        cmd.current_dir(&self.dir).args(args);
        timed(cmd, Duration::from_secs(90))
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn enroll(&self, challenge: &str, sans: &[&str]) -> Output {
        let (key, ra, ca) = (
            self.path("key.pem"),
            self.path("ra.pem"),
            self.path("ca.pem"),
        );
        let mut args = vec![
            "--scep",
            "--url",
            &self.url,
            "--in",
            &key,
            "--dn",
            "C=SE, O=Nexus, CN=web1.example.org",
            "--password",
            challenge,
            "--cacert-enc",
            &ra,
            "--cacert-sig",
            &ra,
            "--cacert",
            &ca,
            "--interval",
            "1",
            "--maxpolltime",
            "60",
            "--outform",
            "pem",
        ];
        for s in sans {
            args.extend(["--san", s]);
        }
        self.run(&args)
    }
}

#[test]
fn strongswan_enrolls_with_names_and_polls_through_an_approval() {
    let (pki, url) = start();
    let (_, challenge) = register(&pki, "Device SCEP", "web1.example.org,www.example.org");
    let sw = Strongswan::new(&pki, &url, "sans");
    let o = sw.enroll(&challenge, &["web1.example.org", "www.example.org"]);
    assert!(o.status.success(), "pki --scep: {}", text(&o));
    let shown = verify(&pki, "scep-strongswan", &with_root(&pki, &out(&o)));
    assert!(shown.contains("DNS:www.example.org"), "{shown}");
    // A name outside the registration is refused (a fresh registration).
    // (A new key: strongSwan derives the transactionID from the key, and
    // a request with a known transaction and key is a resend.)
    let (_, other) = register(&pki, "Device SCEP", "web1.example.org");
    let outside = Strongswan::new(&pki, &url, "outside");
    let o = outside.enroll(&other, &["web1.example.org", "www.example.org"]);
    assert!(!o.status.success(), "{}", text(&o));

    // Approval: the registration first, then the certificate request,
    // which pki polls until an approver says yes.
    let (id, challenge) = register(&pki, "Approved SCEP", "web1.example.org");
    let o = pki.cli(BOSS, &["registrations", "approve", &id]);
    assert!(o.status.success(), "{}", text(&o));
    let sw = Strongswan::new(&pki, &url, "approved");
    std::thread::scope(|s| {
        let client = s.spawn(|| sw.enroll(&challenge, &["web1.example.org"]));
        let pending = pending_request(&pki, "Approved SCEP");
        let o = pki.cli(BOSS, &["requests", "approve", &pending]);
        assert!(o.status.success(), "{}", text(&o));
        let o = client.join().unwrap();
        assert!(
            o.status.success(),
            "pki --scep after approval: {}",
            text(&o)
        );
        verify(&pki, "scep-approved", &with_root(&pki, &out(&o)));
    });
}

/// Each peer address gets `requests_per_minute_per_peer` (a PKIOperation
/// costs RSA private-key operations); past it, 429 with `Retry-After`.
#[test]
fn a_peer_over_its_request_rate_is_refused() {
    let port = free_port();
    let _pki = Pki::start_with(&format!(
        "[scep]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\nrequests_per_minute_per_peer = 5\n"
    ));
    wait_until("the SCEP listener", Duration::from_secs(60), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let url = format!("http://127.0.0.1:{port}/scep?operation=GetCACaps");
    let answers: Vec<(u16, Option<String>)> = (0..7)
        .map(|_| match ureq::get(&url).call() {
            Ok(r) => (r.status(), None),
            Err(ureq::Error::Status(code, r)) => (code, r.header("Retry-After").map(str::to_owned)),
            Err(e) => panic!("{e}"),
        })
        .collect();
    assert!(answers[..5].iter().all(|(s, _)| *s == 200), "{answers:?}");
    for (status, wait) in &answers[5..] {
        assert_eq!(*status, 429, "{answers:?}");
        let wait: u64 = wait.as_deref().unwrap().parse().unwrap();
        assert!((1..=60).contains(&wait), "{answers:?}");
    }
}
