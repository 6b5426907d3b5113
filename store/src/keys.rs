//! The key layout of the one keyspace. Every key idsync writes is built here,
//! so the layout can be read in one place:
//!
//! | prefix | key | value |
//! | --- | --- | --- |
//! | `o/u/`, `o/g/`, `o/a/`, `o/p/`, `o/r/`, `o/c/` | object id (16 bytes, UUIDv7) | object JSON (users, groups, assets, profiles, enrollment requests, certificates) |
//! | `i/u/mail/` | lower-cased mail | user id |
//! | `i/u/login/` | lower-cased loginName | user id |
//! | `i/u/ext/` | externalId | user id |
//! | `i/g/name/`, `i/g/ext/` | lower-cased displayName, externalId | group id |
//! | `i/a/name/` | lower-cased asset name | asset id |
//! | `i/a/prof/` | lower-cased profile name, `0x00`, asset id | empty |
//! | `i/p/name/` | lower-cased profile name | profile id |
//! | `i/gm/` | group id, user id | empty (membership) |
//! | `i/a/cert/` | asset id, certificate id | empty (the asset's certificates) |
//! | `i/e/chal/` | SCEP challenge SHA-256 (hex) | registration id |
//! | `i/e/acct/` | ACME account key thumbprint | registration id |
//! | `i/c/serial/` | lower-cased serial (hex), `0x00`, certificate id | empty |
//! | `i/r/txn/` | SHA-256 of the SCEP transactionID, request id | empty |
//! | `i/c/exp/` | not-after (Unix seconds, u64 big-endian), certificate id; unrevoked certificates only | empty |
//! | `i/r/new/` | request id with every bit inverted (newest first) | empty |
//! | `i/r/status/` | status, `/`, request id with every bit inverted | empty |
//! | `s/indexes` | — | the index layout version the store was last brought to (u32 big-endian) |
//! | `c/` | sequence number (u64 big-endian) | change event JSON |
//! | `s/head` | — | last sequence number (u64 big-endian) |
//! | `s/leader` | — | the leader's epoch (u64 big-endian), then its identity (UTF-8) |
//! | `s/import/` | file digest (hex) | import progress JSON |
//! | `s/conn/NAME/cursor` | — | last change delivered to connector NAME (u64 big-endian) |
//! | `s/conn/NAME/dead/` | sequence number (u64 big-endian) | parked change: error, attempts (JSON) |
//! | `s/conn/NAME/remote/` | object id (16 bytes) | the remote entry NAME manages for it (JSON: DN, entryUUID) |
//! | `s/conn/NAME/reconciled` | — | set once NAME's first full reconcile ran |
//!
//! The `s/conn/` keys are a connector's own delivery state: the runner
//! writes them directly, never through the reconciler (they are not
//! changes of objects and emit no events). Connector names are letters,
//! digits, `-` and `_`, so one connector's prefix never covers another's.
//!
//! Ids are UUIDv7, time-ordered, so new objects append to the B-tree instead
//! of splitting pages at random (about four times faster to write).

use idsync_schema::Kind;
use uuid::Uuid;

/// Prefix of all objects of `kind`.
pub fn object_prefix(kind: Kind) -> &'static [u8] {
    match kind {
        Kind::User => b"o/u/",
        Kind::Group => b"o/g/",
        Kind::Asset => b"o/a/",
        Kind::Profile => b"o/p/",
        Kind::Request => b"o/r/",
        Kind::Certificate => b"o/c/",
        Kind::Registration => b"o/e/",
    }
}

fn join(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + rest.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(rest);
    k
}

/// The key of one object.
pub fn object(kind: Kind, id: Uuid) -> Vec<u8> {
    join(object_prefix(kind), id.as_bytes())
}

/// The secondary indexes: each maps one attribute value to one object id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Index {
    UserMail,
    UserLogin,
    UserExternalId,
    GroupName,
    GroupExternalId,
    AssetName,
    ProfileName,
    /// SCEP registrations by the SHA-256 (hex) of their challenge.
    RegistrationChallenge,
    /// ACME registrations by their account key's JWK thumbprint.
    AcmeAccount,
}

