//! Object counts and page anchors (the key at a known position in id
//! order), so an unfiltered page costs what the page costs, wherever it is.
//!
//! Why it survives writes: a write used to throw the anchors and totals
//! away, so a provisioning client writing while another pages through a
//! million users made every deep page a walk from the start. Instead, the
//! cache reads the change events since its head and shifts what they move:
//! a created object moves the anchors after it one place up, a deleted one
//! one place down, and the totals follow. Creations get the newest ids
//! (UUIDv7), so they land after every anchor and shift nothing.
//!
//! Why a background map: a page far from every anchor walks to it, and
//! many such pages at once (a cold cache under an identity provider's
//! import) would each walk the same keys. One thread per kind walks them
//! once instead ([`ListCache::map_in_background`]), at start and whenever
//! a page finds itself far from an anchor, and it keeps its positions exact
//! while writes go on (see [`map`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use idsync_schema::{Kind, Operation};
use idsync_store::reconcile::Reconciler;
use idsync_store::{keys, Store, StoreError};

/// A walk remembers the key at every this many positions: a page walks
/// past at most this many less one before its first object (each a value
/// copied out of the store), and a million users take 62,500 anchors
/// (about 4 MB).
pub(crate) const ANCHOR_EVERY: u64 = 16;

/// Objects read from the store at a time by a walk.
pub(crate) const CHUNK: usize = 1024;

/// Change events the cache reads to catch up; past this, it starts over.
const CATCH_UP_MAX: u64 = 50_000;

/// What is known of one kind's objects in id order.
#[derive(Default, Debug)]
pub(crate) struct Order {
    /// How many there are, once counted.
    total: Option<u64>,
    /// `(0-based position, key)`, in key (and so position) order.
    anchors: Vec<(u64, Vec<u8>)>,
}

impl Order {
    /// Account for object `key` appearing (`+1`) or going (`-1`).
    fn shift(&mut self, key: &[u8], by: i64) {
        if let Some(t) = &mut self.total {
            *t = t.saturating_add_signed(by);
        }
        let at = self.anchors.partition_point(|(_, k)| k.as_slice() < key);
        if by < 0 && self.anchors.get(at).is_some_and(|(_, k)| k == key) {
            self.anchors.remove(at);
        }
        for (pos, k) in &mut self.anchors[at..] {
            if k.as_slice() > key {
                *pos = pos.saturating_add_signed(by);
            }
        }
    }

    /// The anchor to start a walk to `wanted` from: the last strictly
    /// before it, since a walk starts after its anchor's key (an anchor at
    /// `wanted` would skip the page's first object).
    fn before(&self, wanted: u64) -> Option<(u64, Vec<u8>)> {
        let i = self.anchors.partition_point(|(p, _)| *p < wanted);
        i.checked_sub(1).map(|i| self.anchors[i].clone())
    }

    fn learn(&mut self, pos: u64, key: Vec<u8>) {
        let at = self.anchors.partition_point(|(p, _)| *p < pos);
        if self.anchors.get(at).is_none_or(|(p, _)| *p != pos) {
            self.anchors.insert(at, (pos, key));
        }
    }
}

/// The objects of `kind` created (`+1`) and deleted (`-1`) by the change
/// events after `from` up to `to`, in log order.
fn moves(store: &Store, kind: Kind, from: u64, to: u64) -> Result<Vec<(Vec<u8>, i64)>, StoreError> {
    let mut out = Vec::new();
    let mut after = from;
    while after < to {
        let batch = store.changes(after, 4096)?;
        let Some(last) = batch.last().map(|e| e.seq) else {
            break;
        };
        for e in batch.iter().take_while(|e| e.seq <= to) {
            let by = match e.operation {
                Operation::Created => 1,
                Operation::Deleted => -1,
                Operation::Updated => continue,
            };
            if e.kind == kind {
                out.push((keys::object(e.kind, e.id), by));
            }
        }
        after = last;
    }
    Ok(out)
}

/// Object counts and page anchors by kind, as of the change log's `head`.
#[derive(Default)]
struct Known {
    head: u64,
    kinds: HashMap<Kind, Order>,
}

impl Known {
    /// Bring everything to `head` by the change events since the last one
    /// (or forget it all when they are too many to read).
    fn catch_up(&mut self, store: &Store, head: u64) -> Result<(), StoreError> {
        if head == self.head {
            return Ok(());
        }
        if head < self.head || head - self.head > CATCH_UP_MAX || self.kinds.is_empty() {
            *self = Known {
                head,
                kinds: HashMap::new(),
            };
            return Ok(());
        }
        for (kind, order) in &mut self.kinds {
            for (key, by) in moves(store, *kind, self.head, head)? {
                order.shift(&key, by);
            }
        }
        self.head = head;
        Ok(())
    }
}

