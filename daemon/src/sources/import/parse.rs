//! The parser thread of an import: reads records, checks the value rules
//! and the in-file uniqueness, and hands rows to the apply thread in
//! chunks, so that parsing one chunk overlaps with committing the last.
//!
//! Why uniqueness is judged here and not by the store: a key used twice in
//! one file is the file's mistake (the second row is refused, naming the
//! first line), whatever the store holds. The parser sees every row in
//! order, including the rows a resumed import skips, so a resumed run
//! judges exactly as an uninterrupted one.

use std::io::Read;
use std::sync::mpsc;

use idsync_schema::csv_format::{
    AssetLayout, Blanks, GroupLayout, LayoutError, RowError, UserLayout,
};
use idsync_schema::{AssetInput, GroupInput, Kind, Rule, UserInput, UserRules, Violation};

use super::reader;
use super::seen::SeenKeys;

/// One row, parsed and checked by the parser thread.
pub(super) struct Parsed {
    pub line: u64,
    /// The row's key for the report (mail, displayName, name).
    pub key: String,
    pub input: Result<Input, RowError>,
}

pub(super) enum Input {
    User(Box<UserInput>),
    Group(GroupInput),
    Asset(Box<AssetInput>),
}

/// What the parser thread sends.
pub(super) enum Msg {
    /// The layout is known: the report's warnings, and the column of each
    /// attribute (to place rejections found by the reconciler).
    Ready {
        warnings: Vec<String>,
        columns: Vec<(&'static str, usize)>,
    },
    /// The next rows and the byte offset reached.
    Rows {
        rows: Vec<Parsed>,
        bytes: u64,
        records: u64,
    },
    /// The file cannot be read as CSV of this kind.
    Refused(String),
}

/// Rows per message to the apply thread.
const CHUNK: usize = 256;

/// Rows read before the uniqueness table is sized from the file's length.
const SIZING_SAMPLE: u64 = 1024;

/// A record as the schema's layouts read it.
struct CsvRow(csv::StringRecord);

impl idsync_schema::csv_format::Row for CsvRow {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn get(&self, i: usize) -> Option<&str> {
        self.0.get(i)
    }
}

/// The columns of the file, as its kind reads them.
enum Layout {
    Users(UserLayout),
    Groups(GroupLayout),
    Assets(AssetLayout),
}

/// A key an earlier row of the file already used.
struct Duplicate {
    attribute: &'static str,
    column: Option<usize>,
    value: String,
    /// The line that used it first.
    first: u64,
}

impl Duplicate {
    fn into_error(self) -> RowError {
        RowError {
            column: self.column,
            violation: Violation::new(
                self.attribute,
                &self.value,
                Rule::DuplicateInFile { line: self.first },
            ),
        }
    }
}

impl Layout {
    /// The layout of a file of `kind` whose first record is `first`.
    fn of(kind: Kind, first: &CsvRow) -> Result<Layout, LayoutError> {
        match kind {
            Kind::User => UserLayout::from_header(first).map(Layout::Users),
            Kind::Group => GroupLayout::from_header(first).map(Layout::Groups),
            Kind::Asset => Ok(Layout::Assets(AssetLayout::detect(first))),
            Kind::Profile | Kind::Request | Kind::Certificate | Kind::Registration => {
                Err(LayoutError::Empty)
            }
        }
    }

    /// An asset file may have no header: its first record is then a row.
    fn first_is_data(&self) -> bool {
        matches!(self, Layout::Assets(l) if !l.has_header)
    }

    /// The message that tells the apply thread the layout.
    fn ready(&self) -> Msg {
        let unknown = match self {
            Layout::Users(l) => &l.unknown_columns,
            Layout::Groups(l) => &l.unknown_columns,
            Layout::Assets(l) => &l.unknown_columns,
        };
        let warnings = unknown
            .iter()
            .map(|c| format!("unknown column `{c}` ignored"))
            .collect();
        let columns = match self {
            Layout::Users(l) => l.columns(),
            Layout::Groups(l) => l.columns(),
            Layout::Assets(l) => l.columns(),
        };
        Msg::Ready { warnings, columns }
    }

