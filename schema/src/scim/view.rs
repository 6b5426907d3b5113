//! Users, groups and assets as SCIM shows them: a list of top-level
//! attributes that borrow the stored object, serialised by serde.
//!
//! Why a view: a list page used to build a `serde_json::Value` tree per
//! resource and then serialise it, which was half the time of a page of a
//! million users. A view is serialised straight into the answer's bytes
//! instead; [`View::to_value`] turns the same view into the `Value` that
//! filters, sorting and PATCH work on, so there is one rendering whichever
//! way it goes. Attributes and sub-attributes come out in key order, the
//! order a `Value` object (a sorted map) serialises in, so both ways give
//! the same bytes.

use std::borrow::Cow;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use super::mapping::{
    ASSET_SCHEMA, ENTERPRISE_SCHEMA, GROUP_SCHEMA, IDSYNC_GROUP_SCHEMA, IDSYNC_USER_SCHEMA,
    USER_SCHEMA,
};
use crate::{Asset, AssetState, Group, Meta, Status, User};

/// One top-level attribute: its name and value.
pub type Entry<'a> = (Cow<'a, str>, Attr<'a>);

/// One resource: its top-level attributes, sorted by name.
#[derive(Debug, Clone)]
pub struct View<'a> {
    attrs: Vec<Entry<'a>>,
}

/// The value of one top-level attribute.
#[derive(Debug, Clone)]
pub enum Attr<'a> {
    Str(&'a str),
    Bool(bool),
    Id(Uuid),
    Strings(&'a [String]),
    /// A value kept as sent.
    Json(&'a Value),
    /// A value built apart: a kept value changed on the way out, or an
    /// attribute a projection cut.
    Owned(Value),
    /// The core schemas, and the enterprise extension's when it is there.
    Schemas(&'static [&'static str], Option<&'static str>),
    /// `name` with the typed parts only (kept parts make it [`Attr::Owned`]).
    Name {
        given: Option<&'a str>,
        family: Option<&'a str>,
    },
    /// The one address idsync keeps, as the primary work address.
    Emails(&'a str),
    /// A user's groups or a group's members: `(id, display)`.
    Refs {
        refs: &'a [(Uuid, String)],
        base: &'a str,
        endpoint: &'static str,
        kind: &'static str,
    },
    UserExtension(&'a User),
    GroupExtension(&'a Group),
    AssetState(AssetState),
    Meta {
        resource_type: &'static str,
        meta: &'a Meta,
        base: &'a str,
        endpoint: &'static str,
        id: Uuid,
    },
}

impl<'a> View<'a> {
    /// A view of `attrs`, in any order.
    pub fn new(mut attrs: Vec<Entry<'a>>) -> Self {
        // Stable: of two attributes with one name, the later wins, as when
        // they were inserted into a map one after the other.
        attrs.sort_by(|a, b| a.0.cmp(&b.0));
        attrs.dedup_by(|later, earlier| {
            let same = later.0 == earlier.0;
            if same {
                std::mem::swap(later, earlier);
            }
            same
        });
        Self { attrs }
    }

    /// The top-level attributes, in key order.
    pub fn into_attrs(self) -> Vec<Entry<'a>> {
        self.attrs
    }

    /// The view as a JSON value.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a view serialises")
    }
}

impl Attr<'_> {
    /// The value as JSON.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("an attribute serialises")
    }
}

impl Serialize for View<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.attrs.len()))?;
        for (k, v) in &self.attrs {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// A timestamp as RFC 3339, without a `String` in between.
struct Time<'a>(&'a OffsetDateTime);

