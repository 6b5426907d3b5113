//! What a source says about one object: the validated input that every
//! source (a CSV row, a SCIM request, an API call) produces and the reconciler
//! applies.
//!
//! [`Field`] keeps apart "this source says nothing about the attribute" (a
//! column that is not in the file) from "this source says the attribute is
//! empty" (an empty cell, or a SCIM PUT without it): only the second clears.

use uuid::Uuid;

use crate::model::{Asset, Group, Status, User};
use crate::rules::{
    check_country, check_hostname, check_ip, check_language, check_mail, check_string_within,
    parse_zulu, ExcludeLists, Rule, RuleSet, UserRules, Violation, MAX_GROUPS,
};

/// Longest description or SID (free text the documents put no limit on).
pub const MAX_LONG_STRING_CHARS: usize = 256;

/// One optional attribute as a source states it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Field<T> {
    /// The source does not mention the attribute: leave it as it is.
    #[default]
    Absent,
    /// The source says the attribute is empty.
    Clear,
    /// The source gives a value.
    Set(T),
}

impl<T> Field<T> {
    /// The value, when one is given.
    pub fn value(&self) -> Option<&T> {
        match self {
            Field::Set(v) => Some(v),
            _ => None,
        }
    }

    /// Write the stated value into `target`; `Absent` leaves it alone.
    pub fn apply(self, target: &mut Option<T>) {
        match self {
            Field::Absent => {}
            Field::Clear => *target = None,
            Field::Set(v) => *target = Some(v),
        }
    }
}

impl<T: Default> Field<Vec<T>> {
    /// For list attributes an empty list is the cleared value.
    pub fn apply_list(self, target: &mut Vec<T>) {
        match self {
            Field::Absent => {}
            Field::Clear => target.clear(),
            Field::Set(v) => *target = v,
        }
    }
}

fn check_field_within(
    attribute: &str,
    field: &Field<String>,
    max: usize,
    exclude: &ExcludeLists,
) -> Result<(), Violation> {
    match field {
        Field::Set(v) => check_string_within(attribute, v, max, exclude),
        _ => Ok(()),
    }
}

/// A value the source's rule set may require: given and not empty, or
/// absent when it is not required.
fn required_field(attribute: &str, field: &Field<String>, required: bool) -> Result<(), Violation> {
    let given = matches!(field, Field::Set(v) if !v.is_empty());
    if required && !given {
        return Err(Violation::new(attribute, "", Rule::Mandatory));
    }
    Ok(())
}

/// Free text: longer, and line breaks allowed, but no other control
/// characters.
fn check_long(attribute: &str, field: &Field<String>) -> Result<(), Violation> {
    let Field::Set(v) = field else { return Ok(()) };
    if v.chars().count() > MAX_LONG_STRING_CHARS {
        let max = MAX_LONG_STRING_CHARS;
        return Err(Violation::new(attribute, v, Rule::TooLong { max }));
    }
    if v.chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n'))
    {
        return Err(Violation::new(attribute, v, Rule::ControlCharacter));
    }
    Ok(())
}

fn mandatory(attribute: &str, value: &str) -> Result<(), Violation> {
    if value.is_empty() {
        Err(Violation::new(attribute, value, Rule::Mandatory))
    } else {
        Ok(())
    }
}

/// A user as a source states it. Whether `mail` and `lastName` are
/// mandatory is the source's rule set's to say (seed 003: both, for CSV;
/// RFC 7643: neither, for SCIM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInput {
    pub status: Status,
    pub mail: Field<String>,
    pub last_name: Field<String>,
    pub login_name: Field<String>,
    pub first_name: Field<String>,
    pub display_name: Field<String>,
    pub language: Field<String>,
    pub valid_from: Field<String>,
    pub valid_to: Field<String>,
    pub sp_custom_attributes: [Field<String>; 5],
    /// Group display names; the reconciler resolves them to ids.
    pub groups: Field<Vec<String>>,
    pub external_id: Field<String>,
    /// The SCIM attributes kept as sent ([`crate::User::scim`]): stated
    /// whole by a SCIM body, absent from a CSV row.
    pub scim: Field<serde_json::Map<String, serde_json::Value>>,
}

/// Names of the custom attributes, in order.
pub const SP_CUSTOM_ATTRIBUTES: [&str; 5] = [
    "spCustomAttribute1",
    "spCustomAttribute2",
    "spCustomAttribute3",
    "spCustomAttribute4",
    "spCustomAttribute5",
];

