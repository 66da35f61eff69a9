//! What the sources send in one run, drawn from the seed: canonical API
//! requests (some sent again, some with their key reused for another
//! payload, some malformed), Salesforce Outbound Messages (retried whole
//! until acknowledged, deals later lost), for a real-time and a
//! scheduled program; and the configuration they run against.

use chrono::{DateTime, TimeDelta, Utc};
use pointsflow_config::{Config, MemberEntry};
use pointsflow_core::program::{OnUndo, TransferMode};
use pointsflow_core::values::{Points, ProgramId, RecipientId};
use pointsflow_intake::soap::{Notification, OutboundMessage};

use crate::faults::Faults;

pub const API_KEY: &str = "pf_demo_4f1c2b7e9a6d4e0f";
pub const SF_TOKEN: &str = "sf_demo_token_7c1e9b2a4d6f8e0c";
/// The demo org, as its Outbound Messages give it (15 characters).
const SF_ORG: &str = "00D5g000004Demo";
pub const REALTIME: &str = "sales-incentive";
pub const SCHEDULED: &str = "sales-window";
/// Enrolled in both programs.
pub const RECIPIENTS: [&str; 5] = [
    "0055g00000DemoAA1",
    "0055g00000DemoAA2",
    "0055g00000DemoAA3",
    "0055g00000DemoAA4",
    "0055g00000DemoAA5",
];
/// Enrolled nowhere.
pub const STRANGER: &str = "0055g00000DemoAA9";

/// One thing a source sends.
#[derive(Debug, Clone)]
pub enum Submission {
    /// A canonical request; `reuse` when its key was first sent with
    /// another payload (it must be refused), `bad` when malformed.
    Api {
        key: String,
        body: String,
        reuse: bool,
        bad: bool,
    },
    /// A whole Outbound Message.
    Salesforce { xml: String },
}

/// A send at a time.
#[derive(Debug, Clone)]
pub struct Planned {
    pub at: DateTime<Utc>,
    pub send: Submission,
}

fn canonical(
    program: &str,
    recipient: &str,
    amount: u64,
    event: &str,
    at: DateTime<Utc>,
) -> String {
    serde_json::json!({
        "program": program,
        "recipient": {"id": recipient},
        "amount": {"value": format!("{amount}.00"), "currency": "USD"},
        "event": {"type": "opportunity.closed_won", "id": event, "occurred_at": at.to_rfc3339()},
    })
    .to_string()
}

fn opportunity(n: u64, owner: &str, stage: &str, amount: u64) -> Notification {
    let fields = [
        ("Id", format!("0065g00000{n:05}AAA")),
        ("OwnerId", owner.to_owned()),
        ("StageName", stage.to_owned()),
        ("Amount", format!("{amount}.00")),
        ("CurrencyIsoCode", "USD".to_owned()),
        ("CloseDate", "2026-11-02".to_owned()),
        ("Name", format!("Deal {n}")),
    ];
    Notification {
        id: format!("04l5g0000{n:06}AAA"),
        object: "Opportunity".into(),
        fields: fields
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Some(v)))
            .collect(),
    }
}

/// The sends of one run, in time order.
pub fn plan(faults: &Faults, start: DateTime<Utc>, active: TimeDelta) -> Vec<Planned> {
    let span = active.num_seconds().max(1) as u64;
    let at = |f: &Faults| start + TimeDelta::seconds(f.below(span) as i64);
    let recipient = |f: &Faults| {
        if f.chance(0.08) {
            STRANGER
        } else {
            f.pick(&RECIPIENTS).copied().unwrap_or(RECIPIENTS[0])
        }
    };
    let amount = |f: &Faults| 500 + f.below(150_000);
    let mut planned = Vec::new();
    let mut sent_api: Vec<(String, String, String, u64, DateTime<Utc>)> = Vec::new();
    let mut won: Vec<(u64, String, u64)> = Vec::new();
    let events = 6 + faults.below(30);
    for n in 0..events {
        let when = at(faults);
        match faults.below(100) {
            0..=59 => {
                let program = if faults.chance(0.3) {
                    SCHEDULED
                } else {
                    REALTIME
                };
                let who = recipient(faults);
                let key = format!("sim-{n}");
                let value = amount(faults);
                let body = canonical(program, who, value, &key, when);
                planned.push(Planned {
                    at: when,
                    send: Submission::Api {
                        key: key.clone(),
                        body: body.clone(),
                        reuse: false,
                        bad: false,
                    },
                });
                // The client sends it again (its own retry, or a user's double click).
                if faults.chance(0.3) {
                    planned.push(Planned {
                        at: when + TimeDelta::seconds(faults.below(600) as i64),
                        send: Submission::Api {
                            key: key.clone(),
                            body,
                            reuse: false,
                            bad: false,
                        },
                    });
                }
                sent_api.push((key, program.to_owned(), who.to_owned(), value, when));
            }
            60..=84 => {
                let count = 1 + faults.below(4);
                let notifications = (0..count)
                    .map(|i| {
                        let deal = n * 10 + i;
                        let stage = if faults.chance(0.85) {
                            "Closed Won"
                        } else {
                            "Closed Lost"
                        };
                        let owner = recipient(faults);
                        let value = amount(faults);
                        if stage == "Closed Won" {
                            won.push((deal, owner.to_owned(), value));
                        }
                        opportunity(deal, owner, stage, value)
                    })
                    .collect();
                planned.push(Planned {
                    at: when,
                    send: Submission::Salesforce {
                        xml: outbound(notifications),
                    },
                });
            }
            85..=91 => {
                // A won deal lost later: its points are taken back.
                if let Some((deal, owner, value)) = faults.pick(&won).cloned() {
                    planned.push(Planned {
                        at: when,
                        send: Submission::Salesforce {
                            xml: outbound(vec![opportunity(deal, &owner, "Closed Lost", value)]),
                        },
                    });
                }
            }
            92..=96 => {
                // The key of an earlier request, with another amount.
                if let Some((key, program, who, value, first)) = faults.pick(&sent_api).cloned() {
                    planned.push(Planned {
                        at: first + TimeDelta::seconds(1 + faults.below(900) as i64),
                        send: Submission::Api {
                            key: key.clone(),
                            body: canonical(&program, &who, value + 100, &key, when),
                            reuse: true,
                            bad: false,
                        },
                    });
                }
            }
            _ => {
                let key = format!("bad-{n}");
                let body = match faults.below(4) {
                    0 => "{\"program\": ".to_owned(),
                    1 => canonical(REALTIME, "", 100, &key, when),
                    2 => canonical("no-such-program", RECIPIENTS[0], 100, &key, when),
                    _ => canonical(REALTIME, RECIPIENTS[0], 100, &key, when)
                        .replace("\"USD\"", "\"US\""),
                };
                planned.push(Planned {
                    at: when,
                    send: Submission::Api {
                        key,
                        body,
                        reuse: false,
                        bad: true,
                    },
                });
            }
        }
    }
    planned.sort_by_key(|p| p.at);
    planned
}

