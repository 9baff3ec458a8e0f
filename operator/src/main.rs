//! `stampede-operator`: parses flags and hands over to the library.

use clap::Parser;
use stampede_operator::cli::{Cli, Command};
use stampede_operator::crd::Verdict;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd => {
            print!("{}", stampede_operator::crd_yaml());
            Ok(())
        }
        Command::Rules(args) => stampede_operator::rules::rules(&args).map(|r| print!("{r}")),
        Command::Alerts(args) => stampede_operator::alerts::render(&args).map(|r| print!("{r}")),
        Command::Loadtest(args) => match stampede_operator::loadtest::local::loadtest(args).await {
            Ok(status) => {
                println!("{}", serde_json::to_string(&status).unwrap_or_default());
                match status.verdict.as_deref() {
                    Some(v) if v == Verdict::Passed.as_str() => Ok(()),
                    v => Err(stampede_operator::Error::LoadTestFailed {
                        verdict: v.unwrap_or("no verdict").to_owned(),
                        reason: status.reason.unwrap_or_default(),
                        name: status.name,
                    }),
                }
            }
            Err(e) => Err(e),
        },
        Command::Run(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    EnvFilter::try_from_env("STAMPEDE_LOG")
                        .unwrap_or_else(|_| EnvFilter::new("info,kube=warn")),
                )
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                .init();
            let shutdown = CancellationToken::new();
            tokio::spawn(stampede_core::shutdown::cancel_on_signal(shutdown.clone()));
            match args.config() {
                Ok(config) => stampede_operator::run::run(config, shutdown).await,
                Err(e) => Err(e),
            }
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