/// `t` as RFC 3339 in UTC, as the `time` crate writes it (the fraction
/// without its trailing zeros, none for a whole second), when it is a UTC
/// time of a four-digit year: every time idsync stores. A list page
/// writes two per resource, and `time`'s general formatter was a twentieth
/// of the page.
fn utc_rfc3339(t: &OffsetDateTime, buf: &mut [u8; 64]) -> Option<usize> {
    if !t.offset().is_utc() || !(0..=9999).contains(&t.year()) {
        return None;
    }
    let two = |b: &mut [u8], v: u8| {
        b[0] = b'0' + v / 10;
        b[1] = b'0' + v % 10;
    };
    let year = t.year() as u16;
    for (i, d) in [1000, 100, 10, 1].into_iter().enumerate() {
        buf[i] = b'0' + (year / d % 10) as u8;
    }
    buf[4] = b'-';
    two(&mut buf[5..], u8::from(t.month()));
    buf[7] = b'-';
    two(&mut buf[8..], t.day());
    buf[10] = b'T';
    two(&mut buf[11..], t.hour());
    buf[13] = b':';
    two(&mut buf[14..], t.minute());
    buf[16] = b':';
    two(&mut buf[17..], t.second());
    let mut len = 19;
    let mut nanos = t.nanosecond();
    if nanos > 0 {
        buf[len] = b'.';
        let mut digits = 9;
        while nanos.is_multiple_of(10) {
            nanos /= 10;
            digits -= 1;
        }
        for i in (0..digits).rev() {
            buf[len + 1 + i] = b'0' + (nanos % 10) as u8;
            nanos /= 10;
        }
        len += 1 + digits;
    }
    buf[len] = b'Z';
    Some(len + 1)
}

impl Serialize for Time<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // An RFC 3339 time is at most 35 bytes (nanoseconds and an offset).
        let mut buf = [0u8; 64];
        if let Some(len) = utc_rfc3339(self.0, &mut buf) {
            return s.serialize_str(std::str::from_utf8(&buf[..len]).unwrap_or_default());
        }
        let mut rest = &mut buf[..];
        if self.0.format_into(&mut rest, &Rfc3339).is_err() {
            // A year the format cannot show: empty, as it always was.
            return s.serialize_str("");
        }
        // The length is what is left unwritten: the count `format_into`
        // returns leaves out the digits of a fraction of a second (time
        // 0.3.55).
        let written = 64 - rest.len();
        s.serialize_str(std::str::from_utf8(&buf[..written]).unwrap_or_default())
    }
}

impl Serialize for Attr<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Attr::Str(v) => s.serialize_str(v),
            Attr::AssetState(state) => state.serialize(s),
            Attr::Bool(b) => s.serialize_bool(*b),
            Attr::Id(id) => id.serialize(s),
            Attr::Strings(v) => v.serialize(s),
            Attr::Json(v) => v.serialize(s),
            Attr::Owned(v) => v.serialize(s),
            Attr::Schemas(core, extension) => {
                let mut seq = s.serialize_seq(Some(core.len() + extension.is_some() as usize))?;
                for schema in core.iter().chain(extension) {
                    seq.serialize_element(schema)?;
                }
                seq.end()
            }
            Attr::Name { given, family } => {
                let mut m = s.serialize_map(None)?;
                if let Some(f) = family {
                    m.serialize_entry("familyName", f)?;
                }
                if let Some(g) = given {
                    m.serialize_entry("givenName", g)?;
                }
                m.end()
            }
            Attr::Emails(mail) => {
                let mut seq = s.serialize_seq(Some(1))?;
                seq.serialize_element(&Email(mail))?;
                seq.end()
            }
            Attr::Refs {
                refs,
                base,
                endpoint,
                kind,
            } => {
                let mut seq = s.serialize_seq(Some(refs.len()))?;
                for (id, display) in refs.iter() {
                    seq.serialize_element(&Ref {
                        id: *id,
                        display,
                        base,
                        endpoint,
                        kind,
                    })?;
                }
                seq.end()
            }
            Attr::UserExtension(u) => {
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("activationMail", &u.activation_mail)?;
                m.serialize_entry("applications", &u.applications)?;
                m.serialize_entry("roles", &u.roles)?;
                m.serialize_entry("source", u.source.as_str())?;
                const CUSTOM: [&str; 5] = [
                    "spCustomAttribute1",
                    "spCustomAttribute2",
                    "spCustomAttribute3",
                    "spCustomAttribute4",
                    "spCustomAttribute5",
                ];
                for (k, v) in CUSTOM.iter().zip(&u.sp_custom_attributes) {
                    if let Some(v) = v {
                        m.serialize_entry(k, v)?;
                    }
                }
                if let Some(v) = &u.valid_from {
                    m.serialize_entry("validFrom", v)?;
                }
                if let Some(v) = &u.valid_to {
                    m.serialize_entry("validTo", v)?;
                }
                m.end()
            }
            Attr::GroupExtension(g) => {
                let mut m = s.serialize_map(None)?;
                if let Some(d) = &g.description {
                    m.serialize_entry("description", d)?;
                }
                m.serialize_entry("source", g.source.as_str())?;
                m.end()
            }
            Attr::Meta {
                resource_type,
                meta,
                base,
                endpoint,
                id,
            } => {
                let mut m = s.serialize_map(Some(5))?;
                m.serialize_entry("created", &Time(&meta.created))?;
                m.serialize_entry("lastModified", &Time(&meta.modified))?;
                m.serialize_entry("location", &Location(base, endpoint, *id))?;
                m.serialize_entry("resourceType", resource_type)?;
                m.serialize_entry("version", &ETag(meta.version))?;
                m.end()
            }
        }
    }
}

