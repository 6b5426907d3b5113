//! Fuzz target `csv_import`: the CSV import up to the store, as
//! `idsync::sources::import::import_file` runs it: the first pass (size,
//! SHA-256, UTF-8, delimiter, BOM), the `csv` reader, the layouts of
//! `idsync_schema::csv_format` with the value rules, and the parser
//! thread's in-file uniqueness and resume logic.
//!
//! Why: import files come from HR exports and operators' spreadsheets,
//! and one bad byte must cost one rejected row or one refused file, never
//! a panic. Input: a configuration byte (kind, blanks rule, delimiter,
//! group separator, exclude lists), the read size of the first pass (so
//! its UTF-8 chunk boundaries fall anywhere), the records a resumed import
//! skips, then the file. Checked, beyond not panicking:
//! - the first pass agrees with an oracle: refuses exactly what is not
//!   UTF-8, at the first bad byte, on a line of the file; digests the
//!   bytes; finds the BOM and the delimiter of the first line;
//! - the quote scan (`idsync_schema::csv_quotes`) agrees with the `csv`
//!   crate, read as the import reads: it refuses a UTF-8 file exactly when
//!   a quoted value runs to the end of the file (a line appended after it
//!   is swallowed by the last record instead of being a record of its
//!   own), and names the line and column where that value opened;
//! - a UTF-8 file is refused only for its layout, and then at once;
//! - rows arrive in order of their lines, every byte is read, and every
//!   record is a header or a row; without quotes every non-blank physical
//!   line is one record on its own line number (CRLF, blank lines, BOM);
//! - accepted rows pass their rules again, the report shows their key
//!   (strict mode), no two accepted rows share a key value (mail,
//!   loginName, displayName, name, without case), and a repeated key is
//!   refused naming the line that first used it;
//! - a resumed import judges the rows after the skipped ones exactly as an
//!   uninterrupted one (what resuming after a crash relies on).

use std::collections::HashMap;

use idsync::sources::import::fuzzing::{
    parse_bytes, Accepted, FirstPass, Message, Options, Outcome, Row,
};
use idsync_schema::csv_format::{Blanks, LayoutError};
use idsync_schema::rules::{ExcludeLists, RuleSet};
use idsync_schema::{Field, Kind, Rule, UserRules};
use sha2::{Digest, Sha256};

const BOM: &[u8] = b"\xEF\xBB\xBF";

fn options(cfg: u8, piece: u8) -> Options {
    let exclude = if cfg & 0x40 != 0 {
        ExcludeLists::new([("firstName", vec!["Admin"]), ("loginName", vec!["root"])])
    } else {
        ExcludeLists::default()
    };
    Options {
        kind: match cfg & 3 {
            1 => Kind::Group,
            2 => Kind::Asset,
            _ => Kind::User,
        },
        blanks: if cfg & 4 != 0 {
            Blanks::Lenient
        } else {
            Blanks::Strict
        },
        delimiter: match (cfg >> 3) & 3 {
            0 => None,
            1 => Some(b','),
            2 => Some(b';'),
            _ => Some(b'\t'),
        },
        rules: UserRules {
            group_separator: if cfg & 0x20 != 0 { ';' } else { '|' },
            exclude,
            // The CSV import's rules (seed 003): mail and lastName required.
            set: RuleSet::SEED,
        },
        skip: 0,
        // 0: the whole file in one read, as a small file is read.
        piece: if piece == 0 {
            usize::MAX
        } else {
            usize::from(piece)
        },
    }
}

pub fn run(data: &[u8]) {
    let [cfg, piece, skip, file @ ..] = data else {
        return;
    };
    let opts = options(*cfg, *piece);
    let full = parse_bytes(file, &opts);
    check_first_pass(file, &opts, &full.first_pass);
    let FirstPass::Accepted { bom, delimiter, .. } = full.first_pass else {
        assert!(full.messages.is_empty(), "rows of a refused file");
        return;
    };
    let body = if bom { &file[BOM.len()..] } else { file };
    let header = check_messages(body, &opts, &full.messages);
    if !body.contains(&b'"') {
        check_lines(body, delimiter, &full, header);
    }
    let skip = u64::from(*skip % 16);
    if skip > 0 {
        let resumed = parse_bytes(file, &Options { skip, ..opts });
        check_resume(&full, &resumed, skip, header);
    }
}

