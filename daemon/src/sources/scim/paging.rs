//! Unfiltered, unsorted lists — what identity providers page through —
//! at a cost that follows the page, not its place in the list.
//!
//! Two ways to page (both RFC 7644 §3.4.2.4 and the IETF SCIM cursor
//! pagination draft are served):
//! - `startIndex`: a page deep into the list starts from a remembered key
//!   near it (an anchor: the key at a known position) and walks at most a
//!   few hundred keys to the page.
//! - `cursor`: the key after which the page starts; a seek, whatever the
//!   position.
//!
//! The anchors, the totals and why they survive writes are in
//! [`super::list_cache`].

use idsync_store::keys;
use uuid::Uuid;

use super::error::{ScimError, ScimType};
use super::list_cache::{ANCHOR_EVERY, CHUNK};
use super::read::object;
use super::resource::Resource;
use super::state::State;

/// A page this many objects past its nearest anchor asks for a map.
const MAP_WHEN_FARTHER: u64 = 1024;

/// The objects of `R` at positions `start ..= start + count - 1` (1-based)
/// in id order.
pub(crate) fn page_in_order<R: Resource>(
    state: &State,
    start: usize,
    count: usize,
) -> Result<Vec<R>, ScimError> {
    let store = state.store();
    let prefix = keys::object_prefix(R::KIND);
    let head = store.head()?;
    let wanted = start as u64 - 1;
    let (mut after, mut pos) = state.lists.start(store, head, R::KIND, wanted)?;
    if wanted.saturating_sub(pos) > MAP_WHEN_FARTHER {
        // This walk goes on; the next pages here start from the map.
        state.lists.map_in_background(&state.rec, R::KIND);
    }
    let mut learned = Vec::new();
    let mut page = Vec::with_capacity(count);
    loop {
        // Entries before the page are only counted: the engine hands them
        // over borrowed, so walking past them copies nothing.
        let need = (wanted.saturating_sub(pos) as usize + count - page.len()).min(CHUNK);
        let (mut full, mut last) = (false, Vec::new());
        let seen = store.visit_page(prefix, after.as_deref(), need, |k, v| {
            if pos % ANCHOR_EVERY == ANCHOR_EVERY - 1 {
                learned.push((pos, k.to_vec()));
            }
            if pos >= wanted {
                page.push(object::<R>(v)?);
                full = page.len() == count;
            }
            pos += 1;
            last.clear();
            last.extend_from_slice(k);
            Ok::<_, ScimError>(!full)
        })?;
        if full || seen < need {
            break;
        }
        after = Some(last);
    }
    // The walk read a store that may have moved: its positions hold only
    // if the head did not.
    if store.head()? == head {
        state.lists.learn(head, R::KIND, learned);
    }
    Ok(page)
}

/// A page of the cursor pagination draft: its objects, and the cursor of
/// the next page when there is one.
pub(crate) struct CursorPage<R> {
    pub(crate) objects: Vec<R>,
    pub(crate) next: Option<String>,
}

/// Why a cursor is refused (`invalidCursor`, the draft's error type).
fn invalid_cursor(cursor: &str) -> ScimError {
    ScimError::bad(
        ScimType::InvalidCursor,
        format!("{cursor:?} is not a cursor this server gave"),
    )
}

/// The `count` objects of `R` after `cursor` (empty: from the first) in
/// id order. A cursor is the id of the last object of the page before, so
/// it never expires and a page is one seek, wherever it is.
pub(crate) fn page_after_cursor<R: Resource>(
    state: &State,
    cursor: &str,
    count: usize,
) -> Result<CursorPage<R>, ScimError> {
    let after = match cursor {
        "" => None,
        c => {
            let id = Uuid::parse_str(c).map_err(|_| invalid_cursor(c))?;
            Some(keys::object(R::KIND, id))
        }
    };
    let prefix = keys::object_prefix(R::KIND);
    // One more than the page: whether a next page exists.
    let mut objects = Vec::with_capacity(count);
    let (mut more, mut last_id) = (false, None);
    state
        .store()
        .visit_page(prefix, after.as_deref(), count + 1, |k, v| {
            if objects.len() == count {
                more = true;
                return Ok(false);
            }
            objects.push(object::<R>(v)?);
            last_id = keys::trailing_id(k);
            Ok::<_, ScimError>(true)
        })?;
    Ok(CursorPage {
        objects,
        next: last_id.filter(|_| more).map(|id| id.to_string()),
    })
}
