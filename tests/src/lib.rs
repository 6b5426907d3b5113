//! The harness of the end-to-end tests: build and find the real `idsync`
//! binary, give each test its own data dir, run commands and read results.
//!
//! Tests drive the binary exactly as a sysadmin would; they read the store
//! back through the library only after the binary has exited.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use idsync::store::{EngineKind, EngineOptions, Store};

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

/// The summary of a report as (created, updated, unchanged, rejected).
pub fn summary(report: &serde_json::Value) -> (u64, u64, u64, u64) {
    let s = &report["summary"];
    let n = |k: &str| {
        s[k].as_u64()
            .unwrap_or_else(|| panic!("summary.{k} in {report}"))
    };
    (n("created"), n("updated"), n("unchanged"), n("rejected"))
}