/// `{base}/{endpoint}/{id}`, written where it goes.
struct Location<'a>(&'a str, &'a str, Uuid);

impl Serialize for Location<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Put together by hand: through `fmt`, two of these per resource
        // were a few percent of a list page.
        let (base, endpoint) = (self.0, self.1);
        let mut id = Uuid::encode_buffer();
        let id = self.2.hyphenated().encode_lower(&mut id);
        let mut url = String::with_capacity(base.len() + endpoint.len() + id.len() + 2);
        for part in [base, "/", endpoint, "/", id] {
            url.push_str(part);
        }
        s.serialize_str(&url)
    }
}

/// The weak ETag of a version, as [`super::mapping::etag`] spells it.
struct ETag(u64);

impl Serialize for ETag {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("W/\"{}\"", self.0))
    }
}

struct Email<'a>(&'a str);

impl Serialize for Email<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("primary", &true)?;
        m.serialize_entry("type", "work")?;
        m.serialize_entry("value", self.0)?;
        m.end()
    }
}

/// One group of a user, or one member of a group.
struct Ref<'a> {
    id: Uuid,
    display: &'a str,
    base: &'a str,
    endpoint: &'a str,
    kind: &'a str,
}

impl Serialize for Ref<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("$ref", &Location(self.base, self.endpoint, self.id))?;
        m.serialize_entry("display", self.display)?;
        m.serialize_entry("type", self.kind)?;
        m.serialize_entry("value", &self.id)?;
        m.end()
    }
}

fn opt<'a>(attrs: &mut Vec<Entry<'a>>, key: &'static str, v: &'a Option<String>) {
    if let Some(v) = v {
        attrs.push((key.into(), Attr::Str(v)));
    }
}

/// A user as SCIM shows it; `groups` are (id, displayName) of its groups.
/// What a client sent beyond the typed fields is merged in (`name`'s other
/// parts, the enterprise extension and its schema); should it name a typed
/// attribute, it wins, as it always did.
pub fn user<'a>(u: &'a User, groups: &'a [(Uuid, String)], base: &'a str) -> View<'a> {
    let mut attrs = Vec::with_capacity(16 + u.scim.len());
    let extension = u.scim.get(ENTERPRISE_SCHEMA).is_some_and(Value::is_object);
    attrs.push((
        "schemas".into(),
        Attr::Schemas(
            &[USER_SCHEMA, IDSYNC_USER_SCHEMA],
            extension.then_some(ENTERPRISE_SCHEMA),
        ),
    ));
    attrs.push(("id".into(), Attr::Id(u.id)));
    opt(&mut attrs, "externalId", &u.external_id);
    // A CSV user may have no loginName; it always has a mail.
    let user_name = u.login_name.as_ref().or(u.mail.as_ref());
    attrs.push((
        "userName".into(),
        Attr::Str(user_name.map_or("", String::as_str)),
    ));
    let name_parts = u.scim.get("name").and_then(Value::as_object);
    attrs.push(("name".into(), name(u, name_parts)));
    opt(&mut attrs, "displayName", &u.display_name);
    attrs.push(("active".into(), Attr::Bool(u.status == Status::Active)));
    opt(&mut attrs, "preferredLanguage", &u.language);
    if let Some(mail) = &u.mail {
        attrs.push(("emails".into(), Attr::Emails(mail)));
    }
    if !groups.is_empty() {
        attrs.push((
            "groups".into(),
            Attr::Refs {
                refs: groups,
                base,
                endpoint: "Groups",
                kind: "direct",
            },
        ));
    }
    attrs.push((IDSYNC_USER_SCHEMA.into(), Attr::UserExtension(u)));
    for (key, value) in &u.scim {
        match (key.as_str(), value) {
            ("name", Value::Object(_)) => {} // merged into `name`
            (ENTERPRISE_SCHEMA, Value::Object(ext)) => {
                attrs.push((ENTERPRISE_SCHEMA.into(), enterprise(value, ext, base)));
            }
            (key, value) => attrs.push((key.into(), Attr::Json(value))),
        }
    }
    attrs.push(("meta".into(), meta("User", &u.meta, base, "Users", u.id)));
    View::new(attrs)
}

