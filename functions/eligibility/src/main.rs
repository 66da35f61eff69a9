//! The eligibility Lambda: wiring only (see pointsflow-lambda for the environment).

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use pointsflow_core::time::SystemClock;
use pointsflow_eligibility::{Eligibility, EligibilityPorts};
use pointsflow_lambda::{DISPATCH_QUEUE_URL, Wiring};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let wiring = Wiring::from_env().await?;
    pointsflow_lambda::init_tracing(&wiring.config);
    let (store, ledger) = (wiring.store(), wiring.ledger());
    let sweep_every = std::time::Duration::from_millis(wiring.config.waiting_sweep_ms);
    let eligibility = Eligibility::new(EligibilityPorts {
        get: store.clone(),
        waiting: store.clone(),
        partners: wiring.connectors()?,
        update: wiring.notifying(store)?,
        ledger: ledger.clone(),
        ledger_read: ledger,
        programs: wiring.catalog().await?,
        enrollments: wiring.enrollments(),
        dispatch_queue: wiring.publisher(DISPATCH_QUEUE_URL)?,
        schedules: wiring.schedules()?,
        clock: Arc::new(SystemClock),
    })
    .with_sweep_every(sweep_every);
    let eligibility = &eligibility;
    run(service_fn(move |event: LambdaEvent<_>| {
        eligibility.handle(event)
    }))
    .await
}
