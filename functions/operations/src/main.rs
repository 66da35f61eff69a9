//! The operations Lambda: wiring only (see pointsflow-lambda for the environment).

use std::collections::HashMap;
use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use pointsflow_core::operations::DeadLetters;
use pointsflow_core::time::SystemClock;
use pointsflow_lambda::{
    CALLBACK_DLQ_URL, CALLBACK_QUEUE_URL, DISPATCH_DLQ_URL, DISPATCH_QUEUE_URL,
    ELIGIBILITY_DLQ_URL, ELIGIBILITY_QUEUE_URL, Wiring,
};
use pointsflow_operations::{Operations, OperationsPorts, QueueName};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let wiring = Wiring::from_env().await?;
    pointsflow_lambda::init_tracing(&wiring.config);
    let (store, ledger) = (wiring.store(), wiring.ledger());
    let dead_letters: HashMap<QueueName, Arc<dyn DeadLetters>> = HashMap::from([
        (
            QueueName::Eligibility,
            wiring.dead_letters(ELIGIBILITY_DLQ_URL, ELIGIBILITY_QUEUE_URL)?
                as Arc<dyn DeadLetters>,
        ),
        (
            QueueName::Dispatch,
            wiring.dead_letters(DISPATCH_DLQ_URL, DISPATCH_QUEUE_URL)? as Arc<dyn DeadLetters>,
        ),
        (
            QueueName::Callbacks,
            wiring.dead_letters(CALLBACK_DLQ_URL, CALLBACK_QUEUE_URL)? as Arc<dyn DeadLetters>,
        ),
    ]);
    let operations = Operations::new(OperationsPorts {
        get: store.clone(),
        update: wiring.notifying(store.clone())?,
        search: store.clone(),
        ledger_read: ledger.clone(),
        ledger_write: ledger,
        programs: wiring.catalog().await?,
        partners: wiring.connectors()?,
        clock: Arc::new(SystemClock),
        eligibility: wiring.publisher(ELIGIBILITY_QUEUE_URL)?,
        dispatch: wiring.publisher(DISPATCH_QUEUE_URL)?,
        audit: wiring.audit_log(),
        dead_letters,
        lines: store,
        reports: wiring.report_store(),
        callbacks: Some(wiring.publisher(CALLBACK_QUEUE_URL)?),
    });
    let operations = &operations;
    run(service_fn(move |event: LambdaEvent<_>| {
        operations.handle(event)
    }))
    .await
}