/// The lists' cache; every entry is brought to the change log's head
/// before use.
#[derive(Default)]
pub(crate) struct ListCache {
    known: Mutex<Known>,
    /// Kinds a background map is walking now.
    mapping: Mutex<HashSet<Kind>>,
}

/// A poisoned cache is still a cache: it is caught up before each use.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ListCache {
    /// Number of objects of `kind`: counted once, then kept by the change
    /// events.
    pub(crate) fn total(&self, store: &Store, kind: Kind) -> Result<u64, StoreError> {
        let head = store.head()?;
        {
            let mut known = lock(&self.known);
            known.catch_up(store, head)?;
            if let Some(n) = known.kinds.get(&kind).and_then(|o| o.total) {
                return Ok(n);
            }
        }
        let n = store.count(kind)?;
        let mut known = lock(&self.known);
        if known.head == head && store.head()? == head {
            known.kinds.entry(kind).or_default().total = Some(n);
        }
        Ok(n)
    }

    /// Where a walk to 0-based position `wanted` starts: after this key
    /// (none: the first object), at this position.
    pub(crate) fn start(
        &self,
        store: &Store,
        head: u64,
        kind: Kind,
        wanted: u64,
    ) -> Result<(Option<Vec<u8>>, u64), StoreError> {
        let mut known = lock(&self.known);
        known.catch_up(store, head)?;
        Ok(
            match known.kinds.get(&kind).and_then(|o| o.before(wanted)) {
                Some((pos, key)) => (Some(key), pos + 1),
                None => (None, 0),
            },
        )
    }

    /// Remember what a walk saw, if nothing was written meanwhile.
    pub(crate) fn learn(&self, head: u64, kind: Kind, learned: Vec<(u64, Vec<u8>)>) {
        let mut known = lock(&self.known);
        if known.head != head {
            return;
        }
        let order = known.kinds.entry(kind).or_default();
        for (pos, key) in learned {
            order.learn(pos, key);
        }
    }

    /// Map `kind` on a thread of its own, unless a map of it is under way.
    pub(crate) fn map_in_background(self: &Arc<Self>, rec: &Arc<Reconciler>, kind: Kind) {
        if !lock(&self.mapping).insert(kind) {
            return;
        }
        let (cache, rec) = (Arc::clone(self), Arc::clone(rec));
        let spawned = std::thread::Builder::new()
            .name(format!("scim-map-{}", kind.plural()))
            .spawn(move || {
                if let Err(e) = cache.map_now(rec.store(), kind) {
                    tracing::warn!(kind = kind.plural(), error = %e, "mapping the SCIM list failed");
                }
                lock(&cache.mapping).remove(&kind);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no thread to map the SCIM list");
            lock(&self.mapping).remove(&kind);
        }
    }

    /// Walk `kind` and keep what the walk learned.
    fn map_now(&self, store: &Store, kind: Kind) -> Result<(), StoreError> {
        let (mut at, mut order) = map(store, kind)?;
        let mut known = lock(&self.known);
        let head = store.head()?;
        known.catch_up(store, head)?;
        for (key, by) in moves(store, kind, at, head)? {
            order.shift(&key, by);
        }
        at = head;
        if known.head == at {
            known.kinds.insert(kind, order);
        }
        Ok(())
    }
}

