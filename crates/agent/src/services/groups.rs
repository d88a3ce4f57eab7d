//! `shale.v1.GroupService`: consumer-group offsets and membership.

use std::time::Duration;

use shale_log::{
    GroupMember, GroupOffset, GroupProtocol, JoinGroupRequest, Log, NativeSubscription,
    SERVER_ASSIGNED_PROTOCOL_TYPE, decode_native_assignment,
};
use shale_proto::v1;
use tonic::{Request, Response, Status};
use tracing::{Instrument, info_span};

use crate::status::to_status_in;

/// Session timeout of a join that names none.
const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// Rebalance timeout of a join that names none.
const DEFAULT_REBALANCE_TIMEOUT: Duration = Duration::from_mins(1);
/// Assignor of a join that names none: moves the fewest partitions on a rebalance.
const DEFAULT_ASSIGNOR: &str = "sticky";

/// The consumer-group service.
#[derive(Debug, Clone)]
pub(crate) struct GroupService {
    log: Log,
}

impl GroupService {
    pub(crate) fn new(log: Log) -> Self {
        Self { log }
    }

    fn status(&self, error: &shale_log::LogError) -> Status {
        to_status_in(&self.log, error)
    }
}

fn partitions_of(assignment: shale_log::NativeAssignment) -> Vec<v1::TopicPartitions> {
    assignment
        .into_iter()
        .map(|(topic, partitions)| v1::TopicPartitions { topic, partitions })
        .collect()
}

#[tonic::async_trait]
impl v1::group_service_server::GroupService for GroupService {
    async fn commit_offsets(
        &self,
        request: Request<v1::CommitOffsetsRequest>,
    ) -> Result<Response<v1::CommitOffsetsResponse>, Status> {
        let request = request.into_inner();
        let span =
            info_span!("agent.commit_offsets", group = %request.group, topic = %request.topic);
        async {
            let offsets: Vec<GroupOffset> = request
                .offsets
                .into_iter()
                .map(|offset| GroupOffset {
                    partition: offset.partition,
                    offset: offset.offset,
                    metadata: offset.metadata,
                })
                .collect();
            let member = request.generation.map(|generation| GroupMember {
                member_id: request.member_id.clone(),
                generation,
            });
            self.log
                .commit_group_offsets(&request.group, &request.topic, &offsets, member.as_ref())
                .await
                .map_err(|e| self.status(&e))?;
            Ok(Response::new(v1::CommitOffsetsResponse {}))
        }
        .instrument(span)
        .await
    }

    async fn fetch_offsets(
        &self,
        request: Request<v1::FetchOffsetsRequest>,
    ) -> Result<Response<v1::FetchOffsetsResponse>, Status> {
        let request = request.into_inner();
        let span =
            info_span!("agent.fetch_offsets", group = %request.group, topic = %request.topic);
        async {
            let offsets = self
                .log
                .fetch_group_offsets(&request.group, &request.topic, &request.partitions)
                .await
                .map_err(|e| self.status(&e))?;
            Ok(Response::new(v1::FetchOffsetsResponse {
                offsets: offsets
                    .into_iter()
                    .map(|offset| v1::GroupOffset {
                        partition: offset.partition,
                        offset: offset.offset,
                        metadata: offset.metadata,
                    })
                    .collect(),
            }))
        }
        .instrument(span)
        .await
    }

    async fn find_coordinator(
        &self,
        request: Request<v1::FindCoordinatorRequest>,
    ) -> Result<Response<v1::FindCoordinatorResponse>, Status> {
        let request = request.into_inner();
        let coordinator = self
            .log
            .find_coordinator(&request.group)
            .map_err(|e| self.status(&e))?
            .ok_or_else(|| Status::unavailable("no agent is registered yet; retry shortly"))?;
        let grpc_addr = self.log.agent_grpc_addr(&coordinator).unwrap_or_default();
        Ok(Response::new(v1::FindCoordinatorResponse {
            agent_id: coordinator,
            grpc_addr,
        }))
    }

