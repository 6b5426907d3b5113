//! The Assets screen (seed 000): search by the start of the name, a page
//! at a time; an asset's page with its certificates, where an operator
//! assigns a certificate profile (a pending asset becomes active) through
//! the enrollment service, as the API's `PUT /assets/NAME/profile` does.

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use idsync_schema::{Asset, AssetState, Kind};
use idsync_store::keys::Index;
use serde_json::{json, Value};
use uuid::Uuid;

use super::history;
use super::screens::{date, list, List, Shown};
use super::session::Live;
use super::{views, Call, Console};
use crate::infra::auth::Role;
use crate::infra::http::parse_query;

fn state(a: &Asset) -> &'static str {
    match a.state {
        AssetState::Pending => "pending",
        AssetState::Active => "active",
    }
}

/// `GET /ui/assets?q=START&after=KEY`.
pub fn assets(c: &Console, query: Option<&str>) -> Result<Shown, idsync_store::StoreError> {
    let screen = List {
        path: "/ui/assets",
        template: "assets.html",
        kind: Kind::Asset,
        index: |_| Index::AssetName,
        row: |a: &Asset| {
            json!({
                "id": a.id.to_string(), "name": a.name, "type": a.asset_type,
                "profile": a.certificate_profile, "state": state(a),
                "modified": date(a.meta.modified),
            })
        },
    };
    list(c, screen, query)
}

/// `GET /ui/assets/ID?before=SEQ`.
pub fn asset(
    c: &Console,
    live: &Live,
    id: &str,
    query: Option<&str>,
) -> Result<Shown, idsync_store::StoreError> {
    let Ok(id) = Uuid::parse_str(id) else {
        return Ok(Shown::NotFound);
    };
    let Some(a) = c.rec.store().object::<Asset>(Kind::Asset, id)? else {
        return Ok(Shown::NotFound);
    };
    let operator = live.identity.grants(Role::Operator);
    let certificates: Vec<Value> = match c.enrollment.certificates_of(&a.id.to_string()) {
        Ok(certs) => certs
            .iter()
            .map(|cert| {
                json!({
                    "id": cert.id.to_string(), "serial": cert.serial, "profile": cert.profile,
                    "not_after": date(cert.not_after),
                    "installed": cert.installed.map(date),
                    "revoked": cert.revoked.is_some(),
                })
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "console: listing an asset's certificates failed");
            Vec::new()
        }
    };
    let profiles: Vec<String> = if operator {
        match c.enrollment.profiles() {
            Ok(p) => p.into_iter().map(|p| p.name.clone()).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "console: listing profiles failed");
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let fields = vec![
        ("Id", a.id.to_string()),
        ("Name", a.name.clone()),
        ("Type", opt(&a.asset_type)),
        ("Description", opt(&a.description)),
        ("Owner", opt(&a.owner)),
        ("State", state(&a).to_owned()),
        ("Certificate profile", opt(&a.certificate_profile)),
        ("Organization", opt(&a.organization)),
        ("Country", opt(&a.country)),
        ("DNS names", a.dns_names.join(", ")),
        ("IP addresses", a.ip_addresses.join(", ")),
        ("Created", date(a.meta.created)),
        ("Modified", date(a.meta.modified)),
        ("Version", a.meta.version.to_string()),
    ];
    let history = history::page(c, a.id, &a.meta, &format!("/ui/assets/{}", a.id), query)?;
    Ok(Shown::Page(
        "asset.html",
        json!({
            "asset": { "id": a.id.to_string(), "name": a.name, "profile": a.certificate_profile, "state": state(&a) },
            "fields": fields, "certificates": certificates,
            "operator": operator, "profiles": profiles, "history": history,
        }),
    ))
}

/// `POST /ui/assets/ID/profile`: "Assign certificate profile".
pub async fn assign(c: &Console, call: &Call<'_>, live: &Live, id: &str) -> Response<Full<Bytes>> {
    if !live.identity.grants(Role::Operator) {
        return c.views.forbidden(live);
    }
    let Ok(id) = Uuid::parse_str(id) else {
        return c.views.not_found(live);
    };
    let form = parse_query(std::str::from_utf8(&call.body).ok());
    let profile = form.get("profile").map(|p| p.trim()).unwrap_or("");
    let back = format!("/ui/assets/{id}");
    let who = live.identity.token.as_str();
    match c
        .enrollment
        .assign_profile(who, &id.to_string(), profile)
        .await
    {
        Ok(_) => views::redirect(&back),
        Err(e) => c.views.error(
            Some(live),
            e.status(),
            "Not assigned",
            &e.to_string(),
            &back,
        ),
    }
}
