//! What keeps pointsflow a good client of each partner, shared by every
//! invocation of every function: a rate limit (calls spaced evenly, so no
//! second ever holds more than the partner allows) and a circuit breaker
//! (after repeated failures, no calls for a while, then one probe).
//!
//! The decisions are pure functions of the stored state and the time; the
//! ports keep the state where every invocation sees it (DynamoDB when
//! deployed), changed only by conditional writes.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// A partner's limits, from its configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PartnerLimits {
    /// Calls per second the partner allows; `None` for no limit.
    pub rate_limit_per_second: Option<u32>,
    /// Consecutive failed calls (timeouts, 5xx, no connection) that open the circuit.
    pub circuit_failures: u32,
    /// How long an open circuit refuses calls before one probe is let
    /// through; doubled after each failed probe, up to `circuit_open_max`.
    pub circuit_open: Duration,
    /// The longest an open circuit waits between probes.
    pub circuit_open_max: Duration,
    /// How long a probe may take before another invocation may probe instead.
    pub probe_timeout: Duration,
    /// How long after receiving a call the partner may still commit it
    /// (its committed latency), added to the lease before a look-up.
    pub commit_within: Duration,
}

impl Default for PartnerLimits {
    fn default() -> Self {
        Self {
            rate_limit_per_second: None,
            circuit_failures: 5,
            circuit_open: Duration::from_secs(30),
            circuit_open_max: Duration::from_secs(900),
            probe_timeout: Duration::from_secs(30),
            commit_within: Duration::ZERO,
        }
    }
}

/// The share of a partner's rate limit pointsflow uses: calls are spaced
/// 5% further apart than the limit allows, so a call delayed a little on
/// the way never lands in the next second with that second's full quota.
pub const RATE_HEADROOM: f64 = 1.05;

impl PartnerLimits {
    /// The time between two calls, when rate limited.
    pub fn spacing(&self) -> Option<Duration> {
        self.rate_limit_per_second
            .filter(|n| *n > 0)
            .map(|n| Duration::from_secs_f64(RATE_HEADROOM / f64::from(n)))
    }
}

/// A slot in a partner's rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Reserved: the call may start after waiting this long.
    Granted(Duration),
    /// The next free slot is further away than the caller would wait.
    Denied(Duration),
}

/// The next call's slot under a generic cell rate: calls start at least
/// `spacing` apart. `next_free` is when the next call may start; returns
/// the slot and the new `next_free` when granted.
pub fn next_slot(
    next_free: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    spacing: Duration,
    max_wait: Duration,
) -> (Slot, Option<DateTime<Utc>>) {
    let start = next_free.filter(|t| *t > now).unwrap_or(now);
    let wait = (start - now).to_std().unwrap_or_default();
    if wait > max_wait {
        return (Slot::Denied(wait), None);
    }
    let spacing = TimeDelta::from_std(spacing).unwrap_or(TimeDelta::MAX);
    (Slot::Granted(wait), Some(start + spacing))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    #[default]
    Closed,
    Open,
    /// Open, and one probe is on its way.
    HalfOpen,
}

/// A partner's circuit, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Circuit {
    pub state: CircuitState,
    /// Consecutive failed calls.
    pub failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened_at: Option<DateTime<Utc>>,
    /// Probes that failed since the circuit first opened: each doubles the
    /// wait before the next.
    #[serde(default)]
    pub reopenings: u32,
    /// When the circuit first opened in this outage (kept while probes
    /// fail, cleared when it closes): how long the partner has been
    /// unavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable_since: Option<DateTime<Utc>>,
    /// A probe in flight holds the circuit until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_until: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub version: u64,
}

/// What to do about a call, given the circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Closed: call.
    Call,
    /// Open long enough: call as the one probe, after saving this circuit.
    Probe(Circuit),
    /// Open: no call for this long.
    Refuse(Duration),
}

fn until(at: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (at - now).to_std().unwrap_or_default()
}