    async fn join_group(
        &self,
        request: Request<v1::JoinGroupRequest>,
    ) -> Result<Response<v1::JoinGroupResponse>, Status> {
        let client_host = request
            .remote_addr()
            .map(|addr| addr.ip().to_string())
            .unwrap_or_default();
        let request = request.into_inner();
        let span = info_span!("agent.join_group", group = %request.group);
        async {
            let metadata = NativeSubscription {
                topics: request.topics,
            }
            .encode();
            let assignors = if request.assignors.is_empty() {
                vec![DEFAULT_ASSIGNOR.to_owned()]
            } else {
                request.assignors
            };
            let millis = |ms: u32, default: Duration| {
                if ms == 0 {
                    default
                } else {
                    Duration::from_millis(u64::from(ms))
                }
            };
            let joined = self
                .log
                .join_group(JoinGroupRequest {
                    group: request.group,
                    member_id: request.member_id,
                    instance_id: None,
                    client_id: request.client_id,
                    client_host,
                    session_timeout: millis(request.session_timeout_ms, DEFAULT_SESSION_TIMEOUT),
                    rebalance_timeout: millis(
                        request.rebalance_timeout_ms,
                        DEFAULT_REBALANCE_TIMEOUT,
                    ),
                    protocol_type: SERVER_ASSIGNED_PROTOCOL_TYPE.to_owned(),
                    protocols: assignors
                        .into_iter()
                        .map(|name| GroupProtocol {
                            name,
                            metadata: metadata.clone(),
                        })
                        .collect(),
                    require_known_member_id: false,
                })
                .await
                .map_err(|e| self.status(&e))?;
            let assignment = decode_native_assignment(&joined.assignment.unwrap_or_default())
                .map_err(|e| self.status(&e))?;
            Ok(Response::new(v1::JoinGroupResponse {
                generation: joined.generation,
                member_id: joined.member_id,
                leader: joined.leader,
                assignor: joined.protocol.unwrap_or_default(),
                assignment: partitions_of(assignment),
            }))
        }
        .instrument(span)
        .await
    }

    async fn heartbeat(
        &self,
        request: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        let request = request.into_inner();
        let member = GroupMember {
            member_id: request.member_id,
            generation: request.generation,
        };
        self.log
            .heartbeat(&request.group, member)
            .instrument(info_span!("agent.heartbeat", group = %request.group))
            .await
            .map_err(|e| self.status(&e))?;
        Ok(Response::new(v1::HeartbeatResponse {}))
    }

    async fn leave_group(
        &self,
        request: Request<v1::LeaveGroupRequest>,
    ) -> Result<Response<v1::LeaveGroupResponse>, Status> {
        let request = request.into_inner();
        self.log
            .leave_group(&request.group, vec![request.member_id])
            .instrument(info_span!("agent.leave_group", group = %request.group))
            .await
            .map_err(|e| self.status(&e))?;
        Ok(Response::new(v1::LeaveGroupResponse {}))
    }

    async fn describe_group(
        &self,
        request: Request<v1::DescribeGroupRequest>,
    ) -> Result<Response<v1::DescribeGroupResponse>, Status> {
        let request = request.into_inner();
        let group = self
            .log
            .describe_group(&request.group)
            .instrument(info_span!("agent.describe_group", group = %request.group))
            .await
            .map_err(|e| self.status(&e))?;
        let native = group.protocol_type == SERVER_ASSIGNED_PROTOCOL_TYPE;
        Ok(Response::new(v1::DescribeGroupResponse {
            state: group.phase.name().to_owned(),
            generation: group.generation,
            protocol_type: group.protocol_type,
            protocol: group.protocol.unwrap_or_default(),
            leader: group.leader.unwrap_or_default(),
            members: group
                .members
                .into_iter()
                .map(|member| v1::GroupMemberDescription {
                    member_id: member.member_id,
                    client_id: member.client_id,
                    client_host: member.client_host,
                    assignment: if native {
                        decode_native_assignment(&member.assignment)
                            .map(partitions_of)
                            .unwrap_or_default()
                    } else {
                        Vec::new()
                    },
                })
                .collect(),
        }))
    }
}
