//! The callbacks Lambda: wiring only (see pointsflow-lambda for the environment).

use std::sync::Arc;

use lambda_runtime::{Error, run, service_fn};
use pointsflow_callbacks::{Callbacks, CallbacksPorts, targets};
use pointsflow_core::time::SystemClock;
use pointsflow_lambda::{CALLBACK_QUEUE_URL, Wiring};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let wiring = Wiring::from_env().await?;
    pointsflow_lambda::init_tracing(&wiring.config);
    let callbacks = Callbacks::new(
        CallbacksPorts {
            get: wiring.store(),
            redelivery: wiring.redelivery(CALLBACK_QUEUE_URL)?,
            clock: Arc::new(SystemClock),
        },
        targets(&wiring.config),
    );
    let callbacks = &callbacks;
    run(service_fn(move |event| callbacks.handle(event))).await
}
