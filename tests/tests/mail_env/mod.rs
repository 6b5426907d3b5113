//! The real SMTP peer of the mail tests: aiosmtpd (PyPI, in a venv that
//! `scripts/test` makes) started on 127.0.0.1 by `sink.py`, which writes
//! every message it accepts, decoded, to a folder this module reads.
//!
//! `scripts/test` passes the venv's interpreter in `AIOSMTPD_PYTHON`;
//! without it the default place `target/aiosmtpd-venv/bin/python` is tried.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("AIOSMTPD_PYTHON") {
        return PathBuf::from(p);
    }
    let default =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/aiosmtpd-venv/bin/python");
    assert!(
        default.exists(),
        "aiosmtpd is not installed: run scripts/test (it makes the venv), \
         or set AIOSMTPD_PYTHON to a python that can import aiosmtpd"
    );
    default
}

/// A running sink; stopped (SIGTERM, then waited) when dropped.
pub struct Sink {
    child: Child,
}

impl Sink {
    /// Start a sink on `port` writing to `folder` (made if missing); returns
    /// once it listens.
    pub fn start(port: u16, folder: &Path) -> Sink {
        Self::start_with(port, folder, &[])
    }

    /// A sink that offers STARTTLS with `cert` and `key` (PEM) and refuses
    /// MAIL before it; each message records `tls`.
    #[allow(dead_code)] // used by some of the test crates that include this module
    pub fn start_starttls(port: u16, folder: &Path, cert: &Path, key: &Path) -> Sink {
        Self::start_with(port, folder, &[cert, key])
    }

    fn start_with(port: u16, folder: &Path, tls: &[&Path]) -> Sink {
        std::fs::create_dir_all(folder).expect("sink folder");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/mail_env/sink.py");
        let mut child = Command::new(python())
            .arg(script)
            .arg(port.to_string())
            .arg(folder)
            .args(tls)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the SMTP sink");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("the sink's first line");
        assert_eq!(line.trim(), "ready", "the SMTP sink did not start");
        Sink { child }
    }

    /// Stop it: the port refuses connections afterwards.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.terminate();
        }
    }
}

/// Every message received into `folder`, in arrival order: `rcpt`,
/// `subject`, `message_id`, `content_type`, `text`, `html`, `raw`.
pub fn received(folder: &Path) -> Vec<Value> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(folder)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .iter()
        .map(|p| {
            serde_json::from_str(&std::fs::read_to_string(p).expect("read mail")).expect("JSON")
        })
        .collect()
}
