//! `shale agent` and `shale dev`: run the server in this process until Ctrl-C or SIGTERM.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use shale_agent::{AgentConfig, AgentFlags, DevArgs, RunningAgent, dev_config};

use crate::cli::DEFAULT_ADDR;
use crate::cmd::shutdown_signal;

/// Flags of `shale agent`.
#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// TOML file of settings (see docs/operations.md); SHALE_* variables and flags override it.
    #[arg(long, value_name = "FILE", env = "SHALE_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) flags: AgentFlags,
}

pub(crate) async fn run(args: AgentArgs) -> Result<ExitCode> {
    let config = AgentConfig::load(args.config.as_deref(), &args.flags)?;
    serve(config, None).await
}

pub(crate) async fn dev(args: DevArgs) -> Result<ExitCode> {
    let config = dev_config(&args)?;
    let data_dir = args
        .data_dir
        .canonicalize()
        .with_context(|| format!("resolving {}", args.data_dir.display()))?;
    serve(config, Some(&data_dir)).await
}

async fn serve(config: AgentConfig, dev_data: Option<&Path>) -> Result<ExitCode> {
    let agent = RunningAgent::start(config).await?;
    print_banner(&agent, dev_data);
    agent.run_until(shutdown_signal()).await;
    Ok(ExitCode::SUCCESS)
}

/// Where the agent listens, on stdout (the first line is stable, for scripts), and for
/// `dev` how to start using it.
fn print_banner(agent: &RunningAgent, dev_data: Option<&Path>) {
    let grpc = agent.grpc_url();
    let http = format!("http://{}", agent.http_addr());
    println!("shale: serving grpc on {grpc}, http on {http}");
    let Some(data_dir) = dev_data else {
        return;
    };
    let env = if grpc == DEFAULT_ADDR {
        String::new()
    } else {
        format!("  export SHALE_ADDR={grpc}\n")
    };
    println!(
        "\nshale dev: one process, everything stored under {data}\n\
         \n  grpc API  {grpc}\n  metrics   {http}/metrics\n\
         \nTry it from another terminal:\n\
         {env}  shale topic create demo --partitions 3\n\
         \x20 printf 'hello\\nworld\\n' | shale produce demo\n\
         \x20 shale consume demo --group readers\n\
         \nCtrl-C stops it; everything acknowledged is kept for the next start.",
        data = data_dir.display(),
    );
}
