//! The drop folders and the life of a dropped file.
//!
//! ```text
//! ROOT/users/ROSTER.csv ──claim (rename)──> ROOT/users/.work/STAMP-ROSTER.csv
//!        ──import──> .work/STAMP-ROSTER.csv.report.{json,csv}
//!        ──finish (renames)──> ROOT/users/processed/  (or rejected/)
//! ```
//!
//! Every step is a rename inside one folder, so it is atomic and never
//! crosses a file system. A file is only ever read from `.work/`, after the
//! claim: a writer still holding the inbox name can never be read early.
//! After a crash, [`recover`] looks at what is in `.work/` and finishes each
//! file from where it stood. The JSON report is the last thing an import
//! writes, so a JSON report means the import and both reports are done and
//! the file is moved on; otherwise it is imported again, which resumes from
//! its last committed batch or, when every row was in, writes the reports
//! again. Half-written reports (`*.tmp`) are removed.
//!
//! Whatever it finds, `.work/` included, a file is read only through
//! [`crate::sources::import::reader::open_regular`], so a symbolic link or a
//! FIFO is refused the same way at run time and after a crash.

use std::fs;
use std::path::{Path, PathBuf};

use idsync_schema::Kind;

/// Subfolder names a folder reserves for itself (never application names).
pub const WORK: &str = ".work";
pub const PROCESSED: &str = "processed";
pub const REJECTED: &str = "rejected";
/// Under the root: the report spools of imports under a claim, where every
/// replica that shares the folders finds them (`sources/import/progress.rs`).
pub const SPOOLS: &str = ".spools";

/// One inbox: `users`, `groups`, `assets`, or `users/<application>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Folder {
    /// The path under the root, as in `[folders.options."…"]`.
    pub name: String,
    pub kind: Kind,
    pub application: Option<String>,
}

impl Folder {
    /// The three kind folders.
    pub fn kinds() -> [Folder; 3] {
        [Kind::User, Kind::Group, Kind::Asset].map(|kind| Folder {
            name: kind.plural().to_owned(),
            kind,
            application: None,
        })
    }

    /// The folder's directory.
    pub fn dir(&self, root: &Path) -> PathBuf {
        root.join(&self.name)
    }
}

/// Why a dropped (or claimed) file is refused for its name alone. What the
/// file is (a link, a FIFO) is checked when it is opened.
pub fn name_refusal(path: &Path) -> Option<&'static str> {
    let Some(name) = path.file_name() else {
        return Some("the file has no name");
    };
    let Some(name) = name.to_str() else {
        return Some("the file name is not UTF-8");
    };
    if name
        .chars()
        .any(|c| c.is_control() || matches!(c, '\\' | '\u{7f}'))
    {
        return Some("the file name contains control characters or a backslash");
    }
    None
}

/// Why the watcher leaves a name alone, if it does: dotfiles, the names
/// editors and copy tools use while writing, and the reports' names.
pub fn ignored_because(name: &str) -> Option<&'static str> {
    if name.starts_with('.') {
        Some("hidden files are never taken")
    } else if [".tmp", ".part", ".swp", "~"]
        .iter()
        .any(|end| name.ends_with(end))
    {
        Some("a name ending in .tmp, .part, .swp or ~ is taken as still being written: rename it when complete")
    } else if name.contains(".report.") {
        Some("names containing .report. are reserved for import reports")
    } else {
        None
    }
}

/// Whether a name is one the watcher leaves alone ([`ignored_because`]).
pub fn is_ignored(name: &str) -> bool {
    ignored_because(name).is_some()
}

