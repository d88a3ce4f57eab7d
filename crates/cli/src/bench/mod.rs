//! `shale bench produce|consume|e2e|put`.

mod consume;
mod e2e;
mod load;
mod metrics;
mod produce;
mod progress;
mod put;
mod report;
mod store;
mod topic;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use bytesize::ByteSize;
use clap::{Args, Subcommand};

use crate::cmd::Target;
use crate::output;
pub(crate) use put::PutArgs;
use report::Report;

/// Where the agent serves Prometheus metrics by default.
const DEFAULT_METRICS_URL: &str = "http://127.0.0.1:7071/metrics";
/// Records a run produces when neither `--records` nor `--duration` is given.
const DEFAULT_RECORDS: u64 = 100_000;

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Produce records as fast as the agent acknowledges them; latency is send to durable ack.
    Produce(LoadArgs),
    /// Read a topic from its start to its end as fast as the agent serves it (a throwaway
    /// topic is first filled with --records records).
    Consume(LoadArgs),
    /// Produce while consumers follow the topic; latency is send to consumed.
    E2e(LoadArgs),
    /// PUT objects straight to an object store, without an agent: the ceiling for produce.
    Put(PutArgs),
}

/// Flags shared by the benches that run against an agent.
#[derive(Debug, Clone, Args)]
pub(crate) struct LoadArgs {
    /// Bytes per record value (e.g. 1024, 4KiB).
    #[arg(long, default_value = "1024")]
    pub(crate) record_size: ByteSize,
    /// Records to produce (consume: to read) [default: 100000 unless --duration is given].
    #[arg(long, conflicts_with = "duration")]
    pub(crate) records: Option<u64>,
    /// Run for this long instead of a record count (e.g. 30s, 2m).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) duration: Option<Duration>,
    /// Partitions of the throwaway topic bench-<random>.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) partitions: u32,
    /// Use this existing topic instead of a throwaway one; it is never deleted.
    #[arg(long)]
    pub(crate) topic: Option<String>,
    /// Keep the throwaway topic afterwards.
    #[arg(long)]
    pub(crate) keep: bool,
    /// Parallel producer streams (consume: parallel consumers), each on its own connection.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub(crate) concurrency: u32,
    /// Records per produce request.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) batch_records: u32,
    /// Produce requests in flight per stream.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub(crate) max_in_flight: u32,
    /// Who encodes and decodes record batches: `client` (this load generator, as Kafka
    /// clients do; the agent stores and serves the batches as they are) or `agent` (records
    /// cross the wire one by one and the agent encodes and decodes them).
    #[arg(long, value_enum, default_value_t)]
    pub(crate) encoding: EncodingArg,
    /// Produce at most this many records per second in total [default: as fast as acked].
    #[arg(long)]
    pub(crate) rate: Option<u64>,
    /// The agent's Prometheus endpoint, read before and after the run for object-store
    /// request counts ("n/a" if it cannot be read).
    #[arg(long, env = "SHALE_METRICS_URL", default_value = DEFAULT_METRICS_URL)]
    pub(crate) metrics_url: String,
    /// Print one JSON object with every number instead of text, and no progress bar.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `--encoding`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum EncodingArg {
    #[default]
    Client,
    Agent,
}

impl From<EncodingArg> for shale_client::Encoding {
    fn from(encoding: EncodingArg) -> Self {
        match encoding {
            EncodingArg::Client => Self::Client,
            EncodingArg::Agent => Self::Agent,
        }
    }
}

impl LoadArgs {
    /// The record budget: `--records`, or the default when no `--duration` is given.
    pub(crate) fn record_limit(&self) -> Option<u64> {
        match (self.records, self.duration) {
            (Some(records), _) => Some(records),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_RECORDS),
        }
    }
}

pub(crate) async fn run(addr: &Target, command: BenchCommand) -> Result<ExitCode> {
    let (report, json) = match command {
        BenchCommand::Produce(args) => (produce::run(addr, &args).await?, args.json),
        BenchCommand::Consume(args) => (consume::run(addr, &args).await?, args.json),
        BenchCommand::E2e(args) => (e2e::run(addr, &args).await?, args.json),
        BenchCommand::Put(args) => (put::run(&args).await?, args.json),
    };
    print_report(&report, json)?;
    Ok(ExitCode::SUCCESS)
}

fn print_report(report: &Report, json: bool) -> Result<()> {
    if json {
        output::emit(&format!("{}\n", serde_json::to_string(report)?))?;
    } else {
        output::emit(&report.text())?;
    }
    Ok(())
}

/// Object-store counts and CPU time before a run; `None` (with a debug log) when scraping
/// fails.
async fn scrape(url: &str) -> Option<metrics::AgentSample> {
    match metrics::scrape(url).await {
        Ok(sample) => Some(sample),
        Err(error) => {
            tracing::debug!(%url, %error, "cannot read the agent's metrics");
            None
        }
    }
}

/// What the agent spent during a run, if both scrapes worked.
async fn store_requests_since(
    url: &str,
    before: Option<metrics::AgentSample>,
) -> Option<metrics::AgentSample> {
    let before = before?;
    scrape(url).await.map(|after| after.since(before))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    use super::*;

    fn load(args: &[&str]) -> LoadArgs {
        let cli = Cli::try_parse_from(args).unwrap();
        match cli.command {
            Command::Bench(BenchCommand::Produce(args)) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn records_default_unless_a_duration_is_given() {
        assert_eq!(
            load(&["shale", "bench", "produce"]).record_limit(),
            Some(DEFAULT_RECORDS)
        );
        let args = load(&["shale", "bench", "produce", "--duration", "10s"]);
        assert_eq!(args.record_limit(), None);
        assert_eq!(args.duration, Some(Duration::from_secs(10)));
        let args = load(&[
            "shale",
            "bench",
            "produce",
            "--record-size",
            "4KiB",
            "--records",
            "5",
        ]);
        assert_eq!(args.record_size.as_u64(), 4096);
        assert_eq!(args.record_limit(), Some(5));
    }

    #[test]
    fn records_and_duration_conflict() {
        assert!(
            Cli::try_parse_from([
                "shale",
                "bench",
                "produce",
                "--records",
                "1",
                "--duration",
                "1s"
            ])
            .is_err()
        );
    }
}
