//! SCIM PATCH (RFC 7644 §3.5.2): the `PatchOp` message, its paths, and how
//! an operation applies to a resource's JSON representation.
//!
//! A PATCH is applied to the resource as SCIM shows it and the result is then
//! read back like a PUT body, so it goes through the same mapping and the
//! same validation. Group members are the exception (a group may have more
//! members than one should load): [`split_members`] turns member operations
//! into id sets that the reconciler applies user by user.
//!
//! Accepted as identity providers send them: `op` in any case (`Replace`),
//! `Operations` or `operations`, URN-prefixed paths, value-filter paths
//! (`emails[type eq "work"].value`), no-path operations whose value has
//! dotted (`name.givenName`) or URN keys, and member removal with a value
//! array instead of a filter.

use serde_json::{Map, Value};

use super::error::{ScimError, ScimType};
use super::filter::{self, get_ci, AttrPath, Filter};

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Replace,
    Remove,
}

/// A parsed `path`: an attribute, optionally narrowed by a value filter,
/// optionally followed by a sub-attribute of the matching values.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    /// `emails[type eq "work"].value` → `value`.
    pub sub_after_filter: Option<String>,
}

/// One operation of a `PatchOp`.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub op: Op,
    pub path: Option<Path>,
    pub value: Option<Value>,
}

fn invalid_path(detail: impl Into<String>) -> ScimError {
    ScimError::bad(ScimType::InvalidPath, detail)
}

impl Path {
    /// Parse a PATCH path.
    pub fn parse(text: &str, max_depth: usize) -> Result<Self, ScimError> {
        let text = text.trim();
        let Some(open) = text.find('[') else {
            let attr = AttrPath::parse(text).map_err(invalid_path)?;
            return Ok(Self {
                attr,
                filter: None,
                sub_after_filter: None,
            });
        };
        let close = text
            .rfind(']')
            .filter(|c| *c > open)
            .ok_or_else(|| invalid_path(format!("`{text}`: missing `]`")))?;
        let attr = AttrPath::parse(&text[..open]).map_err(invalid_path)?;
        if attr.sub.is_some() {
            return Err(invalid_path(format!(
                "`{text}`: a value filter follows an attribute, not a sub-attribute"
            )));
        }
        let filter = filter::parse(&text[open + 1..close], max_depth)
            .map_err(|e| invalid_path(format!("`{text}`: {}", e.detail)))?;
        let rest = &text[close + 1..];
        let sub_after_filter = match rest.strip_prefix('.') {
            Some(sub) if !sub.is_empty() && sub.chars().all(|c| c.is_ascii_alphanumeric()) => {
                Some(sub.to_owned())
            }
            None if rest.is_empty() => None,
            _ => return Err(invalid_path(format!("`{text}`: unexpected `{rest}`"))),
        };
        Ok(Self {
            attr,
            filter: Some(filter),
            sub_after_filter,
        })
    }

    /// Whether the path names `attr` (a core attribute, any case).
    pub fn is(&self, attr: &str) -> bool {
        self.attr.urn.is_none() && self.attr.attr.eq_ignore_ascii_case(attr)
    }
}