/// Where `path` sits: the inbox it was dropped in, or None for anything
/// else (work files, processed files, deeper paths, the root itself). The
/// folders' names must be UTF-8; the file's own name need not be (such a
/// file is refused with a report, not passed over).
pub fn folder_of(root: &Path, path: &Path) -> Option<Folder> {
    let rel = path.strip_prefix(root).ok()?;
    rel.file_name()?;
    let parts: Vec<&str> = rel
        .parent()?
        .iter()
        .map(|p| p.to_str())
        .collect::<Option<_>>()?;
    let kind_of = |s: &str| Folder::kinds().into_iter().find(|f| f.name == s);
    match parts.as_slice() {
        [kind] => kind_of(kind),
        ["users", app] if !is_reserved(app) => Some(Folder {
            name: format!("users/{app}"),
            kind: Kind::User,
            application: Some((*app).to_owned()),
        }),
        _ => None,
    }
}

/// Names a folder keeps for itself under `users/`.
fn is_reserved(name: &str) -> bool {
    matches!(name, WORK | PROCESSED | REJECTED) || name.starts_with('.')
}

/// Whether `dir`, a directory, sits where files are dropped but is no
/// inbox: a folder inside `groups/`, `assets/` or an application folder.
/// Its files are never read; the daemon says so.
pub fn is_stray_dir(root: &Path, dir: &Path) -> bool {
    let Some(rel) = dir.strip_prefix(root).ok() else {
        return false;
    };
    let parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    match parts
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["groups" | "assets", sub] => !is_reserved(sub),
        ["users", app, sub] => !is_reserved(app) && !is_reserved(sub),
        _ => false,
    }
}

/// Every inbox that exists under `root`: the kind folders and the
/// application folders under `users/`.
pub fn folders(root: &Path) -> Vec<Folder> {
    let mut all: Vec<Folder> = Folder::kinds().into();
    if let Ok(entries) = fs::read_dir(root.join("users")) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                if let Some(f) = folder_of(root, &p.join("x")) {
                    all.push(f);
                }
            }
        }
    }
    all.sort();
    all
}

/// Create the kind folders and their work, processed and rejected folders.
pub fn prepare(root: &Path, folder: &Folder) -> std::io::Result<()> {
    let dir = folder.dir(root);
    for sub in [WORK, PROCESSED, REJECTED] {
        fs::create_dir_all(dir.join(sub))?;
    }
    Ok(())
}

/// A UTC stamp that sorts in time order and is safe in file names.
pub fn stamp() -> String {
    time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second].[subsecond digits:6]Z"
        ))
        .expect("the format is valid")
}

/// Claim `path` by renaming it into its folder's `.work/` with a stamp, so
/// two drops of the same name never collide. Returns the claimed path.
pub fn claim(root: &Path, folder: &Folder, path: &Path) -> std::io::Result<PathBuf> {
    let target = claim_target(root, folder, path)?;
    fs::rename(path, &target)?;
    Ok(target)
}

/// Where [`claim`] renames `path` to: `.work/STAMP-NAME`, a name not
/// taken yet (made unique across replicas by their claim in the store).
pub fn claim_target(root: &Path, folder: &Folder, path: &Path) -> std::io::Result<PathBuf> {
    let name = path.file_name().unwrap_or(std::ffi::OsStr::new("file"));
    let work = folder.dir(root).join(WORK);
    fs::create_dir_all(&work)?;
    // The dropped name's own bytes follow the stamp: a name refused for
    // being odd is still refused once claimed (after a crash, say).
    let named = |prefix: String| {
        let mut n = std::ffi::OsString::from(prefix);
        n.push(name);
        work.join(n)
    };
    let mut target = named(format!("{}-", stamp()));
    let mut n = 1;
    while target.exists() {
        n += 1;
        target = named(format!("{}.{n}-", stamp()));
    }
    Ok(target)
}

/// What the report of claimed file `claimed` says of it: the path it was
/// dropped at (the claim's stamp taken off its name) and where it goes.
pub fn dropped(root: &Path, folder: &Folder, claimed: &Path) -> crate::sources::import::Dropped {
    let claimed_name = claimed
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = unstamped(&claimed_name);
    let dir = folder.dir(root);
    crate::sources::import::Dropped {
        name: dir.join(name),
        processed: dir.join(PROCESSED).join(&claimed_name),
        rejected: dir.join(REJECTED).join(&claimed_name),
    }
}

