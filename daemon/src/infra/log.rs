//! Log lines that user input cannot forge.
//!
//! File names, header values and error texts come from outside; written
//! raw, a newline in a dropped file's name makes a genuine-looking log
//! line, and an escape sequence rewrites the operator's terminal. In the
//! text format every field and message is written with control characters
//! escaped (`\n`, `\u{1b}`) by [`escape_controls`], the same function
//! that escapes what reports repeat; the JSON format escapes them itself.

use idsync_schema::text::escape_controls;
use tracing_subscriber::field::MakeExt as _;
use tracing_subscriber::fmt::format::Writer;

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
