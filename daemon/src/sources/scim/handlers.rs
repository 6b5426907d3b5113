//! The SCIM operations, independent of HTTP: a [`Request`] in, a
//! [`Response`] or a [`ScimError`] out. The listener turns HTTP into
//! requests; Bulk turns each of its operations into one.
//!
//! Reads come straight from the store (a write is answered only after its
//! commit, so a client reads its own writes). Writes run inside the shared
//! transaction of [`Writer`]: they read the object there, check `If-Match`
//! there, and go through the reconciler like a CSV row.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use hyper::Method;
use idsync_schema::{Asset, Group, Kind, Source, Status, User, UserRules};
use serde_json::{json, Value};
use uuid::Uuid;

use super::error::{ScimError, ScimType};
use super::ScimConfig;
use idsync_schema::scim::discovery;
use idsync_schema::scim::filter::{self, get_ci, AttrPath, Filter};
use idsync_schema::scim::mapping::{self, etag, ASSET_SCHEMA, GROUP_SCHEMA, USER_SCHEMA};
use idsync_schema::scim::patch;
use idsync_store::keys::{self, Index};
use idsync_store::reconcile::{Reconciler, Tx, UserWrite};
use idsync_store::writer::Writer;
use idsync_store::{Actor, Store};

const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const SEARCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";

/// What the handlers work with.
pub struct State {
    pub cfg: ScimConfig,
    pub rec: Arc<Reconciler>,
    pub writer: Writer,
    /// Object counts by kind, valid while the change log's head is the
    /// one recorded (an unfiltered list reports the total without a scan).
    counts: Mutex<HashMap<Kind, (u64, u64)>>,
    anchors: Mutex<Anchors>,
}

impl State {
    pub fn new(cfg: ScimConfig, rec: Arc<Reconciler>, writer: Writer) -> Self {
        Self {
            cfg,
            rec,
            writer,
            counts: Mutex::new(HashMap::new()),
            anchors: Mutex::new(Anchors::default()),
        }
    }

    fn store(&self) -> &Store {
        self.rec.store()
    }

    fn base(&self) -> &str {
        self.cfg.base()
    }
}

/// One SCIM request, after HTTP.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// The path below the base path, without query (`/Users/…`).
    pub path: String,
    /// Query parameters, decoded.
    pub query: HashMap<String, String>,
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
    pub body: Option<Value>,
    /// The token's name: the actor of the changes.
    pub token: String,
}

/// What to send back.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub body: Option<Value>,
    pub etag: Option<String>,
    pub location: Option<String>,
}

impl Response {
    fn ok(body: Value) -> Self {
        Self {
            status: 200,
            body: Some(body),
            etag: None,
            location: None,
        }
    }

    fn resource(status: u16, body: Value) -> Self {
        let etag = body["meta"]["version"].as_str().map(str::to_owned);
        let location = (status == 201)
            .then(|| body["meta"]["location"].as_str().map(str::to_owned))
            .flatten();
        Self {
            status,
            body: Some(body),
            etag,
            location,
        }
    }

    fn empty(status: u16) -> Self {
        Self {
            status,
            body: None,
            etag: None,
            location: None,
        }
    }
}

/// The resource types with endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Res {
    User,
    Group,
    Asset,
}

impl Res {
    fn from_segment(s: &str) -> Option<Self> {
        Some(match s {
            "Users" => Res::User,
            "Groups" => Res::Group,
            "Assets" => Res::Asset,
            _ => return None,
        })
    }

    fn kind(self) -> Kind {
        match self {
            Res::User => Kind::User,
            Res::Group => Kind::Group,
            Res::Asset => Kind::Asset,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Res::User => "User",
            Res::Group => "Group",
            Res::Asset => "Asset",
        }
    }

    fn schema(self) -> &'static str {
        match self {
            Res::User => USER_SCHEMA,
            Res::Group => GROUP_SCHEMA,
            Res::Asset => ASSET_SCHEMA,
        }
    }
}

fn not_found(path: &str) -> ScimError {
    ScimError::status(404, format!("no endpoint {path}"))
}

fn method_not_allowed(method: &Method, path: &str) -> ScimError {
    ScimError::status(405, format!("{method} is not supported on {path}"))
}

/// Whether a request only reads (the `read` role suffices).
pub fn is_read(method: &Method, path: &str) -> bool {
    *method == Method::GET
        || *method == Method::HEAD
        || (*method == Method::POST && path.ends_with("/.search"))
}

/// Serve one request.
pub async fn dispatch(state: &Arc<State>, req: Request) -> Result<Response, ScimError> {
    let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let get = req.method == Method::GET || req.method == Method::HEAD;
    match segments.as_slice() {
        ["ServiceProviderConfig"] if get => Ok(Response::ok(discovery::service_provider_config(
            &state.cfg.advertised(),
        ))),
        ["ResourceTypes"] if get => Ok(Response::ok(discovery::list(discovery::resource_types(
            &state.cfg.advertised(),
        )))),
        ["ResourceTypes", id] if get => discovery::resource_types(&state.cfg.advertised())
            .into_iter()
            .find(|r| r["id"] == *id)
            .map(Response::ok)
            .ok_or_else(|| ScimError::not_found("resource type", id)),
        ["Schemas"] if get => Ok(Response::ok(discovery::list(discovery::schemas(
            &state.cfg.advertised(),
        )))),
        ["Schemas", id] if get => discovery::schemas(&state.cfg.advertised())
            .into_iter()
            .find(|r| r["id"].as_str().is_some_and(|s| s.eq_ignore_ascii_case(id)))
            .map(Response::ok)
            .ok_or_else(|| ScimError::not_found("schema", id)),
        ["ServiceProviderConfig" | "ResourceTypes" | "Schemas", ..] => {
            Err(method_not_allowed(&req.method, &req.path))
        }
        ["Bulk"] if req.method == Method::POST => bulk(state, req).await,
        _ => resource_op(state, &req).await,
    }
}