/// A claimed name without the stamp [`claim`] put in front
/// (`STAMP-NAME`, or `STAMP.N-NAME` after a collision).
fn unstamped(claimed: &str) -> &str {
    let Some((prefix, name)) = claimed.split_once('-') else {
        return claimed;
    };
    let (stamp, n) = prefix.split_once('.').map_or((prefix, ""), |(s, rest)| {
        // The stamp has a `.` of its own before its fraction.
        match rest.split_once('.') {
            Some((fraction, n)) => (&prefix[..s.len() + 1 + fraction.len()], n),
            None => (prefix, ""),
        }
    });
    let is_stamp = stamp.len() == 23
        && stamp.ends_with('Z')
        && stamp.as_bytes()[8] == b'T'
        && stamp.as_bytes()[15] == b'.';
    if is_stamp && n.bytes().all(|b| b.is_ascii_digit()) {
        name
    } else {
        claimed
    }
}

/// Move a claimed file and its reports to `processed/` or `rejected/`.
/// Reports go first: a crash in between leaves the file in `.work/` and its
/// reports already in place, which [`recover`] recognises.
pub fn finish(
    root: &Path,
    folder: &Folder,
    claimed: &Path,
    rejected: bool,
) -> std::io::Result<PathBuf> {
    let dest_dir = folder
        .dir(root)
        .join(if rejected { REJECTED } else { PROCESSED });
    fs::create_dir_all(&dest_dir)?;
    let name = claimed.file_name().expect("claimed files have names");
    let reports = crate::sources::import::ReportFiles::beside(claimed);
    for report in [&reports.json, &reports.csv] {
        if report.exists() {
            fs::rename(report, dest_dir.join(report.file_name().expect("named")))?;
        }
    }
    let dest = dest_dir.join(name);
    fs::rename(claimed, &dest)?;
    Ok(dest)
}

/// What to do with a file found in `.work/` at start-up.
#[derive(Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Import it (again): it resumes from its last committed batch.
    Import(PathBuf),
    /// Its reports are written: just move it on. The digest, when known,
    /// names a progress record to forget.
    Finish {
        claimed: PathBuf,
        rejected: bool,
        digest: Option<String>,
    },
}

/// What a JSON report found in `.work/` or beside a finished file says:
/// whether the file was refused, and its digest. None when there is no
/// complete report (it is the last thing an import writes).
fn report_verdict(json: &Path) -> Option<(bool, Option<String>)> {
    use std::io::Read as _;
    // Read like any dropped file: never through a link, never blocking on
    // a FIFO someone named like a report.
    let file = crate::sources::import::reader::open_regular(json, false).ok()?;
    let mut text = Vec::new();
    file.take(REPORT_HEAD_MAX).read_to_end(&mut text).ok()?;
    let head = report_head(&text)?;
    let v: serde_json::Value = serde_json::from_slice(&head).ok()?;
    let rejected = v.get("outcome")?.as_str()? == "rejected";
    let digest = v
        .get("digest")
        .and_then(|d| d.as_str())
        .filter(|d| !d.is_empty())
        .map(str::to_owned);
    Some((rejected, digest))
}

/// How much of a report is read to learn its verdict: its header comes
/// first and is small; the rows that follow can be millions.
const REPORT_HEAD_MAX: u64 = 1 << 20;

/// The report's header: the report up to its row lists (`,"created":[`),
/// which is a JSON object once closed. (Reports are renamed into place
/// whole, so one that exists is complete.)
fn report_head(text: &[u8]) -> Option<Vec<u8>> {
    let rows = b",\"created\":[";
    let at = text.windows(rows.len()).position(|w| w == rows)?;
    let mut head = text[..at].to_vec();
    head.push(b'}');
    Some(head)
}

