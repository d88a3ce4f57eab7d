//! The connection to an agent and one typed method per RPC of `shale.v1`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use shale_proto::v1;
use shale_proto::v1::admin_service_client::AdminServiceClient;
use shale_proto::v1::group_service_client::GroupServiceClient;
use shale_proto::v1::log_service_client::LogServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::{
    ClientError, Consumer, Encoding, FetchOptions, FetchStream, FetchedBatch, GroupOffset,
    OffsetSpec, PartitionOffset, ProduceAck, ProduceRequest, Producer, ProducerOptions,
    TopicDescription, TopicInfo,
};

/// Largest message sent or accepted, matching the agent's limit: a fetch of big records or a
/// produce of many must not trip tonic's 4 MiB default.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// How a [`Client`] connects.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How long opening a TCP connection may take.
    pub connect_timeout: Duration,
    /// Interval of HTTP/2 pings, so a dead agent fails long-lived streams instead of leaving
    /// them hanging.
    pub keep_alive_interval: Duration,
    /// Trust roots and client certificate for `https://` addresses.
    pub tls: crate::ClientTls,
    /// Send each single-partition produce straight to the partition's leader (found with
    /// `DescribeCluster`, dialled with the same scheme and TLS settings) instead of through
    /// the connected agent, which would forward it. Anything in doubt goes to the connected
    /// agent.
    pub route_to_leaders: bool,
    /// The zone this client runs in (e.g. `us-east-1a`, what agents are started with as
    /// `--zone`). When the agent dialled is in another zone and one in this zone is up, the
    /// client talks to that one instead: fetches are served by any agent, so consumers then
    /// cause no cross-zone traffic. Produces still go to each partition's leader.
    pub zone: Option<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            keep_alive_interval: Duration::from_secs(20),
            tls: crate::ClientTls::default(),
            route_to_leaders: true,
            zone: None,
        }
    }
}

/// A connection to a Shale agent. Cloning is cheap and shares the connection.
#[derive(Debug, Clone)]
pub struct Client {
    addr: Arc<str>,
    log: LogServiceClient<Channel>,
    admin: AdminServiceClient<Channel>,
    groups: GroupServiceClient<Channel>,
    /// Ask fetches for stored batches and decode them here ([`Encoding::Client`]).
    fetch_batches: bool,
    /// Where each partition's leader is, when produces are routed to leaders.
    routes: Option<Arc<crate::route::Routes>>,
    /// How to dial other agents of the cluster (scheme and options), when this client
    /// dialled its agent itself.
    peers: Option<Arc<(String, ClientOptions)>>,
}

/// Largest HTTP/2 frame the SDK accepts from an agent.
const MAX_FRAME_BYTES: u32 = 256 * 1024;

impl Client {
    /// Connects to the agent at `addr` (`http://host:port`, or `https://host:port` for TLS;
    /// `host:port` means `http://`). Fails at once if the address is malformed or nothing
    /// listens there.
    pub async fn connect(addr: &str) -> Result<Self, ClientError> {
        Self::connect_with(addr, ClientOptions::default()).await
    }

    /// Connects with `options`; an `https://` address uses `options.tls`.
    pub async fn connect_with(addr: &str, options: ClientOptions) -> Result<Self, ClientError> {
        let (shown, uri) = parse_address(addr)?;
        let scheme = uri.scheme_str().unwrap_or("http").to_owned();
        let home = uri
            .authority()
            .map_or_else(String::new, |authority| authority.as_str().to_owned());
        let configure = |endpoint: Endpoint| {
            endpoint
                .connect_timeout(options.connect_timeout)
                .http2_keep_alive_interval(options.keep_alive_interval)
                .keep_alive_while_idle(true)
                .tcp_nodelay(true)
                // Fetch answers of a megabyte in a few frames instead of 64 (the protocol's
                // default is 16 KiB): fewer frames to parse, fewer wake-ups on both sides.
                .max_frame_size(MAX_FRAME_BYTES)
        };
        let channel = if uri.scheme_str() == Some("https") {
            let host = uri.host().unwrap_or_default();
            let connector = options
                .tls
                .connector(host.trim_start_matches('[').trim_end_matches(']'))?;
            // tonic wants its own TLS for an https URI, so the connector, which does TLS
            // itself, dials the plain form; the origin keeps `https` in every request.
            let authority = uri.authority().map_or(host, |authority| authority.as_str());
            let dial: Uri = format!("http://{authority}").parse().map_err(
                |error: tonic::codegen::http::uri::InvalidUri| ClientError::InvalidAddress {
                    addr: addr.to_owned(),
                    reason: error.to_string(),
                },
            )?;
            configure(Endpoint::from(dial).origin(uri))
                .connect_with_connector(connector)
                .await
        } else {
            configure(Endpoint::from(uri)).connect().await
        }
        .map_err(|error| ClientError::unreachable(&shown, &error))?;
        let mut client = Self::from_channel(channel, &shown);
        client.peers = Some(Arc::new((scheme.clone(), options.clone())));
        let zone = options.zone.clone();
        if options.route_to_leaders {
            client.routes = Some(crate::route::Routes::new(&scheme, &home, options.clone()));
        }
        match zone {
            Some(zone) => Ok(client.in_zone(&zone, &scheme, &home, options).await),
            None => Ok(client),
        }
    }

