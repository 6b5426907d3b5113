//! The Groups screen: search by the start of the name, a page at a time;
//! a group's page with its members (a page at a time too, so a group of
//! a million stays quick) and its history.

use idsync_schema::{Group, Kind, User};
use idsync_store::keys::{self, Index};
use serde_json::{json, Value};
use uuid::Uuid;

use super::history;
use super::screens::{date, list, List, Shown, PAGE};
use super::Console;
use crate::infra::http::parse_query;

/// `GET /ui/groups?q=START&after=KEY`.
pub fn groups(c: &Console, query: Option<&str>) -> Result<Shown, idsync_store::StoreError> {
    let screen = List {
        path: "/ui/groups",
        template: "groups.html",
        kind: Kind::Group,
        index: |_| Index::GroupName,
        row: |g: &Group| {
            json!({
                "id": g.id.to_string(), "name": g.display_name,
                "description": g.description, "external_id": g.external_id,
                "modified": date(g.meta.modified),
            })
        },
    };
    list(c, screen, query)
}

/// `GET /ui/groups/ID?after=MEMBER&before=SEQ`.
pub fn group(
    c: &Console,
    id: &str,
    query: Option<&str>,
) -> Result<Shown, idsync_store::StoreError> {
    let Ok(id) = Uuid::parse_str(id) else {
        return Ok(Shown::NotFound);
    };
    let Some(g) = c.rec.store().object::<Group>(Kind::Group, id)? else {
        return Ok(Shown::NotFound);
    };
    let link = format!("/ui/groups/{id}");
    let after = parse_query(query)
        .get("after")
        .and_then(|a| Uuid::parse_str(a).ok());
    let (members, next) = members(c, id, after)?;
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let fields = vec![
        ("Id", g.id.to_string()),
        ("Name", g.display_name.clone()),
        ("Description", opt(&g.description)),
        ("External id", opt(&g.external_id)),
        ("Created", date(g.meta.created)),
        ("Modified", date(g.meta.modified)),
        ("Version", g.meta.version.to_string()),
    ];
    let history = history::page(c, id, &g.meta, &link, query)?;
    Ok(Shown::Page(
        "group.html",
        json!({
            "group": { "id": id.to_string(), "name": g.display_name },
            "fields": fields, "members": members,
            "next": next.map(|m| format!("{link}?after={m}")),
            "history": history,
        }),
    ))
}

/// One page of the group's members (in id order, after member `after`),
/// and the member to continue after when the page is full.
fn members(
    c: &Console,
    group: Uuid,
    after: Option<Uuid>,
) -> Result<(Vec<Value>, Option<Uuid>), idsync_store::StoreError> {
    let store = c.rec.store();
    let after = after.map(|user| keys::membership(group, user));
    let page = store.scan_page(&keys::members_prefix(group), after.as_deref(), PAGE)?;
    let ids: Vec<Uuid> = page
        .iter()
        .filter_map(|(k, _)| keys::trailing_id(k))
        .collect();
    let mut rows = Vec::with_capacity(ids.len());
    for uid in &ids {
        if let Some(u) = store.object::<User>(Kind::User, *uid)? {
            rows.push(json!({
                "id": uid.to_string(), "mail": u.mail, "login": u.login_name,
                "status": u.status.as_str(),
            }));
        }
    }
    let next = (ids.len() == PAGE).then(|| ids[PAGE - 1]);
    Ok((rows, next))
}