/// Parse a `PatchOp` body.
pub fn parse(body: &Value, max_depth: usize) -> Result<Vec<Operation>, ScimError> {
    let syntax = |d: &str| ScimError::bad(ScimType::InvalidSyntax, d.to_owned());
    let schemas_ok = get_ci(body, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| {
            s.iter().any(|v| {
                v.as_str().is_some_and(|s| {
                    s.eq_ignore_ascii_case("urn:ietf:params:scim:api:messages:2.0:PatchOp")
                })
            })
        });
    if !schemas_ok {
        return Err(syntax("a PATCH body needs the PatchOp schema"));
    }
    let ops = get_ci(body, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| syntax("a PATCH body needs an Operations array"))?;
    if ops.is_empty() {
        // RFC 7644 §3.5.2: "an array of one or more patch operations".
        return Err(syntax("a PATCH body needs at least one operation"));
    }
    let mut out = Vec::with_capacity(ops.len());
    for o in ops {
        let op = match get_ci(o, "op")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
        {
            Some(s) if s == "add" => Op::Add,
            Some(s) if s == "replace" => Op::Replace,
            Some(s) if s == "remove" => Op::Remove,
            other => {
                return Err(syntax(&format!(
                    "`op` must be add, replace or remove, not {other:?}"
                )))
            }
        };
        let mut value = get_ci(o, "value").cloned();
        let path = match get_ci(o, "path") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            // A bare extension URN names the extension's object: the
            // operation is a no-path one on `{URN: value}`.
            Some(Value::String(s)) if is_schema_urn(s) => {
                if op == Op::Remove {
                    return Err(invalid_path(
                        "remove an extension's attributes by their paths (URN:attribute)",
                    ));
                }
                value = value.map(|v| Value::Object(Map::from_iter([(s.clone(), v)])));
                None
            }
            Some(Value::String(s)) => Some(Path::parse(s, max_depth)?),
            Some(_) => return Err(invalid_path("`path` must be a string")),
        };
        if op != Op::Remove && value.is_none() {
            return Err(ScimError::bad(
                ScimType::InvalidValue,
                "add and replace need a value",
            ));
        }
        if op == Op::Remove && path.is_none() {
            return Err(ScimError::bad(ScimType::NoTarget, "remove needs a path"));
        }
        out.push(Operation { op, path, value });
    }
    Ok(out)
}

/// Expand a no-path `add`/`replace` into one operation per attribute:
/// `{"name.givenName": "A", "urn:…:User": {"x": 1}, "active": false}`.
pub fn expand_no_path(
    op: Op,
    value: &Value,
    max_depth: usize,
) -> Result<Vec<Operation>, ScimError> {
    let Value::Object(map) = value else {
        return Err(ScimError::bad(
            ScimType::InvalidValue,
            "an operation without a path needs an object value",
        ));
    };
    let mut out = Vec::new();
    for (k, v) in map {
        let is_urn = filter::has_urn_prefix(k);
        match v {
            // An extension's attributes, grouped under its URN.
            Value::Object(inner) if is_urn && looks_like_schema(k) => {
                for (ik, iv) in inner {
                    out.push(Operation {
                        op,
                        path: Some(Path::parse(&format!("{k}:{ik}"), max_depth)?),
                        value: Some(iv.clone()),
                    });
                }
            }
            _ => out.push(Operation {
                op,
                path: Some(Path::parse(k, max_depth)?),
                value: Some(v.clone()),
            }),
        }
    }
    Ok(out)
}

/// Whether `path` is a schema's URN alone (`urn:…:2.0:User`), not a path
/// into one.
fn is_schema_urn(path: &str) -> bool {
    filter::has_urn_prefix(path) && looks_like_schema(path)
}

/// Whether a URN names a schema (its last segment is a resource name such
/// as `User`) rather than an attribute of one.
fn looks_like_schema(urn: &str) -> bool {
    let last = urn.rsplit(':').next().unwrap_or("");
    ["user", "group", "asset"].contains(&last.to_ascii_lowercase().as_str())
}

/// The object a path's attribute lives in (the resource, or an extension's
/// object, created on demand).
fn container<'v>(
    resource: &'v mut Value,
    path: &AttrPath,
    create: bool,
) -> Option<&'v mut Map<String, Value>> {
    let root = resource.as_object_mut()?;
    match &path.urn {
        None => Some(root),
        Some(urn) => {
            let key = root.keys().find(|k| k.eq_ignore_ascii_case(urn)).cloned();
            let key = match key {
                Some(k) => k,
                None if create => {
                    root.insert(urn.clone(), Value::Object(Map::new()));
                    urn.clone()
                }
                None => return None,
            };
            root.get_mut(&key)?.as_object_mut()
        }
    }
}

/// The key of `name` in `map`, any case.
fn key_ci(map: &Map<String, Value>, name: &str) -> String {
    map.keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_owned())
}

