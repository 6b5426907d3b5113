//! The handlers of the registration routes (their lines, with their roles,
//! are in the route table of [`super::routes`]): bodies and queries in,
//! JSON out. A registration's secret is in the answer to the call that
//! made it, and nowhere else.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use idsync_schema::{Protocol, RegistrationStatus};
use serde::Deserialize;
use serde_json::json;

use super::routes::{bad_request, parse_json, query_pairs, to_json};
use super::{EnrollError, Enrollment, RegistrationFilter, Target};
use crate::infra::http::respond_json;

/// `POST /enroll/acme`, `/enroll/scep`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RegisterBody {
    asset: Option<String>,
    profile: Option<String>,
    /// Comma-separated (as the seed types them) or a list.
    dns_names: Option<DnsNames>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DnsNames {
    Field(String),
    List(Vec<String>),
}

/// Register; 201 (`active`) or 202 (`pending_approval`) with the
/// registration and its secret, never cached.
pub(super) async fn register(
    svc: &Enrollment,
    who: &str,
    protocol: Protocol,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, EnrollError> {
    let body: RegisterBody = parse_json(body)?;
    let target = Target {
        asset: body.asset,
        profile: body.profile,
    };
    let dns = body.dns_names.map(|d| match d {
        DnsNames::Field(f) => f,
        DnsNames::List(l) => l.join(","),
    });
    let done = svc.register(who, protocol, &target, dns.as_deref()).await?;
    let status = match done.registration.status {
        RegistrationStatus::PendingApproval => StatusCode::ACCEPTED,
        _ => StatusCode::CREATED,
    };
    let mut answer = json!({ "registration": to_json(&done.registration) });
    if let Some(key) = &done.eab_hmac_key {
        answer["acme"] = json!({
            "keyId": done.registration.id.to_string(),
            "hmacKey": key.as_str(),
        });
    }
    if let Some(challenge) = &done.challenge {
        answer["scep"] = json!({ "challenge": challenge.as_str() });
    }
    let mut r = respond_json(status, &answer);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// `GET /registrations?status=…&asset=…&protocol=…`.
pub(super) fn filter(query: Option<&str>) -> Result<RegistrationFilter, EnrollError> {
    let mut f = RegistrationFilter::default();
    for (k, v) in query_pairs(query) {
        match k.as_str() {
            "status" => {
                f.status = Some(RegistrationStatus::parse(&v).ok_or_else(|| {
                    let names: Vec<&str> =
                        RegistrationStatus::ALL.iter().map(|s| s.as_str()).collect();
                    bad_request(format!("status {v:?} is not one of {}", names.join(", ")))
                })?)
            }
            "asset" => f.asset = Some(v),
            "protocol" => {
                f.protocol = Some(match v.as_str() {
                    "acme" => Protocol::Acme,
                    "scep" => Protocol::Scep,
                    _ => return Err(bad_request(format!("protocol {v:?} is not acme or scep"))),
                })
            }
            _ => return Err(bad_request(format!("unknown query parameter {k:?}"))),
        }
    }
    Ok(f)
}