/// CRUD and queries on `/Users`, `/Groups`, `/Assets`.
async fn resource_op(state: &Arc<State>, req: &Request) -> Result<Response, ScimError> {
    let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let Some(res) = segments.first().and_then(|s| Res::from_segment(s)) else {
        return Err(not_found(&req.path));
    };
    let get = req.method == Method::GET || req.method == Method::HEAD;
    match (&segments[1..], &req.method) {
        ([], _) if get => {
            let q = Query::from_params(&req.query)?;
            list(state, res, q).map(Response::ok)
        }
        ([], &Method::POST) => create(state, res, req).await,
        ([".search"], &Method::POST) => {
            let body = req
                .body
                .as_ref()
                .ok_or_else(|| syntax("a search needs a body"))?;
            mapping::require_schema(body, SEARCH_SCHEMA)?;
            list(state, res, Query::from_body(body)?).map(Response::ok)
        }
        ([id], _) if get => read_one(state, res, id, req),
        ([id], &Method::PUT) => replace(state, res, parse_id(res, id)?, req).await,
        ([id], &Method::PATCH) => patch_one(state, res, parse_id(res, id)?, req).await,
        ([id], &Method::DELETE) => delete(state, res, parse_id(res, id)?, req).await,
        ([] | [_], _) => Err(method_not_allowed(&req.method, &req.path)),
        _ => Err(not_found(&req.path)),
    }
}

fn syntax(detail: &str) -> ScimError {
    ScimError::bad(ScimType::InvalidSyntax, detail.to_owned())
}

fn parse_id(res: Res, id: &str) -> Result<Uuid, ScimError> {
    Uuid::parse_str(id).map_err(|_| ScimError::not_found(res.name(), id))
}

fn actor(req: &Request) -> Actor {
    Actor::token(req.token.clone())
}

// ---------------------------------------------------------------- reading

/// The display text of a member.
fn user_display(u: &User) -> String {
    u.display_name
        .clone()
        .or_else(|| u.login_name.clone())
        .unwrap_or_else(|| u.mail.clone())
}

fn render_user(store: &Store, u: &User, base: &str) -> Result<Value, ScimError> {
    let mut groups = Vec::with_capacity(u.groups.len());
    for gid in &u.groups {
        if let Some(g) = store.object::<Group>(Kind::Group, *gid)? {
            groups.push((g.id, g.display_name));
        }
    }
    Ok(mapping::user_to_json(u, &groups, base))
}

fn render_group(
    store: &Store,
    g: &Group,
    with_members: bool,
    base: &str,
) -> Result<Value, ScimError> {
    if !with_members {
        return Ok(mapping::group_to_json(g, None, base));
    }
    let members: Vec<(Uuid, String)> = store
        .member_users(g.id)?
        .iter()
        .map(|u| (u.id, user_display(u)))
        .collect();
    Ok(mapping::group_to_json(g, Some(&members), base))
}

