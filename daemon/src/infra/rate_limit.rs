//! Request rates bounded per key (a peer address, a link token): at most
//! `limit` requests in each `window`, counted in fixed windows.
//!
//! Why fixed windows: the activation page, the ACME and SCEP listeners
//! (and, later, the console's sign-in) only need "no more than N guesses per quarter hour", and a
//! counter with a start time per key is the simplest thing that bounds
//! guessing. The table itself is bounded too: past `max_keys` the expired
//! entries go, and if every entry is live the newcomer is refused (an
//! attacker with many addresses fills the table and is then refused as a
//! whole, rather than resetting everyone's counts).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A rate limit over keys of type `K`.
#[derive(Debug)]
pub struct RateLimit<K> {
    limit: u32,
    window: Duration,
    max_keys: usize,
    counts: Mutex<HashMap<K, (Instant, u32)>>,
}

/// Keys a listener's limit remembers at most (peers, links).
pub const MAX_KEYS: usize = 100_000;

impl<K: Hash + Eq + Clone> RateLimit<K> {
    /// At most `limit` requests per key and minute, for [`MAX_KEYS`] keys:
    /// the listeners' per-peer limit.
    pub fn per_minute(limit: u32) -> Self {
        Self::new(limit, Duration::from_secs(60), MAX_KEYS)
    }

    /// At most `limit` requests per key in each `window`, for at most
    /// `max_keys` keys at once.
    pub fn new(limit: u32, window: Duration, max_keys: usize) -> Self {
        Self {
            limit,
            window,
            max_keys,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Count one request of `key`: false when it is over the limit.
    pub fn allow(&self, key: &K) -> bool {
        self.check(key).is_ok()
    }

    /// Count one request of `key`; over the limit, how long until its
    /// window ends (a `Retry-After`).
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    #[cfg(test)]
    fn allow_at(&self, key: &K, now: Instant) -> bool {
        self.check_at(key, now).is_ok()
    }

    fn check_at(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if !counts.contains_key(key) && counts.len() >= self.max_keys {
            let window = self.window;
            counts.retain(|_, (start, _)| now.duration_since(*start) < window);
            if counts.len() >= self.max_keys {
                return Err(window);
            }
        }
        let entry = counts.entry(key.clone()).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.limit {
            return Err(self.window.saturating_sub(now.duration_since(entry.0)));
        }
        entry.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_limit_per_window_and_no_more() {
        let r = RateLimit::new(3, Duration::from_secs(60), 10);
        let t = Instant::now();
        assert!((0..3).all(|_| r.allow_at(&"a", t)));
        assert!(!r.allow_at(&"a", t + Duration::from_secs(59)));
        assert!(r.allow_at(&"b", t), "keys are counted apart");
        assert!(
            r.allow_at(&"a", t + Duration::from_secs(60)),
            "a new window"
        );
        assert_eq!(
            r.check_at(&"b", t + Duration::from_secs(20))
                .and_then(|()| r.check_at(&"b", t + Duration::from_secs(20)))
                .and_then(|()| r.check_at(&"b", t + Duration::from_secs(20))),
            Err(Duration::from_secs(40)),
            "the wait is what is left of the window"
        );
    }

    #[test]
    fn a_full_table_makes_room_from_expired_keys_only() {
        let r = RateLimit::new(1, Duration::from_secs(60), 2);
        let t = Instant::now();
        assert!(r.allow_at(&1, t));
        assert!(r.allow_at(&2, t));
        assert!(!r.allow_at(&3, t), "every entry is live: refused");
        assert!(!r.allow_at(&1, t), "and the live ones keep their counts");
        assert!(
            r.allow_at(&3, t + Duration::from_secs(61)),
            "expired ones go"
        );
    }
}
