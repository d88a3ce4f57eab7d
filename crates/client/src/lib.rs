//! Rust SDK for Shale's native gRPC API (`shale.v1`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), shale_client::ClientError> {
//! use shale_client::{Client, ProduceRequest, ProducerOptions, Record};
//!
//! let client = Client::connect("http://127.0.0.1:7070").await?;
//! client.create_topic("events", 3, Default::default()).await?;
//!
//! // Pipelined: `send` returns at once; acks arrive in order once records are durable.
//! let producer = client.producer(ProducerOptions::default()).await?;
//! let acks: Vec<_> = (0..10)
//!     .map(|i| producer.send(ProduceRequest::new("events", [Record::new(format!("event {i}"))])))
//!     .collect();
//! for ack in acks {
//!     println!("{:?}", ack.await?.partitions);
//! }
//!
//! // Follow partition 0 from the start.
//! let mut consumer = client.consumer("events", 0, 0);
//! let batch = consumer.next_batch().await?;
//! println!("{} records, next offset {}", batch.records.len(), consumer.position());
//! # Ok(())
//! # }
//! ```
//!
//! Every failure is a [`ClientError`], which answers separately whether a retry may help
//! ([`ClientError::is_retryable`]) and whether the failed call certainly changed nothing
//! ([`ClientError::has_no_side_effects`]).

mod client;
mod consumer;
mod error;
mod fetch;
mod group;
mod offsets;
mod produce;
mod producer;
mod record;
mod route;
mod tls;
mod topic;

pub use client::{Client, ClientOptions};
pub use consumer::Consumer;
pub use error::ClientError;
pub use fetch::{FetchOptions, FetchStream, FetchedBatch};
pub use group::{Generation, GroupBatch, GroupConsumer, GroupOptions};
pub use offsets::{GroupOffset, OffsetSpec, PartitionOffset};
pub use produce::{
    Compression, Encoding, PartitionAck, ProduceAck, ProduceRequest, ProducerIdentity,
};
pub use producer::{AckFuture, Producer, ProducerOptions};
pub use record::{Header, Record, StoredRecord};
pub use tls::ClientTls;
/// The gRPC status code of a [`ClientError`].
pub use tonic::Code;
pub use topic::{AgentInfo, ClusterDescription, PartitionInfo, TopicDescription, TopicInfo};