/// The SCIM JSON of object `id` of `res`, from the store.
fn render(
    state: &State,
    res: Res,
    id: Uuid,
    with_members: bool,
) -> Result<Option<Value>, ScimError> {
    let store = state.store();
    let base = state.base();
    Ok(match res {
        Res::User => match store.object::<User>(Kind::User, id)? {
            Some(u) => Some(render_user(store, &u, base)?),
            None => None,
        },
        Res::Group => match store.object::<Group>(Kind::Group, id)? {
            Some(g) => Some(render_group(store, &g, with_members, base)?),
            None => None,
        },
        Res::Asset => store
            .object::<Asset>(Kind::Asset, id)?
            .map(|a| mapping::asset_to_json(&a, base)),
    })
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn read_one(state: &Arc<State>, res: Res, id: &str, req: &Request) -> Result<Response, ScimError> {
    let attributes = req
        .query
        .get("attributes")
        .map(|s| split_list(s))
        .unwrap_or_default();
    let excluded = req
        .query
        .get("excludedAttributes")
        .map(|s| split_list(s))
        .unwrap_or_default();
    let uuid = parse_id(res, id)?;
    let with_members = wants(&attributes, &excluded, "members");
    let v = render(state, res, uuid, with_members)?
        .ok_or_else(|| ScimError::not_found(res.name(), id))?;
    let current = v["meta"]["version"].as_str().unwrap_or_default().to_owned();
    if let Some(inm) = &req.if_none_match {
        if etag_matches(inm, &current) {
            let mut r = Response::empty(304);
            r.etag = Some(current);
            return Ok(r);
        }
    }
    let mut r = Response::resource(200, project(v, &attributes, &excluded)?);
    r.etag = Some(current);
    Ok(r)
}

/// Whether an `If-Match`/`If-None-Match` list names `current` (weak
/// comparison: `W/` is ignored on both sides).
pub fn etag_matches(header: &str, current: &str) -> bool {
    let strip = |s: &str| {
        s.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_owned()
    };
    let cur = strip(current);
    header
        .split(',')
        .any(|t| t.trim() == "*" || strip(t) == cur)
}

fn check_if_match(if_match: &Option<String>, version: u64) -> Result<(), ScimError> {
    match if_match {
        Some(h) if !etag_matches(h, &etag(version)) => Err(ScimError::precondition(&etag(version))),
        _ => Ok(()),
    }
}

/// Whether `attr` is returned under `attributes`/`excludedAttributes`.
fn wants(attributes: &[String], excluded: &[String], attr: &str) -> bool {
    let names = |list: &[String]| {
        list.iter().any(|a| {
            AttrPath::parse(a).is_ok_and(|p| p.urn.is_none() && p.attr.eq_ignore_ascii_case(attr))
        })
    };
    if !attributes.is_empty() {
        return names(attributes);
    }
    !names(excluded)
}

/// Apply `attributes` / `excludedAttributes` (RFC 7644 §3.9): `schemas`,
/// `id` and `meta` are always returned.
pub fn project(v: Value, attributes: &[String], excluded: &[String]) -> Result<Value, ScimError> {
    let Value::Object(mut obj) = v else {
        return Ok(v);
    };
    let parse = |list: &[String]| -> Result<Vec<AttrPath>, ScimError> {
        list.iter()
            .map(|a| AttrPath::parse(a).map_err(|e| ScimError::bad(ScimType::InvalidValue, e)))
            .collect()
    };
    let always = ["schemas", "id", "meta"];
    if !attributes.is_empty() {
        let wanted = parse(attributes)?;
        let mut out = serde_json::Map::new();
        for k in always {
            if let Some(v) = obj.remove(k) {
                out.insert(k.into(), v);
            }
        }
        for p in wanted {
            let (src, dst) = match &p.urn {
                None => (&mut obj, &mut out),
                Some(urn) => {
                    let Some(key) = obj.keys().find(|k| k.eq_ignore_ascii_case(urn)).cloned()
                    else {
                        continue;
                    };
                    let ext = out.entry(key.clone()).or_insert_with(|| json!({}));
                    let Some(src) = obj.get_mut(&key).and_then(Value::as_object_mut) else {
                        continue;
                    };
                    let Some(dst) = ext.as_object_mut() else {
                        continue;
                    };
                    copy_attr(src, dst, &p);
                    continue;
                }
            };
            copy_attr(src, dst, &p);
        }
        return Ok(Value::Object(out));
    }
    for p in parse(excluded)? {
        let target = match &p.urn {
            None => Some(&mut obj),
            Some(urn) => {
                let key = obj.keys().find(|k| k.eq_ignore_ascii_case(urn)).cloned();
                key.and_then(|k| obj.get_mut(&k))
                    .and_then(Value::as_object_mut)
            }
        };
        let Some(target) = target else { continue };
        let Some(key) = target
            .keys()
            .find(|k| k.eq_ignore_ascii_case(&p.attr))
            .cloned()
        else {
            continue;
        };
        if always.contains(&key.as_str()) && p.urn.is_none() {
            continue;
        }
        match &p.sub {
            None => {
                target.remove(&key);
            }
            Some(sub) => match target.get_mut(&key) {
                Some(Value::Object(o)) => {
                    o.retain(|k, _| !k.eq_ignore_ascii_case(sub));
                }
                Some(Value::Array(items)) => {
                    for i in items.iter_mut().filter_map(Value::as_object_mut) {
                        i.retain(|k, _| !k.eq_ignore_ascii_case(sub));
                    }
                }
                _ => {}
            },
        }
    }
    Ok(Value::Object(obj))
}

fn copy_attr(
    src: &mut serde_json::Map<String, Value>,
    dst: &mut serde_json::Map<String, Value>,
    p: &AttrPath,
) {
    let Some(key) = src
        .keys()
        .find(|k| k.eq_ignore_ascii_case(&p.attr))
        .cloned()
    else {
        return;
    };
    let Some(sub) = &p.sub else {
        if let Some(v) = src.get(&key) {
            dst.insert(key, v.clone());
        }
        return;
    };
    let picked = match src.get(&key) {
        Some(Value::Object(o)) => {
            let mut m = match dst.get(&key) {
                Some(Value::Object(m)) => m.clone(),
                _ => serde_json::Map::new(),
            };
            if let Some((k, v)) = o.iter().find(|(k, _)| k.eq_ignore_ascii_case(sub)) {
                m.insert(k.clone(), v.clone());
            }
            Value::Object(m)
        }
        Some(Value::Array(items)) => Value::Array(
            items
                .iter()
                .map(|i| {
                    let mut m = serde_json::Map::new();
                    if let Some(o) = i.as_object() {
                        if let Some((k, v)) = o.iter().find(|(k, _)| k.eq_ignore_ascii_case(sub)) {
                            m.insert(k.clone(), v.clone());
                        }
                    }
                    Value::Object(m)
                })
                .collect(),
        ),
        _ => return,
    };
    dst.insert(key, picked);
}

/// The parameters of a query (RFC 7644 §3.4.2).
#[derive(Debug, Default)]
struct Query {
    filter: Option<String>,
    sort_by: Option<String>,
    descending: bool,
    start_index: Option<i64>,
    count: Option<i64>,
    attributes: Vec<String>,
    excluded: Vec<String>,
}

fn int_param(name: &str, v: &str) -> Result<i64, ScimError> {
    v.trim()
        .parse()
        .map_err(|_| ScimError::bad(ScimType::InvalidValue, format!("{name} must be an integer")))
}

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
    fn from_params(q: &HashMap<String, String>) -> Result<Self, ScimError> {
        Ok(Self {
            filter: q.get("filter").cloned(),
            sort_by: q.get("sortBy").cloned(),
            descending: q
                .get("sortOrder")
                .map(|s| sort_order(s))
                .transpose()?
                .unwrap_or(false),
            start_index: q
                .get("startIndex")
                .map(|v| int_param("startIndex", v))
                .transpose()?,
            count: q.get("count").map(|v| int_param("count", v)).transpose()?,
            attributes: q
                .get("attributes")
                .map(|s| split_list(s))
                .unwrap_or_default(),
            excluded: q
                .get("excludedAttributes")
                .map(|s| split_list(s))
                .unwrap_or_default(),
        })
    }

    fn from_body(b: &Value) -> Result<Self, ScimError> {
        let s = |k: &str| get_ci(b, k).and_then(Value::as_str).map(str::to_owned);
        let n = |k: &str| -> Result<Option<i64>, ScimError> {
            match get_ci(b, k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.as_i64().map(Some).ok_or_else(|| {
                    ScimError::bad(ScimType::InvalidValue, format!("{k} must be an integer"))
                }),
            }
        };
        let l = |k: &str| -> Vec<String> {
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
        Ok(Self {
            filter: s("filter"),
            sort_by: s("sortBy"),
            descending: s("sortOrder")
                .map(|v| sort_order(&v))
                .transpose()?
                .unwrap_or(false),
            start_index: n("startIndex")?,
            count: n("count")?,
            attributes: l("attributes"),
            excluded: l("excludedAttributes"),
        })
    }
}

/// Candidate ids for `f` from an index, when an index can answer it
/// (`None`: a scan is needed). The filter is still evaluated on each.
fn plan(store: &Store, res: Res, f: &Filter) -> Result<Option<Vec<Uuid>>, ScimError> {
    match f {
        Filter::And(a, b) => match plan(store, res, a)? {
            Some(ids) => Ok(Some(ids)),
            None => plan(store, res, b),
        },
        Filter::Or(a, b) => match (plan(store, res, a)?, plan(store, res, b)?) {
            (Some(mut x), Some(y)) => {
                x.extend(
                    y.into_iter()
                        .filter(|id| !x.contains(id))
                        .collect::<Vec<_>>(),
                );
                Ok(Some(x))
            }
            _ => Ok(None),
        },
        _ => {
            let Some((path, value)) = f.equality() else {
                return Ok(None);
            };
            if path.urn.is_some() {
                return Ok(None);
            }
            let attr = path.dotted();
            if attr == "id" {
                return Ok(Some(Uuid::parse_str(value).ok().into_iter().collect()));
            }
            let indexes: &[Index] = match (res, attr.as_str()) {
                (Res::User, "username") => &[Index::UserLogin, Index::UserMail],
                (Res::User, "emails" | "emails.value") => &[Index::UserMail],
                (Res::User, "externalid") => &[Index::UserExternalId],
                (Res::Group, "displayname") => &[Index::GroupName],
                (Res::Group, "externalid") => &[Index::GroupExternalId],
                (Res::Asset, "name") => &[Index::AssetName],
                _ => return Ok(None),
            };
            let mut ids = Vec::new();
            // userName: a loginName hit settles it; only users without
            // one show their mail as userName.
            for index in indexes {
                if let Some(id) = store.lookup(*index, value)? {
                    ids.push(id);
                    break;
                }
            }
            Ok(Some(ids))
        }
    }
}

/// Number of objects of `kind`, counted again only when the change log
/// moved since the last count.
fn total(state: &State, kind: Kind) -> Result<u64, ScimError> {
    let head = state.store().head()?;
    if let Some((h, n)) = state
        .counts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&kind)
    {
        if *h == head {
            return Ok(*n);
        }
    }
    let n = state.store().count(kind)?;
    state
        .counts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(kind, (head, n));
    Ok(n)
}

