//! The discovery documents (RFC 7644 §4): `/ServiceProviderConfig`,
//! `/ResourceTypes` and `/Schemas`. They state what this server really does
//! (the limits come from the configuration), because identity providers
//! read them to decide what to send.

use serde_json::{json, Value};

use super::attributes;
use super::mapping::{
    ASSET_SCHEMA, ENTERPRISE_SCHEMA, GROUP_SCHEMA, IDSYNC_GROUP_SCHEMA, IDSYNC_USER_SCHEMA,
    USER_SCHEMA,
};
use super::Advertised;

const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// `/ServiceProviderConfig`.
pub fn service_provider_config(cfg: &Advertised) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": true},
        "bulk": {
            "supported": true,
            "maxOperations": cfg.bulk_max_operations,
            "maxPayloadSize": cfg.max_body_bytes,
        },
        "filter": {"supported": true, "maxResults": cfg.max_results},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        // The IETF SCIM cursor pagination draft: both methods; a cursor
        // never expires (it is the last id of the page before).
        "pagination": {
            "cursor": true,
            "index": true,
            "defaultPaginationMethod": "index",
            "defaultPageSize": cfg.default_count,
            "maxPageSize": cfg.max_results,
            "cursorTimeout": 0,
        },
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A bearer token from the idsync configuration ([[tokens]]) with the read role (queries) or the write role (changes).",
            "primary": true,
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{}/ServiceProviderConfig", cfg.url_base)},
    })
}

fn resource_type(
    cfg: &Advertised,
    name: &str,
    endpoint: &str,
    schema: &str,
    extensions: &[(&str, bool)],
) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": name,
        "name": name,
        "endpoint": endpoint,
        "description": name,
        "schema": schema,
        "schemaExtensions": extensions.iter().map(|(s, r)| json!({"schema": s, "required": r})).collect::<Vec<_>>(),
        "meta": {"resourceType": "ResourceType", "location": format!("{}/ResourceTypes/{name}", cfg.url_base)},
    })
}

/// Every resource type.
pub fn resource_types(cfg: &Advertised) -> Vec<Value> {
    vec![
        resource_type(
            cfg,
            "User",
            "/Users",
            USER_SCHEMA,
            &[(ENTERPRISE_SCHEMA, false), (IDSYNC_USER_SCHEMA, false)],
        ),
        resource_type(
            cfg,
            "Group",
            "/Groups",
            GROUP_SCHEMA,
            &[(IDSYNC_GROUP_SCHEMA, false)],
        ),
        resource_type(cfg, "Asset", "/Assets", ASSET_SCHEMA, &[]),
    ]
}

/// One attribute definition (RFC 7643 §7). Most of idsync's attributes are
/// optional, single-valued, case-insensitive, read-write strings, so a
/// definition starts there and names only what differs.
struct Attr(Value);

impl Attr {
    fn new(name: &str) -> Self {
        Attr(json!({
            "name": name,
            "type": "string",
            "multiValued": false,
            "description": name,
            "required": false,
            "caseExact": false,
            "mutability": "readWrite",
            "returned": "default",
            "uniqueness": "none",
        }))
    }

    /// A complex attribute made of `subs`.
    fn complex(name: &str, subs: Vec<Attr>) -> Self {
        let mut a = Attr::new(name).set("type", "complex");
        a.0["subAttributes"] = subs.into_iter().map(|s| s.0).collect();
        a
    }

    fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0[key] = value.into();
        self
    }

    fn boolean(self) -> Self {
        self.set("type", "boolean")
    }

    fn reference(self) -> Self {
        self.set("type", "reference")
    }

    fn multi(self) -> Self {
        self.set("multiValued", true)
    }

    fn required(self) -> Self {
        self.set("required", true)
    }

    fn case_exact(self) -> Self {
        self.set("caseExact", true)
    }

    fn read_only(self) -> Self {
        self.set("mutability", "readOnly")
    }

    fn immutable(self) -> Self {
        self.set("mutability", "immutable")
    }

    /// Unique across the server (RFC 7643 §2.2 `uniqueness`).
    fn unique(self) -> Self {
        self.set("uniqueness", "server")
    }

    fn described(self, description: &str) -> Self {
        self.set("description", description)
    }
}

/// Attributes that are plain strings, the common case.
fn strings(names: &[&str]) -> Vec<Attr> {
    names.iter().map(|n| Attr::new(n)).collect()
}

