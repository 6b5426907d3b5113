//! End-to-end tests of the SCIM 2.0 server: a real HTTP client against the
//! real `idsync serve`, one daemon per test. Identity-provider request
//! sequences (Entra ID, Okta) are replayed as their documentation shows
//! them.

mod scim_env;

use std::collections::BTreeSet;

use idsync_tests::wait_until;
use scim_env::{encode, user, Scim, READER, WAIT};
use serde_json::{json, Value};

fn ids(list: &Value) -> BTreeSet<String> {
    list["Resources"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn discovery_is_truthful_and_needs_a_token() {
    let s = Scim::start("max_results = 50\nbulk_max_operations = 7", "");
    let spc = s.get("/ServiceProviderConfig");
    assert_eq!(spc.status, 200);
    assert_eq!(spc.content_type.as_deref(), Some("application/scim+json"));
    let b = &spc.body;
    assert_eq!(b["patch"]["supported"], true);
    assert_eq!(b["filter"]["maxResults"], 50);
    assert_eq!(b["bulk"]["maxOperations"], 7);
    assert_eq!(b["changePassword"]["supported"], false);
    assert_eq!(b["etag"]["supported"], true);
    assert_eq!(b["sort"]["supported"], true);
    assert_eq!(b["authenticationSchemes"][0]["type"], "oauthbearertoken");

    let rt = s.get("/ResourceTypes");
    let names: BTreeSet<&str> = rt.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["Asset", "Group", "User"]));
    assert_eq!(s.get("/ResourceTypes/Asset").body["endpoint"], "/Assets");
    let schemas = s.get("/Schemas");
    assert_eq!(schemas.body["totalResults"], 6);
    let user_schema = s.get("/Schemas/urn:ietf:params:scim:schemas:core:2.0:User");
    assert_eq!(user_schema.status, 200);
    assert!(user_schema.body["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["name"] == "userName" && a["uniqueness"] == "server"));
    assert_eq!(
        s.get("/Schemas/urn:idsync:params:scim:schemas:core:2.0:Asset")
            .status,
        200
    );
    assert_eq!(s.get("/Schemas/urn:nope").status, 404);

    // No token: 401 with a challenge and a SCIM error body.
    let r = s.call_with("GET", "/Users", None, None, &[]);
    assert_eq!(r.status, 401);
    assert!(r.www_authenticate.unwrap().starts_with("Bearer"));
    assert_eq!(
        r.body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    let r = s.call_with("GET", "/Users", None, Some("idsync_wrong"), &[]);
    assert_eq!(r.status, 401);
    // A read-only token reads but may not write.
    let r = s.call_with("GET", "/Users", None, Some(READER), &[]);
    assert_eq!(r.status, 200);
    let body = user("ann", "ann@example.org", "Smith");
    let r = s.call_with("POST", "/Users", Some(&body), Some(READER), &[]);
    assert_eq!(r.status, 403);
    // application/json is accepted as well.
    let r = s.call_with(
        "POST",
        "/Users/.search",
        Some(&json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]})),
        Some(READER),
        &[],
    );
    assert_eq!(r.status, 200);
    assert_eq!(s.get("/Nope").status, 404);
}

#[test]
fn user_lifecycle_with_etags_and_errors() {
    let s = Scim::start("", "");
    let mut body = user("ann", "ann@example.org", "Smith");
    body["externalId"] = json!("ext-ann");
    body["preferredLanguage"] = json!("de");
    body["urn:idsync:params:scim:schemas:extension:idsync:2.0:User"] = json!({
        "validFrom": "20240101000000Z", "spCustomAttribute2": "c2", "roles": ["ignored"]
    });
    let created = s.post("/Users", body.clone());
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.etag.as_deref(), Some("W/\"1\""));
    assert_eq!(created.body["meta"]["version"], "W/\"1\"");
    assert_eq!(
        created.location.as_deref(),
        Some(format!("{}/Users/{id}", s.base).as_str()),
        "an absolute URI"
    );
    let ext = &created.body["urn:idsync:params:scim:schemas:extension:idsync:2.0:User"];
    assert_eq!(ext["source"], "SCIM");
    assert_eq!(ext["spCustomAttribute2"], "c2");
    assert_eq!(
        ext["roles"],
        json!(["Self-Service", "Operator", "Approval"]),
        "roles are read-only"
    );

    // Conflicts: the same userName, mail or externalId.
    for clash in [
        user("ann", "other@example.org", "X"),
        user("other", "ANN@example.org", "X"),
        {
            let mut b = user("other2", "other2@example.org", "X");
            b["externalId"] = json!("ext-ann");
            b
        },
    ] {
        let r = s.post("/Users", clash);
        assert_eq!(r.status, 409, "{}", r.body);
        assert_eq!(r.body["scimType"], "uniqueness");
    }
    // The same rules as CSV: a bad language, a bad date, a missing lastName.
    let mut bad = user("bo", "bo@example.org", "B");
    bad["preferredLanguage"] = json!("english");
    let r = s.post("/Users", bad);
    assert_eq!(
        (r.status, r.body["scimType"].as_str()),
        (400, Some("invalidValue"))
    );
    assert!(
        r.body["detail"].as_str().unwrap().contains("language"),
        "{}",
        r.body
    );
    let r = s.post(
        "/Users",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "x@y.org"}),
    );
    assert_eq!(r.status, 201, "RFC 7643: no familyName needed: {}", r.body);
    assert_eq!(r.body["emails"][0]["value"], "x@y.org", "userName as mail");
    let r = s.post("/Users", json!({"not": "scim"}));
    assert_eq!(
        (r.status, r.body["scimType"].as_str()),
        (400, Some("invalidSyntax"))
    );
    let r = s.call_with("POST", "/Users", None, Some(scim_env::WRITER), &[]);
    assert_eq!(r.status, 400);

    // GET, If-None-Match.
    let got = s.get(&format!("/Users/{id}"));
    assert_eq!(got.status, 200);
    assert_eq!(got.body["userName"], "ann");
    assert_eq!(got.body["emails"][0]["value"], "ann@example.org");
    let r = s.call_with(
        "GET",
        &format!("/Users/{id}"),
        None,
        Some(READER),
        &[("If-None-Match", "W/\"1\"")],
    );
    assert_eq!(r.status, 304);
    assert_eq!(s.get("/Users/not-a-uuid").status, 404);
    assert_eq!(
        s.get("/Users/0190a000-0000-7000-8000-000000000000").status,
        404
    );

    // PUT replaces: what the body leaves out is cleared; readOnly ignored.
    let mut put = got.body.clone();
    put.as_object_mut().unwrap().remove("meta");
    put.as_object_mut().unwrap().remove("preferredLanguage");
    put["displayName"] = json!("Ann S");
    put["name"]["familyName"] = json!("Smith-Jones");
    let r = s.call_with(
        "PUT",
        &format!("/Users/{id}"),
        Some(&put),
        Some(scim_env::WRITER),
        &[("If-Match", "W/\"1\"")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.etag.as_deref(), Some("W/\"2\""));
    assert_eq!(r.body["displayName"], "Ann S");
    assert!(r.body.get("preferredLanguage").is_none());
    // A stale ETag: 412, nothing changes.
    let r = s.call_with(
        "PUT",
        &format!("/Users/{id}"),
        Some(&put),
        Some(scim_env::WRITER),
        &[("If-Match", "W/\"1\"")],
    );
    assert_eq!(r.status, 412);
    // `id` is read-only: a PUT's other id is ignored (RFC 7644 §3.5.1).
    let mut wrong_id = put.clone();
    wrong_id["id"] = json!("0190a000-0000-7000-8000-000000000000");
    let r = s.put(&format!("/Users/{id}"), wrong_id);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["id"], id.as_str(), "the URL names the object");
    assert_eq!(r.etag.as_deref(), Some("W/\"2\""), "nothing else changed");

    // PATCH: 200 with the resource.
    let r = s.patch(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "path": "active", "value": false}]),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["active"], false);
    assert_eq!(r.etag.as_deref(), Some("W/\"3\""));
    let r = s.patch(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "path": "emails[type eq \"work\"", "value": "x"}]),
    );
    assert_eq!(
        (r.status, r.body["scimType"].as_str()),
        (400, Some("invalidPath"))
    );
    let r = s.patch(&format!("/Users/{id}"), json!([{"op": "remove"}]));
    assert_eq!(
        (r.status, r.body["scimType"].as_str()),
        (400, Some("noTarget"))
    );
    let r = s.patch(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "path": "preferredLanguage", "value": "Klingon"}]),
    );
    assert_eq!(
        (r.status, r.body["scimType"].as_str()),
        (400, Some("invalidValue"))
    );
    // An unchanged PATCH keeps the version.
    let r = s.patch(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "path": "active", "value": false}]),
    );
    assert_eq!(r.etag.as_deref(), Some("W/\"3\""));

    // DELETE: 204, then 404.
    let r = s.call_with(
        "DELETE",
        &format!("/Users/{id}"),
        None,
        Some(scim_env::WRITER),
        &[("If-Match", "W/\"2\"")],
    );
    assert_eq!(r.status, 412);
    let r = s.delete(&format!("/Users/{id}"));
    assert_eq!(r.status, 204);
    assert_eq!(r.body, Value::Null);
    assert_eq!(s.get(&format!("/Users/{id}")).status, 404);
    assert_eq!(s.delete(&format!("/Users/{id}")).status, 404);
    // The mail is free again.
    assert_eq!(
        s.post("/Users", user("ann", "ann@example.org", "Smith"))
            .status,
        201
    );
}