fn meta<'a>(
    resource_type: &'static str,
    meta: &'a Meta,
    base: &'a str,
    endpoint: &'static str,
    id: Uuid,
) -> Attr<'a> {
    Attr::Meta {
        resource_type,
        meta,
        base,
        endpoint,
        id,
    }
}

/// `name`: the typed parts, and the parts kept as sent (`middleName`, …).
fn name<'a>(u: &'a User, kept: Option<&'a Map<String, Value>>) -> Attr<'a> {
    let (given, family) = (u.first_name.as_deref(), u.last_name.as_deref());
    let Some(kept) = kept else {
        return Attr::Name { given, family };
    };
    let mut name = Map::new();
    for (k, v) in [("givenName", given), ("familyName", family)] {
        if let Some(v) = v {
            name.insert(k.into(), Value::String(v.into()));
        }
    }
    name.extend(kept.iter().map(|(k, v)| (k.clone(), v.clone())));
    Attr::Owned(Value::Object(name))
}

/// The enterprise extension as kept (`value`), with where its manager is.
fn enterprise<'a>(value: &'a Value, ext: &Map<String, Value>, base: &str) -> Attr<'a> {
    let manager = ext
        .get("manager")
        .and_then(Value::as_object)
        .and_then(|m| m.get("value"))
        .and_then(Value::as_str);
    let Some(id) = manager else {
        return Attr::Json(value);
    };
    let mut ext = ext.clone();
    if let Some(Value::Object(m)) = ext.get_mut("manager") {
        m.insert("$ref".into(), Value::String(format!("{base}/Users/{id}")));
    }
    Attr::Owned(Value::Object(ext))
}

/// A group as SCIM shows it; `members` are (id, display) of its users
/// (`None`: the attribute was not asked for and is left out).
pub fn group<'a>(g: &'a Group, members: Option<&'a [(Uuid, String)]>, base: &'a str) -> View<'a> {
    let mut attrs = Vec::with_capacity(8);
    attrs.push((
        "schemas".into(),
        Attr::Schemas(&[GROUP_SCHEMA, IDSYNC_GROUP_SCHEMA], None),
    ));
    attrs.push(("id".into(), Attr::Id(g.id)));
    opt(&mut attrs, "externalId", &g.external_id);
    attrs.push(("displayName".into(), Attr::Str(&g.display_name)));
    if let Some(members) = members {
        attrs.push((
            "members".into(),
            Attr::Refs {
                refs: members,
                base,
                endpoint: "Users",
                kind: "User",
            },
        ));
    }
    attrs.push((IDSYNC_GROUP_SCHEMA.into(), Attr::GroupExtension(g)));
    attrs.push(("meta".into(), meta("Group", &g.meta, base, "Groups", g.id)));
    View::new(attrs)
}

