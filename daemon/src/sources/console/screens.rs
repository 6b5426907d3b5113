//! The console's screens: which roles see each, and what each shows and
//! does. Reads go to the store (searches by index, a page at a time);
//! actions go through the same services as the admin API, with the
//! session's token as the actor.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};
use idsync_schema::{EnrollmentRequest, Group, Kind, RequestStatus, User};
use idsync_store::keys::Index;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use super::session::Live;
use super::{views, Call, Console};
use crate::infra::auth::Role;
use crate::infra::http::parse_query;
use crate::sources::enroll::{EnrollError, RequestFilter};

/// Rows on one page of a list.
const PAGE: usize = 50;

/// A screen of the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Overview,
    Import,
    Users,
    Requests,
}

impl Screen {
    const ALL: [Screen; 4] = [
        Screen::Overview,
        Screen::Import,
        Screen::Users,
        Screen::Requests,
    ];

    fn label(self) -> &'static str {
        match self {
            Screen::Overview => "Overview",
            Screen::Import => "Import",
            Screen::Users => "Users",
            Screen::Requests => "Requests",
        }
    }

    fn href(self) -> &'static str {
        match self {
            Screen::Overview => "/ui/",
            Screen::Import => "/ui/import",
            Screen::Users => "/ui/users",
            Screen::Requests => "/ui/requests",
        }
    }

    /// The roles that see the screen (admin sees all): the same as the
    /// admin API's for the same data.
    fn roles(self) -> &'static [Role] {
        match self {
            Screen::Overview => &[Role::Monitor, Role::Read],
            Screen::Import => &[Role::Write],
            Screen::Users => &[Role::Read],
            Screen::Requests => &[Role::Operator, Role::Approver],
        }
    }

    pub fn allowed(self, live: &Live) -> bool {
        live.identity.grants_any(self.roles())
    }
}

/// The navigation for `live`: the screens its roles allow.
pub fn nav(live: &Live, current: Option<Screen>) -> Value {
    Screen::ALL
        .iter()
        .filter(|s| s.allowed(live))
        .map(|s| json!({ "label": s.label(), "href": s.href(), "current": Some(*s) == current }))
        .collect()
}

/// Answer a signed-in request (a POST has passed the CSRF checks).
pub async fn route(c: &Console, call: &Call<'_>, live: &Live) -> Response<Full<Bytes>> {
    let parts: Vec<&str> = call.path["/ui/".len()..]
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    let (screen, get) = match (call.method, parts.as_slice()) {
        (&Method::GET | &Method::HEAD, []) => (Screen::Overview, Get::Overview),
        (&Method::GET | &Method::HEAD, ["import"]) => (Screen::Import, Get::Import),
        (_, ["import", rest @ ..]) => {
            if !Screen::Import.allowed(live) {
                return c.views.forbidden(live);
            }
            return super::import::route(c, call, live, rest).await;
        }
        (&Method::GET | &Method::HEAD, ["users"]) => (Screen::Users, Get::Users),
        (&Method::GET | &Method::HEAD, ["users", id]) => (Screen::Users, Get::User(id)),
        (&Method::GET | &Method::HEAD, ["requests"]) => (Screen::Requests, Get::Requests),
        (&Method::GET | &Method::HEAD, ["requests", id]) => (Screen::Requests, Get::Request(id)),
        (&Method::POST, ["requests", id, "decide"]) => return decide(c, call, live, id).await,
        _ => return c.views.not_found(live),
    };
    if !screen.allowed(live) {
        return c.views.forbidden(live);
    }
    let shown = match get {
        Get::Overview => Ok(overview(c)),
        Get::Import => Ok(Shown::Page("import.html", super::import::form(c))),
        Get::Users => users(c, call.query),
        Get::User(id) => user(c, id),
        Get::Requests => Ok(requests(c, call.query)),
        Get::Request(id) => request(c, live, id),
    };
    match shown {
        Ok(Shown::Page(template, vars)) => {
            c.views
                .page(template, StatusCode::OK, Some(live), Some(screen), vars)
        }
        Ok(Shown::NotFound) => c.views.not_found(live),
        Err(e) => {
            tracing::error!(error = %e, "console: reading the store failed");
            c.views.error(
                Some(live),
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "The store could not be read; try again.",
                "/ui/",
            )
        }
    }
}

