//! Lists and searches (RFC 7644 §3.4.2): filter, sort, page, project.
//!
//! Unfiltered, unsorted pages come from [`super::paging`]; a filter is
//! answered from an index when [`super::index`] can plan it, else by a
//! scan. A sort needs every match in memory, so it allows at most
//! `max_results` of them (more is `tooMany`).

use std::cmp::Ordering;

use idsync_schema::scim::filter::{self, get_ci, AttrPath, Filter};
use idsync_store::keys;
use serde_json::{json, Value};

use super::error::{ScimError, ScimType};
use super::index::plan;
use super::paging::{page_after_cursor, page_in_order};
use super::query::Query;
use super::read::{decode, fetch};
use super::resource::Resource;
use super::state::State;
use super::ScimConfig;

const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// The ListResponse of `q` over the objects of `R`.
pub(crate) fn list<R: Resource>(state: &State, q: Query) -> Result<Value, ScimError> {
    let cfg = &state.cfg;
    let start = q.start_index.unwrap_or(1).max(1) as usize;
    let count = q
        .count
        .unwrap_or(cfg.default_count as i64)
        .clamp(0, cfg.max_results as i64) as usize;
    let filter = parse_filter(cfg, q.filter.as_deref())?;
    let sort = q
        .sort_by
        .as_deref()
        .map(AttrPath::parse)
        .transpose()
        .map_err(|e| ScimError::bad(ScimType::InvalidValue, e))?;
    let with_members = q.projection.wants("members");
    if let Some(cursor) = &q.cursor {
        if filter.is_some() || sort.is_some() || q.start_index.is_some() {
            return Err(ScimError::bad(
                ScimType::InvalidValue,
                "cursor pagination is for unfiltered, unsorted lists, without startIndex",
            ));
        }
        return cursor_list::<R>(state, &q, cursor, count, with_members);
    }

    let (total_results, page) = match (&filter, &sort) {
        // The common case: pages of everything in id order, no sort.
        (None, None) => {
            let total = state.lists.total(state.store(), R::KIND)?;
            let page = match count {
                0 => Vec::new(),
                _ => page_in_order::<R>(state, start, count, with_members)?,
            };
            (total, page)
        }
        _ => {
            let mut matches = Matches {
                filter: filter.as_ref(),
                keep_all: sort.is_some(),
                max_results: cfg.max_results,
                start,
                count,
                n: 0,
                kept: Vec::new(),
            };
            collect::<R>(state, &mut matches, with_members)?;
            let mut page = matches.kept;
            if let Some(path) = &sort {
                sort_by(&mut page, path, q.descending);
                page = page.into_iter().skip(start - 1).take(count).collect();
            }
            (matches.n, page)
        }
    };
    let resources = page
        .into_iter()
        .map(|v| q.projection.apply(v))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": total_results,
        "startIndex": start,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    }))
}

/// A ListResponse page of the cursor pagination draft: `nextCursor` when
/// there is more, no `startIndex`.
fn cursor_list<R: Resource>(
    state: &State,
    q: &Query,
    cursor: &str,
    count: usize,
    with_members: bool,
) -> Result<Value, ScimError> {
    let total = state.lists.total(state.store(), R::KIND)?;
    let page = page_after_cursor::<R>(state, cursor, count, with_members)?;
    let resources = page
        .resources
        .into_iter()
        .map(|v| q.projection.apply(v))
        .collect::<Result<Vec<_>, _>>()?;
    let mut list = json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    });
    if let Some(next) = page.next {
        list["nextCursor"] = json!(next);
    }
    Ok(list)
}

fn parse_filter(cfg: &ScimConfig, text: Option<&str>) -> Result<Option<Filter>, ScimError> {
    match text {
        Some(f) if f.chars().count() > cfg.max_filter_chars => Err(ScimError::bad(
            ScimType::InvalidFilter,
            format!(
                "the filter is longer than {} characters",
                cfg.max_filter_chars
            ),
        )),
        Some(f) => Ok(Some(filter::parse(f, cfg.max_filter_depth)?)),
        None => Ok(None),
    }
}

/// The matches of a filtered or sorted list, counted; kept are all of them
/// for a sort, else only the page's.
struct Matches<'f> {
    filter: Option<&'f Filter>,
    keep_all: bool,
    max_results: usize,
    start: usize,
    count: usize,
    /// Matches seen: the list's `totalResults`.
    n: u64,
    kept: Vec<Value>,
}

impl Matches<'_> {
    fn consider(&mut self, j: Value) -> Result<(), ScimError> {
        if self.filter.is_some_and(|f| !f.matches(&j)) {
            return Ok(());
        }
        self.n += 1;
        if self.keep_all {
            if self.kept.len() >= self.max_results {
                return Err(ScimError::bad(
                    ScimType::TooMany,
                    format!(
                        "more than {} resources match; narrow the filter",
                        self.max_results
                    ),
                ));
            }
            self.kept.push(j);
        } else if self.n as usize >= self.start && self.kept.len() < self.count {
            self.kept.push(j);
        }
        Ok(())
    }
}

/// Feed `matches` the candidates: those an index plans, else every object.
fn collect<R: Resource>(
    state: &State,
    matches: &mut Matches<'_>,
    with_members: bool,
) -> Result<(), ScimError> {
    let store = state.store();
    let planned = match matches.filter {
        Some(f) => plan::<R>(store, f)?,
        None => None,
    };
    if let Some(ids) = planned {
        for id in ids {
            if let Some(j) = fetch::<R>(state, id, with_members)? {
                matches.consider(j)?;
            }
        }
        return Ok(());
    }
    let mut err = None;
    store.scan(keys::object_prefix(R::KIND), |_, v| {
        match decode::<R>(state, v, with_members).and_then(|j| matches.consider(j)) {
            Ok(()) => Ok(true),
            Err(e) => {
                err = Some(e);
                Ok(false)
            }
        }
    })?;
    err.map_or(Ok(()), Err)
}

/// Sort by the first value of `path`; missing values sort last whatever
/// the order.
fn sort_by(page: &mut [Value], path: &AttrPath, descending: bool) {
    page.sort_by(|a, b| match (sort_key(a, path), sort_key(b, path)) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) if descending => y.cmp(&x),
        (Some(x), Some(y)) => x.cmp(&y),
    });
}

/// The first value of `path` in `v`, for sorting.
fn sort_key(v: &Value, path: &AttrPath) -> Option<String> {
    let f = Filter::Present(path.clone());
    if !f.matches(v) {
        return None;
    }
    let root = match &path.urn {
        Some(urn) => get_ci(v, urn)?,
        None => v,
    };
    let top = get_ci(root, &path.attr)?;
    let item = match top {
        Value::Array(a) => a
            .iter()
            .find(|i| get_ci(i, "primary").and_then(Value::as_bool) == Some(true))
            .or_else(|| a.first())?,
        v => v,
    };
    let leaf = match (&path.sub, item) {
        (Some(sub), o) => get_ci(o, sub)?,
        (None, o @ Value::Object(_)) => get_ci(o, "value")?,
        (None, v) => v,
    };
    Some(match leaf {
        Value::String(s) => s.to_lowercase(),
        other => other.to_string(),
    })
}
