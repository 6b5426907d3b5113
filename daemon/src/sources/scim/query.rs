//! The parameters of a query (RFC 7644 §3.4.2), from a GET's query string
//! or a `.search` body, checked for their types; what they mean is
//! [`super::list`]'s business.

use std::collections::HashMap;

use idsync_schema::scim::filter::get_ci;
use serde_json::Value;

use super::error::{ScimError, ScimType};
use super::projection::Projection;

/// The parameters of a query.
#[derive(Debug, Default)]
pub(crate) struct Query {
    pub(crate) filter: Option<String>,
    pub(crate) sort_by: Option<String>,
    pub(crate) descending: bool,
    pub(crate) start_index: Option<i64>,
    pub(crate) count: Option<i64>,
    /// Cursor pagination (the IETF draft): empty for the first page.
    pub(crate) cursor: Option<String>,
    pub(crate) projection: Projection,
}

fn not_integer(name: &str) -> ScimError {
    ScimError::bad(ScimType::InvalidValue, format!("{name} must be an integer"))
}

fn int_param(name: &str, v: &str) -> Result<i64, ScimError> {
    v.trim().parse().map_err(|_| not_integer(name))
}

/// `sortOrder`: whether it is descending.
fn sort_order(v: &str) -> Result<bool, ScimError> {
    match v.to_ascii_lowercase().as_str() {
        "ascending" => Ok(false),
        "descending" => Ok(true),
        _ => Err(ScimError::bad(
            ScimType::InvalidValue,
            "sortOrder must be ascending or descending",
        )),
    }
}

impl Query {
    pub(crate) fn from_params(q: &HashMap<String, String>) -> Result<Self, ScimError> {
        let int = |k: &str| q.get(k).map(|v| int_param(k, v)).transpose();
        Ok(Self {
            filter: q.get("filter").cloned(),
            sort_by: q.get("sortBy").cloned(),
            descending: q
                .get("sortOrder")
                .map(|s| sort_order(s))
                .transpose()?
                .unwrap_or(false),
            start_index: int("startIndex")?,
            count: int("count")?,
            cursor: q.get("cursor").cloned(),
            projection: Projection::from_params(q),
        })
    }

    pub(crate) fn from_body(b: &Value) -> Result<Self, ScimError> {
        let s = |k: &str| get_ci(b, k).and_then(Value::as_str).map(str::to_owned);
        let n = |k: &str| -> Result<Option<i64>, ScimError> {
            match get_ci(b, k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.as_i64().map(Some).ok_or_else(|| not_integer(k)),
            }
        };
        Ok(Self {
            filter: s("filter"),
            sort_by: s("sortBy"),
            descending: s("sortOrder")
                .map(|v| sort_order(&v))
                .transpose()?
                .unwrap_or(false),
            start_index: n("startIndex")?,
            count: n("count")?,
            cursor: s("cursor"),
            projection: Projection::from_body(b),
        })
    }
}
