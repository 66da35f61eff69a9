//! The operations function (invoked by operators and a schedule): wiring only.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let operations = pointsflow_lambda::cold_start().await?.operations().await?;
    let operations = &operations;
    run(service_fn(move |event: LambdaEvent<_>| {
        operations.handle(event)
    }))
    .await
}
