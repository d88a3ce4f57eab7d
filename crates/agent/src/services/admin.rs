//! `shale.v1.AdminService`: topic administration.

use std::collections::BTreeMap;

use shale_log::Log;
use shale_proto::v1;
use tonic::{Request, Response, Status};
use tracing::{Instrument, info_span};

use crate::convert;
use crate::status::to_status;

/// The admin service.
#[derive(Debug, Clone)]
pub(crate) struct AdminService {
    log: Log,
}

impl AdminService {
    pub(crate) fn new(log: Log) -> Self {
        Self { log }
    }
}

#[tonic::async_trait]
impl v1::admin_service_server::AdminService for AdminService {
    async fn create_topic(
        &self,
        request: Request<v1::CreateTopicRequest>,
    ) -> Result<Response<v1::CreateTopicResponse>, Status> {
        let request = request.into_inner();
        let span = info_span!("agent.create_topic", topic = %request.name, partitions = request.partitions);
        async {
            let configs: BTreeMap<String, String> = request.configs.into_iter().collect();
            let topic = self
                .log
                .create_topic(&request.name, request.partitions, &configs)
                .await
                .map_err(|e| to_status(&e))?;
            Ok(Response::new(v1::CreateTopicResponse {
                topic: Some(convert::topic_info(topic)),
            }))
        }
        .instrument(span)
        .await
    }

    async fn delete_topic(
        &self,
        request: Request<v1::DeleteTopicRequest>,
    ) -> Result<Response<v1::DeleteTopicResponse>, Status> {
        let request = request.into_inner();
        let span = info_span!("agent.delete_topic", topic = %request.name);
        async {
            self.log
                .delete_topic(&request.name)
                .await
                .map_err(|e| to_status(&e))?;
            Ok(Response::new(v1::DeleteTopicResponse {}))
        }
        .instrument(span)
        .await
    }

    async fn list_topics(
        &self,
        _request: Request<v1::ListTopicsRequest>,
    ) -> Result<Response<v1::ListTopicsResponse>, Status> {
        let _span = info_span!("agent.list_topics").entered();
        let topics = self
            .log
            .list_topics()
            .into_iter()
            .map(convert::topic_info)
            .collect();
        Ok(Response::new(v1::ListTopicsResponse { topics }))
    }

    async fn describe_topic(
        &self,
        request: Request<v1::DescribeTopicRequest>,
    ) -> Result<Response<v1::DescribeTopicResponse>, Status> {
        let request = request.into_inner();
        let span = info_span!("agent.describe_topic", topic = %request.name);
        let (topic, partitions) = self
            .log
            .describe_topic(&request.name)
            .instrument(span)
            .await
            .map_err(|e| to_status(&e))?;
        Ok(Response::new(v1::DescribeTopicResponse {
            topic: Some(convert::topic_info(topic)),
            partitions: partitions
                .into_iter()
                .map(convert::partition_info)
                .collect(),
        }))
    }

    async fn describe_cluster(
        &self,
        _request: Request<v1::DescribeClusterRequest>,
    ) -> Result<Response<v1::DescribeClusterResponse>, Status> {
        let _span = info_span!("agent.describe_cluster").entered();
        let cluster = self.log.describe_cluster();
        Ok(Response::new(v1::DescribeClusterResponse {
            agents: cluster
                .agents
                .into_iter()
                .map(convert::agent_info)
                .collect(),
            topics: cluster
                .topics
                .into_iter()
                .map(|(topic, partitions)| v1::DescribeTopicResponse {
                    topic: Some(convert::topic_info(topic)),
                    partitions: partitions
                        .into_iter()
                        .map(convert::partition_info)
                        .collect(),
                })
                .collect(),
            answered_by: self.log.config().agent_id.clone(),
        }))
    }
}
