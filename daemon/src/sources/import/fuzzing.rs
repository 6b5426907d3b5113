//! The CSV import's parse path over bytes in memory: the entry point of the
//! `csv_import` fuzz target (`fuzz/`) and of the test that replays its
//! corpus (`tests/tests/fuzz_corpora.rs`). Not an API: hidden from the docs.
//!
//! Why here and not in the fuzz target: it runs exactly what
//! [`super::import_file`] runs before the store (the first pass
//! [`reader::scan`]: size, SHA-256, UTF-8, delimiter, BOM, unclosed
//! quotes; the reader [`reader::open_source`], the parser thread
//! [`parse::parse_file`] and its channel) and hands back every message the
//! apply thread would have received. Only the byte source differs: memory
//! read in pieces of a chosen size instead of a file, so the first pass's
//! chunk boundaries fall anywhere.

use std::io::{Cursor, Read};
use std::sync::mpsc;

use idsync_schema::csv_format::{Blanks, RowError};
use idsync_schema::{AssetInput, GroupInput, Kind, UserInput, UserRules};

use super::parse::{self, Input, Msg};
use super::reader::{self, FileError};

/// How to read the bytes: what [`super::ImportOptions`] and a resumed
/// import decide for a file.
#[derive(Debug, Clone)]
pub struct Options {
    pub kind: Kind,
    pub blanks: Blanks,
    pub delimiter: Option<u8>,
    pub rules: UserRules,
    /// Records a resumed import skips (their keys are still remembered).
    pub skip: u64,
    /// Most bytes one `read` of the first pass returns (at least 1).
    pub piece: usize,
}

/// What the first pass said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstPass {
    /// Accepted: the SHA-256 (hex), the delimiter, whether a BOM opens it.
    Accepted {
        digest: String,
        delimiter: u8,
        bom: bool,
    },
    /// Refused as not UTF-8, with the place reported.
    NotUtf8 {
        line: u64,
        column: usize,
        offset: u64,
    },
    /// Refused for a quoted value that never closes, where it opened.
    UnclosedQuote { line: u64, column: usize },
    /// Refused for another reason (the message).
    Other(String),
}

/// A row's verdict, as the apply thread receives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Accepted {
    User(Box<UserInput>),
    Group(GroupInput),
    Asset(Box<AssetInput>),
}

/// One parsed row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub line: u64,
    pub key: String,
    pub input: Result<Accepted, RowError>,
}

/// One message of the parser thread.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Ready {
        warnings: Vec<String>,
        columns: Vec<(&'static str, usize)>,
    },
    Rows {
        rows: Vec<Row>,
        bytes: u64,
        records: u64,
    },
    Refused(String),
}

/// Everything the import saw of `bytes` before the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub first_pass: FirstPass,
    /// The parser thread's messages, in order (none when the first pass
    /// refused the file).
    pub messages: Vec<Message>,
}

/// A reader that returns at most `piece` bytes per call.
struct Pieces<'a> {
    rest: &'a [u8],
    piece: usize,
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.piece).min(self.rest.len());
        buf[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        Ok(n)
    }
}

/// Run the import's parse path over `bytes`.
pub fn parse_bytes(bytes: &[u8], opts: &Options) -> Outcome {
    let source = Pieces {
        rest: bytes,
        piece: opts.piece.max(1),
    };
    let size = bytes.len() as u64;
    let prepared = match reader::scan(source, size, opts.delimiter, || Ok(Cursor::new(bytes))) {
        Ok(p) => p,
        Err(e) => {
            let first_pass = match e {
                FileError::NotUtf8 {
                    line,
                    column,
                    offset,
                } => FirstPass::NotUtf8 {
                    line,
                    column,
                    offset,
                },
                FileError::UnclosedQuote { line, column } => {
                    FirstPass::UnclosedQuote { line, column }
                }
                e => FirstPass::Other(e.to_string()),
            };
            return Outcome {
                first_pass,
                messages: Vec::new(),
            };
        }
    };
    let first_pass = FirstPass::Accepted {
        digest: prepared.digest.clone(),
        delimiter: prepared.delimiter,
        bom: prepared.bom,
    };
    let csv = match reader::open_source(Cursor::new(bytes), &prepared) {
        Ok(csv) => csv,
        Err(e) => {
            return Outcome {
                first_pass: FirstPass::Other(e.to_string()),
                messages: Vec::new(),
            }
        }
    };
    // The parser thread and its bounded channel, as `apply::run` has them.
    let received: Vec<Msg> = std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel(8);
        let (kind, blanks, skip, rules) = (opts.kind, opts.blanks, opts.skip, &opts.rules);
        scope.spawn(move || parse::parse_file(csv, kind, rules, blanks, skip, &prepared, tx));
        rx.into_iter().collect()
    });
    Outcome {
        first_pass,
        messages: received.into_iter().map(message).collect(),
    }
}

fn message(m: Msg) -> Message {
    match m {
        Msg::Ready { warnings, columns } => Message::Ready { warnings, columns },
        Msg::Refused(m) => Message::Refused(m),
        Msg::Rows {
            rows,
            bytes,
            records,
        } => Message::Rows {
            rows: rows
                .into_iter()
                .map(|p| Row {
                    line: p.line,
                    key: p.key,
                    input: p.input.map(|i| match i {
                        Input::User(u) => Accepted::User(u),
                        Input::Group(g) => Accepted::Group(g),
                        Input::Asset(a) => Accepted::Asset(a),
                    }),
                })
                .collect(),
            bytes,
            records,
        },
    }
}
