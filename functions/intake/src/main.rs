//! The intake Lambda: wiring only (see pointsflow-lambda for the environment).

use std::convert::Infallible;

use lambda_http::{Error, Request, run, service_fn};
use pointsflow_core::time::SystemClock;
use pointsflow_intake::{DEFAULT_MAX_BODY_BYTES, Intake, IntakeConfig, IntakePorts};
use pointsflow_lambda::{ELIGIBILITY_QUEUE_URL, Wiring};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let wiring = Wiring::from_env().await?;
    pointsflow_lambda::init_tracing(&wiring.config);
    let store = wiring.store();
    let intake = Intake::new(
        IntakeConfig {
            sources: wiring.config.sources.clone(),
            operators: wiring.config.operators.clone(),
            programs: wiring.config.programs.clone(),
            known: wiring.config.known(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        },
        IntakePorts {
            create: store.clone(),
            get: store.clone(),
            update: wiring.notifying(store)?,
            ledger: wiring.ledger(),
            eligibility_queue: wiring.publisher(ELIGIBILITY_QUEUE_URL)?,
            programs: wiring.catalog().await?,
            program_store: wiring.program_store(),
            enrollments: wiring.enrollments(),
            waiting: wiring.store(),
            windows: wiring.window_store(),
            schedules: wiring.schedules()?,
            clock: std::sync::Arc::new(SystemClock),
        },
    );
    let intake = &intake;
    run(service_fn(move |request: Request| async move {
        Ok::<_, Infallible>(intake.handle(request).await)
    }))
    .await
}
