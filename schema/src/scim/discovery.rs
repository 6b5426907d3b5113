//! The discovery documents (RFC 7644 §4): `/ServiceProviderConfig`,
//! `/ResourceTypes` and `/Schemas`. They state what this server really does
//! (the limits come from the configuration), because identity providers
//! read them to decide what to send.

use serde_json::{json, Value};

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
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A bearer token from the idsync configuration ([[tokens]]) with the read role (queries) or the write role (changes).",
            "primary": true,
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{}/ServiceProviderConfig", cfg.base_path)},
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
        "meta": {"resourceType": "ResourceType", "location": format!("{}/ResourceTypes/{name}", cfg.base_path)},
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

/// One attribute definition (RFC 7643 §7).
fn attr(
    name: &str,
    kind: &str,
    multi: bool,
    required: bool,
    case_exact: bool,
    mutability: &str,
    uniqueness: &str,
) -> Value {
    json!({
        "name": name,
        "type": kind,
        "multiValued": multi,
        "description": name,
        "required": required,
        "caseExact": case_exact,
        "mutability": mutability,
        "returned": "default",
        "uniqueness": uniqueness,
    })
}

fn s(name: &str) -> Value {
    attr(name, "string", false, false, false, "readWrite", "none")
}

fn ro(name: &str) -> Value {
    attr(name, "string", false, false, false, "readOnly", "none")
}

fn complex(name: &str, multi: bool, mutability: &str, subs: Vec<Value>) -> Value {
    let mut a = attr(name, "complex", multi, false, false, mutability, "none");
    a["subAttributes"] = Value::Array(subs);
    a
}

fn schema(cfg: &Advertised, id: &str, name: &str, attributes: Vec<Value>) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": id,
        "name": name,
        "description": name,
        "attributes": attributes,
        "meta": {"resourceType": "Schema", "location": format!("{}/Schemas/{id}", cfg.base_path)},
    })
}