    /// Keys each row adds to the uniqueness table.
    fn keys_per_row(&self) -> u64 {
        if matches!(self, Layout::Users(_)) {
            2
        } else {
            1
        }
    }

    /// The row's key for the report, and the key it shares with an earlier
    /// row, if any (the row's keys are remembered either way).
    fn key_and_duplicate(
        &self,
        row: &CsvRow,
        line: u64,
        blanks: Blanks,
        seen: &mut SeenKeys,
    ) -> (String, Option<Duplicate>) {
        let (attribute, tag, column, name) = match self {
            Layout::Users(l) => return user_key_and_duplicate(l, row, line, blanks, seen),
            Layout::Groups(l) => ("displayName", b'g', l.key_column(), l.key_cell(row, blanks)),
            Layout::Assets(l) => ("name", b'a', l.key_column(), l.key_cell(row, blanks)),
        };
        let name = name.unwrap_or("");
        let first = (!name.is_empty())
            .then(|| seen.first_seen(tag, name, line))
            .flatten();
        let dup = first.map(|first| Duplicate {
            attribute,
            column,
            value: name.to_owned(),
            first,
        });
        (name.to_owned(), dup)
    }

    /// The row's input, checked against the value rules.
    fn parse(&self, row: &CsvRow, rules: &UserRules, blanks: Blanks) -> Result<Input, RowError> {
        match self {
            Layout::Users(l) => l
                .parse(row, rules, blanks)
                .map(|u| Input::User(Box::new(u))),
            Layout::Groups(l) => l.parse(row, rules, blanks).map(Input::Group),
            Layout::Assets(l) => l.parse(row, blanks).map(|a| Input::Asset(Box::new(a))),
        }
    }
}

/// A user row's key (its mail) and a mail or loginName an earlier row used.
fn user_key_and_duplicate(
    l: &UserLayout,
    row: &CsvRow,
    line: u64,
    blanks: Blanks,
    seen: &mut SeenKeys,
) -> (String, Option<Duplicate>) {
    let (mail, login) = l.key_cells(row, blanks);
    let dup_mail = mail.and_then(|m| seen.first_seen(b'm', m, line).map(|at| ("mail", m, at)));
    let dup_login = login.and_then(|v| {
        seen.first_seen(b'l', v, line)
            .map(|at| ("loginName", v, at))
    });
    let dup = dup_mail
        .or(dup_login)
        .map(|(attribute, value, first)| Duplicate {
            attribute,
            column: l.column_of(attribute),
            value: value.to_owned(),
            first,
        });
    (mail.unwrap_or("").to_owned(), dup)
}

/// The next record that is not blank, with its line (`default_line` when
/// the reader does not know it); `None` at the end of the file.
fn next_row<R: Read>(
    csv: &mut reader::CsvReader<R>,
    record: &mut csv::StringRecord,
    prepared: &reader::Prepared,
) -> Result<Option<(CsvRow, u64)>, String> {
    loop {
        let more = csv.read_record(record).map_err(|e| match e.kind() {
            csv::ErrorKind::Utf8 { pos, err } => format!(
                "line {}, column {}: the file is not valid UTF-8",
                pos.as_ref().map_or(0, |p| p.line()),
                err.field() + 1
            ),
            _ => format!("the file cannot be read as CSV: {e}"),
        })?;
        if !more {
            return Ok(None);
        }
        if reader::normalise(record) {
            let line = reader::record_line(csv, record, prepared);
            return Ok(Some((CsvRow(std::mem::take(record)), line)));
        }
    }
}

/// The parser thread: read, check, hand over. Skips the first `skip`
/// records (a resumed import), still remembering their keys.
pub(super) fn parse_file<R: Read>(
    mut csv: reader::CsvReader<R>,
    kind: Kind,
    rules: &UserRules,
    blanks: Blanks,
    skip: u64,
    prepared: &reader::Prepared,
    tx: mpsc::SyncSender<Msg>,
) {
    let refuse = |m: String| {
        let _ = tx.send(Msg::Refused(m));
    };
    let mut record = csv::StringRecord::new();
    // The first record: a header for users and groups; for assets, a header
    // or already data.
    let first = match next_row(&mut csv, &mut record, prepared) {
        Ok(Some(first)) => first,
        Ok(None) => return refuse(LayoutError::Empty.to_string()),
        Err(m) => return refuse(m),
    };
    let layout = match Layout::of(kind, &first.0) {
        Ok(l) => l,
        Err(e) => return refuse(format!("line {}: {e}", first.1)),
    };
    if tx.send(layout.ready()).is_err() {
        return;
    }
    let first_is_data = layout.first_is_data();
    let mut rows = Rows {
        csv,
        record,
        layout,
        rules,
        blanks,
        skip,
        prepared,
        seen: SeenKeys::default(),
        records: u64::from(!first_is_data),
        chunk: Vec::with_capacity(CHUNK),
    };
    if let Err(m) = rows.send_all(first_is_data.then_some(first), &tx) {
        refuse(m);
    }
}

/// The parser's state past the header.
struct Rows<'a, R: Read> {
    csv: reader::CsvReader<R>,
    record: csv::StringRecord,
    layout: Layout,
    rules: &'a UserRules,
    blanks: Blanks,
    skip: u64,
    prepared: &'a reader::Prepared,
    seen: SeenKeys,
    /// Records consumed, header included.
    records: u64,
    chunk: Vec<Parsed>,
}

