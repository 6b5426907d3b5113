//! Import reports: the seeds' "two tables, created and updated", plus the
//! rejected rows with line, column, value and rule.
//!
//! Rows are spooled to three JSON-lines files as they are decided, so a
//! million-row import never holds its report in memory. The spools' lengths
//! are saved with each committed batch; after a crash they are cut back to
//! those lengths, so the final report lists every row exactly once.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use idsync_schema::csv_format::RowError;
pub use idsync_schema::report::{FileOutcome, Summary};
use idsync_schema::text::shown;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Lengths of the spools at a commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolOffsets {
    pub created: u64,
    pub updated: u64,
    pub rejected: u64,
}

/// A created or updated row.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppliedRow {
    line: u64,
    key: String,
    id: Uuid,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    changed: Vec<String>,
}

/// A refused row.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RejectedRow {
    line: u64,
    /// The row's key (mail, displayName, name) when it has one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    column: Option<usize>,
    attribute: String,
    value: String,
    rule: String,
    message: String,
}

/// Everything a report says besides its rows.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportHeader {
    /// The file as it was given (the CLI) or dropped (a drop folder).
    pub file: String,
    /// Where a dropped file was moved once this report was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved_to: Option<String>,
    pub digest: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    pub outcome: FileOutcome,
    /// Whether accepted rows were committed: false for a dry run, a refused
    /// file, an atomic import with a rejected row, and a file whose every
    /// row was rejected. (A dry run's lists say what would have happened.)
    pub applied: bool,
    pub dry_run: bool,
    pub atomic: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub started: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub finished: time::OffsetDateTime,
    /// The line of the last row committed before an interruption, when
    /// this import resumed one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_after_line: Option<u64>,
    /// Why the whole file was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub warnings: Vec<String>,
    pub summary: Summary,
    /// The drop folder's names of the file, when it came from one.
    #[serde(skip)]
    pub dropped: Option<super::Dropped>,
}

impl ReportHeader {
    /// The end of the import: the time, and where a dropped file goes
    /// (`rejected/` when the whole file is refused, `processed/` else).
    /// Its texts are bounded and escaped here, once: an error or warning
    /// can repeat a value of the file.
    pub fn close(&mut self) {
        self.finished = time::OffsetDateTime::now_utc();
        self.error = self.error.as_deref().map(shown);
        self.warnings = self.warnings.iter().map(|w| shown(w)).collect();
        self.moved_to = self.dropped.as_ref().map(|d| {
            let to = match self.outcome {
                FileOutcome::Rejected => &d.rejected,
                FileOutcome::Accepted | FileOutcome::Partial => &d.processed,
            };
            to.display().to_string()
        });
    }
}

/// Where a finished report was written.
#[derive(Debug, Clone)]
pub struct ReportFiles {
    pub json: PathBuf,
    pub csv: PathBuf,
}

impl ReportFiles {
    /// `BASE.report.json` and `BASE.report.csv`.
    pub fn beside(base: &Path) -> Self {
        let with = |ext: &str| {
            let mut s = base.as_os_str().to_owned();
            s.push(ext);
            PathBuf::from(s)
        };
        Self {
            json: with(".report.json"),
            csv: with(".report.csv"),
        }
    }
}

/// The three spools of one import.
pub struct Spool {
    /// False when rows spooled before an interruption were lost.
    pub complete: bool,
    dir: PathBuf,
    created: BufWriter<File>,
    updated: BufWriter<File>,
    rejected: BufWriter<File>,
    at: SpoolOffsets,
    /// Keeps the start-up sweep of a daemon on this data dir away.
    _in_use: super::spool_lock::InUse,
}

/// Open a spool cut back to `keep` bytes. Sets `complete` to false when it
/// was shorter (rows spooled before a power loss are gone).
fn open_spool(path: &Path, keep: u64, complete: &mut bool) -> std::io::Result<File> {
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)?;
    let len = f.metadata()?.len();
    let keep = if len < keep {
        *complete = false;
        // Keep whole lines only.
        let text = fs::read(path)?;
        text.iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i as u64 + 1)
    } else {
        keep
    };
    f.set_len(keep)?;
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(keep))?;
    Ok(f)
}

