//! A throwaway OpenLDAP `slapd` for the LDAP connector's tests and
//! benchmark: `cn=config` loaded with `slapadd -n0` into a temporary
//! directory, an `mdb` database for `dc=example,dc=org` with the core,
//! cosine, nis and inetorgperson schemas, listening on 127.0.0.1 and a free
//! port, run as a child process (`-d 0` keeps it in the foreground) and
//! stopped by its PID when dropped.
//!
//! Debian's `slapd` and `ldap-utils` must be installed (`scripts/test` does
//! it); the package's own instance is left alone.
//!
//! [`Slapd::start_tls`] also gives it a certificate from a throwaway CA
//! (made with `openssl` in the temporary directory) for StartTLS on the
//! `ldap://` port and a second, `ldaps://` port.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BASE: &str = "dc=example,dc=org";
pub const ROOT_DN: &str = "cn=admin,dc=example,dc=org";
const ROOT_PW: &str = "secret";
/// The connector's account on a [`Slapd::start_with_service_account`].
pub const SERVICE_DN: &str = "cn=idsync,dc=example,dc=org";
const SERVICE_PW: &str = "service-secret";

/// One entry as `ldapsearch` printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub dn: String,
    /// Attribute names as the server spells them.
    pub attrs: BTreeMap<String, Vec<String>>,
}

impl Entry {
    /// The values of `name` (case-insensitive), empty when absent.
    pub fn get(&self, name: &str) -> Vec<String> {
        self.attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// The first value of `name`.
    pub fn one(&self, name: &str) -> Option<String> {
        self.get(name).into_iter().next()
    }
}

/// A running throwaway slapd.
pub struct Slapd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The `ldaps://` port, when started with [`Slapd::start_tls`].
    pub tls_port: Option<u16>,
    child: Option<Child>,
}

impl Slapd {
    /// Start one with the base entries (`ou=people`, `ou=groups`,
    /// `ou=devices`, `ou=inactive`). `durable` false turns fsync off
    /// (`olcDbNoSync`), about four times faster.
    pub fn start(durable: bool) -> Slapd {
        Self::start_with(durable, false)
    }

    /// Like [`Slapd::start`], with TLS: a certificate for `localhost` and
    /// `127.0.0.1` issued by a CA of its own ([`Slapd::ca_file`]), StartTLS
    /// on [`Slapd::url`] and LDAPS on [`Slapd::ldaps_url`].
    pub fn start_tls() -> Slapd {
        Self::start_with(false, true)
    }

    /// Like [`Slapd::start`], with a service account for the connector
    /// ([`Slapd::service_connector_toml`]) that may `write` every entry but
    /// lacks `manage`, as a careful administrator would set it up: the
    /// Relax Rules control is refused to it.
    pub fn start_with_service_account() -> Slapd {
        let s = Self::start_with(false, false);
        s.add(&format!(
            "dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n\
             cn: idsync\nuserPassword: {SERVICE_PW}\n"
        ));
        s
    }