/// Every this many objects, a page walk remembers the key it passed.
const ANCHOR_EVERY: usize = 1000;

/// Keys at positions `ANCHOR_EVERY - 1`, `2 * ANCHOR_EVERY - 1`, … of each
/// kind's objects in id order, valid while the change log's head is the
/// one recorded: a page deep into the list starts at the nearest anchor
/// instead of walking from the first object.
#[derive(Default)]
struct Anchors {
    head: u64,
    keys: HashMap<Kind, Vec<Vec<u8>>>,
}

/// The objects at positions `start ..= start + count - 1` (1-based) in id
/// order, rendered.
fn page_in_order(
    state: &State,
    res: Res,
    start: usize,
    count: usize,
    with_members: bool,
) -> Result<Vec<Value>, ScimError> {
    const CHUNK: usize = 1024;
    let store = state.store();
    let prefix = keys::object_prefix(res.kind());
    let head = store.head()?;
    let wanted = start - 1; // 0-based
                            // The nearest anchor at or before the first wanted position.
    let (mut after, mut pos) = {
        let mut anchors = state.anchors.lock().unwrap_or_else(|p| p.into_inner());
        if anchors.head != head {
            *anchors = Anchors {
                head,
                keys: HashMap::new(),
            };
        }
        let known = anchors.keys.get(&res.kind()).map_or(&[][..], Vec::as_slice);
        match (wanted / ANCHOR_EVERY).min(known.len()) {
            0 => (None, 0),
            block => (Some(known[block - 1].clone()), block * ANCHOR_EVERY),
        }
    };
    let mut learned: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut page = Vec::with_capacity(count);
    'walk: loop {
        let chunk = store.scan_page(prefix, after.as_deref(), CHUNK)?;
        let last = chunk.len() < CHUNK;
        for (k, v) in &chunk {
            if pos % ANCHOR_EVERY == ANCHOR_EVERY - 1 {
                learned.push((pos / ANCHOR_EVERY, k.clone()));
            }
            if pos >= wanted {
                page.push(decode_render(state, res, v, with_members)?);
                if page.len() == count {
                    break 'walk;
                }
            }
            pos += 1;
        }
        if last {
            break;
        }
        after = chunk.into_iter().next_back().map(|(k, _)| k);
    }
    let mut anchors = state.anchors.lock().unwrap_or_else(|p| p.into_inner());
    if anchors.head == head {
        let known = anchors.keys.entry(res.kind()).or_default();
        for (block, key) in learned {
            if block == known.len() {
                known.push(key);
            }
        }
    }
    Ok(page)
}