#[test]
fn queries_filters_sorting_paging_projection() {
    let s = Scim::start(
        "max_results = 20\nmax_filter_chars = 200\nmax_filter_depth = 4",
        "",
    );
    let mut all = Vec::new();
    for (i, (login, given, lang, active)) in [
        ("alice", "Alice", "en", true),
        ("bob", "Bob", "de", false),
        ("carol", "Carol", "en", true),
        ("dave", "Dave", "fr", true),
        ("erin", "Erin", "de", false),
    ]
    .into_iter()
    .enumerate()
    {
        let mut b = user(
            login,
            &format!("{login}@corp{}.example", i % 2),
            &format!("Last{i}"),
        );
        b["name"]["givenName"] = json!(given);
        b["preferredLanguage"] = json!(lang);
        b["active"] = json!(active);
        b["externalId"] = json!(format!("EXT-{i}"));
        let r = s.post("/Users", b);
        assert_eq!(r.status, 201, "{}", r.body);
        all.push(r.body["id"].as_str().unwrap().to_owned());
    }
    let id_of = |i: usize| all[i].clone();
    let set = |idx: &[usize]| idx.iter().map(|i| id_of(*i)).collect::<BTreeSet<_>>();
    for (f, want) in [
        (r#"userName eq "ALICE""#, set(&[0])),
        (r#"userName EQ "nobody""#, set(&[])),
        (r#"emails.value eq "bob@corp1.example""#, set(&[1])),
        (r#"emails eq "bob@corp1.example""#, set(&[1])),
        (r#"externalId eq "EXT-2""#, set(&[2])),
        (r#"externalId eq "ext-2""#, set(&[])),
        (r#"userName ne "alice""#, set(&[1, 2, 3, 4])),
        (r#"userName co "ro""#, set(&[2])),
        (r#"userName sw "D""#, set(&[3])),
        (r#"userName ew "e""#, set(&[0, 3])),
        (r#"name.familyName gt "Last2""#, set(&[3, 4])),
        (r#"name.familyName ge "Last2""#, set(&[2, 3, 4])),
        (r#"name.familyName lt "Last1""#, set(&[0])),
        (r#"name.familyName le "Last1""#, set(&[0, 1])),
        ("displayName pr", set(&[])),
        ("name.givenName pr", set(&[0, 1, 2, 3, 4])),
        (r#"active eq false"#, set(&[1, 4])),
        (
            r#"preferredLanguage eq "de" and active eq false"#,
            set(&[1, 4]),
        ),
        (
            r#"preferredLanguage eq "fr" or userName eq "alice""#,
            set(&[0, 3]),
        ),
        (r#"not (preferredLanguage eq "de")"#, set(&[0, 2, 3])),
        (
            r#"(userName eq "alice" or userName eq "bob") and active eq true"#,
            set(&[0]),
        ),
        (
            r#"emails[type eq "work" and value co "@corp1"]"#,
            set(&[1, 3]),
        ),
        (
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "carol""#,
            set(&[2]),
        ),
        (
            r#"meta.created gt "2000-01-01T00:00:00Z""#,
            set(&[0, 1, 2, 3, 4]),
        ),
        (r#"id eq "not-an-id""#, set(&[])),
    ] {
        let r = s.filter("Users", f);
        assert_eq!(r.status, 200, "{f}: {}", r.body);
        assert_eq!(ids(&r.body), want, "{f}");
        assert_eq!(r.body["totalResults"], want.len(), "{f}");
    }
    let r = s.filter("Users", &format!(r#"id eq "{}""#, id_of(4)));
    assert_eq!(ids(&r.body), set(&[4]));

    // Bad filters: invalidFilter; too long; too deep.
    for f in ["userName zz \"a\"", "(userName eq \"a\"", "userName eq"] {
        let r = s.filter("Users", f);
        assert_eq!(
            (r.status, r.body["scimType"].as_str()),
            (400, Some("invalidFilter")),
            "{f}"
        );
    }
    let long = format!("userName eq \"{}\"", "a".repeat(300));
    assert_eq!(s.filter("Users", &long).body["scimType"], "invalidFilter");
    let deep = format!("{}active pr{}", "(".repeat(6), ")".repeat(6));
    assert_eq!(s.filter("Users", &deep).body["scimType"], "invalidFilter");

    // Sorting and paging.
    let r = s.get("/Users?sortBy=userName&sortOrder=descending&startIndex=2&count=2");
    let names: Vec<&str> = r.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dave", "carol"]);
    assert_eq!(
        (
            r.body["totalResults"].as_u64(),
            r.body["startIndex"].as_u64(),
            r.body["itemsPerPage"].as_u64()
        ),
        (Some(5), Some(2), Some(2))
    );
    let r = s.get("/Users?sortBy=name.familyName");
    assert_eq!(r.body["Resources"][0]["userName"], "alice");
    let r = s.get("/Users?startIndex=4&count=10");
    assert_eq!(
        ids(&r.body),
        set(&[3, 4]),
        "id (creation) order without sortBy"
    );
    assert_eq!(r.body["totalResults"], 5);
    let r = s.get("/Users?count=0");
    assert_eq!(
        (
            r.body["totalResults"].as_u64(),
            r.body["Resources"].as_array().map(Vec::len)
        ),
        (Some(5), Some(0))
    );
    let r = s.get("/Users?count=1000");
    assert_eq!(
        r.body["itemsPerPage"], 5,
        "count is capped at max_results, 20"
    );
    assert_eq!(s.get("/Users?count=abc").status, 400);
    assert_eq!(s.get("/Users?sortOrder=sideways").status, 400);

    // attributes / excludedAttributes.
    let r = s.get(&format!(
        "/Users?filter={}&attributes=userName,name.givenName",
        encode("userName eq \"bob\"")
    ));
    let u = &r.body["Resources"][0];
    assert_eq!(u["userName"], "bob");
    assert_eq!(u["name"], json!({"givenName": "Bob"}));
    assert!(u.get("emails").is_none() && u.get("id").is_some() && u.get("meta").is_some());
    let r = s.get(&format!(
        "/Users/{}?excludedAttributes=emails,name",
        id_of(0)
    ));
    assert!(r.body.get("emails").is_none() && r.body.get("name").is_none());
    assert_eq!(r.body["userName"], "alice");
    // Two sub-attributes of one multi-valued attribute: both, on every
    // value, on a read and on a list page (rendered from views).
    let both = json!([{"value": "alice@corp0.example", "type": "work"}]);
    let r = s.get(&format!(
        "/Users/{}?attributes=emails.value,emails.type",
        id_of(0)
    ));
    assert_eq!(r.body["emails"], both, "{}", r.body);
    let r = s.get("/Users?startIndex=1&count=1&attributes=emails.value,emails.type");
    assert_eq!(r.body["Resources"][0]["emails"], both, "{}", r.body);

    // POST /.search.
    let r = s.post(
        "/Users/.search",
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": "active eq true", "sortBy": "userName", "startIndex": 1, "count": 2,
            "attributes": ["userName"]
        }),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let names: Vec<&str> = r.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "carol"]);
    assert_eq!(r.body["totalResults"], 3);

    // tooMany: a sort over more matches than max_results.
    for i in 0..20 {
        assert_eq!(
            s.post(
                "/Users",
                user(&format!("bulk{i}"), &format!("bulk{i}@example.org"), "B")
            )
            .status,
            201
        );
    }
    let r = s.get("/Users?sortBy=userName");
    assert_eq!(
        (r.status, r.body["scimType"].as_str()),
        (400, Some("tooMany"))
    );
    // An unsorted page of everything is fine.
    assert_eq!(s.get("/Users").body["totalResults"], 25);
}

#[test]
fn groups_members_and_patch_forms() {
    let s = Scim::start("", "");
    let mut users = Vec::new();
    for n in ["u1", "u2", "u3", "u4"] {
        let r = s.post("/Users", user(n, &format!("{n}@example.org"), "L"));
        users.push(r.body["id"].as_str().unwrap().to_owned());
    }
    let g = s.post(
        "/Groups",
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Admins", "externalId": "g-ext",
            "members": [{"value": users[0]}, {"value": users[1]}, {"value": "not-a-user"}]
        }),
    );
    assert_eq!(g.status, 201, "{}", g.body);
    let gid = g.body["id"].as_str().unwrap().to_owned();
    let member_ids = |v: &Value| -> BTreeSet<String> {
        v["members"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| m["value"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        member_ids(&g.body),
        BTreeSet::from([users[0].clone(), users[1].clone()])
    );
    assert_eq!(
        g.body["members"][0]["$ref"],
        format!("{}/Users/{}", s.base, users[0])
    );
    assert_eq!(s.post("/Groups", json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "admins"})).status, 409);
    // The user shows its group (read-only).
    let u = s.get(&format!("/Users/{}", users[0]));
    assert_eq!(u.body["groups"][0]["value"], gid.as_str());
    assert_eq!(u.body["groups"][0]["display"], "Admins");

    let v1 = g.etag.clone().unwrap();
    // add; remove by filter; remove by value array (Entra); the ETag moves.
    let r = s.patch(
        &format!("/Groups/{gid}"),
        json!([{"op": "Add", "path": "members", "value": [{"value": users[2]}]}]),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_ne!(r.etag.as_ref(), Some(&v1));
    assert_eq!(member_ids(&r.body).len(), 3);
    let r = s.patch(
        &format!("/Groups/{gid}"),
        json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", users[0])}]),
    );
    assert!(!member_ids(&r.body).contains(&users[0]));
    let r = s.patch(
        &format!("/Groups/{gid}"),
        json!([{"op": "Remove", "path": "members", "value": [{"value": users[1]}]}]),
    );
    assert_eq!(member_ids(&r.body), BTreeSet::from([users[2].clone()]));
    // replace members (a partial list replaces the whole list) + rename.
    let r = s.patch(&format!("/Groups/{gid}"), json!([
        {"op": "replace", "path": "members", "value": [{"value": users[3]}, {"value": users[0]}]},
        {"op": "replace", "path": "displayName", "value": "Administrators"}
    ]));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        member_ids(&r.body),
        BTreeSet::from([users[3].clone(), users[0].clone()])
    );
    assert_eq!(r.body["displayName"], "Administrators");
    // Filters from the index, with members left out.
    let r = s.get(&format!(
        "/Groups?filter={}&excludedAttributes=members",
        encode("displayName eq \"administrators\"")
    ));
    assert_eq!(r.body["totalResults"], 1);
    assert!(r.body["Resources"][0].get("members").is_none());
    let r = s.filter("Groups", "externalId eq \"g-ext\"");
    assert_eq!(r.body["totalResults"], 1);
    // A write's answer honours excludedAttributes (large groups).
    let r = s.patch(
        &format!("/Groups/{gid}?excludedAttributes=members"),
        json!([{"op": "add", "path": "members", "value": [{"value": users[1]}]}]),
    );
    assert_eq!(r.status, 200);
    assert!(r.body.get("members").is_none() && r.etag.is_some());
    // remove all members.
    let r = s.patch(
        &format!("/Groups/{gid}"),
        json!([{"op": "remove", "path": "members"}]),
    );
    assert_eq!(member_ids(&r.body).len(), 0);
    // PUT with members.
    let r = s.put(&format!("/Groups/{gid}"), json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Administrators",
        "members": [{"value": users[1]}]
    }));
    assert_eq!(member_ids(&r.body), BTreeSet::from([users[1].clone()]));
    assert!(r.body.get("externalId").is_none(), "PUT cleared externalId");
    // Deleting the group takes it off its members.
    assert_eq!(s.delete(&format!("/Groups/{gid}")).status, 204);
    assert!(s
        .get(&format!("/Users/{}", users[1]))
        .body
        .get("groups")
        .is_none());
    // Deleting a user takes it out of groups.
    let g2 = s.post("/Groups", json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "G2", "members": [{"value": users[2]}]}));
    let g2id = g2.body["id"].as_str().unwrap();
    assert_eq!(s.delete(&format!("/Users/{}", users[2])).status, 204);
    assert_eq!(member_ids(&s.get(&format!("/Groups/{g2id}")).body).len(), 0);
}

#[test]
fn assets_as_a_custom_resource() {
    let s = Scim::start(
        "",
        "[[profiles]]\nname = \"Server P12\"\nprotocol = \"p12\"\nstate = \"active\"",
    );
    let body = json!({
        "schemas": ["urn:idsync:params:scim:schemas:core:2.0:Asset"],
        "name": "web-1", "type": "server", "owner": "ops", "certificateProfile": "Server P12",
        "country": "SE", "dnsNames": ["web-1.example.org"], "ipAddresses": ["10.0.0.1"]
    });
    let r = s.post("/Assets", body.clone());
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.body["state"], "active");
    assert_eq!(s.post("/Assets", body).status, 409);
    let r = s.filter("Assets", "name eq \"WEB-1\"");
    assert_eq!(r.body["totalResults"], 1);
    let r = s.patch(
        &format!("/Assets/{id}"),
        json!([{"op": "replace", "path": "certificateProfile", "value": "missing"}]),
    );
    assert_eq!(r.body["state"], "pending");
    let r = s.patch(
        &format!("/Assets/{id}"),
        json!([{"op": "add", "path": "dnsNames", "value": ["web-1b.example.org"]}]),
    );
    assert_eq!(
        r.body["dnsNames"],
        json!(["web-1.example.org", "web-1b.example.org"])
    );
    let r = s.patch(
        &format!("/Assets/{id}"),
        json!([{"op": "add", "path": "dnsNames", "value": ["bad_name"]}]),
    );
    assert_eq!(
        (r.status, r.body["scimType"].as_str()),
        (400, Some("invalidValue"))
    );
    let r = s.put(
        &format!("/Assets/{id}"),
        json!({"schemas": ["urn:idsync:params:scim:schemas:core:2.0:Asset"], "name": "web-2"}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body["dnsNames"], json!([]));
    assert_eq!(s.delete(&format!("/Assets/{id}")).status, 204);
    assert_eq!(s.get(&format!("/Assets/{id}")).status, 404);
}

#[test]
fn bulk_with_references_and_limits() {
    let s = Scim::start("bulk_max_operations = 4", "");
    let r = s.post("/Bulk", json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "u1", "data": user("bk1", "bk1@example.org", "B")},
            {"method": "POST", "path": "/Groups", "bulkId": "g1", "data": {
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "BG",
                "members": [{"value": "bulkId:u1"}]}},
            {"method": "PATCH", "path": "/Users/bulkId:u1", "data": {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "displayName", "value": "Bulk One"}]}},
            {"method": "POST", "path": "/Users", "bulkId": "dup", "data": user("bk1", "bk1@example.org", "B")}
        ]
    }));
    assert_eq!(r.status, 200, "{}", r.body);
    let ops = r.body["Operations"].as_array().unwrap();
    let statuses: Vec<&str> = ops.iter().map(|o| o["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["201", "201", "200", "409"]);
    assert_eq!(ops[3]["response"]["scimType"], "uniqueness");
    let gid = ops[1]["location"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    let g = s.get(&format!("/Groups/{gid}"));
    assert_eq!(g.body["members"].as_array().unwrap().len(), 1);
    assert_eq!(g.body["members"][0]["display"], "Bulk One");

    // failOnErrors stops after that many errors.
    let r = s.post("/Bulk", json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "failOnErrors": 1,
        "Operations": [
            {"method": "DELETE", "path": "/Users/0190a000-0000-7000-8000-000000000000"},
            {"method": "POST", "path": "/Users", "bulkId": "x", "data": user("bk2", "bk2@example.org", "B")}
        ]
    }));
    assert_eq!(r.body["Operations"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["Operations"][0]["status"], "404");
    // A group may name a user posted after it (RFC 7644 §3.7.1); answers
    // come in the request's order.
    let r = s.post("/Bulk", json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [
            {"method": "POST", "path": "/Groups", "bulkId": "g2", "data": {
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Later",
                "members": [{"value": "bulkId:u3"}]}},
            {"method": "POST", "path": "/Users", "bulkId": "u3", "data": user("bk3", "bk3@example.org", "B")}
        ]
    }));
    let ops = r.body["Operations"].as_array().unwrap();
    let answered: Vec<(&str, &str)> = ops
        .iter()
        .map(|o| (o["bulkId"].as_str().unwrap(), o["status"].as_str().unwrap()))
        .collect();
    assert_eq!(answered, [("g2", "201"), ("u3", "201")], "{}", r.body);
    let g = s.get(
        ops[0]["location"]
            .as_str()
            .unwrap()
            .strip_prefix(&s.base)
            .unwrap(),
    );
    assert_eq!(g.body["members"][0]["display"], "bk3", "{}", g.body);
    // Groups that name each other as members: a circle, 409 for both.
    let group = |name: &str, other: &str| {
        json!({"method": "POST", "path": "/Groups", "bulkId": name, "data": {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name,
            "members": [{"value": format!("bulkId:{other}")}]}})
    };
    let r = s.post(
        "/Bulk",
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "Operations": [group("ca", "cb"), group("cb", "ca")]
        }),
    );
    let statuses: Vec<&str> = r.body["Operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["409", "409"], "{}", r.body);
    // Too many operations: 413.
    let op = json!({"method": "DELETE", "path": "/Users/x"});
    let r = s.post("/Bulk", json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": [op, op, op, op, op]}));
    assert_eq!(r.status, 413);
}

#[test]
fn entra_id_request_sequence() {
    let s = Scim::start("", "");
    // "Test connection": a query for a random id must be an empty 200.
    let r = s.filter(
        "Users",
        "userName eq \"9b6a5e8c-3d2f-4e1a-8c7b-0f1e2d3c4b5a\"",
    );
    assert_eq!((r.status, r.body["totalResults"].as_u64()), (200, Some(0)));
    let r = s.filter("Users", "id eq \"9b6a5e8c-3d2f-4e1a-8c7b-0f1e2d3c4b5a\"");
    assert_eq!((r.status, r.body["totalResults"].as_u64()), (200, Some(0)));
    // Create User.
    let r = s.post("/Users", json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1",
        "active": true,
        "emails": [{"primary": true, "type": "work", "value": "Test_User_fd0ea19b-0777-472c-9f96-4f70d2226f2e@testuser.com"}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "roles": [],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "IT", "employeeNumber": "42"}
    }));
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(s.get(&format!("/Users/{id}")).status, 200);
    let r = s.filter(
        "Users",
        "userName eq \"Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1\"",
    );
    assert_eq!(ids(&r.body), BTreeSet::from([id.clone()]));
    let r = s.filter(
        "Users",
        "externalId eq \"0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef\"",
    );
    assert_eq!(ids(&r.body), BTreeSet::from([id.clone()]));
    let r = s.filter("Users", "userName eq \"non-existent user\"");
    assert_eq!(r.body["totalResults"], 0);
    // Update User [Multi-valued properties].
    let r = s.patch(&format!("/Users/{id}"), json!([
        {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com"},
        {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"}
    ]));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["emails"][0]["value"], "updatedEmail@microsoft.com");
    assert_eq!(r.body["name"]["familyName"], "updatedFamilyName");
    // Update User [Single-valued properties].
    let r = s.patch(&format!("/Users/{id}"), json!([{"op": "Replace", "path": "userName", "value": "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com"}]));
    assert_eq!(
        r.body["userName"],
        "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com"
    );
    // No-path replace with dotted keys; an unknown attribute is ignored.
    let r = s.patch(&format!("/Users/{id}"), json!([
        {"op": "Replace", "value": {"name.givenName": "Newgiven", "displayName": "New Display"}},
        {"op": "Add", "path": "title", "value": "tester"},
        {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "HR"}
    ]));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["name"]["givenName"], "Newgiven");
    assert_eq!(r.body["displayName"], "New Display");
    // Disable User, with the string "False".
    let r = s.patch(
        &format!("/Users/{id}"),
        json!([{"op": "Replace", "path": "active", "value": "False"}]),
    );
    assert_eq!(r.body["active"], false);
    let r = s.patch(
        &format!("/Users/{id}"),
        json!([{"op": "Replace", "path": "active", "value": "True"}]),
    );
    assert_eq!(r.body["active"], true);

    // Groups: create, get without members, find by displayName.
    let r = s.post("/Groups", json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group", "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
        "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
        "displayName": "displayName",
        "meta": {"resourceType": "Group"}
    }));
    assert_eq!(r.status, 201, "{}", r.body);
    let gid = r.body["id"].as_str().unwrap().to_owned();
    let r = s.get(&format!("/Groups/{gid}?excludedAttributes=members"));
    assert!(r.body.get("members").is_none());
    let r = s.get(&format!(
        "/Groups?excludedAttributes=members&filter={}",
        encode("displayName eq \"displayName\"")
    ));
    assert_eq!(ids(&r.body), BTreeSet::from([gid.clone()]));
    // Update Group [Non-member attributes].
    let r = s.patch(&format!("/Groups/{gid}"), json!([{"op": "Replace", "path": "displayName", "value": "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"}]));
    assert_eq!(
        r.body["displayName"],
        "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"
    );
    // Update Group [Add Members], [Remove Members].
    let r = s.patch(
        &format!("/Groups/{gid}"),
        json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": id}]}]),
    );
    assert_eq!(r.body["members"][0]["value"], id.as_str());
    let r = s.patch(
        &format!("/Groups/{gid}"),
        json!([{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": id}]}]),
    );
    assert_eq!(r.body["members"], json!([]));
    // Delete Group, Delete User.
    assert_eq!(s.delete(&format!("/Groups/{gid}")).status, 204);
    assert_eq!(s.delete(&format!("/Users/{id}")).status, 204);
}

#[test]
fn okta_request_sequence_and_delete_deactivates() {
    let s = Scim::start("delete_deactivates = true", "");
    let r = s.get(&format!(
        "/Users?filter={}&startIndex=1&count=100",
        encode("userName eq \"test.user@okta.local\"")
    ));
    assert_eq!((r.status, r.body["totalResults"].as_u64()), (200, Some(0)));
    let create = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "test.user@okta.local",
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": true, "value": "test.user@okta.local", "type": "work"}],
        "displayName": "Test User", "locale": "en-US", "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [], "password": "1mz050nq", "active": true
    });
    let r = s.post("/Users", create.clone());
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.body.get("password").is_none(), "never returned");
    assert_eq!(r.body["preferredLanguage"], "en-US");
    let id = r.body["id"].as_str().unwrap().to_owned();
    let r = s.get(&format!(
        "/Users?filter={}&startIndex=1&count=100",
        encode("userName eq \"test.user@okta.local\"")
    ));
    assert_eq!(ids(&r.body), BTreeSet::from([id.clone()]));
    // Update: PUT of the whole user.
    let mut put = create.clone();
    put["id"] = json!(id);
    put["name"]["givenName"] = json!("Another");
    let r = s.put(&format!("/Users/{id}"), put);
    assert_eq!(
        (r.status, r.body["name"]["givenName"].as_str()),
        (200, Some("Another"))
    );
    // Deactivate: PATCH active false (no path).
    let r = s.patch(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "value": {"active": false}}]),
    );
    assert_eq!((r.status, &r.body["active"]), (200, &json!(false)));
    // Reactivate with PUT active true.
    let r = s.patch(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "value": {"active": true}}]),
    );
    assert_eq!(r.body["active"], true);

    // Groups: create, rename with a no-path replace naming the id, push
    // members, remove one by filter.
    let r = s.post("/Groups", json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Test SCIMv2", "members": []}));
    let gid = r.body["id"].as_str().unwrap().to_owned();
    let r = s.patch(
        &format!("/Groups/{gid}"),
        json!([{"op": "replace", "value": {"id": gid, "displayName": "Test SCIMv2 renamed"}}]),
    );
    assert_eq!(
        (r.status, r.body["displayName"].as_str()),
        (200, Some("Test SCIMv2 renamed"))
    );
    let r = s.patch(&format!("/Groups/{gid}"), json!([{"op": "add", "path": "members", "value": [{"value": id, "display": "test.user@okta.local"}]}]));
    assert_eq!(r.body["members"][0]["value"], id.as_str());
    let r = s.patch(
        &format!("/Groups/{gid}"),
        json!([{"op": "remove", "path": format!("members[value eq \"{id}\"]")}]),
    );
    assert_eq!(r.body["members"], json!([]));
    assert_eq!(s.delete(&format!("/Groups/{gid}")).status, 204);

    // delete_deactivates: DELETE keeps the user, inactive.
    assert_eq!(s.delete(&format!("/Users/{id}")).status, 204);
    let r = s.get(&format!("/Users/{id}"));
    assert_eq!((r.status, &r.body["active"]), (200, &json!(false)));
}

