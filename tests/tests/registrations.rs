//! ACME and SCEP registrations end to end (issue 15): the real daemon,
//! its CLI and admin API. What is registered, what is refused and why,
//! the approval workflow, the secrets shown once and kept nowhere, and
//! every transition in the change log.

mod pki;

use std::os::unix::fs::PermissionsExt as _;

use pki::*;
use serde_json::json;

const REGISTRATION_PROFILES: &str = r#"
[[profiles]]
name = "Device ACME"
protocol = "acme"
[profiles.domain_policy]
names = ["*.example.org"]

[[profiles]]
name = "Internal ACME"
protocol = "acme"
[profiles.domain_policy]
names = ["*.internal.example"]

[[profiles]]
name = "Device SCEP"
protocol = "scep"
requires_approval = true
"#;

#[test]
fn registrations_end_to_end() {
    let mut pki = Pki::start_with(REGISTRATION_PROFILES);

    // ACME with the CLI: the asset's names, active at once, the binding
    // shown once.
    let o = pki.cli(
        OPS,
        &[
            "enroll",
            "acme",
            "--asset",
            "web1.example.org",
            "--profile",
            "Device ACME",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let shown = out(&o);
    let key_id = field(&shown, "key id");
    let hmac_key = field(&shown, "HMAC key");
    assert!(shown.contains("(active)"), "{shown}");
    assert!(
        shown.contains("names web1.example.org,www.example.org"),
        "{shown}"
    );
    assert_eq!(hmac_key.len(), 43, "32 bytes, base64url: {hmac_key}");
    assert!(hmac_key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));

    // The API: names narrowed, a different key; never cached.
    let r = pki.post(
        OPS,
        "/enroll/acme",
        json!({"asset": "web1.example.org", "profile": "Device ACME", "dnsNames": "WWW.example.org"}),
    );
    assert_eq!(r.status, 201, "{}", r.error());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let v = r.json();
    assert_eq!(v["registration"]["dnsNames"], json!(["www.example.org"]));
    assert_eq!(v["acme"]["keyId"], v["registration"]["id"]);
    let second_key = v["acme"]["hmacKey"].as_str().unwrap().to_owned();
    assert_ne!(second_key, hmac_key);
    // Shown once: reading it back gives no key.
    let again = pki.get(OPS, &format!("/registrations/{key_id}"));
    assert_eq!(again.status, 200);
    assert!(!String::from_utf8_lossy(&again.body).contains(&hmac_key));
    assert_eq!(again.json()["status"], "active");

    // Refusals, each saying why.
    let refused = [
        (
            json!({"asset": "web1.example.org", "profile": "Device ACME", "dnsNames": ["evil.com"]}),
            422,
            "not one of the asset's DNS names",
        ),
        (
            json!({"asset": "web1.example.org", "profile": "Internal ACME"}),
            422,
            "Internal ACME",
        ),
        (
            json!({"asset": "web1.example.org", "profile": "Server P10"}),
            422,
            "not acme",
        ),
        (
            json!({"asset": "later.example.org", "profile": "Device ACME"}),
            409,
            "pending",
        ),
        (
            json!({"asset": "nosuch.example.org", "profile": "Device ACME"}),
            404,
            "nosuch",
        ),
        (
            json!({"profile": "Device ACME", "dnsNames": "web1.example.org"}),
            422,
            "a registration is for an asset",
        ),
        (
            json!({"asset": "web1.example.org", "profile": "Device ACME", "extra": 1}),
            422,
            "extra",
        ),
    ];
    for (body, status, says) in refused {
        let r = pki.post(OPS, "/enroll/acme", body.clone());
        assert_eq!(r.status, status, "{body}: {}", r.error());
        assert!(r.error().contains(says), "{body}: {}", r.error());
    }
    let r = pki.post(
        BOSS,
        "/enroll/acme",
        json!({"asset": "web1.example.org", "profile": "Device ACME"}),
    );
    assert_eq!(r.status, 403, "an approver may not register");

    // SCEP with approval: pending, the challenge shown at once; the
    // requester may not approve; another approver does.
    let r = pki.post(
        OPS,
        "/enroll/scep",
        json!({"asset": "web1.example.org", "profile": "Device SCEP"}),
    );
    assert_eq!(r.status, 202, "{}", r.error());
    let v = r.json();
    let scep_id = v["registration"]["id"].as_str().unwrap().to_owned();
    let challenge = v["scep"]["challenge"].as_str().unwrap().to_owned();
    // Hex: a PrintableString (how clients send it in the CSR) has no `_`.
    assert_eq!(challenge.len(), 40, "{challenge}");
    assert!(
        challenge.bytes().all(|b| b.is_ascii_hexdigit()),
        "{challenge}"
    );
    assert_eq!(v["registration"]["status"], "pending_approval");
    assert!(v.get("acme").is_none());
    let o = pki.cli(LEAD, &["registrations", "approve", &scep_id]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(out(&o).contains("active"), "{}", out(&o));
    // One approval only.
    let r = pki.post(
        BOSS,
        &format!("/registrations/{scep_id}/approve"),
        json!({}),
    );
    assert_eq!(r.status, 409, "{}", r.error());

    // Another, made by LEAD: LEAD may not decide it; BOSS rejects it.
    let r = pki.post(
        LEAD,
        "/enroll/scep",
        json!({"asset": "web1.example.org", "profile": "Device SCEP"}),
    );
    let rejected_id = r.json()["registration"]["id"].as_str().unwrap().to_owned();
    let r = pki.post(
        LEAD,
        &format!("/registrations/{rejected_id}/approve"),
        json!({}),
    );
    assert_eq!(r.status, 403, "{}", r.error());
    let r = pki.post(
        BOSS,
        &format!("/registrations/{rejected_id}/reject"),
        json!({"comment": "not this device"}),
    );
    assert_eq!(r.status, 200, "{}", r.error());
    assert_eq!(r.json()["status"], "rejected");
    assert_eq!(r.json()["comment"], "not this device");

    // Revoked: final.
    let o = pki.cli(OPS, &["registrations", "revoke", &scep_id]);
    assert!(o.status.success(), "{}", text(&o));
    let r = pki.post(OPS, &format!("/registrations/{scep_id}/revoke"), json!({}));
    assert_eq!(r.status, 409, "{}", r.error());
    let r = pki.post(
        OPS,
        &format!("/registrations/{rejected_id}/revoke"),
        json!({}),
    );
    assert_eq!(r.status, 409, "a rejected registration stays rejected");

    // Listing and filters.
    let o = pki.cli(OPS, &["registrations", "list", "--protocol", "scep"]);
    assert!(o.status.success(), "{}", text(&o));
    let rows: Vec<String> = out(&o).lines().map(str::to_owned).collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows[0].starts_with(&rejected_id) && rows[0].contains("\trejected\t"),
        "{rows:?}"
    );
    assert!(
        rows[1].starts_with(&scep_id) && rows[1].contains("\trevoked\t"),
        "{rows:?}"
    );
    let r = pki.get(
        OPS,
        "/registrations?status=active&protocol=acme&asset=web1.example.org",
    );
    assert_eq!(r.json().as_array().unwrap().len(), 2, "{}", r.json());
    let r = pki.get(OPS, "/registrations?status=sleeping");
    assert_eq!(r.status, 422);
    assert!(r.error().contains("pending_approval"), "{}", r.error());

    // Secrets are nowhere in the data dir: the store keeps the
    // challenge's hash, and no binding key; the registration key is 0600.
    pki.stop();
    let data = pki.env.data_dir();
    for (path, bytes) in files_under(&data) {
        for secret in [&hmac_key, &second_key, &challenge] {
            assert!(
                !contains(&bytes, secret.as_bytes()),
                "{} holds a secret",
                path.display()
            );
        }
    }
    let key = data.join("registration.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // Every transition is a change event with its actor.
    let changes = pki.env.changes();
    let of = |id: &str| -> Vec<(String, String)> {
        changes
            .iter()
            .filter(|e| e["kind"] == "registration" && e["id"] == id)
            .map(|e| {
                (
                    e["op"].to_string(),
                    e["actor"]["name"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    };
    let scep = of(&scep_id);
    assert_eq!(scep.len(), 3, "registered, approved, revoked: {scep:?}");
    assert_eq!(scep[0].1, "ops");
    assert_eq!(scep[1].1, "lead");
    assert_eq!(scep[2].1, "ops");
    assert_eq!(of(&rejected_id).len(), 2);
    assert_eq!(of(&key_id).len(), 1);
}