impl Index {
    fn prefix(self) -> &'static [u8] {
        match self {
            Index::UserMail => b"i/u/mail/",
            Index::UserLogin => b"i/u/login/",
            Index::UserExternalId => b"i/u/ext/",
            Index::GroupName => b"i/g/name/",
            Index::GroupExternalId => b"i/g/ext/",
            Index::AssetName => b"i/a/name/",
            Index::ProfileName => b"i/p/name/",
            Index::RegistrationChallenge => b"i/e/chal/",
            Index::AcmeAccount => b"i/e/acct/",
        }
    }

    /// Whether values compare without regard to case (mail, names) or
    /// exactly (external ids, which the identity provider owns).
    fn folds_case(self) -> bool {
        !matches!(
            self,
            Index::UserExternalId
                | Index::GroupExternalId
                | Index::RegistrationChallenge
                | Index::AcmeAccount
        )
    }

    /// The attribute the index covers, as the documents name it.
    pub fn attribute(self) -> &'static str {
        match self {
            Index::UserMail => "mail",
            Index::UserLogin => "loginName",
            Index::UserExternalId | Index::GroupExternalId => "externalId",
            Index::GroupName => "displayName",
            Index::AssetName => "name",
            Index::ProfileName => "certificateProfile",
            Index::RegistrationChallenge => "challenge",
            Index::AcmeAccount => "account",
        }
    }

    /// Whether two values share one index entry (compared as the index
    /// compares them), without building either key.
    pub fn same_value(self, a: &str, b: &str) -> bool {
        if !self.folds_case() {
            a == b
        } else if a.is_ascii() && b.is_ascii() {
            a.eq_ignore_ascii_case(b)
        } else {
            a.to_lowercase() == b.to_lowercase()
        }
    }

    /// The index key for `value`.
    pub fn key(self, value: &str) -> Vec<u8> {
        if self.folds_case() {
            join(self.prefix(), value.to_lowercase().as_bytes())
        } else {
            join(self.prefix(), value.as_bytes())
        }
    }
}

/// Prefix of the assets that name profile `name`.
pub fn assets_of_profile_prefix(name: &str) -> Vec<u8> {
    let mut k = join(b"i/a/prof/", name.to_lowercase().as_bytes());
    k.push(0);
    k
}

/// Marks that asset `asset` names profile `name`.
pub fn asset_of_profile(name: &str, asset: Uuid) -> Vec<u8> {
    let mut k = assets_of_profile_prefix(name);
    k.extend_from_slice(asset.as_bytes());
    k
}

/// Prefix of the certificates issued for `asset`.
pub fn certificates_of_asset_prefix(asset: Uuid) -> Vec<u8> {
    join(b"i/a/cert/", asset.as_bytes())
}

/// Marks `certificate` as issued for `asset`.
pub fn certificate_of_asset(asset: Uuid, certificate: Uuid) -> Vec<u8> {
    let mut k = certificates_of_asset_prefix(asset);
    k.extend_from_slice(certificate.as_bytes());
    k
}

/// Prefix of the certificates whose serial is `serial` (hex, any case).
/// Serials are random, so one serial names one certificate of one CA; a
/// prefix rather than a unique entry keeps two CAs' equal serials apart.
pub fn certificates_of_serial_prefix(serial: &str) -> Vec<u8> {
    let mut k = join(b"i/c/serial/", serial.to_ascii_lowercase().as_bytes());
    k.push(0);
    k
}

/// Marks `certificate` as having `serial`.
pub fn certificate_of_serial(serial: &str, certificate: Uuid) -> Vec<u8> {
    let mut k = certificates_of_serial_prefix(serial);
    k.extend_from_slice(certificate.as_bytes());
    k
}