impl Spool {
    /// Open the spools in `dir`, cut back to `resume` (all empty when None).
    pub fn open(dir: &Path, resume: Option<SpoolOffsets>) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        let in_use = super::spool_lock::in_use(dir)?;
        Self::open_in_use(dir, resume, in_use)
    }

    /// Open the spools in `dir` as [`Spool::open`] does, if no other
    /// process has them open (none when one does).
    pub fn open_alone(dir: &Path, resume: Option<SpoolOffsets>) -> std::io::Result<Option<Self>> {
        fs::create_dir_all(dir)?;
        super::spool_lock::alone(dir)?
            .map(|in_use| Self::open_in_use(dir, resume, in_use))
            .transpose()
    }

    fn open_in_use(
        dir: &Path,
        resume: Option<SpoolOffsets>,
        in_use: super::spool_lock::InUse,
    ) -> std::io::Result<Self> {
        let mut complete = true;
        let created = open_spool(
            &dir.join("created.jsonl"),
            resume.map_or(0, |r| r.created),
            &mut complete,
        )?;
        let updated = open_spool(
            &dir.join("updated.jsonl"),
            resume.map_or(0, |r| r.updated),
            &mut complete,
        )?;
        let rejected = open_spool(
            &dir.join("rejected.jsonl"),
            resume.map_or(0, |r| r.rejected),
            &mut complete,
        )?;
        let at = SpoolOffsets {
            created: created.metadata()?.len(),
            updated: updated.metadata()?.len(),
            rejected: rejected.metadata()?.len(),
        };
        Ok(Self {
            complete,
            created: BufWriter::new(created),
            updated: BufWriter::new(updated),
            rejected: BufWriter::new(rejected),
            dir: dir.to_owned(),
            at,
            _in_use: in_use,
        })
    }

    fn append<T: Serialize>(
        w: &mut BufWriter<File>,
        len: &mut u64,
        row: &T,
    ) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(row).expect("report rows serialise");
        line.push(b'\n');
        w.write_all(&line)?;
        *len += line.len() as u64;
        Ok(())
    }

    /// Record a created row.
    pub fn created(&mut self, line: u64, key: &str, id: Uuid) -> std::io::Result<()> {
        let row = AppliedRow {
            line,
            key: shown(key),
            id,
            changed: Vec::new(),
        };
        Self::append(&mut self.created, &mut self.at.created, &row)
    }

    /// Record an updated row with the attributes that changed.
    pub fn updated(
        &mut self,
        line: u64,
        key: &str,
        id: Uuid,
        changed: Vec<String>,
    ) -> std::io::Result<()> {
        let row = AppliedRow {
            line,
            key: shown(key),
            id,
            changed,
        };
        Self::append(&mut self.updated, &mut self.at.updated, &row)
    }

    /// Record a rejected row.
    pub fn rejected(&mut self, line: u64, key: &str, err: &RowError) -> std::io::Result<()> {
        let v = &err.violation;
        let rule = serde_json::to_value(&v.rule)
            .ok()
            .and_then(|r| r.get("rule").and_then(|s| s.as_str()).map(str::to_owned))
            .unwrap_or_default();
        let row = RejectedRow {
            line,
            key: shown(key),
            column: err.column,
            attribute: v.attribute.clone(),
            value: shown(&v.value),
            rule,
            message: shown(&v.to_string()),
        };
        Self::append(&mut self.rejected, &mut self.at.rejected, &row)
    }

    /// Hand everything written to the kernel and return the lengths to save
    /// with the commit that covers these rows.
    ///
    /// No fsync: a killed process loses nothing the kernel has, and the
    /// store's commit is what must survive a power loss. Were the machine to
    /// lose power, the spools could come back shorter than saved; `open`
    /// then notices and the report says which rows it cannot list.
    pub fn sync(&mut self) -> std::io::Result<SpoolOffsets> {
        for w in [&mut self.created, &mut self.updated, &mut self.rejected] {
            w.flush()?;
        }
        Ok(self.at)
    }

    /// Remove the spools without writing a report.
    pub fn discard(self) -> std::io::Result<()> {
        let dir = self.dir.clone();
        drop(self);
        fs::remove_dir_all(dir)
    }

    /// Write the CSV and then the JSON report, then remove the spools. The
    /// JSON report is written last, so that its presence means both are
    /// complete (what the drop folders' recovery relies on).
    pub fn finish(mut self, header: &ReportHeader, out: &ReportFiles) -> std::io::Result<()> {
        for w in [&mut self.created, &mut self.updated, &mut self.rejected] {
            w.flush()?;
        }
        write_csv(&self.dir, &out.csv)?;
        write_json(&self.dir, header, &out.json)?;
        drop(self.created);
        drop(self.updated);
        drop(self.rejected);
        fs::remove_dir_all(&self.dir)
    }
}

/// Write `path` through a temporary file and a rename, so a reader never
/// sees half a report.
fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut w = BufWriter::new(File::create(&tmp)?);
    fill(&mut w)?;
    w.flush()?;
    w.get_ref().sync_data()?;
    fs::rename(&tmp, path)
}

