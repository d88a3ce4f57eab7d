//! The background task that expires leases.

use std::sync::Weak;
use std::time::Duration;

use super::{Inner, blocking};

/// The background lease-expiry task. It holds the store only weakly, so dropping the store
/// closes it.
pub(crate) struct Reaper {
    handle: tokio::task::JoinHandle<()>,
}

impl Reaper {
    pub(crate) fn start(inner: Weak<Inner>, interval: Duration) -> Self {
        let handle = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(store) = inner.upgrade() else { return };
                if let Err(error) = blocking(move || store.expire_leases()).await {
                    tracing::warn!(%error, "embedded metadata store: lease expiry failed");
                }
            }
        });
        Self { handle }
    }

    pub(crate) async fn stop(mut self) {
        self.handle.abort();
        let _ = (&mut self.handle).await;
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.handle.abort();
    }
}