/// Every anchor and the total of `kind`, as of the returned head.
///
/// Writes go on during the walk, and each chunk is read in a transaction
/// of its own. After each chunk, the change events since the one before
/// tell what moved: an object created or deleted in the part already
/// walked shifts the positions learned there (and the walk's own); one
/// beyond the chunk will be seen as it is; one in the chunk's range came
/// before the read if the chunk agrees with it (holds a created object,
/// lacks a deleted one), else after, and then shifts what the chunk taught.
/// A key that moved twice in one window cannot be placed: that chunk is
/// read again.
fn map(store: &Store, kind: Kind) -> Result<(u64, Order), StoreError> {
    let prefix = keys::object_prefix(kind);
    let mut order = Order::default();
    let mut head = store.head()?;
    let mut after: Option<Vec<u8>> = None;
    // Objects at or before `after`.
    let mut pos = 0u64;
    loop {
        let chunk = store.scan_page(prefix, after.as_deref(), CHUNK)?;
        let last = chunk.len() < CHUNK;
        let now = store.head()?;
        let moved = match now == head {
            true => Vec::new(),
            false => moves(store, kind, head, now)?,
        };
        head = now;
        let walked = |k: &[u8]| after.as_deref().is_some_and(|a| k <= a);
        let in_chunk = |k: &[u8]| {
            !walked(k) && (last || chunk.last().is_some_and(|(end, _)| k <= end.as_slice()))
        };
        let mut since_read = Vec::new();
        let mut placed = HashSet::new();
        let mut again = false;
        for (key, by) in moved {
            if walked(&key) {
                order.shift(&key, by);
                pos = pos.saturating_add_signed(by);
            } else if in_chunk(&key) {
                let held = chunk.binary_search_by(|(k, _)| k.cmp(&key)).is_ok();
                again |= !placed.insert(key.clone());
                if (by > 0) != held {
                    since_read.push((key, by));
                }
            }
        }
        if again {
            continue;
        }
        for (k, _) in &chunk {
            if pos % ANCHOR_EVERY == ANCHOR_EVERY - 1 {
                order.learn(pos, k.clone());
            }
            pos += 1;
        }
        for (key, by) in since_read {
            order.shift(&key, by);
            pos = pos.saturating_add_signed(by);
        }
        if last {
            break;
        }
        after = chunk.into_iter().next_back().map(|(k, _)| k);
    }
    order.total = Some(pos);
    Ok((head, order))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Vec<u8> {
        vec![b'o', n]
    }

    #[test]
    fn anchors_follow_creations_and_deletions() {
        let mut o = Order {
            total: Some(1000),
            anchors: vec![(255, key(10)), (511, key(20)), (767, key(30))],
        };
        o.shift(&key(15), 1); // created between the first two anchors
        assert_eq!(
            o.anchors,
            vec![(255, key(10)), (512, key(20)), (768, key(30))]
        );
        assert_eq!(o.total, Some(1001));
        o.shift(&key(20), -1); // an anchor's own object goes
        assert_eq!(o.anchors, vec![(255, key(10)), (767, key(30))]);
        o.shift(&key(40), 1); // after every anchor: nothing moves
        assert_eq!(o.anchors, vec![(255, key(10)), (767, key(30))]);
        assert_eq!(o.total, Some(1001));
        assert_eq!(o.before(700), Some((255, key(10))));
        assert_eq!(o.before(767), Some((255, key(10))), "not the anchor at 767");
        assert_eq!(o.before(768), Some((767, key(30))));
        assert_eq!(o.before(255), None);
        assert_eq!(o.before(10), None);
    }

    /// A map taken while users are created and deleted all over the id
    /// order ends with the anchors and total a map of the still store
    /// gives.
    #[test]
    fn a_map_under_writes_is_exact() {
        use idsync_schema::{Field, Source, Status, UserInput};
        use idsync_store::reconcile::{Settings, UserWrite};
        use idsync_store::{Actor, EngineKind, EngineOptions};

        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(Store::open(EngineKind::Redb, dir.path(), &EngineOptions::default()).unwrap());
        let rec = Arc::new(Reconciler::new(Arc::clone(&store), Settings::default()).unwrap());
        let create = |tx: &mut idsync_store::reconcile::Tx<'_>, n: usize| {
            let mut u = UserInput::new(Status::Active, format!("u{n}@example.org"), "L");
            u.login_name = Field::Set(format!("u{n}"));
            tx.create_user(u, &UserWrite::default()).unwrap().id()
        };
        let mut ids = Vec::new();
        for batch in 0..6 {
            let mut tx = rec.begin(Source::Scim, Actor::default());
            ids.extend((0..1000).map(|i| create(&mut tx, batch * 1000 + i)));
            tx.commit().unwrap();
        }
        let cache = ListCache::default();
        let writing = std::sync::atomic::AtomicBool::new(true);
        let mut maps = 0;
        std::thread::scope(|s| {
            s.spawn(|| {
                for round in 0..200 {
                    let mut tx = rec.begin(Source::Scim, Actor::default());
                    tx.delete_user(ids[(round * 37) % ids.len()]).unwrap();
                    create(&mut tx, 10_000 + round);
                    tx.commit().unwrap();
                }
                writing.store(false, std::sync::atomic::Ordering::SeqCst);
            });
            while writing.load(std::sync::atomic::Ordering::SeqCst) {
                cache.map_now(&store, Kind::User).unwrap();
                maps += 1;
            }
        });
        assert!(maps > 1, "the maps ran beside the writes");
        let mut position = HashMap::new();
        store
            .scan(keys::object_prefix(Kind::User), |k, _| {
                position.insert(k.to_vec(), position.len() as u64);
                Ok(true)
            })
            .unwrap();
        let mut known = lock(&cache.known);
        known.catch_up(&store, store.head().unwrap()).unwrap();
        let kept = &known.kinds[&Kind::User];
        assert_eq!(kept.total, Some(position.len() as u64));
        assert!(kept.anchors.len() >= 20, "{:?}", kept.anchors.len());
        for (pos, key) in &kept.anchors {
            assert_eq!(Some(pos), position.get(key), "an anchor in its place");
        }
    }
}
