//! A throwaway PostgreSQL cluster for the tests of the PostgreSQL engine
//! (and, with the `test-postgres` feature, the end-to-end tests): `initdb`
//! into a temporary directory, `postgres` in the foreground on 127.0.0.1,
//! a free port and a socket directory of its own, stopped and removed when
//! dropped.
//!
//! Debian's `postgresql` must be installed (`scripts/test` does it); the
//! package's own cluster is left alone. PostgreSQL refuses to run as root,
//! so under root the cluster belongs to the package's `postgres` user
//! (`setpriv` switches to it without a shell or a session).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One running cluster.
pub struct TestPostgres {
    dir: PathBuf,
    /// The server; `None` while stopped ([`TestPostgres::stop`]).
    child: Option<Child>,
    port: u16,
    /// `postgres` arguments beyond the data dir, socket dir and port.
    settings: Vec<String>,
}

/// The newest installed PostgreSQL's `bin` directory.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("Debian's postgresql package (scripts/test installs it)")
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("an initdb under /usr/lib/postgresql")
        .1
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Whether the tests run as root (`id -u` is 0): throwaway servers that
/// refuse root, or would switch users, are told whom to run as.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// `program` with `args`, as the `postgres` user when this is root.
fn as_owner(program: &Path, args: &[&str]) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--clear-groups",
            "--",
        ])
        .arg(program)
        .args(args);
        c
    } else {
        let mut c = Command::new(program);
        c.args(args);
        c
    }
}

impl TestPostgres {
    /// A new cluster, accepting connections, without fsync (tests only
    /// need it to answer).
    pub fn start() -> Self {
        Self::start_with(&["-c", "fsync=off"])
    }

    /// A new cluster with PostgreSQL's default durability (benchmarks:
    /// a commit waits for the disk, as in production).
    pub fn start_durable() -> Self {
        Self::start_with(&[])
    }

    /// A new cluster that takes TLS connections only (`hostssl` in
    /// `pg_hba.conf`, a plain one is rejected), with a certificate for
    /// 127.0.0.1 from a CA made by `openssl` ([`TestPostgres::ca_file`]).
    pub fn start_tls() -> Self {
        let mut cluster = Self::init(&["-c", "fsync=off", "-c", "ssl=on"]);
        let dir = cluster.dir.clone();
        let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
        let ext = dir.join("server.ext");
        std::fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
        )
        .expect("the extensions file");
        let openssl = |args: &[&str]| {
            let ok = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "openssl {args:?} failed");
        };
        let new_key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"],
                &new_key[..],
                &[
                    "-days",
                    "2",
                    "-subj",
                    "/CN=idsync test CA",
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.crt",
                ],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"],
                &new_key[..],
                &[
                    "-subj",
                    "/CN=127.0.0.1",
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                ],
            ]
            .concat(),
        );
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ]);
        for f in [&cert, &key] {
            let _ = Command::new("chown")
                .arg("postgres:postgres")
                .arg(f)
                .status();
        }
        let _ = Command::new("chmod").arg("600").arg(&key).status();
        cluster.settings.extend(
            [
                format!("ssl_cert_file={}", cert.display()),
                format!("ssl_key_file={}", key.display()),
            ]
            .into_iter()
            .flat_map(|v| ["-c".to_string(), v]),
        );
        let hba = cluster.dir.join("data/pg_hba.conf");
        std::fs::write(
            &hba,
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
        )
        .expect("pg_hba.conf");
        cluster.start_again();
        cluster
    }

    /// The CA certificate of a [`TestPostgres::start_tls`] cluster's
    /// server certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A new cluster started with `settings` (`postgres` arguments).
    fn start_with(settings: &[&str]) -> Self {
        let mut cluster = Self::init(settings);
        cluster.start_again();
        cluster
    }

    /// A new cluster's data, not started.
    fn init(settings: &[&str]) -> Self {
        let dir =
            std::env::temp_dir().join(format!("idsync-pg-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("the cluster's directory");
        let _ = Command::new("chown")
            .args(["postgres:postgres", &dir.to_string_lossy()])
            .status();
        let data = dir.join("data");
        let status = as_owner(
            &bin_dir().join("initdb"),
            &[
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-D",
                &data.to_string_lossy(),
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("initdb runs");
        assert!(status.success(), "initdb failed in {}", dir.display());
        Self {
            dir,
            child: None,
            port: free_port(),
            settings: settings.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Start the server of a stopped cluster (same data, same port), and
    /// wait until it accepts sessions.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the cluster runs already");
        let (data, socket_dir, port) = (
            self.dir.join("data").to_string_lossy().into_owned(),
            self.dir.to_string_lossy().into_owned(),
            self.port.to_string(),
        );
        let mut args = vec![
            "-D",
            &data,
            "-k",
            &socket_dir,
            "-p",
            &port,
            "-c",
            "listen_addresses=127.0.0.1",
        ];
        args.extend(self.settings.iter().map(String::as_str));
        let child = as_owner(&bin_dir().join("postgres"), &args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postgres starts");
        self.child = Some(child);
        // Listening is not ready: until recovery ends it refuses sessions
        // ("the database system is starting up"); pg_isready waits for it.
        let deadline = Instant::now() + Duration::from_secs(30);
        let ready = || {
            Command::new(bin_dir().join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port])
                .status()
                .is_ok_and(|s| s.success())
        };
        while !ready() {
            assert!(Instant::now() < deadline, "postgres did not get ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop the server (a fast shutdown: sessions are cut, as when the
    /// database goes away under load); [`TestPostgres::start_again`]
    /// brings it back.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGINT is PostgreSQL's fast shutdown.
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The URL of database `postgres` as its superuser.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    /// Engine options for database `postgres` (the rest: `base`'s).
    pub fn engine_options(&self, base: crate::EngineOptions) -> crate::EngineOptions {
        crate::EngineOptions {
            postgres: Some(crate::PostgresOptions {
                url: self.url(),
                ..Default::default()
            }),
            ..base
        }
    }

    /// The URL of `database` as the superuser.
    pub fn url_of(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// `psql` on `database` as the superuser, quiet, stopping at the
    /// first error; add `-c …` and run it.
    pub fn psql(&self, database: &str) -> Command {
        let mut c = Command::new(bin_dir().join("psql"));
        c.args([
            "-q",
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
        ])
        .args(["-p", &self.port.to_string(), "-d", database]);
        c
    }

    /// `pgbench` on `database` as the superuser (benchmarks' reference
    /// figures); add its options and run it.
    pub fn pgbench(&self, database: &str) -> Command {
        let mut c = Command::new(bin_dir().join("pgbench"));
        c.args(["-h", "127.0.0.1", "-U", "postgres"])
            .args(["-p", &self.port.to_string()])
            .arg(database);
        c
    }

    /// The postmaster's process id (its backends are its children), while
    /// the cluster runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
