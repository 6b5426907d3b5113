//! The admin route behind `idsync mail send-activation` (and, later, the
//! console's "Send E-Mails" button):
//!
//! - `POST /mail/applications/APP/send-activation` (operator or admin):
//!   queue the activation mail for every user of `APP` never sent one;
//!   answers `{"application": APP, "queued": N}`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};
use serde_json::json;

use super::{Activations, SendError};
use crate::infra::auth::Role;
use crate::infra::http::respond_json;
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
    let (Some(a), ["mail", "applications", app, "send-activation"]) = (activations, &parts[..])
    else {
        return respond_json(StatusCode::NOT_FOUND, &json!({"error": "no such route"}));
    };
    if method != Method::POST {
        return respond_json(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "use POST"}),
        );
    }
    match a.send_activation(app, Actor::token(who)).await {
        Ok(q) => respond_json(StatusCode::OK, &json!(q)),
        Err(e) => {
            let status = match &e {
                SendError::UnknownApplication(_) => StatusCode::NOT_FOUND,
                SendError::NoMail => StatusCode::CONFLICT,
                SendError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
                SendError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            respond_json(status, &json!({"error": e.to_string()}))
        }
    }
}