    fn start_with(durable: bool, tls: bool) -> Slapd {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("slapd.d")).unwrap();
        std::fs::create_dir_all(d.join("db")).unwrap();
        let tls_config = if tls {
            make_certificates(d);
            format!(
                "olcTLSCACertificateFile: {}\nolcTLSCertificateFile: {}\nolcTLSCertificateKeyFile: {}\n",
                d.join("ca.pem").display(),
                d.join("server.pem").display(),
                d.join("server.key").display()
            )
        } else {
            String::new()
        };
        let config = format!(
            "dn: cn=config\nobjectClass: olcGlobal\ncn: config\nolcPidFile: {pid}\nolcSizeLimit: unlimited\n{tls_config}\n\
             dn: cn=module{{0}},cn=config\nobjectClass: olcModuleList\ncn: module{{0}}\nolcModulePath: /usr/lib/ldap\nolcModuleLoad: back_mdb\n\n\
             dn: cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: schema\n\n\
             include: file:///etc/ldap/schema/core.ldif\n\n\
             include: file:///etc/ldap/schema/cosine.ldif\n\n\
             include: file:///etc/ldap/schema/nis.ldif\n\n\
             include: file:///etc/ldap/schema/inetorgperson.ldif\n\n\
             dn: olcDatabase={{-1}}frontend,cn=config\nobjectClass: olcDatabaseConfig\nobjectClass: olcFrontendConfig\nolcDatabase: {{-1}}frontend\nolcSizeLimit: unlimited\n\n\
             dn: olcDatabase={{1}}mdb,cn=config\nobjectClass: olcDatabaseConfig\nobjectClass: olcMdbConfig\nolcDatabase: {{1}}mdb\n\
             olcSuffix: {BASE}\nolcRootDN: {ROOT_DN}\nolcRootPW: {ROOT_PW}\nolcDbDirectory: {db}\nolcDbMaxSize: 4294967296\n\
             olcDbIndex: objectClass eq\nolcDbIndex: uid,cn,mail eq\nolcDbIndex: member eq\nolcDbIndex: entryUUID eq\n\
             olcSizeLimit: unlimited\n{nosync}\
             olcAccess: {{0}}to attrs=userPassword by dn.exact=\"{SERVICE_DN}\" auth by anonymous auth by * none\n\
             olcAccess: {{1}}to * by dn.exact=\"{SERVICE_DN}\" write by * read\n",
            pid = d.join("slapd.pid").display(),
            db = d.join("db").display(),
            nosync = if durable { "" } else { "olcDbNoSync: TRUE\n" },
        );
        std::fs::write(d.join("config.ldif"), config).unwrap();
        let out = Command::new("slapadd")
            .args(["-n0", "-F"])
            .arg(d.join("slapd.d"))
            .arg("-l")
            .arg(d.join("config.ldif"))
            .output()
            .expect("run slapadd (install slapd)");
        succeeded("slapadd", &out);
        let mut s = Slapd {
            dir,
            port: crate::free_port(),
            tls_port: tls.then(crate::free_port),
            child: None,
        };
        s.run();
        s.add(&format!(
            "dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n\
             dn: ou=people,{BASE}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: ou=groups,{BASE}\nobjectClass: organizationalUnit\nou: groups\n\n\
             dn: ou=devices,{BASE}\nobjectClass: organizationalUnit\nou: devices\n\n\
             dn: ou=inactive,{BASE}\nobjectClass: organizationalUnit\nou: inactive\n"
        ));
        s
    }

    /// `ldap://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:TLS_PORT` (started with [`Slapd::start_tls`]).
    pub fn ldaps_url(&self) -> String {
        format!(
            "ldaps://127.0.0.1:{}",
            self.tls_port.expect("started with start_tls")
        )
    }

    /// The PEM of the CA that issued the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The PEM of another CA, which issued nothing this server presents.
    pub fn other_ca_file(&self) -> PathBuf {
        self.dir.path().join("other-ca.pem")
    }

    fn run(&mut self) {
        let d = self.dir.path();
        let mut urls = format!("ldap://127.0.0.1:{}/", self.port);
        if let Some(p) = self.tls_port {
            urls.push_str(&format!(" ldaps://127.0.0.1:{p}/"));
        }
        let child = Command::new("slapd")
            .args(["-d", "0", "-F"])
            .arg(d.join("slapd.d"))
            .args(["-h", &urls])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("slapd.log")).unwrap())
            .spawn()
            .expect("start slapd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ok = Command::new("ldapwhoami")
                .args(["-x", "-H", &self.url(), "-D", ROOT_DN, "-w", ROOT_PW])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "slapd did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// What slapd logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    /// Stop it (SIGTERM, then wait); the data stays for [`Slapd::restart`].
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// A file holding the root password (for `password_file`).
    pub fn password_file(&self) -> PathBuf {
        self.write_password("bind.pw", ROOT_PW)
    }

    fn write_password(&self, file: &str, password: &str) -> PathBuf {
        let p = self.dir.path().join(file);
        std::fs::write(&p, format!("{password}\n")).unwrap();
        p
    }

    /// A `[[connectors]]` entry binding as the service account of
    /// [`Slapd::start_with_service_account`].
    pub fn service_connector_toml(&self, name: &str) -> String {
        let password_file = self.write_password("service.pw", SERVICE_PW);
        connector_entry(name, &self.url(), SERVICE_DN, &password_file)
    }

    /// A `[[connectors]]` entry for this server, to extend with more keys.
    pub fn connector_toml(&self, name: &str) -> String {
        self.connector_toml_at(name, &self.url())
    }

    /// A `[[connectors]]` entry for this server reached at `url`.
    pub fn connector_toml_at(&self, name: &str, url: &str) -> String {
        connector_entry(name, url, ROOT_DN, &self.password_file())
    }

    fn tool(&self, tool: &str, args: &[&str], input: &str) -> std::process::Output {
        let mut c = Command::new(tool)
            .args(["-x", "-H", &self.url(), "-D", ROOT_DN, "-w", ROOT_PW])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("run {tool}: {e}"));
        c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    }

    /// `ldapadd` of `ldif`; panics on failure.
    pub fn add(&self, ldif: &str) {
        succeeded("ldapadd", &self.tool("ldapadd", &[], ldif));
    }

    /// `ldapadd -e relax` of `ldif`, which may then set `entryUUID`;
    /// panics on failure.
    pub fn add_relaxed(&self, ldif: &str) {
        succeeded("ldapadd", &self.tool("ldapadd", &["-e", "relax"], ldif));
    }

    /// `ldapmodify` of `ldif`; panics on failure.
    pub fn modify(&self, ldif: &str) {
        succeeded("ldapmodify", &self.tool("ldapmodify", &[], ldif));
    }

    /// `ldapadd -f FILE` timed: the seconds it took.
    pub fn ldapadd_file(&self, file: &Path) -> f64 {
        let started = Instant::now();
        let out = Command::new("ldapadd")
            .args(["-x", "-H", &self.url(), "-D", ROOT_DN, "-w", ROOT_PW, "-f"])
            .arg(file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        succeeded("ldapadd", &out);
        started.elapsed().as_secs_f64()
    }

    /// Entries under `base` matching `filter`, with user and operational
    /// attributes (`entryUUID`).
    pub fn search(&self, base: &str, filter: &str) -> Vec<Entry> {
        let out = self.tool(
            "ldapsearch",
            &[
                "-LLL",
                "-o",
                "ldif-wrap=no",
                "-b",
                base,
                filter,
                "*",
                "entryUUID",
            ],
            "",
        );
        // 32: no such object (the base is gone).
        if out.status.code() == Some(32) {
            return Vec::new();
        }
        succeeded("ldapsearch", &out);
        parse_ldif(&String::from_utf8_lossy(&out.stdout))
    }

    /// The entry at `dn`, if any.
    pub fn entry(&self, dn: &str) -> Option<Entry> {
        let out = self.tool(
            "ldapsearch",
            &[
                "-LLL",
                "-o",
                "ldif-wrap=no",
                "-s",
                "base",
                "-b",
                dn,
                "(objectClass=*)",
                "*",
                "entryUUID",
            ],
            "",
        );
        parse_ldif(&String::from_utf8_lossy(&out.stdout))
            .into_iter()
            .next()
    }

    /// How many entries match `filter` under `base`.
    pub fn count(&self, base: &str, filter: &str) -> usize {
        let out = self.tool("ldapsearch", &["-LLL", "-b", base, filter, "1.1"], "");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("dn:"))
            .count()
    }
}

