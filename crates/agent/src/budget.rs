//! The bytes of produce requests this agent holds between decoding and appending, over all
//! connections and streams.
//!
//! A decoded request is memory the writer's buffer does not count yet: it is converted and
//! encoded into batches, then waits for buffer space (backpressure) or for its partition's
//! leader. Without a shared bound, many connections could each park requests there. Every
//! produce takes its encoded size from this budget before it is converted and gives it back
//! once it is appended (from then on the writer's buffer counts it); when the budget stays
//! used up for `wait`, the request is refused with `RESOURCE_EXHAUSTED`.

use std::sync::Arc;
use std::time::Duration;

use shale_log::LogError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Default budget: with the writer's 128 MiB buffer and the cache's memory tier, this keeps
/// an agent with default settings under 1 GiB (see docs/operations.md).
pub(crate) const DEFAULT_INFLIGHT_REQUEST_BYTES: u64 = 128 * 1024 * 1024;

/// A shared budget of request bytes. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct RequestBudget {
    permits: Arc<Semaphore>,
    limit: u64,
    wait: Duration,
}

impl RequestBudget {
    pub(crate) fn new(limit: u64, wait: Duration) -> Self {
        let permits = usize::try_from(limit)
            .unwrap_or(Semaphore::MAX_PERMITS)
            .min(Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(Semaphore::new(permits)),
            limit,
            wait,
        }
    }

    /// Takes `bytes` from the budget, waiting up to the budget's wait for them.
    pub(crate) async fn admit(&self, bytes: usize) -> Result<OwnedSemaphorePermit, LogError> {
        let wanted = u32::try_from(bytes.max(1))
            .ok()
            .filter(|wanted| u64::from(*wanted) <= self.limit)
            .ok_or_else(|| {
                LogError::InvalidRequest(format!(
                    "a produce request of {bytes} bytes is larger than the agent's in-flight request budget of {} bytes",
                    self.limit
                ))
            })?;
        let acquire = Arc::clone(&self.permits).acquire_many_owned(wanted);
        match tokio::time::timeout(self.wait, acquire).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_closed)) => Err(LogError::ShuttingDown),
            Err(_elapsed) => Err(LogError::Backpressure {
                limit: self.limit,
                waited_ms: self.wait.as_millis() as u64,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_beyond_the_budget_wait_then_are_refused() {
        let budget = RequestBudget::new(1000, Duration::from_millis(100));
        let held = budget.admit(800).await.unwrap();
        let refused = budget.admit(300).await.unwrap_err();
        assert!(
            matches!(refused, LogError::Backpressure { limit: 1000, .. }),
            "{refused}"
        );
        assert!(matches!(
            budget.admit(2000).await.unwrap_err(),
            LogError::InvalidRequest(_)
        ));
        drop(held);
        let _admitted = budget.admit(300).await.unwrap();
    }
}
