//! The embedded scheduler: EventBridge Scheduler's one-time schedules, one
//! per window, firing at the window's closing time.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::Utc;
use pointsflow_core::ports::{StoreError, WindowSchedules};
use pointsflow_core::window::WindowId;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Default)]
pub struct MemorySchedules {
    armed: Mutex<BTreeSet<(chrono::DateTime<Utc>, WindowId)>>,
    changed: Notify,
}

impl MemorySchedules {
    pub fn new() -> Self {
        Self::default()
    }

    /// The windows armed and not fired yet, soonest first.
    pub fn armed(&self) -> Vec<WindowId> {
        self.armed
            .lock()
            .map(|a| a.iter().map(|(_, w)| w.clone()).collect())
            .unwrap_or_default()
    }

    /// Takes the windows due at `now`.
    fn due(&self, now: chrono::DateTime<Utc>) -> (Vec<WindowId>, Option<chrono::DateTime<Utc>>) {
        let Ok(mut armed) = self.armed.lock() else {
            return (Vec::new(), None);
        };
        let mut due = Vec::new();
        while let Some(first) = armed.first().cloned() {
            if first.0 > now {
                break;
            }
            armed.remove(&first);
            due.push(first.1);
        }
        (due, armed.first().map(|(at, _)| *at))
    }

    /// Fires each armed window at its closing time with `fire`, until `shutdown`.
    pub async fn run<F, Fut>(&self, fire: F, shutdown: CancellationToken)
    where
        F: Fn(WindowId) -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let (due, next) = self.due(Utc::now());
            for window in due {
                fire(window).await;
            }
            let wait = next
                .map(|at| (at - Utc::now()).to_std().unwrap_or_default())
                .unwrap_or(std::time::Duration::from_secs(3600));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = &mut changed => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[async_trait]
impl WindowSchedules for MemorySchedules {
    async fn arm(&self, window: &WindowId) -> Result<(), StoreError> {
        let mut armed = self
            .armed
            .lock()
            .map_err(|_| StoreError::Unavailable("scheduler lock poisoned".into()))?;
        if armed.insert((window.closes_at(), window.clone())) {
            drop(armed);
            self.changed.notify_waiters();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_window_fires_once_at_its_time_and_not_before() {
        let schedules = Arc::new(MemorySchedules::new());
        let program = pointsflow_core::values::ProgramId::parse("p").unwrap();
        let past = WindowId::new(&program, Utc::now() - chrono::TimeDelta::minutes(1));
        let future = WindowId::new(&program, Utc::now() + chrono::TimeDelta::hours(1));
        schedules.arm(&past).await.unwrap();
        schedules.arm(&past).await.unwrap();
        schedules.arm(&future).await.unwrap();
        let fired = Arc::new(AtomicUsize::new(0));
        let shutdown = CancellationToken::new();
        let task = {
            let (schedules, fired, shutdown) = (schedules.clone(), fired.clone(), shutdown.clone());
            tokio::spawn(async move {
                schedules
                    .run(
                        |w| {
                            let fired = fired.clone();
                            async move {
                                assert!(w.closes_at() <= Utc::now());
                                fired.fetch_add(1, Ordering::SeqCst);
                            }
                        },
                        shutdown,
                    )
                    .await
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(fired.load(Ordering::SeqCst), 1, "the due window, once");
        assert_eq!(schedules.armed(), vec![future]);
        // Armed while the loop sleeps: it wakes for it.
        schedules.arm(&past).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(fired.load(Ordering::SeqCst), 2);
        shutdown.cancel();
        task.await.unwrap();
    }
}
