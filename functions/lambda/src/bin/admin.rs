//! The admin function (API Gateway HTTP API, IAM authorization): wiring only.

use std::convert::Infallible;

use lambda_http::{Error, Request, run, service_fn};
use pointsflow_admin::Authentication;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let admin = pointsflow_lambda::cold_start()
        .await?
        .admin(Authentication::Iam)
        .await?;
    let admin = &admin;
    run(service_fn(move |request: Request| async move {
        Ok::<_, Infallible>(admin.handle(request).await)
    }))
    .await
}
