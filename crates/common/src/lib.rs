//! Leaf crate shared by every Shale crate. It depends on no other Shale crate.
//!
//! It holds what behaviour depends on but tests must control (the wall clock and the source of
//! randomness) and the few identifiers every layer names. Monotonic timers use `tokio::time`
//! directly, which tests pause and advance.

mod clock;
mod rng;
mod topic_id;

pub use clock::{Clock, ManualClock, SystemClock};
pub use rng::{SharedRng, seeded_rng, system_rng};
pub use topic_id::{ParseTopicIdError, TopicId};
