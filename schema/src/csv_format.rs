//! The CSV layouts of the source documents: which column means what, and how
//! one row of cells becomes an [`input`](crate::input) value.
//!
//! The reader (streaming, encodings, delimiters) lives in the daemon; this
//! module sees only cells, through the small [`Row`] trait, so it stays pure
//! and the same code checks a file row and a test's literal.

use uuid::Uuid;

use crate::input::{AssetInput, Field, GroupInput, UserInput, SP_CUSTOM_ATTRIBUTES};
use crate::rules::{parse_status, Rule, UserRules, Violation};

/// A row of cells.
pub trait Row {
    /// Number of cells.
    fn len(&self) -> usize;
    /// Cell `i` (0-based).
    fn get(&self, i: usize) -> Option<&str>;
    /// True for a row without cells.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<S: AsRef<str>> Row for [S] {
    fn len(&self) -> usize {
        <[S]>::len(self)
    }
    fn get(&self, i: usize) -> Option<&str> {
        <[S]>::get(self, i).map(AsRef::as_ref)
    }
}

impl<S: AsRef<str>> Row for Vec<S> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn get(&self, i: usize) -> Option<&str> {
        self.as_slice().get(i).map(AsRef::as_ref)
    }
}

/// How cells with blanks around them are treated (seed 000: "do not leave
/// blank spaces before or after the delimiter").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Blanks {
    /// Refuse the row.
    #[default]
    Strict,
    /// Trim the blanks (and quotes that stood behind them).
    Lenient,
}

/// Why a row was refused: the violation and, when one cell is to blame, its
/// 1-based column number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub column: Option<usize>,
    pub violation: Violation,
}

impl RowError {
    fn at(column: usize, violation: Violation) -> Self {
        Self {
            column: Some(column + 1),
            violation,
        }
    }
}

/// Why a whole file was refused before its rows were read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("the header has no `{0}` column, which is mandatory")]
    MissingColumn(&'static str),
    #[error("the header names `{0}` twice")]
    DuplicateColumn(String),
    #[error("the file is empty: a header row is expected")]
    Empty,
}

/// One column of a layout: its documented name and position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Col {
    name: &'static str,
    index: usize,
}

/// Cell `col` of `row`, with the blanks rule applied. An empty result means
/// an empty cell.
fn cell<R: Row + ?Sized>(row: &R, col: Col, blanks: Blanks) -> Result<&str, RowError> {
    let raw = row.get(col.index).unwrap_or("");
    if raw.trim_matches([' ', '\t']).len() == raw.len() {
        return Ok(raw);
    }
    match blanks {
        Blanks::Strict => Err(RowError::at(
            col.index,
            Violation::new(col.name, raw, Rule::SurroundingBlank),
        )),
        Blanks::Lenient => Ok(lenient(raw)),
    }
}

/// A cell as lenient mode reads it: blanks around it trimmed, and the
/// quotes that stood behind them dropped (` "a,b" ` reaches us with its
/// quotes kept, because the CSV reader only honours a quote at a cell's
/// first byte).
fn lenient(raw: &str) -> &str {
    let trimmed = raw.trim_matches([' ', '\t']);
    if trimmed.len() == raw.len() {
        return raw;
    }
    trimmed
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(trimmed)
}

/// The in-file uniqueness key of a raw cell: what the row's value will be,
/// without blanks. Keys are taken from refused rows too, so strict mode
/// keys a cell it refuses for its blanks by the value without them.
/// Lenient mode keys the value it stores: keyed by the raw text instead,
/// ` "a@x.org" ` and `a@x.org` were two keys for one value, and both rows
/// were accepted (found by fuzzing, docs/fuzzing.md).
///
/// Blanks are what [`cell`] trims (space and tab), nothing more: trimmed
/// as Unicode white space, a name of one no-break space had no key while
/// the value kept it, and two such rows were both accepted (found by
/// fuzzing).
fn key_text(raw: &str, blanks: Blanks) -> &str {
    match blanks {
        Blanks::Strict => raw.trim_matches([' ', '\t']),
        Blanks::Lenient => lenient(raw),
    }
}

