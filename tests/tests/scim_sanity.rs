//! The external SCIM conformance checker `scim-sanity` (PyPI) against the
//! running binary, in strict mode. Any failed check fails the test.
//!
//! `scripts/test` installs the checker into a virtual environment and
//! passes its path in `SCIM_SANITY`; without it the default place
//! `target/scim-sanity-venv/bin/scim-sanity` is tried.

mod scim_env;

use std::path::PathBuf;
use std::process::Command;

use scim_env::{Scim, WRITER};

fn checker() -> PathBuf {
    if let Some(p) = std::env::var_os("SCIM_SANITY") {
        return PathBuf::from(p);
    }
    let default = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/scim-sanity-venv/bin/scim-sanity");
    assert!(
        default.exists(),
        "scim-sanity is not installed: run scripts/test (it makes the venv), \
         or set SCIM_SANITY to the checker's path"
    );
    default
}

#[test]
fn scim_sanity_passes_every_check() {
    let checker = checker();
    let s = Scim::start("", "");
    let out = Command::new(&checker)
        .args([
            "probe",
            &s.base,
            "--token",
            WRITER,
            "--i-accept-side-effects",
        ])
        .env("NO_COLOR", "1")
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", checker.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    // The summary reads `N passed, N skipped, N total`, with `N failed`
    // when something failed.
    let summary = stdout
        .lines()
        .find(|l| l.contains(" passed") && l.contains(" total"))
        .unwrap_or_else(|| panic!("no summary line; stderr:\n{stderr}"));
    let failed = stdout.lines().any(|l| l.trim_start().starts_with("[FAIL]"))
        || summary
            .split(',')
            .any(|p| p.trim().ends_with(" failed") && p.trim() != "0 failed");
    assert!(
        out.status.success() && !failed,
        "scim-sanity reported failures: {summary}\n{stdout}\n{stderr}\ndaemon log:\n{}",
        s.daemon.log()
    );
}
