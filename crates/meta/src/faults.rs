//! Fault injection for tests: a [`MetaStore`] that makes chosen transactions fail, either
//! before they reach the store or after they were applied with the answer lost — the
//! ambiguous outcome a network cut gives and a real etcd cannot be made to give on cue.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use crate::MetaError;
use crate::store::{
    KeyRange, Lease, LeaseId, MetaLimits, MetaStore, RangeRequest, RangeResponse, Revision, Txn,
    TxnOp, TxnResponse, WatchStream,
};

/// How an injected transaction fault fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnFault {
    /// Refused before it reaches the store: nothing is written.
    Refuse,
    /// Applied by the store, then answered with `Unavailable` as if the answer was lost.
    LoseAnswer,
}

#[derive(Debug)]
struct Armed {
    /// Transactions that put or delete a key with this prefix fail.
    prefix: Vec<u8>,
    fault: TxnFault,
}

#[derive(Debug, Default)]
struct FaultState {
    armed: VecDeque<Armed>,
    injected: usize,
}

/// Which faults to inject. Cloning shares them.
#[derive(Debug, Clone, Default)]
pub struct MetaFaults {
    state: Arc<Mutex<FaultState>>,
}

impl MetaFaults {
    /// No faults yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next `count` transactions that put or delete a key starting with `prefix` fail
    /// with `fault`.
    pub fn fail_txns_writing(&self, prefix: impl Into<Vec<u8>>, fault: TxnFault, count: usize) {
        let prefix = prefix.into();
        let mut state = self.lock();
        for _ in 0..count {
            state.armed.push_back(Armed {
                prefix: prefix.clone(),
                fault,
            });
        }
    }

    /// Disarms every fault not yet injected.
    pub fn clear(&self) {
        self.lock().armed.clear();
    }

    /// Faults injected so far.
    pub fn injected(&self) -> usize {
        self.lock().injected
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FaultState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take_for(&self, txn: &Txn) -> Option<TxnFault> {
        let mut state = self.lock();
        let writes = |prefix: &[u8]| {
            txn.success.iter().chain(&txn.failure).any(|op| match op {
                TxnOp::Put { key, .. } => key.starts_with(prefix),
                TxnOp::Delete { range } => range.start.starts_with(prefix),
                TxnOp::Get { .. } => false,
            })
        };
        let position = state.armed.iter().position(|armed| writes(&armed.prefix))?;
        let fault = state.armed.remove(position).map(|armed| armed.fault)?;
        state.injected += 1;
        Some(fault)
    }
}

/// A store whose transactions fail as [`MetaFaults`] says; everything else passes through.
#[derive(Debug)]
pub struct FaultyMetaStore {
    inner: Arc<dyn MetaStore>,
    faults: MetaFaults,
}

impl FaultyMetaStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn MetaStore>, faults: MetaFaults) -> Self {
        Self { inner, faults }
    }
}

#[async_trait]
impl MetaStore for FaultyMetaStore {
    async fn range(&self, request: RangeRequest) -> Result<RangeResponse, MetaError> {
        self.inner.range(request).await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, MetaError> {
        match self.faults.take_for(&txn) {
            None => self.inner.txn(txn).await,
            Some(TxnFault::Refuse) => Err(MetaError::Unavailable(
                "injected fault: transaction refused before reaching the store".to_owned(),
            )),
            Some(TxnFault::LoseAnswer) => {
                self.inner.txn(txn).await?;
                Err(MetaError::Unavailable(
                    "injected fault: transaction applied, answer lost".to_owned(),
                ))
            }
        }
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<Lease, MetaError> {
        self.inner.lease_grant(ttl).await
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<Duration, MetaError> {
        self.inner.lease_keep_alive(id).await
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<(), MetaError> {
        self.inner.lease_revoke(id).await
    }

    async fn watch(
        &self,
        range: KeyRange,
        from_revision: Revision,
    ) -> Result<WatchStream, MetaError> {
        self.inner.watch(range, from_revision).await
    }

    fn limits(&self) -> MetaLimits {
        self.inner.limits()
    }
}