    /// This client, or one connected to an agent in `zone` when this one's agent is
    /// elsewhere. Anything that fails keeps this one.
    async fn in_zone(self, zone: &str, scheme: &str, home: &str, options: ClientOptions) -> Self {
        let Ok(cluster) = self.describe_cluster().await else {
            return self;
        };
        let local: Vec<&crate::AgentInfo> = cluster
            .agents
            .iter()
            .filter(|agent| agent.zone.as_deref() == Some(zone) && !agent.grpc_addr.is_empty())
            .collect();
        if local.is_empty() || local.iter().any(|agent| agent.grpc_addr == home) {
            return self;
        }
        // Spread the clients of one zone over its agents.
        let pick = local[std::process::id() as usize % local.len()];
        let addr = format!("{scheme}://{}", pick.grpc_addr);
        let options = ClientOptions {
            zone: None,
            ..options
        };
        match Box::pin(Self::connect_with(&addr, options)).await {
            Ok(client) => client.with_fetch_encoding(if self.fetch_batches {
                Encoding::Client
            } else {
                Encoding::Agent
            }),
            Err(error) => {
                tracing::debug!(%addr, %error, "cannot dial an agent in this client's zone; staying on the agent dialled");
                self
            }
        }
    }

    /// [`Client::connect_with`] without routing: a connection to one leader.
    pub(crate) async fn connect_unrouted(
        addr: &str,
        options: ClientOptions,
    ) -> Result<Self, ClientError> {
        Self::connect_with(
            addr,
            ClientOptions {
                route_to_leaders: false,
                // The leader itself, not an agent of this client's zone.
                zone: None,
                ..options
            },
        )
        .await
    }

