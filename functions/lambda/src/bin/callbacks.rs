//! The callbacks function (the callbacks queue): wiring only.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let callbacks = pointsflow_lambda::cold_start().await?.callbacks()?;
    let callbacks = &callbacks;
    run(service_fn(move |event: LambdaEvent<_>| {
        callbacks.handle(event)
    }))
    .await
}
