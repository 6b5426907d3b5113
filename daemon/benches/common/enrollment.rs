//! The idsync of the enrollment benches (`acme`, `scep`): a config with
//! the admin listener and the bench token, one asset imported before the
//! start, the daemon started until its admin API and the protocol's
//! listener answer; and the admin API over a plain socket.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use super::process::Server;
use super::{free_port, TOKEN};

/// A started idsync: the server, its admin port, the CA's root (PEM).
pub struct Started {
    pub server: Server,
    pub admin: u16,
    pub root_pem: Vec<u8>,
}

/// Start `idsync serve` in `dir` with `extra` after the admin listener
/// and the `ops` token (operator, approver), once the asset `name` of
/// `profile` (DNS name `name`, described `description`) is imported;
/// ready when the CA is served and `listener` accepts. The log level is
/// `IDSYNC_LOG__LEVEL` from the environment, else `warn`.
pub fn start(
    dir: &Path,
    extra: &str,
    (name, profile, description): (&str, &str, &str),
    listener: u16,
) -> Started {
    let idsync = Path::new(env!("CARGO_BIN_EXE_idsync"));
    let admin_port = free_port();
    let sha = hex::encode(Sha256::digest(TOKEN.as_bytes()));
    let config = dir.join("idsync.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{data}\"\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n\
             [[tokens]]\nname = \"ops\"\nsha256 = \"{sha}\"\nroles = [\"operator\", \"approver\"]\n{extra}",
            data = dir.join("data").display()
        ),
    )
    .unwrap();
    // The asset, in the data-pool columns (docs/formats.md); the daemon
    // is not running yet.
    let csv = dir.join("assets.csv");
    std::fs::write(
        &csv,
        format!(
            "id,name,description,type,owner,certificateProfile,organization,country,dnsNames,ipAddresses,sid\n\
             ,{name},{description},Server,,{profile},Nexus,SE,{name},,\n"
        ),
    )
    .unwrap();
    let out = Command::new(idsync)
        .arg("--config")
        .arg(&config)
        .args(["import", "assets"])
        .arg(&csv)
        .output()
        .expect("run idsync import");
    assert!(
        out.status.success(),
        "idsync import assets failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let child = Command::new(idsync)
        .arg("--config")
        .arg(&config)
        .arg("serve")
        // `info` logs each refusal and its reason.
        .env(
            "IDSYNC_LOG__LEVEL",
            std::env::var("IDSYNC_LOG__LEVEL").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start idsync serve");
    let mut server = Server::new(child, true);
    let deadline = Instant::now() + Duration::from_secs(120);
    let root_pem = loop {
        if let Some(status) = server.exited() {
            panic!("idsync serve exited: {status}");
        }
        if let Some((200, pem)) = admin(admin_port, "GET", "/api/v1/ca", "") {
            if TcpStream::connect(("127.0.0.1", listener)).is_ok() {
                break pem.into_bytes();
            }
        }
        assert!(Instant::now() < deadline, "idsync did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    Started {
        server,
        admin: admin_port,
        root_pem,
    }
}

/// One admin API request with the bench token: status and body.
pub fn admin(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}