fn merge_values(target: &mut Value, value: Value) {
    match (target, value) {
        (Value::Array(items), Value::Array(new)) => {
            for v in new {
                if !items.contains(&v) {
                    items.push(v);
                }
            }
        }
        (Value::Array(items), v) => {
            if !items.contains(&v) {
                items.push(v);
            }
        }
        (Value::Object(obj), Value::Object(new)) => {
            for (k, v) in new {
                let key = key_ci(obj, &k);
                obj.insert(key, v);
            }
        }
        (t, v) => *t = v,
    }
}

/// A new element for `attr[filter]` when nothing matches: the equality
/// terms of the filter become its attributes (`emails[type eq "work"]`).
fn element_from_filter(f: &Filter, into: &mut Map<String, Value>) {
    match f {
        Filter::And(a, b) => {
            element_from_filter(a, into);
            element_from_filter(b, into);
        }
        Filter::Compare(p, filter::CompareOp::Eq, v) if p.sub.is_none() => {
            into.insert(p.attr.clone(), v.clone());
        }
        _ => {}
    }
}

/// Apply one operation to `resource`.
pub fn apply(
    resource: &mut Value,
    operation: &Operation,
    max_depth: usize,
) -> Result<(), ScimError> {
    let Some(path) = &operation.path else {
        let value = operation.value.as_ref().expect("checked by parse");
        for o in expand_no_path(operation.op, value, max_depth)? {
            apply(resource, &o, max_depth)?;
        }
        return Ok(());
    };
    let create = operation.op != Op::Remove;
    let Some(obj) = container(resource, &path.attr, create) else {
        return Ok(()); // removing from an extension that is not there
    };
    let key = key_ci(obj, &path.attr.attr);
    let value = operation.value.clone();
    match (&path.filter, &path.attr.sub) {
        (Some(filter), _) => {
            let items = multi_valued(obj, key, &path.attr.attr)?;
            let sub = path.sub_after_filter.as_deref();
            apply_filtered(items, filter, sub, operation.op, value)
        }
        (None, Some(sub)) => apply_to_sub(obj, key, &path.attr.attr, sub, operation.op, value),
        (None, None) => {
            apply_to_attribute(obj, key, operation.op, value);
            Ok(())
        }
    }
}

/// `attr`: the whole attribute.
fn apply_to_attribute(obj: &mut Map<String, Value>, key: String, op: Op, value: Option<Value>) {
    match op {
        Op::Add => match obj.get_mut(&key) {
            Some(existing) if !existing.is_null() => {
                merge_values(existing, value.expect("checked"))
            }
            _ => {
                obj.insert(key, value.expect("checked"));
            }
        },
        Op::Replace => {
            let v = value.expect("checked");
            match obj.get_mut(&key) {
                // Replacing a complex attribute's sub-attributes keeps
                // the others (RFC 7644 §3.5.2.3).
                Some(existing @ Value::Object(_)) if v.is_object() => merge_values(existing, v),
                _ => {
                    obj.insert(key, v);
                }
            }
        }
        Op::Remove => match (obj.get_mut(&key), value) {
            // Entra: remove members with a value array.
            (Some(Value::Array(items)), Some(Value::Array(gone))) => {
                let ids: Vec<&Value> = gone.iter().filter_map(|g| get_ci(g, "value")).collect();
                items.retain(|i| !get_ci(i, "value").is_some_and(|v| ids.contains(&v)));
            }
            _ => {
                obj.remove(&key);
            }
        },
    }
}

/// `attr.sub`: one sub-attribute of a complex attribute, or of every
/// element of a multi-valued one (`emails.value`).
fn apply_to_sub(
    obj: &mut Map<String, Value>,
    key: String,
    attr: &str,
    sub: &str,
    op: Op,
    value: Option<Value>,
) -> Result<(), ScimError> {
    let parent = obj.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if let Value::Array(items) = parent {
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            set_or_remove(item, sub, op, || value.clone().expect("checked"));
        }
        return Ok(());
    }
    let Some(parent) = parent.as_object_mut() else {
        return Err(invalid_path(format!("{attr} is not complex")));
    };
    set_or_remove(parent, sub, op, || value.expect("checked"));
    Ok(())
}

