//! `shale.v1.GroupService`: consumer-group offsets.

use shale_log::{GroupOffset, Log};
use shale_proto::v1;
use tonic::{Request, Response, Status};
use tracing::{Instrument, info_span};

use crate::status::to_status;

/// The consumer-group offsets service.
#[derive(Debug, Clone)]
pub(crate) struct GroupService {
    log: Log,
}

impl GroupService {
    pub(crate) fn new(log: Log) -> Self {
        Self { log }
    }
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
            self.log
                .commit_group_offsets(&request.group, &request.topic, &offsets)
                .await
                .map_err(|e| to_status(&e))?;
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
                .map_err(|e| to_status(&e))?;
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
}
