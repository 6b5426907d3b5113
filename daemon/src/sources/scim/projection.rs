//! `attributes` and `excludedAttributes` (RFC 7644 §3.9): which attributes
//! an answer carries. `schemas`, `id` and `meta` always go out, so the
//! ETag and Location of a write survive any projection.
//!
//! One implementation on JSON objects, for a `Value` and for a view
//! (`idsync_schema::scim::view`, a list page's resources): a view hands
//! over as JSON only the top-level attributes a projection names, and
//! keeps the others as they are, so a page does not build a `Value` of
//! every resource for the sake of a few attributes.

use std::collections::HashMap;

use idsync_schema::scim::filter::{get_ci, AttrPath};
use idsync_schema::scim::view::{Attr, View};
use serde_json::{json, Map, Value};

use super::error::{ScimError, ScimType};

/// Attributes that no projection removes.
const ALWAYS: [&str; 3] = ["schemas", "id", "meta"];

/// What the client asked to see: `attributes` wins over `excluded`.
#[derive(Debug, Default)]
pub(crate) struct Projection {
    pub(crate) attributes: Vec<String>,
    pub(crate) excluded: Vec<String>,
}

/// A comma-separated list of attribute paths.
fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Projection {
    /// From the query string (GET, and any write's answer).
    pub(crate) fn from_params(q: &HashMap<String, String>) -> Self {
        let list = |k: &str| q.get(k).map(|s| split_list(s)).unwrap_or_default();
        Self {
            attributes: list("attributes"),
            excluded: list("excludedAttributes"),
        }
    }

    /// From a `.search` body: arrays, or strings as in a query.
    pub(crate) fn from_body(b: &Value) -> Self {
        let list = |k: &str| -> Vec<String> {
            match get_ci(b, k) {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                Some(Value::String(s)) => split_list(s),
                _ => Vec::new(),
            }
        };
        Self {
            attributes: list("attributes"),
            excluded: list("excludedAttributes"),
        }
    }

    /// Whether top-level `attr` is returned: a group's members are costly
    /// to render, so they are not rendered for nothing.
    pub(crate) fn wants(&self, attr: &str) -> bool {
        let names = |list: &[String]| {
            list.iter().any(|a| {
                AttrPath::parse(a)
                    .is_ok_and(|p| p.urn.is_none() && p.attr.eq_ignore_ascii_case(attr))
            })
        };
        if !self.attributes.is_empty() {
            return names(&self.attributes);
        }
        !names(&self.excluded)
    }

    /// `v` as the client asked to see it.
    pub(crate) fn apply(&self, v: Value) -> Result<Value, ScimError> {
        let Value::Object(obj) = v else {
            return Ok(v);
        };
        if !self.attributes.is_empty() {
            return Ok(Value::Object(keep(obj, &parse(&self.attributes)?)));
        }
        Ok(Value::Object(exclude(obj, &parse(&self.excluded)?)))
    }

    /// `view` as the client asked to see it: what [`Projection::apply`]
    /// makes of its JSON.
    pub(crate) fn shape<'a>(&self, view: View<'a>) -> Result<View<'a>, ScimError> {
        let keeping = !self.attributes.is_empty();
        let paths = match (keeping, self.excluded.is_empty()) {
            (false, true) => return Ok(view),
            (true, _) => parse(&self.attributes)?,
            (false, false) => parse(&self.excluded)?,
        };
        // The attributes a path can reach: `keep` and `exclude` look no
        // further than those whose name matches a path's (whatever the
        // case), so what they make of these alone is what they would make
        // of the whole resource.
        let named = |k: &str| {
            (keeping && ALWAYS.contains(&k))
                || paths
                    .iter()
                    .any(|p| k.eq_ignore_ascii_case(p.urn.as_deref().unwrap_or(&p.attr)))
        };
        let mut as_json = Map::new();
        let mut attrs = Vec::new();
        for (k, v) in view.into_attrs() {
            if named(&k) {
                as_json.insert(k.into_owned(), v.to_value());
            } else if !keeping {
                attrs.push((k, v));
            }
        }
        let shaped = match keeping {
            true => keep(as_json, &paths),
            false => exclude(as_json, &paths),
        };
        attrs.extend(shaped.into_iter().map(|(k, v)| (k.into(), Attr::Owned(v))));
        Ok(View::new(attrs))
    }
}

fn parse(list: &[String]) -> Result<Vec<AttrPath>, ScimError> {
    list.iter()
        .map(|a| AttrPath::parse(a).map_err(|e| ScimError::bad(ScimType::InvalidValue, e)))
        .collect()
}

/// The key of `obj` that is `name` whatever its case.
fn key_ci(obj: &Map<String, Value>, name: &str) -> Option<String> {
    obj.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}