    /// Connects to the first of `addrs` that answers, trying them in order: the agents of a
    /// cluster, any one of which serves every call. A bad address fails at once, before any
    /// is dialled; when none answers, the error is the last address's. An empty list is an
    /// invalid address.
    pub async fn connect_any<'a>(
        addrs: impl IntoIterator<Item = &'a str>,
        options: ClientOptions,
    ) -> Result<Self, ClientError> {
        let addrs: Vec<&str> = addrs.into_iter().collect();
        for addr in &addrs {
            parse_address(addr)?;
        }
        let mut last = ClientError::InvalidAddress {
            addr: String::new(),
            reason: "no address given".to_owned(),
        };
        for addr in addrs {
            match Self::connect_with(addr, options.clone()).await {
                Ok(client) => return Ok(client),
                Err(error @ ClientError::Unreachable { .. }) => last = error,
                Err(error) => return Err(error),
            }
        }
        Err(last)
    }

    /// Wraps an existing channel (for custom transports); `addr` is only used in messages.
    pub fn from_channel(channel: Channel, addr: &str) -> Self {
        Self {
            addr: Arc::from(addr),
            log: LogServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            admin: AdminServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            groups: GroupServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            fetch_batches: true,
            routes: None,
            peers: None,
        }
    }

    /// A connection to another agent of the cluster at `addr` (`host:port` as agents
    /// advertise it), dialled like this one; `None` if this client cannot dial (it wraps a
    /// custom channel) or `addr` is empty, and this client itself if `addr` is its agent.
    pub(crate) async fn connect_peer(&self, addr: &str) -> Option<Result<Self, ClientError>> {
        let (scheme, options) = self.peers.as_deref()?;
        if addr.is_empty() {
            return None;
        }
        let url = format!("{scheme}://{addr}");
        if parse_address(&url).is_ok_and(|(shown, _)| shown == *self.addr) {
            return Some(Ok(self.clone()));
        }
        let options = ClientOptions {
            zone: None,
            ..options.clone()
        };
        Some(
            Box::pin(Self::connect_with(&url, options))
                .await
                .map(|client| {
                    client.with_fetch_encoding(if self.fetch_batches {
                        Encoding::Client
                    } else {
                        Encoding::Agent
                    })
                }),
        )
    }

    /// Who decodes fetched records. [`Encoding::Client`] (the default): the agent sends the
    /// stored batches as they are and the SDK checks their CRC32C and decodes them, the least
    /// work for the agent. [`Encoding::Agent`]: the agent decodes and sends records one by one.
    #[must_use]
    pub fn with_fetch_encoding(mut self, encoding: Encoding) -> Self {
        self.fetch_batches = encoding == Encoding::Client;
        self
    }

    /// The agent address, as shown in error messages.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn status(&self, status: &tonic::Status) -> ClientError {
        ClientError::from_status(status, &self.addr)
    }

    fn protocol(&self, reason: &str) -> ClientError {
        ClientError::Protocol {
            addr: self.addr.to_string(),
            reason: reason.to_owned(),
        }
    }

    // ---- topics ----

    /// Creates a topic. `configs` are topic configs such as `retention.ms`.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicInfo, ClientError> {
        let request = v1::CreateTopicRequest {
            name: name.to_owned(),
            partitions,
            configs: configs.into_iter().collect(),
        };
        let response = self
            .admin
            .clone()
            .create_topic(request)
            .await
            .map_err(|status| self.status(&status))?
            .into_inner();
        response
            .topic
            .map(TopicInfo::from)
            .ok_or_else(|| self.protocol("create topic answered without the topic"))
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        let request = v1::DeleteTopicRequest {
            name: name.to_owned(),
        };
        self.admin
            .clone()
            .delete_topic(request)
            .await
            .map_err(|status| self.status(&status))?;
        Ok(())
    }

    /// Every topic, sorted by name.
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>, ClientError> {
        let response = self
            .admin
            .clone()
            .list_topics(v1::ListTopicsRequest {})
            .await
            .map_err(|status| self.status(&status))?
            .into_inner();
        let mut topics: Vec<TopicInfo> = response.topics.into_iter().map(Into::into).collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// A topic and the state of each partition, in partition order.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription, ClientError> {
        let request = v1::DescribeTopicRequest {
            name: name.to_owned(),
        };
        let response = self
            .admin
            .clone()
            .describe_topic(request)
            .await
            .map_err(|status| self.status(&status))?
            .into_inner();
        self.topic_description(response)
    }

    /// The live agents (with the addresses they advertise and their zones) and every
    /// partition's leader, as the agent's view sees them.
    pub async fn describe_cluster(&self) -> Result<crate::ClusterDescription, ClientError> {
        let response = self
            .admin
            .clone()
            .describe_cluster(v1::DescribeClusterRequest {})
            .await
            .map_err(|status| self.status(&status))?
            .into_inner();
        let mut agents: Vec<crate::AgentInfo> =
            response.agents.into_iter().map(Into::into).collect();
        agents.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        let mut topics = response
            .topics
            .into_iter()
            .map(|topic| self.topic_description(topic))
            .collect::<Result<Vec<_>, _>>()?;
        topics.sort_by(|a, b| a.topic.name.cmp(&b.topic.name));
        Ok(crate::ClusterDescription {
            agents,
            topics,
            answered_by: response.answered_by,
        })
    }

    fn topic_description(
        &self,
        response: v1::DescribeTopicResponse,
    ) -> Result<TopicDescription, ClientError> {
        let topic = response
            .topic
            .ok_or_else(|| self.protocol("describe topic answered without the topic"))?;
        let mut partitions: Vec<_> = response.partitions.into_iter().map(Into::into).collect();
        partitions.sort_by_key(|partition: &crate::PartitionInfo| partition.partition);
        Ok(TopicDescription {
            topic: topic.into(),
            partitions,
        })
    }

    // ---- produce ----

    /// Appends records and returns once they are durable. For throughput, use a
    /// [`Producer`], which pipelines requests over one stream.
    ///
    /// A request for one partition goes to the partition's leader when
    /// [`ClientOptions::route_to_leaders`] is on (the default), else, or when that fails
    /// without writing anything, to the connected agent.
    pub async fn produce(&self, request: ProduceRequest) -> Result<ProduceAck, ClientError> {
        let request = request.into_wire()?;
        if let (Some(routes), Some(partition)) = (&self.routes, request.partition)
            && let Some(leader) = routes.leader(self, &request.topic, partition).await
        {
            match leader.log.clone().produce(request.clone()).await {
                Ok(response) => return Ok(response.into_inner().into()),
                Err(status) => {
                    let error = leader.status(&status);
                    if !error.has_no_side_effects() {
                        // It may have been written: the caller decides about a retry.
                        routes.learn(&request.topic, partition, None);
                        return Err(error);
                    }
                    if matches!(error, ClientError::Unreachable { .. }) {
                        routes.forget(leader.addr().split("://").nth(1).unwrap_or_default());
                    } else {
                        routes.learn(&request.topic, partition, error.leader_addr());
                    }
                    if !error.is_retryable() {
                        return Err(error);
                    }
                    // Nothing was written: the connected agent takes it (and forwards it).
                }
            }
        }
        let response = self
            .log
            .clone()
            .produce(request)
            .await
            .map_err(|status| self.status(&status))?
            .into_inner();
        Ok(response.into())
    }

    /// Opens a pipelined producer over one `ProduceStream` to the connected agent, which
    /// forwards each request to its partition's leader.
    pub async fn producer(&self, options: ProducerOptions) -> Result<Producer, ClientError> {
        Producer::open(self.log.clone(), Arc::clone(&self.addr), options).await
    }

    /// Opens a pipelined producer for requests to one partition, on a stream to that
    /// partition's leader when [`ClientOptions::route_to_leaders`] is on and the leader can be
    /// dialled (else to the connected agent). If the leader moves later, the old one forwards.
    pub async fn partition_producer(
        &self,
        topic: &str,
        partition: u32,
        options: ProducerOptions,
    ) -> Result<Producer, ClientError> {
        if let Some(routes) = &self.routes
            && let Some(leader) = routes.leader(self, topic, partition).await
        {
            match leader.producer(options).await {
                Ok(producer) => return Ok(producer),
                Err(error) => {
                    tracing::debug!(addr = %leader.addr(), %error, "cannot open a stream to the partition's leader; using the connected agent");
                    routes.forget(leader.addr().split("://").nth(1).unwrap_or_default());
                }
            }
        }
        self.producer(options).await
    }

    // ---- fetch ----

    /// Reads committed records of one partition from `offset`.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        options: FetchOptions,
    ) -> Result<FetchedBatch, ClientError> {
        let request = v1::FetchRequest {
            topic: topic.to_owned(),
            partition,
            offset,
            max_bytes: options.max_bytes,
            max_records: options.max_records,
            max_wait_ms: u32::try_from(options.max_wait.as_millis()).unwrap_or(u32::MAX),
            // Stored batches, decoded here: the agent sends them without touching a record,
            // as slices of its cache (an older agent joins them).
            record_batches: self.fetch_batches,
            record_batch_pieces: self.fetch_batches,
        };
        let response = self
            .log
            .clone()
            .fetch(request)
            .await
            .map_err(|status| self.status(&status))?
            .into_inner();
        let limits = crate::fetch::DecodeLimits {
            max_records: options.max_records,
            max_bytes: options.max_bytes,
        };
        FetchedBatch::from_response(response, offset, limits, &self.addr)
    }

    /// Follows one partition from `offset`: the agent streams batches as they are committed.
    /// `max_bytes` of 0 means the agent's default (1 MiB) per batch.
    pub async fn fetch_stream(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        max_bytes: u32,
    ) -> Result<FetchStream, ClientError> {
        let request = v1::FetchStreamRequest {
            topic: topic.to_owned(),
            partition,
            offset,
            max_bytes,
            record_batches: self.fetch_batches,
            record_batch_pieces: self.fetch_batches,
        };
        let stream = self
            .log
            .clone()
            .fetch_stream(request)
            .await
            .map_err(|status| self.status(&status))?
            .into_inner();
        Ok(FetchStream::new(
            stream,
            Arc::clone(&self.addr),
            offset,
            max_bytes,
        ))
    }

    /// A follower of one partition from `offset` that reopens its stream after retryable
    /// failures. Nothing is sent until the first [`Consumer::next_batch`].
    pub fn consumer(&self, topic: &str, partition: u32, offset: i64) -> Consumer {
        Consumer::new(self.clone(), topic, partition, offset)
    }

    // ---- offsets ----

    /// Resolves `spec` for `partitions` of `topic` (all partitions when empty), in the order
    /// the agent answers (partition order).
    pub async fn list_offsets(
        &self,
        topic: &str,
        partitions: &[u32],
        spec: OffsetSpec,
    ) -> Result<Vec<PartitionOffset>, ClientError> {
        let request = v1::ListOffsetsRequest {
            topic: topic.to_owned(),
            partitions: partitions.to_vec(),
            spec: Some(spec.into()),
        };
        let response = self
            .log
            .clone()
            .list_offsets(request)
            .await
            .map_err(|status| self.status(&status))?
            .into_inner();
        Ok(response.offsets.into_iter().map(Into::into).collect())
    }

    /// The first stored offset of every partition.
    pub async fn earliest_offsets(&self, topic: &str) -> Result<Vec<PartitionOffset>, ClientError> {
        self.list_offsets(topic, &[], OffsetSpec::Earliest).await
    }

    /// The high watermark of every partition.
    pub async fn latest_offsets(&self, topic: &str) -> Result<Vec<PartitionOffset>, ClientError> {
        self.list_offsets(topic, &[], OffsetSpec::Latest).await
    }

    /// For every partition, the first offset whose timestamp is at or after `timestamp_ms`.
    pub async fn offsets_for_timestamp(
        &self,
        topic: &str,
        timestamp_ms: i64,
    ) -> Result<Vec<PartitionOffset>, ClientError> {
        self.list_offsets(topic, &[], OffsetSpec::Timestamp(timestamp_ms))
            .await
    }

    // ---- consumer groups ----

    /// Stores `group`'s next offsets in partitions of `topic`.
    pub async fn commit_offsets(
        &self,
        group: &str,
        topic: &str,
        offsets: impl IntoIterator<Item = GroupOffset>,
    ) -> Result<(), ClientError> {
        let request = v1::CommitOffsetsRequest {
            group: group.to_owned(),
            topic: topic.to_owned(),
            offsets: offsets.into_iter().map(Into::into).collect(),
            member_id: String::new(),
            generation: None,
        };
        self.groups
            .clone()
            .commit_offsets(request)
            .await
            .map_err(|status| self.status(&status))?;
        Ok(())
    }

    /// Commits offsets as `member_id` of `generation`; the group's coordinator refuses a
    /// member of an older generation.
    pub async fn commit_offsets_as(
        &self,
        group: &str,
        topic: &str,
        offsets: impl IntoIterator<Item = GroupOffset>,
        member_id: &str,
        generation: i32,
    ) -> Result<(), ClientError> {
        let request = v1::CommitOffsetsRequest {
            group: group.to_owned(),
            topic: topic.to_owned(),
            offsets: offsets.into_iter().map(Into::into).collect(),
            member_id: member_id.to_owned(),
            generation: Some(generation),
        };
        self.groups
            .clone()
            .commit_offsets(request)
            .await
            .map_err(|status| self.status(&status))?;
        Ok(())
    }

    /// The agent coordinating `group`: its id and advertised gRPC address.
    pub async fn find_coordinator(&self, group: &str) -> Result<(String, String), ClientError> {
        let response = self
            .groups
            .clone()
            .find_coordinator(v1::FindCoordinatorRequest {
                group: group.to_owned(),
            })
            .await
            .map_err(|status| self.status(&status))?
            .into_inner();
        Ok((response.agent_id, response.grpc_addr))
    }

    /// Joins `options.group` (as `member_id`, or as a new member when empty) and waits for
    /// the rebalance; this client must be connected to the group's coordinator.
    pub async fn join_group(
        &self,
        options: &crate::GroupOptions,
        member_id: &str,
    ) -> Result<crate::Generation, ClientError> {
        let millis = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        let response = self
            .groups
            .clone()
            .join_group(v1::JoinGroupRequest {
                group: options.group.clone(),
                member_id: member_id.to_owned(),
                topics: options.topics.clone(),
                assignors: options.assignors.clone(),
                session_timeout_ms: millis(options.session_timeout),
                rebalance_timeout_ms: millis(options.rebalance_timeout),
                client_id: options.client_id.clone(),
            })
            .await
            .map_err(|status| self.status(&status))?
            .into_inner();
        Ok(crate::Generation {
            generation: response.generation,
            member_id: response.member_id,
            assignor: response.assignor,
            assignment: response
                .assignment
                .into_iter()
                .map(|topic| (topic.topic, topic.partitions))
                .collect(),
        })
    }

    /// Keeps a member's session alive; see [`ClientError::group_error`] for what a failure
    /// asks of the member.
    pub async fn heartbeat(
        &self,
        group: &str,
        member_id: &str,
        generation: i32,
    ) -> Result<(), ClientError> {
        self.groups
            .clone()
            .heartbeat(v1::HeartbeatRequest {
                group: group.to_owned(),
                member_id: member_id.to_owned(),
                generation,
            })
            .await
            .map_err(|status| self.status(&status))?;
        Ok(())
    }

    /// Leaves `group` at once.
    pub async fn leave_group(&self, group: &str, member_id: &str) -> Result<(), ClientError> {
        self.groups
            .clone()
            .leave_group(v1::LeaveGroupRequest {
                group: group.to_owned(),
                member_id: member_id.to_owned(),
            })
            .await
            .map_err(|status| self.status(&status))?;
        Ok(())
    }

    /// Joins a consumer group and follows the partitions its coordinator assigns.
    pub async fn group_consumer(
        &self,
        options: crate::GroupOptions,
    ) -> Result<crate::GroupConsumer, ClientError> {
        crate::GroupConsumer::join(self.clone(), options).await
    }

    /// `group`'s committed offsets in `partitions` of `topic` (all when empty). Partitions
    /// without a committed offset are absent.
    pub async fn fetch_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: &[u32],
    ) -> Result<Vec<GroupOffset>, ClientError> {
        let request = v1::FetchOffsetsRequest {
            group: group.to_owned(),
            topic: topic.to_owned(),
            partitions: partitions.to_vec(),
        };
        let response = self
            .groups
            .clone()
            .fetch_offsets(request)
            .await
            .map_err(|status| self.status(&status))?
            .into_inner();
        Ok(response.offsets.into_iter().map(Into::into).collect())
    }
}

