//! The reconciler: the one write path of idsync.
//!
//! A CSV row, a SCIM request and an API call all end here as an upsert of a
//! [`UserInput`], [`GroupInput`] or [`AssetInput`]. The reconciler matches
//! the existing object, checks what needs the store (uniqueness, groups that
//! must exist, profiles), builds the new version and, when something really
//! changed, queues the object, its index entries and a change-log event.
//! [`Tx::commit`] writes everything queued as one atomic engine batch.
//!
//! Writers are serialised by one lock held for the life of a [`Tx`]: that is
//! what makes the change log gap-free and the read-check-write of uniqueness
//! safe. Batching many rows into one `Tx` is how imports amortise the commit.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;

use idsync_schema::rules::MAX_GROUPS;
use idsync_schema::{
    Asset, AssetInput, AssetState, Certificate, CertificateProfile, EnrollmentRequest, Field,
    Group, GroupInput, Kind, Meta, ProfileSettings, ProfileState, Rule, Source, Status, User,
    UserInput, UserRules, Violation,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::engine::{Batch, Reader};
use crate::keys::{self, Index};
use crate::{Actor, ChangeEvent, EngineError, Operation, Store, StoreError};

/// Which attribute identifies an existing user (seed 001: the mail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum UserMatch {
    #[default]
    #[serde(rename = "mail")]
    Mail,
    #[serde(rename = "loginName")]
    LoginName,
    #[serde(rename = "externalId")]
    ExternalId,
}

/// What the reconciler needs to know of the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub user_match: UserMatch,
    /// Roles every new user gets (seed 001).
    pub default_roles: Vec<String>,
    pub rules: UserRules,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            user_match: UserMatch::Mail,
            default_roles: ["Self-Service", "Operator", "Approval"]
                .map(String::from)
                .to_vec(),
            rules: UserRules::default(),
        }
    }
}

/// Options of one user write that depend on where it came from.
#[derive(Debug, Clone, Default)]
pub struct UserWrite {
    /// The application the user is imported for (seed 003); added to the
    /// user's applications.
    pub application: Option<String>,
    /// Forces the end state (seed 001's option) instead of the `status` given.
    pub end_state: Option<Status>,
    /// Overrides the configured match key (a folder's option).
    pub match_key: Option<UserMatch>,
}

/// What an upsert did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created(Uuid),
    /// The id and the attributes that changed.
    Updated(Uuid, Vec<String>),
    Unchanged(Uuid),
}

impl Outcome {
    /// The object's id.
    pub fn id(&self) -> Uuid {
        match self {
            Outcome::Created(id) | Outcome::Updated(id, _) | Outcome::Unchanged(id) => *id,
        }
    }
}