/// An asset as SCIM shows it.
pub fn asset<'a>(a: &'a Asset, base: &'a str) -> View<'a> {
    let mut attrs = Vec::with_capacity(16);
    attrs.push(("schemas".into(), Attr::Schemas(&[ASSET_SCHEMA], None)));
    attrs.push(("id".into(), Attr::Id(a.id)));
    attrs.push(("name".into(), Attr::Str(&a.name)));
    opt(&mut attrs, "description", &a.description);
    opt(&mut attrs, "type", &a.asset_type);
    opt(&mut attrs, "owner", &a.owner);
    opt(&mut attrs, "certificateProfile", &a.certificate_profile);
    opt(&mut attrs, "organization", &a.organization);
    opt(&mut attrs, "country", &a.country);
    attrs.push(("dnsNames".into(), Attr::Strings(&a.dns_names)));
    attrs.push(("ipAddresses".into(), Attr::Strings(&a.ip_addresses)));
    opt(&mut attrs, "sid", &a.sid);
    opt(&mut attrs, "externalId", &a.external_id);
    attrs.push(("state".into(), Attr::AssetState(a.state)));
    attrs.push(("source".into(), Attr::Str(a.source.as_str())));
    attrs.push(("meta".into(), meta("Asset", &a.meta, base, "Assets", a.id)));
    View::new(attrs)
}

#[cfg(test)]
mod tests {
    //! Objects with every attribute set, rendered: the bytes are those the
    //! mapping wrote before views (a `Value` built key by key), and the
    //! view's own bytes are its `Value`'s.
    use serde_json::json;
    use time::macros::datetime;

    use super::*;
    use crate::{ActivationMail, Source};

    #[test]
    fn utc_times_are_written_as_the_time_crate_writes_them() {
        let mut times = vec![
            datetime!(2026-01-02 03:04:05 UTC),
            datetime!(2026-01-02 03:04:05.678 UTC),
            datetime!(0001-12-31 23:59:59.000000001 UTC),
            datetime!(9999-12-31 23:59:59.999999999 UTC),
            datetime!(2026-02-03 04:05:06.1 UTC),
        ];
        // Every count of fraction digits, with zeros inside and at the end.
        let mut nanos = 0u32;
        for step in [
            7u32, 70, 700, 7_000, 70_000, 700_000, 7_000_000, 70_000_000, 100,
        ] {
            nanos = (nanos + step * 13) % 1_000_000_000;
            times.push(times[0].replace_nanosecond(nanos).unwrap());
        }
        for t in times {
            let mut buf = [0u8; 64];
            let len = utc_rfc3339(&t, &mut buf).expect("a UTC time");
            assert_eq!(
                std::str::from_utf8(&buf[..len]).unwrap(),
                t.format(&Rfc3339).unwrap()
            );
        }
        let offset = datetime!(2026-01-02 03:04:05 +01:00);
        assert_eq!(utc_rfc3339(&offset, &mut [0; 64]), None, "time writes it");
    }

    const BASE: &str = "https://idp.example.org/scim/v2";