/// A user's `groups` and a group's `members`: references to resources of
/// the types `to` (RFC 7643 §7 `referenceTypes`).
fn references(name: &str, to: &[&str]) -> Attr {
    Attr::complex(
        name,
        vec![
            Attr::new("value").case_exact().immutable(),
            Attr::new("$ref")
                .reference()
                .set("referenceTypes", json!(to))
                .case_exact()
                .immutable(),
            Attr::new("display").read_only(),
            Attr::new("type").immutable(),
        ],
    )
    .multi()
}

/// `externalId`, the same on users and groups.
fn external_id() -> Attr {
    Attr::new("externalId")
        .case_exact()
        .unique()
        .described("the identity provider's id")
}

fn schema(cfg: &Advertised, id: &str, name: &str, attributes: Vec<Attr>) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": id,
        "name": name,
        "description": name,
        "attributes": attributes.into_iter().map(|a| a.0).collect::<Vec<_>>(),
        "meta": {"resourceType": "Schema", "location": format!("{}/Schemas/{id}", cfg.url_base)},
    })
}

/// An attribute that [`attributes`] keeps, as `/Schemas` shows it.
fn kept(def: &attributes::Def) -> Attr {
    let typed = |name: &str, kind: attributes::Type| Attr::new(name).set("type", kind.name());
    if def.subs.is_empty() {
        return typed(def.name, def.kind);
    }
    let subs = def.subs.iter().map(|(s, k)| typed(s, *k)).collect();
    Attr::complex(def.name, subs).multi()
}

/// `attr`, required when `yes`.
fn required_if(attr: Attr, yes: bool) -> Attr {
    if yes {
        attr.required()
    } else {
        attr
    }
}

fn user_schema(cfg: &Advertised) -> Value {
    // What is required is the SCIM rule set's (`scim.require`).
    let family_name = required_if(Attr::new("familyName"), cfg.rules.require_last_name);
    let mut name_parts = vec![Attr::new("givenName"), family_name];
    name_parts.extend(attributes::NAME.iter().map(|p| Attr::new(p)));
    let name = Attr::complex("name", name_parts);
    let emails = Attr::complex(
        "emails",
        vec![
            Attr::new("value").unique(),
            Attr::new("type"),
            Attr::new("primary").boolean(),
        ],
    )
    .multi();
    let emails = required_if(emails, cfg.rules.require_mail);
    let mut attrs = vec![
        Attr::new("userName")
            .required()
            .unique()
            .described("idsync's loginName"),
        external_id(),
        name,
        Attr::new("displayName"),
        Attr::new("active").boolean(),
        Attr::new("preferredLanguage"),
        Attr::new("locale"),
        emails,
        references("groups", &["Group"]).read_only(),
        // Write-only: accepted (Okta sends it) and never stored or shown.
        Attr::new("password")
            .case_exact()
            .set("mutability", "writeOnly")
            .set("returned", "never"),
    ];
    attrs.extend(
        attributes::USER
            .iter()
            .filter(|d| d.name != "locale")
            .map(kept),
    );
    schema(cfg, USER_SCHEMA, "User", attrs)
}

fn enterprise_user_schema(cfg: &Advertised) -> Value {
    let mut attributes = strings(attributes::ENTERPRISE);
    attributes.push(Attr::complex(
        "manager",
        vec![
            Attr::new("value"),
            Attr::new("$ref")
                .reference()
                .set("referenceTypes", json!(["User"])),
            Attr::new("displayName").read_only(),
        ],
    ));
    schema(cfg, ENTERPRISE_SCHEMA, "EnterpriseUser", attributes)
}

fn idsync_user_schema(cfg: &Advertised) -> Value {
    let mut attributes = strings(&[
        "validFrom",
        "validTo",
        "spCustomAttribute1",
        "spCustomAttribute2",
        "spCustomAttribute3",
        "spCustomAttribute4",
        "spCustomAttribute5",
    ]);
    attributes.extend([
        Attr::new("roles").multi().read_only(),
        Attr::new("applications").multi().read_only(),
        Attr::new("source").read_only(),
        Attr::new("activationMail").read_only(),
    ]);
    schema(cfg, IDSYNC_USER_SCHEMA, "IdsyncUser", attributes)
}

fn group_schema(cfg: &Advertised) -> Value {
    let attributes = vec![
        Attr::new("displayName").required().unique(),
        external_id(),
        references("members", &["User", "Group"]),
    ];
    schema(cfg, GROUP_SCHEMA, "Group", attributes)
}

