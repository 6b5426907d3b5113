//! The SCIM operations, independent of HTTP: a [`Request`] in, a
//! [`Response`] or a [`ScimError`] out, dispatched by method and path. The
//! listener turns HTTP into requests; Bulk turns each of its operations
//! into one.
//!
//! Only routing lives here: discovery documents come from
//! `idsync_schema::scim::discovery`, reads from [`super::read`] and
//! [`super::list`], writes from [`super::write`], Bulk from
//! [`super::bulk`].

use std::collections::HashMap;
use std::sync::Arc;

use hyper::Method;
use idsync_schema::scim::discovery;
use idsync_schema::scim::mapping;
use idsync_schema::{Asset, Group, User};
use serde_json::Value;
use uuid::Uuid;

use super::error::{ScimError, ScimType};
use super::query::Query;
use super::resource::Resource;
use super::state::State;
use super::{bulk, list, read, write};

const SEARCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

/// One SCIM request, after HTTP.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) method: Method,
    /// The path below the base path, without query (`/Users/…`).
    pub(crate) path: String,
    /// Query parameters, decoded.
    pub(crate) query: HashMap<String, String>,
    pub(crate) if_match: Option<String>,
    pub(crate) if_none_match: Option<String>,
    pub(crate) body: Option<Value>,
    /// The token's name: the actor of the changes.
    pub(crate) token: String,
}

impl Request {
    /// The JSON body, which this request cannot do without.
    pub(crate) fn body(&self) -> Result<&Value, ScimError> {
        self.body
            .as_ref()
            .ok_or_else(|| syntax("this request needs a JSON body"))
    }
}

/// What to send back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: Option<Body>,
    pub(crate) etag: Option<String>,
    pub(crate) location: Option<String>,
}

/// A response body: JSON, or JSON written already (a list page, which
/// never exists as a `Value`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Body {
    Json(Value),
    Written(Vec<u8>),
}

impl Response {
    pub(crate) fn ok(body: Value) -> Self {
        Self {
            status: 200,
            body: Some(Body::Json(body)),
            etag: None,
            location: None,
        }
    }

    /// A 200 whose JSON is written already.
    pub(crate) fn written(json: Vec<u8>) -> Self {
        Self {
            status: 200,
            body: Some(Body::Written(json)),
            etag: None,
            location: None,
        }
    }

    /// The body, when it is a JSON value.
    pub(crate) fn json(&self) -> Option<&Value> {
        match &self.body {
            Some(Body::Json(v)) => Some(v),
            _ => None,
        }
    }

    /// A resource: its version is the ETag, and a creation says where it is.
    pub(crate) fn resource(status: u16, body: Value) -> Self {
        let etag = body["meta"]["version"].as_str().map(str::to_owned);
        let location = (status == 201)
            .then(|| body["meta"]["location"].as_str().map(str::to_owned))
            .flatten();
        Self {
            status,
            body: Some(Body::Json(body)),
            etag,
            location,
        }
    }

    pub(crate) fn empty(status: u16) -> Self {
        Self {
            status,
            body: None,
            etag: None,
            location: None,
        }
    }
}

pub(crate) fn not_found(path: &str) -> ScimError {
    ScimError::status(404, format!("no endpoint {path}"))
}

fn method_not_allowed(method: &Method, path: &str) -> ScimError {
    ScimError::status(405, format!("{method} is not supported on {path}"))
}

pub(crate) fn syntax(detail: &str) -> ScimError {
    ScimError::bad(ScimType::InvalidSyntax, detail.to_owned())
}

/// Whether a request only reads (the `read` role suffices).
pub(crate) fn is_read(method: &Method, path: &str) -> bool {
    *method == Method::GET
        || *method == Method::HEAD
        || (*method == Method::POST && path.ends_with("/.search"))
}

fn is_get(method: &Method) -> bool {
    *method == Method::GET || *method == Method::HEAD
}

fn segments(path: &str) -> Vec<&str> {
    path.trim_matches('/').split('/').collect()
}