    fn meta() -> Meta {
        Meta {
            created: datetime!(2026-01-02 03:04:05.678 UTC),
            modified: datetime!(2026-02-03 04:05:06 UTC),
            version: 7,
            changes: vec![3, 9],
        }
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + n)
    }

    /// Both ways to the bytes, which must agree and be `expected`.
    fn renders_as(view: View<'_>, expected: &str) {
        let written = serde_json::to_string(&view).unwrap();
        let via_value = serde_json::to_string(&view.to_value()).unwrap();
        assert_eq!(written, via_value, "written straight and through a Value");
        assert_eq!(written, expected);
    }

    fn full_user() -> User {
        let body = json!({
            "userName": "ann",
            "name": {"givenName": "Ann", "familyName": "Smith", "middleName": "B.", "honorificPrefix": "Dr."},
            "title": "Engineer", "nickName": "Annie", "timezone": "Europe/Berlin",
            "phoneNumbers": [{"value": "+49 30 1", "type": "work", "primary": true}, {"value": "+49 170 2", "type": "mobile"}],
            "addresses": [{"streetAddress": "Hauptstr. 1", "locality": "Berlin", "type": "work"}],
            "entitlements": [{"value": "vpn"}],
            ENTERPRISE_SCHEMA: {"employeeNumber": "701984", "department": "IT \"Ops\"",
                "manager": {"value": id(9).to_string()}},
        });
        User {
            id: id(1),
            login_name: Some("ann".into()),
            mail: Some("ann@x.org".into()),
            first_name: Some("Ann".into()),
            last_name: Some("Smith".into()),
            display_name: Some("Ann Smith".into()),
            status: Status::Inactive,
            language: Some("de".into()),
            valid_from: Some("20240101000000Z".into()),
            valid_to: Some("20301231235959Z".into()),
            sp_custom_attributes: [1, 2, 3, 4, 5].map(|i| Some(format!("c{i}"))),
            groups: vec![id(2), id(3)],
            roles: vec!["Operator".into(), "Auditor".into()],
            applications: vec!["mail".into()],
            source: Source::Scim,
            activation_mail: ActivationMail::Sent,
            activations: Default::default(),
            external_id: Some("E1".into()),
            scim: super::super::attributes::kept(&body, IDSYNC_USER_SCHEMA).unwrap(),
            meta: meta(),
        }
    }

    #[test]
    fn a_user_with_everything_and_with_little() {
        let u = full_user();
        let groups = [
            (id(2), "Staff".to_owned()),
            (id(3), "Ops \u{e9}".to_owned()),
        ];
        renders_as(
            user(&u, &groups, BASE),
            r#"{"active":false,"addresses":[{"locality":"Berlin","streetAddress":"Hauptstr. 1","type":"work"}],"displayName":"Ann Smith","emails":[{"primary":true,"type":"work","value":"ann@x.org"}],"entitlements":[{"value":"vpn"}],"externalId":"E1","groups":[{"$ref":"https://idp.example.org/scim/v2/Groups/01900000-0000-7000-8000-000000000002","display":"Staff","type":"direct","value":"01900000-0000-7000-8000-000000000002"},{"$ref":"https://idp.example.org/scim/v2/Groups/01900000-0000-7000-8000-000000000003","display":"Ops é","type":"direct","value":"01900000-0000-7000-8000-000000000003"}],"id":"01900000-0000-7000-8000-000000000001","meta":{"created":"2026-01-02T03:04:05.678Z","lastModified":"2026-02-03T04:05:06Z","location":"https://idp.example.org/scim/v2/Users/01900000-0000-7000-8000-000000000001","resourceType":"User","version":"W/\"7\""},"name":{"familyName":"Smith","givenName":"Ann","honorificPrefix":"Dr.","middleName":"B."},"nickName":"Annie","phoneNumbers":[{"primary":true,"type":"work","value":"+49 30 1"},{"type":"mobile","value":"+49 170 2"}],"preferredLanguage":"de","schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:idsync:params:scim:schemas:extension:idsync:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],"timezone":"Europe/Berlin","title":"Engineer","urn:idsync:params:scim:schemas:extension:idsync:2.0:User":{"activationMail":"sent","applications":["mail"],"roles":["Operator","Auditor"],"source":"SCIM","spCustomAttribute1":"c1","spCustomAttribute2":"c2","spCustomAttribute3":"c3","spCustomAttribute4":"c4","spCustomAttribute5":"c5","validFrom":"20240101000000Z","validTo":"20301231235959Z"},"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"IT \"Ops\"","employeeNumber":"701984","manager":{"$ref":"https://idp.example.org/scim/v2/Users/01900000-0000-7000-8000-000000000009","value":"01900000-0000-7000-8000-000000000009"}},"userName":"ann"}"#,
        );
        let bare = User {
            login_name: None,
            first_name: None,
            last_name: None,
            display_name: None,
            language: None,
            valid_from: None,
            valid_to: None,
            sp_custom_attributes: Default::default(),
            roles: vec![],
            applications: vec![],
            external_id: None,
            scim: Default::default(),
            ..u
        };
        renders_as(
            user(&bare, &[], BASE),
            r#"{"active":false,"emails":[{"primary":true,"type":"work","value":"ann@x.org"}],"id":"01900000-0000-7000-8000-000000000001","meta":{"created":"2026-01-02T03:04:05.678Z","lastModified":"2026-02-03T04:05:06Z","location":"https://idp.example.org/scim/v2/Users/01900000-0000-7000-8000-000000000001","resourceType":"User","version":"W/\"7\""},"name":{},"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:idsync:params:scim:schemas:extension:idsync:2.0:User"],"urn:idsync:params:scim:schemas:extension:idsync:2.0:User":{"activationMail":"sent","applications":[],"roles":[],"source":"SCIM"},"userName":"ann@x.org"}"#,
        );
    }

    #[test]
    fn groups_with_and_without_members() {
        let g = Group {
            id: id(2),
            display_name: "Staff".into(),
            description: Some("All of them".into()),
            external_id: Some("G1".into()),
            source: Source::Csv,
            meta: meta(),
        };
        let members = [
            (id(1), "Ann Smith".to_owned()),
            (id(4), "bob@x.org".to_owned()),
        ];
        renders_as(
            group(&g, Some(&members), BASE),
            r#"{"displayName":"Staff","externalId":"G1","id":"01900000-0000-7000-8000-000000000002","members":[{"$ref":"https://idp.example.org/scim/v2/Users/01900000-0000-7000-8000-000000000001","display":"Ann Smith","type":"User","value":"01900000-0000-7000-8000-000000000001"},{"$ref":"https://idp.example.org/scim/v2/Users/01900000-0000-7000-8000-000000000004","display":"bob@x.org","type":"User","value":"01900000-0000-7000-8000-000000000004"}],"meta":{"created":"2026-01-02T03:04:05.678Z","lastModified":"2026-02-03T04:05:06Z","location":"https://idp.example.org/scim/v2/Groups/01900000-0000-7000-8000-000000000002","resourceType":"Group","version":"W/\"7\""},"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group","urn:idsync:params:scim:schemas:extension:idsync:2.0:Group"],"urn:idsync:params:scim:schemas:extension:idsync:2.0:Group":{"description":"All of them","source":"CSV"}}"#,
        );
        renders_as(
            group(&g, Some(&[]), BASE),
            r#"{"displayName":"Staff","externalId":"G1","id":"01900000-0000-7000-8000-000000000002","members":[],"meta":{"created":"2026-01-02T03:04:05.678Z","lastModified":"2026-02-03T04:05:06Z","location":"https://idp.example.org/scim/v2/Groups/01900000-0000-7000-8000-000000000002","resourceType":"Group","version":"W/\"7\""},"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group","urn:idsync:params:scim:schemas:extension:idsync:2.0:Group"],"urn:idsync:params:scim:schemas:extension:idsync:2.0:Group":{"description":"All of them","source":"CSV"}}"#,
        );
        let plain = Group {
            description: None,
            external_id: None,
            ..g
        };
        renders_as(
            group(&plain, None, BASE),
            r#"{"displayName":"Staff","id":"01900000-0000-7000-8000-000000000002","meta":{"created":"2026-01-02T03:04:05.678Z","lastModified":"2026-02-03T04:05:06Z","location":"https://idp.example.org/scim/v2/Groups/01900000-0000-7000-8000-000000000002","resourceType":"Group","version":"W/\"7\""},"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group","urn:idsync:params:scim:schemas:extension:idsync:2.0:Group"],"urn:idsync:params:scim:schemas:extension:idsync:2.0:Group":{"source":"CSV"}}"#,
        );
    }

    #[test]
    fn an_asset_with_everything() {
        let a = Asset {
            id: id(5),
            name: "srv1".into(),
            description: Some("d".into()),
            asset_type: Some("server".into()),
            owner: Some("ann".into()),
            certificate_profile: Some("tls".into()),
            organization: Some("O".into()),
            country: Some("DE".into()),
            dns_names: vec!["a.x.org".into(), "b.x.org".into()],
            ip_addresses: vec!["10.0.0.1".into()],
            sid: Some("S-1".into()),
            external_id: Some("A1".into()),
            state: AssetState::Active,
            source: Source::Api,
            meta: meta(),
        };
        renders_as(
            asset(&a, BASE),
            r#"{"certificateProfile":"tls","country":"DE","description":"d","dnsNames":["a.x.org","b.x.org"],"externalId":"A1","id":"01900000-0000-7000-8000-000000000005","ipAddresses":["10.0.0.1"],"meta":{"created":"2026-01-02T03:04:05.678Z","lastModified":"2026-02-03T04:05:06Z","location":"https://idp.example.org/scim/v2/Assets/01900000-0000-7000-8000-000000000005","resourceType":"Asset","version":"W/\"7\""},"name":"srv1","organization":"O","owner":"ann","schemas":["urn:idsync:params:scim:schemas:core:2.0:Asset"],"sid":"S-1","source":"API","state":"active","type":"server"}"#,
        );
    }
}
