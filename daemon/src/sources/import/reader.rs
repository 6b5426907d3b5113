//! Reading a CSV file as a stream: one pass for the digest, the size bound,
//! the UTF-8 check and the quoting check, then a `csv` reader that never
//! holds more than one record.
//!
//! Why a first pass: a file that is not UTF-8, or whose quote never closes,
//! is refused whole, before any row is applied, and the digest identifies
//! the file for resuming after a crash. Hashing and validating run at
//! memory speed, so the pass costs a fraction of the import.
//!
//! Both passes read one open file ([`open_regular`]), never the path again:
//! what was checked is what is read. The second pass stops at the size the
//! first one hashed, and [`Prepared::changed`] tells whether a writer
//! touched the file since, so bytes that were never hashed are never
//! imported under that digest.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use idsync_schema::csv_quotes::QuoteScan;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Bytes of the first line looked at to detect the delimiter.
const FIRST_LINE_MAX: usize = 64 * 1024;

/// Why a file is refused before its rows are read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}: only regular files are imported")]
    NotRegular(&'static str),
    #[error(
        "the file is {size} bytes, more than the {limit} bytes allowed (import.max_file_bytes)"
    )]
    TooLarge { size: u64, limit: u64 },
    #[error("line {line}, column {column}: the file is not valid UTF-8 (byte offset {offset})")]
    NotUtf8 {
        line: u64,
        column: usize,
        offset: u64,
    },
    #[error(
        "line {line}, column {column}: a quoted value opens here and is never closed; \
         the rest of the file would be read as that one value"
    )]
    UnclosedQuote { line: u64, column: usize },
    #[error("the file changed while it was read (a writer still has it open)")]
    Changed,
}

/// Open `path` for reading only if it is a regular file. A symbolic link
/// is refused unless `follow` (the CLI follows the links its user names;
/// the drop folders never do), and a FIFO or device is refused without
/// blocking on it (`O_NONBLOCK`).
///
/// Why one function: the drop folders' runtime path and their recovery
/// after a crash must refuse the same entries, and the checks must be made
/// on the handle that is then read, not on a path that can change.
pub fn open_regular(path: &Path, follow: bool) -> Result<File, FileError> {
    let mut flags = libc::O_NONBLOCK;
    if !follow {
        flags |= libc::O_NOFOLLOW;
    }
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
    {
        Ok(f) => f,
        // O_NOFOLLOW on a link fails with ELOOP.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(FileError::NotRegular("a symbolic link"))
        }
        Err(e) => return Err(e.into()),
    };
    let kind = file.metadata()?.file_type();
    if kind.is_file() {
        Ok(file)
    } else {
        Err(FileError::NotRegular(if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else {
            "not a regular file"
        }))
    }
}

/// What the first pass learnt about a file.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// SHA-256 of the whole file, hex.
    pub digest: String,
    pub size: u64,
    /// The file's modification time when it was hashed.
    pub modified: Option<SystemTime>,
    pub delimiter: u8,
    /// Whether a UTF-8 byte-order mark opens the file (it is skipped).
    pub bom: bool,
    /// Whether the file's last byte is a line feed ([`record_line`]).
    pub ends_in_newline: bool,
}

impl Prepared {
    /// Whether `file` is no longer what was hashed: its size or its time
    /// moved (a writer still had it open, or wrote it again).
    pub fn changed(&self, file: &File) -> std::io::Result<bool> {
        let m = file.metadata()?;
        Ok(m.len() != self.size || m.modified().ok() != self.modified)
    }
}

/// Hash and validate `file`; pick the delimiter (`delimiter`, or detected
/// from the first line: `;` when it has more of them than `,`).
pub fn prepare(file: &File, delimiter: Option<u8>, max_bytes: u64) -> Result<Prepared, FileError> {
    let meta = file.metadata()?;
    let (size, modified) = (meta.len(), meta.modified().ok());
    if size > max_bytes {
        return Err(FileError::TooLarge {
            size,
            limit: max_bytes,
        });
    }
    let mut input = file.try_clone()?;
    input.seek(SeekFrom::Start(0))?;
    let reread = || {
        let mut again = file.try_clone()?;
        again.seek(SeekFrom::Start(0))?;
        Ok(again)
    };
    let prepared = Prepared {
        modified,
        ..scan(input.take(size), size, delimiter, reread)?
    };
    if prepared.changed(file)? {
        return Err(FileError::Changed);
    }
    Ok(prepared)
}

