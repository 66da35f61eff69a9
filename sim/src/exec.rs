//! A deterministic executor: every simulated Lambda invocation, client
//! request and operator command is a task, and the seeded scheduler picks
//! which task runs next. Tasks give way at every port call (the fault
//! layer yields there), so invocations interleave step by step, as
//! concurrent Lambdas do, in an order the seed alone decides.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures::task::{ArcWake, waker};

thread_local! {
    /// The task being polled, so the fault layer knows whom a crash kills.
    static CURRENT: Cell<u64> = const { Cell::new(0) };
}

/// The id of the task being polled (0 outside any task).
pub fn current_task() -> u64 {
    CURRENT.with(Cell::get)
}

struct Flag(AtomicBool);

impl ArcWake for Flag {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.0.store(true, Ordering::SeqCst);
    }
}

/// What a task is, for the trace and for what a crash means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskKind {
    Intake,
    Eligibility,
    Dispatch,
    Window,
    Resolver,
    Operator,
    Events,
}

type Task = Pin<Box<dyn Future<Output = ()>>>;

struct Slot {
    kind: TaskKind,
    future: Task,
    woken: Arc<Flag>,
    /// Run when the task is killed by a crash (e.g. a client sees no answer).
    on_crash: Option<Box<dyn FnOnce()>>,
}

/// The tasks in flight.
#[derive(Default)]
pub struct Executor {
    tasks: BTreeMap<u64, Slot>,
    next: u64,
}

/// What polling one task came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Polled {
    Pending,
    Done,
    Crashed,
}

/// Gives way once: the scheduler may run another task before this one goes on.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await;
}

impl Executor {
    pub fn spawn(
        &mut self,
        kind: TaskKind,
        future: impl Future<Output = ()> + 'static,
        on_crash: Option<Box<dyn FnOnce()>>,
    ) -> u64 {
        self.next += 1;
        self.tasks.insert(
            self.next,
            Slot {
                kind,
                future: Box::pin(future),
                woken: Arc::new(Flag(AtomicBool::new(true))),
                on_crash,
            },
        );
        self.next
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// The tasks that can make progress now, in id order.
    pub fn ready(&self) -> Vec<u64> {
        self.tasks
            .iter()
            .filter(|(_, s)| s.woken.0.load(Ordering::SeqCst))
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn kind(&self, id: u64) -> Option<TaskKind> {
        self.tasks.get(&id).map(|s| s.kind.clone())
    }

    /// Polls task `id` once; `crashed` says whether the fault layer killed it.
    pub fn poll(&mut self, id: u64, crashed: &dyn Fn(u64) -> bool) -> Polled {
        let Some(slot) = self.tasks.get_mut(&id) else {
            return Polled::Done;
        };
        slot.woken.0.store(false, Ordering::SeqCst);
        let waker = waker(slot.woken.clone());
        let mut cx = Context::from_waker(&waker);
        CURRENT.with(|c| c.set(id));
        let polled = slot.future.as_mut().poll(&mut cx);
        CURRENT.with(|c| c.set(0));
        if crashed(id) {
            if let Some(slot) = self.tasks.remove(&id)
                && let Some(on_crash) = slot.on_crash
            {
                on_crash();
            }
            return Polled::Crashed;
        }
        match polled {
            Poll::Ready(()) => {
                self.tasks.remove(&id);
                Polled::Done
            }
            Poll::Pending => Polled::Pending,
        }
    }
}
