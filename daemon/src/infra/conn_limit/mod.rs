//! Connection limits of the HTTP listeners (admin, SCIM): how many
//! connections in all and per peer address, which connection gives way
//! when a limit is reached, and how refusals are reported.
//!
//! Why more than one cap: a client that connects and sends nothing costs
//! nothing to keep open, and a cap that only refuses newcomers let a few
//! hundred such connections shut out every client with a token, while
//! logging one line per refusal (issue 13, item 7). So:
//! - one peer address holds at most `max_per_peer` connections, so it
//!   cannot take the whole pool;
//! - a connection that has sent nothing yet, or is a keep-alive connection
//!   between requests, is *idle*; from its first byte, and from each later
//!   request's complete head until the answer is written, it is busy. When
//!   a limit is reached, the oldest idle connection in the way (the peer's
//!   own for the per-peer limit, any for the global one) is asked to close
//!   and the newcomer takes its place. Only when every connection in the
//!   way is busy is the newcomer refused. So a client that sends its
//!   request at once is never closed for an idler; an idle keep-alive
//!   client may lose its connection under pressure and opens another.
//!   ("At once": before its own address has opened `max_per_peer` more
//!   connections. A client behind the address that floods, whose first
//!   byte comes later than that, looks idle and gives way like the rest;
//!   it sees its connection closed before any answer, and retries);
//! - a new connection has `first_byte_timeout` to send its first byte (TLS:
//!   to finish its handshake), see [`Slot::before_first_byte`];
//! - refusals and closes are counted for Prometheus ([`ListenerStats`]) and
//!   logged as one summary line per [`SUMMARY_INTERVAL`] at most.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// At most one summary line of refused and closed connections per listener
/// in this time.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// A listener's limits (`max_connections`, `max_connections_per_peer`,
/// `first_byte_timeout_ms` of `[admin]` and `[scim]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_per_peer: usize,
    pub first_byte_timeout: Duration,
}

/// One listener's connection figures for `/metrics`.
#[derive(Debug)]
pub struct ListenerStats {
    /// `admin` or `scim`: the `listener` label.
    pub name: &'static str,
    /// Connections open now (those asked to close included, until gone).
    pub open: AtomicU64,
    pub refused_max_connections: AtomicU64,
    pub refused_per_peer: AtomicU64,
    /// Idle connections closed to make room for a newcomer.
    pub evicted: AtomicU64,
    /// New connections closed for sending nothing within the first-byte
    /// timeout.
    pub first_byte_timeout: AtomicU64,
}

impl ListenerStats {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            open: AtomicU64::new(0),
            refused_max_connections: AtomicU64::new(0),
            refused_per_peer: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            first_byte_timeout: AtomicU64::new(0),
        }
    }
}

/// Why a connection was refused or closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dropped {
    MaxConnections,
    MaxPerPeer,
    Evicted,
    FirstByteTimeout,
}

/// What happened since the last summary line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Pending {
    refused_max_connections: u64,
    refused_per_peer: u64,
    evicted: u64,
    first_byte_timeout: u64,
    /// The last peer refused or closed: who to look at.
    last_peer: Option<IpAddr>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.last_peer.is_none()
    }
}

/// What one connection shares with the limiter.
#[derive(Debug)]
struct ConnState {
    /// Requests being handled (from its complete head to its answer's
    /// body handed to hyper), plus one while the first request's bytes
    /// are coming (`head`); idle at 0.
    in_flight: AtomicUsize,
    /// The client has sent bytes and the service has not had its first
    /// request yet: it is sending one, not idling, so it is not closed to
    /// make room (a stalled head still ends at hyper's header timeout).
    head: AtomicBool,
    /// Asks the connection to close (a stored permit if it is not waiting).
    close: Notify,
}

#[derive(Debug)]
struct Entry {
    peer: IpAddr,
    conn: Arc<ConnState>,
    /// Asked to close; no longer counted against the caps.
    closing: bool,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    /// Every open connection by accept order (oldest first).
    conns: BTreeMap<u64, Entry>,
    /// Connections not asked to close, in all and per peer.
    live: usize,
    per_peer: HashMap<IpAddr, usize>,
    pending: Pending,
    last_summary: Option<Instant>,
}

impl Inner {
    /// Ask the oldest idle connection (of `peer` only, when given) to
    /// close, noting it in `events`: whether there was one.
    fn evict_oldest_idle(&mut self, peer: Option<IpAddr>, events: &mut Vec<Dropped>) -> bool {
        let victim = self.conns.values_mut().find(|e| {
            !e.closing && peer.is_none_or(|p| p == e.peer) && e.conn.in_flight.load(Relaxed) == 0
        });
        let Some(e) = victim else {
            return false;
        };
        e.closing = true;
        e.conn.close.notify_one();
        let peer = e.peer;
        self.forget_live(peer);
        events.push(Dropped::Evicted);
        true
    }

