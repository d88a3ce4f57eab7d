//! The command tree. A new subcommand is one variant here and one arm in `cmd::run`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::bench::BenchCommand;
use crate::cmd::agent::AgentArgs;
use crate::cmd::consume::ConsumeArgs;
use crate::cmd::produce::ProduceArgs;
use crate::cmd::topic::TopicCommand;

/// Where the agent's gRPC API listens unless `--addr` or `SHALE_ADDR` says otherwise.
pub(crate) const DEFAULT_ADDR: &str = "http://127.0.0.1:7070";

/// Shale: a Kafka-like log service whose only durable storage is object storage.
#[derive(Debug, Parser)]
#[command(
    name = "shale",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// Address of the agent's gRPC API (https://host:port for TLS); a comma-separated list
    /// of a cluster's agents is tried in order until one answers.
    #[arg(long, global = true, env = "SHALE_ADDR", default_value = DEFAULT_ADDR)]
    pub(crate) addr: String,
    /// PEM CA certificate(s) to trust for an https:// address, besides the system's roots.
    #[arg(long, global = true, env = "SHALE_CA_FILE", value_name = "FILE")]
    pub(crate) ca_file: Option<PathBuf>,
    /// PEM client certificate, for an agent that requires one (mutual TLS); needs --client-key.
    #[arg(long, global = true, env = "SHALE_CLIENT_CERT", value_name = "FILE")]
    pub(crate) client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, global = true, env = "SHALE_CLIENT_KEY", value_name = "FILE")]
    pub(crate) client_key: Option<PathBuf>,
    /// The zone this command runs in (as agents are started with --zone): it talks to an
    /// agent of that zone when one is up, so reads cause no cross-zone traffic.
    #[arg(long, global = true, env = "SHALE_CLIENT_ZONE", value_name = "ZONE")]
    pub(crate) client_zone: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run an agent: serve the gRPC API over etcd and an object store.
    Agent(AgentArgs),
    /// Run everything in one process with local storage under --data-dir (no etcd, no S3).
    Dev(shale_agent::DevArgs),
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// List the live agents (addresses, zones) and how many partitions each leads.
    Cluster(crate::cmd::cluster::ClusterArgs),
    /// Append stdin to a topic, one record per line.
    Produce(ProduceArgs),
    /// Print the records of a topic.
    Consume(ConsumeArgs),
    /// Measure throughput and latency of an agent or of an object store.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn addr_defaults_to_the_local_agent() {
        let cli = Cli::try_parse_from(["shale", "topic", "list"]).unwrap();
        // SHALE_ADDR may be set in the environment running the tests.
        if std::env::var_os("SHALE_ADDR").is_none() {
            assert_eq!(cli.global.addr, DEFAULT_ADDR);
        }
        let cli = Cli::try_parse_from(["shale", "topic", "list", "--addr", "http://h:1"]).unwrap();
        assert_eq!(cli.global.addr, "http://h:1");
    }

    #[test]
    fn tls_files_are_global_flags() {
        let cli = Cli::try_parse_from([
            "shale",
            "--ca-file",
            "ca.pem",
            "topic",
            "list",
            "--client-cert",
            "c.pem",
            "--client-key",
            "k.pem",
        ])
        .unwrap();
        assert_eq!(cli.global.ca_file, Some(PathBuf::from("ca.pem")));
        assert_eq!(cli.global.client_cert, Some(PathBuf::from("c.pem")));
        assert_eq!(cli.global.client_key, Some(PathBuf::from("k.pem")));
    }
}
