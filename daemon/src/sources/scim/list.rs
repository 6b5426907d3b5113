//! Lists and searches (RFC 7644 §3.4.2): filter, sort, page, project.
//!
//! Unfiltered, unsorted pages come from [`super::paging`]; a filter is
//! answered from an index when [`super::index`] can plan it, else by a
//! scan. A sort needs every match in memory, so it allows at most
//! `max_results` of them (more is `tooMany`).
//!
//! A page is written straight into the answer's bytes: an unfiltered one
//! from views of the stored objects (`idsync_schema::scim::view`), never
//! a `Value` per resource (that was half the time of a page); a filtered
//! or sorted one from the `Value`s its filter or sort needed anyway.

use std::cmp::Ordering;

use idsync_schema::scim::filter::{self, get_ci, AttrPath, Filter};
use idsync_schema::scim::view::View;
use idsync_store::keys;
use serde::Serialize;
use serde_json::Value;

use super::error::{ScimError, ScimType};
use super::index::plan;
use super::paging::{page_after_cursor, page_in_order};
use super::query::Query;
use super::read::{decode, fetch};
use super::resource::Resource;
use super::state::State;
use super::ScimConfig;

const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// A ListResponse. The fields are in key order, the order a `Value`
/// object serialises in, so a page reads the same whichever way its
/// resources were rendered.
#[derive(Serialize)]
struct ListResponse<T> {
    #[serde(rename = "Resources")]
    resources: Vec<T>,
    #[serde(rename = "itemsPerPage")]
    items_per_page: usize,
    /// Cursor pages: there is more after this one.
    #[serde(rename = "nextCursor", skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
    schemas: [&'static str; 1],
    /// Index pages (cursor pages have none).
    #[serde(rename = "startIndex", skip_serializing_if = "Option::is_none")]
    start_index: Option<usize>,
    #[serde(rename = "totalResults")]
    total_results: u64,
}

impl<T: Serialize> ListResponse<T> {
    fn new(resources: Vec<T>, total_results: u64) -> Self {
        Self {
            items_per_page: resources.len(),
            resources,
            next_cursor: None,
            schemas: [LIST_SCHEMA],
            start_index: None,
            total_results,
        }
    }

    fn to_bytes(&self) -> Result<Vec<u8>, ScimError> {
        // About what a user takes: a page is not copied over and over
        // while it grows.
        let mut out = Vec::with_capacity(256 + 1024 * self.resources.len());
        serde_json::to_writer(&mut out, self).map_err(|e| ScimError::internal(&e))?;
        Ok(out)
    }
}

/// The ListResponse of `q` over the objects of `R`, as JSON bytes.
pub(crate) fn list<R: Resource>(state: &State, q: Query) -> Result<Vec<u8>, ScimError> {
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
        let total = state.lists.total(state.store(), R::KIND)?;
        let page = page_after_cursor::<R>(state, cursor, count)?;
        return in_views(state, &q, &page.objects, with_members, |resources| {
            let mut list = ListResponse::new(resources, total);
            list.next_cursor = page.next;
            list.to_bytes()
        });
    }

    if filter.is_none() && sort.is_none() {
        // The common case: pages of everything in id order, no sort.
        let total = state.lists.total(state.store(), R::KIND)?;
        let page = match count {
            0 => Vec::new(),
            _ => page_in_order::<R>(state, start, count)?,
        };
        return in_views(state, &q, &page, with_members, |resources| {
            let mut list = ListResponse::new(resources, total);
            list.start_index = Some(start);
            list.to_bytes()
        });
    }
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
    let resources = page
        .into_iter()
        .map(|v| q.projection.apply(v))
        .collect::<Result<Vec<_>, _>>()?;
    let mut list = ListResponse::new(resources, matches.n);
    list.start_index = Some(start);
    list.to_bytes()
}

