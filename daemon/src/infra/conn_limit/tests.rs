//! The limiter's bookkeeping: caps, eviction order, release on drop, the
//! summary's rate limit, the first-byte budget.

use super::*;

const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

fn limiter(max_connections: usize, max_per_peer: usize) -> Arc<Limiter> {
    let limits = Limits {
        max_connections,
        max_per_peer,
        first_byte_timeout: Duration::from_millis(50),
    };
    Limiter::new("test", limits, Arc::new(ListenerStats::new("test")))
}

fn asked_to_close(slot: &Slot) -> bool {
    let notified = slot.conn.close.notified();
    let mut notified = std::pin::pin!(notified);
    // A stored permit makes the first poll ready.
    notified.as_mut().enable()
}

fn stat(l: &Limiter, f: fn(&ListenerStats) -> &AtomicU64) -> u64 {
    f(&l.stats).load(Relaxed)
}

#[test]
fn a_peer_at_its_cap_is_refused_when_its_connections_are_busy() {
    let l = limiter(10, 2);
    let a1 = l.admit(A, false).unwrap();
    let a2 = l.admit(A, false).unwrap();
    let _busy = (a1.activity().busy(), a2.activity().busy());
    assert!(l.admit(A, false).is_none(), "a third from the same peer");
    assert_eq!(stat(&l, |s| &s.refused_per_peer), 1);
    let _b = l.admit(B, false).expect("another peer is not held up");
    assert!(!asked_to_close(&a1) && !asked_to_close(&a2));
}

#[test]
fn a_peer_at_its_cap_gives_up_its_oldest_idle_connection() {
    let l = limiter(10, 2);
    let a1 = l.admit(A, false).unwrap();
    let a2 = l.admit(A, false).unwrap();
    let b = l.admit(B, false).unwrap();
    let _busy = a1.activity().busy();
    let a3 = l.admit(A, false).expect("room made");
    assert!(asked_to_close(&a2), "the idle one goes, not the busy one");
    assert!(!asked_to_close(&a1) && !asked_to_close(&b));
    assert_eq!(stat(&l, |s| &s.evicted), 1);
    // a2's socket is still open until its task drops the slot.
    assert_eq!(stat(&l, |s| &s.open), 4);
    drop(a2);
    assert_eq!(stat(&l, |s| &s.open), 3);
    drop(a3);
    assert!(l.admit(A, false).is_some(), "a3's place is free again");
}

#[test]
fn the_global_cap_closes_the_oldest_idle_connection_of_any_peer() {
    let l = limiter(3, 3);
    let a1 = l.admit(A, false).unwrap();
    let a2 = l.admit(A, false).unwrap();
    let b1 = l.admit(B, false).unwrap();
    let _a1_busy = a1.activity().busy();
    let b2 = l.admit(B, false).expect("room made");
    assert!(asked_to_close(&a2));
    assert!(!asked_to_close(&b1));
    drop(a2);
    let b1_busy = b1.activity().busy();
    let _b2_busy = b2.activity().busy();
    assert!(l.admit(B, false).is_none(), "every live connection is busy");
    assert_eq!(stat(&l, |s| &s.refused_max_connections), 1);
    drop(b1_busy);
    assert!(
        l.admit(A, false).is_some(),
        "b1 is idle again and gives way"
    );
    assert!(asked_to_close(&b1));
}

#[test]
fn a_connection_sending_its_first_request_is_not_closed_to_make_room() {
    let l = limiter(10, 3);
    let early = l.admit(A, true).unwrap();
    let late = l.admit(A, false).unwrap();
    late.sending();
    late.sending();
    let idle = l.admit(A, false).unwrap();
    let _newcomer = l.admit(A, true).expect("room made");
    assert!(asked_to_close(&idle));
    drop(idle);
    assert!(l.admit(A, false).is_none(), "all three are sending");
    // The head complete, the request is handled; then it is idle.
    let busy = early.activity().busy();
    assert!(!early.is_idle());
    drop(busy);
    assert!(early.is_idle());
    let busy = late.activity().busy();
    drop(busy);
    assert!(late.is_idle(), "one sending() or two, counted once");
}

