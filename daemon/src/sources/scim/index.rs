//! Index planning: a filter whose equalities name indexed attributes is
//! answered from the store's indexes (a few candidates) instead of a scan
//! of every object. The filter is still evaluated on each candidate, so a
//! plan may be generous but never short.

use idsync_schema::scim::filter::{AttrPath, Filter};
use idsync_store::Store;
use uuid::Uuid;

use super::error::ScimError;
use super::resource::Resource;

/// Candidate ids for `f` from an index, when an index can answer it
/// (`None`: a scan is needed).
pub(crate) fn plan<R: Resource>(store: &Store, f: &Filter) -> Result<Option<Vec<Uuid>>, ScimError> {
    match f {
        // Either side narrows a conjunction.
        Filter::And(a, b) => match plan::<R>(store, a)? {
            Some(ids) => Ok(Some(ids)),
            None => plan::<R>(store, b),
        },
        // A disjunction needs both sides.
        Filter::Or(a, b) => match (plan::<R>(store, a)?, plan::<R>(store, b)?) {
            (Some(mut x), Some(y)) => {
                x.extend(
                    y.into_iter()
                        .filter(|id| !x.contains(id))
                        .collect::<Vec<_>>(),
                );
                Ok(Some(x))
            }
            _ => Ok(None),
        },
        // `emails[type eq "work" and value eq "x"]` (or Entra's
        // `emails[type eq "work"].value eq "x"`): `emails.value eq "x"`
        // narrows it.
        Filter::Complex(outer, inner) => match inner.as_ref() {
            Filter::And(a, b) => {
                match plan::<R>(store, &Filter::Complex(outer.clone(), a.clone()))? {
                    Some(ids) => Ok(Some(ids)),
                    None => plan::<R>(store, &Filter::Complex(outer.clone(), b.clone())),
                }
            }
            Filter::Compare(p, op, v) if p.urn.is_none() && p.sub.is_none() => {
                let within = AttrPath {
                    urn: outer.urn.clone(),
                    attr: outer.attr.clone(),
                    sub: Some(p.attr.clone()),
                };
                equality::<R>(store, &Filter::Compare(within, *op, v.clone()))
            }
            _ => Ok(None),
        },
        _ => equality::<R>(store, f),
    }
}

/// The candidates of one `attr eq value`.
fn equality<R: Resource>(store: &Store, f: &Filter) -> Result<Option<Vec<Uuid>>, ScimError> {
    let Some((path, value)) = f.equality() else {
        return Ok(None);
    };
    if path.urn.is_some() {
        return Ok(None);
    }
    let attr = path.dotted();
    if attr == "id" {
        return Ok(Some(Uuid::parse_str(value).ok().into_iter().collect()));
    }
    let indexes = R::indexes(&attr);
    if indexes.is_empty() {
        return Ok(None);
    }
    // The first index with a hit settles it.
    for index in indexes {
        if let Some(id) = store.lookup(*index, value)? {
            return Ok(Some(vec![id]));
        }
    }
    Ok(Some(Vec::new()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use idsync_schema::scim::filter;
    use idsync_schema::{Group, GroupInput, Source, Status, User, UserInput};
    use idsync_store::reconcile::{Reconciler, Settings, UserWrite};
    use idsync_store::{Actor, EngineKind, EngineOptions};

    use super::*;

    /// Equality filters on the indexed attributes are planned from an
    /// index (a candidate list, no scan); everything else needs a scan.
    #[test]
    fn equality_filters_use_the_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(Store::open(EngineKind::Redb, dir.path(), &EngineOptions::default()).unwrap());
        let rec = Reconciler::new(Arc::clone(&store), Settings::default()).unwrap();
        let mut tx = rec.begin(Source::Scim, Actor::default());
        let mut u = UserInput::new(Status::Active, "ann@example.org", "Smith");
        u.login_name = idsync_schema::Field::Set("ann".into());
        u.external_id = idsync_schema::Field::Set("E-1".into());
        let uid = tx.create_user(u, &UserWrite::default()).unwrap().id();
        let mut noise = UserInput::new(Status::Active, "bob@example.org", "B");
        noise.login_name = idsync_schema::Field::Set("bob".into());
        tx.create_user(noise, &UserWrite::default()).unwrap();
        let gid = tx.create_group(GroupInput::new("Admins")).unwrap().id();
        tx.commit().unwrap();

        let users = |f: &str| plan::<User>(&store, &filter::parse(f, 10).unwrap()).unwrap();
        for f in [
            r#"userName eq "ANN""#,
            r#"userName eq "ann@example.org""#,
            r#"emails.value eq "ann@example.org""#,
            r#"emails eq "Ann@Example.org""#,
            r#"externalId eq "E-1""#,
            &format!(r#"id eq "{uid}""#),
            r#"userName eq "ann" and active eq true"#,
            r#"name.familyName co "x" and userName eq "ann""#,
        ] {
            assert_eq!(users(f), Some(vec![uid]), "{f}");
        }
        assert_eq!(users(r#"userName eq "nobody""#), Some(vec![]));
        assert_eq!(
            users(r#"userName eq "ann" or userName eq "bob""#).map(|v| v.len()),
            Some(2)
        );
        let groups = |f: &str| plan::<Group>(&store, &filter::parse(f, 10).unwrap()).unwrap();
        assert_eq!(groups(r#"displayName eq "admins""#), Some(vec![gid]));
        for f in [
            r#"userName co "ann""#,
            r#"userName ne "ann""#,
            "userName pr",
            r#"userName eq "ann" or active eq true"#,
            r#"displayName eq "Ann""#,
            r#"not (userName eq "ann")"#,
        ] {
            assert_eq!(users(f), None, "{f}");
        }
    }
}