/// `objects` as the client asked to see them, handed to `write`: views
/// that borrow the objects, serialised without a `Value` in between.
fn in_views<R: Resource>(
    state: &State,
    q: &Query,
    objects: &[R],
    with_members: bool,
    write: impl FnOnce(Vec<View<'_>>) -> Result<Vec<u8>, ScimError>,
) -> Result<Vec<u8>, ScimError> {
    let refs = objects
        .iter()
        .map(|o| o.refs(state.store(), with_members))
        .collect::<Result<Vec<_>, _>>()?;
    let views = objects
        .iter()
        .zip(&refs)
        .map(|(o, r)| q.projection.shape(o.view(r, state.base())))
        .collect::<Result<Vec<_>, _>>()?;
    write(views)
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

#[cfg(test)]
mod tests {
    //! Pages written from views are the pages the `Value` path gives: each
    //! resource rendered as a `Value`, projected on it, and put into a
    //! ListResponse built as a `Value`.
    use std::sync::Arc;

    use idsync_schema::scim::mapping::{self, ENTERPRISE_SCHEMA, IDSYNC_USER_SCHEMA};
    use idsync_schema::{Group, GroupInput, Source, User};
    use idsync_store::reconcile::{Reconciler, Settings, UserWrite};
    use idsync_store::writer::Writer;
    use idsync_store::{Actor, EngineKind, EngineOptions, Store};
    use serde_json::json;

    use super::super::projection::Projection;
    use super::*;

    /// A store with users and groups that have every attribute: the
    /// enterprise extension with a manager, multi-valued attributes, name
    /// parts, the idsync extension, memberships.
    fn state(dir: &std::path::Path) -> State {
        let store =
            Arc::new(Store::open(EngineKind::Redb, dir, &EngineOptions::default()).unwrap());
        let rec = Arc::new(Reconciler::new(Arc::clone(&store), Settings::default()).unwrap());
        let mut tx = rec.begin(Source::Scim, Actor::default());
        let user = |body: Value| mapping::user_input(&body).unwrap();
        let how = UserWrite::default();
        let boss = tx
            .create_user(user(json!({"userName": "boss@x.org"})), &how)
            .unwrap()
            .id();
        let full = user(json!({
            "userName": "ann", "externalId": "E-1", "displayName": "Ann \"A\" Smith",
            "active": false, "preferredLanguage": "de-CH", "title": "Engineer",
            "nickName": "Annie", "timezone": "Europe/Zurich", "locale": "de_CH",
            "name": {"givenName": "Ann", "familyName": "Smith", "middleName": "B.",
                     "honorificPrefix": "Dr."},
            "emails": [{"value": "ann@x.org", "type": "work", "primary": true}],
            "phoneNumbers": [{"value": "+41 1", "type": "work", "primary": true},
                             {"value": "+41 2", "type": "mobile"}],
            "addresses": [{"streetAddress": "Gasse 1", "locality": "Bern", "type": "work"}],
            "entitlements": [{"value": "vpn"}, {"value": "wiki", "display": "Wiki"}],
            ENTERPRISE_SCHEMA: {"employeeNumber": "7", "department": "IT",
                                "costCenter": "C1", "manager": {"value": boss.to_string()}},
            IDSYNC_USER_SCHEMA: {"validFrom": "20240101000000Z", "validTo": "20301231235959Z",
                "spCustomAttribute1": "c1", "spCustomAttribute2": "c2", "spCustomAttribute3": "c3",
                "spCustomAttribute4": "c4", "spCustomAttribute5": "c5"},
        }));
        let ann = tx.create_user(full, &how).unwrap().id();
        let plain = tx
            .create_user(user(json!({"userName": "carl"})), &how)
            .unwrap()
            .id();
        let mut staff = GroupInput::new("Staff");
        staff.external_id = idsync_schema::Field::Set("G-1".into());
        staff.description = idsync_schema::Field::Set("Everyone".into());
        let staff = tx.create_group(staff).unwrap().id();
        let ops = tx.create_group(GroupInput::new("Ops")).unwrap().id();
        tx.create_group(GroupInput::new("Nobody")).unwrap();
        for (gid, members) in [(staff, vec![ann, plain, boss]), (ops, vec![ann])] {
            let g = tx.group(gid).unwrap().unwrap();
            tx.change_members(&g, &members, &[]).unwrap();
        }
        tx.commit().unwrap();
        let (writer, _thread) = Writer::start("test", Arc::clone(&rec), |_| {}, 8).unwrap();
        State::new(ScimConfig::default(), rec, writer)
    }

    /// The page of every object of `R` as the `Value` path writes it.
    fn by_values<R: Resource>(state: &State, p: &Projection, cursor: bool) -> Value {
        let mut resources = Vec::new();
        state
            .store()
            .for_each::<R>(R::KIND, |o| {
                let v = o.render(state.store(), state.base(), p.wants("members"));
                resources.push(p.apply(v.unwrap()).unwrap());
                Ok(true)
            })
            .unwrap();
        let mut list = json!({
            "schemas": [LIST_SCHEMA],
            "totalResults": resources.len(),
            "itemsPerPage": resources.len(),
            "Resources": resources,
        });
        if !cursor {
            list["startIndex"] = json!(1);
        }
        list
    }

    fn projections() -> Vec<Projection> {
        let p = |attributes: &str, excluded: &str| {
            let mut q = std::collections::HashMap::new();
            q.insert("attributes".to_owned(), attributes.to_owned());
            q.insert("excludedAttributes".to_owned(), excluded.to_owned());
            Projection::from_params(&q)
        };
        vec![
            p("", ""),
            p("userName,name.givenName,DISPLAYNAME", ""),
            p("emails.value,phoneNumbers.type,entitlements", ""),
            p(
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager,\
                 urn:idsync:params:scim:schemas:extension:idsync:2.0:User:spCustomAttribute3",
                "",
            ),
            p("members,members.display,groups.value,meta", ""),
            p("id", "userName"),
            p("", "members"),
            p(
                "",
                "emails,name.familyName,groups.display,id,schemas,Title,nickname",
            ),
            p(
                "",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department,\
                 urn:idsync:params:scim:schemas:extension:idsync:2.0:Group:description,\
                 urn:idsync:params:scim:schemas:extension:idsync:2.0:User",
            ),
        ]
    }

    fn pages_agree<R: Resource>(state: &State) {
        for p in projections() {
            for cursor in [false, true] {
                let q = Query {
                    cursor: cursor.then(String::new),
                    projection: Projection {
                        attributes: p.attributes.clone(),
                        excluded: p.excluded.clone(),
                    },
                    ..Query::default()
                };
                let written = list::<R>(state, q).unwrap();
                let expected = by_values::<R>(state, &p, cursor);
                let what = format!("{} {p:?} cursor: {cursor}", R::NAME);
                let parsed: Value = serde_json::from_slice(&written).unwrap();
                assert_eq!(parsed, expected, "{what}");
                assert_eq!(written, serde_json::to_vec(&expected).unwrap(), "{what}");
            }
        }
    }

    #[test]
    fn pages_from_views_are_the_value_paths_pages() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(dir.path());
        pages_agree::<User>(&state);
        pages_agree::<Group>(&state);
        // The fixtures have what the test is about.
        let users = by_values::<User>(&state, &Projection::default(), false);
        let ann = &users["Resources"][1];
        assert_eq!(ann["name"]["middleName"], "B.");
        assert!(ann[ENTERPRISE_SCHEMA]["manager"]["$ref"].is_string());
        assert_eq!(ann["groups"].as_array().map(Vec::len), Some(2));
        assert_eq!(ann["phoneNumbers"].as_array().map(Vec::len), Some(2));
        let groups = by_values::<Group>(&state, &Projection::default(), false);
        assert_eq!(
            groups["Resources"][0]["members"].as_array().map(Vec::len),
            Some(3)
        );
    }
}