#[test]
fn csv_and_scim_write_the_same_user() {
    let mut s = Scim::start("", "");
    wait_until("the inbox exists", WAIT, || {
        s.env.inbox().join("users").exists()
    });
    s.env.drop_file(
        "users",
        "first.csv",
        "status,loginName,mail,lastName,firstName\nactive,shared,shared@example.org,Csv,One\n",
    );
    wait_until("the first file is processed", WAIT, || {
        s.env.finished("users", "processed").len() == 1
    });
    let r = s.filter("Users", "emails.value eq \"shared@example.org\"");
    assert_eq!(r.body["totalResults"], 1, "{}", r.body);
    let u = &r.body["Resources"][0];
    let id = u["id"].as_str().unwrap().to_owned();
    assert_eq!(u["meta"]["version"], "W/\"1\"");
    assert_eq!(
        u["urn:idsync:params:scim:schemas:extension:idsync:2.0:User"]["source"],
        "CSV"
    );

    // SCIM writes later: it wins, version 2.
    let r = s.patch(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "path": "name.familyName", "value": "Scim"}]),
    );
    assert_eq!(r.etag.as_deref(), Some("W/\"2\""));
    assert_eq!(
        r.body["urn:idsync:params:scim:schemas:extension:idsync:2.0:User"]["source"],
        "SCIM"
    );
    // CSV writes later again: it wins, version 3, the same user.
    s.env.drop_file(
        "users",
        "second.csv",
        "status,mail,lastName\nactive,SHARED@example.org,Csv2\n",
    );
    wait_until("the second file is processed", WAIT, || {
        s.env.finished("users", "processed").len() == 2
    });
    let r = s.get(&format!("/Users/{id}"));
    assert_eq!(r.etag.as_deref(), Some("W/\"3\""));
    assert_eq!(r.body["name"]["familyName"], "Csv2");
    assert_eq!(
        r.body["userName"], "shared",
        "the CSV file left loginName alone"
    );
    // An If-Match with the old ETag now fails.
    let r = s.call_with(
        "PATCH",
        &format!("/Users/{id}"),
        Some(&json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "displayName", "value": "x"}]})),
        Some(scim_env::WRITER),
        &[("If-Match", "W/\"2\"")],
    );
    assert_eq!(r.status, 412);
    s.stop();

    // Each change logged once, in order, with its source and actor.
    let events: Vec<Value> = s
        .env
        .changes()
        .into_iter()
        .filter(|e| e["id"] == id.as_str())
        .collect();
    let summary: Vec<(String, String, u64)> = events
        .iter()
        .map(|e| {
            (
                e["operation"].as_str().unwrap().to_owned(),
                e["source"].as_str().unwrap().to_owned(),
                e["version"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("created".to_owned(), "CSV".to_owned(), 1),
            ("updated".to_owned(), "SCIM".to_owned(), 2),
            ("updated".to_owned(), "CSV".to_owned(), 3),
        ]
    );
    assert_eq!(events[1]["actor"], json!({"kind": "token", "name": "idp"}));
    assert_eq!(events[1]["changed"], json!(["lastName", "source"]));
}

#[test]
fn concurrent_creates_share_commits_and_all_land() {
    let mut s = Scim::start("", "");
    let n_threads = 16;
    let per_thread = 25;
    std::thread::scope(|scope| {
        for t in 0..n_threads {
            let s = &s;
            scope.spawn(move || {
                for i in 0..per_thread {
                    let name = format!("c{t}-{i}");
                    let r = s.post("/Users", user(&name, &format!("{name}@example.org"), "C"));
                    assert_eq!(r.status, 201, "{}", r.body);
                    // A 201 means committed: it is readable at once.
                    let id = r.body["id"].as_str().unwrap();
                    assert_eq!(s.get(&format!("/Users/{id}")).status, 200);
                }
            });
        }
    });
    let r = s.get("/Users?count=0");
    assert_eq!(r.body["totalResults"], n_threads * per_thread);
    s.stop();
    let events = s.env.changes();
    assert_eq!(events.len(), n_threads * per_thread);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64 + 1, "gap-free change log");
    }
}

