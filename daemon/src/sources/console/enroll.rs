//! The certificate screens (seed 002): the profiles, and "Enroll profile"
//! on a profile's page, by its protocol: P10 (a CSR, the certificate to
//! download), P12 (certificate data and a password typed twice, or a
//! generated one shown with "Confirm displayed password"; the file is the
//! answer, and is never kept), ACME and SCEP (the asset registered, its
//! binding key or challenge shown once). Then a certificate's page with
//! its download and "Confirm installation". All through the enrollment
//! service the admin API uses, as the signed-in token.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use idsync_schema::{CertificateData, ProfileSettings, Protocol};
use serde_json::json;
use uuid::Uuid;
use zeroize::Zeroize as _;

use super::screens::{date, Shown};
use super::session::Live;
use super::{views, Call, Console};
use crate::infra::auth::Role;
use crate::infra::http::parse_query;
use crate::sources::enroll::{EnrollError, Enrolled, Password, Target};

/// A form that holds a password: its values are wiped when it goes.
struct SecretForm(std::collections::HashMap<String, String>);

impl std::ops::Deref for SecretForm {
    type Target = std::collections::HashMap<String, String>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Drop for SecretForm {
    fn drop(&mut self) {
        for value in self.0.values_mut() {
            value.zeroize();
        }
    }
}

/// Characters of a generated P12 password.
const GENERATED_PASSWORD_CHARS: usize = 20;

/// A profile's page (names have spaces: "Web servers").
fn href(name: &str) -> String {
    format!("/ui/profiles/{}", super::screens::percent_encode(name))
}

/// What "New profile" starts from: the keys an operator changes most,
/// in the TOML of `idsync profiles put` (docs/certificates.md).
const NEW_PROFILE: &str = include_str!("../../../../examples/profile-web.toml");

/// `GET /ui/profiles`.
pub fn profiles(c: &Console, live: &Live) -> Result<Shown, EnrollError> {
    let rows: Vec<_> = c
        .enrollment
        .profiles()?
        .iter()
        .map(|p| {
            json!({
                "name": p.name, "protocol": p.protocol.to_string(),
                "href": href(&p.name),
                "approval": p.requires_approval,
                "policy": p.domain_policy.names.join(", "),
                "days": p.validity_days,
            })
        })
        .collect();
    Ok(Shown::Page(
        "profiles.html",
        json!({
            "profiles": rows, "admin": live.identity.grants(Role::Admin),
            "new_profile": NEW_PROFILE,
        }),
    ))
}

/// `GET /ui/profiles/NAME`: the settings and the enrollment form.
pub fn profile(c: &Console, live: &Live, name: &str) -> Result<Shown, EnrollError> {
    let name = crate::infra::http::percent_decode(name, false);
    let p = match c.enrollment.profile(&name) {
        Ok(p) => p,
        Err(EnrollError::NotFound(_)) => return Ok(Shown::NotFound),
        Err(e) => return Err(e),
    };
    let generated = match super::session::random_token() {
        Ok(t) => t[..GENERATED_PASSWORD_CHARS].to_owned(),
        Err(_) => String::new(),
    };
    let fields = vec![
        ("Protocol", p.protocol.to_string()),
        ("Subject", p.subject.clone()),
        (
            "Key types",
            p.key_types
                .iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("Valid for", format!("{} days", p.validity_days)),
        ("Domain policy", p.domain_policy.names.join(", ")),
        ("IP ranges", p.domain_policy.ip_ranges.join(", ")),
        (
            "Needs approval",
            if p.requires_approval { "yes" } else { "no" }.to_owned(),
        ),
    ];
    // Admins edit the profile as the TOML `idsync profiles put` reads.
    let toml = if live.identity.grants(Role::Admin) {
        toml::to_string(&p.settings).ok()
    } else {
        None
    };
    Ok(Shown::Page(
        "profile.html",
        json!({
            "profile": { "name": p.name, "protocol": p.protocol.to_string(), "href": href(&p.name) },
            "fields": fields, "operator": live.identity.grants(Role::Operator),
            "generated": generated, "toml": toml,
        }),
    ))
}

/// `POST /ui/profiles/NAME/enroll`.
pub async fn enroll(
    c: &Console,
    call: &Call<'_>,
    live: &Live,
    name: &str,
) -> Response<Full<Bytes>> {
    if !live.identity.grants(Role::Operator) {
        return c.views.forbidden(live);
    }
    let name = crate::infra::http::percent_decode(name, false);
    let back = href(&name);
    let profile = match c.enrollment.profile(&name) {
        Ok(p) => p,
        Err(e) => return failed(c, live, &e, &back),
    };
    let form = SecretForm(parse_query(std::str::from_utf8(&call.body).ok()));
    let text = |k: &str| {
        form.get(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let target = Target {
        asset: text("asset"),
        profile: Some(name.clone()),
    };
    let who = live.identity.token.as_str();
    let done = match profile.protocol {
        Protocol::P10 => {
            let csr = text("csr").unwrap_or_default();
            c.enrollment.enroll_p10(who, &target, csr.as_bytes()).await
        }
        Protocol::P12 => {
            let password = match p12_password(&form) {
                Ok(p) => p,
                Err(e) => return failed(c, live, &e, &back),
            };
            let data = CertificateData {
                dns_names: text("dns_names")
                    .map(|d| {
                        d.split(',')
                            .map(|n| n.trim().to_owned())
                            .filter(|n| !n.is_empty())
                            .collect()
                    })
                    .unwrap_or_default(),
                ..CertificateData::default()
            };
            c.enrollment
                .enroll_p12(who, &target, data, None, Some(password))
                .await
        }
        Protocol::Acme | Protocol::Scep => {
            return register(c, live, profile.protocol, &target, text("dns_names"), &back).await;
        }
    };
    match done {
        Ok(done) => enrolled(done),
        Err(e) => failed(c, live, &e, &back),
    }
}

/// `POST /ui/profiles`: create or replace a profile from its TOML (admin).
pub async fn save(c: &Console, call: &Call<'_>, live: &Live) -> Response<Full<Bytes>> {
    if !live.identity.grants(Role::Admin) {
        return c.views.forbidden(live);
    }
    let form = parse_query(std::str::from_utf8(&call.body).ok());
    let text = form.get("toml").map(String::as_str).unwrap_or("");
    let settings: ProfileSettings = match toml::from_str(text) {
        Ok(s) => s,
        Err(e) => {
            let e = EnrollError::Invalid(format!("the profile: {e}"));
            return failed(c, live, &e, "/ui/profiles");
        }
    };
    match c
        .enrollment
        .put_profile(live.identity.token.as_str(), settings)
        .await
    {
        Ok((_, profile)) => views::redirect(&href(&profile.name)),
        Err(e) => failed(c, live, &e, "/ui/profiles"),
    }
}

/// The P12 password: typed twice and equal, or the generated one shown
/// with its "Confirm displayed password" box ticked.
fn p12_password(form: &std::collections::HashMap<String, String>) -> Result<Password, EnrollError> {
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    if form.get("use_generated").is_some() {
        if form.get("confirm_displayed").is_none() {
            return Err(EnrollError::Invalid(
                "tick \"Confirm displayed password\" once the password is noted".into(),
            ));
        }
        return Password::new(get("generated"));
    }
    let (password, again) = (get("password"), get("password_again"));
    if password != again {
        return Err(EnrollError::Invalid("the two passwords differ".into()));
    }
    Password::new(password)
}

/// After an enrollment: the P12 file itself, the certificate's page, or
/// the request's page while it waits for an approver.
fn enrolled(done: Enrolled) -> Response<Full<Bytes>> {
    if let Some(p12) = done.p12 {
        let name = done
            .request
            .data
            .name
            .clone()
            .unwrap_or_else(|| done.request.id.to_string());
        return views::attachment(p12, "application/x-pkcs12", &format!("{name}.p12"));
    }
    match done.certificate {
        Some(cert) => views::redirect(&format!("/ui/certificates/{}", cert.id)),
        // Waiting for an approver (or failed): the request says which.
        None => views::redirect(&format!("/ui/requests/{}", done.request.id)),
    }
}

async fn register(
    c: &Console,
    live: &Live,
    protocol: Protocol,
    target: &Target,
    dns_names: Option<String>,
    back: &str,
) -> Response<Full<Bytes>> {
    let who = live.identity.token.as_str();
    let done = match c
        .enrollment
        .register(who, protocol, target, dns_names.as_deref())
        .await
    {
        Ok(done) => done,
        Err(e) => return failed(c, live, &e, back),
    };
    let r = &done.registration;
    let vars = json!({
        "protocol": protocol.to_string(),
        "id": r.id.to_string(),
        "status": r.status.as_str(),
        "hmac_key": done.eab_hmac_key.as_ref().map(|k| k.as_str().to_owned()),
        "challenge": done.challenge.as_ref().map(|k| k.as_str().to_owned()),
        "back": back,
    });
    c.views.page(
        "registered.html",
        StatusCode::CREATED,
        Some(live),
        None,
        vars,
    )
}

/// `GET /ui/certificates/ID`.
pub fn certificate(c: &Console, live: &Live, id: &str) -> Result<Shown, EnrollError> {
    let Ok(id) = Uuid::parse_str(id) else {
        return Ok(Shown::NotFound);
    };
    let cert = match c.enrollment.certificate(id) {
        Ok(cert) => cert,
        Err(EnrollError::NotFound(_)) => return Ok(Shown::NotFound),
        Err(e) => return Err(e),
    };
    let fields = vec![
        ("Subject", cert.subject.clone()),
        ("Serial", cert.serial.clone()),
        ("Profile", cert.profile.clone()),
        ("Key type", cert.key_type.to_string()),
        ("DNS names", cert.dns_names.join(", ")),
        ("Valid from", date(cert.not_before)),
        ("Valid until", date(cert.not_after)),
        (
            "Installed",
            cert.installed.map(date).unwrap_or_else(|| "no".into()),
        ),
        (
            "Revoked",
            if cert.revoked.is_some() { "yes" } else { "no" }.into(),
        ),
    ];
    Ok(Shown::Page(
        "certificate.html",
        json!({
            "certificate": { "id": cert.id.to_string(), "installed": cert.installed.is_some() },
            "fields": fields, "operator": live.identity.grants(Role::Operator),
        }),
    ))
}

/// `GET /ui/certificates/ID/pem`: the certificate and its chain.
pub fn pem(c: &Console, live: &Live, id: &str) -> Response<Full<Bytes>> {
    let Ok(id) = Uuid::parse_str(id) else {
        return c.views.not_found(live);
    };
    match c.enrollment.certificate(id) {
        Ok(cert) => views::attachment(
            format!("{}{}", cert.pem, cert.chain).into_bytes(),
            "application/pem-certificate-chain",
            &format!("{}.pem", cert.serial),
        ),
        Err(e) => failed(c, live, &e, "/ui/"),
    }
}

/// `POST /ui/certificates/ID/installed`: "Confirm installation".
pub async fn confirm_installed(c: &Console, live: &Live, id: &str) -> Response<Full<Bytes>> {
    if !live.identity.grants(Role::Operator) {
        return c.views.forbidden(live);
    }
    let Ok(id) = Uuid::parse_str(id) else {
        return c.views.not_found(live);
    };
    let back = format!("/ui/certificates/{id}");
    match c
        .enrollment
        .confirm_installed(live.identity.token.as_str(), id)
        .await
    {
        Ok(_) => views::redirect(&back),
        Err(e) => failed(c, live, &e, &back),
    }
}

/// `POST /ui/requests/ID/p12`: an approved P12 request's file, made now
/// with the password given (its requester only, or an admin).
pub async fn download_p12(
    c: &Console,
    call: &Call<'_>,
    live: &Live,
    id: &str,
) -> Response<Full<Bytes>> {
    let Ok(id) = Uuid::parse_str(id) else {
        return c.views.not_found(live);
    };
    let back = format!("/ui/requests/{id}");
    let form = SecretForm(parse_query(std::str::from_utf8(&call.body).ok()));
    let password = match p12_password(&form) {
        Ok(p) => p,
        Err(e) => return failed(c, live, &e, &back),
    };
    let who = live.identity.token.as_str();
    let is_admin = live.identity.grants(Role::Admin);
    match c.enrollment.download_p12(who, is_admin, id, password).await {
        Ok(done) => enrolled(done),
        Err(e) => failed(c, live, &e, &back),
    }
}

fn failed(c: &Console, live: &Live, e: &EnrollError, back: &str) -> Response<Full<Bytes>> {
    c.views
        .error(Some(live), e.status(), "Not done", &e.to_string(), back)
}
