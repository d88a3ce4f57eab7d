//! One module per subcommand; `run` dispatches.

pub(crate) mod agent;
pub(crate) mod cluster;
pub(crate) mod consume;
pub(crate) mod produce;
pub(crate) mod topic;

use std::process::ExitCode;

use anyhow::Result;
use shale_client::{Client, ClientOptions, ClientTls};

use crate::cli::{Cli, Command, GlobalArgs};

pub(crate) async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Agent(args) => agent::run(args).await,
        Command::Dev(args) => agent::dev(args).await,
        Command::Topic(command) => topic::run(&Target::new(&cli.global)?, command).await,
        Command::Cluster(args) => cluster::run(&Target::new(&cli.global)?, args).await,
        Command::Produce(args) => produce::run(&Target::new(&cli.global)?, args).await,
        Command::Consume(args) => consume::run(&Target::new(&cli.global)?, args).await,
        Command::Bench(command) => crate::bench::run(&Target::new(&cli.global)?, command).await,
    }
}

/// The agent the client commands talk to, and how to reach it.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    addr: String,
    options: ClientOptions,
}

impl Target {
    /// From --addr and the TLS flags; the files are read now, so a bad path fails first.
    pub(crate) fn new(global: &GlobalArgs) -> Result<Self> {
        let tls = ClientTls::from_files(
            global.ca_file.as_deref(),
            global.client_cert.as_deref(),
            global.client_key.as_deref(),
        )?;
        Ok(Self {
            addr: global.addr.clone(),
            options: ClientOptions {
                tls,
                zone: global.client_zone.clone().filter(|zone| !zone.is_empty()),
                ..ClientOptions::default()
            },
        })
    }
}

/// Connects to the first address of `--addr` that answers, with the SDK's one-line message
/// on failure.
pub(crate) async fn connect(target: &Target) -> Result<Client> {
    let addrs = target
        .addr
        .split(',')
        .map(str::trim)
        .filter(|addr| !addr.is_empty());
    Ok(Client::connect_any(addrs, target.options.clone()).await?)
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