impl UserInput {
    /// A user with seed 003's three mandatory values and nothing else
    /// stated.
    pub fn new(status: Status, mail: impl Into<String>, last_name: impl Into<String>) -> Self {
        Self {
            status,
            mail: Field::Set(mail.into()),
            last_name: Field::Set(last_name.into()),
            login_name: Field::Absent,
            first_name: Field::Absent,
            display_name: Field::Absent,
            language: Field::Absent,
            valid_from: Field::Absent,
            valid_to: Field::Absent,
            sp_custom_attributes: Default::default(),
            groups: Field::Absent,
            external_id: Field::Absent,
            scim: Field::Absent,
        }
    }

    /// Every value rule that needs no look-up in the store (uniqueness and
    /// group existence are the reconciler's), with the source's rule set.
    pub fn validate(&self, rules: &UserRules) -> Result<(), Violation> {
        let ex = &rules.exclude;
        let set = &rules.set;
        required_field("mail", &self.mail, set.require_mail)?;
        if let Field::Set(mail) = &self.mail {
            check_string_within("mail", mail, set.max_chars, ex)?;
            check_mail("mail", mail)?;
        }
        required_field("lastName", &self.last_name, set.require_last_name)?;
        let max = set.max_chars;
        check_field_within("lastName", &self.last_name, max, ex)?;
        check_field_within("loginName", &self.login_name, max, ex)?;
        check_field_within("firstName", &self.first_name, max, ex)?;
        check_field_within("displayName", &self.display_name, max, ex)?;
        check_field_within("externalId", &self.external_id, max, ex)?;
        for (name, field) in SP_CUSTOM_ATTRIBUTES.iter().zip(&self.sp_custom_attributes) {
            check_field_within(name, field, max, ex)?;
        }
        if let Field::Set(lang) = &self.language {
            check_language(lang)?;
        }
        let from = match &self.valid_from {
            Field::Set(v) => Some(parse_zulu("validFrom", v)?),
            _ => None,
        };
        let to = match &self.valid_to {
            Field::Set(v) => Some(parse_zulu("validTo", v)?),
            _ => None,
        };
        if let (Some(from), Some(to), Field::Set(shown)) = (from, to, &self.valid_from) {
            if from > to {
                return Err(Violation::new("validFrom", shown, Rule::ValidityOrder));
            }
        }
        if let Field::Set(groups) = &self.groups {
            if groups.len() > MAX_GROUPS {
                return Err(Violation::new(
                    "groups",
                    &groups.len().to_string(),
                    Rule::TooManyGroups { max: MAX_GROUPS },
                ));
            }
            for g in groups {
                check_string_within("groups", g, max, &ExcludeLists::default())?;
            }
        }
        Ok(())
    }

    /// Write what this input states onto `user`. `groups` is the resolved
    /// form of [`UserInput::groups`] (`None`: leave the groups alone).
    pub fn apply_to(self, user: &mut User, groups: Option<Vec<Uuid>>) {
        user.status = self.status;
        self.mail.apply(&mut user.mail);
        self.last_name.apply(&mut user.last_name);
        self.login_name.apply(&mut user.login_name);
        self.first_name.apply(&mut user.first_name);
        self.display_name.apply(&mut user.display_name);
        self.language.apply(&mut user.language);
        self.valid_from.apply(&mut user.valid_from);
        self.valid_to.apply(&mut user.valid_to);
        self.external_id.apply(&mut user.external_id);
        match self.scim {
            Field::Absent => {}
            Field::Clear => user.scim.clear(),
            Field::Set(kept) => user.scim = kept,
        }
        for (field, slot) in self
            .sp_custom_attributes
            .into_iter()
            .zip(user.sp_custom_attributes.iter_mut())
        {
            field.apply(slot);
        }
        if let Some(groups) = groups {
            user.groups = groups;
        }
    }
}

/// A group as a source states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInput {
    pub display_name: String,
    pub description: Field<String>,
    pub external_id: Field<String>,
    /// Members by loginName or mail; the reconciler resolves them.
    pub members: Field<Vec<String>>,
}

impl GroupInput {
    /// A group with only its name stated.
    pub fn new(display_name: impl Into<String>) -> Self {
        Self {
            display_name: display_name.into(),
            description: Field::Absent,
            external_id: Field::Absent,
            members: Field::Absent,
        }
    }

