//! The Requests screen: enrollment requests by status, asset, profile and
//! requester; a request's page, where an approver approves or rejects it
//! (never their own: the enrollment service refuses, as for the API).

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use idsync_schema::{EnrollmentRequest, RequestStatus};
use serde_json::{json, Value};
use uuid::Uuid;

use super::screens::{date, percent_encode, Shown, PAGE};
use super::session::Live;
use super::{views, Call, Console};
use crate::infra::auth::Role;
use crate::infra::http::parse_query;
use crate::sources::enroll::{EnrollError, RequestFilter};

pub fn requests(c: &Console, query: Option<&str>) -> Shown {
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
    let after = q.get("after").and_then(|a| hex::decode(a).ok());
    let (found, last) = match c.enrollment.requests_page(&filter, after.as_deref(), PAGE) {
        Ok(found) => found,
        Err(e) => {
            error = Some(e.to_string());
            (Vec::new(), None)
        }
    };
    // The next page keeps the filters.
    let next = last.map(|k| {
        let kept = ["status", "asset", "profile", "requester"]
            .into_iter()
            .filter_map(|name| text(name).map(|v| format!("{name}={}&", percent_encode(v))))
            .collect::<String>();
        format!("/ui/requests?{kept}after={}", hex::encode(k))
    });
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
            "next": next,
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

pub fn request(c: &Console, live: &Live, id: &str) -> Result<Shown, idsync_store::StoreError> {
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
            "downloadable": r.status == RequestStatus::Approved && r.protocol == idsync_schema::Protocol::P12,
            "certificate": r.certificate.map(|c| c.to_string()),
        }),
    ))
}

/// Approve or reject a request (approver role; never one's own, which
/// the enrollment service refuses as the API does).
pub async fn decide(c: &Console, req: &Call<'_>, live: &Live, id: &str) -> Response<Full<Bytes>> {
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
        Err(e) => c
            .views
            .error(Some(live), e.status(), "Not done", &e.to_string(), &back),
    }
}