#[test]
fn limits_base_path_and_sigterm() {
    let mut s = Scim::start("max_body_bytes = 2000\nbase_path = \"/idp/scim\"", "");
    assert!(s.base.ends_with("/idp/scim"));
    let r = s.post("/Users", user("ann", "ann@example.org", "A"));
    assert_eq!(r.status, 201);
    assert!(r
        .location
        .unwrap()
        .starts_with(&format!("{}/Users/", s.base)));
    let other = s.base.replace("/idp/scim", "/scim/v2");
    let r = ureq::get(&format!("{other}/Users"))
        .set("Authorization", &format!("Bearer {}", scim_env::WRITER))
        .call();
    assert!(
        matches!(r, Err(ureq::Error::Status(404, _))),
        "only the configured base path"
    );
    let mut big = user("big", "big@example.org", "B");
    big["displayName"] = json!("x".repeat(3000));
    let r = s.post("/Users", big);
    assert_eq!(r.status, 413);
    let r = s.call_with(
        "POST",
        "/Users",
        None,
        Some(scim_env::WRITER),
        &[("Content-Type", "text/plain")],
    );
    assert_eq!(r.status, 400);
    let r = s.get("/Users/.search");
    assert_eq!(r.status, 404);
    s.stop();
    assert!(s.daemon.log().contains("SCIM listener started"));
}