#[test]
fn slots_are_released_on_drop() {
    let l = limiter(2, 1);
    let a = l.admit(A, false).unwrap();
    let b = l.admit(B, false).unwrap();
    let (_x, _y) = (a.activity().busy(), b.activity().busy());
    assert!(l.admit(A, false).is_none());
    drop((_x, a));
    let again = l.admit(A, false);
    assert!(again.is_some(), "a's place, and its peer's count, freed");
    drop(again);
    let inner = l.lock();
    assert_eq!((inner.live, inner.conns.len()), (1, 1), "b only");
    assert!(!inner.per_peer.contains_key(&A));
}

#[test]
fn connections_still_closing_count_up_to_a_ceiling() {
    let l = limiter(4, 4);
    // Victims that have not gone yet: the open sockets grow to 4 + 1.
    let mut slots: Vec<Slot> = (0..5).map(|_| l.admit(A, false).unwrap()).collect();
    assert_eq!(stat(&l, |s| &s.open), 5);
    assert!(l.admit(B, false).is_none(), "past the ceiling");
    let mut room = std::pin::pin!(l.room());
    assert!(futures_poll(room.as_mut()).is_pending());
    slots.retain(|s| !asked_to_close(s));
    assert_eq!(slots.len(), 4);
    assert!(futures_poll(room.as_mut()).is_ready(), "one has gone");
    assert!(l.admit(B, false).is_some());
}

fn futures_poll<F: Future>(f: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    f.poll(&mut cx)
}

#[test]
fn the_summary_is_one_line_per_interval_with_the_counts() {
    let l = limiter(1, 1);
    let mut inner = l.lock();
    let t0 = Instant::now();
    assert_eq!(inner.take_summary(t0, false), None, "nothing to say");
    l.count(&mut inner, Dropped::MaxPerPeer, A);
    let first = inner.take_summary(t0, false).expect("the first at once");
    assert_eq!(first.refused_per_peer, 1);
    for _ in 0..1000 {
        l.count(&mut inner, Dropped::Evicted, B);
    }
    l.count(&mut inner, Dropped::FirstByteTimeout, A);
    let soon = t0 + SUMMARY_INTERVAL / 2;
    assert_eq!(inner.take_summary(soon, false), None, "too soon");
    let next = inner
        .take_summary(t0 + SUMMARY_INTERVAL, false)
        .expect("one interval later");
    assert_eq!(
        (next.evicted, next.first_byte_timeout, next.last_peer),
        (1000, 1, Some(A))
    );
    assert_eq!(next.refused_per_peer, 0, "counted once only");
    l.count(&mut inner, Dropped::MaxConnections, A);
    assert!(inner.take_summary(t0 + SUMMARY_INTERVAL, true).is_some());
    drop(inner);
    assert_eq!(stat(&l, |s| &s.evicted), 1000, "metrics keep the total");
}

#[tokio::test]
async fn a_connection_silent_past_its_budget_is_counted() {
    let l = limiter(2, 2);
    let a = l.admit(A, false).unwrap();
    let silent = std::future::pending::<()>();
    assert_eq!(a.before_first_byte(silent).await, None);
    assert_eq!(stat(&l, |s| &s.first_byte_timeout), 1);
    assert_eq!(a.before_first_byte(async { 7 }).await, Some(7));
    drop(a);
    // Asked to close while waiting: not a timeout.
    let b = l.admit(A, false).unwrap();
    let _c = l.admit(A, false).unwrap();
    let _d = l.admit(A, false).expect("b gives way");
    assert_eq!(
        b.before_first_byte(std::future::pending::<()>()).await,
        None
    );
    assert_eq!(stat(&l, |s| &s.evicted), 1);
    assert_eq!(stat(&l, |s| &s.first_byte_timeout), 1);
}
