//! An object's history on its page (users, groups, assets): its entries
//! in the change log, newest first, read so that the page stays fast
//! however long the log grows.

use idsync_schema::{Meta, Operation};
use serde_json::{json, Value};
use uuid::Uuid;

use super::screens::date;
use super::Console;
use crate::infra::http::parse_query;

/// Change-log entries one page of an older history looks through.
const HISTORY_WINDOW: u64 = 20_000;

/// A page of the history of object `id` (whose page is at `link`), as
/// the template `history.html` shows it. The first page reads the changes
/// the object keeps the numbers of (`Meta::changes`, its last 32): that
/// many point reads, whatever the log's length. Older pages (`?before=`
/// in `query`), and objects last written by a version that kept no
/// numbers, look through a window of [`HISTORY_WINDOW`] log entries
/// ending at `before`; each page links to the one before it until the
/// object's creation is shown.
pub fn page(
    c: &Console,
    id: Uuid,
    meta: &Meta,
    link: &str,
    query: Option<&str>,
) -> Result<Value, idsync_store::StoreError> {
    let store = c.rec.store();
    let before = parse_query(query)
        .get("before")
        .and_then(|b| b.parse::<u64>().ok());
    let kept = &meta.changes;
    let (events, first, searched) = match (before, kept.first()) {
        (None, Some(&first)) => {
            let mut events = Vec::with_capacity(kept.len());
            for seq in kept.iter().rev() {
                events.extend(store.change(*seq)?);
            }
            (events, first, None)
        }
        _ => {
            let head = store.head()?;
            let last = before.map_or(head, |b| b.min(head));
            let first = last.saturating_sub(HISTORY_WINDOW - 1).max(1);
            let mut events = store.object_changes(id, first, last)?;
            events.reverse();
            (events, first, Some((first, last)))
        }
    };
    let created = events.iter().any(|e| e.operation == Operation::Created);
    let rows: Vec<Value> = events
        .iter()
        .map(|e| {
            json!({
                "seq": e.seq, "at": date(e.at),
                // As the change log writes it: created, updated, deleted.
                "operation": e.operation,
                "changed": e.changed.join(", "),
                "source": e.source.as_str(),
                "actor": format!("{} {}", e.actor.kind, e.actor.name),
                "line": e.actor.line,
            })
        })
        .collect();
    let older = (!created && first > 1).then(|| format!("{link}?before={}", first - 1));
    Ok(json!({
        "events": rows, "older": older,
        "searched": searched.map(|(first, last)| json!({ "first": first, "last": last })),
    }))
}
