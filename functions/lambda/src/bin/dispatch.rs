//! The dispatch function (the dispatch queue, window and resolver
//! schedules): wiring only.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let dispatch = pointsflow_lambda::cold_start().await?.dispatch().await?;
    let dispatch = &dispatch;
    run(service_fn(move |event: LambdaEvent<_>| {
        dispatch.handle_any(event)
    }))
    .await
}