enum Get<'a> {
    Overview,
    Import,
    Users,
    User(&'a str),
    Requests,
    Request(&'a str),
}

/// What a screen shows: a template with its values, or nothing there.
enum Shown {
    Page(&'static str, Value),
    NotFound,
}

fn overview(c: &Console) -> Shown {
    let status = c.metrics.status_document();
    let connectors = status["connectors"].clone();
    Shown::Page(
        "overview.html",
        json!({ "status": status, "connectors": connectors }),
    )
}

/// Users by the start of their mail or login name (both indexes, merged
/// by id), or all users in id order; a page at a time, the next page
/// anchored after the last key shown.
fn users(c: &Console, query: Option<&str>) -> Result<Shown, idsync_store::StoreError> {
    let q = parse_query(query);
    let text = q.get("q").map(|s| s.trim()).unwrap_or("");
    let after = q.get("after").and_then(|a| hex::decode(a).ok());
    let store = c.rec.store();
    let (users, last) = if text.is_empty() {
        let page = store.scan_page(
            idsync_store::keys::object_prefix(Kind::User),
            after.as_deref(),
            PAGE,
        )?;
        let last = (page.len() == PAGE).then(|| page[PAGE - 1].0.clone());
        let users = page
            .iter()
            .filter_map(|(_, v)| serde_json::from_slice::<User>(v).ok())
            .collect::<Vec<_>>();
        (users, last)
    } else {
        // The index is chosen by the text's shape: mails have an `@`.
        let index = if text.contains('@') {
            Index::UserMail
        } else {
            Index::UserLogin
        };
        let page = store.index_page(index, text, after.as_deref(), PAGE)?;
        let last = (page.len() == PAGE).then(|| page[PAGE - 1].0.clone());
        let mut users = Vec::with_capacity(page.len());
        for (_, id) in &page {
            if let Some(u) = store.object::<User>(Kind::User, *id)? {
                users.push(u);
            }
        }
        (users, last)
    };
    let rows: Vec<Value> = users.iter().map(user_row).collect();
    let next = last.map(|k| {
        format!(
            "/ui/users?q={}&after={}",
            percent_encode(text),
            hex::encode(k)
        )
    });
    Ok(Shown::Page(
        "users.html",
        json!({ "q": text, "users": rows, "next": next }),
    ))
}

fn user_row(u: &User) -> Value {
    let name = [u.first_name.as_deref(), u.last_name.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    json!({
        "id": u.id.to_string(),
        "mail": u.mail,
        "login": u.login_name,
        "name": u.display_name.clone().unwrap_or(name),
        "status": u.status.as_str(),
        "modified": date(u.meta.modified),
    })
}

fn user(c: &Console, id: &str) -> Result<Shown, idsync_store::StoreError> {
    let Ok(id) = Uuid::parse_str(id) else {
        return Ok(Shown::NotFound);
    };
    let store = c.rec.store();
    let Some(u) = store.object::<User>(Kind::User, id)? else {
        return Ok(Shown::NotFound);
    };
    let mut groups = Vec::new();
    for g in &u.groups {
        if let Some(g) = store.object::<Group>(Kind::Group, *g)? {
            groups.push(g.display_name);
        }
    }
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let fields = vec![
        ("Id", u.id.to_string()),
        ("Mail", opt(&u.mail)),
        ("Login name", opt(&u.login_name)),
        ("First name", opt(&u.first_name)),
        ("Last name", opt(&u.last_name)),
        ("Status", u.status.as_str().to_owned()),
        ("Valid from", opt(&u.valid_from)),
        ("Valid to", opt(&u.valid_to)),
        ("Applications", u.applications.join(", ")),
        ("Roles", u.roles.join(", ")),
        ("Created", date(u.meta.created)),
        ("Modified", date(u.meta.modified)),
        ("Version", u.meta.version.to_string()),
    ];
    Ok(Shown::Page(
        "user.html",
        json!({ "user": u, "fields": fields, "groups": groups }),
    ))
}

fn requests(c: &Console, query: Option<&str>) -> Shown {
    let q = parse_query(query);
    let text = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let mut error = None;
    let filter = RequestFilter {
        status: text("status").and_then(|s| {
            let parsed = RequestStatus::parse(s);
            if parsed.is_none() {
                error = Some(format!("There is no status {s:?}."));
            }
            parsed
        }),
        asset: text("asset").map(str::to_owned),
        profile: text("profile").map(str::to_owned),
        requester: text("requester").map(str::to_owned),
    };
    let found = match c.enrollment.requests(&filter) {
        Ok(found) => found,
        Err(e) => {
            error = Some(e.to_string());
            Vec::new()
        }
    };
    let rows: Vec<Value> = found
        .iter()
        .map(|r| {
            json!({
                "id": r.id.to_string(),
                "created": date(r.meta.created),
                "profile": r.profile,
                "subject": subject(r),
                "protocol": r.protocol.to_string(),
                "requester": r.requester,
                "status": r.status.as_str(),
            })
        })
        .collect();
    let statuses = [
        RequestStatus::PendingApproval,
        RequestStatus::Approved,
        RequestStatus::Issued,
        RequestStatus::Rejected,
        RequestStatus::Failed,
    ]
    .map(RequestStatus::as_str);
    Shown::Page(
        "requests.html",
        json!({
            "requests": rows,
            "statuses": statuses,
            "error": error,
            "filter": {
                "status": filter.status.map(RequestStatus::as_str),
                "asset": filter.asset, "profile": filter.profile, "requester": filter.requester,
            },
        }),
    )
}

fn subject(r: &EnrollmentRequest) -> String {
    r.data.name.clone().unwrap_or_else(|| r.profile.clone())
}

fn request(c: &Console, live: &Live, id: &str) -> Result<Shown, idsync_store::StoreError> {
    let Ok(id) = Uuid::parse_str(id) else {
        return Ok(Shown::NotFound);
    };
    let r = match c.enrollment.request(id) {
        Ok(r) => r,
        Err(EnrollError::NotFound(_)) => return Ok(Shown::NotFound),
        Err(e) => {
            tracing::warn!(error = %e, "console: reading a request failed");
            return Ok(Shown::NotFound);
        }
    };
    let own = r.requester == live.identity.token.as_str();
    let decidable =
        r.status == RequestStatus::PendingApproval && !own && live.identity.grants(Role::Approver);
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let fields = vec![
        ("Id", r.id.to_string()),
        ("Status", r.status.as_str().to_owned()),
        ("Profile", r.profile.clone()),
        ("Protocol", r.protocol.to_string()),
        ("Subject", subject(&r)),
        ("Requester", r.requester.clone()),
        ("Decided by", opt(&r.decided_by)),
        ("Comment", opt(&r.comment)),
        ("Reason", opt(&r.reason)),
        ("Created", date(r.meta.created)),
        ("Modified", date(r.meta.modified)),
    ];
    let notice = match r.status {
        RequestStatus::Issued | RequestStatus::Approved | RequestStatus::Rejected => r
            .decided_by
            .as_ref()
            .map(|by| format!("{} by {by}.", r.status)),
        _ => None,
    };
    Ok(Shown::Page(
        "request.html",
        json!({
            "request": { "id": r.id.to_string(), "subject": subject(&r) },
            "fields": fields, "decidable": decidable, "own": own, "notice": notice,
        }),
    ))
}

/// Approve or reject a request (approver role; never one's own, which
/// the enrollment service refuses as the API does).
async fn decide(c: &Console, req: &Call<'_>, live: &Live, id: &str) -> Response<Full<Bytes>> {
    if !live.identity.grants(Role::Approver) {
        return c.views.forbidden(live);
    }
    let Ok(id) = Uuid::parse_str(id) else {
        return c.views.not_found(live);
    };
    let form = parse_query(std::str::from_utf8(&req.body).ok());
    let comment = form
        .get("comment")
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty());
    let who = live.identity.token.as_str();
    let done = match form.get("decision").map(String::as_str) {
        Some("approve") => c.enrollment.approve(who, id, comment).await.map(drop),
        Some("reject") => c.enrollment.reject(who, id, comment).await.map(drop),
        _ => Err(EnrollError::Invalid(
            "decision must be approve or reject".into(),
        )),
    };
    let back = format!("/ui/requests/{id}");
    match done {
        Ok(()) => views::redirect(&back),
        Err(e) => {
            let status = match &e {
                EnrollError::Forbidden(_) => StatusCode::FORBIDDEN,
                EnrollError::NotFound(_) => StatusCode::NOT_FOUND,
                EnrollError::Conflict(_) => StatusCode::CONFLICT,
                EnrollError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            c.views
                .error(Some(live), status, "Not done", &e.to_string(), &back)
        }
    }
}

/// RFC 3339 to the second, for tables.
fn date(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

/// A query value, `%`-encoded but for unreserved characters.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
