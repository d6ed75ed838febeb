//! Backend health, passive and active.
//!
//! **Passive**: taking a backend out of rotation for a while after it
//! failed several requests in a row, as HAProxy's `observe layer4` with
//! `error-limit 3 on-error mark-down` does.
//!
//! Only failures that say the process is gone count: a refused or timed-out
//! connect, and a connection closed or reset before any response byte
//! ([`crate::ProxyError::marks_backend`]). A slow app or a bad response is
//! the app's own business and never ejects it. After
//! [`FAILURES_TO_EJECT`] such failures in a row the backend is *down* for a
//! cooldown: 1 s, doubling with each ejection that follows without a success
//! in between, up to 30 s. When the cooldown ends the backend gets traffic
//! again; one more failure then ejects it at once (with the next, longer
//! cooldown), and any success puts it back for good.
//!
//! Down is advice to the balancer, not a verdict: when every backend of an
//! app is down, they are all tried anyway (see [`crate::balance`]), because
//! marks can be stale and a possibly-working app must not become a `503`.
//!
//! **Active** (when the app has a health check, run by [`crate::checks`]):
//! like HAProxy's `option httpchk` with `rise`/`fall`, a backend that fails
//! `fall` checks in a row is down until it passes `rise` in a row. Backends
//! start up: the control plane only routes instances that already passed
//! their checks, and a standalone router must not refuse traffic for the
//! first interval after a reload.
//!
//! The state is a few atomics per backend, read on every pick without a
//! lock. Times are milliseconds on a process-wide monotonic clock
//! ([`now_ms`]).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Consecutive failures that take a backend out of rotation.
pub(crate) const FAILURES_TO_EJECT: u32 = 3;
/// Cooldown of a first ejection.
const FIRST_COOLDOWN_MS: u64 = 1_000;
/// Longest cooldown, however often a backend is ejected again.
const MAX_COOLDOWN_MS: u64 = 30_000;

/// Milliseconds since the first call in this process, on a monotonic clock.
pub(crate) fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let ms = EPOCH.get_or_init(Instant::now).elapsed().as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// The passive health of one backend.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// Failures since the last success.
    failures: AtomicU32,
    /// Ejections since the last success; sets the next cooldown.
    ejections: AtomicU32,
    /// Down while [`now_ms`] is below this; 0 when never ejected.
    down_until: AtomicU64,
    /// Down by active checks, until `rise` of them pass in a row.
    check_down: AtomicBool,
    /// Checks in a row with the same outcome: passes while up-going,
    /// failures otherwise (the sign is `check_streak_passing`).
    check_streak: AtomicU32,
    check_streak_passing: AtomicBool,
    /// When the next check is due ([`now_ms`]); 0 = at once.
    pub(crate) next_check: AtomicU64,
    /// A check is under way: the next one waits for it.
    pub(crate) checking: AtomicBool,
}

/// A backend changing state by active checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CheckTransition {
    /// Failed `fall` checks in a row: out of rotation.
    Down,
    /// Passed `rise` checks in a row after being down: back in rotation.
    Up,
}

/// A backend just taken out of rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ejection {
    pub cooldown: Duration,
    /// The first ejection since the backend last answered; repeats of a
    /// backend that stays dead are only worth a debug line.
    pub first: bool,
}

impl Health {
    /// Whether the balancer should skip this backend at `now`.
    pub(crate) fn is_down(&self, now: u64) -> bool {
        now < self.down_until.load(Ordering::Relaxed) || self.check_down.load(Ordering::Relaxed)
    }

    /// Whether active checks hold this backend out of rotation.
    pub(crate) fn failing_checks(&self) -> bool {
        self.check_down.load(Ordering::Relaxed)
    }

    /// Drops what active checks concluded, for an app that no longer has
    /// a check.
    pub(crate) fn forget_checks(&self) {
        self.check_down.store(false, Ordering::Relaxed);
        self.check_streak.store(0, Ordering::Relaxed);
        self.next_check.store(0, Ordering::Relaxed);
    }

    /// Records one active check; returns the change it caused, if any.
    /// Only the checker calls this, one check per backend at a time.
    pub(crate) fn record_check(
        &self,
        passed: bool,
        rise: u32,
        fall: u32,
    ) -> Option<CheckTransition> {
        let streak = if self.check_streak_passing.swap(passed, Ordering::Relaxed) == passed {
            self.check_streak
                .fetch_add(1, Ordering::Relaxed)
                .saturating_add(1)
        } else {
            self.check_streak.store(1, Ordering::Relaxed);
            1
        };
        let down = self.check_down.load(Ordering::Relaxed);
        match (down, passed) {
            (false, false) if streak >= fall => {
                self.check_down.store(true, Ordering::Relaxed);
                Some(CheckTransition::Down)
            }
            (true, true) if streak >= rise => {
                self.check_down.store(false, Ordering::Relaxed);
                Some(CheckTransition::Up)
            }
            _ => None,
        }
    }

