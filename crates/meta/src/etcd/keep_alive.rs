//! One keep-alive round trip per call.
//!
//! etcd renews leases over a bidirectional stream. `etcd-client` opens one with a first
//! request whose answer (the TTL) it keeps to itself, so each lease's stream is kept open
//! between calls and later calls cost one round trip on it. A stream is only put back after a
//! complete exchange, so a timed-out call can never leave an unread answer behind for the next.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use etcd_client as ec;

use super::errors::{ErrorContext, map_error};
use crate::MetaError;
use crate::store::LeaseId;

struct Channel {
    keeper: ec::LeaseKeeper,
    answers: ec::LeaseKeepAliveStream,
}

#[derive(Default)]
pub(crate) struct KeepAlives {
    channels: Mutex<HashMap<LeaseId, Channel>>,
}

impl KeepAlives {
    fn take(&self, id: LeaseId) -> Option<Channel> {
        self.channels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id)
    }

    fn put_back(&self, id: LeaseId, channel: Channel) {
        self.channels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, channel);
    }

    /// Drops the stream of a lease that is going away.
    pub(crate) fn forget(&self, id: LeaseId) {
        drop(self.take(id));
    }

    pub(crate) async fn keep_alive(
        &self,
        client: &ec::Client,
        id: LeaseId,
    ) -> Result<Duration, MetaError> {
        let context = ErrorContext {
            lease: id,
            ..ErrorContext::default()
        };
        let mut channel = if let Some(channel) = self.take(id) {
            channel
        } else {
            // Opening the stream already renews the lease (and fails for an unknown one);
            // the exchange below is what tells us the TTL.
            let (keeper, answers) = client
                .lease_client()
                .keep_alive(id)
                .await
                .map_err(|error| map_error(error, &context))?;
            Channel { keeper, answers }
        };
        channel
            .keeper
            .keep_alive()
            .await
            .map_err(|error| map_error(error, &context))?;
        let answer = channel
            .answers
            .message()
            .await
            .map_err(|error| map_error(error, &context))?
            .ok_or_else(|| {
                MetaError::Unavailable("etcd closed the lease keep-alive stream".to_owned())
            })?;
        if answer.ttl() <= 0 {
            return Err(MetaError::LeaseNotFound(id));
        }
        self.put_back(id, channel);
        Ok(Duration::from_secs(
            u64::try_from(answer.ttl()).unwrap_or(0),
        ))
    }
}
