//! The admin API against its own description: `schemathesis` (PyPI) reads
//! docs/openapi.yaml, generates requests for every route (valid and
//! invalid bodies, odd paths and queries) and checks that the daemon never
//! answers with a server error, and only with the status codes and content
//! types the document names. The daemon must not panic on any of them.
//!
//! `scripts/test` installs schemathesis into a virtual environment and
//! passes its path in `SCHEMATHESIS`; without it the default place
//! `target/schemathesis-venv/bin/schemathesis` is tried.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use idsync_tests::{free_port, wait_until, Env};
use sha2::{Digest, Sha256};

const ADMIN: &str = "idsync_test-openapi-admin";

fn schemathesis() -> PathBuf {
    if let Some(p) = std::env::var_os("SCHEMATHESIS") {
        return PathBuf::from(p);
    }
    let default = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/schemathesis-venv/bin/schemathesis");
    assert!(
        default.exists(),
        "schemathesis is not installed: run scripts/test (it makes the venv), \
         or set SCHEMATHESIS to its path"
    );
    default
}

#[test]
fn the_admin_api_keeps_to_its_openapi_document() {
    let tool = schemathesis();
    let port = free_port();
    let env = Env::with_config(&format!(
        "[admin]\nlisten = \"127.0.0.1:{port}\"\n\
         [[tokens]]\nname = \"root\"\nsha256 = \"{}\"\nroles = [\"admin\"]\n\
         [[profiles]]\nname = \"Server P10\"\nprotocol = \"p10\"\n\
         [[profiles]]\nname = \"Server P12\"\nprotocol = \"p12\"\nrequires_approval = true\n",
        hex::encode(Sha256::digest(ADMIN.as_bytes()))
    ));
    let assets = env.file(
        "assets.csv",
        "id,name,description,type,owner,certificateProfile,organization,country,dnsNames,ipAddresses,sid\n\
         ,web1.example.org,,,,Server P10,,,web1.example.org,,\n",
    );
    assert_eq!(env.import("assets", &assets, &[]).0, 0);
    let mut daemon = env.serve(&[]);
    wait_until("the admin listener", Duration::from_secs(60), || {
        if let Some(status) = daemon.child.try_wait().expect("try_wait") {
            panic!("idsync serve exited ({status}): {}", daemon.log());
        }
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let spec = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.yaml");
    let out = Command::new(&tool)
        .arg("run")
        .arg(&spec)
        .args(["--url", &format!("http://127.0.0.1:{port}")])
        .args(["-H", &format!("Authorization: Bearer {ADMIN}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance",
            "--max-examples",
            "40",
            "--seed",
            "20261201",
        ])
        .env("NO_COLOR", "1")
        // schemathesis keeps a cache (`.schemathesis/`) in its working
        // directory: under target/, never in the source tree.
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .output()
        .expect("run schemathesis");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let log = daemon.log();
    assert!(!log.contains("panicked"), "the daemon panicked:\n{log}");
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}"
    );
    assert!(report.contains("passed"), "{report}");
}
