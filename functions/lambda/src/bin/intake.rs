//! The intake function (API Gateway HTTP API): wiring only.

use std::convert::Infallible;

use lambda_http::{Error, Request, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let intake = pointsflow_lambda::cold_start().await?.intake().await?;
    let intake = &intake;
    run(service_fn(move |request: Request| async move {
        Ok::<_, Infallible>(intake.handle(request).await)
    }))
    .await
}
