//! User-supplied text as idsync shows it back: in reports, logs and
//! error messages.
//!
//! Why one place: a value read from a file can hold a NUL, an escape
//! sequence or ten megabytes. Written raw into a report or a log line, it
//! corrupts the one, forges lines in the other and makes both unreadable.
//! Everything idsync echoes passes through here first.

use std::fmt::Write as _;

/// Characters of a value a report or message repeats; the rest is cut.
pub const SHOWN_MAX_CHARS: usize = 256;

/// `text` with every control character escaped as Rust writes it in a
/// string literal (`\n`, `\u{0}`, `\u{1b}`); everything else as it is.
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

/// `text` as a report shows it: control characters escaped, and cut after
/// [`SHOWN_MAX_CHARS`] characters with a note of how much was left out.
pub fn shown(text: &str) -> String {
    match text.char_indices().nth(SHOWN_MAX_CHARS) {
        None => escape_controls(text),
        Some((cut, _)) => format!(
            "{}… ({} more bytes)",
            escape_controls(&text[..cut]),
            text.len() - cut
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_nothing_else() {
        assert_eq!(
            escape_controls("x\n2026-12-03 INFO idsync: imported\u{1b}[2J é\t\0"),
            "x\\n2026-12-03 INFO idsync: imported\\u{1b}[2J é\\t\\u{0}"
        );
        assert_eq!(escape_controls("plain.csv"), "plain.csv");
    }

    #[test]
    fn long_values_are_cut_on_a_character() {
        let long = "é".repeat(10_000);
        let s = shown(&long);
        assert!(s.starts_with(&"é".repeat(SHOWN_MAX_CHARS)));
        assert!(s.ends_with(&format!(
            "… ({} more bytes)",
            (10_000 - SHOWN_MAX_CHARS) * 2
        )));
        assert_eq!(shown("short\0"), "short\\u{0}");
    }
}
