//! `pointsflow`: run the local stack.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pointsflow_local::{LocalConfig, Stack, StackOptions};
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
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .compact()
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Dev {
            config,
            listen,
            sandbox_listen,
        } => dev(config, listen, sandbox_listen).await,
    }
}

async fn dev(config: Option<PathBuf>, listen: SocketAddr, sandbox_listen: SocketAddr) -> ExitCode {
    let loaded = match &config {
        Some(path) => LocalConfig::load(path),
        None => LocalConfig::default_config(),
    };
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pointsflow: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let sources: Vec<String> = config.sources.iter().map(|s| s.id.to_string()).collect();
    let programs: Vec<String> = config.programs.iter().map(|p| p.id.to_string()).collect();
    let stack = match Stack::start(
        config,
        StackOptions {
            listen,
            sandbox_listen,
        },
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pointsflow: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        api = %stack.base_url(),
        sandbox = %stack.sandbox.as_ref().map(|s| s.base_url()).unwrap_or_default(),
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