/// Prefix of the requests made under SCEP transactionID `transaction`.
/// The client picks it (any length, any bytes), so the key holds its
/// digest: fixed length, one transaction's prefix never covers another's.
pub fn requests_of_transaction_prefix(transaction: &str) -> Vec<u8> {
    use sha2::Digest as _;
    join(b"i/r/txn/", &sha2::Sha256::digest(transaction.as_bytes()))
}

/// Marks `request` as made under `transaction`.
pub fn request_of_transaction(transaction: &str, request: Uuid) -> Vec<u8> {
    let mut k = requests_of_transaction_prefix(transaction);
    k.extend_from_slice(request.as_bytes());
    k
}

/// Where the store notes the index layout it was brought to
/// ([`INDEX_LAYOUT`]); indexes added later are filled in for the objects
/// stored before them once, at the first start of the version adding them.
pub const INDEX_LAYOUT_KEY: &[u8] = b"s/indexes";

/// The index layout this version writes: 2 added the registration,
/// certificate-serial and SCEP-transaction indexes; 3 the requests'
/// newest-first and status indexes; 4 the certificates by expiry.
pub const INDEX_LAYOUT: u32 = 4;

/// Prefix of the unrevoked certificates by expiry, soonest first.
pub const CERTIFICATES_BY_EXPIRY: &[u8] = b"i/c/exp/";

/// Marks `certificate` (not revoked) as expiring at `not_after` (Unix
/// seconds; big-endian, so key order is expiry order).
pub fn certificate_expiry(not_after: i64, certificate: Uuid) -> Vec<u8> {
    let mut k = join(
        CERTIFICATES_BY_EXPIRY,
        &(not_after.max(0) as u64).to_be_bytes(),
    );
    k.extend_from_slice(certificate.as_bytes());
    k
}

/// The expiry (Unix seconds) and certificate of a [`certificate_expiry`] key.
pub fn expiry_of(key: &[u8]) -> Option<(i64, Uuid)> {
    let rest = key.strip_prefix(CERTIFICATES_BY_EXPIRY)?;
    let (at, id) = rest.split_at_checked(8)?;
    let at = u64::from_be_bytes(at.try_into().ok()?);
    Some((i64::try_from(at).ok()?, Uuid::from_slice(id).ok()?))
}

/// Prefix of the enrollment requests newest first: all of them, or those
/// in `status` (a status name: lower-case letters and `_`).
pub fn requests_newest_prefix(status: Option<&str>) -> Vec<u8> {
    match status {
        None => b"i/r/new/".to_vec(),
        Some(s) => [b"i/r/status/", s.as_bytes(), b"/"].concat(),
    }
}

/// Request `id`'s place among the newest (in `status`): its id with every
/// bit inverted, so that key order, which is id order for UUIDv7 ids and
/// so creation order, runs newest first in a forward scan.
pub fn request_newest(status: Option<&str>, id: Uuid) -> Vec<u8> {
    let mut k = requests_newest_prefix(status);
    k.extend(id.as_bytes().iter().map(|b| !b));
    k
}

/// The request id at the end of a [`request_newest`] key.
pub fn newest_request_id(key: &[u8]) -> Option<Uuid> {
    let start = key.len().checked_sub(16)?;
    let inverted: Vec<u8> = key[start..].iter().map(|b| !b).collect();
    Uuid::from_slice(&inverted).ok()
}

/// Prefix of the members of `group`.
pub fn members_prefix(group: Uuid) -> Vec<u8> {
    join(b"i/gm/", group.as_bytes())
}

/// Marks `user` as a member of `group`.
pub fn membership(group: Uuid, user: Uuid) -> Vec<u8> {
    let mut k = members_prefix(group);
    k.extend_from_slice(user.as_bytes());
    k
}

/// Prefix of the change log.
pub const CHANGE_PREFIX: &[u8] = b"c/";

/// The key of change `seq`.
pub fn change(seq: u64) -> Vec<u8> {
    join(CHANGE_PREFIX, &seq.to_be_bytes())
}

/// Where the last sequence number is kept.
pub const HEAD: &[u8] = b"s/head";

