//! The files in `systemd/`: the unit is valid (`systemd-analyze verify`),
//! its sandbox rates an exposure of at most 2.0 (`systemd-analyze
//! security`), and sysusers + tmpfiles create the account, the data dir and
//! the drop folders as the unit expects.
//!
//! These run systemd's offline tools only: no systemd as PID 1, no unit is
//! started, and nothing outside a temp dir is touched.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The highest `systemd-analyze security` exposure we accept (0 is the
/// best, 10 the worst; systemd calls up to 2.0 "OK").
const MAX_EXPOSURE: f64 = 2.0;

/// The unit's name: messages about it carry it.
const UNIT: &str = "idsync.service";

fn systemd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd")
}

/// One of systemd's tools, with output that does not depend on the
/// caller's terminal or environment.
fn tool(name: &str) -> Command {
    let mut c = Command::new(name);
    c.env("SYSTEMD_COLORS", "0")
        .env("SYSTEMD_PAGER", "")
        // Warnings and errors only: exactly what the checks below read. An
        // inherited SYSTEMD_LOG_LEVEL=debug would bury them in noise.
        .env("SYSTEMD_LOG_LEVEL", "warning");
    c
}

fn run(mut cmd: Command) -> Output {
    let name = cmd.get_program().to_string_lossy().into_owned();
    match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{name}` is not installed: these tests need systemd's offline tools \
             (Debian package `systemd`, which scripts/test installs)"
        ),
        Err(e) => panic!("cannot run `{name}`: {e}"),
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The shipped unit with its `ExecStart=` binary replaced by `bin`.
fn with_exec_start(unit: &str, bin: &Path) -> String {
    let shipped = "ExecStart=/usr/bin/idsync ";
    assert_eq!(
        unit.lines().filter(|l| l.starts_with("ExecStart=")).count(),
        1,
        "one ExecStart= expected"
    );
    let bin = bin.to_str().expect("UTF-8 binary path");
    assert!(
        !bin.contains(['"', '\\']),
        "binary path {bin:?} would need escaping"
    );
    // Quoted for spaces; `%` starts a unit specifier, so it is doubled.
    let quoted = format!("ExecStart=\"{}\" ", bin.replace('%', "%%"));
    let rewritten: Vec<String> = unit
        .lines()
        .map(|l| match l.strip_prefix(shipped) {
            Some(rest) => format!("{quoted}{rest}"),
            None => l.to_owned(),
        })
        .collect();
    assert!(
        rewritten.iter().any(|l| l.starts_with(&quoted)),
        "ExecStart= does not start with {shipped:?}"
    );
    rewritten.join("\n") + "\n"
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    // verify checks that every Exec*= command exists, and /usr/bin/idsync
    // is not installed here: check a copy that runs the binary just built.
    // The name stays idsync.service, since verify derives the unit's type
    // and the names in its messages from it.
    let unit = std::fs::read_to_string(systemd_dir().join(UNIT)).expect("read the unit");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(UNIT);
    std::fs::write(&path, with_exec_start(&unit, idsync_tests::idsync_bin())).unwrap();

    let mut cmd = tool("systemd-analyze");
    // --recursive-errors=no: a warning about this unit (unknown key,
    // unparsable value) fails the run, which verify otherwise only prints;
    // problems in the host's own units (pulled in through After=) do not.
    // --man=no: the unit names no man page to look up.
    cmd.args(["verify", "--man=no", "--recursive-errors=no"])
        .arg(&path);
    let out = run(cmd);
    let output = text(&out);
    println!("systemd-analyze verify:\n{output}");
    // The idsync user of idsync.sysusers need not exist here: verify (252)
    // does not resolve User=, so there is no message to excuse. Any line
    // naming the unit is a problem, even if the exit status missed it.
    let problems: Vec<&str> = output.lines().filter(|l| l.contains(UNIT)).collect();
    assert!(
        out.status.success() && problems.is_empty(),
        "systemd-analyze verify failed ({}):\n{output}",
        out.status
    );
}

/// The figure of `→ Overall exposure level for idsync.service: 0.9 SAFE`.
fn exposure(output: &str) -> Option<f64> {
    let marker = format!("Overall exposure level for {UNIT}:");
    let line = output.lines().find(|l| l.contains(&marker))?;
    let (_, rest) = line.split_once(&marker)?;
    rest.split_whitespace().next()?.parse().ok()
}

#[test]
fn the_unit_sandbox_rates_at_most_2_0() {
    // A throwaway root holding only our unit: --offline reads the unit
    // files instead of asking PID 1, and --root keeps an installed unit or
    // a drop-in on this machine (e.g. one widening IPAddressAllow=) out of
    // the figure.
    let root = tempfile::tempdir().unwrap();
    let units = root.path().join("etc/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::copy(systemd_dir().join(UNIT), units.join(UNIT)).unwrap();

    let mut cmd = tool("systemd-analyze");
    // --threshold is in tenths: fail above 2.0.
    let threshold = format!("--threshold={}", (MAX_EXPOSURE * 10.0) as u32);
    cmd.args(["security", "--offline=true", &threshold, "--no-pager"])
        .arg(format!("--root={}", root.path().display()))
        .arg(UNIT);
    let out = run(cmd);
    let output = text(&out);
    let figure = exposure(&output).unwrap_or_else(|| {
        panic!(
            "no overall exposure in the output ({}):\n{output}",
            out.status
        )
    });
    println!("systemd-analyze security: exposure {figure}");
    // The lines that still count against the unit, for whoever tightens it.
    for line in output.lines().filter(|l| l.starts_with('✗')) {
        println!("  {line}");
    }
    assert!(
        figure <= MAX_EXPOSURE && out.status.success(),
        "exposure {figure} is above {MAX_EXPOSURE} ({}):\n{output}",
        out.status
    );
}

/// `(mode & 0o7777, uid, gid)` of `path`.
fn owner_and_mode(path: &Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.mode() & 0o7777, m.uid(), m.gid())
}

#[test]
fn sysusers_and_tmpfiles_create_the_account_and_the_drop_folders() {
    // Both tools write below --root only: a temp dir stands in for `/`.
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("etc")).unwrap();

    let mut cmd = tool("systemd-sysusers");
    cmd.arg(format!("--root={}", root.path().display())).arg(
        systemd_dir()
            .join("idsync.sysusers")
            .canonicalize()
            .unwrap(),
    );
    let out = run(cmd);
    assert!(out.status.success(), "systemd-sysusers: {}", text(&out));
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let entry = passwd
        .lines()
        .find(|l| l.starts_with("idsync:"))
        .unwrap_or_else(|| panic!("no idsync user in:\n{passwd}"));
    let fields: Vec<&str> = entry.split(':').collect();
    let (uid, gid): (u32, u32) = (fields[2].parse().unwrap(), fields[3].parse().unwrap());
    assert_eq!(fields[5], "/var/lib/idsync", "{entry}");

    // tmpfiles chowns what it creates, which takes root.
    let probe = root.path().join("etc/passwd");
    if owner_and_mode(&probe).1 != 0 {
        println!("not root: systemd-tmpfiles --create skipped");
        return;
    }
    let mut cmd = tool("systemd-tmpfiles");
    cmd.args(["--create"])
        .arg(format!("--root={}", root.path().display()))
        .arg(
            systemd_dir()
                .join("idsync.tmpfiles")
                .canonicalize()
                .unwrap(),
        );
    let out = run(cmd);
    assert!(out.status.success(), "systemd-tmpfiles: {}", text(&out));
    for dir in [
        "",
        "/inbox",
        "/inbox/users",
        "/inbox/groups",
        "/inbox/assets",
    ] {
        let path = root.path().join(format!("var/lib/idsync{dir}"));
        assert_eq!(
            owner_and_mode(&path),
            (0o750, uid, gid),
            "{}",
            path.display()
        );
    }
}
