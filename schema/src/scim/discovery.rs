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
