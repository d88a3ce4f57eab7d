//! Shale's object storage: wiring, retries, metrics, fault injection, object names, bucket
//! administration and the local block cache.
//!
//! Shale does not hide object_store behind a trait of its own: every layer here is an
//! [`object_store::ObjectStore`] decorating another, composed by [`build_object_store`]:
//!
//! ```text
//! RetryingObjectStore → InstrumentedObjectStore → [FaultyObjectStore] → S3 | file | memory
//! ```
//!
//! - [`ObjectStoreConfig`] is parsed from `s3://bucket/prefix?…`, `file:///path` or
//!   `memory://` and names the store; all object paths live under its prefix.
//! - [`RetryingObjectStore`] retries transient failures with jittered backoff and resolves
//!   ambiguous create-only PUTs with a put-id (see [`retry`](crate::RetryingObjectStore)).
//! - [`InstrumentedObjectStore`] counts every attempt in [`StorageMetrics`].
//! - [`FaultInjector`] / [`FaultyObjectStore`] make the store fail on demand in tests.
//! - [`paths`] names every object; [`ObjectId`]s are time-sortable and unique across agents.
//! - [`StoreAdmin`] creates the bucket, sets the lifecycle rule and checks at startup that the
//!   store honours conditional writes.
//! - [`BlockCache`] serves byte ranges of immutable objects from a foyer memory + disk cache,
//!   with one GET per missing block however many readers miss it at once.
//!
//! `docs/storage.md` describes the URL forms, metrics, object layout and cache design.

mod admin;
mod build;
mod cache;
mod classify;
mod config;
mod durable_local;
mod faults;
#[doc(hidden)]
pub mod fuzzing;
mod instrumented;
mod metrics;
mod object_id;
mod op;
pub mod paths;
mod retry;
mod url;

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod test_support;

pub use admin::{AdminError, StoreAdmin, check_conditional_put};
pub use build::{BuildError, build_backend, build_object_store, unsigned_payload};
pub use cache::{BlockCache, CacheConfig, CacheError, RangeParts};
pub use classify::{ErrorClass, classify, is_transient};
pub use config::{
    Backend, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_REQUEST_TIMEOUT_MS, ObjectStoreConfig,
    RetryConfig, S3Config, Secret,
};
pub use durable_local::DurableLocalStore;
pub use faults::{Fault, FaultInjector, FaultyObjectStore, InjectedFault, Ops};
pub use instrumented::InstrumentedObjectStore;
pub use metrics::{StorageMetrics, StorageSnapshot};
pub use object_id::{ObjectId, ObjectIdGenerator, ParseObjectIdError};
pub use op::StoreOp;
pub use retry::{PUT_ID_METADATA, RetryingObjectStore};
pub use url::ConfigError;
