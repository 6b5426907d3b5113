//! The reconciler's stored kinds: what each contributes to a write.
//!
//! The generic write path (`write`) needs, of every object it stores, its
//! id, its meta (version, timestamps) and the keys that point at it; this
//! trait is that contract, so one diff of old and new keys keeps indexes
//! and relations right for every kind.

use idsync_schema::{
    Asset, Certificate, CertificateProfile, EnrollmentRequest, Group, Kind, Meta, Registration,
    User,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use crate::keys::{self, Index};

/// An object the reconciler stores: how to find its id, meta and the index
/// entries that point at it.
pub(super) trait Stored: Serialize + DeserializeOwned + Clone + PartialEq {
    const KIND: Kind;
    fn id(&self) -> Uuid;
    fn meta_mut(&mut self) -> &mut Meta;
    /// Unique index entries: index key → this object's id.
    fn index_keys(&self) -> Vec<Vec<u8>>;
    /// Marker keys (empty values) that relate this object to others.
    fn marker_keys(&self) -> Vec<Vec<u8>> {
        Vec::new()
    }
    /// The index entry that also carries the [`InputDigest`] of the source
    /// input that made this version (users: the mail entry).
    fn digest_key(&self) -> Option<Vec<u8>> {
        None
    }
}

/// A digest of an upsert's input (with what else decides its result: the
/// resolved groups, the source, the folder's options), kept in front of the
/// id in the object's [`Stored::digest_key`] entry by the write that applied
/// it. Every write of the object rewrites that entry, with its own digest or
/// none, so an entry that holds the digest of the input at hand means that
/// input was the last thing applied and nothing changed the object since:
/// applying it again (idempotent) would change nothing. That is how an
/// unchanged row of a re-import costs one index read instead of an index
/// read, an object read and a decode.
pub(super) type InputDigest = [u8; 16];

/// Every kind keeps its id and meta in fields of those names; the macro
/// spells that once and takes the keys, which differ.
macro_rules! stored {
    ($ty:ty, $kind:expr, { $($keys:tt)* }) => {
        impl Stored for $ty {
            const KIND: Kind = $kind;
            fn id(&self) -> Uuid {
                self.id
            }
            fn meta_mut(&mut self) -> &mut Meta {
                &mut self.meta
            }
            $($keys)*
        }
    };
}

stored!(User, Kind::User, {
    fn index_keys(&self) -> Vec<Vec<u8>> {
        let mut k: Vec<Vec<u8>> = self
            .mail
            .as_deref()
            .map(|m| Index::UserMail.key(m))
            .into_iter()
            .collect();
        k.extend(self.login_name.as_deref().map(|v| Index::UserLogin.key(v)));
        k.extend(
            self.external_id
                .as_deref()
                .map(|v| Index::UserExternalId.key(v)),
        );
        k
    }
    fn marker_keys(&self) -> Vec<Vec<u8>> {
        self.groups
            .iter()
            .map(|g| keys::membership(*g, self.id))
            .collect()
    }
    fn digest_key(&self) -> Option<Vec<u8>> {
        self.mail.as_deref().map(|m| Index::UserMail.key(m))
    }
});

stored!(Group, Kind::Group, {
    fn index_keys(&self) -> Vec<Vec<u8>> {
        let mut k = vec![Index::GroupName.key(&self.display_name)];
        k.extend(
            self.external_id
                .as_deref()
                .map(|v| Index::GroupExternalId.key(v)),
        );
        k
    }
});

stored!(Asset, Kind::Asset, {
    fn index_keys(&self) -> Vec<Vec<u8>> {
        vec![Index::AssetName.key(&self.name)]
    }
    fn marker_keys(&self) -> Vec<Vec<u8>> {
        self.certificate_profile
            .iter()
            .map(|p| keys::asset_of_profile(p, self.id))
            .collect()
    }
});

stored!(CertificateProfile, Kind::Profile, {
    fn index_keys(&self) -> Vec<Vec<u8>> {
        vec![Index::ProfileName.key(&self.name)]
    }
});

stored!(EnrollmentRequest, Kind::Request, {
    fn index_keys(&self) -> Vec<Vec<u8>> {
        Vec::new()
    }
    fn marker_keys(&self) -> Vec<Vec<u8>> {
        let newest =
            [None, Some(self.status.as_str())].map(|status| keys::request_newest(status, self.id));
        self.transaction
            .iter()
            .map(|t| keys::request_of_transaction(t, self.id))
            .chain(newest)
            .collect()
    }
});

stored!(Registration, Kind::Registration, {
    fn index_keys(&self) -> Vec<Vec<u8>> {
        let mut k: Vec<Vec<u8>> = self
            .challenge_sha256
            .iter()
            .map(|c| Index::RegistrationChallenge.key(c))
            .collect();
        k.extend(
            self.account
                .iter()
                .map(|a| Index::AcmeAccount.key(&a.thumbprint)),
        );
        k
    }
});

stored!(Certificate, Kind::Certificate, {
    fn index_keys(&self) -> Vec<Vec<u8>> {
        Vec::new()
    }
    fn marker_keys(&self) -> Vec<Vec<u8>> {
        let mut k: Vec<Vec<u8>> = self
            .asset
            .iter()
            .map(|a| keys::certificate_of_asset(*a, self.id))
            .collect();
        k.push(keys::certificate_of_serial(&self.serial, self.id));
        if self.revoked.is_none() {
            let expiry = self.not_after.unix_timestamp();
            k.push(keys::certificate_expiry(expiry, self.id));
        }
        k
    }
});
