//! Bulk (RFC 7644 §3.7): a list of writes, each served as its own request,
//! with `bulkId:x` references resolved to the ids that other operations of
//! the same request created. No transaction spans them: an operation that
//! fails does not undo the others.
//!
//! Operations run in the order given, except that one referring to a
//! `bulkId` whose operation has not run yet waits for it (RFC 7644 §3.7.1:
//! a group may name a user posted after it). Operations that wait on each
//! other in a circle answer 409; the response lists every operation in the
//! request's order.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use hyper::Method;
use idsync_schema::scim::filter::get_ci;
use idsync_schema::scim::mapping;
use serde_json::{json, Value};

use super::error::{ScimError, ScimType};
use super::routes::{not_found, resource_op, syntax, Request, Response};
use super::state::State;

const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";

/// The ids created so far, by bulkId.
type BulkIds = HashMap<String, String>;

/// Replace `bulkId:x` references in every string of `v`.
fn resolve_refs(v: &mut Value, ids: &BulkIds) -> Result<(), ScimError> {
    match v {
        Value::String(s) => {
            // `bulkId:x` as a whole value or inside a path (`/Users/bulkId:x`).
            while let Some(at) = s.find("bulkId:") {
                let rest = &s[at + 7..];
                let end = rest.find(['/', '"', ' ']).unwrap_or(rest.len());
                let r = &rest[..end];
                let id = ids.get(r).cloned().ok_or_else(|| {
                    ScimError::bad(ScimType::InvalidValue, format!("unknown bulkId {r}"))
                })?;
                s.replace_range(at..at + 7 + end, &id);
            }
        }
        Value::Array(a) => {
            for i in a {
                resolve_refs(i, ids)?;
            }
        }
        Value::Object(o) => {
            for (_, i) in o.iter_mut() {
                resolve_refs(i, ids)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// POST `/Bulk`.
pub(crate) async fn bulk(state: &Arc<State>, req: Request) -> Result<Response, ScimError> {
    let body = req.body()?;
    mapping::require_schema(body, BULK_REQUEST)?;
    let ops = get_ci(body, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| syntax("a Bulk request needs Operations"))?;
    let max = state.cfg.bulk_max_operations;
    if ops.len() > max {
        return Err(ScimError::typed(
            413,
            ScimType::TooMany,
            format!("at most {max} operations per Bulk request"),
        ));
    }
    let fail_on_errors = get_ci(body, "failOnErrors").and_then(Value::as_u64);
    let declared: HashMap<String, usize> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, op)| Some((bulk_id_of(op)?, i)))
        .collect();
    let mut ids = BulkIds::new();
    let mut results: Vec<Option<Value>> = vec![None; ops.len()];
    let mut errors = 0u64;
    'passes: loop {
        let mut ran = false;
        for (i, op) in ops.iter().enumerate() {
            let waits = referenced(op).into_iter().any(|r| {
                declared
                    .get(&r)
                    .is_some_and(|&j| j != i && results[j].is_none())
            });
            if results[i].is_some() || waits {
                continue;
            }
            ran = true;
            let method_text = get_ci(op, "method")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_ascii_uppercase();
            let bulk_id = bulk_id_of(op);
            let outcome = one(state, &req, op, &method_text, bulk_id.is_some(), &ids).await;
            if outcome.is_err() {
                errors += 1;
            }
            results[i] = Some(entry(&method_text, bulk_id, outcome, &mut ids));
            if fail_on_errors.is_some_and(|max| errors >= max) {
                break 'passes;
            }
        }
        if !ran {
            break;
        }
    }
    let stopped = fail_on_errors.is_some_and(|max| errors >= max);
    let results: Vec<Value> = ops
        .iter()
        .zip(results)
        .filter_map(|(op, done)| match done {
            Some(entry) => Some(entry),
            // Not run: after failOnErrors, left out; else it waits on a
            // circle of references.
            None if stopped => None,
            None => Some(circular(op)),
        })
        .collect();
    Ok(Response::ok(
        json!({"schemas": [BULK_RESPONSE], "Operations": results}),
    ))
}

fn bulk_id_of(op: &Value) -> Option<String> {
    get_ci(op, "bulkId")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The bulkIds an operation refers to (`bulkId:x` in its path or data).
fn referenced(op: &Value) -> BTreeSet<String> {
    fn walk(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::String(s) => {
                let mut rest = s.as_str();
                while let Some(at) = rest.find("bulkId:") {
                    rest = &rest[at + 7..];
                    let end = rest.find(['/', '"', ' ']).unwrap_or(rest.len());
                    out.insert(rest[..end].to_owned());
                    rest = &rest[end..];
                }
            }
            Value::Array(a) => a.iter().for_each(|i| walk(i, out)),
            Value::Object(o) => o.values().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    for key in ["path", "data"] {
        if let Some(v) = get_ci(op, key) {
            walk(v, &mut out);
        }
    }
    out
}

/// The entry of an operation whose references wait on each other.
fn circular(op: &Value) -> Value {
    let mut entry = json!({
        "method": get_ci(op, "method").and_then(Value::as_str).unwrap_or("").to_ascii_uppercase(),
    });
    if let Some(b) = bulk_id_of(op) {
        entry["bulkId"] = json!(b);
    }
    let e = ScimError::status(
        409,
        "the bulkIds this operation refers to form a circle: none of them can be created first",
    );
    entry["status"] = json!("409");
    entry["response"] = e.to_json();
    entry
}

/// Serve one operation of a Bulk request as a request of its own.
async fn one(
    state: &Arc<State>,
    req: &Request,
    op: &Value,
    method_text: &str,
    has_bulk_id: bool,
    ids: &BulkIds,
) -> Result<Response, ScimError> {
    let method = match method_text {
        "POST" => Method::POST,
        "PUT" => Method::PUT,
        "PATCH" => Method::PATCH,
        "DELETE" => Method::DELETE,
        _ => return Err(syntax("method must be POST, PUT, PATCH or DELETE")),
    };
    if method == Method::POST && !has_bulk_id {
        return Err(syntax("a POST in a Bulk request needs a bulkId"));
    }
    let mut path = Value::String(
        get_ci(op, "path")
            .and_then(Value::as_str)
            .ok_or_else(|| syntax("path is mandatory"))?
            .to_owned(),
    );
    resolve_refs(&mut path, ids)?;
    let path = path.as_str().unwrap_or_default().to_owned();
    let mut data = get_ci(op, "data").cloned();
    if let Some(d) = data.as_mut() {
        resolve_refs(d, ids)?;
    }
    // Only resources and their ids: no discovery, no search, no nesting.
    if path.trim_matches('/').split('/').count() > 2 || path.contains(".search") {
        return Err(not_found(&path));
    }
    let sub = Request {
        method,
        path,
        query: HashMap::new(),
        if_match: get_ci(op, "version")
            .and_then(Value::as_str)
            .map(str::to_owned),
        if_none_match: None,
        body: data,
        token: req.token.clone(),
    };
    resource_op(state, &sub).await
}

/// The BulkResponse entry of one operation; remembers the id it created.
fn entry(
    method_text: &str,
    bulk_id: Option<String>,
    outcome: Result<Response, ScimError>,
    ids: &mut BulkIds,
) -> Value {
    let mut entry = json!({"method": method_text});
    if let Some(b) = &bulk_id {
        entry["bulkId"] = json!(b);
    }
    match outcome {
        Ok(r) => {
            if let Some(body) = r.json() {
                if let (Some(b), Some(id)) = (bulk_id, body["id"].as_str()) {
                    ids.insert(b, id.to_owned());
                }
                if let Some(loc) = body["meta"]["location"].as_str() {
                    entry["location"] = json!(loc);
                }
            }
            if let Some(v) = &r.etag {
                entry["version"] = json!(v);
            }
            entry["status"] = json!(r.status.to_string());
        }
        Err(e) => {
            entry["status"] = json!(e.status.to_string());
            entry["response"] = e.to_json();
        }
    }
    entry
}
