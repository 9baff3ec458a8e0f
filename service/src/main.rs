//! `stampede-service`: parses the command line and runs it until done or signalled.
#![forbid(unsafe_code)]

use clap::Parser;
use stampede_service::cli::{Cli, run};
use tokio_util::sync::CancellationToken;

// glibc malloc showed up as ~10 % of the issue path's CPU in perf; mimalloc's
// thread-local heaps take it out of the profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STAMPEDE_LOG")
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        // colours only for a person at a terminal, never in pod logs or files
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let shutdown = CancellationToken::new();
    tokio::spawn(stampede_core::shutdown::cancel_on_signal(shutdown.clone()));
    match run(cli, shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
