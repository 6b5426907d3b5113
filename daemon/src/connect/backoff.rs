//! Delays between tries of a connector whose peer is down: capped
//! exponential backoff with jitter, so connectors that failed together do
//! not retry together.

use std::time::Duration;

/// Delay before the next try: doubles from `initial` up to `max`, with
/// jitter (a random 50–100 % of the step) so that connectors that failed
/// together do not retry together.
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            step: initial,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let mut b = [0u8; 8];
        let r = if getrandom::fill(&mut b).is_ok() {
            u64::from_le_bytes(b)
        } else {
            0
        };
        let fraction = 0.5 + (r % 1000) as f64 / 2000.0;
        let d = self.step.mul_f64(fraction);
        self.step = (self.step * 2).min(self.max);
        d
    }

    pub fn reset(&mut self) {
        self.step = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        let d: Vec<Duration> = (0..5).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(50) && d[0] <= Duration::from_millis(100));
        assert!(d[1] >= Duration::from_millis(100) && d[1] <= Duration::from_millis(200));
        assert!(d[4] >= Duration::from_millis(200) && d[4] <= Duration::from_millis(400));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