impl<R: Read> Rows<'_, R> {
    /// Read every row (`first` first, when the first record was data) and
    /// send them in chunks; `Err` when reading fails. Returns early,
    /// quietly, when the apply thread hangs up.
    fn send_all(
        &mut self,
        mut first: Option<(CsvRow, u64)>,
        tx: &mpsc::SyncSender<Msg>,
    ) -> Result<(), String> {
        loop {
            let (row, line) = match first.take() {
                Some(r) => r,
                None => match next_row(&mut self.csv, &mut self.record, self.prepared)? {
                    Some(r) => r,
                    None => break,
                },
            };
            self.records += 1;
            if self.records == SIZING_SAMPLE {
                self.size_seen();
            }
            let Some(parsed) = self.check(row, line) else {
                continue;
            };
            self.chunk.push(parsed);
            if self.chunk.len() == CHUNK {
                let rows = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK));
                if tx.send(self.message(rows)).is_err() {
                    return Ok(());
                }
            }
        }
        let rows = std::mem::take(&mut self.chunk);
        let _ = tx.send(self.message(rows));
        Ok(())
    }

    /// Size the uniqueness table once, from the rows seen so far, instead
    /// of doubling it (and holding two) as it fills.
    fn size_seen(&mut self) {
        let per_row = (self.csv.position().byte() / self.records).max(1);
        let keys = self.prepared.size / per_row * self.layout.keys_per_row() * 11 / 10;
        self.seen.reserve(keys as usize);
    }

    /// The row checked; `None` for a row a resumed import skips.
    fn check(&mut self, row: CsvRow, line: u64) -> Option<Parsed> {
        // In-file uniqueness runs on every row, refused or not, and on
        // skipped rows too, so a resumed import judges the same way.
        let (key, dup) = self
            .layout
            .key_and_duplicate(&row, line, self.blanks, &mut self.seen);
        if self.records <= self.skip {
            return None;
        }
        let input = match dup {
            Some(dup) => Err(dup.into_error()),
            None => self.layout.parse(&row, self.rules, self.blanks),
        };
        Some(Parsed { line, key, input })
    }

    fn message(&self, rows: Vec<Parsed>) -> Msg {
        Msg::Rows {
            rows,
            bytes: self.csv.position().byte(),
            records: self.records,
        }
    }
}
