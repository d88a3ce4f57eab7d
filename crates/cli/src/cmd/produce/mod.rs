//! `shale produce TOPIC`: one record per stdin line, pipelined.
//!
//! Lines are batched into requests (up to `--batch-records` lines or `--batch-bytes`, or
//! whatever arrived within `--linger`) and sent over one pipelined stream, so piping a
//! million lines costs a few hundred round trips' worth of waiting, not a million. The command
//! waits for every ack; on any failure it stops reading, waits for what is in flight, and says
//! exactly which lines were not (or may not have been) written.

mod outcome;
mod pump;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use bytesize::ByteSize;
use clap::Args;
use shale_client::ProducerOptions;

use crate::cmd::{Target, connect};
use crate::input::spawn_line_reader;
use crate::parse;
use outcome::plural;
use pump::Pump;

#[derive(Debug, Args)]
pub(crate) struct ProduceArgs {
    /// Topic to append to.
    topic: String,
    /// Split each line at the first SEP into key and value; a line without SEP is an error.
    #[arg(long, value_name = "SEP", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    key_separator: Option<String>,
    /// Partition for every record [default: by key hash; keyless records of one request go
    /// to one partition].
    #[arg(long, short = 'p')]
    partition: Option<u32>,
    /// Header added to every record (repeatable).
    #[arg(long = "header", short = 'H', value_name = "KEY=VALUE", value_parser = parse::key_value)]
    headers: Vec<(String, String)>,
    /// Most lines in one request.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    batch_records: u32,
    /// Most bytes of keys, values and headers in one request.
    #[arg(long, default_value = "1MiB")]
    batch_bytes: ByteSize,
    /// How long a partial batch waits for more lines before it is sent.
    #[arg(long, default_value = "5ms", value_parser = humantime::parse_duration)]
    linger: Duration,
    /// Requests sent and not yet acknowledged, at most.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    max_in_flight: u32,
}

pub(crate) async fn run(addr: &Target, args: ProduceArgs) -> Result<ExitCode> {
    let client = connect(addr).await?;
    // A missing topic or partition fails before any input is read.
    let description = client.describe_topic(&args.topic).await?;
    if let Some(partition) = args.partition
        && partition >= description.topic.partitions
    {
        bail!(
            "partition {partition} of topic {:?} does not exist (the topic has {} partitions)",
            args.topic,
            description.topic.partitions
        );
    }
    let options = ProducerOptions {
        max_in_flight: args.max_in_flight as usize,
    };
    // One partition: straight to its leader. Several: the agent forwards each request.
    let producer = match args.partition {
        Some(partition) => {
            client
                .partition_producer(&args.topic, partition, options)
                .await?
        }
        None => client.producer(options).await?,
    };
    let lines = spawn_line_reader(std::io::stdin());
    let run = Pump::new(&args, producer).run(lines).await;
    match run.failure_message(&args.topic) {
        None => {
            eprintln!(
                "produced {} to topic {}",
                plural(run.ledger.written, "record"),
                args.topic
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(message) if run.interrupted => {
            eprintln!("error: {message}");
            Ok(ExitCode::from(130))
        }
        Some(message) => bail!(message),
    }
}
