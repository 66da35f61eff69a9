//! Partners' shared limits: a rate slot is taken by one caller only, slots
//! are spaced, and a circuit is saved only over the version read.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use pointsflow_core::governance::{Circuit, CircuitState, Slot};
use pointsflow_core::ports::StoreError;
use pointsflow_core::ports::{CircuitStore, RateLimiter};
use pointsflow_core::values::PartnerId;

pub async fn run_all(limiter: Arc<dyn RateLimiter>, circuits: Arc<dyn CircuitStore>) {
    slots_are_taken_once_and_spaced(limiter).await;
    circuits_are_saved_over_their_version(circuits).await;
}

pub async fn slots_are_taken_once_and_spaced(limiter: Arc<dyn RateLimiter>) {
    let partner = PartnerId::parse("rate-limited").unwrap();
    let now = Utc::now();
    let spacing = Duration::from_millis(100);
    // Twenty callers at once, at the same instant: each gets its own slot.
    let slots = futures::future::join_all((0..20).map(|_| {
        let (limiter, partner) = (limiter.clone(), partner.clone());
        async move {
            limiter
                .reserve(&partner, spacing, Duration::from_secs(60), now)
                .await
                .unwrap()
        }
    }))
    .await;
    let mut waits: Vec<Duration> = slots
        .iter()
        .map(|s| match s {
            Slot::Granted(w) => *w,
            Slot::Denied(_) => panic!("a slot within the wait was denied"),
        })
        .collect();
    waits.sort();
    for pair in waits.windows(2) {
        assert!(
            pair[1] - pair[0] >= spacing,
            "two callers got slots closer than the spacing: {waits:?}"
        );
    }
    // The next slot is two seconds away: a caller that waits at most one is denied.
    let denied = limiter
        .reserve(&partner, spacing, Duration::from_secs(1), now)
        .await
        .unwrap();
    assert!(
        matches!(denied, Slot::Denied(w) if w >= Duration::from_secs(1)),
        "{denied:?}"
    );
    // Later, the limit is free again.
    let later = now + TimeDelta::seconds(10);
    assert_eq!(
        limiter
            .reserve(&partner, spacing, Duration::ZERO, later)
            .await
            .unwrap(),
        Slot::Granted(Duration::ZERO)
    );
}

pub async fn circuits_are_saved_over_their_version(circuits: Arc<dyn CircuitStore>) {
    let partner = PartnerId::parse("flaky").unwrap();
    let fresh = circuits.circuit(&partner).await.unwrap();
    assert_eq!(fresh, Circuit::default(), "a partner never seen is closed");
    let open = Circuit {
        state: CircuitState::Open,
        failures: 5,
        opened_at: Some(Utc::now()),
        ..fresh
    };
    assert_eq!(circuits.save_circuit(&partner, &open).await.unwrap(), 1);
    assert_eq!(
        circuits.save_circuit(&partner, &fresh).await,
        Err(StoreError::Conflict { expected: 0 }),
        "a save over a stale read must fail"
    );
    let stored = circuits.circuit(&partner).await.unwrap();
    assert_eq!(
        stored,
        Circuit { version: 1, ..open },
        "the circuit round-trips"
    );
    let closed = Circuit {
        version: 1,
        ..Circuit::default()
    };
    assert_eq!(circuits.save_circuit(&partner, &closed).await.unwrap(), 2);
}