/// The sequence number a [`HEAD`] value holds (u64 big-endian).
pub fn head_value(v: &[u8]) -> Option<u64> {
    v.try_into().ok().map(u64::from_be_bytes)
}

/// The head a read of `s/head` gives: 0 for an empty log (no value, or
/// one that is not a head).
pub fn head_or_zero(stored: Option<&[u8]>) -> u64 {
    stored.and_then(head_value).unwrap_or(0)
}

/// Who leads the replicas on the store's database, and since which
/// election: the epoch (u64 big-endian, one more at every election), then
/// the winner's identity (UTF-8: `replicas.node_name`, or host, pid and
/// admin address). The one process of an embedded store takes an epoch
/// when its daemon starts. Every connector save expects the exact value
/// its leader wrote when it won ([`crate::leadership`]), so a leader
/// that lost its place can no longer move a cursor.
pub const LEADER: &[u8] = b"s/leader";

/// The [`LEADER`] value of epoch `epoch` won by `identity`.
pub fn leader_value(epoch: u64, identity: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + identity.len());
    v.extend_from_slice(&epoch.to_be_bytes());
    v.extend_from_slice(identity.as_bytes());
    v
}

/// The epoch and the identity a [`LEADER`] value holds.
pub fn leader_of(v: &[u8]) -> Option<(u64, String)> {
    let (epoch, identity) = v.split_at_checked(8)?;
    let epoch = u64::from_be_bytes(epoch.try_into().ok()?);
    Some((epoch, String::from_utf8_lossy(identity).into_owned()))
}

/// Prefix of drop-folder claims: which process imports a file in a
/// shared drop folder's `.work/` ([`crate::claims`]).
pub const CLAIM_PREFIX: &[u8] = b"s/claim/";

/// The claim of claimed file `name` (`FOLDER/.work NAME`, see
/// [`crate::claims`]).
pub fn claim(name: &str) -> Vec<u8> {
    join(CLAIM_PREFIX, name.as_bytes())
}

/// Prefix of the digest locks of imports under a claim: one import of a
/// given content at a time across replicas, since its progress record is
/// keyed by the digest.
pub const CLAIMED_DIGEST_PREFIX: &[u8] = b"s/claimdigest/";

/// The digest lock of content `digest` (hex).
pub fn claimed_digest(digest: &str) -> Vec<u8> {
    join(CLAIMED_DIGEST_PREFIX, digest.as_bytes())
}

/// Prefix of the replicas' heartbeats: each daemon on a shared store
/// rewrites its own every half `replicas.failover_ms`, so the others can
/// tell a gone one's claims ([`crate::claims`]).
pub const BEAT_PREFIX: &[u8] = b"s/beat/";

/// The heartbeat of node `node`.
pub fn beat(node: &str) -> Vec<u8> {
    join(BEAT_PREFIX, node.as_bytes())
}

/// Prefix of import progress records.
pub const IMPORT_PREFIX: &[u8] = b"s/import/";

/// The progress record of the file with `digest` (hex).
pub fn import_progress(digest: &str) -> Vec<u8> {
    join(IMPORT_PREFIX, digest.as_bytes())
}

/// Prefix of all delivery state of connector `name`.
pub fn connector_prefix(name: &str) -> Vec<u8> {
    let mut k = join(b"s/conn/", name.as_bytes());
    k.push(b'/');
    k
}

/// Where connector `name` keeps its cursor.
pub fn connector_cursor(name: &str) -> Vec<u8> {
    join(&connector_prefix(name), b"cursor")
}

/// Where connector `name` notes that its first full reconcile ran.
pub fn connector_reconciled(name: &str) -> Vec<u8> {
    join(&connector_prefix(name), b"reconciled")
}

/// Prefix of connector `name`'s dead-letter list.
pub fn connector_dead_prefix(name: &str) -> Vec<u8> {
    join(&connector_prefix(name), b"dead/")
}

/// The dead letter of change `seq` for connector `name`.
pub fn connector_dead(name: &str, seq: u64) -> Vec<u8> {
    join(&connector_dead_prefix(name), &seq.to_be_bytes())
}