/// An installation whose daemon pushes to the connectors of
/// `connectors_toml` (from [`Slapd::connector_toml`], with any keys added),
/// quick retries, and its admin listener on a free port.
pub fn daemon_env(connectors_toml: &str) -> crate::Env {
    daemon_env_with_delivery(connectors_toml, "")
}

/// [`daemon_env`] with more `[connectors.delivery]` keys (TOML lines).
pub fn daemon_env_with_delivery(connectors_toml: &str, delivery: &str) -> crate::Env {
    crate::Env::with_config(&format!(
        "[admin]\nlisten = \"127.0.0.1:{}\"\n[folders]\nstable_ms = 50\n{connectors_toml}\n\
         [connectors.delivery]\nbackoff_initial_ms = 20\nbackoff_max_ms = 300\n{delivery}",
        crate::free_port()
    ))
}

/// A `[[connectors]]` entry of type `ldap` binding as `bind_dn`.
fn connector_entry(name: &str, url: &str, bind_dn: &str, password_file: &Path) -> String {
    format!(
        "[[connectors]]\ntype = \"ldap\"\nname = \"{name}\"\nurl = \"{url}\"\nbind_dn = \"{bind_dn}\"\npassword_file = \"{}\"\nbase_dn = \"{BASE}\"\n",
        password_file.display()
    )
}