fn optional<R: Row + ?Sized>(
    row: &R,
    col: Option<Col>,
    blanks: Blanks,
) -> Result<Field<String>, RowError> {
    let Some(col) = col else {
        return Ok(Field::Absent);
    };
    let v = cell(row, col, blanks)?;
    Ok(if v.is_empty() {
        Field::Clear
    } else {
        Field::Set(v.to_owned())
    })
}

fn list<R: Row + ?Sized>(
    row: &R,
    col: Option<Col>,
    blanks: Blanks,
    separator: char,
) -> Result<Field<Vec<String>>, RowError> {
    let Some(col) = col else {
        return Ok(Field::Absent);
    };
    let v = cell(row, col, blanks)?;
    let items: Vec<String> = v
        .split(separator)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(if items.is_empty() {
        Field::Clear
    } else {
        Field::Set(items)
    })
}

fn mandatory<R: Row + ?Sized>(row: &R, col: Col, blanks: Blanks) -> Result<&str, RowError> {
    let v = cell(row, col, blanks)?;
    if v.is_empty() {
        Err(RowError::at(
            col.index,
            Violation::new(col.name, v, Rule::Mandatory),
        ))
    } else {
        Ok(v)
    }
}

/// Map header cells to the `known` column names (compared without case).
/// Returns each known name's position and the unknown columns.
fn map_header<R: Row + ?Sized>(
    header: &R,
    known: &[&'static str],
) -> Result<(Vec<Option<Col>>, Vec<String>), LayoutError> {
    if header.is_empty()
        || (header.len() == 1 && header.get(0).is_some_and(|c| c.trim().is_empty()))
    {
        return Err(LayoutError::Empty);
    }
    let mut found: Vec<Option<Col>> = vec![None; known.len()];
    let mut unknown = Vec::new();
    for index in 0..header.len() {
        let raw = header.get(index).unwrap_or("");
        // A UTF-8 BOM is the reader's to strip, but be forgiving here too.
        let name = raw.trim_start_matches('\u{feff}').trim();
        match known.iter().position(|k| k.eq_ignore_ascii_case(name)) {
            Some(k) if found[k].is_some() => {
                return Err(LayoutError::DuplicateColumn(name.to_owned()))
            }
            Some(k) => {
                found[k] = Some(Col {
                    name: known[k],
                    index,
                })
            }
            None => unknown.push(name.to_owned()),
        }
    }
    Ok((found, unknown))
}

fn check_width<R: Row + ?Sized>(row: &R, expected: usize) -> Result<(), RowError> {
    if row.len() == expected {
        Ok(())
    } else {
        Err(RowError {
            column: None,
            violation: Violation::new(
                "row",
                "",
                Rule::FieldCount {
                    expected,
                    found: row.len(),
                },
            ),
        })
    }
}

fn columns_of(cols: &[Option<Col>]) -> Vec<(&'static str, usize)> {
    cols.iter()
        .flatten()
        .map(|c| (c.name, c.index + 1))
        .collect()
}

/// Attach the failing cell's column to a violation found after parsing.
fn locate(v: Violation, cols: &[Option<Col>]) -> RowError {
    let column = cols
        .iter()
        .flatten()
        .find(|c| c.name == v.attribute)
        .map(|c| c.index + 1);
    RowError {
        column,
        violation: v,
    }
}

/// The user columns of seed 003, plus `displayName` and `externalId`.
pub const USER_COLUMNS: [&str; 16] = [
    "status",
    "loginName",
    "mail",
    "firstName",
    "lastName",
    "displayName",
    "language",
    "validFrom",
    "validTo",
    SP_CUSTOM_ATTRIBUTES[0],
    SP_CUSTOM_ATTRIBUTES[1],
    SP_CUSTOM_ATTRIBUTES[2],
    SP_CUSTOM_ATTRIBUTES[3],
    SP_CUSTOM_ATTRIBUTES[4],
    "groups",
    "externalId",
];

/// Where each user column is in one file (users files always have a header).
#[derive(Debug, Clone)]
pub struct UserLayout {
    cols: Vec<Option<Col>>,
    width: usize,
    /// Header cells that name no known column: ignored, reported as warnings.
    pub unknown_columns: Vec<String>,
}

impl UserLayout {
    /// Read the header row. `status`, `mail` and `lastName` are mandatory.
    pub fn from_header<R: Row + ?Sized>(header: &R) -> Result<Self, LayoutError> {
        let (cols, unknown_columns) = map_header(header, &USER_COLUMNS)?;
        for name in ["status", "mail", "lastName"] {
            let k = USER_COLUMNS.iter().position(|c| *c == name).expect("known");
            if cols[k].is_none() {
                return Err(LayoutError::MissingColumn(USER_COLUMNS[k]));
            }
        }
        Ok(Self {
            cols,
            width: header.len(),
            unknown_columns,
        })
    }

    fn col(&self, name: &str) -> Option<Col> {
        self.cols.iter().flatten().copied().find(|c| c.name == name)
    }

    /// Each present column's attribute name and 1-based number.
    pub fn columns(&self) -> Vec<(&'static str, usize)> {
        columns_of(&self.cols)
    }

    /// The 1-based column of `name` (a documented column name), if present.
    pub fn column_of(&self, name: &str) -> Option<usize> {
        self.col(name).map(|c| c.index + 1)
    }

    /// The `mail` and `loginName` keys of a row, for the in-file uniqueness
    /// check (which must run on refused rows too).
    pub fn key_cells<'r, R: Row + ?Sized>(
        &self,
        row: &'r R,
        blanks: Blanks,
    ) -> (Option<&'r str>, Option<&'r str>) {
        let get = |name| {
            self.col(name)
                .and_then(|c| row.get(c.index))
                .map(|v| key_text(v, blanks))
                .filter(|v| !v.is_empty())
        };
        (get("mail"), get("loginName"))
    }

    /// Parse and validate one row.
    pub fn parse<R: Row + ?Sized>(
        &self,
        row: &R,
        rules: &UserRules,
        blanks: Blanks,
    ) -> Result<UserInput, RowError> {
        check_width(row, self.width)?;
        let col = |name| self.col(name);
        let must = |name| col(name).expect("mandatory column checked in from_header");
        let status_col = must("status");
        let status_cell = mandatory(row, status_col, blanks)?;
        let status = parse_status(status_cell).map_err(|v| RowError::at(status_col.index, v))?;
        let mut input = UserInput::new(
            status,
            mandatory(row, must("mail"), blanks)?,
            mandatory(row, must("lastName"), blanks)?,
        );
        input.login_name = optional(row, col("loginName"), blanks)?;
        input.first_name = optional(row, col("firstName"), blanks)?;
        input.display_name = optional(row, col("displayName"), blanks)?;
        input.language = optional(row, col("language"), blanks)?;
        input.valid_from = optional(row, col("validFrom"), blanks)?;
        input.valid_to = optional(row, col("validTo"), blanks)?;
        input.external_id = optional(row, col("externalId"), blanks)?;
        for (name, slot) in SP_CUSTOM_ATTRIBUTES
            .iter()
            .zip(input.sp_custom_attributes.iter_mut())
        {
            *slot = optional(row, col(name), blanks)?;
        }
        input.groups = list(row, col("groups"), blanks, rules.group_separator)?;
        input.validate(rules).map_err(|v| locate(v, &self.cols))?;
        Ok(input)
    }
}

