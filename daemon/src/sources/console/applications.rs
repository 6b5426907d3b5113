//! The Applications screen (seed 003): the configured applications and
//! their "Send E-Mails" button, which queues the activation mail of every
//! user of the application never sent one; and the user page's "Resend",
//! a new mail whose link replaces the old one. Both go through the same
//! service as the admin API's `/mail/…` routes.

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use idsync_store::Actor;
use serde_json::{json, Value};
use uuid::Uuid;

use super::screens::Shown;
use super::session::Live;
use super::{views, Call, Console};
use crate::infra::auth::Role;
use crate::infra::http::parse_query;
use crate::sources::activation::SendError;

/// `GET /ui/applications`.
pub fn applications(c: &Console, query: Option<&str>) -> Shown {
    let apps: Vec<Value> = c
        .import
        .applications
        .iter()
        .map(|a| {
            json!({
                "name": a.name, "label": a.shown_name(),
                "policy": format!("{:?}", a.send_policy).to_lowercase(),
                "days": a.link_lifetime_days,
            })
        })
        .collect();
    let q = parse_query(query);
    let notice = match (q.get("sent"), q.get("queued")) {
        (Some(app), Some(n)) => Some(format!("{app}: {n} activation mails queued.")),
        _ => None,
    };
    Shown::Page(
        "applications.html",
        json!({ "applications": apps, "mail": c.import.mail, "notice": notice }),
    )
}

/// `POST /ui/applications/APP/send`: "Send E-Mails".
pub async fn send(c: &Console, live: &Live, app: &str) -> Response<Full<Bytes>> {
    if !live.identity.grants(Role::Operator) {
        return c.views.forbidden(live);
    }
    let actor = Actor::token(live.identity.token.as_str());
    match c.activations.send_activation(app, actor).await {
        Ok(q) => views::redirect(&format!(
            "/ui/applications?sent={}&queued={}",
            super::screens::percent_encode(&q.application),
            q.queued
        )),
        Err(e) => failed(c, live, &e, "/ui/applications"),
    }
}

/// `POST /ui/users/ID/resend` with `application`: a new activation mail.
pub async fn resend(c: &Console, call: &Call<'_>, live: &Live, id: &str) -> Response<Full<Bytes>> {
    if !live.identity.grants(Role::Operator) {
        return c.views.forbidden(live);
    }
    let Ok(id) = Uuid::parse_str(id) else {
        return c.views.not_found(live);
    };
    let form = parse_query(std::str::from_utf8(&call.body).ok());
    let app = form.get("application").map(String::as_str).unwrap_or("");
    let back = format!("/ui/users/{id}");
    let actor = Actor::token(live.identity.token.as_str());
    match c.activations.resend(app, &id.to_string(), actor).await {
        Ok(_) => views::redirect(&format!(
            "{back}?resent={}",
            super::screens::percent_encode(app)
        )),
        Err(e) => failed(c, live, &e, &back),
    }
}

fn failed(c: &Console, live: &Live, e: &SendError, back: &str) -> Response<Full<Bytes>> {
    c.views
        .error(Some(live), e.status(), "Not sent", &e.to_string(), back)
}