/// Remove `sub` from `obj`, or set it to `value()` (called only to set).
fn set_or_remove(obj: &mut Map<String, Value>, sub: &str, op: Op, value: impl FnOnce() -> Value) {
    let k = key_ci(obj, sub);
    match op {
        Op::Remove => {
            obj.remove(&k);
        }
        _ => {
            obj.insert(k, value());
        }
    }
}

/// The elements of the multi-valued attribute at `key` (created empty when
/// absent or null), which a value filter selects from.
fn multi_valued<'o>(
    obj: &'o mut Map<String, Value>,
    key: String,
    attr: &str,
) -> Result<&'o mut Vec<Value>, ScimError> {
    let items = obj.entry(key).or_insert_with(|| Value::Array(Vec::new()));
    if items.is_null() {
        *items = Value::Array(Vec::new());
    }
    match items {
        Value::Array(items) => Ok(items),
        _ => Err(invalid_path(format!("{attr} is not multi-valued"))),
    }
}

/// `attr[filter]` or `attr[filter].sub`: the elements the filter matches.
fn apply_filtered(
    items: &mut Vec<Value>,
    filter: &Filter,
    sub: Option<&str>,
    op: Op,
    value: Option<Value>,
) -> Result<(), ScimError> {
    let matching: Vec<usize> = (0..items.len())
        .filter(|i| filter.matches(&items[*i]))
        .collect();
    match (op, sub) {
        (Op::Remove, None) => {
            let mut i = 0;
            items.retain(|_| {
                let keep = !matching.contains(&i);
                i += 1;
                keep
            });
        }
        (Op::Remove, Some(sub)) => {
            for i in matching {
                if let Some(o) = items[i].as_object_mut() {
                    let k = key_ci(o, sub);
                    o.remove(&k);
                }
            }
        }
        (_, sub) => {
            let v = value.expect("checked");
            if matching.is_empty() {
                if op == Op::Replace && sub.is_none() {
                    return Err(ScimError::bad(
                        ScimType::NoTarget,
                        "no value matches the path's filter",
                    ));
                }
                items.push(new_element(filter, sub, v));
                return Ok(());
            }
            for i in matching {
                match sub {
                    Some(s) => {
                        if let Some(o) = items[i].as_object_mut() {
                            let k = key_ci(o, s);
                            o.insert(k, v.clone());
                        }
                    }
                    None => merge_values(&mut items[i], v.clone()),
                }
            }
        }
    }
    Ok(())
}

/// The element an add to `attr[filter]` makes when nothing matches: Entra
/// and Okta set `emails[type eq "work"].value` on users that have no work
/// address yet.
fn new_element(filter: &Filter, sub: Option<&str>, value: Value) -> Value {
    let mut element = Map::new();
    element_from_filter(filter, &mut element);
    match sub {
        Some(s) => {
            element.insert(s.to_owned(), value);
        }
        None => {
            if let Value::Object(o) = value {
                element.extend(o);
            }
        }
    }
    Value::Object(element)
}

/// Member changes of a group PATCH, as ids named by `value`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MemberChanges {
    /// `replace members`: the full new list (applied before add/remove).
    pub replace: Option<Vec<String>>,
    pub add: Vec<String>,
    pub remove: Vec<String>,
    /// `remove members` without a filter or value: everyone leaves.
    pub remove_all: bool,
}

