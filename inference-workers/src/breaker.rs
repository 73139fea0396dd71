//! A circuit breaker per provider: after `threshold` consecutive failures the circuit
//! opens and the provider is skipped for `cool_down`; then one trial call is let
//! through (half-open); a success closes the circuit, a failure opens it again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The breaker's view of a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
struct Inner {
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    trial_in_flight: bool,
}

/// Thread-safe circuit breaker.
#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cool_down: Duration,
    inner: Mutex<Inner>,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        CircuitBreaker {
            threshold: threshold.max(1),
            cool_down,
            inner: Mutex::new(Inner {
                consecutive_failures: 0,
                opened_at: None,
                trial_in_flight: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current state (without claiming the half-open trial).
    pub fn state(&self) -> CircuitState {
        let inner = self.lock();
        match inner.opened_at {
            None => CircuitState::Closed,
            Some(at) if at.elapsed() >= self.cool_down => CircuitState::HalfOpen,
            Some(_) => CircuitState::Open,
        }
    }

    /// Whether a call may go to this provider now. In half-open state only one caller
    /// gets `true` until that trial reports back.
    pub fn try_acquire(&self) -> bool {
        let mut inner = self.lock();
        match inner.opened_at {
            None => true,
            Some(at) if at.elapsed() >= self.cool_down && !inner.trial_in_flight => {
                inner.trial_in_flight = true;
                true
            }
            Some(_) => false,
        }
    }

    pub fn record_success(&self) {
        let mut inner = self.lock();
        inner.consecutive_failures = 0;
        inner.opened_at = None;
        inner.trial_in_flight = false;
    }

    pub fn record_failure(&self) {
        let mut inner = self.lock();
        inner.consecutive_failures += 1;
        if inner.trial_in_flight || inner.consecutive_failures >= self.threshold {
            inner.opened_at = Some(Instant::now());
        }
        inner.trial_in_flight = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_lets_one_trial_through() {
        let breaker = CircuitBreaker::new(3, Duration::from_millis(50));
        for _ in 0..2 {
            assert!(breaker.try_acquire());
            breaker.record_failure();
        }
        assert_eq!(breaker.state(), CircuitState::Closed);
        breaker.record_failure();
        assert_eq!(breaker.state(), CircuitState::Open);
        assert!(!breaker.try_acquire());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        assert!(breaker.try_acquire(), "one trial");
        assert!(!breaker.try_acquire(), "only one trial at a time");
        breaker.record_failure();
        assert_eq!(
            breaker.state(),
            CircuitState::Open,
            "a failed trial reopens"
        );
        std::thread::sleep(Duration::from_millis(60));
        assert!(breaker.try_acquire());
        breaker.record_success();
        assert_eq!(breaker.state(), CircuitState::Closed);
        assert!(breaker.try_acquire());
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let breaker = CircuitBreaker::new(2, Duration::from_secs(60));
        breaker.record_failure();
        breaker.record_success();
        breaker.record_failure();
        assert_eq!(breaker.state(), CircuitState::Closed);
    }
}
