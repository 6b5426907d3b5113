//! The console's screens: which roles see each, and what each shows and
//! does. Reads go to the store (searches by index, a page at a time);
//! actions go through the same services as the admin API, with the
//! session's token as the actor.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::session::Live;
use super::{applications, assets, enroll, groups, requests, users, Call, Console};
use crate::infra::auth::Role;

/// Rows on one page of a list.
pub const PAGE: usize = 50;

/// A screen of the navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Overview,
    Import,
    Users,
    Groups,
    Assets,
    Profiles,
    Requests,
    Applications,
}

impl Screen {
    const ALL: [Screen; 8] = [
        Screen::Overview,
        Screen::Import,
        Screen::Users,
        Screen::Groups,
        Screen::Assets,
        Screen::Profiles,
        Screen::Requests,
        Screen::Applications,
    ];

    fn label(self) -> &'static str {
        match self {
            Screen::Overview => "Overview",
            Screen::Import => "Import",
            Screen::Users => "Users",
            Screen::Groups => "Groups",
            Screen::Assets => "Assets",
            Screen::Profiles => "Certificates",
            Screen::Requests => "Requests",
            Screen::Applications => "Applications",
        }
    }

    fn href(self) -> &'static str {
        match self {
            Screen::Overview => "/ui/",
            Screen::Import => "/ui/import",
            Screen::Users => "/ui/users",
            Screen::Groups => "/ui/groups",
            Screen::Assets => "/ui/assets",
            Screen::Profiles => "/ui/profiles",
            Screen::Requests => "/ui/requests",
            Screen::Applications => "/ui/applications",
        }
    }

    /// The roles that see the screen (admin sees all): the same as the
    /// admin API's for the same data.
    fn roles(self) -> &'static [Role] {
        match self {
            Screen::Overview => &[Role::Monitor, Role::Read],
            Screen::Import => &[Role::Write],
            Screen::Users | Screen::Groups => &[Role::Read],
            Screen::Assets => &[Role::Read, Role::Operator],
            Screen::Profiles | Screen::Requests => &[Role::Operator, Role::Approver],
            Screen::Applications => &[Role::Operator],
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
        (&Method::GET | &Method::HEAD, ["groups"]) => (Screen::Groups, Get::Groups),
        (&Method::GET | &Method::HEAD, ["groups", id]) => (Screen::Groups, Get::Group(id)),
        (&Method::GET | &Method::HEAD, ["assets"]) => (Screen::Assets, Get::Assets),
        (&Method::GET | &Method::HEAD, ["assets", id]) => (Screen::Assets, Get::Asset(id)),
        (&Method::POST, ["assets", id, "profile"]) => {
            return assets::assign(c, call, live, id).await
        }
        (&Method::GET | &Method::HEAD, ["applications"]) => {
            (Screen::Applications, Get::Applications)
        }
        (&Method::POST, ["applications", app, "send"]) => {
            return applications::send(c, live, app).await
        }
        (&Method::POST, ["users", id, "resend"]) => {
            return applications::resend(c, call, live, id).await
        }
        (&Method::GET | &Method::HEAD, ["profiles"]) => (Screen::Profiles, Get::Profiles),
        (&Method::GET | &Method::HEAD, ["profiles", name]) => {
            (Screen::Profiles, Get::Profile(name))
        }
        (&Method::POST, ["profiles"]) => return enroll::save(c, call, live).await,
        (&Method::POST, ["profiles", name, "enroll"]) => {
            return enroll::enroll(c, call, live, name).await
        }
        (&Method::GET | &Method::HEAD, ["certificates", id]) => {
            (Screen::Profiles, Get::Certificate(id))
        }
        (&Method::GET | &Method::HEAD, ["certificates", id, "pem"]) => {
            if !Screen::Profiles.allowed(live) {
                return c.views.forbidden(live);
            }
            return enroll::pem(c, live, id);
        }
        (&Method::POST, ["certificates", id, "installed"]) => {
            return enroll::confirm_installed(c, live, id).await
        }
        (&Method::POST, ["requests", id, "p12"]) => {
            return enroll::download_p12(c, call, live, id).await
        }
        (&Method::GET | &Method::HEAD, ["requests"]) => (Screen::Requests, Get::Requests),
        (&Method::GET | &Method::HEAD, ["requests", id]) => (Screen::Requests, Get::Request(id)),
        (&Method::POST, ["requests", id, "decide"]) => {
            return requests::decide(c, call, live, id).await
        }
        _ => return c.views.not_found(live),
    };
    if !screen.allowed(live) {
        return c.views.forbidden(live);
    }
    let shown: Result<Shown, Failed> = match get {
        Get::Overview => overview(c, live).map_err(Failed::from),
        Get::Import => Ok(Shown::Page("import.html", super::import::form(c))),
        Get::Users => users::users(c, call.query).map_err(Failed::from),
        Get::User(id) => users::user(c, live, id, call.query).map_err(Failed::from),
        Get::Groups => groups::groups(c, call.query).map_err(Failed::from),
        Get::Group(id) => groups::group(c, id, call.query).map_err(Failed::from),
        Get::Assets => assets::assets(c, call.query).map_err(Failed::from),
        Get::Asset(id) => assets::asset(c, live, id, call.query).map_err(Failed::from),
        Get::Applications => Ok(applications::applications(c, call.query)),
        Get::Profiles => enroll::profiles(c, live).map_err(Failed::from),
        Get::Profile(name) => enroll::profile(c, live, name).map_err(Failed::from),
        Get::Certificate(id) => enroll::certificate(c, live, id).map_err(Failed::from),
        Get::Requests => Ok(requests::requests(c, call.query)),
        Get::Request(id) => requests::request(c, live, id).map_err(Failed::from),
    };
    match shown {
        Ok(Shown::Page(template, vars)) => {
            c.views
                .page(template, StatusCode::OK, Some(live), Some(screen), vars)
        }
        Ok(Shown::NotFound) => c.views.not_found(live),
        Err(e) => {
            tracing::error!(error = %e, "console: a page could not be read");
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
    Groups,
    Group(&'a str),
    Assets,
    Asset(&'a str),
    Applications,
    Users,
    User(&'a str),
    Requests,
    Request(&'a str),
    Profiles,
    Profile(&'a str),
    Certificate(&'a str),
}

/// Why a page could not be read.
#[derive(Debug, thiserror::Error)]
enum Failed {
    #[error(transparent)]
    Store(#[from] idsync_store::StoreError),
    #[error(transparent)]
    Enroll(#[from] crate::sources::enroll::EnrollError),
}

/// What a screen shows: a template with its values, or nothing there.
pub enum Shown {
    Page(&'static str, Value),
    NotFound,
}

/// Certificates shown as expiring: those that end within this many days.
const EXPIRING_DAYS: i64 = 30;

/// The overview: the daemon's status document (files, the recent ones,
/// connectors, the replica's role) and, for those who see certificates,
/// the next to expire.
fn overview(c: &Console, live: &Live) -> Result<Shown, crate::sources::enroll::EnrollError> {
    let status = c.metrics.status_document();
    let connectors = status["connectors"].clone();
    let expiring: Option<Vec<Value>> = if Screen::Profiles.allowed(live) {
        let now = OffsetDateTime::now_utc();
        let until = now + time::Duration::days(EXPIRING_DAYS);
        let certs = c.enrollment.expiring(now, until, PAGE)?;
        Some(
            certs
                .iter()
                .map(|cert| {
                    json!({
                        "id": cert.id.to_string(), "serial": cert.serial,
                        "subject": cert.subject, "profile": cert.profile,
                        "not_after": date(cert.not_after),
                    })
                })
                .collect(),
        )
    } else {
        None
    };
    Ok(Shown::Page(
        "overview.html",
        json!({
            "status": status, "connectors": connectors,
            "expiring": expiring, "expiring_days": EXPIRING_DAYS,
        }),
    ))
}

/// What a list screen (users, groups, assets) shows.
pub struct List<T> {
    /// Its path, for the next page's link.
    pub path: &'static str,
    pub template: &'static str,
    pub kind: idsync_schema::Kind,
    /// The index a search text looks in (users: by the text's shape).
    pub index: fn(&str) -> idsync_store::keys::Index,
    /// One object as a table row.
    pub row: fn(&T) -> Value,
}

/// A list screen for `query` (`q`: the start of the names looked for,
/// `after`: the key the page follows): the rows of one page, the search
/// text, and the link to the next page.
pub fn list<T: serde::de::DeserializeOwned>(
    c: &Console,
    screen: List<T>,
    query: Option<&str>,
) -> Result<Shown, idsync_store::StoreError> {
    let q = crate::infra::http::parse_query(query);
    let text = q.get("q").map(|s| s.trim()).unwrap_or("");
    let after = q.get("after").and_then(|a| hex::decode(a).ok());
    let index = (screen.index)(text);
    let (objects, last) = object_page::<T>(c, screen.kind, index, text, after.as_deref())?;
    let rows: Vec<Value> = objects.iter().map(screen.row).collect();
    let next = next_page(screen.path, text, last);
    Ok(Shown::Page(
        screen.template,
        json!({ "q": text, "rows": rows, "next": next }),
    ))
}

/// One page of a list screen's objects of `kind`: those whose `index`
/// value starts with `text` (in the index's order), or all of them in id
/// order when `text` is empty; with the key to continue after when the
/// page is full. Only the page is read, so a search stays fast on a
/// million objects.
fn object_page<T: serde::de::DeserializeOwned>(
    c: &Console,
    kind: idsync_schema::Kind,
    index: idsync_store::keys::Index,
    text: &str,
    after: Option<&[u8]>,
) -> Result<(Vec<T>, Option<Vec<u8>>), idsync_store::StoreError> {
    let store = c.rec.store();
    let full = |n: usize| n == PAGE;
    if text.is_empty() {
        let page = store.scan_page(idsync_store::keys::object_prefix(kind), after, PAGE)?;
        let last = full(page.len()).then(|| page[PAGE - 1].0.clone());
        let objects = page
            .iter()
            .filter_map(|(_, v)| serde_json::from_slice(v).ok())
            .collect();
        return Ok((objects, last));
    }
    let page = store.index_page(index, text, after, PAGE)?;
    let last = full(page.len()).then(|| page[PAGE - 1].0.clone());
    let mut objects = Vec::with_capacity(page.len());
    for (_, id) in &page {
        objects.extend(store.object::<T>(kind, *id)?);
    }
    Ok((objects, last))
}

/// The link to the page after `last` of a list screen at `path`.
fn next_page(path: &str, text: &str, last: Option<Vec<u8>>) -> Option<String> {
    last.map(|k| format!("{path}?q={}&after={}", percent_encode(text), hex::encode(k)))
}

/// RFC 3339 to the second, for tables.
pub fn date(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

/// A query value, `%`-encoded but for unreserved characters.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
