//! The admin routes behind `idsync connectors retry|reconcile|plan NAME`,
//! served by the daemon (which holds the store lock). The CLI's side is
//! `crate::cli::connectors`.
//!
//! Routes (all need the `admin` role):
//! - `POST /connectors/NAME/retry`: replay the dead letters;
//! - `POST /connectors/NAME/reconcile` (`?force=true` ignores the deletion
//!   threshold): run a full reconcile, answer with what it did;
//! - `GET /connectors/NAME/plan`: what a reconcile would do, changing nothing.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};
use serde_json::json;

use super::{plan_json, Connectors, RunnerError};

fn answer(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    crate::infra::http::respond_json(status, &body)
}

/// Whether `path` is one of these routes (they need the admin role).
pub fn is_connector_route(path: &str) -> bool {
    path == "/connectors" || path.starts_with("/connectors/")
}

/// Serve a `/connectors/…` request.
pub async fn route(
    connectors: Option<&Connectors>,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Response<Full<Bytes>> {
    let not_found = || answer(StatusCode::NOT_FOUND, json!({"error": "no such connector"}));
    let Some(connectors) = connectors else {
        return not_found();
    };
    let rest = path.trim_start_matches("/connectors").trim_matches('/');
    if rest.is_empty() && method == Method::GET {
        let list: Vec<_> = connectors.stats().iter().map(|s| s.json()).collect();
        return answer(StatusCode::OK, json!(list));
    }
    let Some((name, action)) = rest.split_once('/') else {
        return not_found();
    };
    let force = query.is_some_and(|q| q.split('&').any(|p| p == "force=true" || p == "force=1"));
    match (method.clone(), action) {
        (Method::POST, "retry") => match connectors.retry(name).await {
            None => not_found(),
            Some(Ok(m)) => answer(StatusCode::OK, json!({"message": m})),
            Some(Err(e)) => answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": e.to_string()}),
            ),
        },
        (Method::POST, "reconcile") => match connectors.reconcile(name, force).await {
            None => not_found(),
            Some(Ok(report)) => answer(StatusCode::OK, json!(report)),
            Some(Err(e @ RunnerError::Refused(_))) => {
                answer(StatusCode::CONFLICT, json!({"error": e.to_string()}))
            }
            Some(Err(e)) => answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": e.to_string()}),
            ),
        },
        (Method::GET, "plan") => match connectors.plan(name).await {
            None => not_found(),
            Some(Ok(plan)) => answer(StatusCode::OK, plan_json(&plan)),
            Some(Err(e)) => answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": e.to_string()}),
            ),
        },
        (_, "retry" | "reconcile" | "plan") => answer(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": "POST retry and reconcile, GET plan"}),
        ),
        _ => not_found(),
    }
}
