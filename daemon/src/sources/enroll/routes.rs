//! The enrollment API: JSON over the admin listener, under `/api/v1/`.
//! docs/openapi.yaml describes every route; docs/certificates.md the flows.
//!
//! | route | role |
//! | --- | --- |
//! | `GET /api/v1/ca` | operator, approver |
//! | `GET /api/v1/profiles`, `GET /api/v1/profiles/NAME` | operator, approver |
//! | `PUT`, `DELETE /api/v1/profiles/NAME` | admin |
//! | `PUT /api/v1/assets/ASSET/profile` | operator |
//! | `GET /api/v1/assets/ASSET/certificates` | operator |
//! | `POST /api/v1/enroll/p10`, `POST /api/v1/enroll/p12` | operator |
//! | `GET /api/v1/requests`, `GET /api/v1/requests/ID` | operator, approver |
//! | `POST /api/v1/requests/ID/approve`, `…/reject` | approver |
//! | `POST /api/v1/requests/ID/p12` | operator (the requester, or admin) |
//! | `GET /api/v1/certificates/ID`, `…/pem`; `POST …/installed` | operator |
//! | `POST /api/v1/certificates/ID/revoke` | operator |
//! | `POST /api/v1/enroll/acme`, `POST /api/v1/enroll/scep` | operator |
//! | `GET /api/v1/registrations`, `GET /api/v1/registrations/ID` | operator, approver |
//! | `POST /api/v1/registrations/ID/approve`, `…/reject` | approver |
//! | `POST /api/v1/registrations/ID/revoke` | operator |
//!
//! The CRLs (`GET /crl/<issuer id>.crl`) are served beside this API,
//! without a token: see [`super::crl`].
//!
//! Each route is one line of the route table ([`endpoint`]), which gives
//! its roles with it; the table above is its summary. The admin role may
//! do everything. Bodies are bounded by `admin.max_body_bytes` before they
//! reach this module.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper::{Method, Response, StatusCode};
use idsync_schema::cert::RevocationReason;
use idsync_schema::{CertificateData, KeyType, ProfileSettings, Protocol, RequestStatus};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{
    registration_routes, EnrollError, Enrolled, Enrollment, Password, RequestFilter, Target,
};
use crate::api::{P12_TYPE, PREFIX};
use crate::infra::auth::Role;
use crate::infra::http::{percent_decode, respond, respond_json};

/// Media type of a PEM chain (RFC 8555 §9.1).
pub(crate) const PEM_CHAIN_TYPE: &str = "application/pem-certificate-chain";

const OPERATOR: &[Role] = &[Role::Operator];
const APPROVER: &[Role] = &[Role::Approver];
const READERS: &[Role] = &[Role::Operator, Role::Approver];
const ADMIN: &[Role] = &[Role::Admin];

/// Whether `path` belongs to this module.
pub(crate) fn is_api_route(path: &str) -> bool {
    path.starts_with(PREFIX) || path == "/api/v1"
}