/// Prefix of the remote entries connector `name` manages.
pub fn connector_remote_prefix(name: &str) -> Vec<u8> {
    join(&connector_prefix(name), b"remote/")
}

/// The remote entry connector `name` manages for object `id`.
pub fn connector_remote(name: &str, id: Uuid) -> Vec<u8> {
    join(&connector_remote_prefix(name), id.as_bytes())
}

/// The id at the end of an index or membership key, or in an index value.
pub fn trailing_id(bytes: &[u8]) -> Option<Uuid> {
    let start = bytes.len().checked_sub(16)?;
    Uuid::from_slice(&bytes[start..]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_by_expiry_sort_soonest_first() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let soon = certificate_expiry(1_800_000_000, b);
        let later = certificate_expiry(1_900_000_000, a);
        assert!(soon < later);
        assert_eq!(expiry_of(&later), Some((1_900_000_000, a)));
        assert_eq!(expiry_of(b"i/c/exp/short"), None);
    }

    #[test]
    fn requests_list_newest_first_and_by_status() {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let mut keyed: Vec<Vec<u8>> = ids.iter().map(|id| request_newest(None, *id)).collect();
        keyed.sort();
        let back: Vec<Uuid> = keyed.iter().filter_map(|k| newest_request_id(k)).collect();
        assert_eq!(back, ids.iter().rev().copied().collect::<Vec<_>>());
        let k = request_newest(Some("approved"), ids[0]);
        assert!(k.starts_with(&requests_newest_prefix(Some("approved"))));
        assert!(!k.starts_with(&requests_newest_prefix(None)));
        assert!(!request_newest(Some("failed"), ids[0])
            .starts_with(&requests_newest_prefix(Some("fail"))));
    }

    #[test]
    fn prefixes_do_not_overlap() {
        // `i/a/prof/web` must not list the assets of profile `web2`.
        let a = Uuid::now_v7();
        assert!(!asset_of_profile("web2", a).starts_with(&assets_of_profile_prefix("web")));
        assert!(asset_of_profile("Web", a).starts_with(&assets_of_profile_prefix("web")));
        assert!(!object(Kind::User, a).starts_with(object_prefix(Kind::Group)));
        assert!(!certificate_of_serial("0a1", a).starts_with(&certificates_of_serial_prefix("0a")));
        assert!(certificate_of_serial("0A1", a).starts_with(&certificates_of_serial_prefix("0a1")));
        assert!(!request_of_transaction("t1", a).starts_with(&requests_of_transaction_prefix("t")));
    }

    #[test]
    fn connector_state_stays_under_its_own_prefix() {
        let id = Uuid::now_v7();
        assert!(connector_remote("a", id).starts_with(&connector_prefix("a")));
        assert!(!connector_dead("a-b", 1).starts_with(&connector_prefix("a")));
        assert!(!connector_cursor("a").starts_with(IMPORT_PREFIX));
        assert!(connector_dead("a", 255) < connector_dead("a", 256));
    }

    #[test]
    fn leader_values_read_back() {
        let v = leader_value(7, "db1 pid 42");
        assert_eq!(leader_of(&v), Some((7, "db1 pid 42".to_owned())));
        assert_eq!(leader_of(&leader_value(1, "")), Some((1, String::new())));
        assert_eq!(leader_of(b"short"), None);
        assert_ne!(leader_value(7, "a"), leader_value(8, "a"));
    }

    #[test]
    fn change_keys_sort_by_sequence() {
        assert!(change(255) < change(256));
        assert!(change(1) < change(u64::MAX));
    }

    #[test]
    fn mail_is_case_insensitive_external_id_is_not() {
        assert_eq!(
            Index::UserMail.key("A@X.org"),
            Index::UserMail.key("a@x.ORG")
        );
        assert_ne!(
            Index::UserExternalId.key("Ab"),
            Index::UserExternalId.key("ab")
        );
    }
}
