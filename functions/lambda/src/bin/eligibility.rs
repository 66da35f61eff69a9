//! The eligibility function (the eligibility queue): wiring only.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let eligibility = pointsflow_lambda::cold_start().await?.eligibility().await?;
    let eligibility = &eligibility;
    run(service_fn(move |event: LambdaEvent<_>| {
        eligibility.handle(event)
    }))
    .await
}