/// Serve one request.
pub(crate) async fn dispatch(state: &Arc<State>, req: Request) -> Result<Response, ScimError> {
    let get = is_get(&req.method);
    let advertised = || state.advertised();
    match segments(&req.path).as_slice() {
        ["ServiceProviderConfig"] if get => Ok(Response::ok(discovery::service_provider_config(
            &advertised(),
        ))),
        ["ResourceTypes"] if get => Ok(Response::ok(discovery::list(discovery::resource_types(
            &advertised(),
        )))),
        ["ResourceTypes", id] if get => discovery::resource_types(&advertised())
            .into_iter()
            .find(|r| r["id"] == *id)
            .map(Response::ok)
            .ok_or_else(|| ScimError::not_found("resource type", id)),
        ["Schemas"] if get => Ok(Response::ok(discovery::list(discovery::schemas(
            &advertised(),
        )))),
        ["Schemas", id] if get => discovery::schemas(&advertised())
            .into_iter()
            .find(|r| r["id"].as_str().is_some_and(|s| s.eq_ignore_ascii_case(id)))
            .map(Response::ok)
            .ok_or_else(|| ScimError::not_found("schema", id)),
        ["ServiceProviderConfig" | "ResourceTypes" | "Schemas", ..] => {
            Err(method_not_allowed(&req.method, &req.path))
        }
        ["Bulk"] if req.method == Method::POST => bulk::bulk(state, req).await,
        // RFC 7644 §3.11: a server without `/Me` answers 501. idsync's
        // clients authenticate with tokens that are not users.
        ["Me", ..] => Err(ScimError::status(
            501,
            "/Me is not supported: idsync's bearer tokens do not stand for a user",
        )),
        // RFC 7644 §3.4.3: a search across resource types at the root; 501
        // when not supported.
        [".search"] if req.method == Method::POST => Err(ScimError::status(
            501,
            "a search across resource types is not supported: POST /Users/.search, /Groups/.search or /Assets/.search",
        )),
        _ => resource_op(state, &req).await,
    }
}

/// CRUD and queries on `/Users`, `/Groups`, `/Assets`.
pub(crate) async fn resource_op(state: &Arc<State>, req: &Request) -> Result<Response, ScimError> {
    let segments = segments(&req.path);
    let rest = &segments[1..];
    match segments[0] {
        "Users" => on::<User>(state, req, rest).await,
        "Groups" => on::<Group>(state, req, rest).await,
        "Assets" => on::<Asset>(state, req, rest).await,
        _ => Err(not_found(&req.path)),
    }
}

/// The operations on the endpoint of `R`; `rest` is the path after it.
async fn on<R: Resource>(
    state: &Arc<State>,
    req: &Request,
    rest: &[&str],
) -> Result<Response, ScimError> {
    let get = is_get(&req.method);
    match (rest, &req.method) {
        ([], _) if get => {
            let q = Query::from_params(&req.query)?;
            state.reading(|| list::list::<R>(state, q).map(Response::written))
        }
        ([], &Method::POST) => write::create::<R>(state, req).await,
        ([".search"], &Method::POST) => {
            let body = req
                .body
                .as_ref()
                .ok_or_else(|| syntax("a search needs a body"))?;
            mapping::require_schema(body, SEARCH_SCHEMA)?;
            let q = Query::from_body(body)?;
            state.reading(|| list::list::<R>(state, q).map(Response::written))
        }
        ([id], _) if get => state.reading(|| read::read_one::<R>(state, id, req)),
        ([id], &Method::PUT) => write::replace::<R>(state, parse_id::<R>(id)?, req).await,
        ([id], &Method::PATCH) => write::patch::<R>(state, parse_id::<R>(id)?, req).await,
        ([id], &Method::DELETE) => write::delete::<R>(state, parse_id::<R>(id)?, req).await,
        ([] | [_], _) => Err(method_not_allowed(&req.method, &req.path)),
        _ => Err(not_found(&req.path)),
    }
}

/// The id in a URL; one that is not a UUID names nothing.
pub(crate) fn parse_id<R: Resource>(id: &str) -> Result<Uuid, ScimError> {
    Uuid::parse_str(id).map_err(|_| ScimError::not_found(R::NAME, id))
}
