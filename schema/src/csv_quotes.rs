//! Where a CSV file's quoting goes wrong: a quoted value that opens and
//! never closes.
//!
//! Why this exists: the `csv` crate reads an unclosed quote to the end of
//! the file and hands back one record whose last value is the rest of the
//! file, with no error. An import would then apply that record and count
//! none of the lines it swallowed. Scanning the bytes once with the same
//! quoting rules (RFC 4180, as the `csv` crate reads it: a quote opens a
//! quoted value only at the start of a value, `""` inside one is a quote,
//! and a quote elsewhere is an ordinary character) finds the line where the
//! quote opened, so the file is refused naming it before any row is applied.

/// A streaming scan of a file's bytes (after any byte-order mark).
#[derive(Debug, Clone)]
pub struct QuoteScan {
    delimiter: u8,
    state: State,
    /// 1-based line of the byte being read.
    line: u64,
    /// 1-based value of the record being read.
    column: usize,
    /// Where the quoted value being read opened.
    opened: (u64, usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a value.
    Start,
    /// Inside a value that did not open with a quote.
    Unquoted,
    /// Inside a quoted value.
    Quoted,
    /// Just after a quote inside a quoted value: it closed the value, or
    /// the next byte is a second quote.
    QuoteInQuoted,
}

impl QuoteScan {
    pub fn new(delimiter: u8) -> Self {
        Self {
            delimiter,
            state: State::Start,
            line: 1,
            column: 1,
            opened: (0, 0),
        }
    }

    /// Read the next bytes of the file.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.byte(b);
        }
    }

    fn byte(&mut self, b: u8) {
        if b == b'\n' {
            self.line += 1;
        }
        self.state = match (self.state, b) {
            (State::Quoted, b'"') => State::QuoteInQuoted,
            (State::Quoted, _) => State::Quoted,
            (State::QuoteInQuoted, b'"') => State::Quoted,
            (State::Start, b'"') => {
                self.opened = (self.line, self.column);
                State::Quoted
            }
            (_, b'\n') => {
                self.column = 1;
                State::Start
            }
            (_, d) if d == self.delimiter => {
                self.column += 1;
                State::Start
            }
            _ => State::Unquoted,
        };
    }

    /// At the end of the file: the line and column (the value's position
    /// in its record) where a quoted value opened that never closed.
    pub fn unclosed(&self) -> Option<(u64, usize)> {
        (self.state == State::Quoted).then_some(self.opened)
    }
}

#[cfg(test)]
mod tests {
    use super::QuoteScan;

    fn scan(bytes: &[u8]) -> Option<(u64, usize)> {
        let mut s = QuoteScan::new(b',');
        // Byte by byte as well as whole: chunk borders must not matter.
        for b in bytes {
            s.feed(std::slice::from_ref(b));
        }
        let mut whole = QuoteScan::new(b',');
        whole.feed(bytes);
        assert_eq!(whole.unclosed(), s.unclosed());
        s.unclosed()
    }

    #[test]
    fn well_quoted_files_pass() {
        for ok in [
            &b"a,b\n1,2\n"[..],
            b"a,\"b, c\"\n",
            b"a,\"multi\nline\"\nx,y\n",
            b"a,\"say \"\"hi\"\"\"\n",
            b"a,b\"c\n",   // a quote inside an unquoted value is a character
            b"a,\"b\"c\n", // text after a closing quote belongs to the value
            b"a,\"\"\n",   // an empty quoted value
            b"\"a\"",      // no line end at the end of the file
            b"",
        ] {
            assert_eq!(scan(ok), None, "{}", String::from_utf8_lossy(ok));
        }
    }

    #[test]
    fn an_unclosed_quote_names_its_line_and_column() {
        assert_eq!(
            scan(b"name,description\nops,\"never closed\nx,y\nz,w\n"),
            Some((2, 2))
        );
        assert_eq!(scan(b"a,b,c\n1,2,3\n4,5,\"Smith\n6,7,8\n"), Some((3, 3)));
        assert_eq!(scan(b"\"a"), Some((1, 1)));
        assert_eq!(
            scan(b"a,\"b\"\"\n"),
            Some((1, 2)),
            "an escaped quote does not close"
        );
    }

    #[test]
    fn the_delimiter_is_the_files() {
        let mut s = QuoteScan::new(b';');
        s.feed(b"a;b\nx;\"y\n");
        assert_eq!(s.unclosed(), Some((2, 2)));
        let mut s = QuoteScan::new(b';');
        s.feed(b"a,\"b\n"); // with `;`, the quote is inside a value
        assert_eq!(s.unclosed(), None);
    }
}