/// The first pass of [`prepare`] over the `size` bytes of any byte source
/// (no modification time: [`Prepared::changed`] is the caller's); `reread`
/// opens the source again at its start, to place a bad byte.
///
/// Why apart from the file: the `csv_import` fuzz target (`fuzz/`, through
/// [`super::fuzzing`]) drives this same pass over bytes in memory read in
/// pieces of every size, so the chunk-boundary handling of the UTF-8 check
/// and the quote scan is what it tests.
pub(super) fn scan<R: Read, S: Read>(
    mut input: R,
    size: u64,
    delimiter: Option<u8>,
    reread: impl FnOnce() -> std::io::Result<S>,
) -> Result<Prepared, FileError> {
    let mut buf = vec![0u8; 256 * 1024];
    let first = read_first_line(&mut input, &mut buf)?;
    let bom = buf[..first].starts_with(BOM);
    let line_end = buf[..first]
        .iter()
        .position(|c| *c == b'\n')
        .unwrap_or(first)
        .min(FIRST_LINE_MAX);
    let delimiter = delimiter.unwrap_or_else(|| detect_delimiter(&buf[..line_end]));

    let mut hasher = Sha256::new();
    let mut utf8 = Utf8Check::default();
    let mut quotes = QuoteScan::new(delimiter);
    let mut n = first;
    let mut skip = if bom { BOM.len() } else { 0 };
    // The `csv` reader, which reads after our mark, strips a mark at the
    // start of what it reads: a second one. The quote scan reads what it
    // reads (a file with two marks then `"a` was swallowed whole by the
    // reader while the scan, taking the second mark for text, saw a quote
    // in the middle of a value: found by fuzzing).
    if bom && buf[BOM.len()..first].starts_with(BOM) {
        skip += BOM.len();
    }
    let mut last = None;
    while n > 0 {
        let chunk = &buf[..n];
        hasher.update(chunk);
        last = chunk.last().copied();
        if let Err(bad) = utf8.feed(chunk) {
            return Err(locate_bad_utf8(reread, bad, delimiter));
        }
        quotes.feed(&chunk[skip..]);
        skip = 0;
        n = input.read(&mut buf)?;
    }
    if let Some(bad) = utf8.end() {
        return Err(locate_bad_utf8(reread, bad, delimiter));
    }
    if let Some((line, column)) = quotes.unclosed() {
        return Err(FileError::UnclosedQuote { line, column });
    }
    Ok(Prepared {
        digest: hex::encode(hasher.finalize()),
        size,
        modified: None,
        delimiter,
        bom,
        ends_in_newline: last == Some(b'\n'),
    })
}

/// Fill `buf` until it holds the first line (or is full, or the file
/// ends); the bytes read.
fn read_first_line(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() && !buf[..n].contains(&b'\n') {
        match input.read(&mut buf[n..])? {
            0 => break,
            read => n += read,
        }
    }
    Ok(n)
}

/// UTF-8 validation across chunk boundaries.
#[derive(Default)]
struct Utf8Check {
    /// Bytes of a sequence cut by the end of the previous chunk.
    carry: Vec<u8>,
    /// Offset of the first byte of `carry`.
    offset: u64,
}

impl Utf8Check {
    /// Check the next chunk; the offset of the first bad byte.
    fn feed(&mut self, bytes: &[u8]) -> Result<(), u64> {
        let mut chunk = std::mem::take(&mut self.carry);
        chunk.extend_from_slice(bytes);
        match std::str::from_utf8(&chunk) {
            Ok(_) => self.offset += chunk.len() as u64,
            Err(e) if e.error_len().is_none() => {
                let good = e.valid_up_to();
                self.carry.extend_from_slice(&chunk[good..]);
                self.offset += good as u64;
            }
            Err(e) => return Err(self.offset + e.valid_up_to() as u64),
        }
        Ok(())
    }

    /// The offset of a sequence the file's end cut, if any.
    fn end(&self) -> Option<u64> {
        (!self.carry.is_empty()).then_some(self.offset)
    }
}

/// `;` when the first line has more `;` than `,` outside quotes, else `,`.
fn detect_delimiter(line: &[u8]) -> u8 {
    let (mut commas, mut semis, mut quoted) = (0usize, 0usize, false);
    for &c in line {
        match c {
            b'"' => quoted = !quoted,
            b',' if !quoted => commas += 1,
            b';' if !quoted => semis += 1,
            _ => {}
        }
    }
    if semis > commas {
        b';'
    } else {
        b','
    }
}