fn idsync_group_schema(cfg: &Advertised) -> Value {
    let attributes = vec![Attr::new("description"), Attr::new("source").read_only()];
    schema(cfg, IDSYNC_GROUP_SCHEMA, "IdsyncGroup", attributes)
}

fn asset_schema(cfg: &Advertised) -> Value {
    // Not unique, unlike the users' and groups': nothing is matched by it.
    let external_id = Attr::new("externalId")
        .case_exact()
        .described("the identity provider's id");
    let mut attributes = vec![Attr::new("name").required().unique(), external_id];
    attributes.extend(strings(&[
        "description",
        "type",
        "owner",
        "certificateProfile",
        "organization",
        "country",
    ]));
    attributes.extend([
        Attr::new("dnsNames").multi(),
        Attr::new("ipAddresses").multi(),
        Attr::new("sid"),
        Attr::new("state").read_only(),
        Attr::new("source").read_only(),
    ]);
    schema(cfg, ASSET_SCHEMA, "Asset", attributes)
}

/// Every schema, in the order `/Schemas` lists them.
pub fn schemas(cfg: &Advertised) -> Vec<Value> {
    vec![
        user_schema(cfg),
        enterprise_user_schema(cfg),
        idsync_user_schema(cfg),
        group_schema(cfg),
        idsync_group_schema(cfg),
        asset_schema(cfg),
    ]
}

