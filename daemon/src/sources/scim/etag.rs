//! Conditional requests: `If-Match` on writes (a lost update is a 412,
//! not a silent overwrite) and `If-None-Match` on reads (a 304 saves the
//! body). Versions are weak ETags (`W/"7"`).

use idsync_schema::scim::mapping::etag;

use super::error::ScimError;

/// Whether an `If-Match`/`If-None-Match` list names `current` (weak
/// comparison: `W/` is ignored on both sides).
pub(crate) fn etag_matches(header: &str, current: &str) -> bool {
    let strip = |s: &str| {
        s.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_owned()
    };
    let cur = strip(current);
    header
        .split(',')
        .any(|t| t.trim() == "*" || strip(t) == cur)
}

/// A write's `If-Match` against the object's `version`.
pub(crate) fn check_if_match(if_match: Option<&str>, version: u64) -> Result<(), ScimError> {
    match if_match {
        Some(h) if !etag_matches(h, &etag(version)) => Err(ScimError::precondition(&etag(version))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_compare_weakly() {
        assert!(etag_matches("W/\"3\"", "W/\"3\""));
        assert!(etag_matches("\"3\"", "W/\"3\""));
        assert!(etag_matches("W/\"1\", W/\"3\"", "W/\"3\""));
        assert!(etag_matches("*", "W/\"3\""));
        assert!(!etag_matches("W/\"2\"", "W/\"3\""));
    }
}