/// Find the line and column of the bad byte at `offset` by parsing up to it
/// (only ever run on a file that is being refused).
///
/// The line is the bad byte's own, counted from the bytes before it: the
/// `csv` crate's record positions sit before the blank lines it skips, so
/// they named a line too early after a blank line (found by fuzzing).
fn locate_bad_utf8<S: Read>(
    reread: impl FnOnce() -> std::io::Result<S>,
    offset: u64,
    delimiter: u8,
) -> FileError {
    let fallback = FileError::NotUtf8 {
        line: 0,
        column: 0,
        offset,
    };
    let Ok(input) = reread() else {
        return fallback;
    };
    let counted = LinesBefore {
        inner: input,
        at: 0,
        until: offset,
        line_feeds: 0,
    };
    let mut reader = csv_reader(BufReader::new(counted), delimiter);
    let mut record = csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) if reader.position().byte() > offset => {
                let column = csv::StringRecord::from_byte_record(record.clone())
                    .err()
                    .map_or(0, |e| e.utf8_error().field() + 1);
                return FileError::NotUtf8 {
                    line: reader.get_ref().get_ref().line_feeds + 1,
                    column,
                    offset,
                };
            }
            Ok(true) => {}
            _ => return fallback,
        }
    }
}

/// A reader that counts the line feeds among the bytes before `until`.
struct LinesBefore<R> {
    inner: R,
    at: u64,
    until: u64,
    line_feeds: u64,
}

impl<R: Read> Read for LinesBefore<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let before = self.until.saturating_sub(self.at).min(n as u64) as usize;
        self.line_feeds += buf[..before].iter().filter(|&&b| b == b'\n').count() as u64;
        self.at += n as u64;
        Ok(n)
    }
}

fn csv_reader<R: Read>(inner: R, delimiter: u8) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .terminator(csv::Terminator::Any(b'\n'))
        .buffer_capacity(256 * 1024)
        .from_reader(inner)
}

/// The record reader of an import (of a file, but for the fuzz targets).
pub type CsvReader<R = File> = csv::Reader<BufReader<std::io::Take<R>>>;

/// A `csv` reader over `file`, positioned after the byte-order mark and
/// ending where the hashed bytes end. Headers are the caller's to
/// interpret, so the reader treats every record alike; pass each record
/// through [`normalise`].
pub fn open(file: &File, prepared: &Prepared) -> Result<CsvReader, FileError> {
    open_source(file.try_clone()?, prepared)
}

/// [`open`] over any seekable byte source (the fuzz targets' bytes in
/// memory).
pub(super) fn open_source<R: Read + Seek>(
    mut input: R,
    prepared: &Prepared,
) -> Result<CsvReader<R>, FileError> {
    let start = if prepared.bom { BOM.len() as u64 } else { 0 };
    input.seek(SeekFrom::Start(start))?;
    Ok(csv_reader(
        BufReader::with_capacity(256 * 1024, input.take(prepared.size - start)),
        prepared.delimiter,
    ))
}

/// The line the record `csv` has just read into `record` starts on.
///
/// Why not the record's own position: the `csv` crate places a record
/// where its read began, before the blank lines (a lone `\n`) it skips, so
/// a row after a blank line was named one line early per blank line (found
/// by fuzzing). Counted back from where the record ended instead: less its
/// line breaks inside quoted values, and less its own line end unless the
/// end of the file ended it.
pub fn record_line<R: Read>(
    csv: &CsvReader<R>,
    record: &csv::StringRecord,
    prepared: &Prepared,
) -> u64 {
    let end = csv.position();
    let body = prepared.size - if prepared.bom { BOM.len() as u64 } else { 0 };
    let own_line_end = end.byte() < body || prepared.ends_in_newline;
    let inside: usize = record.iter().map(|v| v.matches('\n').count()).sum();
    end.line()
        .saturating_sub(inside as u64 + u64::from(own_line_end))
        .max(1)
}