/// Only the `wanted` attributes of `obj`, and those always returned.
fn keep(mut obj: Map<String, Value>, wanted: &[AttrPath]) -> Map<String, Value> {
    let mut out = Map::new();
    for k in ALWAYS {
        if let Some(v) = obj.remove(k) {
            out.insert(k.into(), v);
        }
    }
    for p in wanted {
        let Some(urn) = &p.urn else {
            copy_attr(&obj, &mut out, p);
            continue;
        };
        // An extension's attribute: inside the extension's object.
        let Some(key) = key_ci(&obj, urn) else {
            continue;
        };
        let ext = out.entry(key.clone()).or_insert_with(|| json!({}));
        let Some(src) = obj.get(&key).and_then(Value::as_object) else {
            continue;
        };
        let Some(dst) = ext.as_object_mut() else {
            continue;
        };
        copy_attr(src, dst, p);
    }
    out
}

/// `obj` without the `excluded` attributes (those always returned stay).
fn exclude(mut obj: Map<String, Value>, excluded: &[AttrPath]) -> Map<String, Value> {
    for p in excluded {
        let target = match &p.urn {
            None => Some(&mut obj),
            Some(urn) => key_ci(&obj, urn)
                .and_then(|k| obj.get_mut(&k))
                .and_then(Value::as_object_mut),
        };
        let Some(target) = target else { continue };
        let Some(key) = key_ci(target, &p.attr) else {
            continue;
        };
        if ALWAYS.contains(&key.as_str()) && p.urn.is_none() {
            continue;
        }
        let Some(sub) = &p.sub else {
            target.remove(&key);
            continue;
        };
        match target.get_mut(&key) {
            Some(Value::Object(o)) => {
                o.retain(|k, _| !k.eq_ignore_ascii_case(sub));
            }
            Some(Value::Array(items)) => {
                for i in items.iter_mut().filter_map(Value::as_object_mut) {
                    i.retain(|k, _| !k.eq_ignore_ascii_case(sub));
                }
            }
            _ => {}
        }
    }
    obj
}

/// The sub-attribute `sub` of one object, alone (empty when it is absent).
fn pick(o: &Map<String, Value>, sub: &str, mut into: Map<String, Value>) -> Map<String, Value> {
    if let Some((k, v)) = o.iter().find(|(k, _)| k.eq_ignore_ascii_case(sub)) {
        into.insert(k.clone(), v.clone());
    }
    into
}

/// Copy attribute `p` (or its sub-attribute) from `src` into `dst`.
fn copy_attr(src: &Map<String, Value>, dst: &mut Map<String, Value>, p: &AttrPath) {
    let Some(key) = key_ci(src, &p.attr) else {
        return;
    };
    let Some(sub) = &p.sub else {
        if let Some(v) = src.get(&key) {
            dst.insert(key, v.clone());
        }
        return;
    };
    let picked = match src.get(&key) {
        // Sub-attributes picked earlier of the same attribute stay.
        Some(Value::Object(o)) => {
            let earlier = match dst.get(&key) {
                Some(Value::Object(m)) => m.clone(),
                _ => Map::new(),
            };
            Value::Object(pick(o, sub, earlier))
        }
        // The same, value by value: `emails.value,emails.type` keeps both.
        Some(Value::Array(items)) => {
            let earlier = match dst.get(&key) {
                Some(Value::Array(a)) => a.as_slice(),
                _ => &[],
            };
            Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(n, i)| {
                        let earlier = match earlier.get(n) {
                            Some(Value::Object(m)) => m.clone(),
                            _ => Map::new(),
                        };
                        Value::Object(match i.as_object() {
                            Some(o) => pick(o, sub, earlier),
                            None => earlier,
                        })
                    })
                    .collect(),
            )
        }
        _ => return,
    };
    dst.insert(key, picked);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn projection(attributes: &[&str], excluded: &[&str]) -> Projection {
        let owned = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        Projection {
            attributes: owned(attributes),
            excluded: owned(excluded),
        }
    }

    #[test]
    fn projection_keeps_id_schemas_meta() {
        let v = json!({"schemas": ["x"], "id": "1", "meta": {}, "userName": "a", "name": {"givenName": "A", "familyName": "B"},
            "emails": [{"value": "a@x", "type": "work"}], "urn:x:User": {"k": 1, "j": 2}});
        let p = projection(&["userName", "name.familyName", "urn:x:User:k"], &[])
            .apply(v.clone())
            .unwrap();
        assert_eq!(
            p,
            json!({"schemas": ["x"], "id": "1", "meta": {}, "userName": "a", "name": {"familyName": "B"}, "urn:x:User": {"k": 1}})
        );
        let p = projection(&[], &["emails", "id", "name.givenName"])
            .apply(v)
            .unwrap();
        assert!(p.get("emails").is_none());
        assert_eq!(p["id"], "1");
        assert_eq!(p["name"], json!({"familyName": "B"}));
    }

    #[test]
    fn sub_attributes_of_a_multi_valued_attribute_add_up() {
        let v = json!({"id": "1", "emails": [
            {"value": "a@x", "type": "work", "primary": true},
            {"value": "b@x", "type": "home"}]});
        let p = projection(&["emails.value", "emails.type"], &[])
            .apply(v)
            .unwrap();
        assert_eq!(
            p["emails"],
            json!([{"value": "a@x", "type": "work"}, {"value": "b@x", "type": "home"}])
        );
    }
}