fn member_values(v: Option<&Value>) -> Vec<String> {
    let one = |m: &Value| match m {
        Value::String(s) => Some(s.clone()),
        m => get_ci(m, "value")
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    match v {
        Some(Value::Array(a)) => a.iter().filter_map(one).collect(),
        Some(m) => one(m).into_iter().collect(),
        None => Vec::new(),
    }
}

/// Take the operations on `members` out of `ops` (the rest apply to the
/// group's JSON). Operations are applied in order: a `replace` resets what
/// earlier adds and removes said.
pub fn split_members(
    ops: Vec<Operation>,
    max_depth: usize,
) -> Result<(Vec<Operation>, MemberChanges), ScimError> {
    let mut rest = Vec::new();
    let mut m = MemberChanges::default();
    let mut flat = Vec::new();
    for o in ops {
        match (&o.path, &o.value) {
            (None, Some(v)) => flat.extend(expand_no_path(o.op, v, max_depth)?),
            _ => flat.push(o),
        }
    }
    for o in flat {
        let Some(path) = o.path.as_ref().filter(|p| p.is("members")) else {
            rest.push(o);
            continue;
        };
        let named: Vec<String> = match &path.filter {
            // members[value eq "id"]: the ids the filter names.
            Some(f) => filter_ids(f),
            None => member_values(o.value.as_ref()),
        };
        match o.op {
            Op::Add => {
                m.remove.retain(|r| !named.contains(r));
                m.add.extend(named);
            }
            Op::Replace => {
                m.replace = Some(named);
                m.add.clear();
                m.remove.clear();
                m.remove_all = false;
            }
            Op::Remove if path.filter.is_none() && o.value.is_none() => {
                m.replace = None;
                m.add.clear();
                m.remove.clear();
                m.remove_all = true;
            }
            Op::Remove => {
                m.add.retain(|a| !named.contains(a));
                m.remove.extend(named);
            }
        }
    }
    Ok((rest, m))
}

/// The values a member filter names: `value eq "x"` (or several with `or`).
fn filter_ids(f: &Filter) -> Vec<String> {
    match f {
        Filter::Or(a, b) => {
            let mut v = filter_ids(a);
            v.extend(filter_ids(b));
            v
        }
        Filter::Compare(p, filter::CompareOp::Eq, Value::String(s))
            if p.attr.eq_ignore_ascii_case("value") =>
        {
            vec![s.clone()]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ops(v: Value) -> Vec<Operation> {
        parse(&v, 10).unwrap()
    }

    fn patch(resource: &mut Value, body: Value) {
        for o in ops(body) {
            apply(resource, &o, 10).unwrap();
        }
    }

    fn user() -> Value {
        json!({
            "userName": "ann",
            "active": true,
            "name": {"givenName": "Ann", "familyName": "Smith"},
            "emails": [{"value": "ann@x.org", "type": "work", "primary": true}]
        })
    }

    #[test]
    fn paths() {
        let p = Path::parse(r#"emails[type eq "work"].value"#, 10).unwrap();
        assert_eq!(p.attr.attr, "emails");
        assert_eq!(p.sub_after_filter.as_deref(), Some("value"));
        let p = Path::parse(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
            10,
        )
        .unwrap();
        assert_eq!(
            p.attr.urn.as_deref(),
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:user")
        );
        assert_eq!(p.attr.attr, "employeeNumber");
        let p = Path::parse(
            "urn:ietf:params:scim:schemas:core:2.0:User:name.givenName",
            10,
        )
        .unwrap();
        assert_eq!(
            (p.attr.urn, p.attr.attr.as_str(), p.attr.sub.as_deref()),
            (None, "name", Some("givenName"))
        );
        for bad in [
            "",
            "emails[type eq \"work\"",
            "emails[type eq]",
            "a b",
            "emails[type eq \"w\"]x",
        ] {
            let e = Path::parse(bad, 10).expect_err(bad);
            assert_eq!(e.scim_type, Some(ScimType::InvalidPath), "{bad}");
        }
    }

    #[test]
    fn entra_quirks() {
        let mut u = user();
        patch(
            &mut u,
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                {"op": "Replace", "path": "active", "value": "False"},
                {"op": "Replace", "value": {"name.givenName": "Anna", "displayName": "Anna S"}},
                {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "anna@x.org"},
                {"op": "Add", "value": {"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "IT"}}}
            ]}),
        );
        assert_eq!(u["active"], "False", "mapping reads the string");
        assert_eq!(u["name"]["givenName"], "Anna");
        assert_eq!(u["name"]["familyName"], "Smith");
        assert_eq!(u["displayName"], "Anna S");
        assert_eq!(u["emails"][0]["value"], "anna@x.org");
        assert_eq!(u["emails"].as_array().unwrap().len(), 1);
        assert_eq!(
            u["urn:ietf:params:scim:schemas:extension:enterprise:2.0:user"]["department"],
            "IT"
        );
    }

    #[test]
    fn add_replace_remove() {
        let mut u = user();
        patch(
            &mut u,
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "operations": [
                {"op": "add", "path": "emails", "value": [{"value": "b@x.org", "type": "home"}]},
                {"op": "remove", "path": "emails[type eq \"work\"]"},
                {"op": "replace", "path": "name", "value": {"givenName": "Bo"}},
                {"op": "remove", "path": "name.familyName"}
            ]}),
        );
        assert_eq!(u["emails"], json!([{"value": "b@x.org", "type": "home"}]));
        assert_eq!(u["name"], json!({"givenName": "Bo"}));
        let mut u = user();
        let o = ops(
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "emails[type eq \"home\"]", "value": {"value": "x"}}]}),
        );
        assert_eq!(
            apply(&mut u, &o[0], 10).unwrap_err().scim_type,
            Some(ScimType::NoTarget)
        );
    }

    #[test]
    fn a_bare_extension_urn_path_patches_the_extension() {
        let urn = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
        let mut u = user();
        patch(
            &mut u,
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "path": urn, "value": {"department": "IT", "costCenter": "42"}}]}),
        );
        let ext = u
            .as_object()
            .unwrap()
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(urn))
            .map(|(_, v)| v.clone())
            .expect("the extension is set");
        assert_eq!(ext["department"], "IT");
        assert_eq!(ext["costCenter"], "42");
        let remove = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "remove", "path": urn}]});
        assert_eq!(
            parse(&remove, 10).unwrap_err().scim_type,
            Some(ScimType::InvalidPath)
        );
    }

    #[test]
    fn an_empty_operations_list_is_refused() {
        let empty =
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": []});
        assert_eq!(
            parse(&empty, 10).unwrap_err().scim_type,
            Some(ScimType::InvalidSyntax)
        );
    }

    #[test]
    fn bad_bodies() {
        let no_schema = json!({"Operations": []});
        assert_eq!(
            parse(&no_schema, 10).unwrap_err().scim_type,
            Some(ScimType::InvalidSyntax)
        );
        let bad_op = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "move", "path": "a"}]});
        assert!(parse(&bad_op, 10).is_err());
        let remove_no_path = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "remove"}]});
        assert_eq!(
            parse(&remove_no_path, 10).unwrap_err().scim_type,
            Some(ScimType::NoTarget)
        );
    }

    #[test]
    fn a_multibyte_key_at_the_urn_prefix_is_an_invalid_path() {
        // Found by fuzzing (fuzz/regressions/scim_patch/): `k[..4]` cut the
        // character in two and panicked.
        for k in ["abcé", "ur\u{758}x"] {
            let e = expand_no_path(Op::Add, &json!({ k: 1 }), 10).unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidPath), "{k}");
            assert!(Path::parse(k, 10).is_err(), "{k}");
        }
    }

    #[test]
    fn a_multibyte_path_at_the_urn_prefix_is_an_invalid_path() {
        // Found by fuzzing (fuzz/regressions/scim_patch/): the check for a
        // bare schema URN as path cut `path[..4]` inside a character.
        for path in ["urn\u{19c}x:User", "abc\u{e9}:Group"] {
            let body = json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{ "op": "replace", "path": path, "value": "x" }]
            });
            let e = parse(&body, 10).unwrap_err();
            assert_eq!(e.scim_type, Some(ScimType::InvalidPath), "{path}");
        }
    }

    #[test]
    fn member_operations() {
        let o = ops(
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                {"op": "Add", "path": "members", "value": [{"value": "a"}, {"value": "b"}]},
                {"op": "Remove", "path": "members[value eq \"b\"]"},
                {"op": "Remove", "path": "members", "value": [{"value": "c"}]},
                {"op": "Replace", "path": "displayName", "value": "G2"}
            ]}),
        );
        let (rest, m) = split_members(o, 10).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(m.add, vec!["a"]);
        assert_eq!(m.remove, vec!["b", "c"]);
        let o = ops(
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "remove", "path": "members"}, {"op": "add", "value": {"members": [{"value": "z"}]}}]}),
        );
        let (_, m) = split_members(o, 10).unwrap();
        assert!(m.remove_all);
        assert_eq!(m.add, vec!["z"]);
    }
}
