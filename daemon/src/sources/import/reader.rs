//! Reading a CSV file as a stream: one pass for the digest, the size bound
//! and the UTF-8 check, then a `csv` reader that never holds more than one
//! record.
//!
//! Why a first pass: a file that is not UTF-8 is refused whole, before any
//! row is applied, and the digest identifies the file for resuming after a
//! crash. Hashing and validating run at memory speed, so the pass costs a
//! fraction of the import.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use sha2::{Digest, Sha256};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why a file is refused before its rows are read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
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
}

/// What the first pass learnt about a file.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// SHA-256 of the whole file, hex.
    pub digest: String,
    pub size: u64,
    pub delimiter: u8,
    /// Whether a UTF-8 byte-order mark opens the file (it is skipped).
    pub bom: bool,
}

/// Hash and validate `path`; pick the delimiter (`delimiter`, or detected
/// from the first line: `;` when it has more of them than `,`).
pub fn prepare(path: &Path, delimiter: Option<u8>, max_bytes: u64) -> Result<Prepared, FileError> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    if size > max_bytes {
        return Err(FileError::TooLarge {
            size,
            limit: max_bytes,
        });
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    // Bytes of a UTF-8 sequence cut by the end of the previous chunk.
    let mut carry: Vec<u8> = Vec::with_capacity(4);
    let mut offset: u64 = 0; // of the first byte of `carry`
    let mut first_line: Vec<u8> = Vec::new();
    let mut first_line_done = false;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            if !carry.is_empty() {
                return Err(locate_bad_utf8(path, offset, delimiter.unwrap_or(b',')));
            }
            break;
        }
        hasher.update(&buf[..n]);
        if !first_line_done {
            let end = memchr_newline(&buf[..n]);
            first_line.extend_from_slice(&buf[..end.unwrap_or(n)]);
            first_line_done = end.is_some() || first_line.len() > 64 * 1024;
        }
        let mut chunk = std::mem::take(&mut carry);
        chunk.extend_from_slice(&buf[..n]);
        match std::str::from_utf8(&chunk) {
            Ok(_) => offset += chunk.len() as u64,
            Err(e) if e.error_len().is_none() => {
                let good = e.valid_up_to();
                carry.extend_from_slice(&chunk[good..]);
                offset += good as u64;
            }
            Err(e) => {
                let bad = offset + e.valid_up_to() as u64;
                return Err(locate_bad_utf8(path, bad, delimiter.unwrap_or(b',')));
            }
        }
    }
    let bom = first_line.starts_with(BOM);
    let delimiter = delimiter.unwrap_or_else(|| detect_delimiter(&first_line));
    Ok(Prepared {
        digest: hex::encode(hasher.finalize()),
        size,
        delimiter,
        bom,
    })
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|c| *c == b'\n')
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
fn locate_bad_utf8(path: &Path, offset: u64, delimiter: u8) -> FileError {
    let fallback = FileError::NotUtf8 {
        line: 0,
        column: 0,
        offset,
    };
    let Ok(mut reader) = File::open(path).map(|f| csv_reader(BufReader::new(f), delimiter)) else {
        return fallback;
    };
    let mut record = csv::ByteRecord::new();
    loop {
        let start = reader.position().clone();
        match reader.read_byte_record(&mut record) {
            Ok(true) => {
                if reader.position().byte() > offset {
                    if let Err(e) = csv::StringRecord::from_byte_record(record.clone()) {
                        return FileError::NotUtf8 {
                            line: start.line(),
                            column: e.utf8_error().field() + 1,
                            offset,
                        };
                    }
                    return FileError::NotUtf8 {
                        line: start.line(),
                        column: 0,
                        offset,
                    };
                }
            }
            _ => return fallback,
        }
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

/// The record reader of an import.
pub type CsvReader = csv::Reader<BufReader<File>>;

/// A `csv` reader positioned after the byte-order mark. Headers are the
/// caller's to interpret, so the reader treats every record alike; pass
/// each record through [`normalise`].
pub fn open(path: &Path, prepared: &Prepared) -> Result<CsvReader, FileError> {
    let mut file = File::open(path)?;
    if prepared.bom {
        file.seek(SeekFrom::Start(BOM.len() as u64))?;
    }
    Ok(csv_reader(
        BufReader::with_capacity(256 * 1024, file),
        prepared.delimiter,
    ))
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
        let p = prepare(f.path(), None, u64::MAX).unwrap();
        assert_eq!((p.delimiter, p.bom), (b';', true));
        let mut r = open(f.path(), &p).unwrap();
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
        let p = prepare(f.path(), None, u64::MAX).unwrap();
        let mut r = open(f.path(), &p).unwrap();
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
        match prepare(f.path(), None, u64::MAX).unwrap_err() {
            FileError::NotUtf8 { line, column, .. } => assert_eq!((line, column), (2, 3)),
            e => panic!("{e}"),
        }
    }

    #[test]
    fn a_multibyte_character_across_chunks_is_fine() {
        let mut bytes = vec![b'a'; 256 * 1024 - 1];
        bytes.extend_from_slice("é\n".as_bytes());
        let f = file(&bytes);
        assert!(prepare(f.path(), None, u64::MAX).is_ok());
        let f = file(&bytes[..bytes.len() - 2]); // cut inside the é
        assert!(matches!(
            prepare(f.path(), None, u64::MAX),
            Err(FileError::NotUtf8 { .. })
        ));
    }

    #[test]
    fn the_size_is_bounded() {
        let f = file(b"0123456789");
        assert!(matches!(
            prepare(f.path(), None, 5),
            Err(FileError::TooLarge { size: 10, limit: 5 })
        ));
    }
}