/// Why an upsert did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The input broke a rule: refuse this object, carry on with others.
    #[error(transparent)]
    Rejected(#[from] Violation),
    /// The store failed: stop.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An object the reconciler stores: how to find its id, meta and the index
/// entries that point at it.
trait Stored: Serialize + DeserializeOwned + Clone + PartialEq {
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
type InputDigest = [u8; 16];

impl Stored for User {
    const KIND: Kind = Kind::User;
    fn id(&self) -> Uuid {
        self.id
    }
    fn meta_mut(&mut self) -> &mut Meta {
        &mut self.meta
    }
    fn index_keys(&self) -> Vec<Vec<u8>> {
        let mut k = vec![Index::UserMail.key(&self.mail)];
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
        Some(Index::UserMail.key(&self.mail))
    }
}

impl Stored for Group {
    const KIND: Kind = Kind::Group;
    fn id(&self) -> Uuid {
        self.id
    }
    fn meta_mut(&mut self) -> &mut Meta {
        &mut self.meta
    }
    fn index_keys(&self) -> Vec<Vec<u8>> {
        let mut k = vec![Index::GroupName.key(&self.display_name)];
        k.extend(
            self.external_id
                .as_deref()
                .map(|v| Index::GroupExternalId.key(v)),
        );
        k
    }
}

impl Stored for Asset {
    const KIND: Kind = Kind::Asset;
    fn id(&self) -> Uuid {
        self.id
    }
    fn meta_mut(&mut self) -> &mut Meta {
        &mut self.meta
    }
    fn index_keys(&self) -> Vec<Vec<u8>> {
        vec![Index::AssetName.key(&self.name)]
    }
    fn marker_keys(&self) -> Vec<Vec<u8>> {
        self.certificate_profile
            .iter()
            .map(|p| keys::asset_of_profile(p, self.id))
            .collect()
    }
}

impl Stored for CertificateProfile {
    const KIND: Kind = Kind::Profile;
    fn id(&self) -> Uuid {
        self.id
    }
    fn meta_mut(&mut self) -> &mut Meta {
        &mut self.meta
    }
    fn index_keys(&self) -> Vec<Vec<u8>> {
        vec![Index::ProfileName.key(&self.name)]
    }
}

impl Stored for EnrollmentRequest {
    const KIND: Kind = Kind::Request;
    fn id(&self) -> Uuid {
        self.id
    }
    fn meta_mut(&mut self) -> &mut Meta {
        &mut self.meta
    }
    fn index_keys(&self) -> Vec<Vec<u8>> {
        Vec::new()
    }
}

impl Stored for Certificate {
    const KIND: Kind = Kind::Certificate;
    fn id(&self) -> Uuid {
        self.id
    }
    fn meta_mut(&mut self) -> &mut Meta {
        &mut self.meta
    }
    fn index_keys(&self) -> Vec<Vec<u8>> {
        Vec::new()
    }
    fn marker_keys(&self) -> Vec<Vec<u8>> {
        self.asset
            .iter()
            .map(|a| keys::certificate_of_asset(*a, self.id))
            .collect()
    }
}

/// The attributes whose serialised value differs (meta aside).
fn changed_fields<T: Serialize>(old: &T, new: &T) -> Vec<String> {
    let (Ok(serde_json::Value::Object(old)), Ok(serde_json::Value::Object(new))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return Vec::new();
    };
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    names
        .into_iter()
        .filter(|k| k.as_str() != "meta" && old.get(*k) != new.get(*k))
        .cloned()
        .collect()
}

/// The single writer. Share it as `Arc<Reconciler>`.
pub struct Reconciler {
    store: Arc<Store>,
    /// Swapped whole on a configuration reload; a transaction keeps the
    /// settings it started with.
    settings: RwLock<Arc<Settings>>,
    /// The next sequence number; the mutex is the writer lock.
    next_seq: Mutex<u64>,
    /// Writers blocked in [`Reconciler::begin`]: a long import gives way to
    /// them between batches (see [`Reconciler::give_way`]).
    waiting: AtomicUsize,
}

impl Reconciler {
    /// A reconciler over `store`, continuing its change log.
    pub fn new(store: Arc<Store>, settings: Settings) -> Result<Self, StoreError> {
        let next = store.head()? + 1;
        Ok(Self {
            store,
            settings: RwLock::new(Arc::new(settings)),
            next_seq: Mutex::new(next),
            waiting: AtomicUsize::new(0),
        })
    }

    /// The store it writes to (for reads).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Its current settings.
    pub fn settings(&self) -> Arc<Settings> {
        Arc::clone(&self.settings.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Replace the settings (a configuration reload). Transactions already
    /// open keep the old ones.
    pub fn set_settings(&self, settings: Settings) {
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(settings);
    }

    /// Whether another writer waits for the lock.
    pub fn others_waiting(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
    }

    /// Let the writers waiting now go first. Called by a long writer (an
    /// import) between two of its transactions, with no transaction open:
    /// the mutex is not fair, so without this the import would take it back
    /// at once and a SCIM request could wait for a whole file.
    pub fn give_way(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while self.others_waiting() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
    }

    /// Start a transaction: everything it queues commits together or not at
    /// all. Blocks while another transaction is open.
    pub fn begin(&self, source: Source, actor: Actor) -> Tx<'_> {
        // A panic in another writer cannot leave a half-written batch (the
        // engine batch is atomic), so a poisoned lock is safe to take over;
        // the sequence number it guards only moves after a commit.
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let guard = self.next_seq.lock().unwrap_or_else(|p| p.into_inner());
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let next_seq = *guard;
        Tx {
            guard,
            store: &self.store,
            settings: self.settings(),
            overlay: HashMap::new(),
            inflight: None,
            reader: RefCell::new(None),
            next_seq,
            events: 0,
            source,
            actor,
            now: OffsetDateTime::now_utc(),
            undo: Vec::new(),
            recording: false,
        }
    }
}

/// One queued write: the value (`None`: delete).
type Queued = Option<Vec<u8>>;

/// Queued writes: key → value (`None`: delete).
type Overlay = HashMap<Vec<u8>, Queued>;

/// A batch handed to the committer thread and not yet known to be durable.
struct Inflight {
    overlay: Arc<Overlay>,
    /// The next sequence number once this batch is durable.
    next_seq: u64,
    handle: JoinHandle<Result<(), EngineError>>,
}

/// An open write transaction. Dropping it without [`Tx::commit`] discards
/// everything it queued (but a batch already handed over by
/// [`Tx::commit_pipelined`] still lands).
pub struct Tx<'r> {
    guard: MutexGuard<'r, u64>,
    store: &'r Arc<Store>,
    settings: Arc<Settings>,
    /// Queued writes. Reads see them first, then the in-flight batch, then
    /// the store.
    overlay: Overlay,
    inflight: Option<Inflight>,
    /// A snapshot of the store for look-ups, opened on first use and
    /// dropped when a commit lands (it would not see it).
    reader: RefCell<Option<Box<dyn Reader + 'r>>>,
    next_seq: u64,
    events: u64,
    source: Source,
    actor: Actor,
    now: OffsetDateTime,
    /// Previous overlay entries of the keys queued since the first
    /// [`Tx::savepoint`], newest last (empty until one is taken).
    undo: Vec<(Vec<u8>, Option<Queued>)>,
    recording: bool,
}

/// A point a [`Tx`] can roll back to: everything queued after it is
/// forgotten, what was queued before stays (one request of a shared batch
/// failing leaves the others intact).
#[derive(Debug, Clone, Copy)]
pub struct Savepoint {
    next_seq: u64,
    events: u64,
    undo_len: usize,
}

/// What a commit wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    /// Change events written.
    pub events: u64,
    /// The change log's head after the commit.
    pub head: u64,
}

impl<'r> Tx<'r> {
    /// Set the file line recorded in the events that follow.
    pub fn set_line(&mut self, line: Option<u64>) {
        self.actor.line = line;
    }

    /// Change events queued so far.
    pub fn pending_events(&self) -> u64 {
        self.events
    }

    /// Queue the progress record of the import of the file with `digest`
    /// (hex), committed with the rows it counts: that is what lets a
    /// crashed import resume at its first uncommitted row.
    pub fn save_import_progress<P: Serialize>(&mut self, digest: &str, progress: &P) {
        let value = serde_json::to_vec(progress).expect("progress records serialise");
        self.queue(keys::import_progress(digest), Some(value));
    }

    /// Queue forgetting the progress record of the file with `digest`.
    pub fn forget_import_progress(&mut self, digest: &str) {
        self.queue(keys::import_progress(digest), None);
    }

    /// Queue one write, remembering what it replaces once a savepoint
    /// exists.
    fn queue(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        if self.recording {
            let previous = self.overlay.insert(key.clone(), value);
            self.undo.push((key, previous));
        } else {
            self.overlay.insert(key, value);
        }
    }

    /// Mark the current point; [`Tx::rollback_to`] forgets what follows.
    pub fn savepoint(&mut self) -> Savepoint {
        self.recording = true;
        Savepoint {
            next_seq: self.next_seq,
            events: self.events,
            undo_len: self.undo.len(),
        }
    }

    /// Forget everything queued since `sp`.
    pub fn rollback_to(&mut self, sp: Savepoint) {
        while self.undo.len() > sp.undo_len {
            let Some((key, previous)) = self.undo.pop() else {
                break;
            };
            match previous {
                Some(v) => self.overlay.insert(key, v),
                None => self.overlay.remove(&key),
            };
        }
        self.next_seq = sp.next_seq;
        self.events = sp.events;
    }

    /// Record the changes that follow as coming from `source` (a shared
    /// batch of the writer mixes sources).
    pub fn set_source(&mut self, source: Source) {
        self.source = source;
    }

    /// Record the changes that follow as made by `actor` (each request of
    /// a shared batch has its own).
    pub fn set_actor(&mut self, actor: Actor) {
        self.actor = actor;
    }

    fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.overlay.get(key) {
            return Ok(v.clone());
        }
        if let Some(v) = self.inflight.as_ref().and_then(|i| i.overlay.get(key)) {
            return Ok(v.clone());
        }
        let mut reader = self.reader.borrow_mut();
        if reader.is_none() {
            *reader = Some(self.store.engine().reader()?);
        }
        Ok(reader.as_ref().expect("just opened").get(key)?)
    }

    fn load<T: Stored>(&self, id: Uuid) -> Result<Option<T>, StoreError> {
        let key = keys::object(T::KIND, id);
        match self.read(&key)? {
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        key: String::from_utf8_lossy(&key).into_owned(),
                        message: e.to_string(),
                    })
            }
            None => Ok(None),
        }
    }

    /// The id `index` maps `value` to, as this transaction sees it.
    pub fn lookup(&self, index: Index, value: &str) -> Result<Option<Uuid>, StoreError> {
        Ok(self
            .read(&index.key(value))?
            .and_then(|v| keys::trailing_id(&v)))
    }

    /// Keys under `prefix`, the store's merged with what this Tx queued.
    fn keys_under(&self, prefix: &[u8]) -> Result<BTreeSet<Vec<u8>>, StoreError> {
        let mut found = BTreeSet::new();
        self.store.scan(prefix, |k, _| {
            found.insert(k.to_vec());
            Ok(true)
        })?;
        let inflight = self.inflight.iter().flat_map(|i| i.overlay.iter());
        for (k, v) in inflight.chain(&self.overlay) {
            if k.starts_with(prefix) {
                match v {
                    Some(_) => found.insert(k.clone()),
                    None => found.remove(k),
                };
            }
        }
        Ok(found)
    }

    /// Refuse `value` for `index` when another object than `id` holds it.
    fn check_unique(&self, index: Index, value: &str, id: Uuid) -> Result<(), WriteError> {
        match self.lookup(index, value)? {
            Some(other) if other != id => {
                Err(Violation::new(index.attribute(), value, Rule::NotUnique).into())
            }
            _ => Ok(()),
        }
    }

    /// Queue `new` (replacing `old`) with its indexes and a change event;
    /// nothing at all when it equals `old`.
    fn write<T: Stored>(&mut self, old: Option<&T>, new: T) -> Result<Outcome, StoreError> {
        self.write_digested(old, new, None)
    }

    /// [`Tx::write`] of the result of an input with `digest`.
    fn write_digested<T: Stored>(
        &mut self,
        old: Option<&T>,
        new: T,
        digest: Option<&InputDigest>,
    ) -> Result<Outcome, StoreError> {
        if old == Some(&new) {
            return Ok(Outcome::Unchanged(new.id()));
        }
        self.emit_digested(old, new, &[], digest)
    }

    /// Queue `new` and its event even when only `extra` changed (a group
    /// whose members, kept on the users, changed: its version moves).
    fn emit<T: Stored>(
        &mut self,
        old: Option<&T>,
        new: T,
        extra: &[&str],
    ) -> Result<Outcome, StoreError> {
        self.emit_digested(old, new, extra, None)
    }

    fn emit_digested<T: Stored>(
        &mut self,
        old: Option<&T>,
        mut new: T,
        extra: &[&str],
        digest: Option<&InputDigest>,
    ) -> Result<Outcome, StoreError> {
        let id = new.id();
        let (operation, changed) = match old {
            Some(old) => {
                new.meta_mut().bump(self.now);
                let mut changed = changed_fields(old, &new);
                changed.extend(extra.iter().map(|s| s.to_string()));
                (Operation::Updated, changed)
            }
            None => {
                *new.meta_mut() = Meta::new(self.now);
                (Operation::Created, Vec::new())
            }
        };
        let version = new.meta_mut().version;
        let json = serde_json::to_string(&new).expect("domain objects serialise");

        let old_index = old.map(Stored::index_keys).unwrap_or_default();
        let new_index = new.index_keys();
        for k in old_index.iter().filter(|k| !new_index.contains(k)) {
            self.queue(k.clone(), None);
        }
        // Entries the old version already had point here already, but the
        // digest entry is rewritten on every write (see `InputDigest`).
        let digest_key = new.digest_key();
        for k in new_index.into_iter().filter(|k| !old_index.contains(k)) {
            if Some(k.as_slice()) != digest_key.as_deref() {
                self.queue(k, Some(id.as_bytes().to_vec()));
            }
        }
        if let Some(k) = digest_key {
            let mut value = digest.map_or_else(Vec::new, |d| d.to_vec());
            value.extend_from_slice(id.as_bytes());
            self.queue(k, Some(value));
        }
        let old_markers = old.map(Stored::marker_keys).unwrap_or_default();
        let new_markers = new.marker_keys();
        for k in old_markers.iter().filter(|k| !new_markers.contains(k)) {
            self.queue(k.clone(), None);
        }
        for k in new_markers.into_iter().filter(|k| !old_markers.contains(k)) {
            self.queue(k, Some(Vec::new()));
        }

        let event = ChangeEvent {
            seq: self.next_seq,
            at: self.now,
            kind: T::KIND,
            id,
            operation,
            version,
            source: self.source,
            actor: self.actor.clone(),
            changed: changed.clone(),
            // Not the object again: it is stored once, under its key, and a
            // connector delivers its current state (idempotent, and half the
            // bytes an import writes).
            object: None,
        };
        let event_json = serde_json::to_vec(&event).expect("events serialise");
        self.queue(keys::object(T::KIND, id), Some(json.into_bytes()));
        self.queue(keys::change(self.next_seq), Some(event_json));
        self.next_seq += 1;
        self.events += 1;
        Ok(match operation {
            Operation::Created => Outcome::Created(id),
            _ => Outcome::Updated(id, changed),
        })
    }

    /// Create or update a user.
    pub fn upsert_user(
        &mut self,
        input: UserInput,
        how: &UserWrite,
    ) -> Result<Outcome, WriteError> {
        let groups = self.resolve_groups(&input.groups)?;
        let mut digest = None;
        let matched = match how.match_key.unwrap_or(self.settings.user_match) {
            UserMatch::Mail => {
                let d = self.user_digest(&input, groups.as_deref(), how);
                let entry = self.read(&Index::UserMail.key(&input.mail))?;
                let id = entry.as_deref().and_then(keys::trailing_id);
                if let (Some(id), Some(entry)) = (id, &entry) {
                    if entry.len() == 32 && entry[..16] == d {
                        return Ok(Outcome::Unchanged(id));
                    }
                }
                digest = Some(d);
                id
            }
            UserMatch::LoginName => match &input.login_name {
                Field::Set(login) => self.lookup(Index::UserLogin, login)?,
                _ => return Err(Violation::new("loginName", "", Rule::Mandatory).into()),
            },
            UserMatch::ExternalId => match &input.external_id {
                Field::Set(ext) => self.lookup(Index::UserExternalId, ext)?,
                _ => return Err(Violation::new("externalId", "", Rule::Mandatory).into()),
            },
        };
        let existing: Option<User> = match matched {
            Some(id) => self.load(id)?,
            None => None,
        };
        self.put_user(existing, input, groups, how, digest.as_ref())
    }

    /// The [`InputDigest`] of upserting `input` (its groups resolved to
    /// `groups`) with `how` from this transaction's source. Every field is
    /// named, so a field added to [`UserInput`] cannot be left out.
    fn user_digest(
        &self,
        input: &UserInput,
        groups: Option<&[Uuid]>,
        how: &UserWrite,
    ) -> InputDigest {
        use sha2::{Digest, Sha256};
        let UserInput {
            status,
            mail,
            last_name,
            login_name,
            first_name,
            display_name,
            language,
            valid_from,
            valid_to,
            sp_custom_attributes,
            groups: _, // hashed resolved, below
            external_id,
        } = input;
        let mut h = Sha256::new();
        let mut text = |t: &str| {
            h.update((t.len() as u64).to_le_bytes());
            h.update(t.as_bytes());
        };
        // Names, not a formatted string: this runs for every row.
        text(self.source.as_str());
        text(how.end_state.map_or("\0", Status::as_str));
        text(status.as_str());
        text(how.application.as_deref().unwrap_or("\0"));
        text(mail);
        text(last_name);
        for f in [
            login_name,
            first_name,
            display_name,
            language,
            valid_from,
            valid_to,
            external_id,
        ]
        .into_iter()
        .chain(sp_custom_attributes)
        {
            match f {
                Field::Absent => text("\0absent"),
                Field::Clear => text("\0clear"),
                Field::Set(v) => text(v),
            }
        }
        match groups {
            None => h.update([0]),
            Some(ids) => {
                h.update([1]);
                h.update((ids.len() as u64).to_le_bytes());
                for id in ids {
                    h.update(id.as_bytes());
                }
            }
        }
        h.finalize()[..16].try_into().expect("16 bytes")
    }

    /// Create a user; an existing mail, loginName or externalId is refused
    /// as not unique (SCIM's POST never updates).
    pub fn create_user(
        &mut self,
        input: UserInput,
        how: &UserWrite,
    ) -> Result<Outcome, WriteError> {
        let groups = self.resolve_groups(&input.groups)?;
        self.put_user(None, input, groups, how, None)
    }

    /// Update `existing` (read with [`Tx::user`]; SCIM's PUT and PATCH:
    /// the id decides, not the match key, so a new mail is a change, not a
    /// new user).
    pub fn update_user(
        &mut self,
        existing: User,
        input: UserInput,
        how: &UserWrite,
    ) -> Result<Outcome, WriteError> {
        let groups = self.resolve_groups(&input.groups)?;
        self.put_user(Some(existing), input, groups, how, None)
    }

    /// Group display names to ids, in order, without repeats; `None` when
    /// the input leaves the groups alone.
    fn resolve_groups(&self, groups: &Field<Vec<String>>) -> Result<Option<Vec<Uuid>>, WriteError> {
        Ok(match groups {
            Field::Absent => None,
            Field::Clear => Some(Vec::new()),
            Field::Set(names) => {
                let mut ids: Vec<Uuid> = Vec::with_capacity(names.len());
                for name in names {
                    let gid = self
                        .lookup(Index::GroupName, name)?
                        .ok_or_else(|| Violation::new("groups", name, Rule::UnknownGroup))?;
                    if !ids.contains(&gid) {
                        ids.push(gid);
                    }
                }
                Some(ids)
            }
        })
    }

    /// `digest`: the input's, when the caller matched by the entry that
    /// keeps it (see [`InputDigest`]).
    fn put_user(
        &mut self,
        existing: Option<User>,
        input: UserInput,
        groups: Option<Vec<Uuid>>,
        how: &UserWrite,
        digest: Option<&InputDigest>,
    ) -> Result<Outcome, WriteError> {
        let id = existing.as_ref().map_or_else(Uuid::now_v7, |u| u.id);

        // A value the matched user already holds is its own in the index:
        // only new values need a look-up (most rows of a re-import have none).
        let holds = |index: Index, current: Option<&str>, value: &str| {
            current.is_some_and(|c| index.same_value(c, value))
        };
        let old = existing.as_ref();
        if !holds(Index::UserMail, old.map(|u| u.mail.as_str()), &input.mail) {
            self.check_unique(Index::UserMail, &input.mail, id)?;
        }
        if let Field::Set(login) = &input.login_name {
            if !holds(
                Index::UserLogin,
                old.and_then(|u| u.login_name.as_deref()),
                login,
            ) {
                self.check_unique(Index::UserLogin, login, id)?;
            }
        }
        if let Field::Set(ext) = &input.external_id {
            if !holds(
                Index::UserExternalId,
                old.and_then(|u| u.external_id.as_deref()),
                ext,
            ) {
                self.check_unique(Index::UserExternalId, ext, id)?;
            }
        }

        let mut user = existing.clone().unwrap_or_else(|| User {
            id,
            login_name: None,
            mail: String::new(),
            first_name: None,
            last_name: String::new(),
            display_name: None,
            status: input.status,
            language: None,
            valid_from: None,
            valid_to: None,
            sp_custom_attributes: Default::default(),
            groups: Vec::new(),
            roles: self.settings.default_roles.clone(),
            applications: Vec::new(),
            source: self.source,
            activation_mail: Default::default(),
            external_id: None,
            meta: Meta::new(self.now),
        });
        input.apply_to(&mut user, groups);
        if let Some(state) = how.end_state {
            user.status = state;
        }
        if let Some(app) = &how.application {
            if !user.applications.contains(app) {
                user.applications.push(app.clone());
            }
        }
        user.source = self.source;
        Ok(self.write_digested(existing.as_ref(), user, digest)?)
    }

    /// Resolve a member named by mail or loginName.
    fn resolve_member(&self, member: &str) -> Result<Option<Uuid>, StoreError> {
        let (first, second) = if member.contains('@') {
            (Index::UserMail, Index::UserLogin)
        } else {
            (Index::UserLogin, Index::UserMail)
        };
        match self.lookup(first, member)? {
            Some(id) => Ok(Some(id)),
            None => self.lookup(second, member),
        }
    }

    /// Create or update a group; a stated member list replaces the members.
    pub fn upsert_group(&mut self, input: GroupInput) -> Result<Outcome, WriteError> {
        let existing: Option<Group> = match self.lookup(Index::GroupName, &input.display_name)? {
            Some(id) => self.load(id)?,
            None => None,
        };
        self.put_group(existing, input)
    }

    /// Create a group; an existing displayName or externalId is refused.
    pub fn create_group(&mut self, input: GroupInput) -> Result<Outcome, WriteError> {
        self.put_group(None, input)
    }

    /// Update `existing` (read with [`Tx::group`]; a new displayName
    /// renames it).
    pub fn update_group(
        &mut self,
        existing: Group,
        input: GroupInput,
    ) -> Result<Outcome, WriteError> {
        self.put_group(Some(existing), input)
    }

    fn put_group(
        &mut self,
        existing: Option<Group>,
        input: GroupInput,
    ) -> Result<Outcome, WriteError> {
        let id = existing.as_ref().map_or_else(Uuid::now_v7, |g| g.id);
        self.check_unique(Index::GroupName, &input.display_name, id)?;
        if let Field::Set(ext) = &input.external_id {
            self.check_unique(Index::GroupExternalId, ext, id)?;
        }

        // Check every member before queuing anything: a refused row leaves
        // no trace.
        let mut to_add: Vec<User> = Vec::new();
        let mut to_remove: Vec<User> = Vec::new();
        if !matches!(input.members, Field::Absent) {
            let mut wanted: Vec<Uuid> = Vec::new();
            for m in input.members.value().into_iter().flatten() {
                let uid = self
                    .resolve_member(m)?
                    .ok_or_else(|| Violation::new("members", m, Rule::UnknownMember))?;
                if !wanted.contains(&uid) {
                    wanted.push(uid);
                }
            }
            let current: BTreeSet<Uuid> = self
                .keys_under(&keys::members_prefix(id))?
                .iter()
                .filter_map(|k| keys::trailing_id(k))
                .collect();
            for uid in &wanted {
                if !current.contains(uid) {
                    let user: User = self.load(*uid)?.ok_or_else(|| StoreError::Corrupt {
                        key: format!("user {uid}"),
                        message: "index points at a missing user".into(),
                    })?;
                    if user.groups.len() >= MAX_GROUPS {
                        return Err(Violation::new(
                            "members",
                            &user.mail,
                            Rule::TooManyGroups { max: MAX_GROUPS },
                        )
                        .into());
                    }
                    to_add.push(user);
                }
            }
            for uid in current.iter().filter(|u| !wanted.contains(u)) {
                to_remove.extend(self.load::<User>(*uid)?);
            }
        }

        let mut group = existing.clone().unwrap_or_else(|| Group {
            id,
            display_name: String::new(),
            description: None,
            external_id: None,
            source: self.source,
            meta: Meta::new(self.now),
        });
        input.apply_to(&mut group);
        group.source = self.source;
        // A membership change is a change of the group too (its version and
        // ETag move, its event says `members`), as over SCIM. The group's
        // event comes first, then its members'.
        let members_changed = !to_add.is_empty() || !to_remove.is_empty();
        let outcome = if members_changed {
            self.emit(existing.as_ref(), group, &["members"])?
        } else {
            self.write(existing.as_ref(), group)?
        };
        for user in to_add {
            let mut new = user.clone();
            new.groups.push(id);
            self.write(Some(&user), new)?;
        }
        for user in to_remove {
            let mut new = user.clone();
            new.groups.retain(|g| *g != id);
            self.write(Some(&user), new)?;
        }
        Ok(outcome)
    }

    /// Whether profile `name` exists and is active.
    fn profile_is_usable(&self, name: Option<&str>) -> Result<bool, StoreError> {
        let Some(name) = name else { return Ok(false) };
        let Some(id) = self.lookup(Index::ProfileName, name)? else {
            return Ok(false);
        };
        Ok(self
            .load::<CertificateProfile>(id)?
            .is_some_and(|p| p.state == ProfileState::Active))
    }

    /// Create or update an asset. Its state follows its profile (seed 000).
    pub fn upsert_asset(&mut self, input: AssetInput) -> Result<Outcome, WriteError> {
        let by_name = self.lookup(Index::AssetName, &input.name)?;
        let existing: Option<Asset> = match input.id.or(by_name) {
            Some(id) => self.load(id)?,
            None => None,
        };
        let id = input
            .id
            .or(existing.as_ref().map(|a| a.id))
            .unwrap_or_else(Uuid::now_v7);
        self.check_unique(Index::AssetName, &input.name, id)?;

        let mut asset = existing.clone().unwrap_or_else(|| Asset {
            id,
            name: String::new(),
            description: None,
            asset_type: None,
            owner: None,
            certificate_profile: None,
            organization: None,
            country: None,
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            sid: None,
            state: AssetState::Pending,
            source: self.source,
            meta: Meta::new(self.now),
        });
        input.apply_to(&mut asset);
        asset.state = if self.profile_is_usable(asset.certificate_profile.as_deref())? {
            AssetState::Active
        } else {
            AssetState::Pending
        };
        asset.source = self.source;
        Ok(self.write(existing.as_ref(), asset)?)
    }

    /// The profile named `name` (any case), as this transaction sees it.
    pub fn profile(&self, name: &str) -> Result<Option<CertificateProfile>, StoreError> {
        match self.lookup(Index::ProfileName, name)? {
            Some(id) => self.load(id),
            None => Ok(None),
        }
    }

    /// Create or update a certificate profile, then move the assets that
    /// name it between `pending` and `active`.
    pub fn upsert_profile(&mut self, settings: &ProfileSettings) -> Result<Outcome, WriteError> {
        if let Err(e) = settings.check() {
            return Err(Violation::new(
                "profile",
                &settings.name,
                Rule::Profile {
                    reason: e.to_string(),
                },
            )
            .into());
        }
        let existing = self.profile(&settings.name)?;
        let mut profile = existing.clone().unwrap_or_else(|| CertificateProfile {
            id: Uuid::now_v7(),
            settings: settings.clone(),
            source: self.source,
            meta: Meta::new(self.now),
        });
        profile.settings = settings.clone();
        profile.source = self.source;
        let outcome = self.write(existing.as_ref(), profile)?;
        let was_usable = existing.is_some_and(|p| p.state == ProfileState::Active);
        let usable = settings.state == ProfileState::Active;
        if was_usable != usable {
            self.set_state_of_assets(&settings.name, usable)?;
        }
        Ok(outcome)
    }

    /// Delete profile `name`; the assets naming it become `pending`. False
    /// when there is none.
    pub fn delete_profile(&mut self, name: &str) -> Result<bool, WriteError> {
        let Some(profile) = self.profile(name)? else {
            return Ok(false);
        };
        self.remove(&profile);
        self.set_state_of_assets(&profile.name, false)?;
        Ok(true)
    }

    /// Move the assets that name profile `name` to `active` (`usable`) or
    /// `pending`.
    fn set_state_of_assets(&mut self, name: &str, usable: bool) -> Result<(), StoreError> {
        let state = if usable {
            AssetState::Active
        } else {
            AssetState::Pending
        };
        for key in self.keys_under(&keys::assets_of_profile_prefix(name))? {
            let Some(asset_id) = keys::trailing_id(&key) else {
                continue;
            };
            let Some(asset) = self.load::<Asset>(asset_id)? else {
                continue;
            };
            let mut new = asset.clone();
            new.state = state;
            self.write(Some(&asset), new)?;
        }
        Ok(())
    }

    /// Assign profile `profile` to asset `asset` (seed 000, "Assign
    /// certificate profile"): the profile must exist and be active, and the
    /// asset becomes `active`.
    pub fn assign_profile(&mut self, asset: Uuid, profile: &str) -> Result<Outcome, WriteError> {
        let Some(old) = self.load::<Asset>(asset)? else {
            return Err(Violation::new("asset", &asset.to_string(), Rule::NotFound).into());
        };
        let Some(p) = self.profile(profile)? else {
            return Err(Violation::new("certificateProfile", profile, Rule::NotFound).into());
        };
        if p.state != ProfileState::Active {
            return Err(
                Violation::new("certificateProfile", profile, Rule::ProfileInactive).into(),
            );
        }
        let mut new = old.clone();
        new.certificate_profile = Some(p.name.clone());
        new.state = AssetState::Active;
        new.source = self.source;
        Ok(self.write(Some(&old), new)?)
    }

    /// The enrollment request with `id`, as this transaction sees it.
    pub fn request(&self, id: Uuid) -> Result<Option<EnrollmentRequest>, StoreError> {
        self.load(id)
    }

    /// The certificate with `id`, as this transaction sees it.
    pub fn certificate(&self, id: Uuid) -> Result<Option<Certificate>, StoreError> {
        self.load(id)
    }

    /// Store a new or changed enrollment request. A status change must be
    /// one the state machine allows ([`idsync_schema::RequestStatus::may_become`]).
    pub fn put_request(&mut self, new: EnrollmentRequest) -> Result<Outcome, WriteError> {
        let old = self.load::<EnrollmentRequest>(new.id)?;
        if let Some(old) = &old {
            if old.status != new.status && !old.status.may_become(new.status) {
                return Err(Violation::new(
                    "status",
                    new.status.as_str(),
                    Rule::Transition {
                        from: old.status.as_str().to_owned(),
                    },
                )
                .into());
            }
        }
        Ok(self.write(old.as_ref(), new)?)
    }

    /// Store a new or changed certificate.
    pub fn put_certificate(&mut self, new: Certificate) -> Result<Outcome, WriteError> {
        let old = self.load::<Certificate>(new.id)?;
        Ok(self.write(old.as_ref(), new)?)
    }

    /// The user with `id`, as this transaction sees it.
    pub fn user(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        self.load(id)
    }

    /// The group with `id`, as this transaction sees it.
    pub fn group(&self, id: Uuid) -> Result<Option<Group>, StoreError> {
        self.load(id)
    }

    /// The asset with `id`, as this transaction sees it.
    pub fn asset(&self, id: Uuid) -> Result<Option<Asset>, StoreError> {
        self.load(id)
    }

    /// The ids of the members of `group`, as this transaction sees them.
    pub fn members_of(&self, group: Uuid) -> Result<BTreeSet<Uuid>, StoreError> {
        Ok(self
            .keys_under(&keys::members_prefix(group))?
            .iter()
            .filter_map(|k| keys::trailing_id(k))
            .collect())
    }

    /// Queue the removal of `old`: object, index and marker entries, and a
    /// `deleted` event.
    fn remove<T: Stored>(&mut self, old: &T) {
        let id = old.id();
        for k in old.index_keys().into_iter().chain(old.marker_keys()) {
            self.queue(k, None);
        }
        self.queue(keys::object(T::KIND, id), None);
        let mut gone = old.clone();
        gone.meta_mut().bump(self.now);
        let event = ChangeEvent {
            seq: self.next_seq,
            at: self.now,
            kind: T::KIND,
            id,
            operation: Operation::Deleted,
            version: gone.meta_mut().version,
            source: self.source,
            actor: self.actor.clone(),
            changed: Vec::new(),
            object: None,
        };
        let event_json = serde_json::to_vec(&event).expect("events serialise");
        self.queue(keys::change(self.next_seq), Some(event_json));
        self.next_seq += 1;
        self.events += 1;
    }

    /// Delete the user with `id` and its memberships; false when there is
    /// none.
    pub fn delete_user(&mut self, id: Uuid) -> Result<bool, WriteError> {
        let Some(user) = self.load::<User>(id)? else {
            return Ok(false);
        };
        self.remove(&user);
        Ok(true)
    }

    /// Delete the group with `id`; its members leave it first (each such
    /// user gets an `updated` event). False when there is none.
    pub fn delete_group(&mut self, id: Uuid) -> Result<bool, WriteError> {
        let Some(group) = self.load::<Group>(id)? else {
            return Ok(false);
        };
        for uid in self.members_of(id)? {
            if let Some(user) = self.load::<User>(uid)? {
                let mut new = user.clone();
                new.groups.retain(|g| *g != id);
                self.write(Some(&user), new)?;
            }
        }
        self.remove(&group);
        Ok(true)
    }

    /// Delete the asset with `id`; false when there is none.
    pub fn delete_asset(&mut self, id: Uuid) -> Result<bool, WriteError> {
        let Some(asset) = self.load::<Asset>(id)? else {
            return Ok(false);
        };
        self.remove(&asset);
        Ok(true)
    }

    /// Add users to and remove users from `group` (ids; SCIM's member
    /// PATCH), without touching its other members. Every user to add must
    /// exist and have room for one more group; everything is checked before
    /// anything is queued. When a membership changes, the group gets an
    /// `updated` event naming `members` (its version, the ETag, moves).
    /// Returns whether anything changed.
    pub fn change_members(
        &mut self,
        group: &Group,
        add: &[Uuid],
        remove: &[Uuid],
    ) -> Result<bool, WriteError> {
        let gid = group.id;
        let mut seen = BTreeSet::new();
        let mut edits: Vec<(User, bool)> = Vec::new();
        for uid in add.iter().filter(|u| !remove.contains(u)) {
            if !seen.insert(*uid) {
                continue;
            }
            let user: User = self
                .load(*uid)?
                .ok_or_else(|| Violation::new("members", &uid.to_string(), Rule::UnknownMember))?;
            if user.groups.contains(&gid) {
                continue;
            }
            if user.groups.len() >= MAX_GROUPS {
                let max = MAX_GROUPS;
                return Err(
                    Violation::new("members", &user.mail, Rule::TooManyGroups { max }).into(),
                );
            }
            edits.push((user, true));
        }
        for uid in remove {
            if !seen.insert(*uid) {
                continue;
            }
            if let Some(user) = self.load::<User>(*uid)? {
                if user.groups.contains(&gid) {
                    edits.push((user, false));
                }
            }
        }
        if edits.is_empty() {
            return Ok(false);
        }
        for (user, join) in edits {
            let mut new = user.clone();
            if join {
                new.groups.push(gid);
            } else {
                new.groups.retain(|g| *g != gid);
            }
            self.write(Some(&user), new)?;
        }
        self.emit(Some(group), group.clone(), &["members"])?;
        Ok(true)
    }

    /// Wait for the batch in flight, if any, and account for it.
    fn settle(&mut self) -> Result<(), StoreError> {
        if let Some(inflight) = self.inflight.take() {
            self.reader.get_mut().take();
            match inflight.handle.join() {
                Ok(Ok(())) => *self.guard = inflight.next_seq,
                Ok(Err(e)) => return Err(e.into()),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Ok(())
    }

    /// Turn the queued writes (plus the head) into a sorted engine batch.
    fn take_batch(&mut self) -> (Overlay, u64) {
        // Savepoints do not reach past a commit.
        self.undo.clear();
        let head = self.next_seq - 1;
        if self.events > 0 {
            self.overlay
                .insert(keys::HEAD.to_vec(), Some(head.to_be_bytes().to_vec()));
        }
        (std::mem::take(&mut self.overlay), head)
    }

    fn to_batch(overlay: &Overlay) -> Batch {
        // Sorted keys let B-tree engines fill pages in order.
        let mut entries: Vec<_> = overlay.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut batch = Batch::new();
        for (k, v) in entries {
            match v {
                Some(v) => batch.put(k.clone(), v.clone()),
                None => batch.delete(k.clone()),
            }
        }
        batch
    }

    /// Hand everything queued so far to a committer thread and carry on
    /// queuing: the next batch is checked and built while this one is being
    /// written (the store's commit and the import's parsing then overlap).
    /// Waits first for the previous batch; its failure is returned here.
    /// Once this returns, the previous batch is durable.
    pub fn commit_pipelined(&mut self) -> Result<Committed, StoreError> {
        self.settle()?;
        let durable_head = *self.guard - 1;
        let events = self.events;
        let (overlay, _) = self.take_batch();
        if !overlay.is_empty() {
            let overlay = Arc::new(overlay);
            let store = Arc::clone(self.store);
            let shared = Arc::clone(&overlay);
            let handle = std::thread::Builder::new()
                .name("idsync-commit".into())
                .spawn(move || store.engine().write(Self::to_batch(&shared)))
                .map_err(|e| EngineError::Io {
                    engine: "store",
                    message: format!("cannot start the commit thread: {e}"),
                })?;
            self.inflight = Some(Inflight {
                overlay,
                next_seq: self.next_seq,
                handle,
            });
        }
        self.events = 0;
        self.now = OffsetDateTime::now_utc();
        Ok(Committed {
            events,
            head: durable_head,
        })
    }

    /// Write everything queued as one atomic batch (after the batch in
    /// flight, if any) and wait until it is durable.
    pub fn commit(mut self) -> Result<Committed, StoreError> {
        self.settle()?;
        let events = self.events;
        let (overlay, head) = self.take_batch();
        if !overlay.is_empty() {
            self.store.engine().write(Self::to_batch(&overlay))?;
        }
        *self.guard = self.next_seq;
        Ok(Committed { events, head })
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        // A handed-over batch lands or fails on its own; wait for it so the
        // sequence number stays right for the next writer.
        if let Err(e) = self.settle() {
            tracing::error!("a pipelined commit failed: {e}");
        }
    }
}

/// Convenience for callers that hold the reconciler in an `Arc`.
pub type SharedReconciler = Arc<Reconciler>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EngineKind, EngineOptions};

    fn reconciler(dir: &std::path::Path) -> Reconciler {
        let store =
            Arc::new(Store::open(EngineKind::Redb, dir, &EngineOptions::default()).unwrap());
        Reconciler::new(store, Settings::default()).unwrap()
    }

    fn row(first: &str, groups: &[&str]) -> UserInput {
        let mut u = UserInput::new(Status::Active, "Ann@x.org", "Lee");
        u.first_name = Field::Set(first.into());
        if !groups.is_empty() {
            u.groups = Field::Set(groups.iter().map(|g| g.to_string()).collect());
        }
        u
    }

    /// One CSV upsert in its own committed transaction.
    fn import(rec: &Reconciler, input: UserInput, how: &UserWrite) -> Outcome {
        let mut tx = rec.begin(Source::Csv, Actor::default());
        let out = tx.upsert_user(input, how).unwrap();
        tx.commit().unwrap();
        out
    }

    fn unchanged(o: &Outcome) -> bool {
        matches!(o, Outcome::Unchanged(_))
    }

    /// The digest short cut of an unchanged row gives what reading the user
    /// would: unchanged only while the last write was this very input.
    #[test]
    fn a_repeated_row_is_unchanged_until_something_else_writes_the_user() {
        let dir = tempfile::tempdir().unwrap();
        let rec = reconciler(dir.path());
        let how = UserWrite::default();
        let mut tx = rec.begin(Source::Csv, Actor::default());
        tx.upsert_group(GroupInput::new("staff")).unwrap();
        tx.commit().unwrap();

        let id = import(&rec, row("Ann", &["staff"]), &how).id();
        let head = rec.store().head().unwrap();
        assert!(unchanged(&import(&rec, row("Ann", &["staff"]), &how)));
        assert_eq!(rec.store().head().unwrap(), head, "a no-op writes nothing");

        // Another source changes a field the row sets: the row restores it.
        let mut tx = rec.begin(Source::Scim, Actor::default());
        let existing = tx.user(id).unwrap().unwrap();
        tx.update_user(existing, row("Annie", &["staff"]), &how)
            .unwrap();
        tx.commit().unwrap();
        let again = import(&rec, row("Ann", &["staff"]), &how);
        assert!(
            matches!(&again, Outcome::Updated(_, f) if f == &["firstName", "source"]),
            "{again:?}"
        );
        assert!(unchanged(&import(&rec, row("Ann", &["staff"]), &how)));

        // A folder option that changes the result is part of the input.
        let inactive = UserWrite {
            end_state: Some(Status::Inactive),
            ..UserWrite::default()
        };
        assert!(!unchanged(&import(&rec, row("Ann", &["staff"]), &inactive)));
        assert!(!unchanged(&import(&rec, row("Ann", &["staff"]), &how)));

        // The group is deleted: the user loses it, and the row, naming a
        // group that no longer exists, is refused as before; a row without
        // groups finds nothing to change.
        let mut tx = rec.begin(Source::Api, Actor::default());
        let staff = tx.lookup(Index::GroupName, "staff").unwrap().unwrap();
        tx.delete_group(staff).unwrap();
        tx.commit().unwrap();
        let mut tx = rec.begin(Source::Csv, Actor::default());
        assert!(tx.upsert_user(row("Ann", &["staff"]), &how).is_err());
        drop(tx);
        assert!(unchanged(&import(&rec, row("Ann", &[]), &how)));
        assert!(rec
            .store()
            .object::<User>(Kind::User, id)
            .unwrap()
            .unwrap()
            .groups
            .is_empty());

        // The mail's entry still finds the user, digest or not.
        assert_eq!(
            rec.store().lookup(Index::UserMail, "ann@x.org").unwrap(),
            Some(id)
        );
    }
}