/// Every schema.
pub fn schemas(cfg: &Advertised) -> Vec<Value> {
    let reference = |name: &str, multi: bool, mutability: &str| {
        complex(
            name,
            multi,
            mutability,
            vec![
                attr("value", "string", false, false, true, "immutable", "none"),
                attr("$ref", "reference", false, false, true, "immutable", "none"),
                attr("display", "string", false, false, false, "readOnly", "none"),
                attr("type", "string", false, false, false, "immutable", "none"),
            ],
        )
    };
    let mut user_name = attr(
        "userName",
        "string",
        false,
        true,
        false,
        "readWrite",
        "server",
    );
    user_name["description"] = json!("idsync's loginName");
    let mut external = attr(
        "externalId",
        "string",
        false,
        false,
        true,
        "readWrite",
        "server",
    );
    external["description"] = json!("the identity provider's id");
    vec![
        schema(
            cfg,
            USER_SCHEMA,
            "User",
            vec![
                user_name,
                external.clone(),
                complex(
                    "name",
                    false,
                    "readWrite",
                    vec![s("givenName"), {
                        let mut f = s("familyName");
                        f["required"] = json!(true);
                        f
                    }],
                ),
                s("displayName"),
                attr(
                    "active",
                    "boolean",
                    false,
                    false,
                    false,
                    "readWrite",
                    "none",
                ),
                s("preferredLanguage"),
                s("locale"),
                complex(
                    "emails",
                    true,
                    "readWrite",
                    vec![
                        attr("value", "string", false, true, false, "readWrite", "server"),
                        s("type"),
                        attr(
                            "primary",
                            "boolean",
                            false,
                            false,
                            false,
                            "readWrite",
                            "none",
                        ),
                    ],
                ),
                reference("groups", true, "readOnly"),
            ],
        ),
        schema(
            cfg,
            ENTERPRISE_SCHEMA,
            "EnterpriseUser",
            vec![
                s("employeeNumber"),
                s("costCenter"),
                s("organization"),
                s("division"),
                s("department"),
                complex(
                    "manager",
                    false,
                    "readWrite",
                    vec![s("value"), s("$ref"), ro("displayName")],
                ),
            ],
        ),
        schema(
            cfg,
            IDSYNC_USER_SCHEMA,
            "IdsyncUser",
            vec![
                s("validFrom"),
                s("validTo"),
                s("spCustomAttribute1"),
                s("spCustomAttribute2"),
                s("spCustomAttribute3"),
                s("spCustomAttribute4"),
                s("spCustomAttribute5"),
                attr("roles", "string", true, false, false, "readOnly", "none"),
                attr(
                    "applications",
                    "string",
                    true,
                    false,
                    false,
                    "readOnly",
                    "none",
                ),
                ro("source"),
                ro("activationMail"),
            ],
        ),
        schema(
            cfg,
            GROUP_SCHEMA,
            "Group",
            vec![
                attr(
                    "displayName",
                    "string",
                    false,
                    true,
                    false,
                    "readWrite",
                    "server",
                ),
                external,
                reference("members", true, "readWrite"),
            ],
        ),
        schema(
            cfg,
            IDSYNC_GROUP_SCHEMA,
            "IdsyncGroup",
            vec![s("description"), ro("source")],
        ),
        schema(
            cfg,
            ASSET_SCHEMA,
            "Asset",
            vec![
                attr("name", "string", false, true, false, "readWrite", "server"),
                s("description"),
                s("type"),
                s("owner"),
                s("certificateProfile"),
                s("organization"),
                s("country"),
                attr(
                    "dnsNames",
                    "string",
                    true,
                    false,
                    false,
                    "readWrite",
                    "none",
                ),
                attr(
                    "ipAddresses",
                    "string",
                    true,
                    false,
                    false,
                    "readWrite",
                    "none",
                ),
                s("sid"),
                ro("state"),
                ro("source"),
            ],
        ),
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
        base_path: "/scim/v2",
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
        User.name.familyName string 0 1 0 readWrite default none
        User.displayName string 0 0 0 readWrite default none
        User.active boolean 0 0 0 readWrite default none
        User.preferredLanguage string 0 0 0 readWrite default none
        User.locale string 0 0 0 readWrite default none
        User.emails complex 1 0 0 readWrite default none
        User.emails.value string 0 1 0 readWrite default server
        User.emails.type string 0 0 0 readWrite default none
        User.emails.primary boolean 0 0 0 readWrite default none
        User.groups complex 1 0 0 readOnly default none
        User.groups.value string 0 0 1 immutable default none
        User.groups.$ref reference 0 0 1 immutable default none
        User.groups.display string 0 0 0 readOnly default none
        User.groups.type string 0 0 0 immutable default none
        EnterpriseUser urn:ietf:params:scim:schemas:extension:enterprise:2.0:User /scim/v2/Schemas/urn:ietf:params:scim:schemas:extension:enterprise:2.0:User
        EnterpriseUser.employeeNumber string 0 0 0 readWrite default none
        EnterpriseUser.costCenter string 0 0 0 readWrite default none
        EnterpriseUser.organization string 0 0 0 readWrite default none
        EnterpriseUser.division string 0 0 0 readWrite default none
        EnterpriseUser.department string 0 0 0 readWrite default none
        EnterpriseUser.manager complex 0 0 0 readWrite default none
        EnterpriseUser.manager.value string 0 0 0 readWrite default none
        EnterpriseUser.manager.$ref string 0 0 0 readWrite default none
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
        Group.members.$ref reference 0 0 1 immutable default none
        Group.members.display string 0 0 0 readOnly default none
        Group.members.type string 0 0 0 immutable default none
        IdsyncGroup urn:idsync:params:scim:schemas:extension:idsync:2.0:Group /scim/v2/Schemas/urn:idsync:params:scim:schemas:extension:idsync:2.0:Group
        IdsyncGroup.description string 0 0 0 readWrite default none
        IdsyncGroup.source string 0 0 0 readOnly default none
        Asset urn:idsync:params:scim:schemas:core:2.0:Asset /scim/v2/Schemas/urn:idsync:params:scim:schemas:core:2.0:Asset
        Asset.name string 0 1 0 readWrite default server
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
            keys.retain(|k| *k != "subAttributes");
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
            (12697, 0x4b9b_18f0_fd65_bee8)
        );
    }
}
