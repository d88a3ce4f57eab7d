//! The Shale agent: serves the native gRPC API (`shale.v1`) and an HTTP endpoint for
//! metrics and health over the engine (`shale-log`), configured from defaults, a file,
//! `SHALE_*` variables and flags.

mod budget;
mod config;
mod connections;
mod convert;
mod dev;
mod forward;
pub mod fuzzing;
mod http;
mod metrics;
mod process;
mod server;
mod services;
pub mod status;
mod tls;

pub use config::{AgentConfig, AgentFlags, CONFIG_KEYS, Secret};
pub use dev::{DevArgs, dev_config};
pub use server::{MAX_GRPC_MESSAGE_BYTES, RunningAgent};

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Startup(String),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}
