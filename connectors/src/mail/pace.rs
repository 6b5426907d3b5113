//! `mail.max_per_second`: mails leave the connector evenly spaced, at most
//! that many per second, whichever task sends them (a batch's mails go out
//! several at a time). Relays and providers limit senders; staying under
//! their limit beats being refused with 4xx and retried.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Hands out send times `every` apart.
pub(super) struct Pace {
    every: Duration,
    next: Mutex<Instant>,
}

impl Pace {
    /// At most `per_second` mails a second (at least 1).
    pub(super) fn new(per_second: u32) -> Self {
        Self {
            every: Duration::from_secs(1) / per_second.max(1),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Wait for this mail's turn.
    pub(super) async fn wait(&self) {
        let at = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let at = (*next).max(Instant::now());
            *next = at + self.every;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn mails_are_spaced_by_the_rate() {
        let pace = Pace::new(20);
        let started = std::time::Instant::now();
        let waits: Vec<_> = (0..5).map(|_| pace.wait()).collect();
        futures_util::future::join_all(waits).await;
        // The first goes at once, four more 50 ms apart.
        assert!(
            started.elapsed() >= Duration::from_millis(195),
            "{:?}",
            started.elapsed()
        );
    }
}
