//! Window schedules on EventBridge Scheduler: one one-time schedule per
//! window (`at(...)` in UTC, deleted by the scheduler once it has fired),
//! invoking the dispatch function with the window's closing time. The time
//! comes from the program's own cron in its own time zone, so a window at
//! 18:00 Europe/London fires at 18:00 local on both sides of a
//! daylight-saving change, and `L` / `LW` need no translation.

use async_trait::async_trait;
use aws_sdk_scheduler::Client;
use aws_sdk_scheduler::error::DisplayErrorContext;
use aws_sdk_scheduler::operation::create_schedule::CreateScheduleError;
use aws_sdk_scheduler::types::{
    ActionAfterCompletion, DeadLetterConfig, FlexibleTimeWindow, FlexibleTimeWindowMode,
    RetryPolicy, Target,
};
use pointsflow_core::ports::{StoreError, WindowSchedules};
use pointsflow_core::window::WindowId;
use sha2::{Digest, Sha256};

/// EventBridge Scheduler's limit on a schedule's name.
const MAX_NAME: usize = 64;

/// Where and how schedules invoke dispatch.
#[derive(Debug, Clone)]
pub struct ScheduleTarget {
    /// Names start with this (the stack's name), so the function's policy
    /// can be limited to the stack's schedules.
    pub prefix: String,
    pub group: String,
    /// The dispatch function.
    pub function_arn: String,
    /// The role the scheduler assumes to invoke it.
    pub role_arn: String,
    /// Where an event that could not be delivered goes, if anywhere.
    pub dead_letter_arn: Option<String>,
}

#[derive(Debug, Clone)]
pub struct EventBridgeSchedules {
    client: Client,
    target: ScheduleTarget,
}

impl EventBridgeSchedules {
    pub fn new(client: Client, target: ScheduleTarget) -> Self {
        Self { client, target }
    }

    /// The window's schedule name: `{prefix}-{program}-{YYYYMMDDTHHMM}`, or
    /// with a digest of the program where that would be too long.
    pub fn name(&self, window: &WindowId) -> String {
        let time = window.closes_at().format("%Y%m%dT%H%M").to_string();
        let plain = format!("{}-{}-{time}", self.target.prefix, window.program());
        if plain.len() <= MAX_NAME {
            return plain;
        }
        let digest = hex::encode(&Sha256::digest(window.program().as_str().as_bytes())[..6]);
        let room = MAX_NAME - digest.len() - time.len() - 2;
        let prefix: String = self.target.prefix.chars().take(room).collect();
        format!("{prefix}-{digest}-{time}")
    }
}

/// What the schedule sends dispatch when it fires.
pub fn window_event(window: &WindowId) -> String {
    serde_json::json!({
        "window_closed": {
            "program": window.program(),
            "scheduled_time": window.closes_at().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    })
    .to_string()
}

#[async_trait]
impl WindowSchedules for EventBridgeSchedules {
    #[tracing::instrument(skip_all, fields(window = %window))]
    async fn arm(&self, window: &WindowId) -> Result<(), StoreError> {
        let build = |e: aws_sdk_scheduler::error::BuildError| {
            StoreError::Unavailable(format!("cannot build the schedule: {e}"))
        };
        let mut target = Target::builder()
            .arn(&self.target.function_arn)
            .role_arn(&self.target.role_arn)
            .input(window_event(window))
            // Retried for a day: a window late is better than one missed.
            .retry_policy(
                RetryPolicy::builder()
                    .maximum_event_age_in_seconds(86_400)
                    .maximum_retry_attempts(185)
                    .build(),
            );
        if let Some(arn) = &self.target.dead_letter_arn {
            target = target.dead_letter_config(DeadLetterConfig::builder().arn(arn).build());
        }
        let created = self
            .client
            .create_schedule()
            .name(self.name(window))
            .group_name(&self.target.group)
            .schedule_expression(format!(
                "at({})",
                window.closes_at().format("%Y-%m-%dT%H:%M:%S")
            ))
            .schedule_expression_timezone("UTC")
            .description(format!("pointsflow window {window}"))
            .flexible_time_window(
                FlexibleTimeWindow::builder()
                    .mode(FlexibleTimeWindowMode::Off)
                    .build()
                    .map_err(build)?,
            )
            .action_after_completion(ActionAfterCompletion::Delete)
            .target(target.build().map_err(build)?)
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(e) => match e.into_service_error() {
                // Armed already (by another invocation or an earlier request).
                CreateScheduleError::ConflictException(_) => Ok(()),
                other => Err(StoreError::Unavailable(
                    DisplayErrorContext(other).to_string(),
                )),
            },
        }
    }
}