fn decode_render(
    state: &State,
    res: Res,
    bytes: &[u8],
    with_members: bool,
) -> Result<Value, ScimError> {
    let bad = |e: serde_json::Error| ScimError::internal(&e);
    let base = state.base();
    Ok(match res {
        Res::User => render_user(
            state.store(),
            &serde_json::from_slice(bytes).map_err(bad)?,
            base,
        )?,
        Res::Group => render_group(
            state.store(),
            &serde_json::from_slice(bytes).map_err(bad)?,
            with_members,
            base,
        )?,
        Res::Asset => mapping::asset_to_json(&serde_json::from_slice(bytes).map_err(bad)?, base),
    })
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

fn list(state: &Arc<State>, res: Res, q: Query) -> Result<Value, ScimError> {
    let cfg = &state.cfg;
    let start = q.start_index.unwrap_or(1).max(1) as usize;
    let count = q
        .count
        .unwrap_or(cfg.default_count as i64)
        .clamp(0, cfg.max_results as i64) as usize;
    let filter = match &q.filter {
        Some(f) if f.chars().count() > cfg.max_filter_chars => {
            return Err(ScimError::bad(
                ScimType::InvalidFilter,
                format!(
                    "the filter is longer than {} characters",
                    cfg.max_filter_chars
                ),
            ))
        }
        Some(f) => Some(filter::parse(f, cfg.max_filter_depth)?),
        None => None,
    };
    let sort = q
        .sort_by
        .as_deref()
        .map(AttrPath::parse)
        .transpose()
        .map_err(|e| ScimError::bad(ScimType::InvalidValue, e))?;
    let with_members = wants(&q.attributes, &q.excluded, "members");
    let store = state.store();
    let prefix = keys::object_prefix(res.kind());

    let mut page: Vec<Value> = Vec::new();
    let total_results: u64;
    match (&filter, &sort) {
        // The common case: pages of everything in id order, no sort.
        (None, None) => {
            total_results = total(state, res.kind())?;
            if count > 0 {
                page = page_in_order(state, res, start, count, with_members)?;
            }
        }
        _ => {
            // Matches: from an index when it can answer, else a scan. A
            // sort needs them all: more than max_results is tooMany.
            let mut matches: Vec<Value> = Vec::new();
            let mut n: u64 = 0;
            let keep_all = sort.is_some();
            let mut consider = |j: Value| -> Result<bool, ScimError> {
                if filter.as_ref().is_some_and(|f| !f.matches(&j)) {
                    return Ok(true);
                }
                n += 1;
                if keep_all {
                    if matches.len() >= cfg.max_results {
                        return Err(ScimError::bad(
                            ScimType::TooMany,
                            format!(
                                "more than {} resources match; narrow the filter",
                                cfg.max_results
                            ),
                        ));
                    }
                    matches.push(j);
                } else if n as usize >= start && matches.len() < count {
                    matches.push(j);
                }
                Ok(true)
            };
            let planned = match &filter {
                Some(f) => plan(store, res, f)?,
                None => None,
            };
            match planned {
                Some(ids) => {
                    for id in ids {
                        if let Some(j) = render(state, res, id, with_members)? {
                            consider(j)?;
                        }
                    }
                }
                None => {
                    let mut err = None;
                    store.scan(prefix, |_, v| {
                        let r = decode_render(state, res, v, with_members).and_then(&mut consider);
                        match r {
                            Ok(_) => Ok(true),
                            Err(e) => {
                                err = Some(e);
                                Ok(false)
                            }
                        }
                    })?;
                    if let Some(e) = err {
                        return Err(e);
                    }
                }
            }
            total_results = n;
            if let Some(path) = &sort {
                matches.sort_by(|a, b| {
                    let (ka, kb) = (sort_key(a, path), sort_key(b, path));
                    // Missing values sort last whatever the order.
                    match (ka, kb) {
                        (None, None) => std::cmp::Ordering::Equal,
                        (None, Some(_)) => std::cmp::Ordering::Greater,
                        (Some(_), None) => std::cmp::Ordering::Less,
                        (Some(x), Some(y)) if q.descending => y.cmp(&x),
                        (Some(x), Some(y)) => x.cmp(&y),
                    }
                });
                page = matches.into_iter().skip(start - 1).take(count).collect();
            } else {
                page = matches;
            }
        }
    }
    let resources = page
        .into_iter()
        .map(|v| project(v, &q.attributes, &q.excluded))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": total_results,
        "startIndex": start,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    }))
}

// ---------------------------------------------------------------- writing

fn body(req: &Request) -> Result<&Value, ScimError> {
    req.body
        .as_ref()
        .ok_or_else(|| syntax("this request needs a JSON body"))
}

/// Member ids named in a body, parsed; values that are not ids are left
/// out (see [`known_users`]).
fn member_ids(values: &[String]) -> Vec<Uuid> {
    values
        .iter()
        .filter_map(|v| Uuid::parse_str(v).ok())
        .collect()
}

/// The ids among `ids` that are users. Members that do not exist are
/// skipped and logged rather than refused: identity providers send
/// memberships of users they have not pushed (yet, or at all).
fn known_users(tx: &Tx<'_>, ids: &[Uuid], named: usize) -> Result<Vec<Uuid>, ScimError> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if tx.user(*id)?.is_some() {
            out.push(*id);
        }
    }
    if out.len() < named {
        tracing::warn!(
            skipped = named - out.len(),
            "SCIM: group members that are not known users were skipped"
        );
    }
    Ok(out)
}

fn rules(state: &State) -> UserRules {
    state.rec.settings().rules.clone()
}

