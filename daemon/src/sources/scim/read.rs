//! Reading one resource: rendered from the store, shaped by the client's
//! projection, answered with its ETag (and a 304 to a matching
//! `If-None-Match`). A write answers with the same rendering once it has
//! committed.

use serde_json::Value;
use uuid::Uuid;

use super::error::ScimError;
use super::etag::etag_matches;
use super::projection::Projection;
use super::resource::Resource;
use super::routes::{parse_id, Request, Response};
use super::state::State;

/// The SCIM JSON of object `id` of `R`, from the store.
pub(crate) fn fetch<R: Resource>(
    state: &State,
    id: Uuid,
    with_members: bool,
) -> Result<Option<Value>, ScimError> {
    match state.store().object::<R>(R::KIND, id)? {
        Some(o) => Ok(Some(o.render(state.store(), state.base(), with_members)?)),
        None => Ok(None),
    }
}

/// The SCIM JSON of an object as stored (`bytes`, from a scan).
pub(crate) fn decode<R: Resource>(
    state: &State,
    bytes: &[u8],
    with_members: bool,
) -> Result<Value, ScimError> {
    object::<R>(bytes)?.render(state.store(), state.base(), with_members)
}

/// An object as stored (`bytes`, from a scan).
pub(crate) fn object<R: Resource>(bytes: &[u8]) -> Result<R, ScimError> {
    // One UTF-8 check of the whole object costs less than one per string,
    // which is what reading from bytes does (a tenth of a list page).
    let text = std::str::from_utf8(bytes).map_err(|e| ScimError::internal(&e))?;
    serde_json::from_str(text).map_err(|e| ScimError::internal(&e))
}

/// GET of one resource.
pub(crate) fn read_one<R: Resource>(
    state: &State,
    id: &str,
    req: &Request,
) -> Result<Response, ScimError> {
    let projection = Projection::from_params(&req.query);
    let uuid = parse_id::<R>(id)?;
    let v = fetch::<R>(state, uuid, projection.wants("members"))?
        .ok_or_else(|| ScimError::not_found(R::NAME, id))?;
    let current = v["meta"]["version"].as_str().unwrap_or_default().to_owned();
    if let Some(inm) = &req.if_none_match {
        if etag_matches(inm, &current) {
            let mut r = Response::empty(304);
            r.etag = Some(current);
            return Ok(r);
        }
    }
    let mut r = Response::resource(200, projection.apply(v)?);
    r.etag = Some(current);
    Ok(r)
}

/// Answer a write with the object as committed, shaped by the request's
/// `attributes`/`excludedAttributes` (RFC 7644 §3.9: a client that changes
/// a large group's members can leave them out of the answer).
pub(crate) fn written<R: Resource>(
    state: &State,
    id: Uuid,
    status: u16,
    req: &Request,
) -> Result<Response, ScimError> {
    let projection = Projection::from_params(&req.query);
    let v = fetch::<R>(state, id, projection.wants("members"))?
        .ok_or_else(|| ScimError::not_found(R::NAME, &id.to_string()))?;
    Ok(Response::resource(status, projection.apply(v)?))
}