#[test]
fn tls_when_a_certificate_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = idsync_tests::self_signed_loopback(dir.path());
    let (admin, port) = (idsync_tests::free_port(), idsync_tests::free_port());
    let env = idsync_tests::Env::with_config(&format!(
        "[admin]\nlisten = \"127.0.0.1:{admin}\"\n[scim]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n\
         tls_cert = \"{}\"\ntls_key = \"{}\"\n[[tokens]]\nname = \"idp\"\nsha256 = \"{}\"\nroles = [\"read\"]\n",
        cert.display(),
        key.display(),
        scim_env::sha(scim_env::WRITER)
    ));
    let daemon = env.serve(&[]);
    let curl = |scheme: &str| {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
                "--cacert",
            ])
            .arg(&cert)
            .args(["-H", &format!("Authorization: Bearer {}", scim_env::WRITER)])
            .arg(format!(
                "{scheme}://127.0.0.1:{port}/scim/v2/ServiceProviderConfig"
            ))
            .output()
            .expect("run curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_until("HTTPS answers", WAIT, || curl("https") == "200");
    assert_ne!(
        curl("http"),
        "200",
        "plain HTTP is not served on a TLS listener"
    );
    assert!(daemon.log().contains("tls=true"), "{}", daemon.log());
}

#[test]
fn deep_pages_are_exact_in_id_order() {
    let s = Scim::start("", "");
    wait_until("the inbox exists", WAIT, || {
        s.env.inbox().join("users/processed").exists()
    });
    let mut csv = String::from("status,loginName,mail,lastName\n");
    for i in 0..2500 {
        csv.push_str(&format!("active,p{i:04},p{i:04}@example.org,L\n"));
    }
    s.env.drop_file("users", "many.csv", csv);
    wait_until("the file is processed", WAIT, || {
        s.env.finished("users", "processed").len() == 1
    });
    // The userNames of a page, checking the list's total on the way.
    let page = |total: u64, start: usize, count: usize| -> Vec<String> {
        let r = s.get(&format!(
            "/Users?startIndex={start}&count={count}&attributes=userName"
        ));
        assert_eq!(r.body["totalResults"], total);
        r.body["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["userName"].as_str().unwrap().to_owned())
            .collect()
    };
    let names = |start: usize, count: usize| page(2500, start, count);
    let expect = |from: usize, n: usize| -> Vec<String> {
        (from..from + n).map(|i| format!("p{i:04}")).collect()
    };
    // The first walks learn anchors; the later pages start from them.
    for _ in 0..2 {
        assert_eq!(names(1, 3), expect(0, 3));
        assert_eq!(names(999, 4), expect(998, 4));
        assert_eq!(names(1001, 2), expect(1000, 2));
        assert_eq!(names(2401, 200), expect(2400, 100));
        assert_eq!(names(2000, 1), expect(1999, 1));
        // A page that starts on an anchor's own object (position 1023 is
        // one whatever the spacing) starts with that object.
        assert_eq!(names(1024, 2), expect(1023, 2));
    }
    // Writes move the anchors rather than forget them; pages stay exact.
    let r = s.post("/Users", user("zz", "zz@example.org", "Z"));
    assert_eq!(r.status, 201);
    let r = s.get("/Users?startIndex=2500&count=5&attributes=userName");
    assert_eq!(r.body["totalResults"], 2501);
    let got: Vec<&str> = r.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userName"].as_str().unwrap())
        .collect();
    assert_eq!(got, ["p2499", "zz"]);
    // Deleting p0300 (between two anchors) and p1023 (an
    // anchor's own object) shifts every later position one place down.
    for gone in ["p0300", "p1023"] {
        let r = s.get(&format!(
            "/Users?filter={}",
            encode(&format!("userName eq \"{gone}\""))
        ));
        let id = r.body["Resources"][0]["id"].as_str().unwrap().to_owned();
        assert_eq!(s.delete(&format!("/Users/{id}")).status, 204);
    }
    let shifted = |from: usize, n: usize| -> Vec<String> {
        (from..from + n)
            .map(|i| i + usize::from(i >= 300) + usize::from(i >= 1022))
            .map(|i| format!("p{i:04}"))
            .collect()
    };
    let names = |start: usize, count: usize| page(2499, start, count);
    for _ in 0..2 {
        assert_eq!(names(299, 3), shifted(298, 3));
        assert_eq!(names(1020, 4), shifted(1019, 4));
        assert_eq!(names(2000, 3), shifted(1999, 3));
    }
}

/// Cursor pagination (the IETF SCIM draft): a walk by `nextCursor` sees
/// every user once, in id order, across writes; a cursor the server did
/// not give is `invalidCursor`; a cursor does not go with a filter.
#[test]
fn cursor_pages_see_every_user_once() {
    let s = Scim::start("", "");
    let mut made = Vec::new();
    for i in 0..25 {
        let r = s.post(
            "/Users",
            user(&format!("c{i:02}"), &format!("c{i:02}@example.org"), "C"),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        made.push(r.body["id"].as_str().unwrap().to_owned());
    }
    let spc = s.get("/ServiceProviderConfig");
    assert_eq!(spc.body["pagination"]["cursor"], true);
    assert_eq!(spc.body["pagination"]["index"], true);

    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = s.get(&format!("/Users?cursor={cursor}&count=10&attributes=id"));
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.get("startIndex").is_none());
        for u in r.body["Resources"].as_array().unwrap() {
            seen.push(u["id"].as_str().unwrap().to_owned());
        }
        if seen.len() == 10 {
            // A user created mid-walk has the newest id: the walk meets it.
            let r = s.post("/Users", user("c99", "c99@example.org", "C"));
            made.push(r.body["id"].as_str().unwrap().to_owned());
        }
        match r.body["nextCursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, made, "every user once, in id (creation) order");

    let r = s.get("/Users?cursor=not-a-cursor");
    assert_eq!(
        (r.status, r.body["scimType"].as_str()),
        (400, Some("invalidCursor"))
    );
    let r = s.get(&format!(
        "/Users?cursor=&filter={}",
        encode("userName sw \"c\"")
    ));
    assert_eq!(r.status, 400, "{}", r.body);
    let r = s.post(
        "/Users/.search",
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
               "cursor": "", "count": 30}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["Resources"].as_array().unwrap().len(), 26);
    assert!(r.body.get("nextCursor").is_none());
}

/// RFC 7644 corner cases a generic client meets (issue 14): the
/// unsupported `/Me` and root search answer 501, a PATCH needs at least
/// one operation, and a PATCH whose path is a bare extension URN sets the
/// extension's attributes.
#[test]
fn rfc_7644_unsupported_endpoints_and_patch_forms() {
    let s = Scim::start("", "");
    let r = s.get("/Me");
    assert_eq!(r.status, 501, "{}", r.body);
    let r = s.post(
        "/.search",
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]}),
    );
    assert_eq!(r.status, 501, "{}", r.body);

    let g = s.post(
        "/Groups",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Ops"}),
    );
    let gid = g.body["id"].as_str().unwrap().to_owned();
    let r = s.patch(&format!("/Groups/{gid}"), json!([]));
    assert_eq!(
        (r.status, r.body["scimType"].as_str()),
        (400, Some("invalidSyntax")),
        "{}",
        r.body
    );
    let ext = "urn:idsync:params:scim:schemas:extension:idsync:2.0:Group";
    let r = s.patch(
        &format!("/Groups/{gid}"),
        json!([{"op": "add", "path": ext, "value": {"description": "On call"}}]),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body[ext]["description"], "On call", "{}", r.body);
    let r = s.get(&format!("/Groups/{gid}"));
    assert_eq!(r.body[ext]["description"], "On call", "stored: {}", r.body);
}

