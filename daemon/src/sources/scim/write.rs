//! Writes — POST, PUT, PATCH, DELETE — once for every kind, over
//! [`Resource`]. They run inside the shared transaction of the
//! group-commit [`Writer`](idsync_store::writer::Writer): read the object
//! there, check `If-Match` there, and go through the reconciler like a CSV
//! row. A body is checked (schema, id, validation) before it queues; a
//! PATCH can only be validated once applied, inside the transaction.

use std::sync::Arc;

use idsync_schema::scim::filter::get_ci;
use idsync_schema::scim::mapping;
use idsync_schema::scim::patch::{self, MemberChanges};
use idsync_schema::{Source, UserRules};
use idsync_store::reconcile::Tx;
use idsync_store::Actor;
use serde_json::Value;
use uuid::Uuid;

use super::error::{ScimError, ScimType};
use super::etag::check_if_match;
use super::members;
use super::read::written;
use super::resource::Resource;
use super::routes::{Request, Response};
use super::state::State;

/// Run `job` in the writer's transaction, as the request's token.
async fn run<T, F>(state: &State, req: &Request, job: F) -> Result<T, ScimError>
where
    T: Send + 'static,
    F: FnMut(&mut Tx<'_>) -> Result<T, ScimError> + Send + 'static,
{
    let actor = Actor::token(req.token.clone());
    state
        .writer
        .run::<_, ScimError, _>(Source::Scim, actor, job)
        .await
}

/// The user rules with SCIM's rule set (`[scim] require`, `max_chars`):
/// RFC 7643's by default, not seed 003's CSV rules.
fn rules(state: &State) -> UserRules {
    UserRules {
        set: state.cfg.rule_set(),
        ..state.rec.settings().rules.clone()
    }
}

fn missing<R: Resource>(id: Uuid) -> ScimError {
    ScimError::not_found(R::NAME, &id.to_string())
}

/// Object `id` of `R` in the transaction, if it is at the version the
/// client names.
fn load_matching<R: Resource>(
    tx: &Tx<'_>,
    id: Uuid,
    if_match: Option<&str>,
) -> Result<R, ScimError> {
    let existing = R::load(tx, id)?.ok_or_else(|| missing::<R>(id))?;
    check_if_match(if_match, existing.version())?;
    Ok(existing)
}

fn check_body_id(body: &Value, id: Uuid) -> Result<(), ScimError> {
    match get_ci(body, "id").and_then(Value::as_str) {
        Some(given) if given != id.to_string() => Err(ScimError::bad(
            ScimType::Mutability,
            "id is immutable and must match the URL",
        )),
        _ => Ok(()),
    }
}

/// POST: create from the body.
pub(crate) async fn create<R: Resource>(
    state: &Arc<State>,
    req: &Request,
) -> Result<Response, ScimError> {
    let body = req.body()?;
    mapping::require_schema(body, R::SCHEMA)?;
    let input = R::input(body, None)?;
    R::validate(&input, &rules(state))?;
    let members = R::stated_members(body);
    let id = run(state, req, move |tx| {
        let id = R::create(tx, input.clone())?;
        members::change(tx, id, members.as_ref())?;
        Ok(id)
    })
    .await?;
    state.reading(|| written::<R>(state, id, 201, req))
}

/// PUT: replace object `id` with the body.
pub(crate) async fn replace<R: Resource>(
    state: &Arc<State>,
    id: Uuid,
    req: &Request,
) -> Result<Response, ScimError> {
    let body = req.body()?;
    mapping::require_schema(body, R::SCHEMA)?;
    // `id` is read-only, and RFC 7644 §3.5.1 says read-only values in a
    // PUT "SHALL be ignored": the URL names the object, whatever the body
    // says. (A PATCH that changes `id` is refused: it asks for a change.)
    let input = R::input(body, Some(id))?;
    R::validate(&input, &rules(state))?;
    let members = R::stated_members(body);
    rewrite::<R, _>(state, id, req, members, move |tx, existing| {
        R::update(tx, existing, input.clone())
    })
    .await
}

/// PATCH: apply the operations to object `id`'s JSON, then write it as a
/// PUT would; a group's member operations change memberships directly.
pub(crate) async fn patch<R: Resource>(
    state: &Arc<State>,
    id: Uuid,
    req: &Request,
) -> Result<Response, ScimError> {
    let depth = state.cfg.max_filter_depth;
    let ops = patch::parse(req.body()?, depth)?;
    let (ops, members) = R::split_members(ops, depth)?;
    // A group PATCH that only names members leaves the group itself alone.
    let touches_object = members.is_none() || !ops.is_empty();
    let rules = rules(state);
    let base = state.base().to_owned();
    rewrite::<R, _>(state, id, req, members, move |tx, existing| {
        if !touches_object {
            return Ok(());
        }
        let mut v = existing.bare(&base);
        for o in &ops {
            patch::apply(&mut v, o, depth)?;
        }
        check_body_id(&v, id)?;
        let input = R::input(&v, Some(id))?;
        R::validate(&input, &rules)?;
        R::update(tx, existing, input)
    })
    .await
}

/// PUT and PATCH: in the transaction, `edit` object `id` (at the version
/// `If-Match` names), change the members the request names, and answer
/// with the object as committed.
async fn rewrite<R, F>(
    state: &Arc<State>,
    id: Uuid,
    req: &Request,
    members: Option<MemberChanges>,
    edit: F,
) -> Result<Response, ScimError>
where
    R: Resource,
    F: FnMut(&mut Tx<'_>, R) -> Result<(), ScimError> + Send + 'static,
{
    let if_match = req.if_match.clone();
    let mut edit = edit;
    run(state, req, move |tx| {
        let existing = load_matching::<R>(tx, id, if_match.as_deref())?;
        edit(tx, existing)?;
        members::change(tx, id, members.as_ref())
    })
    .await?;
    state.reading(|| written::<R>(state, id, 200, req))
}

/// DELETE of object `id` (for users under `scim.delete_deactivates`, a
/// deactivation).
pub(crate) async fn delete<R: Resource>(
    state: &Arc<State>,
    id: Uuid,
    req: &Request,
) -> Result<Response, ScimError> {
    let if_match = req.if_match.clone();
    let deactivate = state.cfg.delete_deactivates;
    run(state, req, move |tx| {
        let existing = load_matching::<R>(tx, id, if_match.as_deref())?;
        if R::delete(tx, existing, deactivate)? {
            Ok(())
        } else {
            Err(missing::<R>(id))
        }
    })
    .await?;
    Ok(Response::empty(204))
}
