//! Log lines that user input cannot forge.
//!
//! File names, header values and error texts come from outside; written
//! raw, a newline in a dropped file's name makes a genuine-looking log
//! line, and an escape sequence rewrites the operator's terminal. In the
//! text format every field and message is written with control characters
//! escaped (`\n`, `\u{1b}`); the JSON format escapes them itself.

use std::fmt::Write as _;

use tracing_subscriber::field::MakeExt as _;
use tracing_subscriber::fmt::format::Writer;

/// `text` with every control character escaped as Rust writes it in a
/// string literal; everything else as it is.
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The text format's fields: `name=value`, the message bare, control
/// characters escaped in both.
pub fn escaping_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    tracing_subscriber::fmt::format::debug_fn(
        |w: &mut Writer<'_>, field: &tracing::field::Field, value: &dyn std::fmt::Debug| {
            let text = escape_controls(&format!("{value:?}"));
            match field.name() {
                "message" => write!(w, "{text}"),
                name => write!(w, "{name}={text}"),
            }
        },
    )
    .delimited(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_nothing_else() {
        assert_eq!(
            escape_controls("x\n2026-12-03 INFO idsync: imported\u{1b}[2J é\t"),
            "x\\n2026-12-03 INFO idsync: imported\\u{1b}[2J é\\t"
        );
        assert_eq!(escape_controls("plain.csv"), "plain.csv");
    }
}