/// A ListResponse around `resources` (the discovery lists are not paged).
pub fn list(resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST],
        "totalResults": resources.len(),
        "startIndex": 1,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: Advertised = Advertised {
        rules: crate::RuleSet::RFC7643,
        default_count: 100,
        url_base: "/scim/v2",
        bulk_max_operations: 1000,
        max_body_bytes: 1 << 20,
        max_results: 200,
    };

    const ATTR_KEYS: [&str; 9] = [
        "caseExact",
        "description",
        "multiValued",
        "mutability",
        "name",
        "required",
        "returned",
        "type",
        "uniqueness",
    ];

    /// What `schemas()` advertised before it was split into one function
    /// per schema; identity providers read it, so a change must be meant.
    const EXPECTED: &str = r#"
        User urn:ietf:params:scim:schemas:core:2.0:User /scim/v2/Schemas/urn:ietf:params:scim:schemas:core:2.0:User
        User.userName string 0 1 0 readWrite default server "idsync's loginName"
        User.externalId string 0 0 1 readWrite default server "the identity provider's id"
        User.name complex 0 0 0 readWrite default none
        User.name.givenName string 0 0 0 readWrite default none
        User.name.familyName string 0 0 0 readWrite default none
        User.name.formatted string 0 0 0 readWrite default none
        User.name.middleName string 0 0 0 readWrite default none
        User.name.honorificPrefix string 0 0 0 readWrite default none
        User.name.honorificSuffix string 0 0 0 readWrite default none
        User.displayName string 0 0 0 readWrite default none
        User.active boolean 0 0 0 readWrite default none
        User.preferredLanguage string 0 0 0 readWrite default none
        User.locale string 0 0 0 readWrite default none
        User.emails complex 1 0 0 readWrite default none
        User.emails.value string 0 0 0 readWrite default server
        User.emails.type string 0 0 0 readWrite default none
        User.emails.primary boolean 0 0 0 readWrite default none
        User.groups complex 1 0 0 readOnly default none
        User.groups.value string 0 0 1 immutable default none
        User.groups.$ref reference 0 0 1 immutable default none to=Group
        User.groups.display string 0 0 0 readOnly default none
        User.groups.type string 0 0 0 immutable default none
        User.password string 0 0 1 writeOnly never none
        User.nickName string 0 0 0 readWrite default none
        User.profileUrl reference 0 0 0 readWrite default none
        User.title string 0 0 0 readWrite default none
        User.userType string 0 0 0 readWrite default none
        User.timezone string 0 0 0 readWrite default none
        User.phoneNumbers complex 1 0 0 readWrite default none
        User.phoneNumbers.value string 0 0 0 readWrite default none
        User.phoneNumbers.display string 0 0 0 readWrite default none
        User.phoneNumbers.type string 0 0 0 readWrite default none
        User.phoneNumbers.primary boolean 0 0 0 readWrite default none
        User.ims complex 1 0 0 readWrite default none
        User.ims.value string 0 0 0 readWrite default none
        User.ims.display string 0 0 0 readWrite default none
        User.ims.type string 0 0 0 readWrite default none
        User.ims.primary boolean 0 0 0 readWrite default none
        User.photos complex 1 0 0 readWrite default none
        User.photos.value reference 0 0 0 readWrite default none
        User.photos.display string 0 0 0 readWrite default none
        User.photos.type string 0 0 0 readWrite default none
        User.photos.primary boolean 0 0 0 readWrite default none
        User.addresses complex 1 0 0 readWrite default none
        User.addresses.formatted string 0 0 0 readWrite default none
        User.addresses.streetAddress string 0 0 0 readWrite default none
        User.addresses.locality string 0 0 0 readWrite default none
        User.addresses.region string 0 0 0 readWrite default none
        User.addresses.postalCode string 0 0 0 readWrite default none
        User.addresses.country string 0 0 0 readWrite default none
        User.addresses.type string 0 0 0 readWrite default none
        User.addresses.primary boolean 0 0 0 readWrite default none
        User.entitlements complex 1 0 0 readWrite default none
        User.entitlements.value string 0 0 0 readWrite default none
        User.entitlements.display string 0 0 0 readWrite default none
        User.entitlements.type string 0 0 0 readWrite default none
        User.entitlements.primary boolean 0 0 0 readWrite default none
        User.roles complex 1 0 0 readWrite default none
        User.roles.value string 0 0 0 readWrite default none
        User.roles.display string 0 0 0 readWrite default none
        User.roles.type string 0 0 0 readWrite default none
        User.roles.primary boolean 0 0 0 readWrite default none
        User.x509Certificates complex 1 0 0 readWrite default none
        User.x509Certificates.value binary 0 0 0 readWrite default none
        User.x509Certificates.display string 0 0 0 readWrite default none
        User.x509Certificates.type string 0 0 0 readWrite default none
        User.x509Certificates.primary boolean 0 0 0 readWrite default none
        EnterpriseUser urn:ietf:params:scim:schemas:extension:enterprise:2.0:User /scim/v2/Schemas/urn:ietf:params:scim:schemas:extension:enterprise:2.0:User
        EnterpriseUser.employeeNumber string 0 0 0 readWrite default none
        EnterpriseUser.costCenter string 0 0 0 readWrite default none
        EnterpriseUser.organization string 0 0 0 readWrite default none
        EnterpriseUser.division string 0 0 0 readWrite default none
        EnterpriseUser.department string 0 0 0 readWrite default none
        EnterpriseUser.manager complex 0 0 0 readWrite default none
        EnterpriseUser.manager.value string 0 0 0 readWrite default none
        EnterpriseUser.manager.$ref reference 0 0 0 readWrite default none to=User
        EnterpriseUser.manager.displayName string 0 0 0 readOnly default none
        IdsyncUser urn:idsync:params:scim:schemas:extension:idsync:2.0:User /scim/v2/Schemas/urn:idsync:params:scim:schemas:extension:idsync:2.0:User
        IdsyncUser.validFrom string 0 0 0 readWrite default none
        IdsyncUser.validTo string 0 0 0 readWrite default none
        IdsyncUser.spCustomAttribute1 string 0 0 0 readWrite default none
        IdsyncUser.spCustomAttribute2 string 0 0 0 readWrite default none
        IdsyncUser.spCustomAttribute3 string 0 0 0 readWrite default none
        IdsyncUser.spCustomAttribute4 string 0 0 0 readWrite default none
        IdsyncUser.spCustomAttribute5 string 0 0 0 readWrite default none
        IdsyncUser.roles string 1 0 0 readOnly default none
        IdsyncUser.applications string 1 0 0 readOnly default none
        IdsyncUser.source string 0 0 0 readOnly default none
        IdsyncUser.activationMail string 0 0 0 readOnly default none
        Group urn:ietf:params:scim:schemas:core:2.0:Group /scim/v2/Schemas/urn:ietf:params:scim:schemas:core:2.0:Group
        Group.displayName string 0 1 0 readWrite default server
        Group.externalId string 0 0 1 readWrite default server "the identity provider's id"
        Group.members complex 1 0 0 readWrite default none
        Group.members.value string 0 0 1 immutable default none
        Group.members.$ref reference 0 0 1 immutable default none to=User,Group
        Group.members.display string 0 0 0 readOnly default none
        Group.members.type string 0 0 0 immutable default none
        IdsyncGroup urn:idsync:params:scim:schemas:extension:idsync:2.0:Group /scim/v2/Schemas/urn:idsync:params:scim:schemas:extension:idsync:2.0:Group
        IdsyncGroup.description string 0 0 0 readWrite default none
        IdsyncGroup.source string 0 0 0 readOnly default none
        Asset urn:idsync:params:scim:schemas:core:2.0:Asset /scim/v2/Schemas/urn:idsync:params:scim:schemas:core:2.0:Asset
        Asset.name string 0 1 0 readWrite default server
        Asset.externalId string 0 0 1 readWrite default none "the identity provider's id"
        Asset.description string 0 0 0 readWrite default none
        Asset.type string 0 0 0 readWrite default none
        Asset.owner string 0 0 0 readWrite default none
        Asset.certificateProfile string 0 0 0 readWrite default none
        Asset.organization string 0 0 0 readWrite default none
        Asset.country string 0 0 0 readWrite default none
        Asset.dnsNames string 1 0 0 readWrite default none
        Asset.ipAddresses string 1 0 0 readWrite default none
        Asset.sid string 0 0 0 readWrite default none
        Asset.state string 0 0 0 readOnly default none
        Asset.source string 0 0 0 readOnly default none
