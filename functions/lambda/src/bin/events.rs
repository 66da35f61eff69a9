//! The events function (the table's stream): wiring only. Each batch of
//! stream records is read into changes of points requests, member links
//! and window credits, whose events go on the bus; the answer names the record to retry from, if any.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use pointsflow_aws::stream::{StreamEvent, StreamResponse, changes};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let events = pointsflow_lambda::cold_start().await?.events().await?;
    let events = &events;
    run(service_fn(
        move |event: LambdaEvent<StreamEvent>| async move {
            let (changes, unread) = changes(&event.payload);
            if let Some(e) = &unread {
                tracing::error!(error = %e, "a stream record could not be read; retried from it");
            }
            let published = events.publish(&changes).await;
            // The earlier of the first change not published and the first
            // record not read (changes come before the unread record).
            let retry = published.failed_from.or(unread.map(|u| u.position));
            Ok::<_, Error>(StreamResponse::retry_from(retry))
        },
    ))
    .await
}