impl Circuit {
    /// Whether a call may go now.
    pub fn gate(&self, now: DateTime<Utc>, limits: &PartnerLimits) -> Gate {
        let probe = || {
            Gate::Probe(Circuit {
                state: CircuitState::HalfOpen,
                probe_until: Some(
                    now + TimeDelta::from_std(limits.probe_timeout).unwrap_or(TimeDelta::MAX),
                ),
                ..*self
            })
        };
        match self.state {
            CircuitState::Closed => Gate::Call,
            CircuitState::Open => {
                let reopens = self.opened_at.unwrap_or(now)
                    + TimeDelta::from_std(self.open_for(limits)).unwrap_or(TimeDelta::MAX);
                if now >= reopens {
                    probe()
                } else {
                    Gate::Refuse(until(reopens, now))
                }
            }
            CircuitState::HalfOpen => match self.probe_until {
                Some(t) if now < t => Gate::Refuse(until(t, now)),
                _ => probe(),
            },
        }
    }

    /// How long the circuit stays open before the next probe:
    /// `circuit_open`, doubled for each failed probe, at most
    /// `circuit_open_max`.
    pub fn open_for(&self, limits: &PartnerLimits) -> Duration {
        let doubled = limits
            .circuit_open
            .saturating_mul(1u32 << self.reopenings.min(20));
        doubled.min(limits.circuit_open_max.max(limits.circuit_open))
    }

    /// How long the partner has been unavailable (its circuit not closed),
    /// or `None` while it is closed.
    pub fn unavailable_for(&self, now: DateTime<Utc>) -> Option<Duration> {
        if self.state == CircuitState::Closed {
            return None;
        }
        let since = self.unavailable_since.or(self.opened_at)?;
        Some((now - since).to_std().unwrap_or_default())
    }

