//! Per-app request rate limits, counted per client address: the
//! [`Limiter`] that enforces a [`RateLimit`] (`"100/s"`, from the model).
//!
//! The limiter is GCRA (the generic cell rate algorithm, as in ATM networks
//! and `redis-cell`): one timestamp per client, the "theoretical arrival
//! time" of its next request, instead of a token count and a refill clock.
//! A client may burst up to the whole allowance at once, then gets one
//! request per `period / requests`. A refused request gets the exact wait
//! until the next would pass, for `Retry-After`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

pub use berth_model::RateLimit;

/// Enforces one [`RateLimit`] per client address.
#[derive(Debug)]
pub(crate) struct Limiter {
    rate: RateLimit,
    /// Time between two requests at the sustained rate.
    interval: Duration,
    /// How far ahead of now a client's arrival time may run: the burst.
    tolerance: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Next theoretical arrival time per client.
    tat: HashMap<IpAddr, Instant>,
    /// Size at which entries that no longer hold anything back are dropped,
    /// so the map stays bounded by the clients active within one period.
    sweep_at: usize,
}

const MIN_SWEEP: usize = 1024;

impl Limiter {
    pub(crate) fn new(rate: RateLimit) -> Self {
        let interval = rate.period / rate.requests;
        Self {
            rate,
            interval,
            tolerance: rate.period.saturating_sub(interval),
            state: Mutex::new(State {
                tat: HashMap::new(),
                sweep_at: MIN_SWEEP,
            }),
        }
    }

    pub(crate) fn rate(&self) -> RateLimit {
        self.rate
    }

    /// Admits a request from `client` at `now`, or says how long until one
    /// would be admitted.
    pub(crate) fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.tat.len() >= state.sweep_at {
            state.tat.retain(|_, tat| *tat > now);
            state.sweep_at = (state.tat.len() * 2).max(MIN_SWEEP);
        }
        let tat = state.tat.get(&client).map_or(now, |t| (*t).max(now));
        let ahead = tat - now;
        if ahead > self.tolerance {
            return Err(ahead - self.tolerance);
        }
        state.tat.insert(client, tat + self.interval);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bursts_then_paces_each_client_alone() {
        let limiter = Limiter::new("4/s".parse().expect("rate"));
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let t0 = Instant::now();
        for _ in 0..4 {
            assert_eq!(limiter.check(a, t0), Ok(()));
        }
        let wait = limiter.check(a, t0).expect_err("fifth in the same instant");
        assert_eq!(wait, Duration::from_millis(250));
        assert_eq!(
            limiter.check(b, t0),
            Ok(()),
            "another client has its own allowance"
        );
        assert!(limiter.check(a, t0 + Duration::from_millis(249)).is_err());
        assert_eq!(limiter.check(a, t0 + Duration::from_millis(250)), Ok(()));
        // After a quiet period the whole burst is back.
        let later = t0 + Duration::from_secs(5);
        for _ in 0..4 {
            assert_eq!(limiter.check(a, later), Ok(()));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn idle_clients_are_forgotten() {
        let limiter = Limiter::new("1/s".parse().expect("rate"));
        let t0 = Instant::now();
        for i in 0..MIN_SWEEP as u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            assert_eq!(limiter.check(ip, t0), Ok(()));
        }
        let later = t0 + Duration::from_secs(2);
        let _ = limiter.check("1.1.1.1".parse().expect("ip"), later);
        let state = limiter.state.lock().expect("lock");
        assert_eq!(
            state.tat.len(),
            1,
            "entries that hold nothing back are dropped"
        );
    }
}