/// One route of the API, with what its path names.
#[derive(Debug, PartialEq, Eq)]
enum Endpoint<'p> {
    Ca,
    Profiles,
    Profile(&'p str),
    PutProfile(&'p str),
    DeleteProfile(&'p str),
    AssignProfile(&'p str),
    AssetCertificates(&'p str),
    EnrollP10,
    EnrollP12,
    Requests,
    Request(&'p str),
    Approve(&'p str),
    Reject(&'p str),
    DownloadP12(&'p str),
    Certificate(&'p str),
    CertificatePem(&'p str),
    ConfirmInstalled(&'p str),
    Revoke(&'p str),
    Register(Protocol),
    Registrations,
    Registration(&'p str),
    ApproveRegistration(&'p str),
    RejectRegistration(&'p str),
    RevokeRegistration(&'p str),
}

/// The route table: each route and the roles that may call it (any one
/// suffices; admin may call everything). A route exists only as a line
/// here, so it cannot be added without its roles.
fn endpoint<'p>(method: &Method, parts: &[&'p str]) -> Option<(&'static [Role], Endpoint<'p>)> {
    use Endpoint as E;
    let route = match (method, parts) {
        (&Method::GET, ["ca"]) => (READERS, E::Ca),
        (&Method::GET, ["profiles"]) => (READERS, E::Profiles),
        (&Method::GET, ["profiles", name]) => (READERS, E::Profile(name)),
        (&Method::PUT, ["profiles", name]) => (ADMIN, E::PutProfile(name)),
        (&Method::DELETE, ["profiles", name]) => (ADMIN, E::DeleteProfile(name)),
        (&Method::PUT, ["assets", a, "profile"]) => (OPERATOR, E::AssignProfile(a)),
        (&Method::GET, ["assets", a, "certificates"]) => (OPERATOR, E::AssetCertificates(a)),
        (&Method::POST, ["enroll", "p10"]) => (OPERATOR, E::EnrollP10),
        (&Method::POST, ["enroll", "p12"]) => (OPERATOR, E::EnrollP12),
        (&Method::GET, ["requests"]) => (READERS, E::Requests),
        (&Method::GET, ["requests", id]) => (READERS, E::Request(id)),
        (&Method::POST, ["requests", id, "approve"]) => (APPROVER, E::Approve(id)),
        (&Method::POST, ["requests", id, "reject"]) => (APPROVER, E::Reject(id)),
        (&Method::POST, ["requests", id, "p12"]) => (OPERATOR, E::DownloadP12(id)),
        (&Method::GET, ["certificates", id]) => (OPERATOR, E::Certificate(id)),
        (&Method::GET, ["certificates", id, "pem"]) => (OPERATOR, E::CertificatePem(id)),
        (&Method::POST, ["certificates", id, "installed"]) => (OPERATOR, E::ConfirmInstalled(id)),
        (&Method::POST, ["certificates", id, "revoke"]) => (OPERATOR, E::Revoke(id)),
        (&Method::POST, ["enroll", "acme"]) => (OPERATOR, E::Register(Protocol::Acme)),
        (&Method::POST, ["enroll", "scep"]) => (OPERATOR, E::Register(Protocol::Scep)),
        (&Method::GET, ["registrations"]) => (READERS, E::Registrations),
        (&Method::GET, ["registrations", id]) => (READERS, E::Registration(id)),
        (&Method::POST, ["registrations", id, "approve"]) => (APPROVER, E::ApproveRegistration(id)),
        (&Method::POST, ["registrations", id, "reject"]) => (APPROVER, E::RejectRegistration(id)),
        (&Method::POST, ["registrations", id, "revoke"]) => (OPERATOR, E::RevokeRegistration(id)),
        _ => return None,
    };
    Some(route)
}

/// The roles that may call `method path` (any one suffices).
pub(crate) fn roles_for(method: &Method, path: &str) -> &'static [Role] {
    let decoded = segments(path);
    let parts: Vec<&str> = decoded.iter().map(String::as_str).collect();
    match endpoint(method, &parts) {
        Some((roles, _)) => roles,
        None => unrouted_roles(method, &parts),
    }
}

/// Who is told that no route serves a path (404 rather than 403): a
/// `GET` under the parts of the API approvers read, approvers too;
/// anything else, operators.
fn unrouted_roles(method: &Method, parts: &[&str]) -> &'static [Role] {
    match (method, parts) {
        (&Method::GET, ["ca" | "profiles" | "requests" | "registrations", ..]) => READERS,
        _ => OPERATOR,
    }
}

/// The path's segments after the prefix, percent-decoded (profile and
/// asset names have spaces: `/api/v1/profiles/Server%20P10`).
fn segments(path: &str) -> Vec<String> {
    path.strip_prefix(PREFIX)
        .unwrap_or("")
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false))
        .collect()
}

fn error_response(e: &EnrollError) -> Response<Full<Bytes>> {
    respond_json(e.status(), &json!({ "error": e.to_string() }))
}

pub(super) fn bad_request(message: impl Into<String>) -> EnrollError {
    EnrollError::Invalid(message.into())
}

pub(super) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, EnrollError> {
    if body.is_empty() {
        return serde_json::from_slice(b"{}").map_err(|e| bad_request(format!("the body: {e}")));
    }
    serde_json::from_slice(body).map_err(|e| bad_request(format!("the JSON body: {e}")))
}

fn parse_id(s: &str) -> Result<Uuid, EnrollError> {
    Uuid::parse_str(s).map_err(|_| EnrollError::NotFound(format!("{s:?} is not an id")))
}

/// Query parameters, percent-decoded.
pub(super) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct P10Body {
    asset: Option<String>,
    profile: Option<String>,
    /// The CSR, PEM.
    csr: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct P12Body {
    asset: Option<String>,
    profile: Option<String>,
    #[serde(default)]
    data: CertificateData,
    key_type: Option<KeyType>,
    password: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    comment: Option<String>,
}

/// `POST /certificates/ID/revoke`: the reason by its name
/// ([`RevocationReason::as_str`]); none is `unspecified`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignBody {
    profile: String,
}

/// One request of the API. `who` is the authenticated token; `is_admin`
/// whether it has the admin role.
pub(crate) struct Call<'a> {
    pub who: &'a str,
    pub is_admin: bool,
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub body: Bytes,
}

/// Serve one call of the enrollment API.
pub(crate) async fn route(svc: Option<&Enrollment>, call: Call<'_>) -> Response<Full<Bytes>> {
    let Some(svc) = svc else {
        return error_response(&EnrollError::Unavailable(
            "enrollment is not running in this process".into(),
        ));
    };
    match dispatch(svc, &call).await {
        Ok(r) => r,
        Err(e) => {
            let r = error_response(&e);
            // Not the message: a JSON error can quote the body it failed
            // on, and a P12 body holds a password. The client has it.
            tracing::debug!(who = call.who, path = call.path, status = %r.status(), "enrollment call refused");
            r
        }
    }
}

async fn dispatch(svc: &Enrollment, call: &Call<'_>) -> Result<Response<Full<Bytes>>, EnrollError> {
    let decoded = segments(call.path);
    let parts: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let Some((_, endpoint)) = endpoint(call.method, &parts) else {
        return Err(EnrollError::NotFound(format!(
            "no route {} {}",
            call.method, call.path
        )));
    };
    serve(svc, call, endpoint).await
}

/// Answer a call of `endpoint` (its roles are checked already).
async fn serve(
    svc: &Enrollment,
    call: &Call<'_>,
    endpoint: Endpoint<'_>,
) -> Result<Response<Full<Bytes>>, EnrollError> {
    let who = call.who;
    let ok = |v: Value| Ok(respond_json(StatusCode::OK, &v));
    match endpoint {
        Endpoint::Ca => Ok(respond(StatusCode::OK, PEM_CHAIN_TYPE, svc.ca_chain())),
        Endpoint::Profiles => ok(to_json(&svc.profiles()?)),
        Endpoint::Profile(name) => ok(to_json(&svc.profile(name)?)),
        Endpoint::PutProfile(name) => put_profile(svc, call, name).await,
        Endpoint::DeleteProfile(name) => {
            svc.delete_profile(who, name).await?;
            Ok(respond(StatusCode::NO_CONTENT, "text/plain", ""))
        }
        Endpoint::AssignProfile(asset) => {
            let body: AssignBody = parse_json(&call.body)?;
            ok(to_json(
                &svc.assign_profile(who, asset, &body.profile).await?,
            ))
        }
        Endpoint::AssetCertificates(asset) => ok(to_json(&svc.certificates_of(asset)?)),
        Endpoint::EnrollP10 => {
            let (target, csr) = p10_input(call)?;
            let done = svc.enroll_p10(who, &target, &csr).await?;
            Ok(enrolled_response(&done))
        }
        Endpoint::EnrollP12 => enroll_p12(svc, call).await,
        Endpoint::Requests => {
            let filter = request_filter(call.query)?;
            ok(to_json(&svc.requests(&filter)?))
        }
        Endpoint::Request(id) => ok(to_json(&svc.request(parse_id(id)?)?)),
        Endpoint::Approve(id) => {
            let body: DecisionBody = parse_json(&call.body)?;
            let done = svc.approve(who, parse_id(id)?, body.comment).await?;
            Ok(enrolled_response(&done))
        }
        Endpoint::Reject(id) => {
            let body: DecisionBody = parse_json(&call.body)?;
            ok(to_json(
                &svc.reject(who, parse_id(id)?, body.comment).await?,
            ))
        }
        Endpoint::DownloadP12(id) => download_p12(svc, call, id).await,
        Endpoint::Certificate(id) => ok(to_json(&svc.certificate(parse_id(id)?)?)),
        Endpoint::CertificatePem(id) => {
            let c = svc.certificate(parse_id(id)?)?;
            Ok(respond(
                StatusCode::OK,
                PEM_CHAIN_TYPE,
                format!("{}{}", c.pem, c.chain),
            ))
        }
        Endpoint::ConfirmInstalled(id) => {
            ok(to_json(&svc.confirm_installed(who, parse_id(id)?).await?))
        }
        Endpoint::Revoke(id) => {
            let id = parse_id(id)?;
            let body: RevokeBody = parse_json(&call.body)?;
            let reason = match body.reason.as_deref() {
                None => RevocationReason::Unspecified,
                Some(r) => RevocationReason::parse(r).map_err(bad_request)?,
            };
            ok(to_json(&svc.revoke(who, id, reason).await?))
        }
        Endpoint::Register(protocol) => {
            registration_routes::register(svc, who, protocol, &call.body).await
        }
        Endpoint::Registrations => {
            let filter = registration_routes::filter(call.query)?;
            ok(to_json(&svc.registrations(&filter)?))
        }
        Endpoint::Registration(id) => ok(to_json(&svc.registration(parse_id(id)?)?)),
        Endpoint::ApproveRegistration(id) => {
            let body: DecisionBody = parse_json(&call.body)?;
            let r = svc.approve_registration(who, parse_id(id)?, body.comment);
            ok(to_json(&r.await?))
        }
        Endpoint::RejectRegistration(id) => {
            let body: DecisionBody = parse_json(&call.body)?;
            let r = svc.reject_registration(who, parse_id(id)?, body.comment);
            ok(to_json(&r.await?))
        }
        Endpoint::RevokeRegistration(id) => {
            ok(to_json(&svc.revoke_registration(who, parse_id(id)?).await?))
        }
    }
}

/// `PUT /profiles/NAME`: the body may name the profile, but only as the
/// path does.
async fn put_profile(
    svc: &Enrollment,
    call: &Call<'_>,
    name: &str,
) -> Result<Response<Full<Bytes>>, EnrollError> {
    let mut v: serde_json::Map<String, Value> = parse_json(&call.body)?;
    match v.get("name") {
        Some(Value::String(n)) if n != name => {
            return Err(bad_request(format!(
                "the body names profile {n:?}, the path {name:?}"
            )))
        }
        Some(_) => {}
        None => {
            v.insert("name".into(), Value::String(name.to_owned()));
        }
    }
    let settings: ProfileSettings = serde_json::from_value(Value::Object(v))
        .map_err(|e| bad_request(format!("the profile: {e}")))?;
    let (created, profile) = svc.put_profile(call.who, settings).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(respond_json(status, &to_json(&profile)))
}

async fn enroll_p12(
    svc: &Enrollment,
    call: &Call<'_>,
) -> Result<Response<Full<Bytes>>, EnrollError> {
    let body: P12Body = parse_json(&call.body)?;
    let password = body.password.map(Password::new).transpose()?;
    let target = Target {
        asset: body.asset,
        profile: body.profile,
    };
    let done = svc
        .enroll_p12(call.who, &target, body.data, body.key_type, password)
        .await?;
    Ok(enrolled_response(&done))
}

async fn download_p12(
    svc: &Enrollment,
    call: &Call<'_>,
    id: &str,
) -> Result<Response<Full<Bytes>>, EnrollError> {
    let body: PasswordBody = parse_json(&call.body)?;
    let password = Password::new(body.password)?;
    let done = svc
        .download_p12(call.who, call.is_admin, parse_id(id)?, password)
        .await?;
    Ok(enrolled_response(&done))
}

/// A P10 upload: JSON `{asset, profile, csr}`, or the CSR itself (PEM or
/// DER, `Content-Type: application/pkcs10`) with `?asset=…&profile=…`.
fn p10_input(call: &Call<'_>) -> Result<(Target, Vec<u8>), EnrollError> {
    let is_json = call
        .content_type
        .is_some_and(|t| t.starts_with("application/json"));
    if is_json {
        let body: P10Body = parse_json(&call.body)?;
        return Ok((
            Target {
                asset: body.asset,
                profile: body.profile,
            },
            body.csr.into_bytes(),
        ));
    }
    let mut target = Target::default();
    for (k, v) in query_pairs(call.query) {
        match k.as_str() {
            "asset" => target.asset = Some(v),
            "profile" => target.profile = Some(v),
            _ => return Err(bad_request(format!("unknown query parameter {k:?}"))),
        }
    }
    Ok((target, call.body.to_vec()))
}

fn request_filter(query: Option<&str>) -> Result<RequestFilter, EnrollError> {
    let mut f = RequestFilter::default();
    for (k, v) in query_pairs(query) {
        match k.as_str() {
            "status" => {
                f.status = Some(RequestStatus::parse(&v).ok_or_else(|| {
                    bad_request(format!(
                        "status {v:?} is not pending_approval, approved, issued, rejected or failed"
                    ))
                })?)
            }
            "asset" => f.asset = Some(v),
            "profile" => f.profile = Some(v),
            "requester" => f.requester = Some(v),
            _ => return Err(bad_request(format!("unknown query parameter {k:?}"))),
        }
    }
    Ok(f)
}

/// 201 with the request and certificate, 202 while it waits for approval,
/// or 201 with the PKCS#12 file itself (request and certificate ids in
/// headers).
fn enrolled_response(done: &Enrolled) -> Response<Full<Bytes>> {
    if let Some(p12) = &done.p12 {
        let mut r = respond(StatusCode::CREATED, P12_TYPE, p12.clone());
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&done.request.id.to_string()) {
            h.insert("idsync-request", v);
        }
        if let Some(c) = &done.certificate {
            if let Ok(v) = HeaderValue::from_str(&c.id.to_string()) {
                h.insert("idsync-certificate", v);
            }
        }
        return r;
    }
    let status = match done.request.status {
        RequestStatus::PendingApproval | RequestStatus::Approved => StatusCode::ACCEPTED,
        _ => StatusCode::CREATED,
    };
    respond_json(
        status,
        &json!({
            "request": to_json(&done.request),
            "certificate": done.certificate.as_ref().map(to_json),
        }),
    )
}

pub(super) fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("domain objects serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_of_routes() {
        assert_eq!(roles_for(&Method::PUT, "/api/v1/profiles/x"), ADMIN);
        assert_eq!(roles_for(&Method::GET, "/api/v1/profiles/x"), READERS);
        assert_eq!(
            roles_for(&Method::POST, "/api/v1/requests/1/approve"),
            APPROVER
        );
        assert_eq!(roles_for(&Method::POST, "/api/v1/requests/1/p12"), OPERATOR);
        assert_eq!(roles_for(&Method::POST, "/api/v1/enroll/p10"), OPERATOR);
        assert_eq!(roles_for(&Method::GET, "/api/v1/requests"), READERS);
    }

    /// The roles of every route, as the table in the module's comment
    /// gives them, and of paths no route serves.
    #[test]
    fn every_route_has_its_roles() {
        let cases: &[(Method, &str, &[Role])] = &[
            (Method::GET, "ca", READERS),
            (Method::GET, "profiles", READERS),
            (Method::GET, "profiles/Server%20P10", READERS),
            (Method::PUT, "profiles/x", ADMIN),
            (Method::DELETE, "profiles/x", ADMIN),
            (Method::PUT, "assets/web/profile", OPERATOR),
            (Method::GET, "assets/web/certificates", OPERATOR),
            (Method::POST, "enroll/p10", OPERATOR),
            (Method::POST, "enroll/p12", OPERATOR),
            (Method::GET, "requests", READERS),
            (Method::GET, "requests/1", READERS),
            (Method::POST, "requests/1/approve", APPROVER),
            (Method::POST, "requests/1/reject", APPROVER),
            (Method::POST, "requests/1/p12", OPERATOR),
            (Method::GET, "certificates/1", OPERATOR),
            (Method::GET, "certificates/1/pem", OPERATOR),
            (Method::POST, "certificates/1/installed", OPERATOR),
            (Method::POST, "certificates/1/revoke", OPERATOR),
            (Method::POST, "enroll/acme", OPERATOR),
            (Method::POST, "enroll/scep", OPERATOR),
            (Method::GET, "registrations", READERS),
            (Method::GET, "registrations/1", READERS),
            (Method::POST, "registrations/1/approve", APPROVER),
            (Method::POST, "registrations/1/reject", APPROVER),
            (Method::POST, "registrations/1/revoke", OPERATOR),
            // No route: approvers hear 404 for what they read, else 403.
            (Method::GET, "requests/1/x", READERS),
            (Method::GET, "ca/x", READERS),
            (Method::PUT, "profiles", OPERATOR),
            (Method::POST, "requests/1/approve/x", OPERATOR),
            (Method::GET, "assets", OPERATOR),
            (Method::DELETE, "", OPERATOR),
        ];
        for (method, path, roles) in cases {
            let path = format!("{PREFIX}{path}");
            assert_eq!(roles_for(method, &path), *roles, "{method} {path}");
        }
        assert_eq!(roles_for(&Method::GET, "/api/v1"), OPERATOR);
    }

    #[test]
    fn a_profile_body_must_be_an_object() {
        // Found by schemathesis: `v["name"] = …` on an array panicked.
        let err = parse_json::<serde_json::Map<String, Value>>(b"[null, null]").unwrap_err();
        assert!(err.to_string().contains("JSON body"), "{err}");
    }

    #[test]
    fn queries() {
        assert_eq!(
            query_pairs(Some("asset=web%201&profile=a+b&x")),
            [
                ("asset".into(), "web 1".into()),
                ("profile".into(), "a b".into()),
                ("x".into(), String::new())
            ]
        );
        assert_eq!(percent_decode("%zz%4", true), "%zz%4");
        assert_eq!(
            segments("/api/v1/profiles/Server%20P10+x"),
            ["profiles", "Server P10+x"]
        );
        let f = request_filter(Some("status=pending_approval&requester=ops")).unwrap();
        assert_eq!(f.status, Some(RequestStatus::PendingApproval));
        assert!(request_filter(Some("status=nope")).is_err());
        assert!(request_filter(Some("colour=red")).is_err());
    }
}