/// Once the daemon of `env` watches its folders, drop a one-user file:
/// alice, `uid=alice,ou=people,…`, `sn` Liddell.
pub fn drop_alice(env: &crate::Env) {
    crate::wait_until("the daemon is ready", Duration::from_secs(120), || {
        env.inbox().join("users/processed").exists()
    });
    env.drop_file(
        "users",
        "u.csv",
        "status,loginName,mail,lastName\nactive,alice,alice@example.org,Liddell\n",
    );
}

/// `idsync ARGS` that must succeed: (stdout, stderr).
pub fn run_ok(env: &crate::Env, args: &[&str]) -> (String, String) {
    let out = env.run(args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "idsync {args:?}: {stdout}{stderr}");
    (stdout, stderr)
}

/// Panic with `what` and its stderr unless the command succeeded.
fn succeeded(what: &str, out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `idsync status` as text.
pub fn status(env: &crate::Env) -> String {
    String::from_utf8_lossy(&env.run(&["status"]).stdout).into_owned()
}

/// The members of group `cn` (DNs lower-cased).
pub fn members(slapd: &Slapd, cn: &str) -> std::collections::HashSet<String> {
    slapd
        .entry(&format!("cn={cn},ou=groups,{BASE}"))
        .map(|e| e.get("member").iter().map(|m| m.to_lowercase()).collect())
        .unwrap_or_default()
}

/// Apply `f` to the store with the daemon stopped, as another source would.
pub fn with_reconciler(env: &crate::Env, f: impl FnOnce(&idsync_store::reconcile::Reconciler)) {
    let rec = idsync_store::reconcile::Reconciler::new(
        std::sync::Arc::new(env.store()),
        idsync_store::reconcile::Settings::default(),
    )
    .unwrap();
    f(&rec);
    rec.store().flush().unwrap();
}

/// The id of the user with `mail`.
pub fn user_id(store: &idsync_store::Store, mail: &str) -> uuid::Uuid {
    store
        .find::<idsync_schema::User>(idsync_schema::Kind::User, mail)
        .unwrap()
        .unwrap()
        .id
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// In `dir`: `ca.pem` (a CA), `server.pem`/`server.key` (its certificate
/// for `localhost` and 127.0.0.1, in the subjectAltName: rustls ignores the
/// CN and refuses a certificate without SAN) and `other-ca.pem`, a CA that
/// issued nothing here. P-256 keys: quick to make.
pub fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        succeeded(&format!("openssl {args:?}"), &out);
    };
    for ca in ["ca", "other-ca"] {
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN=idsync test {ca}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
    }
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
}

/// Parse `ldapsearch -LLL -o ldif-wrap=no` output (base64 values decoded).
pub fn parse_ldif(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut dn = None;
        let mut attrs: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in block.lines() {
            let (name, value) = if let Some((n, v)) = line.split_once(":: ") {
                (n, decode64(v))
            } else if let Some((n, v)) = line.split_once(": ") {
                (n, v.to_owned())
            } else {
                continue;
            };
            if name == "dn" {
                dn = Some(value);
            } else {
                attrs.entry(name.to_owned()).or_default().push(value);
            }
        }
        if let Some(dn) = dn {
            out.push(Entry { dn, attrs });
        }
    }
    out
}

fn decode64(s: &str) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes() {
        let Some(v) = T.iter().position(|t| *t == c) else {
            continue;
        };
        bits = (bits << 6) | v as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