"#;

    /// One line per attribute (sub-attributes as `parent.sub`), so that a
    /// changed flag names the attribute it moved on. Columns: type,
    /// multiValued, required, caseExact, mutability, returned, uniqueness,
    /// then the description when it is not the name.
    fn attribute_lines(prefix: &str, attrs: &Value, out: &mut Vec<String>) {
        for a in attrs.as_array().expect("attributes") {
            let mut keys: Vec<&str> = a.as_object().unwrap().keys().map(String::as_str).collect();
            let subs = a.get("subAttributes");
            keys.retain(|k| *k != "subAttributes" && *k != "referenceTypes");
            keys.sort_unstable();
            assert_eq!(keys, ATTR_KEYS, "{prefix}: {a}");
            let name = a["name"].as_str().unwrap();
            let flag = |k: &str| if a[k].as_bool().unwrap() { "1" } else { "0" };
            let text = |k: &str| a[k].as_str().unwrap().to_owned();
            let mut line = format!(
                "{prefix}.{name} {} {} {} {} {} {} {}",
                text("type"),
                flag("multiValued"),
                flag("required"),
                flag("caseExact"),
                text("mutability"),
                text("returned"),
                text("uniqueness"),
            );
            if let Some(types) = a.get("referenceTypes") {
                let types: Vec<&str> = types
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap())
                    .collect();
                line += &format!(" to={}", types.join(","));
            }
            if text("description") != name {
                line += &format!(" {:?}", text("description"));
            }
            out.push(line);
            if let Some(subs) = subs {
                attribute_lines(&format!("{prefix}.{name}"), subs, out);
            }
        }
    }

    /// FNV-1a: a stable fingerprint of the whole document, which catches
    /// what the lines do not show (envelopes, key order).
    fn fingerprint(text: &str) -> u64 {
        text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    #[test]
    fn required_attributes_follow_the_rule_set() {
        let strict = Advertised {
            rules: crate::RuleSet::SEED,
            ..CFG
        };
        let user = &schemas(&strict)[0];
        let attr = |name: &str| {
            user["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["name"] == name)
                .unwrap()
                .clone()
        };
        assert_eq!(attr("emails")["required"], true);
        let family = attr("name")["subAttributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "familyName")
            .unwrap()
            .clone();
        assert_eq!(family["required"], true);
    }

    #[test]
    fn schemas_snapshot() {
        let all = schemas(&CFG);
        let mut lines = Vec::new();
        for s in &all {
            let name = s["name"].as_str().unwrap();
            lines.push(format!(
                "{name} {} {}",
                s["id"].as_str().unwrap(),
                s["meta"]["location"].as_str().unwrap()
            ));
            attribute_lines(name, &s["attributes"], &mut lines);
        }
        let expected: Vec<&str> = EXPECTED
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines, expected);
        let text = serde_json::to_string(&all).unwrap();
        assert_eq!(
            (text.len(), fingerprint(&text)),
            (21982, 0xf5aa_4ece_dcdc_63e0)
        );
    }
}
