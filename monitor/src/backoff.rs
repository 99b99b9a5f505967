//! The delay before reconnecting a lost source: it starts at the minimum, doubles after
//! every try that fails, stops at the maximum, and starts over once a run has delivered
//! frames for as long as the maximum delay.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The delay before the next try, after a run that delivered frames for `healthy`.
    pub fn after(&mut self, healthy: Duration) -> Duration {
        if healthy >= self.max {
            self.next = self.min;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn delays_double_up_to_the_cap() {
        let mut b = Backoff::new(S, 8 * S);
        let delays: Vec<u64> = (0..6).map(|_| b.after(Duration::ZERO).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 8, 8]);
    }

    #[test]
    fn a_run_that_lasted_the_cap_starts_the_delays_over() {
        let mut b = Backoff::new(S, 4 * S);
        b.after(Duration::ZERO);
        b.after(Duration::ZERO);
        assert_eq!(b.after(3 * S), 4 * S, "a short run keeps the delay growing");
        assert_eq!(b.after(4 * S), S);
        assert_eq!(b.after(Duration::ZERO), 2 * S);
    }
}