/// The group columns: `displayName` is mandatory.
pub const GROUP_COLUMNS: [&str; 4] = ["displayName", "description", "externalId", "members"];

/// Where each group column is in one file.
#[derive(Debug, Clone)]
pub struct GroupLayout {
    cols: Vec<Option<Col>>,
    width: usize,
    /// Header cells that name no known column.
    pub unknown_columns: Vec<String>,
}

impl GroupLayout {
    /// Read the header row.
    pub fn from_header<R: Row + ?Sized>(header: &R) -> Result<Self, LayoutError> {
        let (cols, unknown_columns) = map_header(header, &GROUP_COLUMNS)?;
        if cols[0].is_none() {
            return Err(LayoutError::MissingColumn("displayName"));
        }
        Ok(Self {
            cols,
            width: header.len(),
            unknown_columns,
        })
    }

    /// Each present column's attribute name and 1-based number.
    pub fn columns(&self) -> Vec<(&'static str, usize)> {
        columns_of(&self.cols)
    }

    /// The 1-based column of `displayName`.
    pub fn key_column(&self) -> Option<usize> {
        self.cols[0].map(|c| c.index + 1)
    }

    /// The `displayName` key of a row, for the in-file uniqueness check.
    pub fn key_cell<'r, R: Row + ?Sized>(&self, row: &'r R, blanks: Blanks) -> Option<&'r str> {
        self.cols[0]
            .and_then(|c| row.get(c.index))
            .map(|v| key_text(v, blanks))
            .filter(|v| !v.is_empty())
    }

    /// Parse and validate one row; members are split by the rules' separator.
    pub fn parse<R: Row + ?Sized>(
        &self,
        row: &R,
        rules: &UserRules,
        blanks: Blanks,
    ) -> Result<GroupInput, RowError> {
        check_width(row, self.width)?;
        let mut input = GroupInput::new(mandatory(row, self.cols[0].expect("checked"), blanks)?);
        input.description = optional(row, self.cols[1], blanks)?;
        input.external_id = optional(row, self.cols[2], blanks)?;
        input.members = list(row, self.cols[3], blanks, rules.group_separator)?;
        input
            .validate(&crate::RuleSet::SEED)
            .map_err(|v| locate(v, &self.cols))?;
        Ok(input)
    }
}