    fn forget_live(&mut self, peer: IpAddr) {
        self.live -= 1;
        if let Some(n) = self.per_peer.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&peer);
            }
        }
    }

    /// The counts to log now, if any are waiting and the last line is at
    /// least [`SUMMARY_INTERVAL`] old (or `force`).
    fn take_summary(&mut self, now: Instant, force: bool) -> Option<Pending> {
        if self.pending.is_empty() {
            return None;
        }
        let recent = self
            .last_summary
            .is_some_and(|t| now.saturating_duration_since(t) < SUMMARY_INTERVAL);
        if recent && !force {
            return None;
        }
        self.last_summary = Some(now);
        Some(std::mem::take(&mut self.pending))
    }
}

/// The connections of one listener, counted against its [`Limits`].
#[derive(Debug)]
pub struct Limiter {
    /// `admin` or `SCIM`, for log lines.
    label: &'static str,
    limits: Limits,
    stats: Arc<ListenerStats>,
    inner: Mutex<Inner>,
    /// A connection has gone (see [`Limiter::room`]).
    released: Notify,
}

impl Limiter {
    pub fn new(label: &'static str, limits: Limits, stats: Arc<ListenerStats>) -> Arc<Self> {
        Arc::new(Self {
            label,
            limits,
            stats,
            inner: Mutex::default(),
            released: Notify::new(),
        })
    }

    /// The listener's name for log lines.
    pub fn label(&self) -> &'static str {
        self.label
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The bookkeeping stays consistent across a panic elsewhere.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connections asked to close keep their socket until their task has
    /// run and gone (at once when idle, but a burst of newcomers can outrun
    /// them): the open sockets stay under this many, so the file
    /// descriptors stay bounded.
    fn ceiling(&self) -> usize {
        self.limits.max_connections + self.limits.max_connections.div_ceil(4)
    }

    /// Resolves while the open sockets are under the ceiling, else once
    /// enough have gone. The accept loop waits for it before accepting:
    /// newcomers then wait in the kernel's backlog for the connections
    /// asked to close to go, rather than being refused for them.
    pub async fn room(&self) {
        loop {
            let released = self.released.notified();
            let mut released = std::pin::pin!(released);
            // Registered before the check: a release in between wakes it.
            released.as_mut().enable();
            if self.lock().conns.len() < self.ceiling() {
                return;
            }
            released.await;
        }
    }

    /// A slot for a connection just accepted from `peer`, making room by
    /// closing an idle connection if a limit is reached; `None`: refused
    /// (counted and summarised; the caller closes the socket). `sent`: the
    /// client has already sent bytes (its request, most likely), so the
    /// connection is not idle from the start; a burst of idle newcomers
    /// from its own address cannot close it before its task has run.
    pub fn admit(self: &Arc<Self>, peer: IpAddr, sent: bool) -> Option<Slot> {
        let mut inner = self.lock();
        let mut events = Vec::new();
        let at_peer_cap = inner
            .per_peer
            .get(&peer)
            .is_some_and(|&n| n >= self.limits.max_per_peer);
        // The accept loop waited for [`Limiter::room`]; this holds when
        // something else admits too.
        let refused = if inner.conns.len() >= self.ceiling() {
            Some(Dropped::MaxConnections)
        } else if at_peer_cap && !inner.evict_oldest_idle(Some(peer), &mut events) {
            Some(Dropped::MaxPerPeer)
        } else if inner.live >= self.limits.max_connections
            && !inner.evict_oldest_idle(None, &mut events)
        {
            Some(Dropped::MaxConnections)
        } else {
            None
        };
        let slot = match refused {
            Some(why) => {
                events.push(why);
                None
            }
            None => Some(self.slot(&mut inner, peer, sent)),
        };
        self.record(inner, &events, peer);
        slot
    }

    fn slot(self: &Arc<Self>, inner: &mut Inner, peer: IpAddr, sent: bool) -> Slot {
        let id = inner.next_id;
        inner.next_id += 1;
        let conn = Arc::new(ConnState {
            in_flight: AtomicUsize::new(usize::from(sent)),
            head: AtomicBool::new(sent),
            close: Notify::new(),
        });
        let entry = Entry {
            peer,
            conn: Arc::clone(&conn),
            closing: false,
        };
        inner.conns.insert(id, entry);
        inner.live += 1;
        *inner.per_peer.entry(peer).or_default() += 1;
        self.stats.open.store(inner.conns.len() as u64, Relaxed);
        Slot {
            limiter: Arc::clone(self),
            id,
            peer,
            conn,
        }
    }

