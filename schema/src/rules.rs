//! The value rules of the source documents, written once for every source.
//!
//! Each check returns a [`Violation`] that names the attribute, the offending
//! value (shortened) and the [`Rule`] it broke, so that a CSV report, a SCIM
//! error and an API error all say the same thing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest string attribute the documents allow (seed 003).
pub const MAX_STRING_CHARS: usize = 64;
/// Longest e-mail address (RFC 5321 §4.5.3.1.3: a path of 256 octets,
/// brackets included).
pub const MAX_MAIL_CHARS: usize = 254;
/// Most groups one user may belong to (seed 003).
pub const MAX_GROUPS: usize = 500;
/// How much of an offending value a report repeats.
pub const SHOWN_VALUE_CHARS: usize = 40;

/// A rule a value can break. The `Display` text is what a person reads in a
/// report; the serialised tag is stable for scripts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum Rule {
    /// A mandatory value is empty or its column is missing.
    Mandatory,
    /// Longer than the allowed number of characters.
    TooLong { max: usize },
    /// Not `active` or `inactive`.
    Status,
    /// Not an e-mail address.
    Mail,
    /// Not `XX`, `xx`, `xx-XX` or `xx_XX`.
    Language,
    /// Not `yyyyMMddHHmmssZ`, or not a real date and time.
    ZuluTimestamp,
    /// validFrom after validTo.
    ValidityOrder,
    /// The value is on the attribute's exclude list.
    Excluded,
    /// More groups than allowed.
    TooManyGroups { max: usize },
    /// A group named in the row does not exist.
    UnknownGroup,
    /// A member named in a group row is neither a loginName nor a mail.
    UnknownMember,
    /// The value is already used by another object in the store.
    NotUnique,
    /// The same key appeared in an earlier row of the same file.
    DuplicateInFile { line: u64 },
    /// Not a valid DNS host name.
    Hostname,
    /// Not an IPv4 or IPv6 address.
    IpAddress,
    /// Not a two-letter ISO 3166 country code.
    Country,
    /// Not a UUID.
    Uuid,
    /// Blank space before or after a delimiter (strict mode).
    SurroundingBlank,
    /// A headerless row with the wrong number of fields.
    FieldCount { expected: usize, found: usize },
    /// A control character (other than tab) inside a value.
    ControlCharacter,
    /// The object named does not exist.
    NotFound,
    /// The certificate profile named is inactive.
    ProfileInactive,
    /// Certificate profile settings refused (the reason says which).
    Profile { reason: String },
    /// A request status change the state machine does not allow.
    Transition { from: String },
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Mandatory => write!(f, "is mandatory"),
            Rule::TooLong { max } => write!(f, "must be at most {max} characters"),
            Rule::Status => write!(f, "must be `active` or `inactive`"),
            Rule::Mail => write!(f, "must be an e-mail address"),
            Rule::Language => write!(f, "must be a language code XX, xx, xx-XX or xx_XX"),
            Rule::ZuluTimestamp => {
                write!(f, "must be a real time in Zulu format yyyyMMddHHmmssZ")
            }
            Rule::ValidityOrder => write!(f, "must not be after validTo"),
            Rule::Excluded => write!(f, "is on the exclude list"),
            Rule::TooManyGroups { max } => write!(f, "must name at most {max} groups"),
            Rule::UnknownGroup => write!(f, "names a group that does not exist"),
            Rule::UnknownMember => {
                write!(f, "names a member that is neither a loginName nor a mail")
            }
            Rule::NotUnique => write!(f, "is already used by another object"),
            Rule::DuplicateInFile { line } => write!(f, "repeats the value of line {line}"),
            Rule::Hostname => write!(f, "must be a DNS host name"),
            Rule::IpAddress => write!(f, "must be an IPv4 or IPv6 address"),
            Rule::Country => write!(f, "must be a two-letter country code"),
            Rule::Uuid => write!(f, "must be a UUID"),
            Rule::SurroundingBlank => {
                write!(f, "must not have blanks before or after the delimiter")
            }
            Rule::FieldCount { expected, found } => {
                write!(f, "must have {expected} fields, found {found}")
            }
            Rule::ControlCharacter => write!(f, "must not contain control characters"),
            Rule::NotFound => write!(f, "does not exist"),
            Rule::ProfileInactive => write!(f, "is an inactive certificate profile"),
            Rule::Profile { reason } => write!(f, "is refused: {reason}"),
            Rule::Transition { from } => write!(f, "cannot follow status {from}"),
        }
    }
}