/// The asset fields in the exact order of the data pool (seed 000); a
/// headerless file has exactly these, every one present even when empty.
pub const ASSET_COLUMNS: [&str; 11] = [
    "id",
    "name",
    "description",
    "type",
    "owner",
    "certificateProfile",
    "organization",
    "country",
    "dnsNames",
    "ipAddresses",
    "sid",
];

/// Where each asset column is: the data-pool order, or a header's.
#[derive(Debug, Clone)]
pub struct AssetLayout {
    cols: Vec<Option<Col>>,
    width: usize,
    /// True when the first row was a header.
    pub has_header: bool,
    /// Header cells that name no known column.
    pub unknown_columns: Vec<String>,
}

impl AssetLayout {
    /// The headerless data-pool order.
    pub fn data_pool_order() -> Self {
        Self {
            cols: ASSET_COLUMNS
                .iter()
                .enumerate()
                .map(|(index, name)| Some(Col { name, index }))
                .collect(),
            width: ASSET_COLUMNS.len(),
            has_header: false,
            unknown_columns: Vec::new(),
        }
    }

    /// Decide from the first row: a header (it has a `name` cell and most
    /// of its cells name known columns; the others are reported as unknown)
    /// gives its own order; anything else is data in the data-pool order.
    pub fn detect<R: Row + ?Sized>(first: &R) -> Self {
        let known = (0..first.len())
            .filter(|&i| {
                let c = first
                    .get(i)
                    .unwrap_or("")
                    .trim_start_matches('\u{feff}')
                    .trim();
                ASSET_COLUMNS.iter().any(|k| k.eq_ignore_ascii_case(c))
            })
            .count();
        match map_header(first, &ASSET_COLUMNS) {
            Ok((cols, unknown_columns)) if cols[1].is_some() && known * 2 > first.len() => Self {
                cols,
                width: first.len(),
                has_header: true,
                unknown_columns,
            },
            _ => Self::data_pool_order(),
        }
    }