    /// Count `events` about `peer`, and log a summary if one is due (after
    /// letting go of the lock).
    fn record(&self, mut inner: MutexGuard<'_, Inner>, events: &[Dropped], peer: IpAddr) {
        if events.is_empty() {
            return;
        }
        for &what in events {
            self.count(&mut inner, what, peer);
        }
        let summary = inner.take_summary(Instant::now(), false);
        drop(inner);
        if let Some(s) = summary {
            self.log(&s);
        }
    }

    fn count(&self, inner: &mut Inner, what: Dropped, peer: IpAddr) {
        let (stat, pending) = match what {
            Dropped::MaxConnections => (
                &self.stats.refused_max_connections,
                &mut inner.pending.refused_max_connections,
            ),
            Dropped::MaxPerPeer => (
                &self.stats.refused_per_peer,
                &mut inner.pending.refused_per_peer,
            ),
            Dropped::Evicted => (&self.stats.evicted, &mut inner.pending.evicted),
            Dropped::FirstByteTimeout => (
                &self.stats.first_byte_timeout,
                &mut inner.pending.first_byte_timeout,
            ),
        };
        stat.fetch_add(1, Relaxed);
        *pending += 1;
        inner.pending.last_peer = Some(peer);
    }

    /// Log what waits to be summarised, unless a line went out less than
    /// [`SUMMARY_INTERVAL`] ago (`force`: at shutdown, log it anyway).
    pub fn log_summary(&self, force: bool) {
        let summary = self.lock().take_summary(Instant::now(), force);
        if let Some(s) = summary {
            self.log(&s);
        }
    }

    fn log(&self, s: &Pending) {
        tracing::warn!(
            refused_max_connections = s.refused_max_connections,
            refused_per_peer = s.refused_per_peer,
            closed_idle = s.evicted,
            closed_first_byte_timeout = s.first_byte_timeout,
            last_peer = %s.last_peer.map(|p| p.to_string()).unwrap_or_default(),
            "{} listener: connections refused or closed since the last summary (at most one a {} s)",
            self.label,
            SUMMARY_INTERVAL.as_secs(),
        );
    }

    fn release(&self, id: u64) {
        let mut inner = self.lock();
        if let Some(e) = inner.conns.remove(&id) {
            if !e.closing {
                inner.forget_live(e.peer);
            }
        }
        self.stats.open.store(inner.conns.len() as u64, Relaxed);
        drop(inner);
        self.released.notify_one();
    }
}

/// One admitted connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    limiter: Arc<Limiter>,
    id: u64,
    peer: IpAddr,
    conn: Arc<ConnState>,
}

impl Slot {
    /// Resolves once the limiter asks this connection to close to make
    /// room (at once if it already has).
    pub async fn asked_to_close(&self) {
        self.conn.close.notified().await;
    }

    /// Whether the connection is handling no request.
    pub fn is_idle(&self) -> bool {
        self.conn.in_flight.load(Relaxed) == 0
    }

    /// The client has sent its first bytes (see `ConnState::head`).
    pub fn sending(&self) {
        if !self.conn.head.swap(true, Relaxed) {
            self.conn.in_flight.fetch_add(1, Relaxed);
        }
    }

    /// What marks this connection's requests as being handled.
    pub fn activity(&self) -> Activity {
        Activity(Arc::clone(&self.conn))
    }

    /// Run `first` (waiting for the first byte, or a TLS handshake) within
    /// the first-byte timeout: its output, or `None` when the time ran out
    /// (counted) or the connection was asked to close meanwhile.
    pub async fn before_first_byte<F: Future>(&self, first: F) -> Option<F::Output> {
        let budget = self.limiter.limits.first_byte_timeout;
        tokio::select! {
            out = tokio::time::timeout(budget, first) => match out {
                Ok(out) => Some(out),
                Err(_) => {
                    let inner = self.limiter.lock();
                    self.limiter.record(inner, &[Dropped::FirstByteTimeout], self.peer);
                    None
                }
            },
            () = self.asked_to_close() => None,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limiter.release(self.id);
    }
}

/// Marks requests on one connection as being handled (the service that
/// serves them holds it).
#[derive(Debug, Clone)]
pub struct Activity(Arc<ConnState>);

impl Activity {
    /// The connection handles a request until the guard is dropped (with
    /// the answer's body, once hyper has written it): it is not idle.
    pub fn busy(&self) -> Busy {
        self.0.in_flight.fetch_add(1, Relaxed);
        // The first request's head is complete: it counts as itself now.
        if self.0.head.swap(false, Relaxed) {
            self.0.in_flight.fetch_sub(1, Relaxed);
        }
        Busy(Arc::clone(&self.0))
    }
}

/// A request being handled on a connection (see [`Activity::busy`]).
#[derive(Debug)]
pub struct Busy(Arc<ConnState>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests;
