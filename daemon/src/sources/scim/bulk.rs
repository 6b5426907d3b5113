//! Bulk (RFC 7644 §3.7): a list of writes, each served as its own request
//! in order, with `bulkId:x` references resolved to the ids that earlier
//! operations of the same request created. No transaction spans them: an
//! operation that fails does not undo the ones before it.

use std::collections::HashMap;
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
    let mut ids = BulkIds::new();
    let mut results = Vec::new();
    let mut errors = 0u64;
    for op in ops {
        let method_text = get_ci(op, "method")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_uppercase();
        let bulk_id = get_ci(op, "bulkId")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let outcome = one(state, &req, op, &method_text, bulk_id.is_some(), &ids).await;
        if outcome.is_err() {
            errors += 1;
        }
        results.push(entry(&method_text, bulk_id, outcome, &mut ids));
        if fail_on_errors.is_some_and(|max| errors >= max) {
            break;
        }
    }
    Ok(Response::ok(
        json!({"schemas": [BULK_RESPONSE], "Operations": results}),
    ))
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
            if let Some(body) = &r.body {
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
