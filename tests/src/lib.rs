//! The harness of the end-to-end tests: build and find the real `idsync`
//! binary, give each test its own data dir, run commands and read results.
//!
//! Tests drive the binary exactly as a sysadmin would; they read the store
//! back through the library only after the binary has exited.

pub mod fuzz;
pub mod ldap;
pub mod webdriver;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use idsync_store::{EngineKind, EngineOptions, Store};

/// The `idsync` binary of this workspace, built once per test process in
/// the same profile as the tests.
pub fn idsync_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("IDSYNC_BIN") {
            return PathBuf::from(p);
        }
        // target/<profile>/deps/<test exe> → target/<profile>/idsync
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>");
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "-p", "idsync", "--bin", "idsync"]);
        // What `cargo test` sets for this test crate (its manifest dir, its
        // `CARGO_PKG_*`, …) is seen by build scripts that track it (ring's):
        // inherited, they would rerun and rebuild half the tree here, and
        // again at the next `cargo test`. The build gets cargo's own
        // settings only.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("CARGO_PKG_")
                || key.starts_with("CARGO_MANIFEST_")
                || key.starts_with("CARGO_BIN_")
                || matches!(
                    &*key,
                    "CARGO_CRATE_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                        | "CARGO_RUSTC_CURRENT_DIR"
                )
            {
                build.env_remove(&*key);
            }
        }
        if release {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "cargo build of the idsync binary failed");
        profile_dir.join("idsync")
    })
}

