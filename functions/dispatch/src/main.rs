//! The dispatch Lambda: wiring only (see pointsflow-lambda for the environment).

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use pointsflow_core::time::{RandomIds, SystemClock};
use pointsflow_dispatch::resolve::Resolution;
use pointsflow_dispatch::{Dispatch, DispatchPorts};
use pointsflow_lambda::{DISPATCH_QUEUE_URL, STACK, Wiring};
use pointsflow_runtime::Backoff;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let wiring = Wiring::from_env().await?;
    pointsflow_lambda::init_tracing(&wiring.config);
    let (store, ledger) = (wiring.store(), wiring.ledger());
    let store_for_windows = store.clone();
    let dispatch = Dispatch::new(DispatchPorts {
        get: store.clone(),
        update: wiring.notifying(store)?,
        ledger_read: ledger.clone(),
        ledger_write: ledger,
        programs: wiring.catalog().await?,
        partners: wiring.connectors()?,
        ids: Arc::new(RandomIds),
        clock: Arc::new(SystemClock),
        scheduled: store_for_windows,
        windows: wiring.window_store(),
        work: wiring.publisher(DISPATCH_QUEUE_URL)?,
        redelivery: wiring.redelivery(DISPATCH_QUEUE_URL)?,
        unsettled_requests: wiring.store(),
        requeue: wiring.publisher(DISPATCH_QUEUE_URL)?,
    })
    .with_resolution(Resolution {
        after: std::time::Duration::from_millis(wiring.config.resolve_after_ms),
        metric_stack: std::env::var(STACK).ok(),
    })
    .with_backoff(Backoff {
        base: wiring.config.queues.retry_base(),
        cap: wiring.config.queues.retry_cap(),
    });
    let dispatch = &dispatch;
    run(service_fn(move |event: LambdaEvent<_>| {
        dispatch.handle_any(event)
    }))
    .await
}
