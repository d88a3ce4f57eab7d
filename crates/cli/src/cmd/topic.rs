//! `shale topic create|list|describe|delete`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use shale_client::Code;

use crate::cmd::{Target, connect};
use crate::output::{self, Format};
use crate::parse;

#[derive(Debug, Subcommand)]
pub(crate) enum TopicCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List every topic.
    List(ListArgs),
    /// Show a topic's id, configs and the state of each partition.
    Describe(DescribeArgs),
    /// Delete a topic and, in time, its data.
    Delete(DeleteArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// Topic name: 1-249 characters of [A-Za-z0-9._-].
    name: String,
    /// Number of partitions.
    #[arg(long, short = 'p', default_value_t = 1)]
    partitions: u32,
    /// Topic config, e.g. retention.ms=86400000 (repeatable).
    #[arg(long = "config", short = 'c', value_name = "KEY=VALUE", value_parser = parse::key_value)]
    configs: Vec<(String, String)>,
    /// Succeed if the topic already exists.
    #[arg(long)]
    if_not_exists: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Debug, Args)]
pub(crate) struct DescribeArgs {
    /// Topic name.
    name: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// Topic name.
    name: String,
    /// Succeed if the topic does not exist.
    #[arg(long)]
    if_exists: bool,
}

pub(crate) async fn run(addr: &Target, command: TopicCommand) -> Result<ExitCode> {
    let client = connect(addr).await?;
    match command {
        TopicCommand::Create(args) => {
            let configs: BTreeMap<String, String> = args.configs.into_iter().collect();
            match client
                .create_topic(&args.name, args.partitions, configs)
                .await
            {
                Ok(topic) => match args.format {
                    Format::Text => output::emit(&format!(
                        "created topic {:?} with {} partitions (id {})\n",
                        topic.name, topic.partitions, topic.topic_id
                    ))?,
                    Format::Json => output::emit(&format!("{}\n", output::topic_json(&topic)))?,
                },
                Err(error) if args.if_not_exists && error.code() == Code::AlreadyExists => {
                    if args.format == Format::Json {
                        let description = client.describe_topic(&args.name).await?;
                        output::emit(&format!("{}\n", output::topic_json(&description.topic)))?;
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
        TopicCommand::List(args) => {
            let topics = client.list_topics().await?;
            match args.format {
                Format::Text => output::emit(&output::topics_table(&topics))?,
                Format::Json => {
                    let topics: Vec<_> = topics.iter().map(output::topic_json).collect();
                    output::emit(&format!("{}\n", serde_json::Value::Array(topics)))?;
                }
            }
        }
        TopicCommand::Describe(args) => {
            let description = client.describe_topic(&args.name).await?;
            match args.format {
                Format::Text => output::emit(&output::description_text(&description))?,
                Format::Json => {
                    output::emit(&format!("{}\n", output::description_json(&description)))?;
                }
            }
        }
        TopicCommand::Delete(args) => match client.delete_topic(&args.name).await {
            Ok(()) => output::emit(&format!("deleted topic {:?}\n", args.name))?,
            Err(error) if args.if_exists && error.code() == Code::NotFound => {}
            Err(error) => return Err(error.into()),
        },
    }
    Ok(ExitCode::SUCCESS)
}
