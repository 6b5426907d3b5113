//! `idsync enroll acme|scep` and `idsync registrations …`: the CLI side of
//! ACME and SCEP registrations. The secret of a new registration is
//! printed once, on stdout, and never again.

use hyper::Method;
use serde_json::json;

use super::commands::{RegistrationsCommand, TargetArgs};
use super::{print_json, print_rows, query, seg, strip_nulls, text, Api};

/// Register the target for `protocol` (`acme`, `scep`) and print what
/// its device enrolls with.
pub(super) async fn register(
    api: &Api<'_>,
    protocol: &str,
    target: &TargetArgs,
    dns: Option<String>,
) -> anyhow::Result<u8> {
    let body = json!({
        "asset": target.asset,
        "profile": target.profile,
        "dnsNames": dns,
    });
    let a = api
        .ok(
            Method::POST,
            &format!("enroll/{protocol}"),
            Some(strip_nulls(body)),
        )
        .await?;
    let v = a.json();
    let r = &v["registration"];
    println!("registration {} ({})", text(&r["id"]), text(&r["status"]));
    println!(
        "  asset {}, profile {}",
        text(&r["asset"]),
        text(&r["profile"])
    );
    println!("  names {}", names(&r["dnsNames"]));
    println!("  expires {}", text(&r["expires"]));
    if let Some(acme) = v.get("acme") {
        println!("  ACME external account binding (shown once):");
        println!("    key id   {}", text(&acme["keyId"]));
        println!("    HMAC key {}", text(&acme["hmacKey"]));
    }
    if let Some(scep) = v.get("scep") {
        println!("  SCEP challenge password (shown once, single use):");
        println!("    {}", text(&scep["challenge"]));
    }
    if r["status"] == "pending_approval" {
        println!("  it works once an approver approves it (idsync registrations approve ID)");
    }
    Ok(0)
}

pub(super) async fn run(api: &Api<'_>, c: RegistrationsCommand) -> anyhow::Result<u8> {
    match c {
        RegistrationsCommand::List {
            status,
            asset,
            protocol,
            json,
        } => {
            let q = query(&[
                ("status", status.as_deref()),
                ("asset", asset.as_deref()),
                ("protocol", protocol.as_deref()),
            ]);
            let a = api
                .ok(Method::GET, &format!("registrations?{q}"), None)
                .await?;
            if json {
                return print_json(&a);
            }
            print_rows(&a.json(), |r| {
                vec![
                    text(&r["id"]),
                    text(&r["status"]),
                    text(&r["protocol"]),
                    text(&r["profile"]),
                    names(&r["dnsNames"]),
                    text(&r["expires"]),
                ]
            });
            Ok(0)
        }
        RegistrationsCommand::Show { id } => print_json(
            &api.ok(Method::GET, &format!("registrations/{}", seg(&id)), None)
                .await?,
        ),
        RegistrationsCommand::Approve { id, comment } => decide(api, &id, "approve", comment).await,
        RegistrationsCommand::Reject { id, comment } => decide(api, &id, "reject", comment).await,
        RegistrationsCommand::Revoke { id } => {
            let path = format!("registrations/{}/revoke", seg(&id));
            let a = api.ok(Method::POST, &path, None).await?;
            println!("registration {id}: {}", text(&a.json()["status"]));
            Ok(0)
        }
    }
}

async fn decide(
    api: &Api<'_>,
    id: &str,
    what: &str,
    comment: Option<String>,
) -> anyhow::Result<u8> {
    let path = format!("registrations/{}/{what}", seg(id));
    let body = strip_nulls(json!({ "comment": comment }));
    let a = api.ok(Method::POST, &path, Some(body)).await?;
    println!("registration {id}: {}", text(&a.json()["status"]));
    Ok(0)
}

/// A list of names as one cell: `a,b` (`-` when none).
fn names(v: &serde_json::Value) -> String {
    let list: Vec<String> = v.as_array().into_iter().flatten().map(text).collect();
    match list.is_empty() {
        true => "-".into(),
        false => list.join(","),
    }
}