fn check_first_pass(file: &[u8], opts: &Options, got: &FirstPass) {
    match std::str::from_utf8(file) {
        Ok(_) => {
            let bom = file.starts_with(BOM);
            let first_line = file.split(|b| *b == b'\n').next().unwrap_or_default();
            let delimiter = opts.delimiter.unwrap_or_else(|| detect(first_line));
            let body = if bom { &file[BOM.len()..] } else { file };
            let unclosed = unclosed_quote(body, delimiter);
            if let FirstPass::UnclosedQuote { line, column } = got {
                let Some((start, fields)) = unclosed else {
                    panic!("well quoted, yet refused: {got:?}");
                };
                assert_eq!(*column, fields, "the column of the unclosed value");
                let lines = 1 + body.iter().filter(|b| **b == b'\n').count() as u64;
                assert!(
                    (start..=lines).contains(line),
                    "line {line}: the record starts on {start}, the file has {lines}"
                );
                return;
            }
            assert_eq!(unclosed, None, "an unclosed quote accepted: {got:?}");
            let FirstPass::Accepted {
                digest,
                delimiter: found,
                bom: found_bom,
            } = got
            else {
                panic!("UTF-8 refused: {got:?}");
            };
            assert_eq!(digest, &hex::encode(Sha256::digest(file)));
            assert_eq!(*found_bom, bom);
            assert_eq!(*found, delimiter, "delimiter");
        }
        Err(e) => {
            let FirstPass::NotUtf8 { line, offset, .. } = got else {
                panic!("not UTF-8 at {}, yet {got:?}", e.valid_up_to());
            };
            assert_eq!(*offset, e.valid_up_to() as u64, "the first bad byte");
            let lines = 1 + file.iter().filter(|b| **b == b'\n').count() as u64;
            assert!((1..=lines).contains(line), "line {line} of {lines}");
        }
    }
}

/// Whether the `csv` crate, reading `body` as the import does, ends inside
/// a quoted value: then a line appended to the file is swallowed by the
/// last record instead of being read as a record of its own. If so, the
/// line where the last record starts and its number of values (the
/// unclosed one is its last).
fn unclosed_quote(body: &[u8], delimiter: u8) -> Option<(u64, usize)> {
    let last = |bytes: &[u8]| {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .terminator(csv::Terminator::Any(b'\n'))
            .from_reader(bytes);
        let mut last = None;
        for record in reader.byte_records() {
            let record = record.expect("the csv crate reads any bytes");
            let line = record.position().map_or(0, |p| p.line());
            last = Some((line, record));
        }
        last
    };
    let mut probe = body.to_vec();
    probe.extend_from_slice(b"\nX");
    let (_, appended) = last(&probe).expect("at least the appended record");
    if appended.len() == 1 && &appended[0] == b"X" {
        return None;
    }
    let (line, record) = last(body).expect("a record holds the open quote");
    Some((line, record.len()))
}

