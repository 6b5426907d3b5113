//! The installation the certificate tests share: profiles, assets and
//! tokens of every role, a running daemon, its admin API over HTTP (ureq)
//! and the CLI, and `openssl` to check what it hands out.
// Each test file uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use idsync_tests::{free_port, wait_until, Daemon, Env};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const OPS: &str = "idsync_test-operator-one";
pub const OPS2: &str = "idsync_test-operator-two";
pub const BOSS: &str = "idsync_test-approver";
pub const LEAD: &str = "idsync_test-operator-and-approver";
pub const ADMIN: &str = "idsync_test-admin";
pub const PASSWORD: &str = "Correct-Horse-Battery-7431";

pub fn sha(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// An installation with profiles, assets and tokens of every role, and its
/// running daemon.
pub struct Pki {
    pub env: Env,
    pub daemon: Option<Daemon>,
    pub base: String,
    pub agent: ureq::Agent,
}

/// An answer: status, content type, body bytes.
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or("").to_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub const PROFILES: &str = r#"
[[profiles]]
name = "Server P10"
protocol = "p10"
key_types = ["ecdsa-p256", "ecdsa-p384", "rsa-2048"]
validity_days = 90
subject = "CN={name},O={organization},C={country}"
[profiles.domain_policy]
names = ["*.example.org"]
ip_ranges = ["10.0.0.0/8"]

[[profiles]]
name = "Server P12"
protocol = "p12"
key_types = ["ecdsa-p256", "rsa-2048"]
usages = ["serverAuth", "clientAuth"]

[[profiles]]
name = "Strict P10"
protocol = "p10"
key_types = ["ecdsa-p256"]

[[profiles]]
name = "Approved P12"
protocol = "p12"
requires_approval = true

[[profiles]]
name = "Approved P10"
protocol = "p10"
requires_approval = true

[[profiles]]
name = "Retired"
protocol = "p10"
state = "inactive"
"#;

/// Assets in the data-pool order (docs/formats.md): name, description,
/// type, owner, profile, organization, country, dnsNames, IPs, sid.
pub const ASSETS: &str = "\
id,name,description,type,owner,certificateProfile,organization,country,dnsNames,ipAddresses,sid
,web1.example.org,Web server,Server,,Server P10,Nexus,SE,\"web1.example.org,www.example.org\",10.1.2.3,
,app.example.org,App server,Server,,Server P12,Nexus,SE,app.example.org,,
,strict.example.org,,Server,,Strict P10,,,strict.example.org,,
,vault.example.org,,Server,,Approved P12,,,vault.example.org,,
,gate.example.org,,Server,,Approved P10,,,gate.example.org,,
,old.example.org,,Server,,Retired,,,old.example.org,,
,later.example.org,,Server,,Later,,,later.example.org,,
";

impl Pki {
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// [`Pki::start`] with `extra` added to the configuration file.
    pub fn start_with(extra: &str) -> Self {
        let admin = free_port();
        let token = |name: &str, t: &str, roles: &str| {
            format!(
                "[[tokens]]\nname = \"{name}\"\nsha256 = \"{}\"\nroles = [{roles}]\n",
                sha(t)
            )
        };
        let env = Env::with_config(&format!(
            "[admin]\nlisten = \"127.0.0.1:{admin}\"\n{PROFILES}\n{}{}{}{}{}{extra}",
            token("ops", OPS, "\"operator\""),
            token("ops2", OPS2, "\"operator\""),
            token("boss", BOSS, "\"approver\""),
            token("lead", LEAD, "\"operator\", \"approver\""),
            token("root", ADMIN, "\"admin\""),
        ));
        let assets = env.file("assets.csv", ASSETS);
        let (code, report) = env.import("assets", &assets, &[]);
        assert_eq!(code, 0, "{report}");
        let base = format!("http://127.0.0.1:{admin}/api/v1");
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .build();
        let mut pki = Pki {
            env,
            daemon: None,
            base,
            agent,
        };
        pki.run_daemon();
        pki
    }

    /// Start the daemon again after [`Pki::stop`].
    pub fn restart(mut self) -> Self {
        self.run_daemon();
        self
    }

    /// Start the daemon and wait for its admin listener.
    fn run_daemon(&mut self) {
        let admin: u16 = self
            .base
            .trim_start_matches("http://127.0.0.1:")
            .trim_end_matches("/api/v1")
            .parse()
            .expect("the admin port");
        self.daemon = Some(self.env.serve(&[]));
        wait_until("the admin listener", Duration::from_secs(60), || {
            let d = self.daemon.as_mut().expect("running");
            if let Some(status) = d.child.try_wait().expect("try_wait") {
                panic!("idsync serve exited ({status}): {}", d.log());
            }
            std::net::TcpStream::connect(("127.0.0.1", admin)).is_ok()
        });
    }

    pub fn send(
        &self,
        method: &str,
        token: Option<&str>,
        path: &str,
        ctype: &str,
        body: &[u8],
    ) -> Reply {
        let mut req = self.agent.request(method, &format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        let resp = if body.is_empty() && method == "GET" {
            req.call()
        } else {
            req.set("Content-Type", ctype).send_bytes(body)
        };
        let resp = match resp {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = resp.status();
        let content_type = resp.content_type().to_owned();
        let headers = resp
            .headers_names()
            .into_iter()
            .filter_map(|n| resp.header(&n).map(|v| (n.clone(), v.to_owned())))
            .collect();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut resp.into_reader(), &mut body).expect("read body");
        Reply {
            status,
            content_type,
            headers,
            body,
        }
    }

    pub fn get(&self, token: &str, path: &str) -> Reply {
        self.send("GET", Some(token), path, "", b"")
    }

    pub fn post(&self, token: &str, path: &str, body: Value) -> Reply {
        self.send(
            "POST",
            Some(token),
            path,
            "application/json",
            body.to_string().as_bytes(),
        )
    }

    pub fn put(&self, token: &str, path: &str, body: Value) -> Reply {
        self.send(
            "PUT",
            Some(token),
            path,
            "application/json",
            body.to_string().as_bytes(),
        )
    }

    pub fn p10(&self, token: &str, asset: &str, csr_pem: &str) -> Reply {
        self.post(
            token,
            "/enroll/p10",
            json!({"asset": asset, "csr": csr_pem}),
        )
    }

    pub fn p12(&self, token: &str, body: Value) -> Reply {
        self.post(token, "/enroll/p12", body)
    }

    pub fn dir(&self) -> &Path {
        self.env.dir.path()
    }

    /// Stop the daemon (SIGTERM) and return its log.
    pub fn stop(&mut self) -> String {
        let mut d = self.daemon.take().expect("running");
        d.signal("TERM");
        assert!(d.wait(Duration::from_secs(30)).is_some(), "daemon stopped");
        d.log()
    }

    /// `idsync ARGS` against the running daemon with `token`.
    pub fn cli(&self, token: &str, args: &[&str]) -> std::process::Output {
        self.env
            .command()
            .env("IDSYNC_TOKEN", token)
            .args(args)
            .output()
            .expect("run idsync")
    }
}

pub fn openssl(args: &[&str]) -> std::process::Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed")
}

pub fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A CSR made by openssl: `key` is `ec:P-256`, `rsa:2048`, …
pub fn csr(dir: &Path, name: &str, key: &str, subject: &str, san: Option<&str>) -> PathBuf {
    let out = dir.join(format!("{name}.csr"));
    let keyfile = dir.join(format!("{name}.key"));
    let mut args: Vec<String> = vec!["req".into(), "-new".into(), "-nodes".into()];
    match key.split_once(':') {
        Some(("ec", curve)) => {
            args.extend(["-newkey".into(), "ec".into(), "-pkeyopt".into()]);
            args.push(format!("ec_paramgen_curve:{curve}"));
        }
        Some(("rsa", bits)) => args.extend(["-newkey".into(), format!("rsa:{bits}")]),
        _ => args.extend(["-newkey".into(), key.into()]),
    }
    args.extend(["-keyout".into(), keyfile.display().to_string()]);
    args.extend(["-subj".into(), subject.into()]);
    if let Some(san) = san {
        args.extend(["-addext".into(), format!("subjectAltName={san}")]);
    }
    args.extend(["-out".into(), out.display().to_string()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = openssl(&refs);
    assert!(o.status.success(), "openssl req: {}", text(&o));
    out
}

/// The certificate of an answer with its chain, PEM.
pub fn leaf_and_chain(cert: &Value) -> String {
    format!(
        "{}{}",
        cert["pem"].as_str().unwrap(),
        cert["chain"].as_str().unwrap()
    )
}

/// `openssl verify` of `pem` (leaf, then its chain) against the CA's root.
pub fn verify(pki: &Pki, name: &str, pem: &str) -> String {
    let root = pki.get(OPS, "/ca");
    assert_eq!(root.status, 200);
    assert_eq!(root.content_type, "application/pem-certificate-chain");
    let root_file = pki.dir().join("root.pem");
    std::fs::write(&root_file, &root.body).unwrap();
    let blocks: Vec<&str> = pem.split_inclusive("-----END CERTIFICATE-----\n").collect();
    let leaf = pki.dir().join(format!("{name}.leaf.pem"));
    std::fs::write(&leaf, blocks[0]).unwrap();
    let untrusted = pki.dir().join(format!("{name}.untrusted.pem"));
    std::fs::write(&untrusted, blocks[1..].concat()).unwrap();
    let o = openssl(&[
        "verify",
        "-CAfile",
        root_file.to_str().unwrap(),
        "-untrusted",
        untrusted.to_str().unwrap(),
        leaf.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "openssl verify: {}", text(&o));
    let shown = openssl(&["x509", "-in", leaf.to_str().unwrap(), "-noout", "-text"]);
    text(&shown)
}

/// Every file under `dir`, read whole.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p, bytes));
            }
        }
    }
    out
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A command's standard output.
pub fn out(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The value after `label` on a line of the CLI's output.
pub fn field(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} in:\n{text}"))
        .trim()
        .to_owned()
}

/// Run a client, killed after `limit` (a hung peer fails the test, it
/// does not hang it).
pub fn timed(mut cmd: Command, limit: Duration) -> std::process::Output {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the client is installed");
    let pid = child.id();
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    });
    child.wait_with_output().expect("wait for the client")
}

/// Wait until a request of `profile` waits for approval (a client is
/// polling it meanwhile); its id.
pub fn pending_request(pki: &Pki, profile: &str) -> String {
    let path = format!(
        "/requests?status=pending_approval&profile={}",
        profile.replace(' ', "%20")
    );
    let mut pending = String::new();
    wait_until(
        "a request to wait for approval",
        Duration::from_secs(60),
        || {
            pending = pki.get(BOSS, &path).json()[0]["id"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            !pending.is_empty()
        },
    );
    pending
}