    /// Counts a failure at `now`; returns the ejection if this one caused it.
    /// Failures of requests sent before an ejection and finishing during
    /// its cooldown change nothing, so a burst of them cannot stack up
    /// cooldowns.
    pub(crate) fn record_failure(&self, now: u64) -> Option<Ejection> {
        let failures = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if failures < FAILURES_TO_EJECT {
            return None;
        }
        let until = self.down_until.load(Ordering::Relaxed);
        if now < until {
            return None;
        }
        let ejections = self.ejections.load(Ordering::Relaxed);
        let cooldown = cooldown_ms(ejections);
        // Of several failures racing here, exactly one ejects.
        self.down_until
            .compare_exchange(
                until,
                now.saturating_add(cooldown),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .ok()?;
        self.ejections.fetch_add(1, Ordering::Relaxed);
        Some(Ejection {
            cooldown: Duration::from_millis(cooldown),
            first: ejections == 0,
        })
    }

    /// Counts a success: the backend is healthy again. Returns true for the
    /// first success after an ejection, so its return is reported once.
    pub(crate) fn record_success(&self) -> bool {
        // Loads first: this runs on every answered request, and a store
        // would make every core's copy of the line dirty for nothing.
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.ejections.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.down_until.store(0, Ordering::Relaxed);
        self.ejections.swap(0, Ordering::Relaxed) != 0
    }
}

/// The cooldown of the ejection that follows `previous` ones.
fn cooldown_ms(previous: u32) -> u64 {
    FIRST_COOLDOWN_MS
        .checked_shl(previous)
        .unwrap_or(MAX_COOLDOWN_MS)
        .min(MAX_COOLDOWN_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_failures_in_a_row_eject_for_a_second() {
        let h = Health::default();
        assert_eq!(h.record_failure(10), None);
        assert_eq!(h.record_failure(10), None);
        assert!(!h.is_down(10));
        let e = h.record_failure(10).expect("third failure ejects");
        assert_eq!(e.cooldown, Duration::from_secs(1));
        assert!(e.first);
        assert!(h.is_down(10) && h.is_down(1009));
        assert!(!h.is_down(1010), "back in rotation after the cooldown");
    }

    #[test]
    fn a_success_resets_the_count_and_reports_the_return_once() {
        let h = Health::default();
        h.record_failure(0);
        h.record_failure(0);
        assert!(!h.record_success(), "never ejected: nothing to report");
        assert_eq!(h.record_failure(0), None, "the count started over");
        assert_eq!(h.record_failure(0), None);
        assert!(h.record_failure(0).is_some());
        assert!(h.record_success());
        assert!(!h.is_down(1), "a success ends the cooldown");
        assert!(!h.record_success(), "reported once");
        assert_eq!(h.record_failure(2), None, "three more to eject again");
    }

    #[test]
    fn repeated_ejections_double_up_to_thirty_seconds() {
        let h = Health::default();
        let mut now = 0;
        let mut cooldowns = Vec::new();
        h.record_failure(now);
        h.record_failure(now);
        // Each failure after a cooldown ends ejects again at once.
        for _ in 0..8 {
            let e = h.record_failure(now).or_else(|| {
                now += 100_000;
                h.record_failure(now)
            });
            let e = e.expect("ejected");
            cooldowns.push(e.cooldown.as_secs());
            assert_eq!(e.first, cooldowns.len() == 1);
        }
        assert_eq!(cooldowns, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn failures_during_a_cooldown_do_not_extend_it() {
        let h = Health::default();
        for _ in 0..3 {
            h.record_failure(0);
        }
        for _ in 0..10 {
            assert_eq!(h.record_failure(500), None);
        }
        assert!(!h.is_down(1000));
        let e = h.record_failure(1000).expect("ejected again");
        assert_eq!(e.cooldown, Duration::from_secs(2));
    }

    #[test]
    fn checks_take_fall_failures_down_and_rise_passes_up() {
        let h = Health::default();
        assert!(!h.is_down(0), "a backend starts up");
        assert_eq!(h.record_check(false, 2, 3), None);
        assert_eq!(h.record_check(false, 2, 3), None);
        assert_eq!(h.record_check(true, 2, 3), None, "a pass breaks the streak");
        assert_eq!(h.record_check(false, 2, 3), None);
        assert_eq!(h.record_check(false, 2, 3), None);
        assert_eq!(h.record_check(false, 2, 3), Some(CheckTransition::Down));
        assert!(h.is_down(0) && h.failing_checks());
        assert_eq!(h.record_check(false, 2, 3), None, "down once");
        assert!(
            !h.record_success() || h.is_down(0),
            "traffic cannot overrule checks"
        );
        assert!(h.is_down(0));
        assert_eq!(h.record_check(true, 2, 3), None);
        assert_eq!(h.record_check(true, 2, 3), Some(CheckTransition::Up));
        assert!(!h.is_down(0));
    }

    #[test]
    fn the_clock_moves_forward() {
        let a = now_ms();
        assert!(now_ms() >= a);
        assert_eq!(cooldown_ms(100), MAX_COOLDOWN_MS);
    }
}