/// Drop the `\r` of a CRLF line end; false for a blank line.
///
/// Why by hand: with its default terminator the `csv` crate takes `\r` and
/// `\n` as two line ends, and then miscounts lines (the second record of
/// `a\r\nb\r\n` came out on line 1). Terminating on `\n` alone keeps its
/// line numbers exact, which reports depend on, and leaves the `\r` here.
pub fn normalise(record: &mut csv::StringRecord) -> bool {
    let n = record.len();
    if let Some(stripped) = record
        .get(n.wrapping_sub(1))
        .and_then(|f| f.strip_suffix('\r'))
    {
        let stripped = stripped.to_owned();
        record.truncate(n - 1);
        record.push_field(&stripped);
    }
    !(record.len() == 1 && record.get(0) == Some(""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    #[test]
    fn detects_semicolons_and_the_bom() {
        let f = file(b"\xEF\xBB\xBFstatus;mail;lastName\r\nactive;a@x.org;\"Smith, Jr\"\r\n");
        let p = prepare(f.as_file(), None, u64::MAX).unwrap();
        assert_eq!((p.delimiter, p.bom), (b';', true));
        let mut r = open(f.as_file(), &p).unwrap();
        let rows: Vec<csv::StringRecord> = r
            .records()
            .map(Result::unwrap)
            .filter_map(|mut rec| normalise(&mut rec).then_some(rec))
            .collect();
        assert_eq!(&rows[0][0], "status", "the BOM is skipped");
        assert_eq!(&rows[1][2], "Smith, Jr");
    }

    #[test]
    fn lines_are_counted_right_with_crlf_quoted_newlines_and_blank_lines() {
        let f = file(b"h1;h2\r\na;\"x\r\ny\"\r\n\r\nc;d\r\ne;f");
        let p = prepare(f.as_file(), None, u64::MAX).unwrap();
        let mut r = open(f.as_file(), &p).unwrap();
        let mut record = csv::StringRecord::new();
        let mut seen = Vec::new();
        while r.read_record(&mut record).unwrap() {
            if normalise(&mut record) {
                let line = record.position().unwrap().line();
                seen.push((line, record.iter().map(str::to_owned).collect::<Vec<_>>()));
            }
        }
        let lines: Vec<u64> = seen.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [1, 2, 5, 6]);
        assert_eq!(
            seen[1].1,
            ["a", "x\r\ny"],
            "line breaks inside quotes are kept"
        );
        assert_eq!(seen[0].1, ["h1", "h2"]);
    }

    #[test]
    fn commas_inside_quotes_do_not_count() {
        assert_eq!(detect_delimiter(b"\"a,b,c\";x;y"), b';');
        assert_eq!(detect_delimiter(b"a,b;c,d"), b',');
        assert_eq!(detect_delimiter(b""), b',');
    }

    #[test]
    fn invalid_utf8_names_line_and_column() {
        let f = file(b"status,mail,lastName\nactive,a@x.org,Sm\xFFith\n");
        match prepare(f.as_file(), None, u64::MAX).unwrap_err() {
            FileError::NotUtf8 { line, column, .. } => assert_eq!((line, column), (2, 3)),
            e => panic!("{e}"),
        }
        // After blank lines, and inside a quoted value over two lines: the
        // bad byte's own line.
        let f = file(b"status,mail,lastName\n\n\nactive,a@x.org,\"Sm\nit\xFFh\"\n");
        match prepare(f.as_file(), None, u64::MAX).unwrap_err() {
            FileError::NotUtf8 { line, column, .. } => assert_eq!((line, column), (5, 3)),
            e => panic!("{e}"),
        }
    }

    #[test]
    fn a_multibyte_character_across_chunks_is_fine() {
        let mut bytes = vec![b'a'; 256 * 1024 - 1];
        bytes.extend_from_slice("é\n".as_bytes());
        let f = file(&bytes);
        assert!(prepare(f.as_file(), None, u64::MAX).is_ok());
        let f = file(&bytes[..bytes.len() - 2]); // cut inside the é
        assert!(matches!(
            prepare(f.as_file(), None, u64::MAX),
            Err(FileError::NotUtf8 { .. })
        ));
    }

    #[test]
    fn only_regular_files_are_opened() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("outside.csv");
        std::fs::write(&target, "a\n").unwrap();
        let link = dir.path().join("link.csv");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let refused = |p: &Path, follow| match open_regular(p, follow) {
            Err(FileError::NotRegular(what)) => what,
            other => panic!("{other:?}"),
        };
        assert_eq!(refused(&link, false), "a symbolic link");
        assert!(open_regular(&link, true).is_ok(), "the CLI follows links");
        assert_eq!(refused(dir.path(), false), "a directory");
        let fifo = dir.path().join("pipe.csv");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert_eq!(refused(&fifo, false), "a FIFO", "refused without blocking");
    }

    #[test]
    fn an_unclosed_quote_is_refused_before_any_row() {
        let f = file(b"name;description\nops;\"Operations\nsec;Security\n");
        match prepare(f.as_file(), None, u64::MAX).unwrap_err() {
            FileError::UnclosedQuote { line, column } => assert_eq!((line, column), (2, 2)),
            e => panic!("{e}"),
        }
        let f = file(b"\xEF\xBB\xBF\"name\"\n\"ops\"\n");
        assert!(prepare(f.as_file(), None, u64::MAX).is_ok(), "after a BOM");
        // Two marks: the reader strips the second too, so a quote after it
        // opens a value, as the scan must see it.
        let f = file(b"\xEF\xBB\xBF\xEF\xBB\xBF\"name\nops\n");
        match prepare(f.as_file(), None, u64::MAX).unwrap_err() {
            FileError::UnclosedQuote { line, column } => assert_eq!((line, column), (1, 1)),
            e => panic!("{e}"),
        }
        let f = file(b"\xEF\xBB\xBF\xEF\xBB\xBF\"name\"\n\"ops\"\n");
        let p = prepare(f.as_file(), None, u64::MAX).expect("well quoted after two marks");
        let rows: Vec<csv::StringRecord> = open(f.as_file(), &p)
            .unwrap()
            .records()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(&rows[0][0], "name", "both marks are gone before the header");
    }

    #[test]
    fn a_file_changed_after_hashing_is_noticed_and_read_no_further() {
        let mut f = file(b"name\nops\n");
        let p = prepare(f.as_file(), None, u64::MAX).unwrap();
        assert!(!p.changed(f.as_file()).unwrap());
        f.write_all(b"late\n").unwrap();
        f.flush().unwrap();
        assert!(p.changed(f.as_file()).unwrap());
        let mut r = open(f.as_file(), &p).unwrap();
        let rows: Vec<String> = r.records().map(|rec| rec.unwrap()[0].to_owned()).collect();
        assert_eq!(rows, ["name", "ops"], "only the bytes that were hashed");
    }

    #[test]
    fn the_first_pass_over_any_source_judges_as_over_the_file() {
        // What the fuzz target runs (`scan` over memory read in small
        // pieces) is what `prepare` runs over the opened file.
        struct Pieces<'a>(&'a [u8]);
        impl Read for Pieces<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(2).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        for bytes in [
            &b"\xEF\xBB\xBFstatus;mail\r\nactive;\"a@x.org\"\r\n"[..],
            b"name\nops\n\"unclosed\nsec\n",
            b"name\nS\xC3mith\n",
        ] {
            let f = file(bytes);
            let size = bytes.len() as u64;
            let scanned = scan(Pieces(bytes), size, None, || Ok(bytes));
            match (prepare(f.as_file(), None, u64::MAX), scanned) {
                (Ok(p), Ok(s)) => assert_eq!(
                    (p.digest, p.size, p.delimiter, p.bom),
                    (s.digest, s.size, s.delimiter, s.bom)
                ),
                (Err(p), Err(s)) => assert_eq!(p.to_string(), s.to_string()),
                (p, s) => panic!("{p:?} against {s:?}"),
            }
        }
    }

    #[test]
    fn rows_after_blank_lines_are_on_their_own_lines() {
        // Found by fuzzing (fuzz/regressions/csv_import/): the `csv`
        // crate's own record position is the line its read began on,
        // before the blank lines it skipped.
        for (bytes, want) in [
            (&b"h\n\nx\n"[..], &[1, 3][..]),
            (b"h\n\n\nx", &[1, 4]),
            (b"\n\nh\r\n\r\n\nx\r\n", &[3, 6]),
            (b"h\nq\n\n\"x\ny\"\n\nz\n\n", &[1, 2, 4, 7]),
            (b"\xEF\xBB\xBF\nh,\"a\n\nb\"\n\n\"c\nd\"", &[2, 6]),
        ] {
            let f = file(bytes);
            let p = prepare(f.as_file(), None, u64::MAX).unwrap();
            let mut r = open(f.as_file(), &p).unwrap();
            let mut record = csv::StringRecord::new();
            let mut lines = Vec::new();
            while r.read_record(&mut record).unwrap() {
                if normalise(&mut record) {
                    lines.push(record_line(&r, &record, &p));
                }
            }
            assert_eq!(lines, want, "{}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn the_size_is_bounded() {
        let f = file(b"0123456789");
        assert!(matches!(
            prepare(f.as_file(), None, 5),
            Err(FileError::TooLarge { size: 10, limit: 5 })
        ));
    }
}
