//! Reading ahead: what a chunk of import rows will look up, fetched in two
//! round trips (the index entries, then the objects they name) before the
//! rows are applied one by one.
//!
//! Only for an engine whose every read is a round trip (PostgreSQL): there
//! a CSV import waited for two or three of them a row, most of its time.
//! An embedded engine answers a look-up in less time than a batch takes to
//! assemble, so [`Tx::read_ahead`] does nothing there.
//!
//! What was read ahead is only a faster way to the store's answer: reads
//! still look at the queued writes and the batch in flight first, and a
//! batch that lands takes its keys out of what was read ahead (the store
//! changed there, and nowhere else: the writer lock is held).

use idsync_schema::{AssetInput, GroupInput, Kind, UserInput};

use super::{Tx, UserWrite};
use crate::keys::{self, Index};
use crate::StoreError;

/// A row about to be applied, as [`Tx::read_ahead`] needs to see it.
#[derive(Clone, Copy)]
pub enum Planned<'a> {
    User(&'a UserInput, &'a UserWrite),
    Group(&'a GroupInput),
    Asset(&'a AssetInput),
}

impl Index {
    /// The kind of object the index maps values to.
    fn kind(self) -> Kind {
        match self {
            Index::UserMail | Index::UserLogin | Index::UserExternalId => Kind::User,
            Index::GroupName | Index::GroupExternalId => Kind::Group,
            Index::AssetName => Kind::Asset,
            Index::ProfileName => Kind::Profile,
            Index::RegistrationChallenge | Index::AcmeAccount => Kind::Registration,
        }
    }
}

impl Tx<'_> {
    /// Fetch what applying `rows` will read, in two round trips, so that
    /// applying them waits for none. Replaces what an earlier call read
    /// ahead (its rows are applied by now): memory stays one chunk's.
    pub fn read_ahead(&mut self, rows: &[Planned<'_>]) -> Result<(), StoreError> {
        self.forget_read_ahead();
        if !self.store().is_remote() {
            return Ok(());
        }
        let lookups: Vec<(Index, &str)> = rows.iter().flat_map(|row| lookups_of(*row)).collect();
        let index_keys: Vec<Vec<u8>> = lookups.iter().map(|(i, v)| i.key(v)).collect();
        self.fetch(&index_keys)?;
        let mut object_keys = Vec::new();
        for ((index, _), key) in lookups.iter().zip(&index_keys) {
            if let Some(id) = self.read(key)?.as_deref().and_then(keys::trailing_id) {
                object_keys.push(keys::object(index.kind(), id));
            }
        }
        for row in rows {
            if let Planned::Asset(AssetInput { id: Some(id), .. }) = row {
                object_keys.push(keys::object(Kind::Asset, *id));
            }
        }
        self.fetch(&object_keys)
    }
}

/// The index look-ups applying `row` makes: the match key, the unique
/// attributes, the groups named (users); the name, the externalId and the
/// members (groups); the name and the profile (assets).
fn lookups_of(row: Planned<'_>) -> Vec<(Index, &str)> {
    let mut out = Vec::new();
    match row {
        Planned::User(u, _) => {
            // Whichever is the match key, the others are checked unique.
            let unique = [
                (Index::UserMail, &u.mail),
                (Index::UserLogin, &u.login_name),
                (Index::UserExternalId, &u.external_id),
            ];
            out.extend(
                unique
                    .into_iter()
                    .filter_map(|(i, f)| f.value().map(|v| (i, v.as_str()))),
            );
            if let Some(groups) = u.groups.value() {
                out.extend(groups.iter().map(|g| (Index::GroupName, g.as_str())));
            }
        }
        Planned::Group(g) => {
            out.push((Index::GroupName, g.display_name.as_str()));
            if let Some(ext) = g.external_id.value() {
                out.push((Index::GroupExternalId, ext.as_str()));
            }
            // A member is named by mail or loginName: either may be asked.
            for m in g.members.value().into_iter().flatten() {
                out.push((Index::UserMail, m.as_str()));
                out.push((Index::UserLogin, m.as_str()));
            }
        }
        Planned::Asset(a) => {
            out.push((Index::AssetName, a.name.as_str()));
            if let Some(p) = a.certificate_profile.value() {
                out.push((Index::ProfileName, p.as_str()));
            }
        }
    }
    out
}