    /// The rules that need no look-up, with the source's lengths (`set`).
    pub fn validate(&self, set: &RuleSet) -> Result<(), Violation> {
        let (none, max) = (ExcludeLists::default(), set.max_chars);
        mandatory("displayName", &self.display_name)?;
        check_string_within("displayName", &self.display_name, max, &none)?;
        check_long("description", &self.description)?;
        check_field_within("externalId", &self.external_id, max, &none)?;
        Ok(())
    }

    /// Write what this input states onto `group` (members live on users).
    pub fn apply_to(self, group: &mut Group) {
        group.display_name = self.display_name;
        self.description.apply(&mut group.description);
        self.external_id.apply(&mut group.external_id);
    }
}

/// An asset as a source states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetInput {
    /// An explicit id: matches the asset by id instead of by name.
    pub id: Option<Uuid>,
    pub name: String,
    pub description: Field<String>,
    pub asset_type: Field<String>,
    pub owner: Field<String>,
    pub certificate_profile: Field<String>,
    pub organization: Field<String>,
    pub country: Field<String>,
    pub dns_names: Field<Vec<String>>,
    pub ip_addresses: Field<Vec<String>>,
    pub sid: Field<String>,
    pub external_id: Field<String>,
}

impl AssetInput {
    /// An asset with only its name stated.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            id: None,
            name: name.into(),
            description: Field::Absent,
            asset_type: Field::Absent,
            owner: Field::Absent,
            certificate_profile: Field::Absent,
            organization: Field::Absent,
            country: Field::Absent,
            dns_names: Field::Absent,
            ip_addresses: Field::Absent,
            sid: Field::Absent,
            external_id: Field::Absent,
        }
    }

    /// The rules that need no look-up, with the source's lengths (`set`).
    pub fn validate(&self, set: &RuleSet) -> Result<(), Violation> {
        let (none, max) = (ExcludeLists::default(), set.max_chars);
        mandatory("name", &self.name)?;
        check_string_within("name", &self.name, max, &none)?;
        check_long("description", &self.description)?;
        check_field_within("type", &self.asset_type, max, &none)?;
        check_field_within("owner", &self.owner, max, &none)?;
        check_field_within("certificateProfile", &self.certificate_profile, max, &none)?;
        check_field_within("organization", &self.organization, max, &none)?;
        if let Field::Set(c) = &self.country {
            check_country(c)?;
        }
        if let Field::Set(names) = &self.dns_names {
            for n in names {
                check_hostname("dnsNames", n)?;
            }
        }
        if let Field::Set(ips) = &self.ip_addresses {
            for ip in ips {
                check_ip("ipAddresses", ip)?;
            }
        }
        check_long("sid", &self.sid)?;
        check_field_within("externalId", &self.external_id, max, &none)?;
        Ok(())
    }

    /// Write what this input states onto `asset` (the state is the
    /// reconciler's: it depends on the profiles in the store).
    pub fn apply_to(self, asset: &mut Asset) {
        asset.name = self.name;
        self.description.apply(&mut asset.description);
        self.asset_type.apply(&mut asset.asset_type);
        self.owner.apply(&mut asset.owner);
        self.certificate_profile
            .apply(&mut asset.certificate_profile);
        self.organization.apply(&mut asset.organization);
        self.country.apply(&mut asset.country);
        self.dns_names.apply_list(&mut asset.dns_names);
        self.ip_addresses.apply_list(&mut asset.ip_addresses);
        self.sid.apply(&mut asset.sid);
        self.external_id.apply(&mut asset.external_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Meta;

    fn rules() -> UserRules {
        UserRules::default()
    }

    fn ok_input() -> UserInput {
        UserInput::new(Status::Active, "ann@example.org", "Smith")
    }

    #[test]
    fn mandatory_values() {
        let mut u = ok_input();
        u.last_name = Field::Set(String::new());
        assert_eq!(u.validate(&rules()).unwrap_err().rule, Rule::Mandatory);
        let mut u = ok_input();
        u.mail = Field::Clear;
        let v = u.validate(&rules()).unwrap_err();
        assert_eq!((v.attribute.as_str(), v.rule), ("mail", Rule::Mandatory));
    }

    #[test]
    fn the_rule_set_decides_what_is_required_and_how_long() {
        let scim = UserRules {
            set: crate::RuleSet::RFC7643,
            ..UserRules::default()
        };
        let mut u = ok_input();
        u.mail = Field::Clear;
        u.last_name = Field::Clear;
        assert!(u.validate(&scim).is_ok(), "RFC 7643 requires neither");
        let long = format!("{}@example.org", "a".repeat(60));
        u.mail = Field::Set(long.clone());
        assert!(u.validate(&scim).is_ok(), "a 72-character address");
        let mut csv = ok_input();
        csv.mail = Field::Set(long);
        assert_eq!(
            csv.validate(&rules()).unwrap_err().rule,
            Rule::TooLong { max: 64 },
            "seed 003: 64 characters"
        );
        u.display_name = Field::Set("x".repeat(300));
        assert_eq!(
            u.validate(&scim).unwrap_err().rule,
            Rule::TooLong { max: 256 }
        );
        let huge = format!("{}@{}.org", "a".repeat(60), "b".repeat(200));
        u.display_name = Field::Clear;
        u.mail = Field::Set(huge);
        assert!(u.validate(&scim).is_err(), "RFC 5321 bounds an address");
    }

    #[test]
    fn validity_period_must_be_ordered() {
        let mut u = ok_input();
        u.valid_from = Field::Set("20250101000000Z".into());
        u.valid_to = Field::Set("20240101000000Z".into());
        assert_eq!(u.validate(&rules()).unwrap_err().rule, Rule::ValidityOrder);
        u.valid_to = Field::Set("20250101000000Z".into());
        assert!(u.validate(&rules()).is_ok(), "equal instants are fine");
    }

    #[test]
    fn at_most_500_groups() {
        let mut u = ok_input();
        u.groups = Field::Set((0..500).map(|i| format!("g{i}")).collect());
        assert!(u.validate(&rules()).is_ok());
        u.groups = Field::Set((0..501).map(|i| format!("g{i}")).collect());
        assert_eq!(
            u.validate(&rules()).unwrap_err().rule,
            Rule::TooManyGroups { max: 500 }
        );
    }

    #[test]
    fn exclude_lists_apply_to_the_named_attributes() {
        let r = UserRules {
            exclude: ExcludeLists::new([("firstName", vec!["Admin"])]),
            ..UserRules::default()
        };
        let mut u = ok_input();
        u.first_name = Field::Set("admin".into());
        assert_eq!(u.validate(&r).unwrap_err().rule, Rule::Excluded);
    }

    #[test]
    fn absent_keeps_clear_empties_set_replaces() {
        let now = time::OffsetDateTime::UNIX_EPOCH;
        let mut user = User {
            first_name: Some("Ann".into()),
            last_name: Some("Smith".into()),
            display_name: Some("Ann Smith".into()),
            groups: vec![Uuid::max()],
            meta: Meta::new(now),
            ..User::sample("ann", "ann@example.org")
        };
        let mut input = UserInput::new(Status::Inactive, "ANN@example.org", "Smith");
        input.first_name = Field::Clear;
        input.language = Field::Set("de".into());
        input.apply_to(&mut user, None);
        assert_eq!(user.login_name.as_deref(), Some("ann"), "absent keeps");
        assert_eq!(user.first_name, None, "clear empties");
        assert_eq!(user.language.as_deref(), Some("de"));
        assert_eq!(user.status, Status::Inactive);
        assert_eq!(
            user.groups,
            vec![Uuid::max()],
            "unresolved groups are left alone"
        );
    }

    #[test]
    fn asset_rules() {
        let mut a = AssetInput::new("web-1");
        a.dns_names = Field::Set(vec!["web-1.example.org".into(), "bad_name".into()]);
        assert_eq!(a.validate(&RuleSet::SEED).unwrap_err().rule, Rule::Hostname);
        a.dns_names = Field::Set(vec![]);
        a.country = Field::Set("Sweden".into());
        assert_eq!(a.validate(&RuleSet::SEED).unwrap_err().rule, Rule::Country);
        a.country = Field::Clear;
        a.ip_addresses = Field::Set(vec!["300.1.1.1".into()]);
        assert_eq!(
            a.validate(&RuleSet::SEED).unwrap_err().rule,
            Rule::IpAddress
        );
        assert_eq!(
            AssetInput::new("")
                .validate(&RuleSet::SEED)
                .unwrap_err()
                .rule,
            Rule::Mandatory
        );
    }
}