/// What is left in `folder`'s `.work/`, oldest first. Reports that were
/// being written when the daemon stopped (`*.report.*.tmp`) are removed
/// when `sweep` (the import that wrote them runs again and writes them
/// whole); not in a folder replicas share, where another may be writing
/// them now.
pub fn recover(root: &Path, folder: &Folder, sweep: bool) -> std::io::Result<Vec<Recovery>> {
    let work = folder.dir(root).join(WORK);
    let entries = match fs::read_dir(&work) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for path in entries.flatten().map(|e| e.path()) {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        match name.as_deref() {
            Some(n) if n.contains(".report.") && n.ends_with(".tmp") => {
                if sweep {
                    fs::remove_file(&path)?;
                }
            }
            Some(n) if n.contains(".report.") => {}
            _ => files.push(path),
        }
    }
    files.sort();
    Ok(files
        .into_iter()
        .map(|claimed| recovery_of(root, folder, claimed))
        .collect())
}

/// What to do with the file `claimed` in `folder`'s `.work/`: finish it
/// when its reports are written (beside it, or already moved on), else
/// import it (again).
pub fn recovery_of(root: &Path, folder: &Folder, claimed: PathBuf) -> Recovery {
    let dir = folder.dir(root);
    let name = claimed.file_name().expect("named").to_owned();
    let in_work = crate::sources::import::ReportFiles::beside(&claimed).json;
    let moved =
        |sub: &str| crate::sources::import::ReportFiles::beside(&dir.join(sub).join(&name)).json;
    let found = [in_work, moved(PROCESSED), moved(REJECTED)]
        .into_iter()
        .find_map(|json| report_verdict(&json));
    match found {
        Some((rejected, digest)) => Recovery::Finish {
            claimed,
            rejected,
            digest,
        },
        None => Recovery::Import(claimed),
    }
}

