//! `pointsflow`: run the local stack.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pointsflow_local::client::{self, ApiClient, Decision};
use pointsflow_local::config::ProgramFile;
use pointsflow_local::ops::{self, Target};
use pointsflow_local::outbox;
use pointsflow_local::{AwsOptions, AwsStack, LocalConfig, Stack, StackOptions};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "pointsflow",
    version,
    about = "Turn CRM and HRIS events into frequent-flyer points"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole pipeline locally: intake API, eligibility, dispatch and the sandbox partner.
    Dev {
        /// Configuration file (sources, partners, programs, members); the built-in demo config if omitted.
        #[arg(long, env = "POINTSFLOW_CONFIG")]
        config: Option<PathBuf>,
        /// Address of the intake API.
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: SocketAddr,
        /// Address of the sandbox partner (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        sandbox_listen: SocketAddr,
        /// Run on the AWS adapters against the AWS API at this URL (an emulator
        /// such as moto server), instead of the embedded ones.
        #[arg(long, env = "POINTSFLOW_AWS_ENDPOINT")]
        aws_endpoint: Option<String>,
        /// With --aws-endpoint: prefix of the table and queue names it creates and uses.
        #[arg(long, default_value = "pointsflow-dev")]
        aws_prefix: String,
    },
    /// List and show programs, and propose a program file's revisions
    /// (another admin confirms each: `pointsflow proposals confirm`).
    Programs {
        #[command(flatten)]
        admin: AdminApi,
        #[command(subcommand)]
        action: ProgramAction,
    },
    /// Link recipients to member accounts; show, change or remove a link.
    Members {
        #[command(flatten)]
        admin: AdminApi,
        #[command(subcommand)]
        action: MemberAction,
    },
    /// Show, approve or decline a points request.
    Requests {
        #[command(flatten)]
        admin: AdminApi,
        /// Print the command's JSON result instead of a summary.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: RequestAction,
    },
    /// The operator commands: find a request, approve, decline, resolve,
    /// reverse, redrive a dead-letter queue, read the audit log.
    Ops {
        #[command(flatten)]
        admin: AdminApi,
        /// Print the command's JSON answer instead of a table or summary.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: OpsAction,
    },
    /// A scheduled window's progress.
    Windows {
        #[command(flatten)]
        admin: AdminApi,
        /// Print the command's JSON result instead of a summary.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: WindowAction,
    },
    /// The local stack's events (a deployed stack's are on its EventBridge
    /// bus: docs/events.md).
    Events {
        #[command(flatten)]
        admin: AdminApi,
        #[command(subcommand)]
        action: EventsAction,
    },
    /// Check a configuration file before storing it for a deployed stack.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Changes waiting for a second operator: list, show, confirm, withdraw.
    Proposals {
        #[command(flatten)]
        admin: AdminApi,
        /// Print the command's JSON answer instead of a summary.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: ProposalAction,
    },
}

#[derive(Debug, Subcommand)]
enum EventsAction {
    /// Print each event as it happens, one line each (Ctrl-C stops).
    Tail {
        /// Only events of this detail-type, e.g. "Points Credited" (repeat for more).
        #[arg(long = "detail-type")]
        detail_types: Vec<String>,
        /// Each event whole, as an EventBridge rule's target receives it, one JSON a line.
        #[arg(long)]
        json: bool,
        /// Start with the events the stack kept (its latest 1,000), not only new ones.
        #[arg(long)]
        from_start: bool,
        /// Stop after printing this many.
        #[arg(long)]
        count: Option<usize>,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Whether FILE is valid and fits the deployed stack's secret (65,536
    /// bytes), and what it holds.
    Check { file: PathBuf },
}

/// Where the admin API is, and how you prove who you are to it.
#[derive(Debug, clap::Args)]
struct AdminApi {
    /// The API: the local stack, or a deployed stack's ApiBaseUrl.
    #[arg(
        long,
        global = true,
        env = "POINTSFLOW_API",
        default_value = "http://127.0.0.1:3000"
    )]
    api: String,
    /// An operator's key (the configuration's `operators`): the local stack.
    #[arg(
        long,
        global = true,
        env = "POINTSFLOW_OPERATOR_KEY",
        hide_env_values = true,
        conflicts_with = "iam"
    )]
    key: Option<String>,
    /// Sign with SigV4 from the shell's AWS credentials: a deployed stack,
    /// whose API Gateway names you by your IAM principal.
    #[arg(long, global = true)]
    iam: bool,
    /// With --iam: the stack's region (else the shell's).
    #[arg(long, global = true)]
    region: Option<String>,
}