/// A value that broke a rule: which attribute, what value, which rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The attribute as the documents name it (`mail`, `validFrom`, …).
    pub attribute: String,
    /// The offending value, shortened to [`SHOWN_VALUE_CHARS`].
    pub value: String,
    #[serde(flatten)]
    pub rule: Rule,
}

impl Violation {
    /// A violation of `rule` by `value` in `attribute`.
    pub fn new(attribute: impl Into<String>, value: &str, rule: Rule) -> Self {
        Self {
            attribute: attribute.into(),
            value: shorten(value),
            rule,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{} {}", self.attribute, self.rule)
        } else {
            write!(f, "{} {:?} {}", self.attribute, self.value, self.rule)
        }
    }
}

impl std::error::Error for Violation {}

/// `value` cut to [`SHOWN_VALUE_CHARS`] characters, with `…` when cut.
pub fn shorten(value: &str) -> String {
    match value.char_indices().nth(SHOWN_VALUE_CHARS) {
        None => value.to_owned(),
        Some((end, _)) => format!("{}…", &value[..end]),
    }
}

/// Per-attribute exclude lists (seed 003, "Restrict User Attributes Values
/// via Exclude Lists"): attribute names and values compared without regard
/// to case (configuration layers may fold the case of keys).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExcludeLists {
    lists: BTreeMap<String, BTreeSet<String>>,
}

impl ExcludeLists {
    /// Build from `attribute → values` (as read from the config file).
    pub fn new<I, A, V>(lists: I) -> Self
    where
        I: IntoIterator<Item = (A, Vec<V>)>,
        A: Into<String>,
        V: AsRef<str>,
    {
        Self {
            lists: lists
                .into_iter()
                .map(|(a, vs)| {
                    let set = vs.iter().map(|v| v.as_ref().to_lowercase()).collect();
                    (a.into().to_lowercase(), set)
                })
                .collect(),
        }
    }

    /// Whether `value` is on `attribute`'s list.
    pub fn excludes(&self, attribute: &str, value: &str) -> bool {
        self.lists
            .get(&attribute.to_lowercase())
            .is_some_and(|set| set.contains(&value.to_lowercase()))
    }

    /// True when no list has any value (the common case, checked once).
    pub fn is_empty(&self) -> bool {
        self.lists.values().all(BTreeSet::is_empty)
    }
}

/// What a source must state of a user and how long its strings may be:
/// one validation path ([`crate::UserInput::validate`]) with the rules of
/// the source the user came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSet {
    /// `mail` is mandatory.
    pub require_mail: bool,
    /// `lastName` is mandatory.
    pub require_last_name: bool,
    /// Longest string attribute, in characters (an e-mail address may
    /// also never pass [`MAX_MAIL_CHARS`]).
    pub max_chars: usize,
}

impl RuleSet {
    /// Seed 003's rules, the CSV import's: mail and lastName mandatory,
    /// strings of at most 64 characters.
    pub const SEED: RuleSet = RuleSet {
        require_mail: true,
        require_last_name: true,
        max_chars: MAX_STRING_CHARS,
    };

    /// RFC 7643's: only `userName` is required (a SCIM user is stated by
    /// its userName), and strings as long as real directories hold them.
    pub const RFC7643: RuleSet = RuleSet {
        require_mail: false,
        require_last_name: false,
        max_chars: 256,
    };
}

/// The user rules an operator can tune; everything else is fixed by the
/// documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRules {
    /// Separates several groups in one `groups` cell.
    pub group_separator: char,
    /// Exclude lists per attribute.
    pub exclude: ExcludeLists,
    /// The source's required attributes and lengths.
    pub set: RuleSet,
}

impl Default for UserRules {
    fn default() -> Self {
        Self {
            group_separator: '|',
            exclude: ExcludeLists::default(),
            set: RuleSet::SEED,
        }
    }
}

/// A string attribute: at most [`MAX_STRING_CHARS`] characters, no control
/// characters, not on the exclude list.
pub fn check_string(attribute: &str, value: &str, exclude: &ExcludeLists) -> Result<(), Violation> {
    check_string_within(attribute, value, MAX_STRING_CHARS, exclude)
}