/// The delimiter rule of the import's documentation: `;` when the first
/// line has more of them than `,` outside quotes.
fn detect(line: &[u8]) -> u8 {
    let (mut commas, mut semis, mut quoted) = (0, 0, false);
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

/// Whether line `n` (1-based) can hold the first record: every line
/// before it is one the reader skips as blank (a record of one empty
/// field: nothing, `""`, either with a `\r`; or `"\r"`, as the reader
/// takes a last value's trailing `\r` for the CR of a CRLF line end even
/// inside quotes, docs/formats.md).
fn header_can_be_on(body: &[u8], n: usize) -> bool {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let blank = |l: &[u8]| {
        matches!(
            l,
            b"" | b"\r" | b"\"\"" | b"\"\"\r" | b"\"\r\"" | b"\"\r\"\r"
        )
    };
    let lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    n >= 1 && n <= lines.len() && lines[..n - 1].iter().all(|l| blank(l))
}

/// The rows of every `Rows` message, in order.
fn rows(messages: &[Message]) -> Vec<&Row> {
    messages
        .iter()
        .flat_map(|m| match m {
            Message::Rows { rows, .. } => rows.iter().collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// The message protocol and the rows; returns whether the first record
/// was a header (`None` when the layout was refused).
fn check_messages(body: &[u8], opts: &Options, messages: &[Message]) -> Option<bool> {
    match messages.first() {
        Some(Message::Ready { .. }) => {}
        Some(Message::Refused(m)) => {
            let named = m
                .strip_prefix("line ")
                .and_then(|r| r.split_once(": "))
                .and_then(|(n, _)| n.parse::<usize>().ok());
            let layout = named.is_some_and(|n| header_can_be_on(body, n))
                || *m == LayoutError::Empty.to_string();
            assert!(layout, "a UTF-8 file refused for more than its layout: {m}");
            assert_eq!(messages.len(), 1, "messages after a refusal");
            return None;
        }
        other => panic!("the first message is {other:?}"),
    }
    let (mut bytes, mut records) = (0, 0);
    for m in &messages[1..] {
        let Message::Rows {
            bytes: b,
            records: r,
            ..
        } = m
        else {
            panic!("after the layout: {m:?}");
        };
        assert!(*b >= bytes && *r >= records, "progress goes back");
        (bytes, records) = (*b, *r);
    }
    assert!(messages.len() > 1, "no final chunk");
    assert_eq!(bytes, body.len() as u64, "every byte read");
    let rows = rows(messages);
    let header = records - rows.len() as u64;
    assert!(header <= 1, "{records} records, {} rows", rows.len());
    assert!(
        header == 1 || opts.kind == Kind::Asset,
        "a header is required"
    );
    let lines = 1 + body.iter().filter(|b| **b == b'\n').count() as u64;
    let mut last = 0;
    for row in &rows {
        assert!(row.line > last && row.line <= lines, "line {}", row.line);
        last = row.line;
    }
    check_rows(opts, &rows);
    Some(header == 1)
}

/// Text compared as the in-file uniqueness table compares it.
fn lower(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

/// The values an accepted row must not share with another accepted row.
fn unique_values(input: &Accepted) -> Vec<(&'static str, &str)> {
    match input {
        Accepted::User(u) => {
            let mut v = Vec::new();
            if let Field::Set(mail) = &u.mail {
                v.push(("mail", mail.as_str()));
            }
            if let Field::Set(login) = &u.login_name {
                v.push(("loginName", login));
            }
            v
        }
        Accepted::Group(g) => vec![("displayName", &g.display_name)],
        Accepted::Asset(a) => vec![("name", &a.name)],
    }
}

fn check_rows(opts: &Options, rows: &[&Row]) {
    // Each row's key (lower-cased) → the line that used it first.
    let mut first: HashMap<String, u64> = HashMap::new();
    let mut accepted: HashMap<(&str, String), u64> = HashMap::new();
    for row in rows {
        let earlier = (!row.key.is_empty())
            .then(|| first.get(&lower(&row.key)).copied())
            .flatten();
        first.entry(lower(&row.key)).or_insert(row.line);
        let input = match &row.input {
            Ok(input) => input,
            Err(e) => {
                if let Rule::DuplicateInFile { line } = e.violation.rule {
                    assert!(line < row.line, "duplicate of a later line");
                    if let Some(at) = earlier {
                        assert_eq!(line, at, "line {}: the first use", row.line);
                    } else {
                        // Only a loginName can repeat without the key.
                        assert_eq!(e.violation.attribute, "loginName", "{e:?}");
                    }
                } else {
                    assert_eq!(
                        earlier, None,
                        "line {}: repeated key {:?}",
                        row.line, row.key
                    );
                }
                continue;
            }
        };
        assert_eq!(
            earlier, None,
            "line {}: repeated key {:?}",
            row.line, row.key
        );
        let (kind, key, valid) = match input {
            // Seed 003's rules require a mail, so an accepted user has one.
            Accepted::User(u) => (Kind::User, u.mail.value(), u.validate(&opts.rules)),
            Accepted::Group(g) => (
                Kind::Group,
                Some(&g.display_name),
                g.validate(&opts.rules.set),
            ),
            Accepted::Asset(a) => (Kind::Asset, Some(&a.name), a.validate(&opts.rules.set)),
        };
        assert_eq!(kind, opts.kind);
        assert_eq!(
            valid,
            Ok(()),
            "line {}: accepted against the rules",
            row.line
        );
        if opts.blanks == Blanks::Strict {
            let key = key.expect("an accepted row has its key");
            // Blanks are space and tab (a no-break space is a value).
            assert_eq!(
                key.trim_matches([' ', '\t']),
                row.key,
                "line {}: the report's key",
                row.line
            );
        }
        for (attr, value) in unique_values(input) {
            if let Some(at) = accepted.insert((attr, lower(value)), row.line) {
                panic!("lines {at} and {}: {attr} {value:?} twice", row.line);
            }
        }
    }
}

/// Without quotes, records are physical lines: every non-blank line (CRLF
/// or LF, after the BOM) is one record, numbered as an editor numbers it.
fn check_lines(body: &[u8], delimiter: u8, full: &Outcome, header: Option<bool>) {
    let records: Vec<u64> = body
        .split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, line)| !matches!(line, [] | [b'\r']))
        .map(|(i, _)| i as u64 + 1)
        .collect();
    let Some(header) = header else {
        if records.is_empty() {
            let empty = Message::Refused(LayoutError::Empty.to_string());
            assert_eq!(full.messages, [empty]);
        }
        return;
    };
    let lines: Vec<u64> = rows(&full.messages).iter().map(|r| r.line).collect();
    let data = &records[usize::from(header).min(records.len())..];
    assert_eq!(
        lines, data,
        "the row lines (delimiter {:?})",
        delimiter as char
    );
}

fn check_resume(full: &Outcome, resumed: &Outcome, skip: u64, header: Option<bool>) {
    assert_eq!(resumed.first_pass, full.first_pass);
    let Some(header) = header else {
        assert_eq!(resumed.messages, full.messages);
        return;
    };
    assert_eq!(resumed.messages[0], full.messages[0], "the layout");
    let all = rows(&full.messages);
    let skipped = (skip.saturating_sub(u64::from(header)) as usize).min(all.len());
    assert_eq!(
        rows(&resumed.messages),
        all[skipped..],
        "resumed after {skip}"
    );
    let last = |o: &Outcome| match o.messages.last() {
        Some(Message::Rows { bytes, records, .. }) => (*bytes, *records),
        other => panic!("last message {other:?}"),
    };
    assert_eq!(last(resumed), last(full), "bytes and records");
}