    /// Each present column's attribute name and 1-based number.
    pub fn columns(&self) -> Vec<(&'static str, usize)> {
        columns_of(&self.cols)
    }

    /// The 1-based column of `name`.
    pub fn key_column(&self) -> Option<usize> {
        self.cols[1].map(|c| c.index + 1)
    }

    /// The `name` key of a row, for the in-file uniqueness check.
    pub fn key_cell<'r, R: Row + ?Sized>(&self, row: &'r R, blanks: Blanks) -> Option<&'r str> {
        self.cols[1]
            .and_then(|c| row.get(c.index))
            .map(|v| key_text(v, blanks))
            .filter(|v| !v.is_empty())
    }

    /// Parse and validate one row. DNS names and IP addresses are
    /// comma-separated inside their cell (seed 002); empty entries, as in the
    /// seed's `",,"`, are dropped.
    pub fn parse<R: Row + ?Sized>(&self, row: &R, blanks: Blanks) -> Result<AssetInput, RowError> {
        check_width(row, self.width)?;
        let c = &self.cols;
        let mut input = AssetInput::new(mandatory(row, c[1].expect("name column"), blanks)?);
        if let Field::Set(id) = optional(row, c[0], blanks)? {
            let uuid = Uuid::parse_str(&id).map_err(|_| {
                RowError::at(
                    c[0].expect("set").index,
                    Violation::new("id", &id, Rule::Uuid),
                )
            })?;
            input.id = Some(uuid);
        }
        input.description = optional(row, c[2], blanks)?;
        input.asset_type = optional(row, c[3], blanks)?;
        input.owner = optional(row, c[4], blanks)?;
        input.certificate_profile = optional(row, c[5], blanks)?;
        input.organization = optional(row, c[6], blanks)?;
        input.country = optional(row, c[7], blanks)?;
        input.dns_names = list(row, c[8], blanks, ',')?;
        input.ip_addresses = list(row, c[9], blanks, ',')?;
        input.sid = optional(row, c[10], blanks)?;
        input
            .validate(&crate::RuleSet::SEED)
            .map_err(|v| locate(v, c))?;
        Ok(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Status;

    const SEED_ASSET: [&str; 11] = [
        "",
        "Windows Server 2008",
        "Asset to manage windows server information",
        "Server",
        "",
        "Certificate Profile Server P12",
        "Nexus",
        "SE",
        ",,",
        "",
        "S-1-5-21-1721254763-462695806-1538882281-2605462",
    ];

    #[test]
    fn the_seed_asset_row_imports_in_data_pool_order() {
        let layout = AssetLayout::detect(&SEED_ASSET[..]);
        assert!(!layout.has_header);
        let a = layout.parse(&SEED_ASSET[..], Blanks::Strict).unwrap();
        assert_eq!(a.id, None);
        assert_eq!(a.name, "Windows Server 2008");
        assert_eq!(a.asset_type, Field::Set("Server".into()));
        assert_eq!(a.owner, Field::Clear);
        assert_eq!(
            a.certificate_profile,
            Field::Set("Certificate Profile Server P12".into())
        );
        assert_eq!(a.country, Field::Set("SE".into()));
        assert_eq!(a.dns_names, Field::Clear, "`,,` is an empty list");
        assert_eq!(
            a.sid.value().unwrap(),
            "S-1-5-21-1721254763-462695806-1538882281-2605462"
        );
    }

    #[test]
    fn headerless_assets_need_every_field() {
        let short = &SEED_ASSET[..10];
        let err = AssetLayout::data_pool_order()
            .parse(short, Blanks::Strict)
            .unwrap_err();
        assert_eq!(
            err.violation.rule,
            Rule::FieldCount {
                expected: 11,
                found: 10
            }
        );
        assert_eq!(err.column, None);
    }

    #[test]
    fn an_asset_header_is_recognised_in_any_order() {
        let header = ["Name", "dnsNames", "certificateProfile", "location"];
        let layout = AssetLayout::detect(&header[..]);
        assert!(layout.has_header);
        assert_eq!(layout.unknown_columns, ["location"]);
        let a = layout
            .parse(
                &["web", "web.example.org,www.example.org", "", "Room 4"][..],
                Blanks::Strict,
            )
            .unwrap();
        assert_eq!(
            a.dns_names,
            Field::Set(vec!["web.example.org".into(), "www.example.org".into()])
        );
        assert_eq!(a.certificate_profile, Field::Clear);
        assert_eq!(
            a.sid,
            Field::Absent,
            "a column the header omits is left alone"
        );
    }

    #[test]
    fn blanks_around_delimiters_strict_refuses_lenient_trims() {
        let mut row = SEED_ASSET.map(str::to_owned).to_vec();
        row[3] = " Server".into();
        let err = AssetLayout::data_pool_order()
            .parse(&row, Blanks::Strict)
            .unwrap_err();
        assert_eq!(err.violation.rule, Rule::SurroundingBlank);
        assert_eq!(err.column, Some(4));
        let a = AssetLayout::data_pool_order()
            .parse(&row, Blanks::Lenient)
            .unwrap();
        assert_eq!(a.asset_type, Field::Set("Server".into()));
        row[3] = " \"Server\"".into();
        let a = AssetLayout::data_pool_order()
            .parse(&row, Blanks::Lenient)
            .unwrap();
        assert_eq!(
            a.asset_type,
            Field::Set("Server".into()),
            "quotes behind a blank are dropped"
        );
    }

    #[test]
    fn asset_values_are_checked_with_their_column() {
        let mut row = SEED_ASSET.map(str::to_owned).to_vec();
        row[8] = "ok.example.org,not a host".into();
        let err = AssetLayout::data_pool_order()
            .parse(&row, Blanks::Strict)
            .unwrap_err();
        assert_eq!(
            (err.column, err.violation.rule.clone()),
            (Some(9), Rule::Hostname)
        );
        row[8] = String::new();
        row[0] = "not-a-uuid".into();
        let err = AssetLayout::data_pool_order()
            .parse(&row, Blanks::Strict)
            .unwrap_err();
        assert_eq!((err.column, err.violation.rule), (Some(1), Rule::Uuid));
    }

    fn users(header: &[&str]) -> UserLayout {
        UserLayout::from_header(header).unwrap()
    }

    #[test]
    fn user_header_needs_the_mandatory_columns() {
        assert_eq!(
            UserLayout::from_header(&["mail", "lastName"][..]).unwrap_err(),
            LayoutError::MissingColumn("status")
        );
        assert_eq!(
            UserLayout::from_header(&["status", "MAIL", "lastName", "mail"][..]).unwrap_err(),
            LayoutError::DuplicateColumn("mail".into())
        );
        let l = users(&["\u{feff}Status", "mail", "lastname", "costCenter"]);
        assert_eq!(l.unknown_columns, vec!["costCenter".to_string()]);
    }

    #[test]
    fn user_rows_parse_and_report_the_failing_column() {
        let l = users(&[
            "status", "mail", "lastName", "language", "groups", "validTo",
        ]);
        let rules = UserRules::default();
        let u = l
            .parse(
                &["active", "a@example.org", "Smith", "de-DE", "g1| g2 ||", ""][..],
                &rules,
                Blanks::Strict,
            )
            .unwrap();
        assert_eq!(u.status, Status::Active);
        assert_eq!(u.groups, Field::Set(vec!["g1".into(), "g2".into()]));
        assert_eq!(u.valid_to, Field::Clear);
        assert_eq!(u.login_name, Field::Absent);

        let err = l
            .parse(
                &["active", "a@example.org", "Smith", "german", "", ""][..],
                &rules,
                Blanks::Strict,
            )
            .unwrap_err();
        assert_eq!((err.column, err.violation.rule), (Some(4), Rule::Language));
        let err = l
            .parse(
                &["yes", "a@example.org", "Smith", "", "", ""][..],
                &rules,
                Blanks::Strict,
            )
            .unwrap_err();
        assert_eq!((err.column, err.violation.rule), (Some(1), Rule::Status));
        let err = l
            .parse(
                &["active", "a@example.org", "", "", "", ""][..],
                &rules,
                Blanks::Strict,
            )
            .unwrap_err();
        assert_eq!((err.column, err.violation.rule), (Some(3), Rule::Mandatory));
        let err = l
            .parse(
                &["active", "a@example.org", "Smith", "", "", "2024"][..],
                &rules,
                Blanks::Strict,
            )
            .unwrap_err();
        assert_eq!(
            (err.column, err.violation.rule),
            (Some(6), Rule::ZuluTimestamp)
        );
        let err = l
            .parse(&["active"][..], &rules, Blanks::Strict)
            .unwrap_err();
        assert_eq!(
            err.violation.rule,
            Rule::FieldCount {
                expected: 6,
                found: 1
            }
        );
    }

    #[test]
    fn lenient_keys_are_the_values_the_rows_keep() {
        // Found by fuzzing (fuzz/regressions/csv_import/): keyed by the raw
        // cell, ` "a@x.org" ` and `a@x.org` were two keys for one mail.
        let l = users(&["status", "mail", "lastName", "loginName"]);
        let row = ["active", " \"A@x.org\" ", "Smith", "\t\"ann\" "];
        let rules = UserRules::default();
        let u = l.parse(&row[..], &rules, Blanks::Lenient).unwrap();
        let keys = l.key_cells(&row[..], Blanks::Lenient);
        assert_eq!(
            keys,
            (
                u.mail.value().map(|s| s.as_str()),
                u.login_name.value().map(|s| s.as_str())
            )
        );
        assert_eq!(
            l.key_cells(&row[..], Blanks::Strict),
            (Some("\"A@x.org\""), Some("\"ann\"")),
            "strict mode refuses the row and keys it without its blanks"
        );
        let g = GroupLayout::from_header(&["displayName"][..]).unwrap();
        assert_eq!(
            g.key_cell(&[" \"Staff\""][..], Blanks::Lenient),
            Some("Staff")
        );
        let a = AssetLayout::detect(&["name"][..]);
        assert_eq!(a.key_cell(&["web-1 "][..], Blanks::Lenient), Some("web-1"));
        assert_eq!(a.key_cell(&["\"\""][..], Blanks::Lenient), Some("\"\""));
        // Only space and tab are blanks: a value of other white space is
        // kept, and keyed as kept.
        for blanks in [Blanks::Strict, Blanks::Lenient] {
            assert_eq!(a.key_cell(&["\u{a0}"][..], blanks), Some("\u{a0}"));
            assert_eq!(a.key_cell(&[" \u{a0}\t"][..], blanks), Some("\u{a0}"));
            let parsed = a.parse(&["\u{a0}"][..], blanks).expect("a name");
            assert_eq!(parsed.name, "\u{a0}");
        }
    }

    #[test]
    fn group_rows() {
        let l = GroupLayout::from_header(&["displayName", "members"][..]).unwrap();
        let g = l
            .parse(
                &["Admins", "ann|bob@example.org"][..],
                &UserRules::default(),
                Blanks::Strict,
            )
            .unwrap();
        assert_eq!(
            g.members,
            Field::Set(vec!["ann".into(), "bob@example.org".into()])
        );
        assert_eq!(
            GroupLayout::from_header(&["description"][..]).unwrap_err(),
            LayoutError::MissingColumn("displayName")
        );
        let err = l
            .parse(&["", ""][..], &UserRules::default(), Blanks::Strict)
            .unwrap_err();
        assert_eq!((err.column, err.violation.rule), (Some(1), Rule::Mandatory));
    }
}