/// [`check_string`] with a source's own length bound.
pub fn check_string_within(
    attribute: &str,
    value: &str,
    max: usize,
    exclude: &ExcludeLists,
) -> Result<(), Violation> {
    if value.chars().count() > max {
        return Err(Violation::new(attribute, value, Rule::TooLong { max }));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(Violation::new(attribute, value, Rule::ControlCharacter));
    }
    if !exclude.is_empty() && exclude.excludes(attribute, value) {
        return Err(Violation::new(attribute, value, Rule::Excluded));
    }
    Ok(())
}

/// `active` or `inactive`, in any case.
pub fn parse_status(value: &str) -> Result<crate::Status, Violation> {
    if value.eq_ignore_ascii_case("active") {
        Ok(crate::Status::Active)
    } else if value.eq_ignore_ascii_case("inactive") {
        Ok(crate::Status::Inactive)
    } else {
        Err(Violation::new("status", value, Rule::Status))
    }
}

/// A pragmatic e-mail check: one `@`, a non-empty local part, a domain of
/// host-name labels with at least one dot, no blanks.
pub fn check_mail(attribute: &str, value: &str) -> Result<(), Violation> {
    let bad = || Violation::new(attribute, value, Rule::Mail);
    if value.chars().count() > MAX_MAIL_CHARS {
        let max = MAX_MAIL_CHARS;
        return Err(Violation::new(attribute, value, Rule::TooLong { max }));
    }
    let (local, domain) = value.split_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || local.len() > 64
        || local
            .chars()
            .any(|c| c.is_whitespace() || c == '@' || c.is_control())
        || !domain.contains('.')
        || !is_hostname(domain)
    {
        return Err(bad());
    }
    Ok(())
}

/// `XX`, `xx`, `xx-XX` or `xx_XX` (seed 003).
pub fn check_language(value: &str) -> Result<(), Violation> {
    let b = value.as_bytes();
    let ok = match b.len() {
        2 => {
            (b[0].is_ascii_uppercase() && b[1].is_ascii_uppercase())
                || (b[0].is_ascii_lowercase() && b[1].is_ascii_lowercase())
        }
        5 => {
            b[0].is_ascii_lowercase()
                && b[1].is_ascii_lowercase()
                && (b[2] == b'-' || b[2] == b'_')
                && b[3].is_ascii_uppercase()
                && b[4].is_ascii_uppercase()
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Violation::new("language", value, Rule::Language))
    }
}

/// `yyyyMMddHHmmssZ` naming a real instant; returns it for ordering checks.
pub fn parse_zulu(attribute: &str, value: &str) -> Result<time::PrimitiveDateTime, Violation> {
    let bad = || Violation::new(attribute, value, Rule::ZuluTimestamp);
    let b = value.as_bytes();
    if b.len() != 15 || b[14] != b'Z' || !b[..14].iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| value[r].parse::<u16>().map_err(|_| bad());
    let year = num(0..4)? as i32;
    let month = time::Month::try_from(num(4..6)? as u8).map_err(|_| bad())?;
    let date = time::Date::from_calendar_date(year, month, num(6..8)? as u8).map_err(|_| bad())?;
    let clock = time::Time::from_hms(num(8..10)? as u8, num(10..12)? as u8, num(12..14)? as u8)
        .map_err(|_| bad())?;
    Ok(time::PrimitiveDateTime::new(date, clock))
}