    /// The circuit after a call that the partner answered (`answered`) or
    /// that failed; `None` when nothing changes.
    pub fn after(
        &self,
        answered: bool,
        now: DateTime<Utc>,
        limits: &PartnerLimits,
    ) -> Option<Circuit> {
        if answered {
            return (self.state != CircuitState::Closed || self.failures > 0).then(|| Circuit {
                version: self.version,
                ..Circuit::default()
            });
        }
        let failures = self.failures.saturating_add(1);
        let opens = self.state == CircuitState::HalfOpen
            || (self.state == CircuitState::Closed && failures >= limits.circuit_failures.max(1));
        let reprobed = self.state == CircuitState::HalfOpen;
        Some(if opens {
            Circuit {
                state: CircuitState::Open,
                failures,
                opened_at: Some(now),
                reopenings: if reprobed {
                    self.reopenings.saturating_add(1)
                } else {
                    0
                },
                unavailable_since: if reprobed {
                    self.unavailable_since.or(self.opened_at).or(Some(now))
                } else {
                    Some(now)
                },
                probe_until: None,
                version: self.version,
            }
        } else {
            Circuit { failures, ..*self }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::milliseconds(ms)
    }

    #[test]
    fn slots_are_spaced_and_never_reserved_beyond_the_wait() {
        let spacing = Duration::from_millis(105);
        let wait = Duration::from_secs(1);
        let (slot, next) = next_slot(None, t(0), spacing, wait);
        assert_eq!((slot, next), (Slot::Granted(Duration::ZERO), Some(t(105))));
        let (slot, next) = next_slot(next, t(10), spacing, wait);
        assert_eq!(
            (slot, next),
            (Slot::Granted(Duration::from_millis(95)), Some(t(210)))
        );
        let (slot, next) = next_slot(Some(t(5_000)), t(10), spacing, wait);
        assert_eq!(
            (slot, next),
            (Slot::Denied(Duration::from_millis(4_990)), None)
        );
        // At 10 per second, no second holds more than 10 starts.
        let limits = PartnerLimits {
            rate_limit_per_second: Some(10),
            ..PartnerLimits::default()
        };
        let mut next = None;
        let mut starts = Vec::new();
        for _ in 0..100 {
            let (Slot::Granted(w), n) =
                next_slot(next, t(0), limits.spacing().unwrap(), Duration::MAX)
            else {
                panic!()
            };
            starts.push(w.as_millis() as i64);
            next = n;
        }
        for s in 0..10 {
            let in_second = starts.iter().filter(|x| **x / 1000 == s).count();
            assert!(in_second <= 10, "{in_second} in second {s}");
        }
    }

    #[test]
    fn the_circuit_opens_after_repeated_failures_and_probes_once_when_half_open() {
        let limits = PartnerLimits {
            circuit_failures: 3,
            circuit_open: Duration::from_secs(30),
            ..PartnerLimits::default()
        };
        let mut c = Circuit::default();
        for i in 0..3 {
            assert_eq!(c.gate(t(i), &limits), Gate::Call);
            c = c.after(false, t(i), &limits).unwrap();
        }
        assert_eq!(c.state, CircuitState::Open);
        assert_eq!(
            c.gate(t(10_000), &limits),
            Gate::Refuse(Duration::from_millis(20_002))
        );
        let Gate::Probe(probing) = c.gate(t(30_002), &limits) else {
            panic!("open long enough: one probe");
        };
        assert_eq!(probing.state, CircuitState::HalfOpen);
        assert!(
            matches!(probing.gate(t(30_003), &limits), Gate::Refuse(_)),
            "only one probe"
        );
        // The probe fails: open again, from now.
        let reopened = probing.after(false, t(31_000), &limits).unwrap();
        assert_eq!(
            (reopened.state, reopened.opened_at),
            (CircuitState::Open, Some(t(31_000)))
        );
        // A probe that succeeds closes it.
        let closed = probing.after(true, t(31_000), &limits).unwrap();
        assert_eq!((closed.state, closed.failures), (CircuitState::Closed, 0));
        // A success on a healthy circuit writes nothing.
        assert_eq!(Circuit::default().after(true, t(0), &limits), None);
        // A probe that never answers is taken over after its timeout.
        assert!(matches!(
            probing.gate(t(30_002 + 30_000), &limits),
            Gate::Probe(_)
        ));
    }

    /// While a partner stays down, each failed probe doubles the wait
    /// before the next, up to `circuit_open_max`, and the circuit keeps
    /// when the outage began; a probe that succeeds closes it and forgets.
    #[test]
    fn failed_probes_back_off_and_the_outage_is_measured_from_its_start() {
        let limits = PartnerLimits {
            circuit_failures: 1,
            circuit_open: Duration::from_secs(30),
            circuit_open_max: Duration::from_secs(900),
            ..PartnerLimits::default()
        };
        let mut c = Circuit::default().after(false, t(0), &limits).unwrap();
        assert_eq!(c.unavailable_since, Some(t(0)));
        let mut now = 0;
        let mut waits = Vec::new();
        for _ in 0..8 {
            waits.push(c.open_for(&limits).as_secs());
            now += i64::try_from(c.open_for(&limits).as_millis()).unwrap();
            let Gate::Probe(probing) = c.gate(t(now), &limits) else {
                panic!("a probe once the wait is over");
            };
            c = probing.after(false, t(now + 1_000), &limits).unwrap();
            now += 1_000;
        }
        assert_eq!(waits, [30, 60, 120, 240, 480, 900, 900, 900]);
        assert_eq!(c.unavailable_since, Some(t(0)));
        assert_eq!(
            c.unavailable_for(t(now)),
            Some(Duration::from_millis(u64::try_from(now).unwrap()))
        );
        let Gate::Probe(probing) = c.gate(t(now + 900_000), &limits) else {
            panic!("a probe");
        };
        let closed = probing.after(true, t(now + 900_001), &limits).unwrap();
        assert_eq!(closed.unavailable_for(t(now + 900_002)), None);
        assert_eq!((closed.reopenings, closed.unavailable_since), (0, None));
    }
}
