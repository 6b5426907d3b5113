//! `idsync list|show|changes`: reading the store directly (the daemon
//! stopped), as a table or JSON for people and scripts.

use std::collections::HashMap;
use std::io::Write;

use anyhow::{bail, Result};
use idsync_schema::{
    Asset, Certificate, CertificateProfile, EnrollmentRequest, Group, Kind, Registration, User,
};
use idsync_store::Store;

use super::Format;

/// `idsync show KIND KEY`: one object as pretty JSON; a group with its
/// members' mails.
pub fn show(store: &Store, kind: Kind, key: &str) -> Result<u8> {
    let json = match kind {
        Kind::User => store
            .find::<User>(kind, key)?
            .map(|u| serde_json::to_string_pretty(&u)),
        Kind::Group => store.find::<Group>(kind, key)?.map(|g| {
            let members: Vec<String> = store
                .member_users(g.id)
                .unwrap_or_default()
                .into_iter()
                .map(|u| u.mail.or(u.login_name).unwrap_or_else(|| u.id.to_string()))
                .collect();
            let mut v = serde_json::to_value(&g).expect("serialises");
            v["members"] = members.into();
            serde_json::to_string_pretty(&v)
        }),
        Kind::Asset => store
            .find::<Asset>(kind, key)?
            .map(|a| serde_json::to_string_pretty(&a)),
        Kind::Profile => store
            .find::<CertificateProfile>(kind, key)?
            .map(|p| serde_json::to_string_pretty(&p)),
        Kind::Request => store
            .find::<EnrollmentRequest>(kind, key)?
            .map(|r| serde_json::to_string_pretty(&r)),
        Kind::Certificate => store
            .find::<Certificate>(kind, key)?
            .map(|c| serde_json::to_string_pretty(&c)),
        Kind::Registration => store
            .find::<Registration>(kind, key)?
            .map(|r| serde_json::to_string_pretty(&r)),
    };
    match json {
        Some(j) => {
            println!("{}", j?);
            Ok(0)
        }
        None => bail!(
            "no {} with key {key:?}",
            kind.plural().trim_end_matches('s')
        ),
    }
}

/// `idsync changes`: change-log events after `after`, one JSON line each.
/// When `limit` cut the list short, stderr says so and how to go on
/// (stdout stays JSON lines only).
pub fn changes(store: &Store, after: u64, limit: usize) -> Result<u8> {
    let mut out = std::io::stdout().lock();
    let events = store.changes(after, limit)?;
    for e in &events {
        writeln!(out, "{}", serde_json::to_string(e)?)?;
    }
    out.flush()?;
    let last = events.last().map_or(after, |e| e.seq);
    let head = store.head()?;
    if last < head {
        eprintln!(
            "idsync: {} events shown (--limit {limit}); {} more: idsync changes --after {last}",
            events.len(),
            head - last
        );
    }
    Ok(0)
}

/// `idsync list KIND`: every object of a kind, streamed.
pub fn list(store: &Store, kind: Kind, format: Format) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut first = true;
    let mut group_names = HashMap::new();
    match format {
        Format::Json => write!(out, "[")?,
        Format::Table => writeln!(out, "{}", table_header(kind))?,
    }
    macro_rules! each {
        ($t:ty, $row:expr) => {
            store.for_each::<$t>(kind, |obj| {
                let ok = match format {
                    Format::Json => {
                        let sep = if first { "" } else { "," };
                        first = false;
                        let mut v = serde_json::to_value(&obj).expect("serialises");
                        if kind == Kind::User {
                            add_group_names(&mut v, store, &mut group_names)?;
                        }
                        write!(out, "{sep}{v}").is_ok()
                    }
                    Format::Table => writeln!(out, "{}", $row(&obj)).is_ok(),
                };
                Ok(ok)
            })?
        };
    }
    match kind {
        Kind::User => each!(User, |u: &User| format!(
            "{}\t{}\t{}\t{}\t{}",
            u.id,
            u.mail.as_deref().unwrap_or("-"),
            u.login_name.as_deref().unwrap_or("-"),
            u.last_name.as_deref().unwrap_or("-"),
            u.status.as_str()
        )),
        Kind::Group => each!(Group, |g: &Group| format!("{}\t{}", g.id, g.display_name)),
        Kind::Asset => each!(Asset, |a: &Asset| format!(
            "{}\t{}\t{}\t{:?}",
            a.id,
            a.name,
            a.certificate_profile.as_deref().unwrap_or("-"),
            a.state
        )),
        Kind::Profile => each!(CertificateProfile, |p: &CertificateProfile| format!(
            "{}\t{}\t{}\t{:?}",
            p.id, p.name, p.protocol, p.state
        )),
        Kind::Request => each!(EnrollmentRequest, |r: &EnrollmentRequest| format!(
            "{}\t{}\t{}\t{}\t{}",
            r.id, r.status, r.protocol, r.profile, r.requester
        )),
        Kind::Certificate => each!(Certificate, |c: &Certificate| format!(
            "{}\t{}\t{}\t{}\t{}",
            c.id,
            c.serial,
            c.subject,
            rfc3339(c.not_after),
            if c.installed.is_some() {
                "installed"
            } else {
                "-"
            }
        )),
        Kind::Registration => each!(Registration, |r: &Registration| format!(
            "{}\t{}\t{}\t{}\t{}",
            r.id,
            r.status,
            r.protocol,
            r.profile,
            rfc3339(r.expires)
        )),
    }
    if format == Format::Json {
        writeln!(out, "]")?;
    }
    out.flush()?;
    Ok(())
}

/// A user's JSON with `groupNames` beside its `groups` ids, in the same
/// order (a person reads names; scripts keep the ids). Each group is read
/// once per listing.
fn add_group_names(
    user: &mut serde_json::Value,
    store: &Store,
    names: &mut HashMap<String, String>,
) -> Result<(), idsync_store::StoreError> {
    let ids: Vec<String> = user["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g.as_str().map(str::to_owned))
        .collect();
    let mut found = Vec::with_capacity(ids.len());
    for id in ids {
        if !names.contains_key(&id) {
            let name = store
                .find::<Group>(Kind::Group, &id)?
                .map_or_else(String::new, |g| g.display_name);
            names.insert(id.clone(), name);
        }
        found.push(serde_json::Value::String(names[&id].clone()));
    }
    user["groupNames"] = serde_json::Value::Array(found);
    Ok(())
}

/// The column names of `list`'s table, tab-separated like its rows.
fn table_header(kind: Kind) -> &'static str {
    match kind {
        Kind::User => "id\tmail\tloginName\tlastName\tstatus",
        Kind::Group => "id\tdisplayName",
        Kind::Asset => "id\tname\tcertificateProfile\tstate",
        Kind::Profile => "id\tname\tprotocol\tstate",
        Kind::Request => "id\tstatus\tprotocol\tprofile\trequester",
        Kind::Certificate => "id\tserial\tsubject\tnotAfter\tinstalled",
        Kind::Registration => "id\tstatus\tprotocol\tprofile\texpires",
    }
}

/// A time as every output of idsync prints it (RFC 3339, UTC).
fn rfc3339(t: time::OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_print_as_rfc3339_in_utc() {
        let t = time::macros::datetime!(2027-03-03 06:12:21 +02:00);
        assert_eq!(super::rfc3339(t), "2027-03-03T04:12:21Z");
    }
}