/// Answer a write with the object as committed.
/// Answer a write with the object as committed, shaped by the request's
/// `attributes`/`excludedAttributes` (RFC 7644 §3.9: a client that changes
/// a large group's members can leave them out of the answer).
fn written(
    state: &State,
    res: Res,
    id: Uuid,
    status: u16,
    req: &Request,
) -> Result<Response, ScimError> {
    let attributes = req
        .query
        .get("attributes")
        .map(|s| split_list(s))
        .unwrap_or_default();
    let excluded = req
        .query
        .get("excludedAttributes")
        .map(|s| split_list(s))
        .unwrap_or_default();
    let with_members = wants(&attributes, &excluded, "members");
    let v = render(state, res, id, with_members)?
        .ok_or_else(|| ScimError::not_found(res.name(), &id.to_string()))?;
    // `meta` is always returned, so ETag and Location survive projection.
    Ok(Response::resource(
        status,
        project(v, &attributes, &excluded)?,
    ))
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

async fn create(state: &Arc<State>, res: Res, req: &Request) -> Result<Response, ScimError> {
    let body = body(req)?.clone();
    mapping::require_schema(&body, res.schema())?;
    let id = match res {
        Res::User => {
            let input = mapping::user_input(&body)?;
            input.validate(&rules(state))?;
            state
                .writer
                .run::<_, ScimError, _>(Source::Scim, actor(req), move |tx| {
                    Ok(tx.create_user(input, &UserWrite::default())?.id())
                })
                .await?
        }
        Res::Group => {
            let input = mapping::group_input(&body)?;
            input.validate()?;
            let values = mapping::member_values(&body).unwrap_or_default();
            state
                .writer
                .run::<_, ScimError, _>(Source::Scim, actor(req), move |tx| {
                    let id = tx.create_group(input)?.id();
                    let add = known_users(tx, &member_ids(&values), values.len())?;
                    if !add.is_empty() {
                        let group = tx
                            .group(id)?
                            .ok_or_else(|| ScimError::not_found("Group", &id.to_string()))?;
                        tx.change_members(&group, &add, &[])?;
                    }
                    Ok(id)
                })
                .await?
        }
        Res::Asset => {
            let input = mapping::asset_input(&body, None)?;
            input.validate()?;
            state
                .writer
                .run::<_, ScimError, _>(Source::Scim, actor(req), move |tx| {
                    if tx.lookup(Index::AssetName, &input.name)?.is_some() {
                        return Err(ScimError::typed(
                            409,
                            ScimType::Uniqueness,
                            format!("an asset named {:?} exists", input.name),
                        ));
                    }
                    Ok(tx.upsert_asset(input)?.id())
                })
                .await?
        }
    };
    written(state, res, id, 201, req)
}

/// The member ids of a group after a full replace: (add, remove).
fn member_diff(
    tx: &Tx<'_>,
    gid: Uuid,
    wanted: &[Uuid],
) -> Result<(Vec<Uuid>, Vec<Uuid>), ScimError> {
    let current = tx.members_of(gid)?;
    let wanted_set: BTreeSet<Uuid> = wanted.iter().copied().collect();
    let add = wanted
        .iter()
        .filter(|u| !current.contains(u))
        .copied()
        .collect();
    let remove = current
        .iter()
        .filter(|u| !wanted_set.contains(u))
        .copied()
        .collect();
    Ok((add, remove))
}

async fn replace(
    state: &Arc<State>,
    res: Res,
    id: Uuid,
    req: &Request,
) -> Result<Response, ScimError> {
    let body = body(req)?.clone();
    mapping::require_schema(&body, res.schema())?;
    check_body_id(&body, id)?;
    let if_match = req.if_match.clone();
    let missing = move || ScimError::not_found(res.name(), &id.to_string());
    match res {
        Res::User => {
            let input = mapping::user_input(&body)?;
            input.validate(&rules(state))?;
            state
                .writer
                .run::<_, ScimError, _>(Source::Scim, actor(req), move |tx| {
                    let existing = tx.user(id)?.ok_or_else(missing)?;
                    check_if_match(&if_match, existing.meta.version)?;
                    tx.update_user(existing, input, &UserWrite::default())?;
                    Ok(())
                })
                .await?
        }
        Res::Group => {
            let input = mapping::group_input(&body)?;
            input.validate()?;
            // PUT states the whole group: no members attribute, no members.
            let values = mapping::member_values(&body).unwrap_or_default();
            state
                .writer
                .run::<_, ScimError, _>(Source::Scim, actor(req), move |tx| {
                    let existing = tx.group(id)?.ok_or_else(missing)?;
                    check_if_match(&if_match, existing.meta.version)?;
                    tx.update_group(existing, input)?;
                    let wanted = known_users(tx, &member_ids(&values), values.len())?;
                    let (add, remove) = member_diff(tx, id, &wanted)?;
                    let group = tx.group(id)?.ok_or_else(missing)?;
                    tx.change_members(&group, &add, &remove)?;
                    Ok(())
                })
                .await?
        }
        Res::Asset => {
            let input = mapping::asset_input(&body, Some(id))?;
            input.validate()?;
            state
                .writer
                .run::<_, ScimError, _>(Source::Scim, actor(req), move |tx| {
                    let existing = tx.asset(id)?.ok_or_else(missing)?;
                    check_if_match(&if_match, existing.meta.version)?;
                    tx.upsert_asset(input)?;
                    Ok(())
                })
                .await?
        }
    }
    written(state, res, id, 200, req)
}

async fn patch_one(
    state: &Arc<State>,
    res: Res,
    id: Uuid,
    req: &Request,
) -> Result<Response, ScimError> {
    let depth = state.cfg.max_filter_depth;
    let ops = patch::parse(body(req)?, depth)?;
    let if_match = req.if_match.clone();
    let base = state.base().to_owned();
    let missing = move || ScimError::not_found(res.name(), &id.to_string());
    let apply_all = move |mut v: Value, ops: &[patch::Operation]| -> Result<Value, ScimError> {
        for o in ops {
            patch::apply(&mut v, o, depth)?;
        }
        Ok(v)
    };
    match res {
        Res::User => {
            let rules = rules(state);
            state
                .writer
                .run::<_, ScimError, _>(Source::Scim, actor(req), move |tx| {
                    let existing = tx.user(id)?.ok_or_else(missing)?;
                    check_if_match(&if_match, existing.meta.version)?;
                    let v = apply_all(mapping::user_to_json(&existing, &[], &base), &ops)?;
                    check_body_id(&v, id)?;
                    let input = mapping::user_input(&v)?;
                    input.validate(&rules)?;
                    tx.update_user(existing, input, &UserWrite::default())?;
                    Ok(())
                })
                .await?
        }
        Res::Group => {
            let (ops, members) = patch::split_members(ops, depth)?;
            state
                .writer
                .run::<_, ScimError, _>(Source::Scim, actor(req), move |tx| {
                    let existing = tx.group(id)?.ok_or_else(missing)?;
                    check_if_match(&if_match, existing.meta.version)?;
                    if !ops.is_empty() {
                        let v = apply_all(mapping::group_to_json(&existing, None, &base), &ops)?;
                        check_body_id(&v, id)?;
                        let input = mapping::group_input(&v)?;
                        input.validate()?;
                        tx.update_group(existing, input)?;
                    }
                    let (mut add, mut remove) = match (&members.replace, members.remove_all) {
                        (Some(values), _) => {
                            let wanted = known_users(tx, &member_ids(values), values.len())?;
                            member_diff(tx, id, &wanted)?
                        }
                        (None, true) => (Vec::new(), tx.members_of(id)?.into_iter().collect()),
                        (None, false) => (Vec::new(), Vec::new()),
                    };
                    add.extend(known_users(
                        tx,
                        &member_ids(&members.add),
                        members.add.len(),
                    )?);
                    remove.extend(member_ids(&members.remove));
                    remove.retain(|r| !add.contains(r));
                    if !add.is_empty() || !remove.is_empty() {
                        let group = tx.group(id)?.ok_or_else(missing)?;
                        tx.change_members(&group, &add, &remove)?;
                    }
                    Ok(())
                })
                .await?
        }
        Res::Asset => {
            state
                .writer
                .run::<_, ScimError, _>(Source::Scim, actor(req), move |tx| {
                    let existing = tx.asset(id)?.ok_or_else(missing)?;
                    check_if_match(&if_match, existing.meta.version)?;
                    let v = apply_all(mapping::asset_to_json(&existing, &base), &ops)?;
                    check_body_id(&v, id)?;
                    let input = mapping::asset_input(&v, Some(id))?;
                    input.validate()?;
                    tx.upsert_asset(input)?;
                    Ok(())
                })
                .await?
        }
    }
    written(state, res, id, 200, req)
}

async fn delete(
    state: &Arc<State>,
    res: Res,
    id: Uuid,
    req: &Request,
) -> Result<Response, ScimError> {
    let if_match = req.if_match.clone();
    let deactivate = state.cfg.delete_deactivates && res == Res::User;
    let missing = move || ScimError::not_found(res.name(), &id.to_string());
    state
        .writer
        .run::<_, ScimError, _>(Source::Scim, actor(req), move |tx| {
            let version = match res {
                Res::User => tx.user(id)?.map(|u| u.meta.version),
                Res::Group => tx.group(id)?.map(|g| g.meta.version),
                Res::Asset => tx.asset(id)?.map(|a| a.meta.version),
            }
            .ok_or_else(missing)?;
            check_if_match(&if_match, version)?;
            if deactivate {
                let existing = tx.user(id)?.ok_or_else(missing)?;
                let mut input = mapping::user_input(&mapping::user_to_json(&existing, &[], ""))?;
                input.status = Status::Inactive;
                tx.update_user(existing, input, &UserWrite::default())?;
                return Ok(());
            }
            let gone = match res {
                Res::User => tx.delete_user(id)?,
                Res::Group => tx.delete_group(id)?,
                Res::Asset => tx.delete_asset(id)?,
            };
            if gone {
                Ok(())
            } else {
                Err(missing())
            }
        })
        .await?;
    Ok(Response::empty(204))
}

// ---------------------------------------------------------------- bulk

/// Replace `bulkId:x` references in every string of `v`.
fn resolve_refs(v: &mut Value, ids: &HashMap<String, String>) -> Result<(), ScimError> {
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

async fn bulk(state: &Arc<State>, req: Request) -> Result<Response, ScimError> {
    let body = body(&req)?;
    mapping::require_schema(body, BULK_REQUEST)?;
    let ops = get_ci(body, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| syntax("a Bulk request needs Operations"))?;
    if ops.len() > state.cfg.bulk_max_operations {
        return Err(ScimError::typed(
            413,
            ScimType::TooMany,
            format!(
                "at most {} operations per Bulk request",
                state.cfg.bulk_max_operations
            ),
        ));
    }
    let fail_on_errors = get_ci(body, "failOnErrors").and_then(Value::as_u64);
    let mut ids: HashMap<String, String> = HashMap::new();
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
        let outcome = async {
            let method = match method_text.as_str() {
                "POST" => Method::POST,
                "PUT" => Method::PUT,
                "PATCH" => Method::PATCH,
                "DELETE" => Method::DELETE,
                _ => return Err(syntax("method must be POST, PUT, PATCH or DELETE")),
            };
            if method == Method::POST && bulk_id.is_none() {
                return Err(syntax("a POST in a Bulk request needs a bulkId"));
            }
            let mut path = Value::String(
                get_ci(op, "path")
                    .and_then(Value::as_str)
                    .ok_or_else(|| syntax("path is mandatory"))?
                    .to_owned(),
            );
            resolve_refs(&mut path, &ids)?;
            let path = path.as_str().unwrap_or_default().to_owned();
            let mut data = get_ci(op, "data").cloned();
            if let Some(d) = data.as_mut() {
                resolve_refs(d, &ids)?;
            }
            let sub = Request {
                method: method.clone(),
                path: path.clone(),
                query: HashMap::new(),
                if_match: get_ci(op, "version")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                if_none_match: None,
                body: data,
                token: req.token.clone(),
            };
            if path.trim_matches('/').split('/').count() > 2 || path.contains(".search") {
                return Err(not_found(&path));
            }
            resource_op(state, &sub).await
        }
        .await;
        let mut entry = json!({"method": method_text});
        if let Some(b) = &bulk_id {
            entry["bulkId"] = json!(b);
        }
        match outcome {
            Ok(r) => {
                if let Some(body) = &r.body {
                    if let (Some(b), Some(id)) = (&bulk_id, body["id"].as_str()) {
                        ids.insert(b.clone(), id.to_owned());
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
                errors += 1;
                entry["status"] = json!(e.status.to_string());
                entry["response"] = e.to_json();
            }
        }
        results.push(entry);
        if fail_on_errors.is_some_and(|max| errors >= max) {
            break;
        }
    }
    Ok(Response::ok(
        json!({"schemas": [BULK_RESPONSE], "Operations": results}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use idsync_schema::{GroupInput, UserInput};
    use idsync_store::reconcile::Settings;
    use idsync_store::{EngineKind, EngineOptions};

    /// Equality filters on the indexed attributes are planned from an
    /// index (a candidate list, no scan); everything else needs a scan.
    #[test]
    fn equality_filters_use_the_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(Store::open(EngineKind::Redb, dir.path(), &EngineOptions::default()).unwrap());
        let rec = Reconciler::new(Arc::clone(&store), Settings::default()).unwrap();
        let mut tx = rec.begin(Source::Scim, Actor::default());
        let mut u = UserInput::new(Status::Active, "ann@example.org", "Smith");
        u.login_name = idsync_schema::Field::Set("ann".into());
        u.external_id = idsync_schema::Field::Set("E-1".into());
        let uid = tx.create_user(u, &UserWrite::default()).unwrap().id();
        let mut noise = UserInput::new(Status::Active, "bob@example.org", "B");
        noise.login_name = idsync_schema::Field::Set("bob".into());
        tx.create_user(noise, &UserWrite::default()).unwrap();
        let gid = tx.create_group(GroupInput::new("Admins")).unwrap().id();
        tx.commit().unwrap();

        let plan_of =
            |res: Res, f: &str| plan(&store, res, &filter::parse(f, 10).unwrap()).unwrap();
        for f in [
            r#"userName eq "ANN""#,
            r#"userName eq "ann@example.org""#,
            r#"emails.value eq "ann@example.org""#,
            r#"emails eq "Ann@Example.org""#,
            r#"externalId eq "E-1""#,
            &format!(r#"id eq "{uid}""#),
            r#"userName eq "ann" and active eq true"#,
            r#"name.familyName co "x" and userName eq "ann""#,
        ] {
            assert_eq!(plan_of(Res::User, f), Some(vec![uid]), "{f}");
        }
        assert_eq!(plan_of(Res::User, r#"userName eq "nobody""#), Some(vec![]));
        assert_eq!(
            plan_of(Res::User, r#"userName eq "ann" or userName eq "bob""#).map(|v| v.len()),
            Some(2)
        );
        assert_eq!(
            plan_of(Res::Group, r#"displayName eq "admins""#),
            Some(vec![gid])
        );
        for f in [
            r#"userName co "ann""#,
            r#"userName ne "ann""#,
            "userName pr",
            r#"userName eq "ann" or active eq true"#,
            r#"displayName eq "Ann""#,
            r#"not (userName eq "ann")"#,
        ] {
            assert_eq!(plan_of(Res::User, f), None, "{f}");
        }
    }

    #[test]
    fn etags_compare_weakly() {
        assert!(etag_matches("W/\"3\"", "W/\"3\""));
        assert!(etag_matches("\"3\"", "W/\"3\""));
        assert!(etag_matches("W/\"1\", W/\"3\"", "W/\"3\""));
        assert!(etag_matches("*", "W/\"3\""));
        assert!(!etag_matches("W/\"2\"", "W/\"3\""));
    }

    #[test]
    fn projection_keeps_id_schemas_meta() {
        let v = json!({"schemas": ["x"], "id": "1", "meta": {}, "userName": "a", "name": {"givenName": "A", "familyName": "B"},
            "emails": [{"value": "a@x", "type": "work"}], "urn:x:User": {"k": 1, "j": 2}});
        let p = project(
            v.clone(),
            &[
                "userName".into(),
                "name.familyName".into(),
                "urn:x:User:k".into(),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(
            p,
            json!({"schemas": ["x"], "id": "1", "meta": {}, "userName": "a", "name": {"familyName": "B"}, "urn:x:User": {"k": 1}})
        );
        let p = project(
            v,
            &[],
            &["emails".into(), "id".into(), "name.givenName".into()],
        )
        .unwrap();
        assert!(p.get("emails").is_none());
        assert_eq!(p["id"], "1");
        assert_eq!(p["name"], json!({"familyName": "B"}));
    }
}