/// A throwaway installation: a data dir and an optional config file.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: Option<PathBuf>,
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    /// An empty installation with the default configuration.
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            config: None,
        }
    }

    /// An installation with this configuration file content.
    pub fn with_config(toml: &str) -> Self {
        let mut env = Self::new();
        let path = env.dir.path().join("idsync.toml");
        std::fs::write(&path, toml).expect("write config");
        env.config = Some(path);
        env
    }

    /// The data dir.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The admin token a serving daemon generated (`admin.token`), once it
    /// is written.
    pub fn admin_token(&self) -> String {
        let file = self.data_dir().join("admin.token");
        wait_until(
            "the admin token",
            std::time::Duration::from_secs(60),
            || std::fs::metadata(&file).is_ok_and(|m| m.len() > 0),
        );
        std::fs::read_to_string(file)
            .expect("read admin.token")
            .trim()
            .to_owned()
    }

    /// Write a fixture file into the installation's folder.
    pub fn file(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).expect("write fixture");
        path
    }

    /// `idsync` with the data dir (and config) set.
    pub fn command(&self) -> Command {
        let mut c = Command::new(idsync_bin());
        c.arg("--data-dir").arg(self.data_dir());
        if let Some(cfg) = &self.config {
            c.arg("--config").arg(cfg);
        }
        c.env_remove("IDSYNC_CONFIG");
        c
    }

    /// Run `idsync ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run idsync")
    }

    /// `idsync import KIND FILE --format json ARGS`: the exit code and the
    /// JSON report.
    pub fn import(&self, kind: &str, file: &Path, args: &[&str]) -> (i32, serde_json::Value) {
        let out = self
            .command()
            .args(["import", kind])
            .arg(file)
            .args(["--format", "json"])
            .args(args)
            .output()
            .expect("run idsync import");
        let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "no JSON report ({e}); stdout: {} stderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), report)
    }

    /// `idsync list KIND --format json`, parsed.
    pub fn list(&self, kind: &str) -> Vec<serde_json::Value> {
        let out = self.run(&["list", kind, "--format", "json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).expect("list is a JSON array")
    }

    /// `idsync show KIND KEY`, parsed (None when it fails).
    pub fn show(&self, kind: &str, key: &str) -> Option<serde_json::Value> {
        let out = self.run(&["show", kind, key]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).expect("show prints JSON"))
    }

    /// Every change-log event.
    pub fn changes(&self) -> Vec<serde_json::Value> {
        let out = self.run(&["changes", "--limit", "100000000"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("event JSON"))
            .collect()
    }

    /// Open the store directly (only while no idsync process runs).
    pub fn store(&self) -> Store {
        Store::open(
            EngineKind::Redb,
            &self.data_dir().join("store"),
            &EngineOptions::default(),
        )
        .expect("open store")
    }
}

/// Bytes of created rows spooled by the imports whose spools are in
/// `dir` (the data dir's `imports/`, or `.spools/` beside shared folders).
pub fn spooled_in(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::metadata(e.path().join("created.jsonl")).ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The summary of a report as (created, updated, unchanged, rejected).
pub fn summary(report: &serde_json::Value) -> (u64, u64, u64, u64) {
    let s = &report["summary"];
    let n = |k: &str| {
        s[k].as_u64()
            .unwrap_or_else(|| panic!("summary.{k} in {report}"))
    };
    (n("created"), n("updated"), n("unchanged"), n("rejected"))
}

/// A running `idsync serve`, stopped (SIGKILL) when dropped.
pub struct Daemon {
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl Env {
    /// Start `idsync serve` with extra environment variables; logs go to a
    /// file in the installation folder.
    pub fn serve(&self, vars: &[(&str, &str)]) -> Daemon {
        let log = self.dir.path().join(format!(
            "serve-{}.log",
            std::process::id() as u128 + now_nanos()
        ));
        let mut cmd = self.command();
        cmd.arg("serve")
            .env("IDSYNC_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start idsync serve");
        Daemon { child, log }
    }

    /// The drop-folder root (the default `DATA_DIR/inbox`).
    pub fn inbox(&self) -> PathBuf {
        self.data_dir().join("inbox")
    }

    /// Drop a file the way careful tools do: write elsewhere, then rename
    /// into the inbox.
    pub fn drop_file(&self, folder: &str, name: &str, content: impl AsRef<[u8]>) {
        let staging = self.dir.path().join(format!(".staging-{}", now_nanos()));
        std::fs::write(&staging, content).expect("write staging file");
        let dir = self.inbox().join(folder);
        std::fs::create_dir_all(&dir).expect("inbox folder");
        std::fs::rename(&staging, dir.join(name)).expect("rename into inbox");
    }

    /// Bytes of created rows the running import has spooled so far: how far
    /// an import has got, seen from outside the process.
    pub fn spooled(&self) -> u64 {
        spooled_in(&self.data_dir().join("imports"))
    }

    /// The `created` events of the change log.
    pub fn created_count(&self) -> usize {
        self.changes()
            .iter()
            .filter(|c| c["operation"] == "created")
            .count()
    }

    /// Files (not reports) in `folder/processed` or `folder/rejected`.
    pub fn finished(&self, folder: &str, outcome: &str) -> Vec<PathBuf> {
        let dir = self.inbox().join(folder).join(outcome);
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| !p.to_string_lossy().contains(".report."));
        files.sort();
        files
    }
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

impl Daemon {
    /// Send a signal by name (`TERM`, `HUP`, `KILL`).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Wait for the process to exit, at most `timeout`.
    pub fn wait(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `cond` every 10 ms until it holds; panic with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A TCP port free on 127.0.0.1 right now, never handed out twice by this
/// process.
///
/// Why not the kernel's `bind(":0")`: the port is released before the
/// server (slapd, idsync) binds it, and the kernel may give the same port
/// to the next caller meanwhile; two tests running in parallel then start
/// two servers on one port, and the loser's readiness check talks to the
/// winner (seen as `ldapadd: Already exists (68)` while a slapd started).
/// Ports from a per-process counter below the ephemeral range (which
/// starts at 32768) are never reused within a run, and a bind check skips
/// the ones some other program holds.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    const FIRST: u16 = 20_000;
    const SPAN: u16 = 12_000;
    // Each test process starts at its own offset, so test binaries run at
    // the same time rarely meet.
    let _ = NEXT.compare_exchange(
        0,
        (std::process::id() % u32::from(SPAN)) as u16 + 1,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = FIRST + n % SPAN;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN)
}

/// SHA-256 of `s`, hex: how `[[tokens]]` names a token.
pub fn sha256_hex(s: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// A P-256 CSR for `NAME.example.org` (CN and DNS name) made by openssl in
/// `dir` (the key beside it): its PEM.
pub fn openssl_csr(dir: &Path, name: &str) -> String {
    let out = dir.join(format!("{name}.csr"));
    let status = Command::new("openssl")
        .args(["req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt"])
        .arg("ec_paramgen_curve:P-256")
        .arg("-keyout")
        .arg(dir.join(format!("{name}.key")))
        .args(["-subj", &format!("/CN={name}.example.org")])
        .args(["-addext", &format!("subjectAltName=DNS:{name}.example.org")])
        .arg("-out")
        .arg(&out)
        .output()
        .expect("run openssl");
    assert!(status.status.success(), "openssl req failed");
    std::fs::read_to_string(out).expect("the CSR")
}

/// A self-signed P-256 certificate for `127.0.0.1` and `localhost`, made
/// by openssl in `dir`: the paths of the certificate and its key (PEM).
pub fn self_signed_loopback(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    (cert, key)
}
