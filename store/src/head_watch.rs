//! Tells whoever listens that the change log's head moved, without
//! polling: a decorator around the engine that, after a batch that writes
//! `s/head` is durable, publishes the new head on a `tokio::sync::watch`.
//!
//! Why here and not in the reconciler: every writer of the change log goes
//! through an engine batch that carries the head, so this catches them all
//! (CSV imports, SCIM, the API) in one place, and connectors' own delivery
//! state (which never touches the head) wakes nobody. Heads other
//! processes commit (replicas on one PostgreSQL database) come from the
//! engine ([`Engine::follow_heads`]) into the same channel.

use std::sync::Arc;

use tokio::sync::watch;

use super::engine::{Batch, Engine, EngineError, Op, Reader};
use super::keys;

/// The engine, plus the head's watch channel.
pub struct HeadWatch {
    inner: Box<dyn Engine>,
    head: Arc<watch::Sender<u64>>,
}

/// Publish `h` if it is past what `head` holds (heads only grow; a
/// notification may arrive after a later commit of this process).
fn advance(head: &watch::Sender<u64>, h: u64) {
    head.send_if_modified(|cur| {
        let moved = h > *cur;
        if moved {
            *cur = h;
        }
        moved
    });
}

impl HeadWatch {
    /// Wrap `inner`; the channel starts at the stored head.
    pub fn new(inner: Box<dyn Engine>) -> Result<Self, EngineError> {
        let head = keys::head_or_zero(inner.get(keys::HEAD)?.as_deref());
        let head = Arc::new(watch::channel(head).0);
        let follower = Arc::clone(&head);
        inner.follow_heads(Arc::new(move |h| advance(&follower, h)));
        Ok(Self { inner, head })
    }

    /// A receiver that sees every new head.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }
}

impl Engine for HeadWatch {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn is_remote(&self) -> bool {
        self.inner.is_remote()
    }

    fn round_trip(&self) -> Result<Option<std::time::Duration>, EngineError> {
        self.inner.round_trip()
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        self.inner.get(key)
    }

    fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, EngineError> {
        self.inner.get_many(keys)
    }

    fn reader(&self) -> Result<Box<dyn Reader + '_>, EngineError> {
        self.inner.reader()
    }

    fn write(&self, batch: Batch) -> Result<(), EngineError> {
        let head = batch.ops.iter().rev().find_map(|op| match op {
            Op::Put(k, v) if k.as_slice() == keys::HEAD => keys::head_value(v),
            _ => None,
        });
        self.inner.write(batch)?;
        if let Some(h) = head {
            advance(&self.head, h);
        }
        Ok(())
    }

    fn visit_prefix(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<usize, EngineError> {
        self.inner.visit_prefix(prefix, start_after, limit, visit)
    }

    fn flush(&self) -> Result<(), EngineError> {
        self.inner.flush()
    }

    fn writer_turn(&self) -> Result<Option<crate::engine::WriterTurn>, EngineError> {
        self.inner.writer_turn()
    }

    fn elect(
        &self,
        identity: String,
        retry: std::time::Duration,
        role: crate::leadership::RoleSender,
    ) -> Result<(), EngineError> {
        self.inner.elect(identity, retry, role)
    }
}