/// RFC 1123 host name: labels of letters, digits and inner hyphens, 1–63
/// characters each, 253 in all. A leading `*.` is not a host name (wildcards
/// belong to domain policies, not to assets).
pub fn is_hostname(value: &str) -> bool {
    let value = value.strip_suffix('.').unwrap_or(value);
    !value.is_empty()
        && value.len() <= 253
        && value.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// A DNS name of an asset.
pub fn check_hostname(attribute: &str, value: &str) -> Result<(), Violation> {
    if is_hostname(value) {
        Ok(())
    } else {
        Err(Violation::new(attribute, value, Rule::Hostname))
    }
}

/// An IPv4 or IPv6 address.
pub fn check_ip(attribute: &str, value: &str) -> Result<(), Violation> {
    value
        .parse::<std::net::IpAddr>()
        .map(|_| ())
        .map_err(|_| Violation::new(attribute, value, Rule::IpAddress))
}

/// A two-letter ISO 3166 code, as X.509's `C` attribute wants it.
pub fn check_country(value: &str) -> Result<(), Violation> {
    if value.len() == 2 && value.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(())
    } else {
        Err(Violation::new("country", value, Rule::Country))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_at_most_64_characters_counted_as_characters() {
        let ok = "é".repeat(64);
        assert!(check_string("firstName", &ok, &ExcludeLists::default()).is_ok());
        let err = check_string("firstName", &"a".repeat(65), &ExcludeLists::default()).unwrap_err();
        assert_eq!(err.rule, Rule::TooLong { max: 64 });
        assert!(
            err.value.ends_with('…'),
            "long values are shortened in reports"
        );
        assert_eq!(err.value.chars().count(), SHOWN_VALUE_CHARS + 1);
    }

    #[test]
    fn control_characters_are_refused() {
        let err = check_string("lastName", "a\u{7}b", &ExcludeLists::default()).unwrap_err();
        assert_eq!(err.rule, Rule::ControlCharacter);
    }

    #[test]
    fn exclude_lists_match_without_case() {
        let ex = ExcludeLists::new([("lastName", vec!["Test", "Dummy"])]);
        assert_eq!(
            check_string("lastName", "TEST", &ex).unwrap_err().rule,
            Rule::Excluded
        );
        assert!(
            check_string("firstName", "test", &ex).is_ok(),
            "lists are per attribute"
        );
        assert!(check_string("lastName", "Tester", &ex).is_ok());
    }

    #[test]
    fn status_is_active_or_inactive() {
        assert_eq!(parse_status("active").unwrap(), crate::Status::Active);
        assert_eq!(parse_status("Inactive").unwrap(), crate::Status::Inactive);
        assert_eq!(parse_status("deleted").unwrap_err().rule, Rule::Status);
        assert_eq!(parse_status("").unwrap_err().rule, Rule::Status);
    }

    #[test]
    fn mail_addresses() {
        for ok in [
            "a@example.org",
            "first.last+tag@sub.example.co.uk",
            "X@EXAMPLE.ORG",
        ] {
            assert!(check_mail("mail", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "@example.org",
            "a@",
            "a@example",
            "a b@example.org",
            "a@exa mple.org",
            "a@@example.org",
            "a@-x.org",
        ] {
            assert_eq!(
                check_mail("mail", bad).unwrap_err().rule,
                Rule::Mail,
                "{bad}"
            );
        }
    }

    #[test]
    fn language_codes_in_the_four_documented_forms() {
        for ok in ["DE", "de", "de-DE", "de_DE", "en-US"] {
            assert!(check_language(ok).is_ok(), "{ok}");
        }
        for bad in [
            "De", "dE", "deu", "de-de", "DE-de", "de DE", "d", "", "de-DEU",
        ] {
            assert_eq!(
                check_language(bad).unwrap_err().rule,
                Rule::Language,
                "{bad}"
            );
        }
    }

    #[test]
    fn zulu_timestamps_must_be_real_instants() {
        assert!(
            parse_zulu("validFrom", "20240229235959Z").is_ok(),
            "leap day"
        );
        for bad in [
            "20230229000000Z", // not a leap year
            "20241301000000Z", // month 13
            "20240101240000Z", // hour 24
            "20240101000060Z", // second 60
            "20240101000000",  // no Z
            "2024-01-01T00:00:00Z",
            "20240101000000z",
            "",
        ] {
            assert_eq!(
                parse_zulu("validTo", bad).unwrap_err().rule,
                Rule::ZuluTimestamp,
                "{bad}"
            );
        }
    }

    #[test]
    fn host_names_ip_addresses_and_countries() {
        for ok in [
            "example.org",
            "a-b.example.org",
            "localhost",
            "x1.example.org.",
        ] {
            assert!(check_hostname("dnsNames", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a.org",
            "a-.org",
            "a..org",
            "*.example.org",
            "a_b.org",
            &"a".repeat(64),
        ] {
            assert!(check_hostname("dnsNames", bad).is_err(), "{bad}");
        }
        assert!(check_ip("ipAddresses", "10.0.0.1").is_ok());
        assert!(check_ip("ipAddresses", "2001:db8::1").is_ok());
        assert!(check_ip("ipAddresses", "10.0.0.256").is_err());
        assert!(check_country("SE").is_ok());
        assert!(check_country("SWE").is_err());
    }
}
