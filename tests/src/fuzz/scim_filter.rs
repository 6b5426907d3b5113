//! Fuzz target `scim_filter`: the SCIM filter parser and evaluator
//! (`idsync_schema::scim::filter`), which reads the `filter` query
//! parameter of every SCIM list request and the value paths of PATCH.
//!
//! Why: the filter is text from identity providers, parsed by a
//! hand-written tokenizer and recursive-descent parser with a nesting
//! bound; a panic there is a failed request, unbounded recursion a crashed
//! daemon. Input: the filter's text, optionally followed by a NUL byte and
//! a JSON resource to evaluate it against (otherwise a user as the SCIM
//! server shows it). Checked, beyond not panicking:
//! - a refusal is a 400 `invalidFilter`;
//! - the bound is monotonic: what parses within it parses the same with a
//!   looser one;
//! - printing the parsed filter and parsing the text again gives the same
//!   filter, within the same bound (precedence, grouping, escapes);
//! - evaluation runs on the resource, and only a plain `attr eq "v"` is
//!   offered to the index planner ([`Filter::equality`]).

use idsync_schema::scim::error::ScimType;
use idsync_schema::scim::filter::{self, CompareOp, Filter};
use serde_json::Value;

use super::{print, scim_patch, SCIM_DEPTH};

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (text, resource) = match text.split_once('\0') {
        Some((f, r)) => (f, serde_json::from_str(r).ok()),
        None => (text, None),
    };
    let resource = resource.unwrap_or_else(scim_patch::user_resource);
    let parsed = match filter::parse(text, SCIM_DEPTH) {
        Ok(f) => f,
        Err(e) => {
            assert_eq!(
                (e.status, e.scim_type),
                (400, Some(ScimType::InvalidFilter)),
                "{text:?}: {e}"
            );
            return;
        }
    };
    assert_eq!(
        filter::parse(text, SCIM_DEPTH + 8).as_ref(),
        Ok(&parsed),
        "{text:?}: a looser bound reads it differently"
    );
    let printed = print::filter(&parsed);
    match filter::parse(&printed, SCIM_DEPTH) {
        Ok(again) => assert_eq!(again, parsed, "{text:?} printed as {printed:?}"),
        Err(e) => panic!("{text:?} printed as {printed:?} does not parse: {e}"),
    }
    check_evaluation(&parsed, &resource);
}

/// Evaluation runs on anything that parsed, and the index planner's view
/// of the filter ([`Filter::equality`]) is exactly the plain `eq` on a
/// string.
fn check_evaluation(f: &Filter, resource: &Value) {
    let _ = f.matches(resource);
    match f {
        Filter::Compare(p, CompareOp::Eq, Value::String(v)) => {
            assert_eq!(f.equality(), Some((p, v.as_str())));
        }
        _ => assert_eq!(f.equality(), None),
    }
}
