//! Unfiltered, unsorted lists — what identity providers page through —
//! without walking everything: the total is counted once per change-log
//! head, and a page deep into the list starts from a remembered key
//! (an anchor) near it instead of the first object.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use idsync_schema::Kind;
use idsync_store::{keys, Store};
use serde_json::Value;

use super::error::ScimError;
use super::read::decode;
use super::resource::Resource;
use super::state::State;

/// Every this many objects, a page walk remembers the key it passed.
const ANCHOR_EVERY: usize = 1000;

/// Objects read from the store at a time by a page walk.
const CHUNK: usize = 1024;

/// Keys at positions `ANCHOR_EVERY - 1`, `2 * ANCHOR_EVERY - 1`, … of each
/// kind's objects in id order, valid while the change log's head is the
/// one recorded.
#[derive(Default)]
struct Anchors {
    head: u64,
    keys: HashMap<Kind, Vec<Vec<u8>>>,
}

impl Anchors {
    /// Where a walk to 0-based position `wanted` starts: after the nearest
    /// anchor at or before it (its key and position), forgetting anchors of
    /// another head.
    fn start(&mut self, head: u64, kind: Kind, wanted: usize) -> (Option<Vec<u8>>, usize) {
        if self.head != head {
            *self = Anchors {
                head,
                keys: HashMap::new(),
            };
        }
        let known = self.keys.get(&kind).map_or(&[][..], Vec::as_slice);
        match (wanted / ANCHOR_EVERY).min(known.len()) {
            0 => (None, 0),
            block => (Some(known[block - 1].clone()), block * ANCHOR_EVERY),
        }
    }

    /// Remember the `(block, key)` anchors a walk passed, unless the change
    /// log moved meanwhile.
    fn learn(&mut self, head: u64, kind: Kind, learned: Vec<(usize, Vec<u8>)>) {
        if self.head != head {
            return;
        }
        let known = self.keys.entry(kind).or_default();
        for (block, key) in learned {
            if block == known.len() {
                known.push(key);
            }
        }
    }
}

/// Object counts by kind and page anchors, each valid while the change
/// log's head is the one recorded.
#[derive(Default)]
pub(crate) struct ListCache {
    counts: Mutex<HashMap<Kind, (u64, u64)>>,
    anchors: Mutex<Anchors>,
}

/// A poisoned cache is still a cache: every entry is checked against the
/// head before use.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ListCache {
    /// Number of objects of `kind`, counted again only when the change log
    /// moved since the last count.
    pub(crate) fn total(&self, store: &Store, kind: Kind) -> Result<u64, ScimError> {
        let head = store.head()?;
        if let Some((h, n)) = lock(&self.counts).get(&kind) {
            if *h == head {
                return Ok(*n);
            }
        }
        let n = store.count(kind)?;
        lock(&self.counts).insert(kind, (head, n));
        Ok(n)
    }
}

/// The objects of `R` at positions `start ..= start + count - 1` (1-based)
/// in id order, rendered.
pub(crate) fn page_in_order<R: Resource>(
    state: &State,
    start: usize,
    count: usize,
    with_members: bool,
) -> Result<Vec<Value>, ScimError> {
    let store = state.store();
    let prefix = keys::object_prefix(R::KIND);
    let head = store.head()?;
    let wanted = start - 1; // 0-based
    let (mut after, mut pos) = lock(&state.lists.anchors).start(head, R::KIND, wanted);
    let mut learned: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut page = Vec::with_capacity(count);
    'walk: loop {
        let chunk = store.scan_page(prefix, after.as_deref(), CHUNK)?;
        let last = chunk.len() < CHUNK;
        for (k, v) in &chunk {
            if pos % ANCHOR_EVERY == ANCHOR_EVERY - 1 {
                learned.push((pos / ANCHOR_EVERY, k.clone()));
            }
            if pos >= wanted {
                page.push(decode::<R>(state, v, with_members)?);
                if page.len() == count {
                    break 'walk;
                }
            }
            pos += 1;
        }
        if last {
            break;
        }
        after = chunk.into_iter().next_back().map(|(k, _)| k);
    }
    lock(&state.lists.anchors).learn(head, R::KIND, learned);
    Ok(page)
}
