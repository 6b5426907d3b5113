//! The Users screen: search by the start of the mail or login name, a
//! page at a time (one index read, so it stays fast on a million users),
//! and a user's attributes, groups and activation mails.

use idsync_schema::{Group, Kind, User};
use idsync_store::keys::Index;
use serde_json::{json, Value};
use uuid::Uuid;

use super::history;
use super::screens::{date, list, List, Shown};
use super::session::Live;
use super::Console;
use crate::infra::auth::Role;
use crate::infra::http::parse_query;

/// Users by the start of their mail or login name (the index chosen by
/// the text's shape: mails have an `@`), or all users in id order; a page
/// at a time, the next page anchored after the last key shown.
pub fn users(c: &Console, query: Option<&str>) -> Result<Shown, idsync_store::StoreError> {
    let index = |text: &str| match text.contains('@') {
        true => Index::UserMail,
        false => Index::UserLogin,
    };
    let screen = List {
        path: "/ui/users",
        template: "users.html",
        kind: Kind::User,
        index,
        row: user_row,
    };
    list(c, screen, query)
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

pub fn user(
    c: &Console,
    live: &Live,
    id: &str,
    query: Option<&str>,
) -> Result<Shown, idsync_store::StoreError> {
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
            groups.push(json!({ "id": g.id.to_string(), "name": g.display_name }));
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
    let activations: Vec<Value> = u
        .activations
        .iter()
        .map(|(app, a)| {
            json!({
                "application": app, "state": a.state.as_str(), "reason": a.reason,
                "at": date(a.at), "expires": a.expires.map(date),
            })
        })
        .collect();
    let q = parse_query(query);
    let notice = q
        .get("resent")
        .map(|app| format!("A new activation mail for {app} is queued."));
    let history = history::page(c, u.id, &u.meta, &format!("/ui/users/{}", u.id), query)?;
    Ok(Shown::Page(
        "user.html",
        json!({
            "user": u, "fields": fields, "groups": groups, "activations": activations,
            "operator": live.identity.grants(Role::Operator), "notice": notice,
            "history": history,
        }),
    ))
}