fn write_json(dir: &Path, header: &ReportHeader, path: &Path) -> std::io::Result<()> {
    write_atomically(path, |w| {
        let head = serde_json::to_string(header).expect("header serialises");
        // The header's closing brace is replaced by the three row arrays.
        w.write_all(&head.as_bytes()[..head.len() - 1])?;
        for name in ["created", "updated", "rejected"] {
            write!(w, ",\"{name}\":[")?;
            let mut first = true;
            for line in BufReader::new(File::open(dir.join(format!("{name}.jsonl")))?).lines() {
                if !first {
                    w.write_all(b",")?;
                }
                first = false;
                w.write_all(line?.as_bytes())?;
            }
            w.write_all(b"]")?;
        }
        w.write_all(b"}\n")
    })
}

/// A spreadsheet runs a cell that starts with `=`, `+`, `-`, `@` (or a tab
/// or carriage return) as a formula: prefix such cells with `'`.
pub fn neutralise_formula(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

fn write_csv(dir: &Path, path: &Path) -> std::io::Result<()> {
    write_atomically(path, |w| {
        let mut out = csv::Writer::from_writer(w);
        let header = [
            "outcome",
            "line",
            "key",
            "id",
            "changed",
            "column",
            "attribute",
            "value",
            "rule",
            "message",
        ];
        out.write_record(header)?;
        for name in ["created", "updated"] {
            for line in BufReader::new(File::open(dir.join(format!("{name}.jsonl")))?).lines() {
                let row: AppliedRow =
                    serde_json::from_str(&line?).map_err(std::io::Error::other)?;
                let cells = [
                    name.to_owned(),
                    row.line.to_string(),
                    row.key,
                    row.id.to_string(),
                    row.changed.join(" "),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ];
                out.write_record(cells.iter().map(|c| neutralise_formula(c).into_owned()))?;
            }
        }
        for line in BufReader::new(File::open(dir.join("rejected.jsonl"))?).lines() {
            let row: RejectedRow = serde_json::from_str(&line?).map_err(std::io::Error::other)?;
            let cells = [
                "rejected".to_owned(),
                row.line.to_string(),
                row.key,
                String::new(),
                String::new(),
                row.column.map(|c| c.to_string()).unwrap_or_default(),
                row.attribute,
                row.value,
                row.rule,
                row.message,
            ];
            out.write_record(cells.iter().map(|c| neutralise_formula(c).into_owned()))?;
        }
        out.flush()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use idsync_schema::{Rule, Violation};

    #[test]
    fn formulas_are_neutralised() {
        assert_eq!(
            neutralise_formula("=HYPERLINK(\"x\")"),
            "'=HYPERLINK(\"x\")"
        );
        assert_eq!(neutralise_formula("+1"), "'+1");
        assert_eq!(neutralise_formula("-1"), "'-1");
        assert_eq!(neutralise_formula("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(neutralise_formula("ann@example.org"), "ann@example.org");
    }

    #[test]
    fn a_resumed_spool_forgets_rows_after_the_last_commit() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let mut s = Spool::open(&spool, None).unwrap();
        s.created(2, "a@x.org", Uuid::nil()).unwrap();
        let at = s.sync().unwrap();
        s.created(3, "b@x.org", Uuid::nil()).unwrap(); // not covered by a commit
        s.sync().unwrap();
        drop(s);
        let mut s = Spool::open(&spool, Some(at)).unwrap();
        s.created(3, "b@x.org", Uuid::nil()).unwrap();
        let err = RowError {
            column: Some(3),
            violation: Violation::new("lastName", "=cmd", Rule::Excluded),
        };
        s.rejected(4, "x@example.org", &err).unwrap();
        let header = ReportHeader {
            file: "f.csv".into(),
            moved_to: None,
            dropped: None,
            digest: "d".into(),
            kind: "users".into(),
            application: None,
            outcome: FileOutcome::Partial,
            applied: true,
            dry_run: false,
            atomic: false,
            started: time::OffsetDateTime::UNIX_EPOCH,
            finished: time::OffsetDateTime::UNIX_EPOCH,
            resumed_after_line: Some(2),
            error: None,
            warnings: vec![],
            summary: Summary {
                created: 2,
                updated: 0,
                unchanged: 0,
                rejected: 1,
            },
        };
        let out = ReportFiles::beside(&dir.path().join("out/f.csv"));
        s.finish(&header, &out).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&fs::read(&out.json).unwrap()).unwrap();
        assert_eq!(json["created"].as_array().unwrap().len(), 2);
        assert_eq!(json["rejected"][0]["column"], 3);
        assert_eq!(json["rejected"][0]["rule"], "excluded");
        assert_eq!(json["summary"]["created"], 2);
        let csv = fs::read_to_string(&out.csv).unwrap();
        assert!(csv.contains("'=cmd"), "{csv}");
        assert_eq!(csv.lines().count(), 4);
        assert!(
            !spool.exists(),
            "spools are removed once the report is written"
        );
    }
}