fn outbound(notifications: Vec<Notification>) -> String {
    OutboundMessage {
        organization_id: SF_ORG.to_owned(),
        action_id: Some("04k5g000000DemoAAA".into()),
        notifications,
    }
    .to_xml()
}

/// The local stack's demo configuration (`pointsflow dev`'s), which the
/// simulation starts from.
const DEMO_CONFIG: &str = include_str!("../../infra/local/pointsflow.toml");

/// The demo configuration with limits drawn from the seed (small budgets
/// and caps, so they run out), a scheduled twin of the real-time program
/// whose window closes during the run, and five enrolled recipients.
pub fn config(faults: &Faults) -> Result<Config, String> {
    let mut config = Config::parse(DEMO_CONFIG).map_err(|e| e.to_string())?;
    // Every source has a status callback (queued, not delivered).
    for source in &mut config.sources {
        source.callback = Some(pointsflow_config::CallbackSettings {
            url: "https://crm.example.com/pointsflow/status".into(),
            secret: "sim_callback_secret_0123456789abcdef".into(),
            retiring_secrets: Vec::new(),
            signature: pointsflow_config::CallbackSignature::Pointsflow,
        });
    }
    config.waiting_sweep_ms = u64::MAX / 4;
    config.resolve_after_ms = 30_000;
    config.stalled_after_ms = 120_000;
    config.queues.max_receive_count = 5;
    config.queues.visibility_timeout_ms = 30_000;
    let points = |n: u64| Points::new(n).map_err(|e| e.to_string());
    let realtime = config
        .programs
        .iter_mut()
        .find(|p| p.id.as_str() == REALTIME)
        .ok_or("no real-time program in the demo configuration")?;
    realtime.budget = points(5_000 + faults.below(60_000))?;
    realtime.monthly_cap_per_recipient = Some(points(1_000 + faults.below(20_000))?);
    realtime.approval_threshold = if faults.chance(0.5) {
        Some(points(500 + faults.below(3_000))?)
    } else {
        None
    };
    realtime.on_undo = if faults.chance(0.5) {
        OnUndo::Reverse
    } else {
        OnUndo::Flag
    };
    let mut scheduled = realtime.clone();
    scheduled.id = ProgramId::parse(SCHEDULED).map_err(|e| e.to_string())?;
    scheduled.name = "Sales incentive, paid daily at 09:00 UTC".into();
    scheduled.approval_threshold = None;
    scheduled.transfer = TransferMode::Scheduled {
        cron: "0 9 * * *".into(),
        time_zone: chrono_tz::UTC,
        consolidate: faults.chance(0.6),
    };
    config.programs.push(scheduled);
    config.members.retain(|m| m.program.as_str() != REALTIME);
    for (i, recipient) in RECIPIENTS.iter().enumerate() {
        for program in [REALTIME, SCHEDULED] {
            config.members.push(MemberEntry {
                program: ProgramId::parse(program).map_err(|e| e.to_string())?,
                recipient: RecipientId::parse(recipient).map_err(|e| e.to_string())?,
                member_number: format!("SKY200000{i}"),
                first_name: "Sim".into(),
                last_name: format!("Member{i}"),
            });
        }
    }
    Ok(config)
}