/// Issue 14: locations are absolute URIs (from `scim.public_url` when
/// set), references say what they point to, assets carry `externalId` and
/// answer to their schema's URN, and Entra ID's
/// `emails[type eq "work"].value eq "…"` finds its user.
#[test]
fn absolute_locations_reference_types_assets_and_entra_filters() {
    let s = Scim::start("public_url = \"https://idp.example.org\"", "");
    let r = s.post("/Users", user("ann", "ann@example.org", "Smith"));
    let id = r.body["id"].as_str().unwrap().to_owned();
    let want = format!("https://idp.example.org/scim/v2/Users/{id}");
    assert_eq!(r.location.as_deref(), Some(want.as_str()));
    assert_eq!(r.body["meta"]["location"], want.as_str());
    let sp = s.get("/ServiceProviderConfig");
    assert_eq!(
        sp.body["meta"]["location"],
        "https://idp.example.org/scim/v2/ServiceProviderConfig"
    );

    let schemas = s.get("/Schemas");
    let ref_types = |schema: &str, attr: &str| -> Value {
        let all = schemas.body["Resources"].as_array().unwrap();
        let sch = all.iter().find(|x| x["id"] == schema).unwrap();
        let a = sch["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == attr)
            .unwrap();
        a["subAttributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == "$ref")
            .unwrap()["referenceTypes"]
            .clone()
    };
    assert_eq!(
        ref_types("urn:ietf:params:scim:schemas:core:2.0:Group", "members"),
        json!(["User", "Group"])
    );
    assert_eq!(
        ref_types("urn:ietf:params:scim:schemas:core:2.0:User", "groups"),
        json!(["Group"])
    );

    let urn = "urn:idsync:params:scim:schemas:core:2.0:Asset";
    let a = s.post(
        "/Assets",
        json!({"schemas": [urn], "name": "srv1.example.org", "externalId": "cmdb-17", "country": "DE"}),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["externalId"], "cmdb-17");
    let found = s.filter("Assets", r#"externalId eq "cmdb-17""#);
    assert_eq!(found.body["totalResults"], 1, "{}", found.body);
    let found = s.filter("Assets", &format!(r#"{urn}:name eq "srv1.example.org""#));
    assert_eq!(found.body["totalResults"], 1, "{}", found.body);
    let projected = s.get(&format!(
        "/Assets/{}?attributes={urn}:country",
        a.body["id"].as_str().unwrap()
    ));
    assert_eq!(projected.body["country"], "DE", "{}", projected.body);
    assert!(
        projected.body.get("externalId").is_none(),
        "{}",
        projected.body
    );

    let found = s.filter(
        "Users",
        r#"emails[type eq "work"].value eq "ann@example.org""#,
    );
    assert_eq!(found.status, 200, "{}", found.body);
    assert_eq!(found.body["totalResults"], 1, "{}", found.body);
    assert_eq!(found.body["Resources"][0]["id"], id.as_str());
    let none = s.filter(
        "Users",
        r#"emails[type eq "home"].value eq "ann@example.org""#,
    );
    assert_eq!(none.body["totalResults"], 0, "{}", none.body);
}

/// Issue 14: the whole RFC 7643 User schema and the enterprise extension
/// are kept, returned, filtered and sorted on; PATCH changes them in every
/// form identity providers send; what no schema defines is refused.
#[test]
fn core_and_enterprise_attributes_are_kept_and_patched() {
    let s = Scim::start("", "");
    let ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    let boss = s.post("/Users", user("boss", "boss@example.org", "Boss"));
    let boss_id = boss.body["id"].as_str().unwrap().to_owned();
    let mut body = user("ann", "ann@example.org", "Smith");
    body["schemas"] = json!(["urn:ietf:params:scim:schemas:core:2.0:User", ent]);
    body["name"]["middleName"] = json!("B.");
    body["title"] = json!("Engineer");
    body["userType"] = json!("Employee");
    body["phoneNumbers"] = json!([{"value": "+49 30 123", "type": "work", "primary": true},
                                  {"value": "+49 170 456", "type": "mobile"}]);
    body["addresses"] = json!([{"streetAddress": "Hauptstr. 1", "locality": "Berlin",
                                "postalCode": "10115", "country": "DE", "type": "work"}]);
    body[ent] = json!({"employeeNumber": "701984", "department": "IT",
                       "manager": {"value": boss_id}});
    let r = s.post("/Users", body);
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let got = s.get(&format!("/Users/{id}"));
    assert_eq!(got.body["title"], "Engineer");
    assert_eq!(got.body["name"]["middleName"], "B.");
    assert_eq!(got.body["phoneNumbers"][1]["value"], "+49 170 456");
    assert_eq!(got.body["addresses"][0]["locality"], "Berlin");
    assert_eq!(got.body[ent]["department"], "IT");
    assert_eq!(got.body[ent]["manager"]["value"], boss_id.as_str());
    assert_eq!(
        got.body[ent]["manager"]["$ref"],
        format!("{}/Users/{boss_id}", s.base)
    );
    assert!(got.body["schemas"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x == ent));

    // Filter and sort on them.
    let f = s.filter("Users", r#"title eq "Engineer""#);
    assert_eq!(f.body["totalResults"], 1, "{}", f.body);
    let f = s.filter("Users", &format!(r#"{ent}:department eq "IT""#));
    assert_eq!(f.body["totalResults"], 1, "{}", f.body);
    let f = s.filter(
        "Users",
        r#"phoneNumbers[type eq "mobile"].value sw "+49 170""#,
    );
    assert_eq!(f.body["totalResults"], 1, "{}", f.body);
    let sorted = s.get("/Users?sortBy=title&sortOrder=descending");
    assert_eq!(
        sorted.body["Resources"][0]["id"],
        id.as_str(),
        "{}",
        sorted.body
    );

    // PATCH: a value-filter path that creates an element, lower-case
    // `operations`, a manager as a bare id, then removed with "".
    let r = s.patch(
        &format!("/Users/{id}"),
        json!([{"op": "add", "path": "roles[primary eq \"True\"].value", "value": "approver"}]),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["roles"][0]["value"], "approver", "{}", r.body);
    assert_eq!(r.body["roles"][0]["primary"], true, "{}", r.body);
    let r = s.call(
        "PATCH",
        &format!("/Users/{id}"),
        Some(
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "operations": [{"op": "replace", "path": "nickName", "value": "Annie"}]}),
        ),
    );
    assert_eq!(r.body["nickName"], "Annie", "{}", r.body);
    let other = s.post("/Users", user("carl", "carl@example.org", "C"));
    let carl = other.body["id"].as_str().unwrap().to_owned();
    let r = s.patch(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "path": format!("{ent}:manager"), "value": carl}]),
    );
    assert_eq!(r.body[ent]["manager"]["value"], carl.as_str(), "{}", r.body);
    let r = s.patch(
        &format!("/Users/{id}"),
        json!([{"op": "replace", "path": format!("{ent}:manager"), "value": ""}]),
    );
    assert!(r.body[ent].get("manager").is_none(), "{}", r.body);
    assert_eq!(r.body[ent]["department"], "IT", "the rest stays");
    let stored = s.get(&format!("/Users/{id}"));
    assert_eq!(stored.body["nickName"], "Annie");
    assert!(stored.body[ent].get("manager").is_none());

    // Refused: an attribute no schema defines, a manager who is no user.
    let r = s.patch(
        &format!("/Users/{id}"),
        json!([{"op": "add", "path": "favouriteColour", "value": "blue"}]),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["scimType"], "invalidValue", "{}", r.body);
    let r = s.patch(
        &format!("/Users/{id}"),
        json!([{"op": "add", "path": format!("{ent}:manager"),
                "value": "0190a000-0000-7000-8000-000000000000"}]),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let mut bad = user("dora", "dora@example.org", "D");
    bad["shoeSize"] = json!(42);
    assert_eq!(s.post("/Users", bad).status, 400);
}

/// Issue 14: SCIM follows RFC 7643's rules by default (only `userName` is
/// required, strings as long as directories hold them), seed 003's CSV
/// rules when configured, and `/Schemas` says which.
#[test]
fn rule_sets_per_source_and_schemas_tell_the_truth() {
    let family_required = |s: &Scim| {
        let all = s.get("/Schemas/urn:ietf:params:scim:schemas:core:2.0:User");
        let name = all.body["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "name")
            .unwrap()
            .clone();
        let family = name["subAttributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "familyName")
            .unwrap()
            .clone();
        family["required"].as_bool().unwrap()
    };
    let s = Scim::start("", "");
    assert!(!family_required(&s));
    let r = s.post(
        "/Users",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "room-4.12"}),
    );
    assert_eq!(r.status, 201, "userName alone is a user: {}", r.body);
    assert!(r.body.get("emails").is_none(), "{}", r.body);
    let long_mail = format!("{}@service-accounts.example.org", "a".repeat(48));
    assert_eq!(long_mail.len(), 77);
    let r = s.post("/Users", user("svc", &long_mail, "Service"));
    assert_eq!(r.status, 201, "a 77-character address: {}", r.body);
    assert_eq!(r.body["emails"][0]["value"], long_mail.as_str());
    let r = s.post(
        "/Users",
        user("x", &format!("{}@example.org", "a".repeat(250)), "X"),
    );
    assert_eq!(r.status, 400, "RFC 5321 still bounds it: {}", r.body);

    let strict = Scim::start("require = [\"mail\", \"lastName\"]\nmax_chars = 64", "");
    assert!(family_required(&strict));
    let r = strict.post(
        "/Users",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "room-4.12"}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["scimType"], "invalidValue");
    let r = strict.post("/Users", user("svc", &long_mail, "Service"));
    assert_eq!(r.status, 400, "64 characters: {}", r.body);

    // Groups and assets follow the same rule set: the RFC's lengths by
    // default, the configured ones when set.
    let long_name = format!("Facilities - Building 4 - {}", "Floor 12 ".repeat(8));
    assert!(long_name.chars().count() > 64);
    let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": long_name});
    let asset =
        json!({"schemas": ["urn:idsync:params:scim:schemas:core:2.0:Asset"], "name": long_name});
    let r = s.post("/Groups", group.clone());
    assert_eq!(r.status, 201, "a long group name: {}", r.body);
    assert_eq!(r.body["displayName"], long_name.as_str());
    let r = s.post("/Assets", asset.clone());
    assert_eq!(r.status, 201, "a long asset name: {}", r.body);
    assert_eq!(r.body["name"], long_name.as_str());
    for (path, body) in [("/Groups", group), ("/Assets", asset)] {
        let r = strict.post(path, body);
        assert_eq!(r.status, 400, "{path}: 64 characters: {}", r.body);
        assert_eq!(r.body["scimType"], "invalidValue");
    }
}