/// Files waiting in `folder`'s inbox at start-up, oldest first.
pub fn waiting(root: &Path, folder: &Folder) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(folder.dir(root)) else {
        return Vec::new();
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_none_or(|n| !is_ignored(n)))
        .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
        .map(|e| {
            let modified = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (modified, e.path())
        })
        .collect();
    files.sort();
    files.into_iter().map(|(_, p)| p).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_claimed_name_gives_back_the_dropped_one() {
        use super::unstamped;
        assert_eq!(unstamped("20261203T090000.123456Z-users.csv"), "users.csv");
        assert_eq!(
            unstamped("20261203T090000.123456Z.2-2024-users.csv"),
            "2024-users.csv"
        );
        assert_eq!(unstamped("20261203T090000.123456Z-a-b.csv"), "a-b.csv");
        assert_eq!(unstamped("plain-name.csv"), "plain-name.csv");
        let stamped = format!("{}-x.csv", super::stamp());
        assert_eq!(unstamped(&stamped), "x.csv");
    }

    use super::*;

    #[test]
    fn files_are_placed_in_their_folder() {
        let root = Path::new("/srv/inbox");
        let f = folder_of(root, &root.join("users/roster.csv")).unwrap();
        assert_eq!(
            (f.name.as_str(), f.kind, f.application),
            ("users", Kind::User, None)
        );
        let f = folder_of(root, &root.join("users/portal/roster.csv")).unwrap();
        assert_eq!(
            (f.name.as_str(), f.application.as_deref()),
            ("users/portal", Some("portal"))
        );
        assert_eq!(
            folder_of(root, &root.join("assets/a.csv")).unwrap().kind,
            Kind::Asset
        );
        for not_an_inbox in [
            "users/.work/x.csv",
            "users/processed/x.csv",
            "users/rejected/x.csv",
            "groups/sub/x.csv",
            "other/x.csv",
            "x.csv",
            "users/portal/deeper/x.csv",
        ] {
            assert_eq!(
                folder_of(root, &root.join(not_an_inbox)),
                None,
                "{not_an_inbox}"
            );
        }
    }

    #[test]
    fn temporary_names_are_ignored() {
        for n in [
            ".hidden.csv",
            "a.csv.tmp",
            "a.part",
            ".a.csv.swp",
            "a.csv~",
            "a.csv.report.json",
        ] {
            assert!(is_ignored(n), "{n}");
        }
        assert!(!is_ignored("users 2024-01.csv"));
    }

    #[test]
    fn odd_names_are_refused_dropped_or_claimed() {
        use std::os::unix::ffi::OsStrExt as _;
        let dir = Path::new("/srv/inbox/users");
        assert!(name_refusal(&dir.join("a\nb.csv"))
            .unwrap()
            .contains("control"));
        let latin1 = std::ffi::OsStr::from_bytes(b"caf\xe9.csv");
        assert!(name_refusal(&dir.join(latin1)).unwrap().contains("UTF-8"));
        assert_eq!(name_refusal(&dir.join("roster.csv")), None);

        // A claim keeps the name's own bytes, so the refusal still holds.
        let tmp = tempfile::tempdir().unwrap();
        let users = Folder::kinds()[0].clone();
        prepare(tmp.path(), &users).unwrap();
        let dropped = users.dir(tmp.path()).join(latin1);
        fs::write(&dropped, "x").unwrap();
        assert_eq!(folder_of(tmp.path(), &dropped), Some(users.clone()));
        let claimed = claim(tmp.path(), &users, &dropped).unwrap();
        assert!(name_refusal(&claimed).unwrap().contains("UTF-8"));
    }

    #[test]
    fn directories_in_kind_folders_are_strays() {
        let root = Path::new("/srv/inbox");
        assert!(is_stray_dir(root, &root.join("groups/2024")));
        assert!(is_stray_dir(root, &root.join("users/portal/old")));
        assert!(
            !is_stray_dir(root, &root.join("users/portal")),
            "an application"
        );
        assert!(!is_stray_dir(root, &root.join("groups/.work")));
        assert!(!is_stray_dir(root, &root.join("assets/processed")));
    }

    #[test]
    fn claim_finish_and_recover() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let users = Folder::kinds()[0].clone();
        prepare(root, &users).unwrap();
        let a = users.dir(root).join("a.csv");
        fs::write(&a, "x").unwrap();
        let claimed_a = claim(root, &users, &a).unwrap();
        fs::write(&a, "second drop, same name").unwrap();
        let claimed_b = claim(root, &users, &a).unwrap();
        assert_ne!(claimed_a, claimed_b, "two drops of one name never collide");

        // a: reports written before the crash; b: import never finished,
        // a CSV report of its half written.
        let reports = crate::sources::import::ReportFiles::beside(&claimed_a);
        fs::write(
            &reports.json,
            r#"{"outcome":"partial","digest":"abc","created":[]}"#,
        )
        .unwrap();
        let half = crate::sources::import::ReportFiles::beside(&claimed_b);
        let half_csv = format!("{}.tmp", half.csv.display());
        fs::write(&half_csv, "outcome,line").unwrap();
        let plan = recover(root, &users, true).unwrap();
        assert_eq!(
            plan,
            vec![
                Recovery::Finish {
                    claimed: claimed_a.clone(),
                    rejected: false,
                    digest: Some("abc".into())
                },
                Recovery::Import(claimed_b.clone()),
            ]
        );
        assert!(
            !Path::new(&half_csv).exists(),
            "half-written reports are removed"
        );
        let dest = finish(root, &users, &claimed_a, false).unwrap();
        assert!(dest.starts_with(users.dir(root).join(PROCESSED)));
        assert!(dest.exists());
        assert!(users
            .dir(root)
            .join(PROCESSED)
            .join(reports.json.file_name().unwrap())
            .exists());
        assert_eq!(
            recover(root, &users, true).unwrap(),
            vec![Recovery::Import(claimed_b)]
        );
    }
}