/// Parses an agent address into the form shown in messages and the URI to dial.
fn parse_address(addr: &str) -> Result<(String, Uri), ClientError> {
    let trimmed = addr.trim();
    let invalid = |reason: &str| ClientError::InvalidAddress {
        addr: addr.to_owned(),
        reason: reason.to_owned(),
    };
    if trimmed.is_empty() {
        return Err(invalid(
            "it is empty; expected http://host:port or https://host:port",
        ));
    }
    // A bare host:port is the common typo; without a scheme there is no TLS.
    let full = if trimmed.contains("://") {
        trimmed.to_owned()
    } else {
        format!("http://{trimmed}")
    };
    let uri: Uri = full
        .parse()
        .map_err(|error: tonic::codegen::http::uri::InvalidUri| invalid(&error.to_string()))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(invalid("expected http://host:port or https://host:port")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("missing host; expected http://host:port"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(invalid("unexpected path; expected http://host:port"));
    }
    let shown = full.trim_end_matches('/').to_owned();
    Ok((shown, uri))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalised() {
        let (shown, uri) = parse_address("127.0.0.1:7070").unwrap();
        assert_eq!(shown, "http://127.0.0.1:7070");
        assert_eq!(uri.port_u16(), Some(7070));
        let (shown, _) = parse_address(" http://localhost:1/ ").unwrap();
        assert_eq!(shown, "http://localhost:1");
        let (shown, uri) = parse_address("https://localhost:1").unwrap();
        assert_eq!(shown, "https://localhost:1");
        assert_eq!(uri.scheme_str(), Some("https"));
    }

    #[test]
    fn bad_addresses_say_what_is_expected() {
        for (addr, reason) in [
            ("", "it is empty"),
            (
                "ftp://a:1",
                "expected http://host:port or https://host:port",
            ),
            ("http://a:1/x", "unexpected path"),
            ("http://a b", "invalid"),
        ] {
            let error = parse_address(addr).unwrap_err();
            let message = error.to_string();
            assert!(
                message.starts_with("invalid shale agent address"),
                "{message}"
            );
            assert!(message.contains(reason), "{addr}: {message}");
            assert!(error.has_no_side_effects() && !error.is_retryable());
        }
    }
}