impl AdminApi {
    async fn target(&self) -> Result<Target, String> {
        match (&self.key, self.iam) {
            (Some(key), false) => Ok(Target::local(&self.api, key)),
            (None, true) => Target::deployed(&self.api, self.region.as_deref()).await,
            _ => Err(
                "give --key (an operator key, the local stack) or --iam (your AWS credentials, a deployed stack)"
                    .into(),
            ),
        }
    }
}

#[derive(Debug, Subcommand)]
enum OpsAction {
    /// A request with its whole timeline, reversals and ledger entries.
    Get { id: String },
    /// Requests by what you know of them: a source record, recipient,
    /// window or member, or a period (--from, --to) for status or program.
    Search {
        /// The source system's record id, e.g. the Opportunity id.
        #[arg(long)]
        source_record: Option<String>,
        #[arg(long)]
        recipient: Option<String>,
        #[arg(long)]
        member: Option<String>,
        /// A state: received, awaiting_approval, credited, failed, unknown, ...
        #[arg(long)]
        status: Option<String>,
        /// A scheduled window, `program@YYYY-MM-DDTHH:MMZ`.
        #[arg(long)]
        window: Option<String>,
        #[arg(long)]
        program: Option<String>,
        /// A period's start (a date or an RFC 3339 time), with --to: for a
        /// search by status or program alone.
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Approve a request waiting for approval.
    Approve {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Decline a request waiting for approval.
    Decline {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Look an unsettled request's outcome up at the partner now.
    Resolve { id: String },
    /// Send a failed or rejected request through again once its cause is
    /// fixed (a new round, under a new partner reference).
    Retry {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Take back points of a credited request: all that is left, or
    /// --points. Above the program's reversal_limit it is an admin's
    /// proposal, which another admin confirms.
    Reverse {
        id: String,
        #[arg(long)]
        points: Option<u64>,
        #[arg(long)]
        reason: String,
        /// Your id for this reversal; the same id again changes nothing.
        #[arg(long)]
        reversal_id: Option<String>,
    },
    /// Move a dead-letter queue's messages back to their queue, after a fix.
    Redrive {
        /// eligibility, dispatch or callbacks.
        #[arg(long)]
        queue: String,
        /// Move at most this many.
        #[arg(long)]
        max: Option<u64>,
    },
    /// Compare requests, ledger and the partner's statement for a window,
    /// a period (--from, --to: dates or RFC 3339 times) or the last hours.
    Reconcile {
        /// A scheduled window, `program@YYYY-MM-DDTHH:MMZ`.
        #[arg(long, conflicts_with_all = ["from", "to", "last_hours"])]
        window: Option<String>,
        #[arg(long, requires = "to")]
        from: Option<String>,
        #[arg(long, requires = "from")]
        to: Option<String>,
        #[arg(long)]
        last_hours: Option<u32>,
        /// With a period: one program only.
        #[arg(long)]
        program: Option<String>,
        /// Print the mismatches as CSV.
        #[arg(long)]
        csv: bool,
    },
    /// A stored reconciliation report (`window:...` or `period:...`).
    Report {
        id: String,
        /// Print the mismatches as CSV.
        #[arg(long)]
        csv: bool,
    },
    /// Send a request's final status to its source's callback again.
    Notify { id: String },
    /// Put every event of a request, or of a period's requests (--from,
    /// --to), on the event bus again (the same events, the same ids).
    ResendEvents {
        /// One request.
        #[arg(long, conflicts_with_all = ["from", "to"])]
        id: Option<String>,
        #[arg(long, requires = "to")]
        from: Option<String>,
        #[arg(long, requires = "from")]
        to: Option<String>,
        /// With a period: one program only.
        #[arg(long)]
        program: Option<String>,
        /// Go on from where the last call stopped (its `next`).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// The commands operators ran on a day (UTC, YYYY-MM-DD; today by default).
    Audit {
        #[arg(long)]
        day: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum WindowAction {
    /// A window's run: requests and members planned, credits sent,
    /// confirmed, refused and pending. WINDOW is `program@YYYY-MM-DDTHH:MMZ`
    /// (the `window` of a request held for it).
    Show { window: String },
}

#[derive(Debug, Subcommand)]
enum ProgramAction {
    /// Every program in force, with its revision.
    List,
    /// One program in force, as JSON.
    Show { id: String },
    /// Apply a program file (format = 1, [[programs]] tables): each program
    /// that differs from the one in force becomes its next revision.
    Apply {
        file: PathBuf,
        /// Show the differences without applying them.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
enum MemberAction {
    /// Link one recipient: `link PROGRAM RECIPIENT MEMBER_NUMBER FIRST LAST`.
    /// A recipient linked to another member gets a proposal instead (an
    /// admin's, with --reason), which another admin confirms.
    Link {
        program: String,
        recipient: String,
        member_number: String,
        first_name: String,
        last_name: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// A recipient's link, with the partner's validation of it.
    Show { program: String, recipient: String },
    /// Every change of a recipient's link: who, when, from and to.
    History { program: String, recipient: String },
    /// Propose removing a recipient's link (another admin confirms it).
    Unlink {
        program: String,
        recipient: String,
        #[arg(long)]
        reason: String,
    },
    /// Link every row of a CSV file (header: recipient, member_number,
    /// first_name, last_name); refused rows are listed with their line.
    Import {
        #[arg(long)]
        program: String,
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ProposalAction {
    /// The proposals waiting for a second operator, oldest first.
    List,
    /// One proposal: what it changes, who proposed it, where it stands.
    Show { id: String },
    /// Confirm another operator's proposal: it takes effect now.
    Confirm { id: String },
    /// Withdraw a proposal before it takes effect.
    Withdraw {
        id: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
enum RequestAction {
    /// A request with its timeline.
    Show { id: String },
    /// Approve a request waiting for approval; eligibility then reserves its points.
    Approve {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Decline a request waiting for approval; it is rejected (`declined`).
    Decline {
        id: String,
        #[arg(long)]
        reason: String,
    },
}

/// Logs for people, every line masked: no member number, email address or
/// secret of `config` reaches them.
fn init_tracing(config: Option<&LocalConfig>) {
    use pointsflow_runtime::masking::{Masker, MaskingWriter};
    let secrets = config.map(LocalConfig::secrets).unwrap_or_default();
    let members = config.map(LocalConfig::member_numbers).unwrap_or_default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(MaskingWriter::new(
            std::io::stdout,
            Masker::new(secrets).with_members(members),
        ))
        .compact()
        .try_init();
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // `dev` sets up logging once its configuration (and so its secrets) is read.
    if !matches!(cli.command, Command::Dev { .. }) {
        init_tracing(None);
    }
    match cli.command {
        Command::Dev {
            config,
            listen,
            sandbox_listen,
            aws_endpoint,
            aws_prefix,
        } => {
            let aws = aws_endpoint.map(|endpoint| AwsOptions {
                endpoint: Some(endpoint),
                prefix: aws_prefix,
                meter: None,
            });
            dev(
                config,
                StackOptions {
                    listen,
                    sandbox_listen,
                },
                aws,
            )
            .await
        }
        Command::Programs { admin, action } => match admin.target().await {
            Ok(target) => programs(&ApiClient::new(target), action).await,
            Err(e) => usage(&e),
        },
        Command::Members { admin, action } => match admin.target().await {
            Ok(target) => members(&ApiClient::new(target), action).await,
            Err(e) => usage(&e),
        },
        Command::Requests {
            admin,
            json,
            action,
        } => match admin.target().await {
            Ok(target) => requests(&ApiClient::new(target), action, json).await,
            Err(e) => usage(&e),
        },
        Command::Ops {
            admin,
            json,
            action,
        } => match admin.target().await {
            Ok(target) => ops(&target, action, json).await,
            Err(e) => usage(&e),
        },
        Command::Windows {
            admin,
            json,
            action: WindowAction::Show { window },
        } => {
            let target = match admin.target().await {
                Ok(t) => t,
                Err(e) => return usage(&e),
            };
            match ApiClient::new(target)
                .command("window", serde_json::json!({ "window": window }))
                .await
            {
                Ok(view) if json => {
                    println!("{view:#}");
                    ExitCode::SUCCESS
                }
                Ok(view) => {
                    print!("{}", client::render_window(&view));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("pointsflow: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Events {
            admin,
            action:
                EventsAction::Tail {
                    detail_types,
                    json,
                    from_start,
                    count,
                },
        } => {
            let Some(key) = admin.key else {
                return usage(
                    "give --key (an operator key): only the local stack keeps events to tail; a deployed stack's are on its bus (docs/events.md)",
                );
            };
            let detail_types = match detail_types
                .iter()
                .map(|t| outbox::detail_type(t))
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(types) => types,
                Err(e) => return usage(&e),
            };
            let options = outbox::TailOptions {
                detail_types,
                json,
                from_start,
                count,
                every: std::time::Duration::from_millis(500),
            };
            match outbox::follow(&admin.api, &key, &options, |line| println!("{line}")).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("pointsflow: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Config {
            action: ConfigAction::Check { file },
        } => {
            let checked = std::fs::read_to_string(&file)
                .map_err(|e| e.to_string())
                .and_then(|text| pointsflow_local::config::check_deployable(&text));
            match checked {
                Ok(summary) => {
                    println!("{}: {summary}", file.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("pointsflow: {}: {e}", file.display());
                    ExitCode::FAILURE
                }
            }
        }
        Command::Proposals {
            admin,
            json,
            action,
        } => match admin.target().await {
            Ok(target) => proposals(&target, action, json).await,
            Err(e) => usage(&e),
        },
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("pointsflow: {problem}");
    ExitCode::from(2)
}

async fn proposals(target: &Target, action: ProposalAction, json: bool) -> ExitCode {
    use serde_json::json;
    let (name, command) = match action {
        ProposalAction::List => ("proposals", json!({"command": "proposals"})),
        ProposalAction::Show { id } => (
            "proposal",
            json!({"command": "proposal", "proposal_id": id}),
        ),
        ProposalAction::Confirm { id } => {
            ("confirm", json!({"command": "confirm", "proposal_id": id}))
        }
        ProposalAction::Withdraw { id, reason } => (
            "withdraw",
            json!({"command": "withdraw", "proposal_id": id, "reason": reason}),
        ),
    };
    answered(name, target.invoke(command).await, json, false)
}

/// Prints a command's answer; the exit code says whether it succeeded.
fn answered(
    name: &str,
    answer: Result<serde_json::Value, String>,
    json: bool,
    csv: bool,
) -> ExitCode {
    match answer {
        Ok(answer) => {
            if json {
                println!("{answer:#}");
            } else if csv && answer["ok"] == true {
                match ops::report_csv(&answer) {
                    Ok(text) => print!("{text}"),
                    Err(e) => {
                        eprintln!("pointsflow: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", ops::render(name, &answer));
            }
            if answer["ok"] == true {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("pointsflow: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The JSON command an action stands for.
fn ops_command(action: OpsAction) -> (&'static str, serde_json::Value) {
    use serde_json::json;
    let mut fields = serde_json::Map::new();
    let mut put = |name: &str, value: Option<serde_json::Value>| {
        if let Some(v) = value {
            fields.insert(name.to_owned(), v);
        }
    };
    let name = match action {
        OpsAction::Get { id } => {
            put("request_id", Some(json!(id)));
            "get"
        }
        OpsAction::Search {
            source_record,
            recipient,
            member,
            status,
            window,
            program,
            from,
            to,
            limit,
        } => {
            put("from", from.map(|v| json!(v)));
            put("to", to.map(|v| json!(v)));
            put("source_record", source_record.map(|v| json!(v)));
            put("recipient", recipient.map(|v| json!(v)));
            put("member", member.map(|v| json!(v)));
            put("status", status.map(|v| json!(v)));
            put("window", window.map(|v| json!(v)));
            put("program", program.map(|v| json!(v)));
            put("limit", limit.map(|v| json!(v)));
            "search"
        }
        OpsAction::Approve { id, reason } => {
            put("request_id", Some(json!(id)));
            put("reason", reason.map(|v| json!(v)));
            "approve"
        }
        OpsAction::Decline { id, reason } => {
            put("request_id", Some(json!(id)));
            put("reason", Some(json!(reason)));
            "decline"
        }
        OpsAction::Resolve { id } => {
            put("request_id", Some(json!(id)));
            "resolve"
        }
        OpsAction::Retry { id, reason } => {
            put("request_id", Some(json!(id)));
            put("reason", Some(json!(reason)));
            "retry"
        }
        OpsAction::Reverse {
            id,
            points,
            reason,
            reversal_id,
        } => {
            put("request_id", Some(json!(id)));
            put("points", points.map(|v| json!(v)));
            put("reason", Some(json!(reason)));
            put("reversal_id", reversal_id.map(|v| json!(v)));
            "reverse"
        }
        OpsAction::Redrive { queue, max } => {
            put("queue", Some(json!(queue)));
            put("max", max.map(|v| json!(v)));
            "redrive"
        }
        OpsAction::Reconcile {
            window,
            from,
            to,
            last_hours,
            program,
            csv: _,
        } => {
            put("window", window.map(|v| json!(v)));
            put("from", from.map(|v| json!(v)));
            put("to", to.map(|v| json!(v)));
            put("last_hours", last_hours.map(|v| json!(v)));
            put("program", program.map(|v| json!(v)));
            "reconcile"
        }
        OpsAction::Report { id, csv: _ } => {
            put("id", Some(json!(id)));
            "report"
        }
        OpsAction::Notify { id } => {
            put("request_id", Some(json!(id)));
            "notify"
        }
        OpsAction::ResendEvents {
            id,
            from,
            to,
            program,
            cursor,
        } => {
            put("request_id", id.map(|v| json!(v)));
            put("from", from.map(|v| json!(v)));
            put("to", to.map(|v| json!(v)));
            put("program", program.map(|v| json!(v)));
            put("cursor", cursor.map(|v| json!(v)));
            "resend_events"
        }
        OpsAction::Audit { day } => {
            put("day", day.map(|v| json!(v)));
            "audit"
        }
    };
    fields.insert("command".into(), json!(name));
    (name, serde_json::Value::Object(fields))
}

async fn ops(target: &Target, action: OpsAction, json: bool) -> ExitCode {
    let csv = matches!(
        action,
        OpsAction::Reconcile { csv: true, .. } | OpsAction::Report { csv: true, .. }
    );
    let (name, command) = ops_command(action);
    let answer = if name == "redrive" {
        ops::redrive(
            target,
            command["queue"].as_str().unwrap_or_default(),
            command["max"].as_u64(),
        )
        .await
    } else {
        target.invoke(command).await
    };
    answered(name, answer, json, csv)
}

async fn programs(client: &ApiClient, action: ProgramAction) -> ExitCode {
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("pointsflow: {e}");
        ExitCode::FAILURE
    };
    match action {
        ProgramAction::List => match client.programs().await {
            Ok(list) => {
                println!(
                    "{:<24} {:>8} {:<8} {:<10} {:>14}  applied by",
                    "program", "revision", "state", "transfer", "budget"
                );
                for p in list["programs"].as_array().into_iter().flatten() {
                    let program = &p["program"];
                    println!(
                        "{:<24} {:>8} {:<8} {:<10} {:>14}  {}",
                        program["id"].as_str().unwrap_or("-"),
                        p["revision"],
                        program["state"].as_str().unwrap_or("active"),
                        program["transfer"]["mode"].as_str().unwrap_or("-"),
                        program["budget"],
                        match (p["applied_by"].as_str(), p["confirmed_by"].as_str()) {
                            (Some(by), Some(second)) => format!("{by}, confirmed by {second}"),
                            (Some(by), None) => by.to_owned(),
                            _ => "(configuration)".to_owned(),
                        },
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        ProgramAction::Show { id } => match client.program(&id).await {
            Ok(Some(p)) => {
                println!("{p:#}");
                ExitCode::SUCCESS
            }
            Ok(None) => fail(&format!("no program {id}")),
            Err(e) => fail(&e),
        },
        ProgramAction::Apply { file, dry_run } => {
            let parsed = match ProgramFile::load(&file) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("pointsflow: {e}");
                    return ExitCode::from(2);
                }
            };
            match client.apply_programs(&parsed, dry_run).await {
                Ok(changes) => {
                    for c in &changes {
                        print!("{c}");
                    }
                    if dry_run {
                        println!("(dry run: nothing proposed)");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
    }
}

async fn members(client: &ApiClient, action: MemberAction) -> ExitCode {
    let shown = match action {
        MemberAction::Link {
            program,
            recipient,
            member_number,
            first_name,
            last_name,
            reason,
        } => {
            client
                .link_member(
                    &program,
                    &recipient,
                    &member_number,
                    &first_name,
                    &last_name,
                    reason.as_deref(),
                )
                .await
        }
        MemberAction::Show { program, recipient } => {
            client
                .command(
                    "member",
                    serde_json::json!({ "program": program, "recipient": recipient }),
                )
                .await
        }
        MemberAction::History { program, recipient } => {
            client
                .command(
                    "link_history",
                    serde_json::json!({ "program": program, "recipient": recipient }),
                )
                .await
        }
        MemberAction::Unlink {
            program,
            recipient,
            reason,
        } => client
            .command(
                "unlink",
                serde_json::json!({ "program": program, "recipient": recipient, "reason": reason }),
            )
            .await,
        MemberAction::Import { program, file } => {
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("pointsflow: cannot read {}: {e}", file.display());
                    return ExitCode::from(2);
                }
            };
            let imported = client
                .import_members(&program, &text, |done, total| {
                    ops::progress_bar(done as u64, total as u64)
                })
                .await;
            eprintln!();
            return match imported {
                Ok(report) => {
                    println!(
                        "linked {}, released {} waiting requests, refused {}",
                        report.linked,
                        report.released,
                        report.failed.len()
                    );
                    for f in &report.failed {
                        println!("  line {}: {}", f.line, f.problem);
                    }
                    if report.failed.is_empty() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("pointsflow: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    match shown {
        Ok(view) => {
            println!("{view:#}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pointsflow: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn requests(client: &ApiClient, action: RequestAction, json: bool) -> ExitCode {
    let answer = match &action {
        RequestAction::Show { id } => client.show(id).await,
        RequestAction::Approve { id, reason } => {
            client
                .decide(id, Decision::Approve, reason.as_deref())
                .await
        }
        RequestAction::Decline { id, reason } => {
            client.decide(id, Decision::Decline, Some(reason)).await
        }
    };
    match answer {
        Ok(view) if json => {
            println!("{view:#}");
            ExitCode::SUCCESS
        }
        Ok(view) => {
            print!("{}", client::render(&view));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pointsflow: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Either stack, for the command's start-wait-stop cycle.
enum Running {
    Embedded(Box<Stack>),
    Aws(Box<AwsStack>),
}

impl Running {
    fn base_url(&self) -> String {
        match self {
            Running::Embedded(s) => s.base_url(),
            Running::Aws(s) => s.base_url(),
        }
    }

    fn sandbox_url(&self) -> String {
        let sandbox = match self {
            Running::Embedded(s) => s.sandbox.as_ref(),
            Running::Aws(s) => s.sandbox.as_ref(),
        };
        sandbox.map(|s| s.base_url()).unwrap_or_default()
    }

    async fn shutdown(self) {
        match self {
            Running::Embedded(s) => s.shutdown().await,
            Running::Aws(s) => s.shutdown().await,
        }
    }
}

async fn dev(config: Option<PathBuf>, options: StackOptions, aws: Option<AwsOptions>) -> ExitCode {
    let loaded = match &config {
        Some(path) => LocalConfig::load(path),
        None => pointsflow_local::config::default_config(),
    };
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pointsflow: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(Some(&config));
    let sources: Vec<String> = config.sources.iter().map(|s| s.id.to_string()).collect();
    let programs: Vec<String> = config.programs.iter().map(|p| p.id.to_string()).collect();
    let started = match aws {
        None => Stack::start(config, options)
            .await
            .map(|s| Running::Embedded(Box::new(s))),
        Some(aws) => AwsStack::start(config, options, aws)
            .await
            .map(|s| Running::Aws(Box::new(s))),
    };
    let stack = match started {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pointsflow: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        api = %stack.base_url(),
        sandbox = %stack.sandbox_url(),
        sources = ?sources,
        programs = ?programs,
        "pointsflow is running; Ctrl-C stops it"
    );
    if let Err(e) = tokio::signal::ctrl_c().await {
        tracing::error!(error = %e, "cannot wait for Ctrl-C");
    }
    tracing::info!("shutting down: finishing in-flight work");
    stack.shutdown().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}
