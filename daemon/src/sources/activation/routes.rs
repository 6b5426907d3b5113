//! The admin route behind `idsync mail send-activation` (and, later, the
//! console's "Send E-Mails" button):
//!
//! - `POST /mail/applications/APP/send-activation` (operator or admin):
//!   queue the activation mail for every user of `APP` never sent one;
//!   answers `{"application": APP, "queued": N}`;
//! - `POST /mail/applications/APP/users/KEY/resend` (operator or admin):
//!   a new activation mail for the user known by KEY (mail, loginName or
//!   id); the old link stops working. Answers `{"application", "user"}`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};
use serde_json::json;

use super::Activations;
use crate::infra::auth::Role;
use crate::infra::http::{percent_decode, respond_json};
use idsync_store::Actor;

/// The roles that may call these routes (admin may call everything).
pub const ROLES: &[Role] = &[Role::Operator];

/// Whether `path` belongs to this module.
pub fn is_mail_route(path: &str) -> bool {
    path == "/mail" || path.starts_with("/mail/")
}

/// Serve a `/mail/…` request from the token named `who`.
pub async fn route(
    activations: Option<&Activations>,
    method: &Method,
    path: &str,
    who: &str,
) -> Response<Full<Bytes>> {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let not_found = || respond_json(StatusCode::NOT_FOUND, &json!({"error": "no such route"}));
    let Some(a) = activations else {
        return not_found();
    };
    let answer = match &parts[..] {
        ["mail", "applications", app, "send-activation"] => {
            if method != Method::POST {
                return use_post();
            }
            a.send_activation(app, Actor::token(who))
                .await
                .map(|q| json!(q))
        }
        ["mail", "applications", app, "users", key, "resend"] => {
            if method != Method::POST {
                return use_post();
            }
            a.resend(app, &percent_decode(key, false), Actor::token(who))
                .await
                .map(|r| json!(r))
        }
        _ => return not_found(),
    };
    match answer {
        Ok(v) => respond_json(StatusCode::OK, &v),
        Err(e) => respond_json(e.status(), &json!({"error": e.to_string()})),
    }
}

fn use_post() -> Response<Full<Bytes>> {
    respond_json(
        StatusCode::METHOD_NOT_ALLOWED,
        &json!({"error": "use POST"}),
    )
}
