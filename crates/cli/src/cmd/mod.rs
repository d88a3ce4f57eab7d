//! One module per subcommand; `run` dispatches.

pub(crate) mod agent;
pub(crate) mod consume;
pub(crate) mod produce;
pub(crate) mod topic;

use std::process::ExitCode;

use anyhow::Result;
use shale_client::Client;

use crate::cli::{Cli, Command};

pub(crate) async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Agent(args) => agent::run(args).await,
        Command::Dev(args) => agent::dev(args).await,
        Command::Topic(command) => topic::run(&cli.global.addr, command).await,
        Command::Produce(args) => produce::run(&cli.global.addr, args).await,
        Command::Consume(args) => consume::run(&cli.global.addr, args).await,
        Command::Bench(command) => crate::bench::run(&cli.global.addr, command).await,
    }
}

/// Connects, with the SDK's one-line message on failure.
pub(crate) async fn connect(addr: &str) -> Result<Client> {
    Ok(Client::connect(addr).await?)
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM, so commands can finish cleanly either way.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
    }
    // Without a handler there is nothing to wait for but Ctrl-C; if even that cannot be
    // installed, never resolve rather than stop at once.
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
